//! On-device contrastive fine-tuning with safe model updates.
//!
//! Embedding workers offer every `sample_every`-th frame (downscaled, with its embedding from
//! the running model) through a drop-oldest queue, so training never stalls capture or
//! embedding. The fine-tuning thread admits frames into a diversity-aware replay buffer
//! ([`replay`]) — every `holdout_every`-th admitted frame goes to a separate held-out buffer
//! instead — and trains on batches mixing the newest live frames with replayed ones
//! ([`trainer`]), on the board's GPU through burn-wgpu when one is present, else on the CPU,
//! with a `duty_cycle` share of the time. Every `update_every` steps it exports the encoder
//! into a new slot ([`slots`]) with the same writer as `edgeclr export` (int8 re-calibrated on
//! replay frames), measures it against the running model on the held-out frames
//! ([`edgeclr_models::health`]) and promotes it only when it is no worse; the pipeline notices
//! the pointer move and hot-swaps ([`crate::live`]). A rejected candidate is deleted and
//! training restarts from the running model's weights.

pub mod negatives;
pub mod replay;
pub mod slots;
pub mod trainer;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use edgeclr_models::RgbImage;
use edgeclr_models::augment::{AugmentConfig, BatchBuilder};
use edgeclr_models::checkpoint::CheckpointDir;
use edgeclr_models::device::{DeviceChoice, select_device};
use edgeclr_models::embed::Preprocess;
use edgeclr_models::export::manifest::{Artifact, Source};
use edgeclr_models::export::{ArtifactKind, Manifest, QuantConfig, write_artifacts};
use edgeclr_models::health::{self, Health, Tolerance};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::config::ArtifactChoice;
use crate::queue::{Receiver, Recv};
use crate::stats::Window;
use replay::ReplayBuffer;
use slots::Slots;
use trainer::{Sample, Trainer, TrainerConfig};

/// `[finetune]` of a board profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FinetuneSection {
    /// Fine-tune while running (`--finetune` turns it on).
    pub enabled: bool,
    /// `auto` (GPU through wgpu if present, else CPU), `cpu` or `wgpu`.
    pub device: DeviceChoice,
    /// CPU threads the trainer may use (its own rayon pool).
    pub threads: usize,
    /// Share of wall time spent training (0–1]; the rest it sleeps.
    pub duty_cycle: f64,
    /// Training resolution; default: the model's input size.
    pub image_size: Option<usize>,
    /// Frames kept for replay.
    pub replay_capacity: usize,
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
    /// Unreferenced slots kept besides current and previous.
    pub keep_slots: usize,
    /// The trainer.
    pub trainer: TrainerConfig,
    /// How much worse a candidate may be.
    pub tolerance: Tolerance,
    /// A labelled probe set (CIFAR-10 binary folder) for kNN in the candidate check.
    pub probe: Option<PathBuf>,
}

