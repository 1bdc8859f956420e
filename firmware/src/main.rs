//! `edgeclr-device` — the on-board runtime for Raspberry Pi and Jetson: camera frames →
//! embeddings with the exported encoder (tract), to sinks, with a status screen.
//! This file only wires the pieces together.

mod config;
mod display;
mod error;
mod finetune;
mod frame;
mod live;
mod pipeline;
mod queue;
mod selftest;
mod sink;
mod source;
mod stats;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use edgeclr_models::device::{DeviceChoice, adapters, select_device};
use edgeclr_models::embed::{self, Embedder, Preprocess};
use edgeclr_models::export::ArtifactKind;
use tracing::info;
use tracing_subscriber::EnvFilter;

use crate::config::{ArtifactChoice, DeviceConfig};
use crate::display::DisplaySpec;
use crate::finetune::Finetuner;
use crate::finetune::slots::Slots;
use crate::live::LiveModel;
use crate::sink::{SinkSpec, SinkWorker};
use crate::source::{CaptureSettings, SourceSpec};

/// edgeclr-device: camera frames to embeddings on the board.
#[derive(Debug, Parser)]
#[command(name = "edgeclr-device", version, about)]
struct Cli {
    /// More logging (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the compute backends this board offers and which one `auto` picks.
    Info,
    /// Stream frames from a camera (or a recording) to embeddings.
    Run(RunArgs),
    /// Measure the pipeline against the bare embedder on the same frames.
    Bench(BenchArgs),
    /// Make the previous model current again (a running device switches within a refresh).
    Rollback(RollbackArgs),
    /// Time fine-tuning steps and peak memory at one batch size and resolution.
    FinetuneBench(FinetuneBenchArgs),
    /// Label-free health of a model (alignment, uniformity, effective rank) on a recording.
    Health(HealthArgs),
    /// Check this board: camera, embedder fp32/int8 latency, a fine-tuning step, display, disk,
    /// memory; writes selftest.json and JUnit XML; non-zero exit on failure.
    Selftest(SelftestArgs),
    /// Install-root operations `edgeclr flash` runs on the board (stage, switch, abandon,
    /// rollback, prune, status).
    Release(ReleaseArgs),
}

/// `edgeclr-device release`.
#[derive(Debug, clap::Args)]
struct ReleaseArgs {
    /// What to do.
    #[arg(value_enum)]
    action: ReleaseAction,
    /// The install root (`releases/`, `current`, `previous`, `trusted.pub`).
    #[arg(long)]
    root: PathBuf,
    /// `stage`: the bundle tarball.
    #[arg(long)]
    bundle: Option<PathBuf>,
    /// `stage`: a public key the bundle must be signed with (besides `ROOT/trusted.pub`).
    #[arg(long)]
    key: Option<PathBuf>,
    /// `switch`, `abandon`: the release version.
    #[arg(long)]
    version: Option<String>,
    /// `prune`: releases to keep.
    #[arg(long, default_value_t = 3)]
    keep: usize,
}

/// Install-root actions.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ReleaseAction {
    /// Unpack and verify a bundle into releases/<version> (current unchanged).
    Stage,
    /// Make a staged release current.
    Switch,
    /// Undo a release that failed its health check.
    Abandon,
    /// Swap current and previous.
    Rollback,
    /// Delete old releases.
    Prune,
    /// Print current and previous.
    Status,
}

/// `edgeclr-device selftest`.
#[derive(Debug, clap::Args)]
struct SelftestArgs {
    #[command(flatten)]
    profile: ProfileArgs,
    /// Model folder; with --state, the current slot is tested instead when one exists.
    #[arg(long)]
    model: PathBuf,
    /// State directory: the faster artifact is recorded there for `run`.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Frame source instead of the profile's.
    #[arg(long)]
    source: Option<SourceSpec>,
    /// Frames to read from the source.
    #[arg(long, default_value_t = 30)]
    frames: u64,
    /// Folder for selftest.json and selftest.junit.xml (default: the state dir, else ".").
    #[arg(long)]
    out: Option<PathBuf>,
}

