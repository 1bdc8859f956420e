//! `edgeclr-device run`: the board's main job — camera → embeddings → sinks, with the status
//! screen, model slots that follow `current`, and on-device fine-tuning when built with it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use edgeclr_runtime::Backend;
use edgeclr_runtime::backend;
use edgeclr_runtime::embed::{self, Preprocess};
use tracing::info;

use super::model_path;
use super::profile::ProfileArgs;
use crate::config::choice::EmbedChoice;
use crate::config::finetune::TrainDevice;
use crate::config::{ArtifactChoice, DeviceConfig};
use crate::display::{self, DisplaySpec};
use crate::live::LiveModel;
use crate::pipeline;
use crate::sink::{self, SinkSpec, SinkWorker};
use crate::slots::{self, Slots};
use crate::source::{self, CaptureSettings, SourceSpec};

/// `edgeclr-device run`: a board profile, then `--config`, then flags.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The board profile.
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// Export folder from `edgeclr export` (or one model file in it).
    #[arg(long)]
    pub model: PathBuf,
    /// Frame source: v4l:/dev/videoN, mjpeg:FILE (`-` = stdin), folder:DIR, synthetic.
    #[arg(long)]
    pub source: Option<SourceSpec>,
    /// Embedding sink, repeatable: jsonl:-, jsonl:FILE, npy:FILE, udp:HOST:PORT, tcp:HOST:PORT,
    /// `mqtt://[USER[:PASS]@]HOST[:PORT]/TOPIC[?qos=0|1&password_file=FILE]` (mqtts:// with
    /// ?ca=FILE); `{board}` in the topic is the board id.
    #[arg(long, value_parser = sink::SinkParser)]
    pub sink: Vec<SinkSpec>,
    /// Payload of the MQTT sink: binary (the udp/tcp layout) or json (a jsonl line).
    #[arg(long, value_enum)]
    pub sink_format: Option<sink::PayloadFormat>,
    /// Status screen: none, png:FILE, fb:/dev/fbN, ssd1306:/dev/i2c-N.
    #[arg(long)]
    pub display: Option<DisplaySpec>,
    /// fp32 or int8 model.
    #[arg(long, value_enum)]
    pub artifact: Option<ArtifactChoice>,
    /// Inference engine: tract, or onnxruntime (the board's libonnxruntime.so; see
    /// `[runtime.onnxruntime]` and ORT_DYLIB_PATH).
    #[arg(long, value_parser = clap::value_parser!(Backend))]
    pub backend: Option<Backend>,
    /// Embedding threads.
    #[arg(long)]
    pub embed_workers: Option<usize>,
    /// Stop after N frames.
    #[arg(long)]
    pub frames: Option<u64>,
    /// Stop after S seconds.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Replay recordings as fast as possible instead of at their frame rate.
    #[arg(long)]
    pub as_fast_as_possible: bool,
    /// Write the final report (JSON) here too.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Replay a recording in a loop (until --frames or --duration).
    #[arg(long = "loop")]
    pub looped: bool,
    /// State directory: model slots (current/previous), fine-tuning checkpoints, decisions log.
    /// With it, `--model` is installed as a slot on first use and the run follows `current`.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Fine-tune on the stream (needs --state).
    #[arg(long)]
    pub finetune: bool,
    /// Fine-tuning backend: auto, cpu or wgpu.
    #[arg(long, value_parser = clap::value_parser!(TrainDevice))]
    pub finetune_device: Option<TrainDevice>,
    /// Share of time spent fine-tuning, (0, 1].
    #[arg(long)]
    pub duty_cycle: Option<f64>,
    /// Steps between candidate models.
    #[arg(long)]
    pub update_every: Option<u64>,
    /// Frames per fine-tuning step.
    #[arg(long)]
    pub finetune_batch: Option<usize>,
    /// End the run after N fine-tuning steps of this run (the last ones judged as a candidate;
    /// a resumed checkpoint's earlier steps do not count).
    #[arg(long)]
    pub finetune_steps: Option<u64>,
    /// Weight of the distillation term toward the shipped encoder (0 disables it).
    #[arg(long)]
    pub distill_weight: Option<f64>,
}

