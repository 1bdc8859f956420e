//! `edgeclr-device bench`: the pipeline against the bare embedder, and the stream with
//! fine-tuning off vs on.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use edgeclr_runtime::Backend;
use edgeclr_runtime::embed::{self, Preprocess};

use super::model_path;
use crate::config::{ArtifactChoice, DeviceConfig};
use crate::live::LiveModel;
use crate::pipeline;
use crate::source::{self, CaptureSettings, SourceSpec};

/// `edgeclr-device bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Export folder.
    #[arg(long)]
    pub model: PathBuf,
    /// A recording (mjpeg:FILE or folder:DIR).
    #[arg(long, default_value = "mjpeg:tests/data/camera/clip_320x240.mjpeg")]
    pub source: SourceSpec,
    /// Passes over the recording for the throughput comparison.
    #[arg(long, default_value_t = 3)]
    pub passes: usize,
    /// fp32 or int8.
    #[arg(long, value_enum, default_value = "fp32")]
    pub artifact: ArtifactChoice,
    /// Inference engine: tract or onnxruntime (ORT_DYLIB_PATH names its library).
    #[arg(long, default_value = "tract", value_parser = clap::value_parser!(Backend))]
    pub backend: Backend,
    /// Instead: the embedding stream with fine-tuning off, then on, in this one process
    /// (the recording looped; `--seconds` each), as fast as possible and at the board's rate.
    #[arg(long)]
    pub finetune: bool,
    /// State directory for `--finetune` (slots and checkpoints; created).
    #[arg(long, default_value = "runs/bench-finetune-state")]
    pub state: PathBuf,
    /// Seconds per phase with `--finetune`.
    #[arg(long, default_value_t = 20.0)]
    pub seconds: f64,
    /// Board profile whose `[finetune]` and `[runtime]` settings apply.
    #[arg(long, default_value = "x86-dev")]
    pub board: String,
    /// Duty cycle override.
    #[arg(long)]
    pub duty_cycle: Option<f64>,
}

/// Bare embedder vs whole pipeline on the same frames, and latency at the native rate.
/// Prints the comparison as JSON.
///
/// # Errors
/// A model or recording that does not load.
pub fn run(args: BenchArgs) -> Result<()> {
    if args.finetune {
        return bench_finetune(&args);
    }
    let file = model_path(&args.model, args.artifact);
    // onnxruntime's library and providers as the board profile sets them.
    let ort = DeviceConfig::board(&args.board)
        .map_err(anyhow::Error::msg)?
        .runtime
        .onnxruntime;
    let opened = embed::open_on(&file, args.backend, &ort)?;
    let pre = Preprocess::from_manifest(&opened.manifest);
    let fast = CaptureSettings::replay();
    // Bare: decode + preprocess up front, then time only the embedder (one thread).
    let mut src = source::open(&args.source, fast)?;
    let mut inputs = Vec::new();
    while let Ok(f) = src.next_frame() {
        inputs.push(pre.apply(&f.to_rgb()?));
    }
    if inputs.is_empty() {
        bail!("{} has no frames", args.source);
    }
    let mut e = opened.embedder.fork_boxed()?;
    for x in inputs.iter().take(5) {
        e.embed(x)?;
    }
    let t = Instant::now();
    for _ in 0..args.passes {
        for x in &inputs {
            std::hint::black_box(e.embed(x)?);
        }
    }
    let bare_fps = (inputs.len() * args.passes) as f64 / t.elapsed().as_secs_f64();
    drop(inputs);
    // Pipeline: the same frames from the recording, as fast as possible, one embed worker.
    let mut options = pipeline::Options {
        queue_capacity: 2,
        embed_workers: 1,
        duration: None,
        refresh: Duration::from_millis(200),
        memory_budget_mib: u64::MAX,
        systemd: false,
        lossless: true,
        status_every: Duration::from_secs(5),
        sink_drain: Duration::from_secs(10),
    };
    // The recording through the whole pipeline, no sinks, no screen.
    let live = Arc::new(LiveModel::new(opened.embedder.fork_boxed()?, "bench"));
    let run_once =
        |settings: CaptureSettings, options: &pipeline::Options| -> Result<pipeline::Report> {
            Ok(pipeline::run(
                source::open(&args.source, settings)?,
                &live,
                pre,
                Vec::new(),
                None,
                options,
                Arc::new(AtomicBool::new(false)),
                pipeline::Extras::default(),
            ))
        };
    let mut frames = 0;
    let t = Instant::now();
    for _ in 0..args.passes {
        frames += run_once(fast, &options)?.frames_embedded;
    }
    let pipe_fps = frames as f64 / t.elapsed().as_secs_f64();
    // Native rate: latency from capture to embedding, live (drop-oldest) semantics.
    options.lossless = false;
    let paced = CaptureSettings {
        as_fast_as_possible: false,
        ..fast
    };
    let r = run_once(paced, &options)?;
    println!(
        "{}",
        serde_json::json!({
            "model": file.display().to_string(),
            "backend": args.backend.name(),
            "source": args.source.to_string(),
            "bare_embedder_fps": bare_fps,
            "pipeline_fps": pipe_fps,
            "pipeline_frames": frames,
            "pipeline_over_bare": pipe_fps / bare_fps,
            "overhead_percent": 100.0 * (1.0 - pipe_fps / bare_fps),
            "native_rate": {"fps": r.fps, "frames": r.frames_embedded, "dropped": r.dropped_capture_queue + r.dropped_embed_queue,
                             "latency_p50_ms": r.latency_p50_ms, "latency_p99_ms": r.latency_p99_ms,
                             "embed_p50_ms": r.embed_p50_ms, "embed_p99_ms": r.embed_p99_ms,
                             "decode_p50_ms": r.decode_p50_ms, "preprocess_p50_ms": r.preprocess_p50_ms},
            "peak_rss_mib": pipeline::rss_mib().1,
        })
    );
    Ok(())
}