/// `edgeclr-device health`.
#[derive(Debug, clap::Args)]
struct HealthArgs {
    /// A model folder (export or slot).
    #[arg(long)]
    model: PathBuf,
    /// A recording.
    #[arg(long, default_value = "mjpeg:tests/data/camera/clip_320x240.mjpeg")]
    source: SourceSpec,
    /// Use every n-th frame.
    #[arg(long, default_value_t = 1)]
    every: usize,
    /// fp32 or int8.
    #[arg(long, value_enum, default_value = "fp32")]
    artifact: ArtifactChoice,
    /// A CIFAR-10 binary folder for kNN (data_batch_1.bin bank, test_batch.bin queries).
    #[arg(long)]
    probe: Option<PathBuf>,
}

/// `edgeclr-device rollback`.
#[derive(Debug, clap::Args)]
struct RollbackArgs {
    /// State directory of the device (`--state` of `run`).
    #[arg(long)]
    state: PathBuf,
}

/// `edgeclr-device finetune-bench`.
#[derive(Debug, clap::Args)]
struct FinetuneBenchArgs {
    /// Export folder with burn weights (edgeclr export).
    #[arg(long)]
    model: PathBuf,
    /// A recording to train on.
    #[arg(long, default_value = "mjpeg:tests/data/camera/clip_320x240.mjpeg")]
    source: SourceSpec,
    /// Frames per step.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Training resolution.
    #[arg(long, default_value_t = 32)]
    size: usize,
    /// cpu, wgpu or auto.
    #[arg(long, default_value = "cpu", value_parser = clap::value_parser!(DeviceChoice))]
    device: DeviceChoice,
    /// Timed steps (after one warm-up step).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// CPU threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

/// Which board profile applies: a built-in one, or a file in the same shape.
#[derive(Debug, clap::Args)]
struct ProfileArgs {
    /// Board profile (x86-dev, rpi4, rpi5, jetson-nano, jetson-orin-nano).
    #[arg(long, default_value = "x86-dev")]
    board: String,
    /// A TOML file in the board-profile shape, replacing the built-in profile.
    #[arg(long)]
    config: Option<PathBuf>,
}

impl ProfileArgs {
    fn load(&self) -> Result<DeviceConfig> {
        match &self.config {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading --config {}", p.display()))?;
                DeviceConfig::parse(&text, &p.display().to_string()).map_err(anyhow::Error::msg)
            }
            None => DeviceConfig::board(&self.board).map_err(anyhow::Error::msg),
        }
    }
}

/// `edgeclr-device run`: a board profile, then `--config`, then flags.
#[derive(Debug, clap::Args)]
struct RunArgs {
    #[command(flatten)]
    profile: ProfileArgs,
    /// Export folder from `edgeclr export` (or one model file in it).
    #[arg(long)]
    model: PathBuf,
    /// Frame source: v4l:/dev/videoN, mjpeg:FILE (`-` = stdin), folder:DIR, synthetic.
    #[arg(long)]
    source: Option<SourceSpec>,
    /// Embedding sink, repeatable: jsonl:-, jsonl:FILE, npy:FILE, udp:HOST:PORT, tcp:HOST:PORT.
    #[arg(long)]
    sink: Vec<SinkSpec>,
    /// Status screen: none, png:FILE, fb:/dev/fbN, ssd1306:/dev/i2c-N.
    #[arg(long)]
    display: Option<DisplaySpec>,
    /// fp32 or int8 model.
    #[arg(long, value_enum)]
    artifact: Option<ArtifactChoice>,
    /// Embedding threads.
    #[arg(long)]
    embed_workers: Option<usize>,
    /// Stop after N frames.
    #[arg(long)]
    frames: Option<u64>,
    /// Stop after S seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Replay recordings as fast as possible instead of at their frame rate.
    #[arg(long)]
    as_fast_as_possible: bool,
    /// Write the final report (JSON) here too.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Replay a recording in a loop (until --frames or --duration).
    #[arg(long = "loop")]
    looped: bool,
    /// State directory: model slots (current/previous), fine-tuning checkpoints, decisions log.
    /// With it, `--model` is installed as a slot on first use and the run follows `current`.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Fine-tune on the stream (needs --state).
    #[arg(long)]
    finetune: bool,
    /// Fine-tuning backend: auto, cpu or wgpu.
    #[arg(long, value_parser = clap::value_parser!(DeviceChoice))]
    finetune_device: Option<DeviceChoice>,
    /// Share of time spent fine-tuning, (0, 1].
    #[arg(long)]
    duty_cycle: Option<f64>,
    /// Steps between candidate models.
    #[arg(long)]
    update_every: Option<u64>,
    /// Frames per fine-tuning step.
    #[arg(long)]
    finetune_batch: Option<usize>,
    /// Weight of the distillation term toward the shipped encoder (0 disables it).
    #[arg(long)]
    distill_weight: Option<f64>,
}

