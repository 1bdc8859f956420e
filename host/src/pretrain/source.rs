//! Where a pretraining run's batches come from: a data set decoded into memory (permuted per
//! epoch), or WebDataset shards streamed from disk (data::shards) for data bigger than RAM.
//! Both are deterministic from the seed and resumable from a checkpoint: memory by step,
//! shards by the stream position saved with the checkpoint (`TrainState::extra["stream"]`).

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use edgeclr_artifact::RgbImage;

use super::{Plan, epoch_order};
use crate::config::PretrainConfig;
use crate::data::shards::{Position, ShardBatches, ShardIndex};
use crate::data::{self, DatasetKind, LabeledImages, Split};

/// The training data of a run.
pub enum TrainData {
    /// Decoded in memory.
    Memory(LabeledImages),
    /// Streamed from tar shards.
    Shards {
        /// The shard folder.
        dir: PathBuf,
        /// Samples in all shards.
        samples: usize,
        /// Shuffle-buffer size, samples.
        buffer: usize,
    },
}

impl TrainData {
    /// The training split of `root` as configured.
    ///
    /// # Errors
    /// Unreadable data; `--train-limit` on shards (write a smaller shard set instead).
    pub fn open(cfg: &PretrainConfig, root: &Path) -> Result<Self> {
        if cfg.train.dataset != DatasetKind::Shards {
            let mut train = data::load(cfg.train.dataset, root, Split::Train)?;
            if let Some(limit) = cfg.train.train_limit {
                train = train.balanced_subset(limit);
            }
            return Ok(Self::Memory(train));
        }
        if cfg.train.train_limit.is_some() {
            bail!(
                "--train-limit does not apply to streamed shards; write a smaller set with \
                 `edgeclr shard`"
            );
        }
        Ok(Self::Shards {
            dir: root.to_path_buf(),
            samples: ShardIndex::load(root)?.samples(),
            buffer: cfg.train.shuffle_buffer,
        })
    }

    /// Number of training samples (one epoch).
    pub fn len(&self) -> usize {
        match self {
            Self::Memory(t) => t.len(),
            Self::Shards { samples, .. } => *samples,
        }
    }

    /// The in-memory set, for the kNN monitor's bank.
    pub fn in_memory(&self) -> Option<&LabeledImages> {
        match self {
            Self::Memory(t) => Some(t),
            Self::Shards { .. } => None,
        }
    }
}

/// A producer's batches, step after step.
pub enum Batches<'a> {
    /// Slices of a per-epoch permutation of the images in memory.
    Memory {
        /// The images.
        images: &'a [RgbImage],
        /// Run seed.
        seed: u64,
        /// The epoch `order` belongs to.
        epoch: usize,
        /// Its permutation.
        order: Vec<usize>,
    },
    /// The shard stream.
    Shards(Box<ShardBatches>),
}

/// What a batch leaves behind for the checkpoint (streamed data only).
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    /// The stream position after this batch.
    pub position: Option<Position>,
    /// Samples skipped so far because they did not decode.
    pub corrupt: usize,
}

impl<'a> Batches<'a> {
    /// Batches of `data` from the run's position `at` (shards) or step (memory).
    ///
    /// # Errors
    /// A missing or malformed shard index.
    pub fn open(data: &'a TrainData, seed: u64, at: Position) -> Result<Self> {
        Ok(match data {
            TrainData::Memory(t) => Self::Memory {
                images: &t.images,
                seed,
                epoch: usize::MAX,
                order: Vec::new(),
            },
            TrainData::Shards { dir, buffer, .. } => {
                Self::Shards(Box::new(ShardBatches::open(dir, seed, *buffer, at)?))
            }
        })
    }

    /// Builds `step`'s batch with `build` from its source images (called for consecutive
    /// steps; memory lends references, the stream decodes).
    ///
    /// # Errors
    /// Shards that hold no readable sample.
    pub fn with_batch<R>(
        &mut self,
        step: usize,
        batch: usize,
        plan: &Plan,
        build: impl FnOnce(&[&RgbImage]) -> R,
    ) -> Result<(R, Progress)> {
        match self {
            Self::Memory {
                images,
                seed,
                epoch,
                order,
            } => {
                let e = step / plan.steps_per_epoch;
                if e != *epoch {
                    *order = epoch_order(*seed, e, images.len());
                    *epoch = e;
                }
                let b = step % plan.steps_per_epoch;
                let picked: Vec<&RgbImage> = order[b * batch..(b + 1) * batch]
                    .iter()
                    .map(|&i| &images[i])
                    .collect();
                Ok((build(&picked), Progress::default()))
            }
            Self::Shards(s) => {
                let (images, _) = s.next_batch(batch)?;
                let picked: Vec<&RgbImage> = images.iter().collect();
                let progress = Progress {
                    position: Some(s.position()),
                    corrupt: s.corrupt,
                };
                Ok((build(&picked), progress))
            }
        }
    }
}
