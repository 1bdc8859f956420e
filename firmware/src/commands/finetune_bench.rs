//! `edgeclr-device finetune-bench`: fine-tuning step time and peak memory.

use std::path::PathBuf;

use anyhow::Result;

use super::profile::ProfileArgs;
use crate::config::finetune::TrainDevice;
use crate::source::SourceSpec;

/// `edgeclr-device finetune-bench`.
#[derive(Debug, clap::Args)]
pub struct FinetuneBenchArgs {
    /// Export folder with burn weights (edgeclr export).
    #[arg(long)]
    pub model: PathBuf,
    /// A recording to train on.
    #[arg(long, default_value = "mjpeg:tests/data/camera/clip_320x240.mjpeg")]
    pub source: SourceSpec,
    /// The board profile whose `[finetune.trainer]` learner is timed (`--set` changes it).
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// Frames per step; default: the profile's.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Training resolution.
    #[arg(long, default_value_t = 32)]
    pub size: usize,
    /// cpu, wgpu or auto.
    #[arg(long, default_value = "cpu", value_parser = clap::value_parser!(TrainDevice))]
    pub device: TrainDevice,
    /// Timed steps (after one warm-up step).
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// CPU threads; default: the profile's `[finetune] threads`.
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Fine-tuning step time and peak RSS for one configuration (run one per process: RSS is a
/// process-wide high-water mark).
#[cfg(feature = "finetune")]
pub fn run(args: &FinetuneBenchArgs) -> Result<()> {
    use std::sync::Arc;

    use anyhow::{Context, bail};

    use crate::finetune::trainer::{Sample, Trainer, TrainerConfig};
    use crate::{finetune, pipeline, slots, source};
    let cfg = args.profile.load()?;
    cfg.validate().map_err(anyhow::Error::msg)?;
    let config = TrainerConfig {
        batch: args.batch.unwrap_or(cfg.finetune.trainer.batch),
        ..cfg.finetune.trainer
    };
    let (batch, threads) = (config.batch, args.threads.unwrap_or(cfg.finetune.threads));
    let manifest = slots::verify(&args.model).map_err(anyhow::Error::msg)?;
    let recipe = edgeclr_learn::export::recipe_of(&manifest)?
        .context("the export has no recipe; re-run edgeclr export")?;
    let selected = finetune::select_backend(args.device)?;
    let frames: Vec<Sample> = source::recording_frames(&args.source, args.size, 1)?
        .into_iter()
        .map(|(frame_id, image)| Sample {
            frame_id,
            image: Arc::new(image),
        })
        .collect();
    if frames.len() < batch {
        bail!(
            "{} has {} frames, fewer than a batch ({batch})",
            args.source,
            frames.len(),
        );
    }
    let rss_before = pipeline::rss_mib().0;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let head = args.model.join("head.bpk");
    let mut trainer = Trainer::new(
        &recipe,
        &args.model.join("encoder.bpk"),
        head.exists().then_some(head.as_path()),
        args.size,
        config.clone(),
        &selected.device,
    )?;
    let mut times = Vec::new();
    let mut losses = Vec::new();
    for s in 0..=args.steps {
        let start = (s * batch) % (frames.len() - batch + 1);
        let r = pool.install(|| trainer.step(&frames[start..start + batch]));
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
            "board": args.profile.board,
            "batch": batch,
            "size": args.size,
            "threads": threads,
            "trainable_blocks": config.trainable_blocks,
            "distill_weight": config.distill_weight,
            "steps": args.steps,
            "step_ms_median": times[times.len() / 2],
            "step_ms_min": times[0],
            "images_per_second": 2.0 * batch as f64 / (times[times.len() / 2] / 1e3),
            "losses": losses,
            "rss_before_mib": rss_before,
            "peak_rss_mib": pipeline::rss_mib().1,
        })
    );
    Ok(())
}

/// Fine-tuning benchmarks need the `finetune` feature.
///
/// # Errors
/// Always, naming the missing feature.
#[cfg(not(feature = "finetune"))]
pub fn run(_: &FinetuneBenchArgs) -> Result<()> {
    anyhow::bail!("finetune-bench: this edgeclr-device is built without the `finetune` feature")
}
