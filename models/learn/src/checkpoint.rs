//! Crash-safe checkpoints: encoder + head weights, optimizer state, step and RNG state.
//!
//! Layout of a checkpoint root:
//! ```text
//! ROOT/step-000000120/{model.bpk, optim.bpk, state.json}
//! ROOT/LATEST            ← "step-000000120", replaced atomically after the folder is complete
//! ```
//! Every file is written to a temporary name, fsynced and renamed; `LATEST` only ever names
//! a complete checkpoint, so a crash at any point leaves the previous one loadable. Older
//! checkpoints beyond `keep` are pruned after the pointer moves.

use std::fs;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::config::SimclrConfig;
use crate::error::ModelError;
use crate::simclr::Simclr;

pub use edgeclr_artifact::atomic::{Pointers, fsync_dir, replace_symlink, write_atomic};

/// Everything besides tensors needed to resume bit-for-bit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps taken.
    pub step: u64,
    /// Epochs completed.
    pub epoch: u64,
    /// The data/augmentation RNG, exactly where it stopped.
    pub rng: ChaCha8Rng,
    /// Multiplier on the scheduled learning rate (halved after a divergence).
    pub lr_scale: f64,
    /// The recipe the weights belong to.
    pub config: SimclrConfig,
    /// Caller-defined fields (run options, metrics), kept verbatim.
    #[serde(default)]
    pub extra: serde_json::Value,
}

/// A loaded checkpoint.
pub struct Loaded {
    /// The model, on the requested device.
    pub model: Simclr,
    /// The optimizer with its moments restored.
    pub optim: ModuleOptimizer,
    /// Step, RNG and config.
    pub state: TrainState,
    /// The folder it came from.
    pub path: PathBuf,
}

/// A folder of rotating checkpoints.
#[derive(Debug, Clone)]
pub struct CheckpointDir {
    root: PathBuf,
    keep: usize,
}

