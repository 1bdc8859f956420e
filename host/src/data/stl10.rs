//! STL-10 binary reader (`train_X.bin`/`train_y.bin`, `test_X.bin`/`test_y.bin`,
//! `unlabeled_X.bin`): 96×96 RGB, each image stored channel by channel, each channel
//! column-major (`value(r, c) = plane[c * 96 + r]`); labels 1–10 on disk, 0–9 here.

use std::path::Path;

use anyhow::{Context, Result, bail};
use edgeclr_artifact::RgbImage;

use super::{LabeledImages, Split, UNLABELED};

const SIDE: usize = 96;
const IMAGE_BYTES: usize = 3 * SIDE * SIDE;

/// Parses an `*_X.bin` buffer into images.
///
/// # Errors
/// A size that is not a whole number of images, naming the file and offset.
pub fn parse_images(bytes: &[u8], file: &Path) -> Result<Vec<RgbImage>> {
    if !bytes.len().is_multiple_of(IMAGE_BYTES) {
        bail!(
            "{} is truncated or not STL-10: {} bytes is not a multiple of {IMAGE_BYTES} (image at offset {} is incomplete)",
            file.display(),
            bytes.len(),
            bytes.len() / IMAGE_BYTES * IMAGE_BYTES
        );
    }
    Ok(bytes
        .chunks_exact(IMAGE_BYTES)
        .map(|img| {
            let mut data = vec![0u8; IMAGE_BYTES];
            for ch in 0..3 {
                let plane = &img[ch * SIDE * SIDE..(ch + 1) * SIDE * SIDE];
                for r in 0..SIDE {
                    for c in 0..SIDE {
                        data[(r * SIDE + c) * 3 + ch] = plane[c * SIDE + r];
                    }
                }
            }
            RgbImage::new(SIDE, SIDE, data).expect("96x96x3 by construction")
        })
        .collect())
}

fn read(root: &Path, name: &str) -> Result<Vec<u8>> {
    let path = root.join(name);
    std::fs::read(&path).with_context(|| {
        format!(
            "reading {}; point --data at the extracted stl10_binary folder",
            path.display()
        )
    })
}

/// Loads a split. `Train` is the labelled 5,000 plus, when present, the 100,000 unlabelled
/// images (labelled [`UNLABELED`]), as SimCLR pretraining uses them.
///
/// # Errors
/// Missing or malformed files, named.
pub fn load(root: &Path, split: Split, with_unlabeled: bool) -> Result<LabeledImages> {
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "test",
    };
    let x_name = format!("{prefix}_X.bin");
    let mut images = parse_images(&read(root, &x_name)?, &root.join(&x_name))?;
    let y = read(root, &format!("{prefix}_y.bin"))?;
    if y.len() != images.len() {
        bail!(
            "{}: {} labels for {} images; the files come from different downloads",
            root.join(format!("{prefix}_y.bin")).display(),
            y.len(),
            images.len()
        );
    }
    let mut labels = Vec::with_capacity(y.len());
    for (i, &l) in y.iter().enumerate() {
        if !(1..=10).contains(&l) {
            bail!(
                "{}: label {l} at offset {i} is outside 1–10",
                root.join(format!("{prefix}_y.bin")).display()
            );
        }
        labels.push(u16::from(l - 1));
    }
    let unlabeled = root.join("unlabeled_X.bin");
    if split == Split::Train && with_unlabeled && unlabeled.exists() {
        let extra = parse_images(&read(root, "unlabeled_X.bin")?, &unlabeled)?;
        labels.extend(std::iter::repeat_n(UNLABELED, extra.len()));
        images.extend(extra);
    }
    let classes = std::fs::read_to_string(root.join("class_names.txt"))
        .map(|t| {
            t.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    Ok(LabeledImages {
        images,
        labels,
        classes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_major_planes_become_row_major_pixels() {
        let mut bytes = vec![0u8; IMAGE_BYTES];
        // Red channel, row 1, column 2 is stored at c * 96 + r = 2 * 96 + 1.
        bytes[2 * SIDE + 1] = 200;
        // Blue channel, row 5, column 0 at 2 * 9216 + 0 * 96 + 5.
        bytes[2 * SIDE * SIDE + 5] = 77;
        let imgs = parse_images(&bytes, Path::new("x.bin")).expect("one image");
        assert_eq!(imgs[0].pixel(2, 1), [200, 0, 0]);
        assert_eq!(imgs[0].pixel(0, 5), [0, 0, 77]);
    }

    #[test]
    fn truncated_file_is_named() {
        let err = parse_images(&vec![0u8; IMAGE_BYTES + 5], Path::new("train_X.bin"))
            .expect_err("truncated");
        assert!(format!("{err:#}").contains("train_X.bin"));
    }
}
