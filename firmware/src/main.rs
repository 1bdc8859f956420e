//! `edgeclr-device` — the on-board runtime for Raspberry Pi and Jetson: camera frames →
//! embeddings with the exported encoder (tract), to sinks, with a status screen.
//! This file only wires the pieces together.

mod config;
mod display;
mod error;
// The fine-tuner lands in pieces (issue 6); the replay buffer is tested, not yet wired.
#[allow(dead_code)]
mod finetune;
mod frame;
mod pipeline;
mod queue;
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
}

/// `edgeclr-device run`: a board profile, then `--config`, then flags.
#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Board profile (x86-dev, rpi4, rpi5, jetson-nano, jetson-orin-nano).
    #[arg(long, default_value = "x86-dev")]
    board: String,
    /// A TOML file in the board-profile shape, replacing the built-in profile.
    #[arg(long)]
    config: Option<PathBuf>,
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
    let mut cfg = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading --config {}", p.display()))?;
            DeviceConfig::parse(&text, &p.display().to_string()).map_err(anyhow::Error::msg)?
        }
        None => DeviceConfig::board(&args.board).map_err(anyhow::Error::msg)?,
    };
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
    cfg.validate().map_err(anyhow::Error::msg)?;
    Ok(cfg)
}

fn run(args: RunArgs) -> Result<()> {
    let cfg = resolve(&args)?;
    info!(
        "resolved config:\n{}",
        toml::to_string(&cfg).unwrap_or_default()
    );
    let opened = embed::open(&model_path(&args.model, cfg.runtime.artifact))
        .with_context(|| format!("loading --model {}", args.model.display()))?;
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
    let report = pipeline::run(
        src,
        &opened.embedder,
        Preprocess::from_manifest(m),
        &m.source.model_version,
        sinks,
        screen,
        &options,
        shutdown,
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
    let opened = embed::open(&model_path(&args.model, args.artifact))?;
    let pre = Preprocess::from_manifest(&opened.manifest);
    let fast = CaptureSettings {
        width: 0,
        height: 0,
        fps: 10.0,
        as_fast_as_possible: true,
        max_frames: None,
    };
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
    let run_once =
        |settings: CaptureSettings, options: &pipeline::Options| -> Result<pipeline::Report> {
            Ok(pipeline::run(
                source::open(&args.source, settings)?,
                &opened.embedder,
                pre,
                "bench",
                Vec::new(),
                None,
                options,
                Arc::new(AtomicBool::new(false)),
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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
