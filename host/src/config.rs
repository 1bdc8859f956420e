//! The resolved configuration of a pretraining run: TOML file, then CLI flags on top.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use edgeclr_learn::SimclrConfig;
use edgeclr_learn::augment::AugmentConfig;
use edgeclr_learn::device::DeviceChoice;
use edgeclr_learn::loss::{LossConfig, MarginLossConfig, NtLogisticLossConfig, NtXentLossConfig};
use edgeclr_learn::optim::{LarsConfig, LrScaling, OptimizerConfig};
use serde::{Deserialize, Serialize};

use crate::data::DatasetKind;
use crate::pretrain::{LossKind, OptimizerKind, PretrainArgs};

/// Options of the training loop (the `[train]` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainOptions {
    /// Dataset folder.
    pub data: Option<PathBuf>,
    /// Dataset format.
    pub dataset: DatasetKind,
    /// Images per batch (the loss sees twice as many views).
    pub batch_size: usize,
    /// Epochs.
    pub epochs: usize,
    /// Stop after this many steps in total.
    pub max_steps: Option<usize>,
    /// Peak learning rate; `None` = from `lr_scaling`.
    pub lr: Option<f64>,
    /// Batch-size scaling rule for the default learning rate.
    pub lr_scaling: LrScaling,
    /// Warm-up epochs; `None` = 10% of the epochs (the paper's 10 of 100).
    pub warmup_epochs: Option<usize>,
    /// Class-balanced training subset.
    pub train_limit: Option<usize>,
    /// Backend.
    pub device: DeviceChoice,
    /// Seed of everything random.
    pub seed: u64,
    /// Run the kNN monitor every this many epochs (0 = never).
    pub knn_every: usize,
    /// Class-balanced limit on the kNN memory bank (`None` = whole training split).
    pub knn_bank_limit: Option<usize>,
    /// Streamed shards: samples held in the shuffle buffer (memory ≈ this × the mean
    /// compressed sample).
    pub shuffle_buffer: usize,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            data: None,
            dataset: DatasetKind::Cifar10,
            batch_size: 256,
            epochs: 100,
            max_steps: None,
            lr: None,
            lr_scaling: LrScaling::Sqrt,
            warmup_epochs: None,
            train_limit: None,
            device: DeviceChoice::Auto,
            seed: 0,
            knn_every: 1,
            knn_bank_limit: None,
            shuffle_buffer: 4096,
        }
    }
}

impl TrainOptions {
    /// Warm-up epochs in effect.
    pub fn warmup(&self) -> usize {
        self.warmup_epochs.unwrap_or(self.epochs / 10)
    }

    /// The peak learning rate for this batch size.
    pub fn base_lr(&self) -> f64 {
        self.lr
            .unwrap_or_else(|| self.lr_scaling.base_lr(self.batch_size))
    }
}

/// Everything a run needs: written to `RUN_DIR/config.toml`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PretrainConfig {
    /// Loop options.
    pub train: TrainOptions,
    /// Model, loss, augmentation and optimizer recipe.
    pub simclr: SimclrConfig,
}

impl PretrainConfig {
    /// Reads the `--config` file (if any) and applies the flags on top; validates the result.
    ///
    /// # Errors
    /// Unreadable or invalid TOML, or values out of range, naming the field and the fix.
    pub fn resolve(args: &PretrainArgs) -> Result<Self> {
        let mut cfg: Self = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config {}", path.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("parsing config {}", path.display()))?
            }
            None => Self::default(),
        };
        let t = &mut cfg.train;
        macro_rules! set {
            ($dst:expr, $src:expr) => {
                if let Some(v) = $src.clone() {
                    $dst = v;
                }
            };
        }
        if args.data.is_some() {
            t.data = args.data.clone();
        }
        set!(t.dataset, args.dataset);
        // A shard folder is recognised by its index unless --dataset says otherwise.
        if args.dataset.is_none()
            && t.data
                .as_ref()
                .is_some_and(|d| d.join(crate::data::shards::INDEX).is_file())
        {
            t.dataset = DatasetKind::Shards;
        }
        set!(t.shuffle_buffer, args.shuffle_buffer);
        set!(t.batch_size, args.batch_size);
        set!(t.epochs, args.epochs);
        if args.max_steps.is_some() {
            t.max_steps = args.max_steps;
        }
        if args.lr.is_some() {
            t.lr = args.lr;
        }
        set!(t.lr_scaling, args.lr_scaling);
        if args.warmup_epochs.is_some() {
            t.warmup_epochs = args.warmup_epochs;
        }
        if args.train_limit.is_some() {
            t.train_limit = args.train_limit;
        }
        set!(t.device, args.device);
        set!(t.seed, args.seed);
        set!(t.knn_every, args.knn_every);

        let s = &mut cfg.simclr;
        set!(s.encoder.architecture, args.encoder);
        set!(s.encoder.width, args.width);
        set!(s.encoder.stem, args.stem);
        set!(s.head.kind, args.head);
        set!(s.head.layers, args.head_layers);
        set!(s.head.out_dim, args.proj_dim);
        set!(s.augment.color_strength, args.color_strength);
        set!(s.augment.image_size, args.image_size);
        if args.blur {
            s.augment.blur_p = AugmentConfig::default().blur_p;
        }
        if args.no_blur {
            s.augment.blur_p = 0.0;
        }
        if let Some(kind) = args.loss {
            s.loss = match kind {
                LossKind::Ntxent => LossConfig::Ntxent(NtXentLossConfig::default()),
                LossKind::Ntlogistic => LossConfig::Ntlogistic(NtLogisticLossConfig::default()),
                LossKind::Margin => LossConfig::Margin(MarginLossConfig::default()),
            };
        }
        match &mut s.loss {
            LossConfig::Ntxent(c) => set!(c.temperature, args.temperature),
            LossConfig::Ntlogistic(c) => {
                set!(c.temperature, args.temperature);
                c.semi_hard |= args.semi_hard;
            }
            LossConfig::Margin(c) => c.semi_hard |= args.semi_hard,
        }
        if let Some(kind) = args.optimizer {
            s.optim = match kind {
                OptimizerKind::Lars => OptimizerConfig::Lars(LarsConfig::default()),
                OptimizerKind::Adam => OptimizerConfig::Adam { weight_decay: 0.0 },
                OptimizerKind::Sgd => OptimizerConfig::Sgd {
                    momentum: 0.9,
                    weight_decay: 1e-6,
                },
            };
        }
        if let Some(wd) = args.weight_decay {
            match &mut s.optim {
                OptimizerConfig::Lars(c) => c.weight_decay = wd,
                OptimizerConfig::Adam { weight_decay }
                | OptimizerConfig::Sgd { weight_decay, .. } => *weight_decay = wd as f32,
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks ranges.
    ///
    /// # Errors
    /// The first invalid value with its fix.
    pub fn validate(&self) -> Result<()> {
        self.simclr.validate()?;
        let t = &self.train;
        if t.batch_size < 2 {
            bail!(
                "batch_size = {} is too small: NT-Xent needs ≥ 2 images per batch (paper: 256–4096)",
                t.batch_size
            );
        }
        if t.epochs == 0 {
            bail!("epochs = 0: train for at least one epoch");
        }
        if t.data.is_none() {
            bail!("no dataset given; pass --data PATH (the repository ships tests/data/cifar10)");
        }
        Ok(())
    }
}
