//! The running pipeline: capture → drop-oldest queue → decode + preprocess → drop-oldest
//! queue → embedding workers (one tract state each) → sinks, with a monitor that refreshes
//! the status screen, pings the systemd watchdog, samples memory and ends the run.
//!
//! Every stage has its own thread, so on a multi-core board decoding overlaps embedding and a
//! slow stage drops (counted) instead of stalling capture.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use edgeclr_artifact::RgbImage;
use edgeclr_runtime::OrtSettings;
use edgeclr_runtime::embed::Preprocess;
use serde::Serialize;
use tracing::{debug, info, warn};

use crate::config::choice::EmbedChoice;
use crate::display::Screen;
use crate::error::SourceError;
use crate::learner::{FinetuneReport, Learner, Offer};
use crate::live::LiveModel;
use crate::queue::{self, Recv};
use crate::sink::{BoardStatus, Embedding, SinkReport, SinkWorker};
use crate::slots::{self, Slots, model_file};
use crate::source::FrameSource;
use crate::stats::{Status, Window};

/// Pipeline settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// Frames held between capture and decoding.
    pub queue_capacity: usize,
    /// Embedding threads.
    pub embed_workers: usize,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Status refresh / watchdog period.
    pub refresh: Duration,
    /// Peak RSS that triggers a warning.
    pub memory_budget_mib: u64,
    /// Notify systemd (READY, WATCHDOG, STATUS) when run under it.
    pub systemd: bool,
    /// Wait for queue space instead of dropping the oldest frame: for recordings replayed as
    /// fast as possible, where every frame should be embedded. Live sources drop.
    pub lossless: bool,
    /// How often the sinks get the board's state ([`BoardStatus`]); also at every model swap.
    pub status_every: Duration,
    /// How long the sinks may take to deliver what is queued at the end.
    pub sink_drain: Duration,
}

/// A frame decoded and preprocessed, waiting for an embedder.
struct Prepared {
    id: u64,
    captured: Instant,
    chw: Vec<f32>,
    /// The frame at training scale, for frames sampled for fine-tuning.
    train: Option<Arc<RgbImage>>,
}

/// What a run may add to the stream.
#[derive(Default)]
pub struct Extras {
    /// Model slots to follow: when `current` moves (a promoted candidate, `edgeclr-device
    /// rollback`), the new model is loaded on the same engine and hot-swapped.
    pub slots: Option<Follow>,
    /// On-device fine-tuning (or any other [`Learner`]).
    pub finetune: Option<Box<dyn Learner>>,
}

/// The slots a run follows and how it opens what they point at.
pub struct Follow {
    /// The board's model slots.
    pub slots: Slots,
    /// Engine × precision of the running model.
    pub choice: EmbedChoice,
    /// onnxruntime's settings, for `choice.backend == onnxruntime`.
    pub ort: OrtSettings,
}

/// Shared counters.
#[derive(Debug, Default)]
struct Counters {
    embedded: AtomicU64,
    bad_frames: AtomicU64,
    reopens: AtomicU64,
    embed_errors: AtomicU64,
    last_embed_ms: AtomicU64,
}

#[derive(Debug, Default)]
struct Latencies {
    frame_to_embedding_ms: Window<1024>,
    embed_ms: Window<1024>,
    decode_ms: Window<1024>,
    preprocess_ms: Window<1024>,
}