/// Stream fps and latency with fine-tuning off vs on, same process, same recording.
#[cfg(feature = "finetune")]
fn bench_finetune(args: &BenchArgs) -> Result<()> {
    use anyhow::Context;

    use crate::finetune::Finetuner;
    use crate::learner::Learner;
    use crate::slots::{self, Slots};

    let mut cfg = DeviceConfig::board(&args.board).map_err(anyhow::Error::msg)?;
    if let Some(d) = args.duty_cycle {
        cfg.finetune.duty_cycle = d;
    }
    cfg.finetune.enabled = true;
    cfg.validate().map_err(anyhow::Error::msg)?;
    let slots = Slots::open(&args.state)?;
    slots.install(&args.model).map_err(anyhow::Error::msg)?;
    let (name, manifest) = slots
        .loadable()
        .context("the installed model does not load")?;
    let file = slots::model_file(&slots.dir(&name), &manifest, args.artifact);
    let pre = Preprocess::from_manifest(&manifest);
    let phase = |finetune: bool, paced: bool| -> Result<pipeline::Report> {
        let settings = CaptureSettings {
            width: 0,
            height: 0,
            fps: cfg.source.fps,
            as_fast_as_possible: !paced,
            max_frames: None,
            looped: true,
        };
        let options = pipeline::Options {
            queue_capacity: cfg.runtime.queue_capacity,
            embed_workers: cfg.runtime.embed_workers,
            duration: Some(Duration::from_secs_f64(args.seconds)),
            refresh: Duration::from_millis(200),
            memory_budget_mib: u64::MAX,
            systemd: false,
            lossless: !paced,
            status_every: Duration::from_secs(5),
            sink_drain: Duration::from_secs(10),
        };
        let ft = if finetune {
            Some(Box::new(Finetuner::new(
                cfg.finetune.clone(),
                &args.model,
                slots.clone(),
                args.artifact,
            )?) as Box<dyn Learner>)
        } else {
            None
        };
        let live = Arc::new(LiveModel::new(
            Box::new(embed::open(&file)?.embedder),
            &manifest.source.model_version,
        ));
        Ok(pipeline::run(
            source::open(&args.source, settings)?,
            &live,
            pre,
            Vec::new(),
            None,
            &options,
            Arc::new(AtomicBool::new(false)),
            pipeline::Extras {
                slots: None,
                finetune: ft,
            },
        ))
    };
    let summary = |r: &pipeline::Report| {
        serde_json::json!({
            "fps": r.fps, "frames": r.frames_embedded,
            "dropped": r.dropped_capture_queue + r.dropped_embed_queue,
            "latency_p50_ms": r.latency_p50_ms, "latency_p99_ms": r.latency_p99_ms,
            "finetune_steps": r.finetune.as_ref().map(|f| f.steps),
            "finetune_step_p50_ms": r.finetune.as_ref().map(|f| f.step_p50_ms),
            "finetune_busy_fraction": r.finetune.as_ref().map(|f| f.busy_fraction),
            "candidates": r.finetune.as_ref().map(|f| f.decisions.len()),
        })
    };
    let (fast_off, fast_on) = (phase(false, false)?, phase(true, false)?);
    let (paced_off, paced_on) = (phase(false, true)?, phase(true, true)?);
    println!(
        "{}",
        serde_json::json!({
            "model": manifest.source.model_version,
            "source": args.source.to_string(),
            "board": args.board,
            "duty_cycle": cfg.finetune.duty_cycle,
            "finetune_threads": cfg.finetune.threads,
            "embed_workers": cfg.runtime.embed_workers,
            "seconds_per_phase": args.seconds,
            "as_fast_as_possible": {"off": summary(&fast_off), "on": summary(&fast_on),
                                     "on_over_off": fast_on.fps / fast_off.fps},
            "native_rate": {"fps_target": cfg.source.fps, "off": summary(&paced_off), "on": summary(&paced_on),
                            "on_over_off": paced_on.fps / paced_off.fps},
            "peak_rss_mib": pipeline::rss_mib().1,
        })
    );
    Ok(())
}

#[cfg(not(feature = "finetune"))]
fn bench_finetune(_: &BenchArgs) -> Result<()> {
    bail!("bench --finetune: this edgeclr-device is built without the `finetune` feature")
}
