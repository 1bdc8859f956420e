//! `[finetune]` of a board profile: plain settings, parsed by every build (a binary built
//! without the `finetune` feature still reads the shipped profiles) and acted on by the
//! fine-tuner (`crate::finetune`) where it is compiled in.

use std::path::PathBuf;

use edgeclr_runtime::health::Tolerance;
use serde::{Deserialize, Serialize};

/// Where fine-tuning runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrainDevice {
    /// A hardware GPU through wgpu if this build has it (`gpu` feature) and one is present,
    /// else the CPU.
    #[default]
    Auto,
    /// burn-flex on the CPU.
    Cpu,
    /// burn-wgpu (`gpu` feature).
    Wgpu,
}

impl std::str::FromStr for TrainDevice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "wgpu" => Ok(Self::Wgpu),
            other => Err(format!("unknown device `{other}`; use auto, cpu or wgpu")),
        }
    }
}

/// How a full replay buffer admits a new frame (`[finetune] replay`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplayPolicy {
    /// Replace the entry most similar to its nearest neighbour; refuse a frame that is
    /// itself at least that redundant.
    #[default]
    Diversity,
    /// Reservoir sampling: a uniform sample of every frame seen.
    Reservoir,
    /// The newest frames.
    Fifo,
}

/// Which end of the encoder trains (`[finetune.trainer] trainable_end`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrainableEnd {
    /// The last `trainable_blocks` blocks; the stem and earlier blocks are frozen.
    #[default]
    Output,
    /// The stem and the first `trainable_blocks` blocks; later blocks are frozen. Surgical
    /// fine-tuning (Lee et al., 2023) finds the first layers the ones to tune for input-level
    /// shifts — a new sensor's noise, blur and exposure.
    Input,
}

/// `[finetune]` of a board profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FinetuneSection {
    /// Fine-tune while running (`--finetune` turns it on).
    pub enabled: bool,
    /// `auto` (GPU through wgpu if present, else CPU), `cpu` or `wgpu`.
    pub device: TrainDevice,
    /// CPU threads the trainer may use (its own rayon pool).
    pub threads: usize,
    /// Share of wall time spent training (0–1]; the rest it sleeps.
    pub duty_cycle: f64,
    /// Training resolution; default: the model's input size.
    pub image_size: Option<usize>,
    /// Frames kept for replay.
    pub replay_capacity: usize,
    /// How a full replay buffer admits frames: diversity, reservoir or fifo.
    pub replay: ReplayPolicy,
    /// Held-out frames for judging candidates.
    pub holdout_capacity: usize,
    /// Every n-th admitted frame goes to the held-out set.
    pub holdout_every: u64,
    /// Every n-th embedded frame is offered to the fine-tuner.
    pub sample_every: u64,
    /// Share of each batch taken from the newest live frames (the rest is replayed).
    pub live_fraction: f64,
    /// Steps between candidates.
    pub update_every: u64,
    /// End the run after this many fine-tuning steps, the last ones judged as a candidate: a
    /// run measured in work rather than wall time (benchmarks, tests). None: fine-tune until
    /// the run ends.
    pub max_steps: Option<u64>,
    /// Unreferenced slots kept besides current and previous.
    pub keep_slots: usize,
    /// The trainer.
    pub trainer: TrainerConfig,
    /// How much worse a candidate may be.
    pub tolerance: Tolerance,
    /// A labelled probe set (CIFAR-10 binary folder) for kNN in the candidate check.
    pub probe: Option<PathBuf>,
    /// The model's source images (a CIFAR-10 binary folder, labels unused) rehearsed in every
    /// batch so that learning the camera does not unlearn them; none: camera frames only.
    pub rehearsal: Option<PathBuf>,
    /// Share of each batch taken from the rehearsal images (with `rehearsal` set).
    pub rehearsal_fraction: f64,
    /// Keep every candidate, promoted or not, in `STATE/candidates/` (hard links) for
    /// evaluating them after the run (`firmware/bench/adapt.sh`); nothing prunes them.
    pub keep_candidates: bool,
}

impl Default for FinetuneSection {
    fn default() -> Self {
        Self {
            enabled: false,
            device: TrainDevice::Auto,
            threads: 1,
            duty_cycle: 0.25,
            image_size: None,
            replay_capacity: 256,
            replay: ReplayPolicy::Diversity,
            holdout_capacity: 48,
            holdout_every: 5,
            sample_every: 2,
            live_fraction: 0.25,
            update_every: 25,
            max_steps: None,
            keep_slots: 1,
            trainer: TrainerConfig::default(),
            tolerance: Tolerance::default(),
            probe: None,
            rehearsal: None,
            rehearsal_fraction: 0.25,
            keep_candidates: false,
        }
    }
}