/// What a run did (printed as JSON at the end; `--report FILE`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The source.
    pub source: String,
    /// The model version.
    pub model_version: String,
    /// Frames the source produced.
    pub frames_captured: u64,
    /// Frames overwritten in the capture queue.
    pub dropped_capture_queue: u64,
    /// Preprocessed frames overwritten before an embedder took them.
    pub dropped_embed_queue: u64,
    /// Frames that failed to decode (skipped).
    pub bad_frames: u64,
    /// Embeddings produced.
    pub frames_embedded: u64,
    /// Embedding calls that failed.
    pub embed_errors: u64,
    /// Source reopen attempts (camera unplug).
    pub source_reopens: u64,
    /// What each sink delivered and dropped.
    pub sinks: Vec<SinkReport>,
    /// Model swaps during the run: (seconds since start, new version).
    pub model_swaps: Vec<(f64, String)>,
    /// What fine-tuning did, when it ran.
    pub finetune: Option<FinetuneReport>,
    /// Wall time of the run.
    pub wall_s: f64,
    /// Embeddings per second over the run.
    pub fps: f64,
    /// Capture → embedding latency p50, ms (last 1024 frames).
    pub latency_p50_ms: f32,
    /// p99.
    pub latency_p99_ms: f32,
    /// Embedding call p50, ms.
    pub embed_p50_ms: f32,
    /// p99.
    pub embed_p99_ms: f32,
    /// Frame decode (JPEG/YUYV → RGB) p50, ms.
    pub decode_p50_ms: f32,
    /// Crop + resize + normalise p50, ms.
    pub preprocess_p50_ms: f32,
    /// Peak resident memory (VmHWM), MiB.
    pub peak_rss_mib: f64,
    /// Resident memory sampled at each refresh: (seconds since start, MiB).
    pub rss_samples: Vec<(f64, f64)>,
}

/// `VmRSS` and `VmHWM` of this process in MiB (0 where /proc is absent).
pub fn rss_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn micros_since_epoch(captured: Instant) -> u64 {
    let age = captured.elapsed();
    SystemTime::now()
        .checked_sub(age)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_micros() as u64)
}