impl Default for FinetuneSection {
    fn default() -> Self {
        Self {
            enabled: false,
            device: DeviceChoice::Auto,
            threads: 1,
            duty_cycle: 0.25,
            image_size: None,
            replay_capacity: 256,
            holdout_capacity: 48,
            holdout_every: 5,
            sample_every: 2,
            live_fraction: 0.25,
            update_every: 25,
            keep_slots: 1,
            trainer: TrainerConfig::default(),
            tolerance: Tolerance::default(),
            probe: None,
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
        if !(0.0..=1.0).contains(&self.live_fraction) {
            return bad("live_fraction", "in [0, 1]");
        }
        Ok(())
    }
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
    /// Export time, ms.
    pub export_ms: f64,
    /// Evaluation time, ms.
    pub eval_ms: f64,
}

/// What fine-tuning did in a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FinetuneReport {
    /// Backend description.
    pub backend: String,
    /// Steps taken in this run.
    pub steps: u64,
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

/// The fine-tuning worker.
pub struct Finetuner {
    section: FinetuneSection,
    trainer: Trainer,
    slots: Slots,
    checkpoints: CheckpointDir,
    preprocess: Preprocess,
    artifact: ArtifactChoice,
    base: Manifest,
    pool: Arc<rayon::ThreadPool>,
    backend: String,
    probe: Option<Probe>,
    augment: AugmentConfig,
    /// Live progress.
    pub progress: Arc<Mutex<Progress>>,
    /// The training side length frames are downscaled to.
    pub train_side: usize,
}

/// A labelled probe set, preprocessed for the model.
pub struct Probe {
    bank: Vec<Vec<f32>>,
    bank_labels: Vec<u8>,
    queries: Vec<Vec<f32>>,
    query_labels: Vec<u8>,
}

/// Reads a CIFAR-10 binary folder (`data_batch_1.bin` as the kNN bank, `test_batch.bin` as
/// queries) as a probe set.
///
/// # Errors
/// When a file is missing or malformed.
pub fn read_probe(dir: &Path, preprocess: &Preprocess) -> Result<Probe> {
    let load = |file: &str| -> Result<(Vec<Vec<f32>>, Vec<u8>)> {
        let path = dir.join(file);
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "probe set {}: expected CIFAR-10 binary batches",
                path.display()
            )
        })?;
        let mut views = Vec::new();
        let mut labels = Vec::new();
        for rec in bytes.chunks_exact(3073) {
            labels.push(rec[0]);
            let img = RgbImage::from_planar(32, 32, &rec[1..])?;
            views.push(preprocess.apply(&img));
        }
        Ok((views, labels))
    };
    let (bank, bank_labels) = load("data_batch_1.bin")?;
    let (queries, query_labels) = load("test_batch.bin")?;
    Ok(Probe {
        bank,
        bank_labels,
        queries,
        query_labels,
    })
}

/// Health of the model file `path` on `frames`: their clean embeddings (the deployed
/// preprocessing), two camera-augmented views per frame at the deployed size with a fixed seed
/// (the same views for every model compared), and kNN on `probe` when given.
///
/// # Errors
/// When the model does not verify, load or run.
pub fn health_of(
    path: &Path,
    frames: &[&RgbImage],
    augment: &AugmentConfig,
    probe: Option<&Probe>,
) -> Result<Health> {
    let opened = edgeclr_models::embed::open(path)?;
    let e = &opened.embedder;
    let size = opened.manifest.input.size;
    let preprocess = Preprocess::from_manifest(&opened.manifest);
    let builder = BatchBuilder::new(AugmentConfig {
        image_size: size,
        ..augment.clone()
    });
    let views: Vec<Vec<f32>> = builder
        .views(frames, 0x5eed)
        .chunks(3 * size * size)
        .map(<[f32]>::to_vec)
        .collect();
    let clean: Vec<Vec<f32>> = frames.iter().map(|i| preprocess.apply(i)).collect();
    let clean = e.embed_all(&clean)?;
    let v = e.embed_all(&views)?;
    let (a, b): (Vec<Vec<f32>>, Vec<Vec<f32>>) =
        v.chunks(2).map(|p| (p[0].clone(), p[1].clone())).unzip();
    let mut h = Health::measure(&clean, &a, &b);
    if let Some(p) = probe {
        let bank = e.embed_all(&p.bank)?;
        let queries = e.embed_all(&p.queries)?;
        h.knn_top1 = Some(health::knn_top1(
            &bank,
            &p.bank_labels,
            &queries,
            &p.query_labels,
            20,
        ));
    }
    Ok(h)
}

/// The file the pipeline runs for `choice` in a slot folder.
pub fn model_file(dir: &Path, manifest: &Manifest, choice: ArtifactChoice) -> PathBuf {
    let kind = match choice {
        ArtifactChoice::Int8 if manifest.artifact(ArtifactKind::OnnxInt8Qlinear).is_some() => {
            ArtifactKind::OnnxInt8Qlinear
        }
        _ => edgeclr_models::embed::DEFAULT_PREFERENCE
            .iter()
            .copied()
            .find(|k| manifest.artifact(*k).is_some())
            .unwrap_or(ArtifactKind::OnnxFp32),
    };
    dir.join(kind.file_name())
}