/// `edgeclr-device bench`.
#[derive(Debug, clap::Args)]
struct BenchArgs {
    /// Export folder.
    #[arg(long)]
    model: PathBuf,
    /// A recording (mjpeg:FILE or folder:DIR).
    #[arg(long, default_value = "mjpeg:tests/data/camera/clip_320x240.mjpeg")]
    source: SourceSpec,
    /// Passes over the recording for the throughput comparison.
    #[arg(long, default_value_t = 3)]
    passes: usize,
    /// fp32 or int8.
    #[arg(long, value_enum, default_value = "fp32")]
    artifact: ArtifactChoice,
    /// Instead: the embedding stream with fine-tuning off, then on, in this one process
    /// (the recording looped; `--seconds` each), as fast as possible and at the board's rate.
    #[arg(long)]
    finetune: bool,
    /// State directory for `--finetune` (slots and checkpoints; created).
    #[arg(long, default_value = "runs/bench-finetune-state")]
    state: PathBuf,
    /// Seconds per phase with `--finetune`.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// Board profile whose `[finetune]` and `[runtime]` settings apply.
    #[arg(long, default_value = "x86-dev")]
    board: String,
    /// Duty cycle override.
    #[arg(long)]
    duty_cycle: Option<f64>,
}

fn model_path(model: &Path, artifact: ArtifactChoice) -> PathBuf {
    match artifact {
        ArtifactChoice::Int8 if model.is_dir() => {
            model.join(ArtifactKind::OnnxInt8Qlinear.file_name())
        }
        _ => model.to_path_buf(),
    }
}

fn resolve(args: &RunArgs) -> Result<DeviceConfig> {
    let mut cfg = args.profile.load()?;
    if let Some(s) = &args.source {
        cfg.source.spec = s.clone();
    }
    if !args.sink.is_empty() {
        cfg.sink.outputs = args.sink.clone();
    }
    if let Some(d) = &args.display {
        cfg.display.target = d.clone();
    }
    if let Some(a) = args.artifact {
        cfg.runtime.artifact = a;
    }
    if let Some(w) = args.embed_workers {
        cfg.runtime.embed_workers = w;
    }
    let ft = &mut cfg.finetune;
    ft.enabled |= args.finetune;
    if let Some(d) = args.finetune_device {
        ft.device = d;
    }
    if let Some(d) = args.duty_cycle {
        ft.duty_cycle = d;
    }
    if let Some(k) = args.update_every {
        ft.update_every = k;
    }
    if let Some(w) = args.distill_weight {
        ft.trainer.distill_weight = w;
    }
    if let Some(b) = args.finetune_batch {
        ft.trainer.batch = b;
        ft.replay_capacity = ft.replay_capacity.max(b);
    }
    if ft.enabled && args.state.is_none() {
        bail!(
            "--finetune needs --state DIR: where model slots, fine-tuning checkpoints and decisions are kept (/var/lib/edgeclr on a board)"
        );
    }
    cfg.validate().map_err(anyhow::Error::msg)?;
    Ok(cfg)
}

