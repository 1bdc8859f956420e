//! `edgeclr pretrain`'s arguments (also the base of `ablate`'s rows and the TOML config's
//! overrides): every flag can be set in the `--config` file; flags win.

use std::path::PathBuf;

use clap::Args;
use edgeclr_learn::device::DeviceChoice;
use edgeclr_learn::encoder::{Architecture, Stem};
use edgeclr_learn::head::HeadKind;
use edgeclr_learn::optim::LrScaling;

use crate::data::DatasetKind;

/// Loss families of the paper's Table 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LossKind {
    /// NT-Xent (normalised temperature-scaled cross-entropy).
    Ntxent,
    /// NT-Logistic.
    Ntlogistic,
    /// Margin triplet.
    Margin,
}

/// Optimizers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OptimizerKind {
    /// LARS (the paper's).
    Lars,
    /// Adam.
    Adam,
    /// SGD with momentum 0.9.
    Sgd,
}

/// `edgeclr pretrain`: every flag can also be set in the `--config` TOML file; flags win.
#[derive(Debug, Clone, Default, Args)]
pub struct PretrainArgs {
    /// Dataset folder.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Dataset format.
    #[arg(long, value_enum)]
    pub dataset: Option<DatasetKind>,
    /// TOML file with `[simclr.*]` and `[train]` tables.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Encoder architecture.
    #[arg(long, value_parser = clap::value_parser!(Architecture))]
    pub encoder: Option<Architecture>,
    /// Width multiplier.
    #[arg(long)]
    pub width: Option<usize>,
    /// Stem: cifar (3×3, no pool) or imagenet (7×7 + max-pool).
    #[arg(long, value_parser = parse_stem)]
    pub stem: Option<Stem>,
    /// Projection head.
    #[arg(long, value_parser = clap::value_parser!(HeadKind))]
    pub head: Option<HeadKind>,
    /// Linear layers of the MLP head.
    #[arg(long)]
    pub head_layers: Option<usize>,
    /// Dimension of the projection z.
    #[arg(long)]
    pub proj_dim: Option<usize>,
    /// Contrastive loss.
    #[arg(long, value_enum)]
    pub loss: Option<LossKind>,
    /// Semi-hard negative mining (ntlogistic, margin).
    #[arg(long)]
    pub semi_hard: bool,
    /// Temperature τ (ntxent, ntlogistic).
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Colour distortion strength s.
    #[arg(long)]
    pub color_strength: Option<f32>,
    /// Gaussian blur on (p = 0.5).
    #[arg(long, overrides_with = "no_blur")]
    pub blur: bool,
    /// Gaussian blur off.
    #[arg(long)]
    pub no_blur: bool,
    /// View side in pixels.
    #[arg(long)]
    pub image_size: Option<usize>,
    /// Images per batch (2× views).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Stop after this many steps in total (for smoke runs).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Optimizer.
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerKind>,
    /// Peak learning rate; default from --lr-scaling.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Batch-size scaling of the learning rate.
    #[arg(long, value_parser = parse_scaling)]
    pub lr_scaling: Option<LrScaling>,
    /// Weight decay.
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Warm-up epochs.
    #[arg(long)]
    pub warmup_epochs: Option<usize>,
    /// Class-balanced subset of the training split.
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Streamed shards (`--data` with `shards.json`): samples in the shuffle buffer.
    #[arg(long)]
    pub shuffle_buffer: Option<usize>,
    /// Backend: auto (CUDA, else a hardware GPU through wgpu, else the CPU), cpu, wgpu, cuda
    /// (a build with the `cuda` feature; otherwise, and without NVIDIA's driver, exit 2).
    #[arg(long, value_parser = clap::value_parser!(DeviceChoice))]
    pub device: Option<DeviceChoice>,
    /// Seed of initialisation, shuffling and augmentation.
    #[arg(long)]
    pub seed: Option<u64>,
    /// kNN monitor (k = 200, t = 0.1, test split scored) every N epochs; 0 disables.
    #[arg(long)]
    pub knn_every: Option<usize>,
    /// Output run folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Start from the weights of an export folder (`encoder.bpk`, `head.bpk`) and its SimCLR
    /// recipe (model, loss, augmentation) instead of a random initialisation: continued
    /// training of a shipped model on new data, with a fresh optimizer and schedule.
    #[arg(long, conflicts_with = "resume")]
    pub init: Option<PathBuf>,
}

fn parse_stem(s: &str) -> Result<Stem, String> {
    match s {
        "cifar" => Ok(Stem::Cifar),
        "imagenet" => Ok(Stem::Imagenet),
        o => Err(format!("unknown stem `{o}`; use cifar or imagenet")),
    }
}

fn parse_scaling(s: &str) -> Result<LrScaling, String> {
    match s {
        "linear" => Ok(LrScaling::Linear),
        "sqrt" => Ok(LrScaling::Sqrt),
        o => Err(format!("unknown lr scaling `{o}`; use linear or sqrt")),
    }
}