impl Finetuner {
    /// Prepares fine-tuning from the current slot (or a checkpoint of an earlier run), with the
    /// shipped model in `factory` as the distillation teacher.
    ///
    /// # Errors
    /// When the model folder has no burn weights or recipe, or the backend cannot start.
    pub fn new(
        section: FinetuneSection,
        factory: &Path,
        slots: Slots,
        artifact: ArtifactChoice,
    ) -> Result<Self> {
        section.validate().map_err(anyhow::Error::msg)?;
        let Some((current, manifest)) = slots.loadable() else {
            bail!("{} holds no model that loads", slots.root().display());
        };
        let dir = slots.dir(&current);
        let recipe = manifest.recipe.clone().with_context(|| {
            format!(
                "{} has no SimCLR recipe in its manifest: fine-tuning needs a model exported by edgeclr ≥ 0.1 with its burn weights (edgeclr export)",
                dir.display()
            )
        })?;
        let teacher = factory.join(ArtifactKind::BurnEncoder.file_name());
        if !teacher.exists() || manifest.artifact(ArtifactKind::BurnEncoder).is_none() {
            bail!(
                "{} has no encoder.bpk: the bundle must carry the burn weights to fine-tune from (re-run edgeclr export)",
                factory.display()
            );
        }
        let selected = select_device(section.device)?;
        info!("fine-tuning on {}", selected.description);
        let size = section.image_size.unwrap_or(manifest.input.size);
        let checkpoints = CheckpointDir::new(slots.root().join("train"), 2);
        let trainer = match Trainer::resume(
            &checkpoints,
            &teacher,
            size,
            section.trainer.clone(),
            &selected.device,
        ) {
            Ok(Some(t)) => {
                info!("resuming fine-tuning at step {}", t.steps());
                t
            }
            other => {
                if let Err(e) = other {
                    warn!("fine-tuning checkpoint does not load ({e:#}); starting from {current}");
                }
                let head = dir.join(ArtifactKind::BurnHead.file_name());
                Trainer::new(
                    &recipe,
                    &dir.join(ArtifactKind::BurnEncoder.file_name()),
                    head.exists().then_some(head.as_path()),
                    size,
                    section.trainer.clone(),
                    &selected.device,
                )?
            }
        };
        let preprocess = Preprocess::from_manifest(&manifest);
        let section_augment = section.trainer.augment(size, &recipe);
        let probe = match &section.probe {
            Some(p) => Some(read_probe(p, &preprocess)?),
            None => None,
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(section.threads)
            .thread_name(|i| format!("finetune-{i}"))
            .build()
            .map(Arc::new)?;
        Ok(Self {
            train_side: 2 * size,
            section,
            trainer,
            slots,
            checkpoints,
            preprocess,
            artifact,
            base: manifest,
            pool,
            backend: selected.description,
            probe,
            augment: section_augment,
            progress: Arc::default(),
        })
    }

    /// Every n-th frame to offer.
    pub fn sample_every(&self) -> u64 {
        self.section.sample_every
    }

    /// Exports the trainer's encoder into a new complete slot; returns its name.
    fn export_candidate(&self, calib: &[&RgbImage]) -> Result<String> {
        let base_version = self
            .base
            .source
            .model_version
            .split("+ft")
            .next()
            .unwrap_or("model")
            .to_string();
        let version = format!("{base_version}+ft{}", self.trainer.steps());
        let name = slots::slot_name(&version);
        let dir = self.slots.stage(&name)?;
        let net = self.trainer.encoder().fold();
        let size = self.base.input.size;
        let calib: Vec<Vec<f32>> = calib.iter().map(|i| self.preprocess.apply(i)).collect();
        let (mut artifacts, quantization) = write_artifacts(
            &net,
            size,
            &[ArtifactKind::OnnxFp32, ArtifactKind::OnnxInt8Qlinear],
            &calib,
            QuantConfig::default(),
            &format!("{} replay-buffer frames on the board", calib.len()),
            &dir,
        )?;
        self.trainer.save_weights(&dir)?;
        let encoder = Artifact::of_file(&dir, ArtifactKind::BurnEncoder)?;
        let weights_sha256 = encoder.sha256.clone();
        artifacts.push(encoder);
        artifacts.push(Artifact::of_file(&dir, ArtifactKind::BurnHead)?);
        let manifest = Manifest {
            producer: format!("edgeclr-device {}", env!("CARGO_PKG_VERSION")),
            artifacts,
            quantization,
            drift: Default::default(),
            source: Source {
                run: format!(
                    "on-device fine-tuning of {base_version}, step {}",
                    self.trainer.steps()
                ),
                weights_sha256,
                model_version: version,
            },
            recipe: Some(self.trainer.recipe().clone()),
            ..self.base.clone()
        };
        manifest.save(&dir)?;
        self.slots.commit(&name)?;
        Ok(name)
    }

    /// Judges slot `candidate` against the current slot on `holdout`.
    pub fn judge(&self, candidate: &str, holdout: &[&RgbImage]) -> Decision {
        let running = self.slots.current_name().unwrap_or_default();
        let factory = self.slots.factory_name().filter(|f| *f != running);
        let t = Instant::now();
        let health = |name: &str| -> Result<Health> {
            let dir = self.slots.dir(name);
            let m = slots::verify(&dir).map_err(anyhow::Error::msg)?;
            health_of(
                &model_file(&dir, &m, self.artifact),
                holdout,
                &self.augment,
                self.probe.as_ref(),
            )
        };
        let measured = (|| -> Result<(Health, Health, Option<Health>)> {
            Ok((
                health(candidate)?,
                health(&running)?,
                factory.as_deref().map(health).transpose()?,
            ))
        })();
        let (accepted, reasons, ch, rh, fh) = match measured {
            Ok((c, r, f)) => {
                let mut v = self.section.tolerance.judge(&c, &r);
                // Against the shipped model too, so small steps cannot add up to a large drift
                // through a chain of promotions.
                if let Some(f) = &f {
                    let vf = self.section.tolerance.judge(&c, f);
                    v.accept &= vf.accept;
                    v.reasons.extend(
                        vf.reasons
                            .into_iter()
                            .map(|r| format!("vs factory model: {r}")),
                    );
                }
                (v.accept, v.reasons, Some(c), Some(r), f)
            }
            Err(e) => (
                false,
                vec![format!("candidate does not load or run: {e:#}")],
                None,
                None,
                None,
            ),
        };
        Decision {
            step: self.trainer.steps(),
            candidate: candidate.into(),
            running,
            accepted,
            reasons,
            candidate_health: ch,
            running_health: rh,
            factory_health: fh,
            export_ms: 0.0,
            eval_ms: t.elapsed().as_secs_f64() * 1e3,
        }
    }

    fn log_decision(&self, d: &Decision) {
        if d.accepted {
            info!(
                "candidate {} promoted (alignment {:.4}, uniformity {:.4}, effective rank {:.1})",
                d.candidate,
                d.candidate_health.map_or(f64::NAN, |h| h.alignment),
                d.candidate_health.map_or(f64::NAN, |h| h.uniformity),
                d.candidate_health.map_or(f64::NAN, |h| h.effective_rank)
            );
        } else {
            warn!(
                "candidate {} discarded: {}",
                d.candidate,
                d.reasons.join("; ")
            );
        }
        let path = self.slots.root().join("decisions.jsonl");
        let line = serde_json::to_string(d).unwrap_or_default();
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| writeln!(f, "{line}").and_then(|()| f.sync_data()));
        if let Err(e) = written {
            warn!("{}: {e}", path.display());
        }
    }

