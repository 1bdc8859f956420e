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
//! ([`edgeclr_runtime::health`]) and promotes it only when it is no worse; the pipeline notices
//! the pointer move and hot-swaps ([`crate::live`]). A rejected candidate is deleted and
//! training restarts from the running model's weights. With `max_steps` the fine-tuner
//! stops after that many steps, judging the last ones as a candidate, and the run ends: a
//! measurement in steps rather than in wall time.

pub mod negatives;
pub mod rehearsal;
pub mod replay;
pub mod trainer;

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use edgeclr_artifact::manifest::{Artifact, Source};
use edgeclr_artifact::{ArtifactKind, Manifest, Preprocess, RgbImage};
use edgeclr_learn::augment::{AugmentConfig, BatchBuilder};
use edgeclr_learn::checkpoint::CheckpointDir;
use edgeclr_learn::device::{DeviceChoice, SelectedDevice, select_device};
use edgeclr_learn::export::recipe::to_json;
use edgeclr_learn::export::{QuantConfig, recipe_of, write_artifacts};
use edgeclr_runtime::health::{self, Measurement};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use tracing::{info, warn};

use crate::config::ArtifactChoice;
use crate::config::finetune::{FinetuneSection, TrainDevice};
use crate::learner::{Decision, FinetuneReport, Learner, Offer, Progress};
use crate::queue::{Receiver, Recv};
use crate::slots::{self, Slots, model_file};
use crate::stats::Window;
use rehearsal::Rehearsal;
use replay::ReplayBuffer;
use trainer::{Sample, Trainer};