impl CheckpointDir {
    /// Checkpoints under `root`, keeping the newest `keep` (at least 1).
    pub fn new(root: impl Into<PathBuf>, keep: usize) -> Self {
        Self {
            root: root.into(),
            keep: keep.max(1),
        }
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn err(&self, path: &Path, reason: impl Into<String>) -> ModelError {
        let _ = self;
        ModelError::Checkpoint {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    /// Saves a complete checkpoint and moves `LATEST` to it.
    ///
    /// # Errors
    /// I/O or serialisation failures, naming the file.
    pub fn save(
        &self,
        model: &Simclr,
        optim: &ModuleOptimizer,
        state: &TrainState,
    ) -> Result<PathBuf, ModelError> {
        let name = format!("step-{:09}", state.step);
        let dir = self.root.join(&name);
        let model_bytes = model
            .clone()
            .into_record()
            .into_bytes()
            .map_err(|e| self.err(&dir, format!("serialising weights: {e}")))?;
        write_atomic(&dir.join("model.bpk"), &model_bytes)?;
        let optim_bytes = optim
            .into_bytes()
            .map_err(|e| self.err(&dir, format!("serialising optimizer: {e}")))?;
        write_atomic(&dir.join("optim.bpk"), &optim_bytes)?;
        let json = serde_json::to_vec_pretty(state).map_err(|e| self.err(&dir, e.to_string()))?;
        write_atomic(&dir.join("state.json"), &json)?;
        write_atomic(&self.root.join("LATEST"), name.as_bytes())?;
        self.prune(&name);
        Ok(dir)
    }

    /// Removes all but the newest `keep` step folders (never the current one). Best effort.
    fn prune(&self, current: &str) {
        let Ok(entries) = fs::read_dir(&self.root) else {
            return;
        };
        let mut steps: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("step-"))
            .collect();
        steps.sort();
        let excess = steps.len().saturating_sub(self.keep);
        for old in steps.into_iter().take(excess).filter(|n| n != current) {
            let _ = fs::remove_dir_all(self.root.join(old));
        }
    }

    /// The folder `LATEST` names, if any checkpoint was completed.
    ///
    /// # Errors
    /// When `LATEST` exists but cannot be read.
    pub fn latest(&self) -> Result<Option<PathBuf>, ModelError> {
        let pointer = self.root.join("LATEST");
        match fs::read_to_string(&pointer) {
            Ok(name) => Ok(Some(self.root.join(name.trim()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ModelError::Io {
                path: pointer,
                source: e,
            }),
        }
    }

    /// Loads the latest checkpoint onto `device` (use an autodiff device to keep training).
    ///
    /// # Errors
    /// [`ModelError::Checkpoint`] naming the file that is missing or corrupt.
    pub fn load_latest(&self, device: &Device) -> Result<Option<Loaded>, ModelError> {
        match self.latest()? {
            Some(dir) => Self::load(&dir, device).map(Some),
            None => Ok(None),
        }
    }

    /// Loads the checkpoint in folder `dir`.
    ///
    /// # Errors
    /// [`ModelError::Checkpoint`] naming the file that is missing or corrupt.
    pub fn load(dir: &Path, device: &Device) -> Result<Loaded, ModelError> {
        let read = |name: &str| fs::read(dir.join(name)).map_err(ModelError::io(dir.join(name)));
        let bad = |name: &str, e: String| ModelError::Checkpoint {
            path: dir.join(name),
            reason: format!("{e}; delete this step folder and point LATEST at an older one"),
        };
        let state: TrainState = serde_json::from_slice(&read("state.json")?)
            .map_err(|e| bad("state.json", e.to_string()))?;
        let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(read("model.bpk")?))
            .map_err(|e| bad("model.bpk", e.to_string()))?;
        let model = state
            .config
            .init_model(device)
            .try_load_record(record)
            .map_err(|e| {
                bad(
                    "model.bpk",
                    format!("does not match the config in state.json: {e}"),
                )
            })?;
        let optim = state
            .config
            .optim
            .init()
            .from_bytes(Bytes::from_bytes_vec(read("optim.bpk")?))
            .map_err(|e| bad("optim.bpk", e.to_string()))?;
        Ok(Loaded {
            model,
            optim,
            state,
            path: dir.to_path_buf(),
        })
    }
}

/// Saves just the weights of `module` to `path` atomically (burnpack).
///
/// # Errors
/// Serialisation or I/O failures, naming the path.
pub fn save_weights<M: Module>(module: &M, path: &Path) -> Result<(), ModelError> {
    let bytes = module
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| ModelError::Checkpoint {
            path: path.to_path_buf(),
            reason: format!("serialising weights: {e}"),
        })?;
    Ok(write_atomic(path, &bytes)?)
}

/// Loads weights saved by [`save_weights`] into `module`.
///
/// # Errors
/// [`ModelError::Checkpoint`] when the file is unreadable or does not match `module`.
pub fn load_weights<M: Module>(module: M, path: &Path) -> Result<M, ModelError> {
    let bytes = fs::read(path).map_err(ModelError::io(path))?;
    let bad = |e: String| ModelError::Checkpoint {
        path: path.to_path_buf(),
        reason: e,
    };
    let record =
        ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes)).map_err(|e| bad(e.to_string()))?;
    module
        .try_load_record(record)
        .map_err(|e| bad(format!("weights do not match the model: {e}")))
}

#[cfg(test)]
mod tests {
    use rand::{RngExt, SeedableRng};

    use super::*;
    use crate::augment::{AugmentConfig, BatchBuilder};
    use crate::encoder::{Architecture, EncoderConfig};
    use crate::image::RgbImage;
    use crate::optim::OptimizerConfig;
    use crate::simclr::SimclrTrainer;
    use crate::test_device;

    fn tiny_config() -> SimclrConfig {
        SimclrConfig {
            augment: AugmentConfig::cifar().with_image_size(8),
            encoder: EncoderConfig::new(Architecture::Resnet8),
            optim: OptimizerConfig::Adam { weight_decay: 0.0 },
            ..SimclrConfig::default()
        }
    }

