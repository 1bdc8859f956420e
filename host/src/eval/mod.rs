//! `edgeclr eval`: the protocols the field judges SimCLR by — kNN, linear evaluation and
//! semi-supervised fine-tuning — each reported next to the same protocol on a randomly
//! initialised encoder of the same architecture (the floor).

pub mod board;
pub mod features;
pub mod finetune;
pub mod knn;
pub mod linear;
pub mod state;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use edgeclr_learn::checkpoint::{load_weights, write_atomic};
use edgeclr_learn::device::{DeviceChoice, select_device};
use edgeclr_learn::encoder::ResNet;
use serde_json::json;
use tracing::info;

use crate::config::PretrainConfig;
use crate::data::{self, DatasetKind, LabeledImages};
use features::Features;

/// Evaluation protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Weighted kNN (k = 200, t = 0.1) with the train split as the memory bank.
    Knn,
    /// Logistic regression on frozen, L2-normalised features.
    Linear,
    /// Fine-tune the whole network on a fraction of the labels.
    Finetune,
}

/// `edgeclr eval` arguments.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Run folder written by `edgeclr pretrain` (its burn weights, next to a random-init floor).
    #[arg(long, required_unless_present_any = ["model", "state"], conflicts_with_all = ["model", "state"])]
    pub run: Option<PathBuf>,
    /// Instead of a run: an export folder (or one model file in it), scored through the
    /// board's code path (tract with the manifest's preprocessing); kNN and linear only.
    #[arg(long, conflicts_with = "state")]
    pub model: Option<PathBuf>,
    /// A board's `--state` folder: kNN of its factory, running and every kept candidate
    /// model (`finetune.keep_candidates`), and how often its judge agreed with the labels;
    /// one JSON object on stdout.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// With --state: draw target kNN against fine-tuning time into this PNG.
    #[arg(long, requires = "state")]
    pub plot: Option<PathBuf>,
    /// Labelled dataset folder (train split = bank / training labels, test split = scored).
    #[arg(long)]
    pub data: PathBuf,
    /// Dataset format; default: the run's.
    #[arg(long, value_enum)]
    pub dataset: Option<DatasetKind>,
    /// Protocol.
    #[arg(long, value_enum)]
    pub protocol: Protocol,
    /// Fraction of training labels for `finetune` (class-balanced), e.g. 0.01 or 0.1.
    #[arg(long, default_value_t = EvalArgs::LABELS_FRACTION)]
    pub labels_fraction: f64,
    /// Evaluate only an untrained encoder of the run's architecture.
    #[arg(long)]
    pub random_init: bool,
    /// Class-balanced limit on the training split.
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Class-balanced limit on the test split.
    #[arg(long)]
    pub test_limit: Option<usize>,
    /// Fine-tuning epochs.
    #[arg(long, default_value_t = EvalArgs::FINETUNE_EPOCHS)]
    pub finetune_epochs: usize,
    /// Backend.
    #[arg(long, default_value = "auto", value_parser = clap::value_parser!(DeviceChoice))]
    pub device: DeviceChoice,
    /// Print the result as JSON instead of a summary.
    #[arg(long)]
    pub json: bool,
}

impl EvalArgs {
    /// `--labels-fraction`'s default.
    pub const LABELS_FRACTION: f64 = 0.1;
    /// `--finetune-epochs`' default.
    pub const FINETUNE_EPOCHS: usize = 30;

    /// `edgeclr eval --run RUN --data DATA --protocol P` with every other flag at its default.
    pub fn new(run: PathBuf, data: PathBuf, protocol: Protocol) -> Self {
        Self {
            run: Some(run),
            model: None,
            state: None,
            plot: None,
            data,
            dataset: None,
            protocol,
            labels_fraction: Self::LABELS_FRACTION,
            random_init: false,
            train_limit: None,
            test_limit: None,
            finetune_epochs: Self::FINETUNE_EPOCHS,
            device: DeviceChoice::Auto,
            json: false,
        }
    }
}