fn run(args: RunArgs) -> Result<()> {
    let mut cfg = resolve(&args)?;
    info!(
        "resolved config:\n{}",
        toml::to_string(&cfg).unwrap_or_default()
    );
    // With a state directory the run follows the `current` slot; `--model` is installed as a
    // slot the first time its version is seen (first start, or a newly flashed bundle).
    let slots = match &args.state {
        Some(state) => {
            let slots = Slots::open(state)
                .with_context(|| format!("opening --state {}", state.display()))?;
            let shipped = finetune::slots::verify(&args.model)
                .map_err(|e| anyhow::anyhow!("--model {}: {e}", args.model.display()))?;
            let name = finetune::slots::slot_name(&shipped.source.model_version);
            if finetune::slots::verify(&slots.dir(&name)).is_err() {
                let installed = slots.install(&args.model).map_err(anyhow::Error::msg)?;
                info!("installed {} as slot {installed}", args.model.display());
            }
            Some(slots)
        }
        None => None,
    };
    // The faster artifact measured by `selftest` on this board, unless --artifact is given.
    if let (Some(st), None) = (&args.state, args.artifact) {
        if let Ok(text) = std::fs::read_to_string(st.join("artifact")) {
            match text.trim() {
                "fp32" => cfg.runtime.artifact = ArtifactChoice::Fp32,
                "int8" => cfg.runtime.artifact = ArtifactChoice::Int8,
                other => tracing::warn!(
                    "{}: unknown artifact `{other}`",
                    st.join("artifact").display()
                ),
            }
            info!(
                "artifact {:?} (measured faster here by selftest)",
                cfg.runtime.artifact
            );
        }
    }
    let model_file = match &slots {
        Some(s) => {
            let (name, manifest) = s
                .loadable()
                .with_context(|| format!("no model in {} loads", s.root().display()))?;
            finetune::model_file(&s.dir(&name), &manifest, cfg.runtime.artifact)
        }
        None => model_path(&args.model, cfg.runtime.artifact),
    };
    let opened = embed::open(&model_file)
        .with_context(|| format!("loading model {}", model_file.display()))?;
    let m = &opened.manifest;
    info!(
        "model {} ({:?}, {}×{} → {})",
        m.source.model_version,
        opened.kind,
        m.input.size,
        m.input.size,
        opened.embedder.dim()
    );
    let settings = CaptureSettings {
        width: cfg.source.width,
        height: cfg.source.height,
        fps: cfg.source.fps,
        as_fast_as_possible: args.as_fast_as_possible,
        max_frames: args.frames,
        looped: args.looped,
    };
    let src = source::open(&cfg.source.spec, settings)
        .with_context(|| format!("opening source {}", cfg.source.spec))?;
    info!("source {}", src.describe());
    let mut sinks = Vec::new();
    for spec in &cfg.sink.outputs {
        let s = sink::open(spec).with_context(|| format!("opening sink {spec}"))?;
        sinks.push(SinkWorker::spawn(s, cfg.sink.capacity));
    }
    let screen = display::open(&cfg.display.target).map_err(anyhow::Error::msg)?;
    let shutdown = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, shutdown.clone()).context("installing signal handlers")?;
    }
    let options = pipeline::Options {
        queue_capacity: cfg.runtime.queue_capacity,
        embed_workers: cfg.runtime.embed_workers,
        duration: args.duration.map(Duration::from_secs_f64),
        refresh: Duration::from_millis(cfg.display.refresh_ms.max(50)),
        memory_budget_mib: cfg.runtime.memory_budget_mib,
        systemd: std::env::var_os("NOTIFY_SOCKET").is_some(),
        // A recording replayed as fast as possible is embedded frame by frame; live
        // sources (cameras, pipes, paced replay) drop the oldest frame instead.
        lossless: args.as_fast_as_possible
            && match &cfg.source.spec {
                SourceSpec::Mjpeg(p) => p.as_os_str() != "-",
                SourceSpec::Folder(_) => true,
                _ => false,
            },
    };
    let finetuner = match (&slots, cfg.finetune.enabled) {
        (Some(s), true) => Some(Finetuner::new(
            cfg.finetune.clone(),
            &args.model,
            s.clone(),
            cfg.runtime.artifact,
        )?),
        _ => None,
    };
    let preprocess = Preprocess::from_manifest(m);
    let live = Arc::new(LiveModel::new(opened.embedder, &m.source.model_version));
    let report = pipeline::run(
        src,
        &live,
        preprocess,
        sinks,
        screen,
        &options,
        shutdown,
        pipeline::Extras {
            slots: slots.map(|s| (s, cfg.runtime.artifact)),
            finetune: finetuner,
        },
    );
    let json = serde_json::to_string(&report)?;
    if let Some(p) = &args.report {
        edgeclr_models::checkpoint::write_atomic(p, json.as_bytes())?;
    }
    // Stdout may carry the jsonl sink: the report goes to stderr unless written to a file.
    if args.report.is_none() {
        eprintln!("{json}");
    }
    Ok(())
}

