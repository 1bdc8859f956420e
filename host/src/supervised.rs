//! `edgeclr supervised`: the same encoder trained from scratch with all labels and
//! cross-entropy (crop + flip augmentation) — the ceiling every SimCLR report is read against.

use std::path::PathBuf;

use anyhow::{Result, bail};
use edgeclr_artifact::atomic::write_atomic;
use edgeclr_learn::augment::AugmentConfig;
use edgeclr_learn::device::{DeviceChoice, select_device};
use edgeclr_learn::encoder::{Architecture, EncoderConfig};
use serde_json::json;
use tracing::info;

use crate::data::{self, DatasetKind, Split};
use crate::eval::finetune::{FinetuneConfig, finetune};

/// `edgeclr supervised` arguments.
#[derive(Debug, clap::Args)]
pub struct SupervisedArgs {
    /// Labelled dataset folder.
    #[arg(long)]
    pub data: PathBuf,
    /// Dataset format.
    #[arg(long, value_enum, default_value = "cifar10")]
    pub dataset: DatasetKind,
    /// Encoder architecture.
    #[arg(long, default_value = "resnet18", value_parser = clap::value_parser!(Architecture))]
    pub encoder: Architecture,
    /// Input side in pixels.
    #[arg(long, default_value_t = 32)]
    pub image_size: usize,
    /// Epochs.
    #[arg(long, default_value_t = 30)]
    pub epochs: usize,
    /// Images per step.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Adam learning rate (cosine-decayed).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Class-balanced limit on the training split.
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Backend.
    #[arg(long, default_value = "auto", value_parser = clap::value_parser!(DeviceChoice))]
    pub device: DeviceChoice,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output folder (receives `supervised.json`).
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `edgeclr supervised`.
pub fn run(args: SupervisedArgs) -> Result<()> {
    let selected = select_device(args.device)?;
    info!(device = %selected.description, "backend");
    let mut train = data::load(args.dataset, &args.data, Split::Train)?.labeled_only();
    if let Some(l) = args.train_limit {
        train = train.balanced_subset(l);
    }
    let test = data::load(args.dataset, &args.data, Split::Test)?.labeled_only();
    if train.len() == 0 || test.len() == 0 {
        bail!(
            "{} has no labelled train and test images",
            args.data.display()
        );
    }
    let encoder_cfg = EncoderConfig::new(args.encoder);
    let augment = AugmentConfig::cifar().with_image_size(args.image_size);
    selected.device.seed(args.seed);
    let encoder = encoder_cfg.init(&selected.device);
    let cfg = FinetuneConfig {
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        seed: args.seed,
    };
    let classes = train.num_classes().max(test.num_classes());
    let acc = finetune(
        encoder,
        encoder_cfg.output_dim(),
        (&train.images, &train.labels),
        (&test.images, &test.labels),
        classes,
        &augment,
        cfg,
        &selected.device,
    );
    let report = json!({
        "protocol": "supervised", "encoder": encoder_cfg, "train_images": train.len(),
        "test_images": test.len(), "test": acc, "config": cfg, "device": selected.description,
    });
    std::fs::create_dir_all(&args.out)?;
    write_atomic(
        &args.out.join("supervised.json"),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