/// Loads the run's config.
pub fn run_config(run: &Path) -> Result<PretrainConfig> {
    let path = run.join("config.toml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{} is not a run folder (no readable config.toml); pass --run with the --out of edgeclr pretrain", run.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The trained encoder of a run, in inference mode on `device`.
pub fn trained_encoder(run: &Path, cfg: &PretrainConfig, device: &Device) -> Result<ResNet> {
    let path = run.join("encoder.bpk");
    if !path.exists() {
        bail!(
            "{} has no encoder.bpk; the run has not finished — resume it with edgeclr pretrain --resume",
            run.display()
        );
    }
    Ok(load_weights(cfg.simclr.encoder.init(device), &path)?)
}

/// kNN or linear evaluation of precomputed, L2-normalised features (bank = the train split's).
///
/// # Panics
/// For [`Protocol::Finetune`], which needs an encoder, not features.
pub fn score(
    protocol: Protocol,
    (bank, train): (&Features, &LabeledImages),
    (query, test): (&Features, &LabeledImages),
    device: &Device,
) -> serde_json::Value {
    let classes = train.num_classes().max(test.num_classes());
    match protocol {
        Protocol::Knn => {
            let c = knn::KnnConfig::default();
            let acc =
                knn::knn_accuracy(bank, &train.labels, query, &test.labels, classes, c, device);
            json!({"test": acc, "k": c.k, "temperature": c.temperature})
        }
        Protocol::Linear => {
            let r = linear::linear_probe(
                bank,
                &train.labels,
                query,
                &test.labels,
                classes,
                linear::LinearProbeConfig::default(),
                device,
            );
            serde_json::to_value(r).expect("serialisable")
        }
        Protocol::Finetune => unreachable!("finetune evaluates an encoder, not features"),
    }
}

/// Runs one protocol for one encoder.
fn evaluate(
    protocol: Protocol,
    encoder: ResNet,
    cfg: &PretrainConfig,
    train: &LabeledImages,
    test: &LabeledImages,
    args: &EvalArgs,
    device: &Device,
) -> serde_json::Value {
    let classes = train.num_classes().max(test.num_classes());
    let aug = &cfg.simclr.augment;
    match protocol {
        Protocol::Knn | Protocol::Linear => {
            let bank = features::extract(&encoder, &train.images, aug, device, 256);
            let query = features::extract(&encoder, &test.images, aug, device, 256);
            score(protocol, (&bank, train), (&query, test), device)
        }
        Protocol::Finetune => {
            let subset = train.clone().balanced_subset(
                ((train.len() as f64) * args.labels_fraction)
                    .round()
                    .max(classes as f64) as usize,
            );
            let c = finetune::FinetuneConfig {
                epochs: args.finetune_epochs,
                ..Default::default()
            };
            let acc = finetune::finetune(
                encoder,
                cfg.simclr.encoder.output_dim(),
                (&subset.images, &subset.labels),
                (&test.images, &test.labels),
                classes,
                aug,
                c,
                device,
            );
            json!({"test": acc, "labels": subset.len(), "labels_fraction": args.labels_fraction, "epochs": c.epochs})
        }
    }
}

/// Runs `edgeclr eval`.
pub fn run(args: EvalArgs) -> Result<()> {
    let run_dir = match (&args.model, &args.run) {
        (Some(model), _) => return board::run(&args, model),
        (None, _) if args.state.is_some() => {
            let state = args.state.clone().unwrap_or_default();
            if args.protocol != Protocol::Knn {
                bail!("--state scores every model of a board with --protocol knn");
            }
            return state::run(&args, &state);
        }
        (None, Some(run)) => run.clone(),
        (None, None) => {
            bail!("pass --run RUN (a pretraining run) or --model EXPORT (an export folder)")
        }
    };
    let cfg = run_config(&run_dir)?;
    let selected = select_device(args.device)?;
    let device = selected.device.clone();
    info!(device = %selected.description, "backend");
    let kind = args.dataset.unwrap_or(cfg.train.dataset);
    let (train, test) = data::load_labelled(kind, &args.data, args.train_limit, args.test_limit)?;
    info!(train = train.len(), test = test.len(), protocol = ?args.protocol, "evaluating");
    let random = || {
        device.seed(cfg.train.seed ^ 0xface);
        cfg.simclr.encoder.init(&device)
    };
    let mut report = json!({
        "protocol": args.protocol,
        "run": run_dir,
        "data": args.data,
        "train_images": train.len(),
        "test_images": test.len(),
        "device": selected.description,
        "encoder": cfg.simclr.encoder,
    });
    report["random_init"] = evaluate(args.protocol, random(), &cfg, &train, &test, &args, &device);
    if !args.random_init {
        let encoder = trained_encoder(&run_dir, &cfg, &device)?;
        report["pretrained"] =
            evaluate(args.protocol, encoder, &cfg, &train, &test, &args, &device);
    }
    let name = format!(
        "eval-{}.json",
        serde_json::to_value(args.protocol)?
            .as_str()
            .unwrap_or("protocol")
    );
    write_atomic(
        &run_dir.join(&name),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        let line = |key: &str| -> String {
            let t = &report[key]["test"];
            if t.is_null() {
                "-".into()
            } else {
                format!(
                    "top-1 {:.2}%  top-5 {:.2}%",
                    t["top1"].as_f64().unwrap_or(f64::NAN),
                    t["top5"].as_f64().unwrap_or(f64::NAN)
                )
            }
        };
        println!(
            "{:?} evaluation on {} test images ({} train):",
            args.protocol,
            test.len(),
            train.len()
        );
        if !args.random_init {
            println!("  pretrained   {}", line("pretrained"));
        }
        println!("  random init  {}", line("random_init"));
        println!("  (written to {})", run_dir.join(name).display());
    }
    Ok(())
}