/// The profile, then `--config`, then the flags; validated.
///
/// # Errors
/// An unknown board, a malformed file, an out-of-range value, or `--finetune` without
/// `--state`.
pub fn resolve(args: &RunArgs) -> Result<DeviceConfig> {
    let mut cfg = args.profile.load()?;
    if let Some(s) = &args.source {
        cfg.source.spec = s.clone();
    }
    if !args.sink.is_empty() {
        cfg.sink.outputs = args.sink.clone();
    }
    if let Some(f) = args.sink_format {
        cfg.sink.format = f;
    }
    if let Some(d) = &args.display {
        cfg.display.target = d.clone();
    }
    if let Some(a) = args.artifact {
        cfg.runtime.artifact = a;
    }
    if let Some(b) = args.backend {
        cfg.runtime.backend = b;
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
    if let Some(n) = args.finetune_steps {
        ft.max_steps = Some(n);
    }
    if let Some(b) = args.finetune_batch {
        ft.trainer.batch = b;
        ft.replay_capacity = ft.replay_capacity.max(b);
    }
    if args.finetune_steps.is_some() && !ft.enabled {
        bail!("--finetune-steps counts fine-tuning steps: add --finetune (and --state DIR)");
    }
    if ft.enabled && args.state.is_none() {
        bail!(
            "--finetune needs --state DIR: where model slots, fine-tuning checkpoints and decisions are kept (/var/lib/edgeclr on a board)"
        );
    }
    cfg.validate().map_err(anyhow::Error::msg)?;
    Ok(cfg)
}

/// Runs the stream until the source ends, `--frames`/`--duration`, `--finetune-steps`, or
/// SIGINT/SIGTERM.
///
/// # Errors
/// A model, source or sink that cannot be opened, named.
pub fn run(args: RunArgs) -> Result<()> {
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
            let shipped = slots::verify(&args.model)
                .map_err(|e| anyhow::anyhow!("--model {}: {e}", args.model.display()))?;
            let name = slots::slot_name(&shipped.source.model_version);
            if slots::verify(&slots.dir(&name)).is_err() {
                let installed = slots.install(&args.model).map_err(anyhow::Error::msg)?;
                info!("installed {} as slot {installed}", args.model.display());
            }
            Some(slots)
        }
        None => None,
    };
    // The fastest engine × precision measured by `selftest` on this board, unless
    // --artifact or --backend is given.
    if let (Some(st), None, None) = (&args.state, args.artifact, args.backend)
        && let Ok(text) = std::fs::read_to_string(st.join("artifact"))
    {
        match text.trim().parse::<EmbedChoice>() {
            // selftest may have found a library this process does not (another environment):
            // keep running on tract rather than failing the service.
            Ok(c) if backend::available(c.backend, &cfg.runtime.onnxruntime).is_err() => {
                tracing::warn!(
                    "{}: {c} was fastest at selftest but {} does not load here; running tract:{}",
                    st.join("artifact").display(),
                    c.backend,
                    c.artifact.name()
                );
                cfg.runtime.artifact = c.artifact;
                cfg.runtime.backend = edgeclr_runtime::Backend::Tract;
            }
            Ok(c) => {
                cfg.runtime.artifact = c.artifact;
                cfg.runtime.backend = c.backend;
                info!("embedding with {c} (measured fastest here by selftest)");
            }
            Err(e) => tracing::warn!(
                "{}: {e}; keeping {}",
                st.join("artifact").display(),
                cfg.runtime.choice()
            ),
        }
    }
    let model_file = match &slots {
        Some(s) => {
            let (name, manifest) = s
                .loadable()
                .with_context(|| format!("no model in {} loads", s.root().display()))?;
            slots::model_file(&s.dir(&name), &manifest, cfg.runtime.artifact)
        }
        None => model_path(&args.model, cfg.runtime.artifact),
    };
    let opened = embed::open_on(&model_file, cfg.runtime.backend, &cfg.runtime.onnxruntime)
        .with_context(|| {
            format!(
                "loading model {} on {}",
                model_file.display(),
                cfg.runtime.backend
            )
        })?;
    let m = &opened.manifest;
    info!(
        "model {} ({:?} on {}, {}×{} → {})",
        m.source.model_version,
        opened.kind,
        cfg.runtime.backend,
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
    let context = sink::SinkContext {
        board: cfg.board.id(),
        model_version: m.source.model_version.clone(),
        format: cfg.sink.format,
    };
    let mut sinks = Vec::new();
    for spec in &cfg.sink.outputs {
        let s = sink::open(spec, &context).with_context(|| format!("opening sink {spec}"))?;
        sinks.push(SinkWorker::spawn(s, cfg.sink.capacity));
    }
    // A screen is a side consumer: one that cannot open never stops the embeddings.
    let screen = display::open(&cfg.display.target).unwrap_or_else(|e| {
        tracing::warn!(
            "display {}: {e}; running headless",
            String::from(cfg.display.target.clone())
        );
        None
    });
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
        status_every: Duration::from_secs_f64(cfg.sink.status_every_s),
        sink_drain: Duration::from_secs_f64(cfg.sink.drain_s),
    };
    let finetuner = match (&slots, cfg.finetune.enabled) {
        (Some(s), true) => Some(learner(&cfg, &args.model, s)?),
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
            slots: slots.map(|slots| pipeline::Follow {
                slots,
                choice: cfg.runtime.choice(),
                ort: cfg.runtime.onnxruntime.clone(),
            }),
            finetune: finetuner,
        },
    );
    let json = serde_json::to_string(&report)?;
    if let Some(p) = &args.report {
        edgeclr_artifact::atomic::write_atomic(p, json.as_bytes())?;
    }
    // Stdout may carry the jsonl sink: the report goes to stderr unless written to a file.
    if args.report.is_none() {
        eprintln!("{json}");
    }
    Ok(())
}

/// The on-device fine-tuner for this run.
#[cfg(feature = "finetune")]
fn learner(
    cfg: &DeviceConfig,
    factory: &std::path::Path,
    slots: &Slots,
) -> Result<Box<dyn crate::learner::Learner>> {
    Ok(Box::new(crate::finetune::Finetuner::new(
        cfg.finetune.clone(),
        factory,
        slots.clone(),
        cfg.runtime.artifact,
    )?))
}

#[cfg(not(feature = "finetune"))]
fn learner(
    _: &DeviceConfig,
    _: &std::path::Path,
    _: &Slots,
) -> Result<Box<dyn crate::learner::Learner>> {
    bail!(
        "--finetune (or [finetune] enabled in the profile): this edgeclr-device is built without \
         the `finetune` feature; use a default build, or run without fine-tuning"
    )
}