    /// Runs until `stop`: admits offered frames, trains at the duty cycle, exports and judges
    /// candidates, promotes the good ones. Checkpoints the trainer when it stops.
    pub fn run(mut self, offers: &Receiver<Offer>, stop: &AtomicBool) -> FinetuneReport {
        let started = Instant::now();
        let mut report = FinetuneReport {
            backend: self.backend.clone(),
            ..FinetuneReport::default()
        };
        let mut replay: ReplayBuffer<Sample> = ReplayBuffer::new(self.section.replay_capacity);
        let mut holdout: ReplayBuffer<Sample> = ReplayBuffer::new(self.section.holdout_capacity);
        let live_n = ((self.section.trainer.batch as f64 * self.section.live_fraction).round()
            as usize)
            .min(self.section.trainer.batch);
        let mut live: std::collections::VecDeque<Sample> = std::collections::VecDeque::new();
        let mut rng = ChaCha8Rng::seed_from_u64(self.section.trainer.seed ^ 0x9e37);
        let mut step_ms: Window<256> = Window::default();
        let mut losses: Vec<f32> = Vec::new();
        let mut busy = Duration::ZERO;
        let mut since_candidate = 0u64;
        let mut offered = 0u64;
        let batch = self.section.trainer.batch;
        while !stop.load(Ordering::Relaxed) {
            // Admit what arrived.
            let mut got_any = false;
            loop {
                match offers.recv_timeout(Duration::ZERO) {
                    Recv::Item(o) => {
                        got_any = true;
                        offered += 1;
                        let sample = Sample {
                            frame_id: o.frame_id,
                            image: o.image,
                        };
                        if offered % self.section.holdout_every == 0 {
                            holdout.offer(sample, &o.key);
                        } else {
                            if live_n > 0 {
                                live.push_back(sample.clone());
                                while live.len() > live_n {
                                    live.pop_front();
                                }
                            }
                            replay.offer(sample, &o.key);
                        }
                    }
                    Recv::Timeout => break,
                    Recv::Closed => break,
                }
            }
            if replay.len() < batch || holdout.len() < 4 {
                if !got_any {
                    std::thread::sleep(Duration::from_millis(20));
                }
                continue;
            }
            // A batch: the newest live frames, then distinct replayed ones.
            let work = Instant::now();
            let mut chosen: Vec<Sample> = live.drain(..).collect();
            let mut pool: Vec<&Sample> = replay.items().collect();
            pool.shuffle(&mut rng);
            chosen.extend(pool.into_iter().take(batch - chosen.len()).cloned());
            let r = self.pool.install(|| self.trainer.step(&chosen));
            step_ms.push(r.ms as f32);
            losses.push(r.loss);
            report.steps += 1;
            since_candidate += 1;
            self.progress.lock().expect("progress lock").loss = Some(r.loss);
            if since_candidate >= self.section.update_every {
                since_candidate = 0;
                let pool = self.pool.clone();
                let d = pool.install(|| self.candidate(&replay, &holdout));
                report.decisions.push(d);
            }
            let spent = work.elapsed();
            busy += spent;
            // Duty cycle: sleep so work is `duty_cycle` of the wall time (in short naps, so a
            // stop is prompt).
            let rest = spent.mul_f64((1.0 - self.section.duty_cycle) / self.section.duty_cycle);
            let until = Instant::now() + rest;
            while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                std::thread::sleep((until - Instant::now()).min(Duration::from_millis(50)));
            }
        }
        if report.steps > 0 {
            if let Err(e) = self.trainer.checkpoint(&self.checkpoints) {
                warn!("fine-tuning checkpoint: {e:#}");
            }
        }
        let mean = |s: &[f32]| s.iter().sum::<f32>() / s.len().max(1) as f32;
        report.loss_first = mean(&losses[..losses.len().min(10)]);
        report.loss_last = mean(&losses[losses.len().saturating_sub(10)..]);
        report.step_p50_ms = step_ms.quantile(0.5);
        report.frames_offered = offered;
        report.replay_len = replay.len();
        report.holdout_len = holdout.len();
        report.busy_fraction = busy.as_secs_f64() / started.elapsed().as_secs_f64().max(1e-9);
        report
    }

    /// Export → judge → promote or discard, then checkpoint.
    fn candidate(
        &mut self,
        replay: &ReplayBuffer<Sample>,
        holdout: &ReplayBuffer<Sample>,
    ) -> Decision {
        let t = Instant::now();
        let calib: Vec<&RgbImage> = replay.items().take(64).map(|s| s.image.as_ref()).collect();
        let held: Vec<&RgbImage> = holdout.items().map(|s| s.image.as_ref()).collect();
        let mut d = match self.export_candidate(&calib) {
            Ok(name) => {
                let export_ms = t.elapsed().as_secs_f64() * 1e3;
                let mut d = self.judge(&name, &held);
                d.export_ms = export_ms;
                d
            }
            Err(e) => Decision {
                step: self.trainer.steps(),
                candidate: String::new(),
                running: self.slots.current_name().unwrap_or_default(),
                accepted: false,
                reasons: vec![format!("export failed: {e:#}")],
                candidate_health: None,
                running_health: None,
                factory_health: None,
                export_ms: t.elapsed().as_secs_f64() * 1e3,
                eval_ms: 0.0,
            },
        };
        if d.accepted {
            if let Err(e) = self.slots.promote(&d.candidate) {
                d.accepted = false;
                d.reasons.push(format!("switch failed: {e}"));
            } else {
                self.base =
                    slots::verify(&self.slots.dir(&d.candidate)).unwrap_or(self.base.clone());
                self.slots.prune(self.section.keep_slots);
            }
        }
        if !d.accepted {
            if !d.candidate.is_empty() {
                let _ = std::fs::remove_dir_all(self.slots.dir(&d.candidate));
            }
            // Back to the last good weights: a collapsed or drifting trainer does not recover
            // by itself.
            if let Some(cur) = self.slots.current_name() {
                let dir = self.slots.dir(&cur);
                if let Err(e) = self.trainer.reload(&dir) {
                    warn!("reloading {}: {e:#}", dir.display());
                }
            }
        }
        self.log_decision(&d);
        if let Err(e) = self.trainer.checkpoint(&self.checkpoints) {
            warn!("fine-tuning checkpoint: {e:#}");
        }
        d
    }
}

