//! Where a pretraining run's batches come from: a data set decoded into memory (permuted per
//! epoch), or WebDataset shards streamed from disk (data::shards) for data bigger than RAM.
//! Both are deterministic from the seed and resumable from a checkpoint: memory by step,
//! shards by the stream position saved with the checkpoint (`TrainState::extra["stream"]`).

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use edgeclr_artifact::RgbImage;
use edgeclr_learn::checkpoint::TrainState;
use serde::{Deserialize, Serialize};

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
    /// The shard stream and the mark it advances.
    Shards(Box<ShardBatches>, StreamMark),
}

/// Where a streamed run stands, saved with every checkpoint (`TrainState::extra["stream"]`)
/// and checked on `--resume`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamMark {
    /// The stream position after the last trained batch.
    pub at: Position,
    /// Samples skipped so far because they did not decode (counted each time they are met).
    pub corrupt: usize,
    /// The shuffle buffer the position was reached with.
    pub buffer: usize,
    /// Samples in the shards then.
    pub samples: usize,
}

impl StreamMark {
    /// The mark a shard run resumes from: none at step 0, the checkpoint's otherwise.
    ///
    /// # Errors
    /// A checkpoint without a mark or with a malformed one, or one made with another
    /// shuffle buffer or other shards.
    fn resume(state: &TrainState, buffer: usize, samples: usize) -> Result<Self> {
        let fresh = Self {
            buffer,
            samples,
            ..Self::default()
        };
        let Some(saved) = state.extra.get("stream") else {
            if state.step == 0 {
                return Ok(fresh);
            }
            bail!(
                "the checkpoint at step {} has no stream position (made from in-memory data or \
                 by an older edgeclr); resume it with the data it was made from",
                state.step
            );
        };
        let mark: Self = serde_json::from_value(saved.clone())
            .map_err(|e| anyhow::anyhow!("the checkpoint's stream position is malformed ({e})"))?;
        if (mark.buffer, mark.samples) != (buffer, samples) {
            bail!(
                "the checkpoint streamed {} samples through a shuffle buffer of {}; now {samples} \
                 and {buffer}: resume with the same shards and --shuffle-buffer {}",
                mark.samples,
                mark.buffer,
                mark.buffer
            );
        }
        Ok(mark)
    }

    /// Writes the mark into a checkpoint state's `extra`, keeping its other keys.
    pub fn record(self, state: &mut TrainState) -> Result<()> {
        if !state.extra.is_object() {
            state.extra = serde_json::Value::Object(serde_json::Map::new());
        }
        if let Some(extra) = state.extra.as_object_mut() {
            extra.insert("stream".into(), serde_json::to_value(self)?);
        }
        Ok(())
    }
}

impl<'a> Batches<'a> {
    /// Batches of `data` from where `state` stands: its step (memory) or its stream mark.
    ///
    /// # Errors
    /// A missing or malformed shard index; a checkpoint whose stream mark does not fit.
    pub fn open(data: &'a TrainData, seed: u64, state: &TrainState) -> Result<Self> {
        Ok(match data {
            TrainData::Memory(t) => Self::Memory {
                images: &t.images,
                seed,
                epoch: usize::MAX,
                order: Vec::new(),
            },
            TrainData::Shards {
                dir,
                buffer,
                samples,
            } => {
                let mark = StreamMark::resume(state, *buffer, *samples)?;
                let batches = ShardBatches::open(dir, seed, *buffer, mark.at, mark.corrupt)?;
                Self::Shards(Box::new(batches), mark)
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
    ) -> Result<(R, Option<StreamMark>)> {
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
                Ok((build(&picked), None))
            }
            Self::Shards(s, mark) => {
                let (images, _) = s.next_batch(batch)?;
                let picked: Vec<&RgbImage> = images.iter().collect();
                mark.at = s.position();
                mark.corrupt = s.corrupt;
                Ok((build(&picked), Some(*mark)))
            }
        }
    }
}