/// The burn device for a profile's `[finetune] device`.
///
/// # Errors
/// When `wgpu` is asked for and this build has no GPU backend or no adapter starts.
pub fn select_backend(d: TrainDevice) -> Result<SelectedDevice> {
    let choice = match d {
        TrainDevice::Auto => DeviceChoice::Auto,
        TrainDevice::Cpu => DeviceChoice::Cpu,
        TrainDevice::Wgpu => DeviceChoice::Wgpu,
    };
    Ok(select_device(choice)?)
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
    rehearsal: Option<Rehearsal>,
    augment: AugmentConfig,
    /// Live progress.
    pub progress: Arc<Mutex<Progress>>,
    /// The training side length frames are downscaled to.
    pub train_side: usize,
    started: Instant,
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
/// preprocessing), two augmented views per frame at the deployed size with a fixed seed (the
/// same views for every model compared), the per-frame held-out view losses, and kNN on
/// `probe` when given.
///
/// # Errors
/// When the model does not verify, load or run.
pub fn health_of(
    path: &Path,
    frames: &[&RgbImage],
    augment: &AugmentConfig,
    probe: Option<&Probe>,
) -> Result<Measurement> {
    let opened = edgeclr_runtime::embed::open(path)?;
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
    let mut m = Measurement::of(&clean, &a, &b);
    if let Some(p) = probe {
        let bank = e.embed_all(&p.bank)?;
        let queries = e.embed_all(&p.queries)?;
        m.health.knn_top1 = Some(health::knn_top1(
            &bank,
            &p.bank_labels,
            &queries,
            &p.query_labels,
            20,
        ));
    }
    Ok(m)
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
        let recipe = recipe_of(&manifest)?.with_context(|| {
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
        let selected = select_backend(section.device)?;
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
        let section_augment = trainer::augment(&section.trainer, size, &recipe);
        let probe = match &section.probe {
            Some(p) => Some(read_probe(p, &preprocess)?),
            None => None,
        };
        let rehearsal = section
            .rehearsal
            .as_deref()
            .map(Rehearsal::load)
            .transpose()?;
        if let Some(r) = &rehearsal {
            info!("rehearsing {} source images in every batch", r.len());
        }
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
            rehearsal,
            augment: section_augment,
            progress: Arc::default(),
            started: Instant::now(),
        })
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
            recipe: Some(to_json(self.trainer.recipe())),
            ..self.base.clone()
        };
        manifest.save(&dir)?;
        self.slots.commit(&name)?;
        Ok(name)
    }

    /// Judges slot `candidate` against the current slot on `holdout` — and against the factory
    /// slot when that is not the current one, so that small steps cannot add up to a drift
    /// through a chain of promotions.
    pub fn judge(&self, candidate: &str, holdout: &[&RgbImage]) -> Decision {
        let running = self.slots.current_name().unwrap_or_default();
        let factory = self.slots.factory_name().filter(|f| *f != running);
        let t = Instant::now();
        let measure = |name: &str| -> Result<Measurement> {
            let dir = self.slots.dir(name);
            let m = slots::verify(&dir).map_err(anyhow::Error::msg)?;
            health_of(
                &model_file(&dir, &m, self.artifact),
                holdout,
                &self.augment,
                self.probe.as_ref(),
            )
        };
        let measured = (|| -> Result<(Measurement, Measurement, Option<Measurement>)> {
            Ok((
                measure(candidate)?,
                measure(&running)?,
                factory.as_deref().map(measure).transpose()?,
            ))
        })();
        let mut d = Decision {
            step: self.trainer.steps(),
            candidate: candidate.into(),
            running,
            accepted: false,
            reasons: Vec::new(),
            candidate_health: None,
            running_health: None,
            factory_health: None,
            rank_vs_running: None,
            rank_vs_factory: None,
            vs_running: None,
            vs_factory: None,
            restarted: true,
            export_ms: 0.0,
            eval_ms: 0.0,
            at_s: 0.0,
        };
        match measured {
            Ok((c, r, f)) => {
                let v = self.section.tolerance.judge(&c, &r);
                (d.accepted, d.restarted, d.reasons) = (v.accept, v.broken, v.reasons);
                (d.rank_vs_running, d.vs_running) = (v.rank, v.view_loss);
                if let Some(f) = &f {
                    let vf = self.section.tolerance.judge(&c, f);
                    d.accepted &= vf.accept;
                    (d.rank_vs_factory, d.vs_factory) = (vf.rank, vf.view_loss);
                    let against = vf
                        .reasons
                        .into_iter()
                        .map(|r| format!("vs factory model: {r}"));
                    d.reasons.extend(against);
                }
                d.candidate_health = Some(c.health);
                d.running_health = Some(r.health);
                d.factory_health = f.map(|f| f.health);
            }
            Err(e) => d.reasons = vec![format!("candidate does not load or run: {e:#}")],
        }
        d.eval_ms = t.elapsed().as_secs_f64() * 1e3;
        d
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
    fn work(mut self, offers: &Receiver<Offer>, stop: &AtomicBool) -> FinetuneReport {
        let started = Instant::now();
        self.started = started;
        let mut report = FinetuneReport {
            backend: self.backend.clone(),
            batch: self.section.trainer.batch,
            ..FinetuneReport::default()
        };
        let mut replay: ReplayBuffer<Sample> = ReplayBuffer::with_policy(
            self.section.replay_capacity,
            self.section.replay,
            self.section.trainer.seed,
        );
        let mut holdout: ReplayBuffer<Sample> = ReplayBuffer::new(self.section.holdout_capacity);
        let live_n = ((self.section.trainer.batch as f64 * self.section.live_fraction).round()
            as usize)
            .min(self.section.trainer.batch);
        let rehearse_n = if self.rehearsal.is_some() {
            ((self.section.trainer.batch as f64 * self.section.rehearsal_fraction).round() as usize)
                .min(self.section.trainer.batch - live_n)
        } else {
            0
        };
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
                        if offered.is_multiple_of(self.section.holdout_every) {
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
            // A batch: the newest live frames, rehearsed source images, then distinct replayed
            // frames.
            let work = Instant::now();
            let mut chosen: Vec<Sample> = live.drain(..).collect();
            if let Some(r) = &self.rehearsal {
                chosen.extend(r.draw(rehearse_n, &mut rng));
            }
            let mut pool: Vec<&Sample> = replay.items().collect();
            pool.shuffle(&mut rng);
            chosen.extend(pool.into_iter().take(batch - chosen.len()).cloned());
            let r = self.pool.install(|| self.trainer.step(&chosen));
            step_ms.push(r.ms as f32);
            losses.push(r.loss);
            report.steps += 1;
            since_candidate += 1;
            self.progress.lock().expect("progress lock").loss = Some(r.loss);
            let last = self.section.max_steps.is_some_and(|m| report.steps >= m);
            if since_candidate >= self.section.update_every || last {
                since_candidate = 0;
                let pool = self.pool.clone();
                let d = pool.install(|| self.candidate(&replay, &holdout));
                report.decisions.push(d);
            }
            let spent = work.elapsed();
            busy += spent;
            if last {
                info!(
                    "fine-tuning took its {} steps; ending the run",
                    report.steps
                );
                break;
            }
            // Duty cycle: sleep so work is `duty_cycle` of the wall time (in short naps, so a
            // stop is prompt).
            let rest = spent.mul_f64((1.0 - self.section.duty_cycle) / self.section.duty_cycle);
            let until = Instant::now() + rest;
            while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                std::thread::sleep((until - Instant::now()).min(Duration::from_millis(50)));
            }
        }
        if report.steps > 0
            && let Err(e) = self.trainer.checkpoint(&self.checkpoints)
        {
            warn!("fine-tuning checkpoint: {e:#}");
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
        if self.section.trainer.recalibrate_bn {
            let frames: Vec<&RgbImage> = replay.items().map(|s| s.image.as_ref()).collect();
            self.trainer.recalibrate_bn(&frames);
        }
        let calib: Vec<&RgbImage> = replay.items().take(64).map(|s| s.image.as_ref()).collect();
        let held: Vec<&RgbImage> = holdout.items().map(|s| s.image.as_ref()).collect();
        let mut d = match self.export_candidate(&calib) {
            Ok(name) => {
                let export_ms = t.elapsed().as_secs_f64() * 1e3;
                if self.section.keep_candidates
                    && let Err(e) = self.slots.archive(&name)
                {
                    warn!("keeping candidate {name}: {e}");
                }
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
                rank_vs_running: None,
                rank_vs_factory: None,
                vs_running: None,
                vs_factory: None,
                restarted: true,
                export_ms: t.elapsed().as_secs_f64() * 1e3,
                eval_ms: 0.0,
                at_s: 0.0,
            },
        };
        d.at_s = self.started.elapsed().as_secs_f64();
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
        if !d.accepted && !d.candidate.is_empty() {
            let _ = std::fs::remove_dir_all(self.slots.dir(&d.candidate));
        }
        // The judge decides what the camera runs, not where learning goes: a candidate that
        // is merely no better is discarded and training goes on from it (restarting every
        // `update_every` steps would cut the learner's trajectory to that many steps: the
        // host's continued pretraining never restarts). Only a broken candidate — collapsed,
        // diverged, not exported or not loadable — sends the learner back to the running
        // model's weights, since training does not recover from those by itself.
        if d.restarted
            && let Some(cur) = self.slots.current_name()
        {
            let dir = self.slots.dir(&cur);
            if let Err(e) = self.trainer.reload(&dir) {
                warn!("reloading {}: {e:#}", dir.display());
            }
        }
        self.log_decision(&d);
        if let Err(e) = self.trainer.checkpoint(&self.checkpoints) {
            warn!("fine-tuning checkpoint: {e:#}");
        }
        d
    }
}