/// Runs until the source ends, `options.duration` passes or `shutdown` is set; drains what is
/// queued, flushes the sinks and reports.
#[allow(clippy::too_many_arguments)]
pub fn run(
    mut source: Box<dyn FrameSource>,
    model: &Arc<LiveModel>,
    preprocess: Preprocess,
    sinks: Vec<SinkWorker>,
    mut screen: Option<Box<dyn Screen>>,
    options: &Options,
    shutdown: Arc<AtomicBool>,
    extras: Extras,
) -> Report {
    let started = Instant::now();
    let source_name = source.describe();
    let Extras { slots, finetune } = extras;
    let sampling = finetune
        .as_ref()
        .map(|f| (f.sample_every(), f.train_side(), f.progress()));
    let (offer_tx, offer_rx) = queue::bounded::<Offer>(NonZeroUsize::new(8).expect("non-zero"));
    let offer_tx = sampling.is_some().then(|| Arc::new(offer_tx));
    let counters = Arc::new(Counters::default());
    let latencies = Arc::new(Mutex::new(Latencies::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let cap = |n: usize| NonZeroUsize::new(n.max(1)).expect("max(1) is non-zero");
    let (frame_tx, frame_rx) = queue::bounded(cap(options.queue_capacity));
    let (prep_tx, prep_rx) = queue::bounded::<Prepared>(cap(options.embed_workers));
    let (capture_stats, prep_stats) = (frame_tx.stats(), prep_tx.stats());
    let prep_rx = Arc::new(prep_rx);
    let sinks = Arc::new(sinks);
    let live_workers = Arc::new(AtomicUsize::new(options.embed_workers));
    let lossless = options.lossless;

    std::thread::scope(|scope| {
        // Capture.
        {
            let (stop, shutdown, counters) = (stop.clone(), shutdown.clone(), counters.clone());
            scope.spawn(move || {
                let mut backoff = Duration::from_millis(100);
                while !stop.load(Ordering::Relaxed) && !shutdown.load(Ordering::Relaxed) {
                    match source.next_frame() {
                        Ok(frame) => {
                            backoff = Duration::from_millis(100);
                            let sent = if lossless {
                                frame_tx.send_waiting(frame, &stop).is_ok()
                            } else {
                                frame_tx.send(frame).is_ok()
                            };
                            if !sent {
                                break;
                            }
                        }
                        Err(SourceError::End) => break,
                        Err(e) => {
                            counters.reopens.fetch_add(1, Ordering::Relaxed);
                            warn!("capture: {e}; reopening in {backoff:?}");
                            std::thread::sleep(backoff);
                            backoff = (backoff * 2).min(Duration::from_secs(5));
                            if let Err(e) = source.reopen() {
                                debug!("reopen failed: {e}");
                            }
                        }
                    }
                }
                debug!("capture finished");
            });
        }
        // Decode + preprocess.
        {
            let (counters, stop, latencies) = (counters.clone(), stop.clone(), latencies.clone());
            let sampling = sampling.clone();
            scope.spawn(move || {
                loop {
                    match frame_rx.recv_timeout(Duration::from_millis(200)) {
                        Recv::Item(frame) => match decode_timed(&frame) {
                            Ok((rgb, decode)) => {
                                let t = Instant::now();
                                let chw = preprocess.apply(&rgb);
                                {
                                    let mut l = latencies.lock().expect("latency lock");
                                    l.decode_ms.push(decode.as_secs_f32() * 1e3);
                                    l.preprocess_ms.push(t.elapsed().as_secs_f32() * 1e3);
                                }
                                let train = sampling.as_ref().and_then(|(every, side, _)| {
                                    (frame.id % every == 0)
                                        .then(|| Arc::new(crate::frame::downscale(&rgb, *side)))
                                });
                                let p = Prepared {
                                    id: frame.id,
                                    captured: frame.captured,
                                    chw,
                                    train,
                                };
                                let sent = if lossless {
                                    prep_tx.send_waiting(p, &stop).is_ok()
                                } else {
                                    prep_tx.send(p).is_ok()
                                };
                                if !sent {
                                    break;
                                }
                            }
                            Err(e) => {
                                if counters.bad_frames.fetch_add(1, Ordering::Relaxed) < 10 {
                                    warn!("{e}; frame skipped");
                                }
                            }
                        },
                        Recv::Timeout => {}
                        Recv::Closed => break,
                    }
                }
            });
        }
        // Embedding workers.
        for w in 0..options.embed_workers {
            // A fork can fail for resources (an onnxruntime session per worker on a small
            // GPU): run with the workers that started.
            let mut worker = match model.worker() {
                Ok(worker) => worker,
                Err(e) => {
                    tracing::error!("embedding worker {w} could not start: {e}");
                    live_workers.fetch_sub(1, Ordering::Relaxed);
                    continue;
                }
            };
            let (prep_rx, counters, latencies, sinks, model, live, offers) = (
                prep_rx.clone(),
                counters.clone(),
                latencies.clone(),
                sinks.clone(),
                model.clone(),
                live_workers.clone(),
                offer_tx.clone(),
            );
            scope.spawn(move || {
                loop {
                    match prep_rx.recv_timeout(Duration::from_millis(200)) {
                        Recv::Item(p) => {
                            let t = Instant::now();
                            match worker.embed(&model, &p.chw) {
                                Ok((vector, version)) => {
                                    let embed_ms = t.elapsed().as_secs_f32() * 1e3;
                                    let total_ms = p.captured.elapsed().as_secs_f32() * 1e3;
                                    {
                                        let mut l = latencies.lock().expect("latency lock");
                                        l.embed_ms.push(embed_ms);
                                        l.frame_to_embedding_ms.push(total_ms);
                                    }
                                    counters.embedded.fetch_add(1, Ordering::Relaxed);
                                    counters.last_embed_ms.store(
                                        started.elapsed().as_millis() as u64,
                                        Ordering::Relaxed,
                                    );
                                    if let (Some(image), Some(tx)) = (p.train, &offers) {
                                        let _ = tx.send(Offer {
                                            frame_id: p.id,
                                            image,
                                            key: vector.clone(),
                                        });
                                    }
                                    let e = Arc::new(Embedding {
                                        frame_id: p.id,
                                        timestamp_us: micros_since_epoch(p.captured),
                                        model_version: version,
                                        vector,
                                    });
                                    for s in sinks.iter() {
                                        s.offer(&e);
                                    }
                                }
                                Err(e) => {
                                    counters.embed_errors.fetch_add(1, Ordering::Relaxed);
                                    warn!(worker = w, "{e}");
                                }
                            }
                        }
                        Recv::Timeout => {}
                        Recv::Closed => break,
                    }
                }
                live.fetch_sub(1, Ordering::Relaxed);
            });
        }
        // Fine-tuning.
        let finetune_handle = finetune.map(|f| {
            let done = Arc::new(AtomicBool::new(false));
            let flag = done.clone();
            (scope.spawn(move || f.run(&offer_rx, &flag)), done)
        });
        // Monitor (this thread).
        let mut watched = slots.as_ref().and_then(|f| f.slots.current_name());
        let mut model_swaps = Vec::new();
        let mut model_label = model.version();
        if options.systemd {
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
        }
        let mut status = Status::default();
        let set_model = |status: &mut Status, version: &str| {
            status.model.clear();
            for c in version.chars() {
                if status.model.push(c).is_err() {
                    break;
                }
            }
        };
        set_model(&mut status, &model_label);
        let mut last = (Instant::now(), 0u64);
        let mut rss_samples = Vec::new();
        let mut warned_memory = false;
        let (mut last_status, mut announced) = (Instant::now(), model_label.clone());
        while live_workers.load(Ordering::Relaxed) > 0 {
            // Short steps so the run ends promptly when the workers finish; work happens
            // once per refresh.
            std::thread::sleep(options.refresh.min(Duration::from_millis(5)));
            // A learner ends early when it has taken its step budget (or panicked: the join
            // below reports that).
            let learner_done = finetune_handle
                .as_ref()
                .is_some_and(|(h, _)| h.is_finished());
            if options.duration.is_some_and(|d| started.elapsed() >= d)
                || shutdown.load(Ordering::Relaxed)
                || learner_done
            {
                stop.store(true, Ordering::Relaxed);
            }
            if last.0.elapsed() < options.refresh {
                continue;
            }
            let embedded = counters.embedded.load(Ordering::Relaxed);
            status.fps = (embedded - last.1) as f32 / last.0.elapsed().as_secs_f32();
            last = (Instant::now(), embedded);
            if status.fps_history.is_full() {
                status.fps_history.remove(0);
            }
            let _ = status.fps_history.push(status.fps);
            status.frames = embedded;
            status.queue_drops = capture_stats.dropped.load(Ordering::Relaxed)
                + prep_stats.dropped.load(Ordering::Relaxed);
            status.sink_drops = sinks
                .iter()
                .map(|s| s.stats().dropped.load(Ordering::Relaxed))
                .sum();
            status.bad_frames = counters.bad_frames.load(Ordering::Relaxed);
            if last_status.elapsed() >= options.status_every || announced != model_label {
                last_status = Instant::now();
                announced = model_label.clone();
                let board = Arc::new(board_status(&status, &model_label, started));
                for s in sinks.iter() {
                    s.offer_status(&board);
                }
            }
            if let Some((_, _, progress)) = &sampling {
                status.finetune_loss = progress.lock().expect("progress lock").loss;
            }
            // Follow the slot pointer: a promoted candidate or a manual rollback.
            if let Some(Follow {
                slots: s,
                choice,
                ort,
            }) = &slots
            {
                let now = s.current_name();
                if now.is_some() && now != watched {
                    watched = now.clone();
                    let name = now.unwrap_or_default();
                    let dir = s.dir(&name);
                    match slots::verify(&dir)
                        .map_err(anyhow::Error::msg)
                        .and_then(|m| {
                            let opened = edgeclr_runtime::embed::open_on(
                                &model_file(&dir, &m, choice.artifact),
                                choice.backend,
                                ort,
                            )?;
                            Ok((opened, m))
                        }) {
                        Ok((opened, m)) => {
                            model.swap(opened.embedder, &m.source.model_version);
                            model_label = model.version();
                            set_model(&mut status, &model_label);
                            info!("now embedding with {}", m.source.model_version);
                            model_swaps.push((
                                started.elapsed().as_secs_f64(),
                                m.source.model_version.clone(),
                            ));
                        }
                        Err(e) => warn!("slot {name} does not load ({e:#}); keeping {model_label}"),
                    }
                }
            }
            {
                let l = latencies.lock().expect("latency lock");
                status.embed_p50_ms = l.embed_ms.quantile(0.5);
                status.embed_p99_ms = l.embed_ms.quantile(0.99);
            }
            if let Some(s) = screen.as_mut()
                && let Err(e) = s.show(&status)
            {
                warn!("display: {e}");
                screen = None;
            }
            let (rss, peak) = rss_mib();
            rss_samples.push((started.elapsed().as_secs_f64(), rss));
            if peak > options.memory_budget_mib as f64 && !warned_memory {
                warn!(
                    "peak RSS {peak:.0} MiB exceeds the board budget of {} MiB",
                    options.memory_budget_mib
                );
                warned_memory = true;
            }
            if options.systemd {
                // The watchdog is fed only while embeddings flow (or the source is idle at its end).
                let age_ms = started.elapsed().as_millis() as u64
                    - counters.last_embed_ms.load(Ordering::Relaxed);
                let status_line = format!("STATUS={:.1} fps, {} frames", status.fps, status.frames);
                let mut states = vec![sd_notify::NotifyState::Custom(&status_line)];
                if age_ms < 10_000 {
                    states.push(sd_notify::NotifyState::Watchdog);
                }
                let _ = sd_notify::notify(false, &states);
            }
            debug!(fps = status.fps, frames = status.frames, "status");
        }
        stop.store(true, Ordering::Relaxed);
        let finetune = finetune_handle.map(|(h, done)| {
            done.store(true, Ordering::Relaxed);
            h.join().expect("fine-tuning thread panicked")
        });
        // Final screen with the end state.
        if let Some(s) = screen.as_mut() {
            status.frames = counters.embedded.load(Ordering::Relaxed);
            let _ = s.show(&status);
        }
        let wall_s = started.elapsed().as_secs_f64();
        let l = latencies.lock().expect("latency lock");
        let frames_embedded = counters.embedded.load(Ordering::Relaxed);
        Report {
            source: source_name.clone(),
            model_version: model_label.to_string(),
            frames_captured: capture_stats.sent.load(Ordering::Relaxed),
            dropped_capture_queue: capture_stats.dropped.load(Ordering::Relaxed),
            dropped_embed_queue: prep_stats.dropped.load(Ordering::Relaxed),
            bad_frames: counters.bad_frames.load(Ordering::Relaxed),
            frames_embedded,
            embed_errors: counters.embed_errors.load(Ordering::Relaxed),
            source_reopens: counters.reopens.load(Ordering::Relaxed),
            sinks: Vec::new(),
            model_swaps,
            finetune,
            wall_s,
            fps: frames_embedded as f64 / wall_s,
            latency_p50_ms: l.frame_to_embedding_ms.quantile(0.5),
            latency_p99_ms: l.frame_to_embedding_ms.quantile(0.99),
            embed_p50_ms: l.embed_ms.quantile(0.5),
            embed_p99_ms: l.embed_ms.quantile(0.99),
            decode_p50_ms: l.decode_ms.quantile(0.5),
            preprocess_p50_ms: l.preprocess_ms.quantile(0.5),
            peak_rss_mib: rss_mib().1,
            rss_samples,
        }
    })
    .with_sinks(
        Arc::try_unwrap(sinks).expect("workers have finished"),
        options.sink_drain,
    )
}

/// What the sinks are told of the board (MQTT's retained status).
fn board_status(status: &Status, model: &str, started: Instant) -> BoardStatus {
    BoardStatus {
        model_version: model.to_string(),
        fps: status.fps,
        frames: status.frames,
        dropped_frames: status.queue_drops,
        sink_drops: status.sink_drops,
        uptime_s: started.elapsed().as_secs_f64(),
    }
}

impl Report {
    /// Flushes and stops the sinks, recording their counters.
    fn with_sinks(mut self, sinks: Vec<SinkWorker>, drain: Duration) -> Self {
        self.sinks = crate::sink::finish_all(sinks, drain);
        info!(
            frames = self.frames_embedded,
            fps = format!("{:.1}", self.fps),
            dropped = self.dropped_capture_queue + self.dropped_embed_queue,
            "pipeline finished"
        );
        self
    }
}

/// The frame's pixels and how long decoding took.
fn decode_timed(
    frame: &crate::frame::Frame,
) -> Result<(edgeclr_artifact::RgbImage, Duration), crate::error::FrameError> {
    let t = Instant::now();
    frame.to_rgb().map(|rgb| (rgb, t.elapsed()))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use edgeclr_learn::encoder::{Architecture, EncoderConfig};
    use edgeclr_learn::export::onnx::{self, Batch};
    use edgeclr_runtime::embed::{Embedder, TractEmbedder};

    use super::*;
    use crate::sink::memory::MemorySink;
    use crate::source::{CaptureSettings, synthetic::SyntheticSource};

    /// A random-init resnet8 exported in memory at `size` px.
    fn embedder(size: usize) -> Box<dyn Embedder> {
        let encoder = EncoderConfig::new(Architecture::Resnet8).init(&burn::tensor::Device::flex());
        let bytes = onnx::fp32(&encoder.fold(), Batch::One, size);
        Box::new(TractEmbedder::from_bytes(&bytes, size, Path::new("<test>")).expect("loads"))
    }

    /// The synthetic source with `settings` through the pipeline (one worker, no screen) at
    /// `size` px into a memory sink holding up to `sink_capacity` embeddings.
    fn run_synthetic(
        settings: CaptureSettings,
        size: usize,
        sink_capacity: usize,
    ) -> (Report, MemorySink) {
        let memory = MemorySink::default();
        let sinks = vec![SinkWorker::spawn(Box::new(memory.clone()), sink_capacity)];
        let pre = Preprocess {
            size,
            normalize: edgeclr_artifact::normalize::Normalize::CIFAR10,
        };
        let r = run(
            Box::new(SyntheticSource::new(settings)),
            &Arc::new(LiveModel::new(embedder(size), "v1")),
            pre,
            sinks,
            None,
            &options(1),
            Arc::new(AtomicBool::new(false)),
            Extras::default(),
        );
        (r, memory)
    }

    fn options(workers: usize) -> Options {
        Options {
            queue_capacity: 2,
            embed_workers: workers,
            duration: None,
            refresh: Duration::from_millis(50),
            memory_budget_mib: u64::MAX,
            systemd: false,
            lossless: false,
            status_every: Duration::from_secs(5),
            sink_drain: Duration::from_secs(10),
        }
    }

    #[test]
    fn paced_frames_reach_the_sink_in_order_and_every_frame_is_accounted_for() {
        let settings = CaptureSettings {
            width: 64,
            height: 48,
            fps: 50.0,
            as_fast_as_possible: false,
            max_frames: Some(10),
            looped: false,
        };
        let (r, memory) = run_synthetic(settings, 16, 64);
        // Paced at 50 fps a 16-px embedding keeps up; a loaded test machine may still stall a
        // worker long enough for drop-oldest to act, so the accounting is what is exact.
        assert_eq!((r.frames_captured, r.bad_frames), (10, 0));
        assert_eq!(
            r.frames_embedded + r.dropped_capture_queue + r.dropped_embed_queue,
            10,
            "{r:?}"
        );
        assert!(r.frames_embedded >= 8, "{r:?}");
        assert_eq!(r.sinks[0].delivered, r.frames_embedded, "delivered");
        let items = memory.items.lock().expect("lock");
        let ids: Vec<u64> = items.iter().map(|e| e.frame_id).collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]) && ids.last() == Some(&9),
            "{ids:?}"
        );
        assert!(
            items
                .iter()
                .all(|e| e.vector.len() == 128 && &*e.model_version == "v1")
        );
        assert!(r.latency_p50_ms > 0.0 && r.latency_p99_ms >= r.latency_p50_ms);
    }

    #[test]
    fn an_unpaced_source_keeps_the_newest_frame_and_the_drops_add_up() {
        let settings = CaptureSettings {
            width: 320,
            height: 240,
            fps: 1.0,
            as_fast_as_possible: true,
            max_frames: Some(300),
            looped: false,
        };
        let (r, memory) = run_synthetic(settings, 32, 1024);
        assert_eq!(r.frames_captured, 300);
        assert_eq!(
            r.frames_embedded + r.dropped_capture_queue + r.dropped_embed_queue,
            300,
            "{r:?}"
        );
        assert_eq!(
            memory.items.lock().expect("lock").len() as u64,
            r.frames_embedded
        );
        let ids: Vec<u64> = memory
            .items
            .lock()
            .expect("lock")
            .iter()
            .map(|e| e.frame_id)
            .collect();
        assert_eq!(ids.last(), Some(&299), "the newest frame is never dropped");
    }
}