/// Bare embedder vs whole pipeline on the same frames, and latency at the native rate.
fn bench(args: BenchArgs) -> Result<()> {
    if args.finetune {
        return bench_finetune(&args);
    }
    let opened = embed::open(&model_path(&args.model, args.artifact))?;
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
    let mut e = opened.embedder.fork()?;
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
    };
    // The recording through the whole pipeline, no sinks, no screen.
    let live = Arc::new(LiveModel::new(opened.embedder.fork()?, "bench"));
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
            "model": opened.embedder.source().display().to_string(),
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
fn bench_finetune(args: &BenchArgs) -> Result<()> {
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
    let file = finetune::model_file(&slots.dir(&name), &manifest, args.artifact);
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
        };
        let ft = if finetune {
            Some(Finetuner::new(
                cfg.finetune.clone(),
                &args.model,
                slots.clone(),
                args.artifact,
            )?)
        } else {
            None
        };
        let live = Arc::new(LiveModel::new(
            embed::open(&file)?.embedder,
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

fn rollback(args: &RollbackArgs) -> Result<()> {
    let slots = Slots::open(&args.state)
        .with_context(|| format!("opening --state {}", args.state.display()))?;
    let (from, to) = slots.rollback().map_err(anyhow::Error::msg)?;
    println!("rolled back: {from} -> {to} (a running edgeclr-device switches at its next refresh)");
    Ok(())
}

/// Fine-tuning step time and peak RSS for one configuration (run one per process: RSS is a
/// process-wide high-water mark).
fn finetune_bench(args: &FinetuneBenchArgs) -> Result<()> {
    use finetune::trainer::{Sample, Trainer, TrainerConfig};
    let manifest = finetune::slots::verify(&args.model).map_err(anyhow::Error::msg)?;
    let recipe = manifest
        .recipe
        .clone()
        .context("the export has no recipe; re-run edgeclr export")?;
    let selected = select_device(args.device)?;
    let frames: Vec<Sample> = finetune::recording_frames(&args.source, args.size, 1)?
        .into_iter()
        .map(|(frame_id, image)| Sample {
            frame_id,
            image: Arc::new(image),
        })
        .collect();
    if frames.len() < args.batch {
        bail!(
            "{} has {} frames, fewer than --batch {}",
            args.source,
            frames.len(),
            args.batch
        );
    }
    let rss_before = pipeline::rss_mib().0;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build()?;
    let head = args.model.join("head.bpk");
    let mut trainer = Trainer::new(
        &recipe,
        &args.model.join("encoder.bpk"),
        head.exists().then_some(head.as_path()),
        args.size,
        TrainerConfig {
            batch: args.batch,
            ..TrainerConfig::default()
        },
        &selected.device,
    )?;
    let mut times = Vec::new();
    let mut losses = Vec::new();
    for s in 0..=args.steps {
        let start = (s * args.batch) % (frames.len() - args.batch + 1);
        let r = pool.install(|| trainer.step(&frames[start..start + args.batch]));
        if s > 0 {
            times.push(r.ms);
        }
        losses.push(r.loss);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({
            "backend": selected.description,
            "batch": args.batch,
            "size": args.size,
            "threads": args.threads,
            "steps": args.steps,
            "step_ms_median": times[times.len() / 2],
            "step_ms_min": times[0],
            "images_per_second": 2.0 * args.batch as f64 / (times[times.len() / 2] / 1e3),
            "losses": losses,
            "rss_before_mib": rss_before,
            "peak_rss_mib": pipeline::rss_mib().1,
        })
    );
    Ok(())
}

fn health_cmd(args: &HealthArgs) -> Result<()> {
    let manifest = finetune::slots::verify(&args.model).map_err(anyhow::Error::msg)?;
    let size = manifest.input.size;
    let frames = finetune::recording_frames(&args.source, size, args.every)?;
    let images: Vec<&edgeclr_models::RgbImage> = frames.iter().map(|(_, f)| f).collect();
    let recipe = manifest.recipe.clone().unwrap_or_default();
    let augment = finetune::trainer::TrainerConfig::default().augment(size, &recipe);
    let probe = match &args.probe {
        Some(p) => Some(finetune::read_probe(
            p,
            &Preprocess::from_manifest(&manifest),
        )?),
        None => None,
    };
    let file = finetune::model_file(&args.model, &manifest, args.artifact);
    let h = finetune::health_of(&file, &images, &augment, probe.as_ref())?;
    println!(
        "{}",
        serde_json::json!({
            "model": manifest.source.model_version,
            "file": file.display().to_string(),
            "source": args.source.to_string(),
            "health": h,
        })
    );
    Ok(())
}

fn release_cmd(args: &ReleaseArgs) -> Result<()> {
    use edgeclr_models::bundle::{InstallRoot, read_verifying_key};
    let root = InstallRoot::new(&args.root);
    let version = || {
        args.version
            .clone()
            .context("--version is required for this action")
    };
    match args.action {
        ReleaseAction::Stage => {
            let bundle = args
                .bundle
                .as_ref()
                .context("--bundle is required for stage")?;
            let key = args.key.as_deref().map(read_verifying_key).transpose()?;
            let m = root.stage(bundle, key.as_ref())?;
            println!("staged {}", m.version);
        }
        ReleaseAction::Switch => {
            let v = version()?;
            root.switch(&v)?;
            println!("current {v}");
        }
        ReleaseAction::Abandon => {
            let v = version()?;
            root.abandon(&v)?;
            println!(
                "abandoned {v}; current {}",
                root.current().unwrap_or_default()
            );
        }
        ReleaseAction::Rollback => {
            let (from, to) = root.rollback()?;
            println!("rolled back {from} -> {to}");
        }
        ReleaseAction::Prune => {
            for r in root.prune(args.keep) {
                println!("pruned {r}");
            }
        }
        ReleaseAction::Status => println!(
            "{}",
            serde_json::json!({"current": root.current(), "previous": root.previous()})
        ),
    }
    Ok(())
}

fn selftest_cmd(args: &SelftestArgs) -> ExitCode {
    let result = (|| -> Result<bool> {
        let mut cfg = args.profile.load()?;
        if let Some(s) = &args.source {
            cfg.source.spec = s.clone();
        }
        cfg.validate().map_err(anyhow::Error::msg)?;
        let model = match &args.state {
            Some(st) => Slots::open(st)
                .ok()
                .and_then(|s| s.loadable().map(|(n, _)| s.dir(&n)))
                .unwrap_or_else(|| args.model.clone()),
            None => args.model.clone(),
        };
        let report = selftest::run(&cfg, &model, args.state.as_deref(), args.frames)?;
        let out = args
            .out
            .clone()
            .or_else(|| args.state.clone())
            .unwrap_or_else(|| PathBuf::from("."));
        std::fs::create_dir_all(&out)?;
        edgeclr_models::checkpoint::write_atomic(
            &out.join("selftest.json"),
            serde_json::to_string_pretty(&report)?.as_bytes(),
        )?;
        edgeclr_models::checkpoint::write_atomic(
            &out.join("selftest.junit.xml"),
            report.junit().as_bytes(),
        )?;
        print!("{}", report.summary());
        println!("results: {}", out.join("selftest.json").display());
        Ok(report.ok)
    })();
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn info_cmd() -> Result<()> {
    for a in adapters() {
        println!(
            "wgpu adapter: {} ({}){}",
            a.name,
            a.kind,
            if a.software { " [software]" } else { "" }
        );
    }
    let d = select_device(DeviceChoice::Auto)?;
    println!("auto backend: {}", d.description);
    let isa = embed::isa::apply();
    println!(
        "tract CPU kernels: {} (Intel AMX {})",
        isa.tract_isa,
        if isa.amx_in_use { "in use" } else { "kept out" }
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        Command::Info => info_cmd(),
        Command::Run(args) => run(args),
        Command::Bench(args) => bench(args),
        Command::Rollback(args) => rollback(&args),
        Command::FinetuneBench(args) => finetune_bench(&args),
        Command::Health(args) => health_cmd(&args),
        Command::Selftest(args) => return selftest_cmd(&args),
        Command::Release(args) => release_cmd(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