/// Every `every`-th frame of a recording, downscaled to training scale for `size`-px models
/// (short side `2·size`), with its frame id.
///
/// # Errors
/// When the recording cannot be opened, a frame does not decode, or it holds no frame.
pub fn recording_frames(
    spec: &crate::source::SourceSpec,
    size: usize,
    every: usize,
) -> Result<Vec<(u64, RgbImage)>> {
    let mut src = crate::source::open(spec, crate::source::CaptureSettings::replay())?;
    let mut frames = Vec::new();
    while let Ok(f) = src.next_frame() {
        if f.id as usize % every.max(1) == 0 {
            frames.push((f.id, downscale(&f.to_rgb()?, 2 * size)));
        }
    }
    if frames.is_empty() {
        bail!("{spec} has no frames");
    }
    Ok(frames)
}

/// Downscales `img` so its short side is `side` (area-averaging), for the replay buffer.
pub fn downscale(img: &RgbImage, side: usize) -> RgbImage {
    let (w, h) = (img.width(), img.height());
    let short = w.min(h);
    if short <= side {
        return img.clone();
    }
    let (nw, nh) = ((w * side).div_ceil(short), (h * side).div_ceil(short));
    let src = image::RgbImage::from_raw(w as u32, h as u32, img.as_bytes().to_vec())
        .expect("sizes match");
    let small = image::imageops::resize(
        &src,
        nw as u32,
        nh as u32,
        image::imageops::FilterType::Triangle,
    );
    RgbImage::new(nw, nh, small.into_raw()).expect("sizes match")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceSpec;
    use edgeclr_models::SimclrConfig;
    use edgeclr_models::checkpoint::save_weights;
    use edgeclr_models::encoder::{Architecture, EncoderConfig};
    use edgeclr_models::export::FoldedResNet;
    use edgeclr_models::export::manifest::{FORMAT_VERSION, InputSpec};

    const SIZE: usize = 16;

    /// Frames of the shipped street clip at training scale.
    fn clip_frames(n: usize) -> Vec<RgbImage> {
        let spec: SourceSpec = format!(
            "mjpeg:{}/../tests/data/camera/clip_320x240.mjpeg",
            env!("CARGO_MANIFEST_DIR")
        )
        .parse()
        .expect("spec");
        // Consecutive frames are near-duplicates: take every (100 / n)-th for variety.
        recording_frames(&spec, SIZE, 100 / n)
            .expect("clip")
            .into_iter()
            .map(|(_, f)| f)
            .take(n)
            .collect()
    }

    /// A model folder for `net`, with the recipe and burn weights of `model` when given.
    fn write_model(
        dir: &Path,
        net: &FoldedResNet,
        model: Option<(&SimclrConfig, &edgeclr_models::Simclr)>,
        version: &str,
    ) {
        std::fs::create_dir_all(dir).expect("dir");
        let calib: Vec<Vec<f32>> = Vec::new();
        let (mut artifacts, _) = write_artifacts(
            net,
            SIZE,
            &[ArtifactKind::OnnxFp32],
            &calib,
            QuantConfig::default(),
            "none",
            dir,
        )
        .expect("export");
        if let Some((_, m)) = model {
            save_weights(&m.encoder, &dir.join("encoder.bpk")).expect("encoder");
            save_weights(&m.head, &dir.join("head.bpk")).expect("head");
            artifacts.push(Artifact::of_file(dir, ArtifactKind::BurnEncoder).expect("artifact"));
            artifacts.push(Artifact::of_file(dir, ArtifactKind::BurnHead).expect("artifact"));
        }
        Manifest {
            format_version: FORMAT_VERSION,
            producer: "test".into(),
            encoder: EncoderConfig::new(Architecture::Resnet8),
            output_dim: net.output_dim(),
            input: InputSpec {
                size: SIZE,
                layout: "NCHW".into(),
                normalize: edgeclr_models::augment::normalize::Normalize::CIFAR10,
            },
            artifacts,
            quantization: None,
            drift: Default::default(),
            source: Source {
                run: "test".into(),
                weights_sha256: String::new(),
                model_version: version.into(),
            },
            recipe: model.map(|(r, _)| r.clone()),
        }
        .save(dir)
        .expect("manifest");
    }

    #[test]
    fn a_corrupted_candidate_is_rejected_and_an_equal_one_accepted() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let device = burn::tensor::Device::flex();
        let recipe = SimclrConfig {
            encoder: EncoderConfig::new(Architecture::Resnet8),
            ..SimclrConfig::default()
        };
        let model = recipe.init_model(&device);
        let net = model.encoder.fold();
        let factory = tmp.path().join("factory");
        write_model(&factory, &net, Some((&recipe, &model)), "base");
        let slots = Slots::open(&tmp.path().join("state")).expect("state");
        assert_eq!(slots.install(&factory).expect("install"), "base");
        let section = FinetuneSection {
            enabled: true,
            device: DeviceChoice::Cpu,
            ..FinetuneSection::default()
        };
        let ft = Finetuner::new(section, &factory, slots.clone(), ArtifactChoice::Fp32)
            .expect("finetuner");
        let frames = clip_frames(20);
        let held: Vec<&RgbImage> = frames.iter().collect();

        // The same weights: no worse, accepted.
        write_model(&slots.dir("same"), &net, None, "same");
        let d = ft.judge("same", &held);
        assert!(d.accepted, "{d:?}");
        let (c, r) = (
            d.candidate_health.expect("measured"),
            d.running_health.expect("measured"),
        );
        assert!(
            (c.alignment - r.alignment).abs() < 1e-9 && c.effective_rank > 2.0,
            "{c:?}"
        );

        // Every weight zeroed (a diverged or truncated training run): constant output, collapse.
        let mut zero = net.clone();
        let convs = zero
            .blocks
            .iter_mut()
            .flat_map(|b| b.convs.iter_mut().chain(b.shortcut.as_mut()));
        for conv in std::iter::once(&mut zero.stem).chain(convs) {
            conv.weight.iter_mut().for_each(|w| *w = 0.0);
            conv.bias.iter_mut().for_each(|b| *b = 0.0);
        }
        write_model(&slots.dir("zeroed"), &zero, None, "zeroed");
        let d = ft.judge("zeroed", &held);
        assert!(
            !d.accepted && d.reasons.iter().any(|r| r.starts_with("collapsed")),
            "{d:?}"
        );

        // A candidate whose file changed after it was written does not load: rejected.
        write_model(&slots.dir("tampered"), &net, None, "tampered");
        let f = slots.dir("tampered").join("encoder.onnx");
        let mut bytes = std::fs::read(&f).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0x55;
        std::fs::write(&f, bytes).expect("write");
        let d = ft.judge("tampered", &held);
        assert!(!d.accepted && d.reasons[0].contains("sha256"), "{d:?}");
        // The running model is untouched by judging.
        assert_eq!(slots.current_name().as_deref(), Some("base"));
    }
}
