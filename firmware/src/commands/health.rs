//! `edgeclr-device health`: label-free health of a model on a recording.

use std::path::PathBuf;

use anyhow::Result;

use crate::config::ArtifactChoice;
use crate::source::SourceSpec;

/// `edgeclr-device health`.
#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    /// A model folder (export or slot).
    #[arg(long)]
    pub model: PathBuf,
    /// A recording.
    #[arg(long, default_value = "mjpeg:tests/data/camera/clip_320x240.mjpeg")]
    pub source: SourceSpec,
    /// Use every n-th frame.
    #[arg(long, default_value_t = 1)]
    pub every: usize,
    /// fp32 or int8.
    #[arg(long, value_enum, default_value = "fp32")]
    pub artifact: ArtifactChoice,
    /// A CIFAR-10 binary folder for kNN (data_batch_1.bin bank, test_batch.bin queries).
    #[arg(long)]
    pub probe: Option<PathBuf>,
}

/// Prints the model's health on the recording as JSON.
///
/// # Errors
/// A model or recording that does not load.
#[cfg(feature = "finetune")]
pub fn run(args: &HealthArgs) -> Result<()> {
    use edgeclr_runtime::embed::Preprocess;

    use crate::{finetune, slots, source};

    let manifest = slots::verify(&args.model).map_err(anyhow::Error::msg)?;
    let size = manifest.input.size;
    let frames = source::recording_frames(&args.source, size, args.every)?;
    let images: Vec<&edgeclr_artifact::RgbImage> = frames.iter().map(|(_, f)| f).collect();
    let recipe = edgeclr_learn::export::recipe_of(&manifest)?.unwrap_or_default();
    let augment =
        finetune::trainer::augment(&finetune::trainer::TrainerConfig::default(), size, &recipe);
    let probe = match &args.probe {
        Some(p) => Some(finetune::read_probe(
            p,
            &Preprocess::from_manifest(&manifest),
        )?),
        None => None,
    };
    let file = slots::model_file(&args.model, &manifest, args.artifact);
    let h = finetune::health_of(&file, &images, &augment, probe.as_ref())?;
    println!(
        "{}",
        serde_json::json!({
            "model": manifest.source.model_version,
            "file": file.display().to_string(),
            "source": args.source.to_string(),
            "health": h.health,
            "view_loss_per_frame": h.view_losses,
        })
    );
    Ok(())
}

/// Health needs the augmentations of the learning crate (`finetune` feature).
///
/// # Errors
/// Always, naming the missing feature.
#[cfg(not(feature = "finetune"))]
pub fn run(_: &HealthArgs) -> Result<()> {
    anyhow::bail!("health: this edgeclr-device is built without the `finetune` feature")
}