    /// Runs `n` steps, drawing each batch seed from `rng`.
    fn run(
        trainer: &mut SimclrTrainer,
        rng: &mut ChaCha8Rng,
        n: usize,
        device: &Device,
    ) -> Vec<f32> {
        let images: Vec<RgbImage> = (0..3u8)
            .map(|k| {
                RgbImage::new(
                    8,
                    8,
                    (0..192)
                        .map(|i| (i as u8).wrapping_mul(k * 7 + 1))
                        .collect(),
                )
                .expect("8x8")
            })
            .collect();
        let refs: Vec<&RgbImage> = images.iter().collect();
        let builder = BatchBuilder::new(tiny_config().augment);
        (0..n)
            .map(|_| {
                trainer
                    .step(builder.batch(&refs, rng.random(), device), 1e-2)
                    .loss
            })
            .collect()
    }

    #[test]
    fn resume_continues_bit_for_bit() {
        let device = test_device();
        let config = tiny_config();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut reference = SimclrTrainer::new(config.init_model(&device), &config);
        let initial = reference.model().clone();
        let expected = run(&mut reference, &mut rng, 4, &device);

        let tmp = tempfile::tempdir().expect("tempdir");
        let ckpts = CheckpointDir::new(tmp.path(), 2);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut first = SimclrTrainer::new(initial, &config);
        let head = run(&mut first, &mut rng, 2, &device);
        let state = TrainState {
            step: 2,
            epoch: 0,
            rng,
            lr_scale: 1.0,
            config: config.clone(),
            extra: serde_json::json!({}),
        };
        ckpts
            .save(first.model(), first.optimizer(), &state)
            .expect("save");
        drop(first);

        let loaded = ckpts
            .load_latest(&device)
            .expect("load")
            .expect("a checkpoint");
        assert_eq!(loaded.state.step, 2);
        let mut rng = loaded.state.rng;
        let mut resumed = SimclrTrainer::new(loaded.model, &config).with_optimizer(loaded.optim);
        let tail = run(&mut resumed, &mut rng, 2, &device);
        assert_eq!([head, tail].concat(), expected);
    }

    #[test]
    fn latest_survives_an_interrupted_save_and_prunes() {
        let device = test_device();
        let config = tiny_config();
        let tmp = tempfile::tempdir().expect("tempdir");
        let ckpts = CheckpointDir::new(tmp.path(), 2);
        let model = config.init_model(&device);
        let optim = config.optim.init();
        for step in [1, 2, 3] {
            let state = TrainState {
                step,
                epoch: 0,
                rng: ChaCha8Rng::seed_from_u64(0),
                lr_scale: 1.0,
                config: config.clone(),
                extra: serde_json::Value::Null,
            };
            ckpts.save(&model, &optim, &state).expect("save");
        }
        // A crash mid-save: a half-written newer folder that LATEST never pointed to.
        let torn = tmp.path().join("step-000000004");
        fs::create_dir_all(&torn).expect("mkdir");
        fs::write(torn.join("model.bpk"), b"torn").expect("write");
        let loaded = ckpts
            .load_latest(&device)
            .expect("load")
            .expect("a checkpoint");
        assert_eq!(loaded.state.step, 3);
        assert!(!tmp.path().join("step-000000001").exists(), "oldest pruned");
        assert!(tmp.path().join("step-000000002").exists());
    }

    #[test]
    fn corrupt_weights_name_the_file() {
        let device = test_device();
        let config = tiny_config();
        let tmp = tempfile::tempdir().expect("tempdir");
        let ckpts = CheckpointDir::new(tmp.path(), 1);
        let state = TrainState {
            step: 1,
            epoch: 0,
            rng: ChaCha8Rng::seed_from_u64(0),
            lr_scale: 1.0,
            config: config.clone(),
            extra: serde_json::Value::Null,
        };
        let dir = ckpts
            .save(&config.init_model(&device), &config.optim.init(), &state)
            .expect("save");
        fs::write(dir.join("model.bpk"), b"not a burnpack").expect("write");
        let err = ckpts
            .load_latest(&device)
            .err()
            .expect("corrupt file must fail");
        assert!(err.to_string().contains("model.bpk"), "{err}");
    }
}
