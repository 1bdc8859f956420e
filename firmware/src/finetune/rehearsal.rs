//! Rehearsal: a fixed set of the model's own source images (the data it was pretrained on,
//! unlabelled) mixed into every fine-tuning batch, so that learning a camera does not unlearn
//! the source — experience replay of the old task, the standard remedy for catastrophic
//! forgetting in continual learning (Rebuffi et al., 2017; Chaudhry et al., 2019). The images
//! also enter the batch's BatchNorm statistics, so the exported model normalises for a mixture
//! of the camera and the source rather than for the camera alone.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use edgeclr_artifact::RgbImage;
use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;

use super::trainer::Sample;

/// Frame ids of rehearsal images start here and are spaced far apart, so that no two of them
/// and no camera frame are ever temporal neighbours.
const FIRST_ID: u64 = 1 << 62;
const ID_STRIDE: u64 = 1 << 16;

/// The rehearsal images.
pub struct Rehearsal {
    samples: Vec<Sample>,
}

impl Rehearsal {
    /// Reads every record of the `data_batch_*.bin` files (CIFAR-10 binary format) in `dir`;
    /// labels are ignored.
    ///
    /// # Errors
    /// Names the folder when it holds no such file or a file does not read.
    pub fn load(dir: &Path) -> Result<Self> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| {
                format!(
                    "[finetune] rehearsal = {}: cannot read the folder",
                    dir.display()
                )
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("data_batch_") && n.ends_with(".bin"))
            })
            .collect();
        files.sort();
        let mut samples = Vec::new();
        for file in &files {
            let bytes =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            for rec in bytes.chunks_exact(3073) {
                let image = RgbImage::from_planar(32, 32, &rec[1..])?;
                let frame_id = FIRST_ID + samples.len() as u64 * ID_STRIDE;
                samples.push(Sample {
                    frame_id,
                    image: Arc::new(image),
                });
            }
        }
        if samples.is_empty() {
            bail!(
                "[finetune] rehearsal = {}: no CIFAR-10 binary batches (data_batch_*.bin) there; \
                 point it at the model's source images or remove the setting",
                dir.display()
            );
        }
        Ok(Self { samples })
    }

    /// Images held.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether there are none (never, after [`Self::load`]).
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// `n` distinct images at random (all of them when fewer).
    pub fn draw(&self, n: usize, rng: &mut ChaCha8Rng) -> Vec<Sample> {
        self.samples.sample(rng, n).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn loads_every_training_batch_and_draws_distinct_far_apart_ids() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Two records in one batch, one in another, one in a test batch (ignored).
        let record = |label: u8, value: u8| {
            let mut r = vec![label];
            r.extend(std::iter::repeat_n(value, 3072));
            r
        };
        std::fs::write(
            dir.path().join("data_batch_1.bin"),
            [record(0, 10), record(1, 20)].concat(),
        )
        .expect("write");
        std::fs::write(dir.path().join("data_batch_2.bin"), record(2, 30)).expect("write");
        std::fs::write(dir.path().join("test_batch.bin"), record(3, 40)).expect("write");
        let r = Rehearsal::load(dir.path()).expect("load");
        assert_eq!(r.len(), 3);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let drawn = r.draw(5, &mut rng);
        assert_eq!(drawn.len(), 3, "no more than held, each once");
        let mut ids: Vec<u64> = drawn.iter().map(|s| s.frame_id).collect();
        ids.sort_unstable();
        assert!(
            ids[0] >= FIRST_ID && ids.windows(2).all(|w| w[1] - w[0] >= ID_STRIDE),
            "{ids:?}"
        );
        let pixels: Vec<u8> = drawn.iter().map(|s| s.image.as_bytes()[0]).collect();
        assert!(
            pixels.iter().all(|p| [10, 20, 30].contains(p)),
            "{pixels:?}"
        );

        let empty = tempfile::tempdir().expect("tempdir");
        let e = Rehearsal::load(empty.path())
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("data_batch_") && e.contains("rehearsal"), "{e}");
    }
}