impl Learner for Finetuner {
    fn sample_every(&self) -> u64 {
        self.section.sample_every
    }

    fn train_side(&self) -> usize {
        self.train_side
    }

    fn progress(&self) -> Arc<Mutex<Progress>> {
        self.progress.clone()
    }

    fn run(self: Box<Self>, offers: &Receiver<Offer>, stop: &AtomicBool) -> FinetuneReport {
        self.work(offers, stop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{SourceSpec, recording_frames};
    use edgeclr_artifact::manifest::{FORMAT_VERSION, InputSpec};
    use edgeclr_learn::SimclrConfig;
    use edgeclr_learn::checkpoint::save_weights;
    use edgeclr_learn::encoder::{Architecture, EncoderConfig};
    use edgeclr_learn::export::FoldedResNet;

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
        model: Option<(&SimclrConfig, &edgeclr_learn::Simclr)>,
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
            encoder: to_json(&EncoderConfig::new(Architecture::Resnet8)),
            output_dim: net.output_dim(),
            input: InputSpec {
                size: SIZE,
                layout: "NCHW".into(),
                normalize: edgeclr_artifact::normalize::Normalize::CIFAR10,
            },
            artifacts,
            quantization: None,
            drift: Default::default(),
            source: Source {
                run: "test".into(),
                weights_sha256: String::new(),
                model_version: version.into(),
            },
            recipe: model.map(|(r, _)| to_json(r)),
        }
        .save(dir)
        .expect("manifest");
    }

    #[test]
    fn a_broken_candidate_restarts_the_learner_and_an_equal_one_is_not_promoted() {
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
            device: TrainDevice::Cpu,
            ..FinetuneSection::default()
        };
        let ft = Finetuner::new(section, &factory, slots.clone(), ArtifactChoice::Fp32)
            .expect("finetuner");
        let frames = clip_frames(20);
        let held: Vec<&RgbImage> = frames.iter().collect();

        // The same weights: not better, so not promoted — and not broken, so training goes on.
        write_model(&slots.dir("same"), &net, None, "same");
        let d = ft.judge("same", &held);
        assert!(!d.accepted && !d.restarted, "{d:?}");
        let (g, p) = (
            d.rank_vs_running.expect("ranks"),
            d.vs_running.expect("view losses"),
        );
        assert_eq!(
            (g.difference, g.se, p.mean, p.se),
            (0.0, 0.0, 0.0, 0.0),
            "{d:?}"
        );
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
            !d.accepted && d.restarted && d.reasons.iter().any(|r| r.starts_with("collapsed")),
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
        assert!(
            !d.accepted && d.restarted && d.reasons[0].contains("sha256"),
            "{d:?}"
        );
        // The running model is untouched by judging.
        assert_eq!(slots.current_name().as_deref(), Some("base"));
    }
}
