//! The seam between the embedding pipeline and whatever learns from its frames: the pipeline
//! offers every n-th frame (downscaled, with its embedding) through a drop-oldest queue,
//! shows the learner's last loss on the status screen and collects its report. The on-device
//! fine-tuner (`crate::finetune`, cargo feature `finetune`) is the implementation; a build
//! without it never links a learning framework.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use edgeclr_artifact::RgbImage;
use edgeclr_runtime::discrimination::Paired;
use edgeclr_runtime::health::Health;
use edgeclr_runtime::rank::RankGain;
use serde::Serialize;

use crate::queue::Receiver;

/// Learns from the stream on its own thread.
pub trait Learner: Send {
    /// Every n-th embedded frame is offered.
    fn sample_every(&self) -> u64;
    /// Offered frames are downscaled so their short side is this many pixels.
    fn train_side(&self) -> usize;
    /// Live progress for the status screen.
    fn progress(&self) -> Arc<Mutex<Progress>>;
    /// Consumes offers until `stop` is set (or, with a step budget, until it has taken its
    /// steps: the run then ends); returns what it did.
    fn run(self: Box<Self>, offers: &Receiver<Offer>, stop: &AtomicBool) -> FinetuneReport;
}

/// A frame offered by an embedding worker.
#[derive(Debug)]
pub struct Offer {
    /// Stream frame id.
    pub frame_id: u64,
    /// The frame, downscaled to training scale.
    pub image: Arc<RgbImage>,
    /// Its embedding from the running model (replay admission key).
    pub key: Vec<f32>,
}

/// One candidate's judgement.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    /// Trainer step.
    pub step: u64,
    /// Candidate version.
    pub candidate: String,
    /// Running version it was compared with.
    pub running: String,
    /// Promoted?
    pub accepted: bool,
    /// Why not.
    pub reasons: Vec<String>,
    /// Candidate health on the held-out frames.
    pub candidate_health: Option<Health>,
    /// Running model's health on the same frames.
    pub running_health: Option<Health>,
    /// The factory (shipped) model's health on the same frames, when it is not the running one.
    pub factory_health: Option<Health>,
    /// Candidate − running model in effective rank of the held-out frames (positive: richer).
    pub rank_vs_running: Option<RankGain>,
    /// Candidate − factory model in effective rank, when the factory model is not running.
    pub rank_vs_factory: Option<RankGain>,
    /// Candidate − running model in held-out view loss, per frame (negative: better).
    pub vs_running: Option<Paired>,
    /// Candidate − factory model in held-out view loss, per frame, when the factory model is
    /// not the running one.
    pub vs_factory: Option<Paired>,
    /// The candidate was broken (collapsed, non-finite, did not export or load): the learner
    /// restarted from the running model. Otherwise it trains on whatever the verdict.
    pub restarted: bool,
    /// Export time, ms.
    pub export_ms: f64,
    /// Evaluation time, ms.
    pub eval_ms: f64,
    /// Seconds since fine-tuning started, when the decision was made.
    pub at_s: f64,
}

/// What fine-tuning did in a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FinetuneReport {
    /// Backend description.
    pub backend: String,
    /// Steps taken in this run.
    pub steps: u64,
    /// Frames per step.
    pub batch: usize,
    /// Step time p50, ms.
    pub step_p50_ms: f32,
    /// Mean loss of the first 10 steps of the run.
    pub loss_first: f32,
    /// Mean loss of the last 10 steps.
    pub loss_last: f32,
    /// Frames the embedding workers offered to the fine-tuner.
    pub frames_offered: u64,
    /// Replay entries at the end.
    pub replay_len: usize,
    /// Held-out entries at the end.
    pub holdout_len: usize,
    /// Candidates judged.
    pub decisions: Vec<Decision>,
    /// Share of wall time spent working.
    pub busy_fraction: f64,
}

/// Live numbers for the status screen.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Last loss.
    pub loss: Option<f32>,
}