impl FinetuneSection {
    /// Checks ranges.
    ///
    /// # Errors
    /// Names the field and its valid range.
    pub fn validate(&self) -> Result<(), String> {
        let bad = |f: &str, want: &str| Err(format!("[finetune] {f} must be {want}"));
        if !(self.duty_cycle > 0.0 && self.duty_cycle <= 1.0) {
            return bad("duty_cycle", "in (0, 1]");
        }
        if self.trainer.batch < 2 {
            return bad("trainer.batch", "at least 2");
        }
        if self.replay_capacity < self.trainer.batch {
            return bad("replay_capacity", "at least trainer.batch");
        }
        if self.holdout_capacity < 4 || self.holdout_every < 2 {
            return bad("holdout_capacity / holdout_every", "≥ 4 / ≥ 2");
        }
        if self.sample_every == 0 || self.update_every == 0 || self.threads == 0 {
            return bad("sample_every, update_every and threads", "≥ 1");
        }
        if self.max_steps == Some(0) {
            return bad("max_steps", "≥ 1 (or unset)");
        }
        if !(0.0..=1.0).contains(&self.live_fraction) {
            return bad("live_fraction", "in [0, 1]");
        }
        if !(0.0..1.0).contains(&self.rehearsal_fraction)
            || self.live_fraction + self.rehearsal_fraction > 1.0
        {
            return bad(
                "rehearsal_fraction",
                "in [0, 1) and at most 1 − live_fraction",
            );
        }
        let t = &self.trainer;
        if t.trainable_blocks == 0 && (!t.adapt_bn_stats || t.trainable_end == TrainableEnd::Input)
        {
            return bad(
                "trainer.trainable_blocks",
                "≥ 1, or 0 with trainer.adapt_bn_stats = true and trainable_end = \"output\" \
                 (statistics only)",
            );
        }
        Ok(())
    }
}

/// What the trainer learns and how (`[finetune]` in the board profile holds these too).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainerConfig {
    /// Frames per step (two views each).
    pub batch: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// NT-Xent temperature.
    pub temperature: f64,
    /// Residual blocks trained, counted from `trainable_end`; the others are frozen. 0: no
    /// weights train (needs `adapt_bn_stats` and the output end).
    pub trainable_blocks: usize,
    /// Which end of the encoder trains: `output` (the last blocks) or `input` (the stem and
    /// the first blocks).
    pub trainable_end: TrainableEnd,
    /// Normalise with running BatchNorm statistics in the trained blocks too.
    pub freeze_bn_stats: bool,
    /// Every BatchNorm layer (frozen ones too) normalises with batch statistics and moves its
    /// running statistics toward them (overrides `freeze_bn_stats`): those of the training
    /// views of the camera's frames. With `trainable_blocks = 0` that is all that adapts, on
    /// the frames as the deployed model sees them: test-time BatchNorm adaptation.
    pub adapt_bn_stats: bool,
    /// Before each candidate is exported, re-estimate every BatchNorm statistic exactly on
    /// the replay buffer's frames as the deployed model sees them (precise BatchNorm).
    pub recalibrate_bn: bool,
    /// Weight of `1 − cos(h, h_host)` (0 disables distillation).
    pub distill_weight: f64,
    /// Frames of one stream at most this many frame ids apart count as temporal neighbours.
    pub temporal_window: u64,
    /// Temporal neighbours are extra positives (else they are only removed from the negatives).
    pub temporal_positives: bool,
    /// Projections kept as extra negatives.
    pub queue_size: usize,
    /// Queued projections older than this many steps are dropped.
    pub queue_max_age: u64,
    /// Colour distortion strength of the training views; none: the model's recipe's.
    pub color_strength: Option<f32>,
    /// Seed of the augmentation RNG.
    pub seed: u64,
}

impl Default for TrainerConfig {
    fn default() -> Self {
        Self {
            batch: 32,
            lr: 1e-4,
            temperature: 0.2,
            trainable_blocks: 1,
            trainable_end: TrainableEnd::Output,
            freeze_bn_stats: true,
            adapt_bn_stats: true,
            recalibrate_bn: false,
            distill_weight: 1.0,
            temporal_window: 3,
            temporal_positives: true,
            queue_size: 256,
            queue_max_age: 20,
            color_strength: None,
            seed: 0,
        }
    }
}
