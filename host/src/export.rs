//! `edgeclr export`: a pretraining run → the files the board runs (fp32 ONNX, fp32 NNEF,
//! int8 QLinearConv + QDQ ONNX) and a `manifest.json` holding their checksums, the input
//! contract and the drift measured here: tract vs burn on real images, int8 vs fp32, and
//! optionally kNN accuracy on tract embeddings.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor, TensorData};
use edgeclr_artifact::RgbImage;
use edgeclr_artifact::manifest::{
    Agreement, Drift, FORMAT_VERSION, InputSpec, KnnDrift, Source, sha256_file,
};
use edgeclr_learn::augment::AugmentConfig;
use edgeclr_learn::checkpoint::{CheckpointDir, save_weights};
use edgeclr_learn::encoder::ResNet;
use edgeclr_learn::export::recipe::to_json;
use edgeclr_learn::export::{
    Artifact, ArtifactKind, CalibrationMethod, Manifest, QuantConfig, WeightGranularity,
    write_artifacts,
};
use edgeclr_runtime::embed::TractEmbedder;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use tracing::{info, warn};

use crate::data::{self, DatasetKind, Split};
use crate::eval::features::Features;
use crate::eval::knn::{KnnConfig, knn_accuracy};
use crate::eval::{run_config, trained_encoder};

/// Which fp32 formats to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `encoder.onnx` (batch 1) and `encoder.batched.onnx` (symbolic batch).
    Onnx,
    /// `encoder.nnef.tar` (tract's native format).
    Nnef,
    /// Both.
    Both,
}

/// `edgeclr export` arguments.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Run folder written by `edgeclr pretrain` (holds config.toml and encoder.bpk).
    #[arg(long)]
    pub run: PathBuf,
    /// Output folder (created; existing artifacts are replaced atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// Input side in pixels at deployment; default: the run's training resolution.
    #[arg(long)]
    pub image_size: Option<usize>,
    /// Also write int8 models (QLinearConv for tract, QDQ for other runtimes).
    #[arg(long)]
    pub int8: bool,
    /// Real images for calibration and parity checks; default: the run's training data.
    #[arg(long)]
    pub calib_data: Option<PathBuf>,
    /// Format of --calib-data; default: the run's dataset kind when --calib-data is not
    /// given, else detected.
    #[arg(long, value_enum)]
    pub calib_dataset: Option<DatasetKind>,
    /// Calibration images (evenly spaced over the training split).
    #[arg(long, default_value_t = ExportArgs::IMAGES)]
    pub calib_n: usize,
    /// Activation ranges: `minmax` or `percentile:P` (e.g. percentile:99.99).
    #[arg(long, default_value = "minmax", value_parser = clap::value_parser!(CalibrationMethod))]
    pub calib_method: CalibrationMethod,
    /// Per-channel weight scales (default per tensor: tract fuses requantisation then).
    #[arg(long)]
    pub per_channel: bool,
    /// fp32 formats to write.
    #[arg(long, value_enum, default_value = "both")]
    pub format: Format,
    /// Images for the parity/drift checks (held out from calibration: the test split).
    #[arg(long, default_value_t = ExportArgs::IMAGES)]
    pub check_n: usize,
    /// Labelled dataset for the kNN drift check (fp32 vs int8 top-1 on tract embeddings).
    #[arg(long)]
    pub knn_data: Option<PathBuf>,
    /// Format of --knn-data; default: detected.
    #[arg(long, value_enum)]
    pub knn_dataset: Option<DatasetKind>,
    /// Class-balanced limit on the kNN memory bank (train split).
    #[arg(long)]
    pub knn_train_limit: Option<usize>,
    /// Class-balanced limit on the kNN queries (test split).
    #[arg(long)]
    pub knn_test_limit: Option<usize>,
    /// Print the manifest as JSON instead of a summary.
    #[arg(long)]
    pub json: bool,
}

impl ExportArgs {
    /// `--calib-n` and `--check-n` defaults.
    pub const IMAGES: usize = 256;

    /// `edgeclr export --run RUN --out OUT` with every other flag at its default.
    pub fn new(run: PathBuf, out: PathBuf) -> Self {
        Self {
            run,
            out,
            image_size: None,
            int8: false,
            calib_data: None,
            calib_dataset: None,
            calib_n: Self::IMAGES,
            calib_method: CalibrationMethod::MinMax,
            per_channel: false,
            format: Format::Both,
            check_n: Self::IMAGES,
            knn_data: None,
            knn_dataset: None,
            knn_train_limit: None,
            knn_test_limit: None,
            json: false,
        }
    }
}

/// `n` images evenly spaced over `images` (deterministic, class-mixed for sorted data).
fn spaced(images: &[RgbImage], n: usize) -> Vec<&RgbImage> {
    let n = n.min(images.len());
    (0..n).map(|i| &images[i * images.len() / n]).collect()
}

fn burn_embed(encoder: &ResNet, views: &[Vec<f32>], size: usize, device: &Device) -> Vec<Vec<f32>> {
    let mut out = Vec::with_capacity(views.len());
    for part in views.chunks(64) {
        let x = Tensor::<4>::from_data(
            TensorData::new(part.concat(), [part.len(), 3, size, size]),
            device,
        );
        let h = encoder.forward(x);
        let dim = h.dims()[1];
        let v = h.into_data().try_to_vec::<f32>().expect("features are f32");
        out.extend(v.chunks(dim).map(<[f32]>::to_vec));
    }
    out
}

fn bar(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} eta {eta}")
            .expect("valid template"),
    );
    bar.set_prefix(what.to_string());
    bar
}

/// Embeds `views` with tract on all cores, showing progress.
pub fn embed_with_progress(
    embedder: &TractEmbedder,
    views: &[Vec<f32>],
    what: &str,
) -> Result<Vec<Vec<f32>>> {
    let bar = bar(views.len(), what);
    let mut out = Vec::with_capacity(views.len());
    for part in views.chunks(512) {
        out.extend(embedder.embed_all(part)?);
        bar.inc(part.len() as u64);
    }
    bar.finish_and_clear();
    Ok(out)
}

/// Loads the calibration/check images: the train split for calibration, the test split (or
/// what follows the calibration images, for unsplit folders) for checks.
fn calibration_sets(
    kind: DatasetKind,
    root: &Path,
    calib_n: usize,
    check_n: usize,
) -> Result<(Vec<RgbImage>, Vec<RgbImage>)> {
    let train = data::load(kind, root, Split::Train)?;
    if train.images.is_empty() {
        bail!(
            "{} holds no images; pass --calib-data with real images at the deployment resolution",
            root.display()
        );
    }
    let calib: Vec<RgbImage> = spaced(&train.images, calib_n)
        .into_iter()
        .cloned()
        .collect();
    let check = match data::load(kind, root, Split::Test) {
        Ok(test) if !test.images.is_empty() => {
            spaced(&test.images, check_n).into_iter().cloned().collect()
        }
        _ => {
            warn!(
                "no test split in {}: parity checked on training images",
                root.display()
            );
            train.images.iter().rev().take(check_n).cloned().collect()
        }
    };
    Ok((calib, check))
}

/// Copies the burn weights the board fine-tunes from — `encoder.bpk`, and `head.bpk` (the run's,
/// or the head of its latest checkpoint for runs made before it was saved) — into `out`.
fn finetune_weights(
    run: &Path,
    recipe: &edgeclr_learn::SimclrConfig,
    out: &Path,
    device: &Device,
) -> Result<Vec<Artifact>> {
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let mut artifacts = vec![Artifact::write(
        out,
        ArtifactKind::BurnEncoder,
        &read(&run.join("encoder.bpk"))?,
    )?];
    let head = run.join("head.bpk");
    if head.exists() {
        artifacts.push(Artifact::write(out, ArtifactKind::BurnHead, &read(&head)?)?);
    } else if let Some(loaded) =
        CheckpointDir::new(run.join("checkpoints"), 2).load_latest(device)?
    {
        info!(
            "{} has no head.bpk: taking the head of checkpoint {}",
            run.display(),
            loaded.path.display()
        );
        save_weights(
            &loaded.model.head,
            &out.join(ArtifactKind::BurnHead.file_name()),
        )?;
        artifacts.push(Artifact::of_file(out, ArtifactKind::BurnHead)?);
    } else {
        warn!(
            "{} has neither head.bpk nor a checkpoint: on-device fine-tuning will start a fresh {:?} head",
            run.display(),
            recipe.head.kind
        );
    }
    Ok(artifacts)
}

/// Runs `edgeclr export`.
pub fn run(args: ExportArgs) -> Result<()> {
    let cfg = run_config(&args.run)?;
    let device = Device::flex();
    let encoder = trained_encoder(&args.run, &cfg, &device)?;
    let size = args.image_size.unwrap_or(cfg.simclr.augment.image_size);
    if size < 8 {
        bail!(
            "--image-size {size} is too small; the encoder downsamples by 4 (CIFAR stem) or 32 (ImageNet stem)"
        );
    }
    let augment = AugmentConfig {
        image_size: size,
        ..cfg.simclr.augment.clone()
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating --out {}", args.out.display()))?;
    let net = encoder.fold();
    info!(
        "exporting {:?} ({} convolutions, BatchNorm folded, h = {}) at {size}×{size}",
        cfg.simclr.encoder.architecture,
        net.convs().len(),
        net.output_dim()
    );

    // Real images at the deployment resolution.
    let (calib_root, calib_kind) = match (&args.calib_data, args.calib_dataset) {
        (Some(p), Some(k)) => (p.clone(), k),
        (Some(p), None) => (p.clone(), DatasetKind::detect(p)),
        (None, k) => (
            cfg.train.data.clone().context(
                "the run's config names no training data; pass --calib-data with real images",
            )?,
            k.unwrap_or(cfg.train.dataset),
        ),
    };
    let (calib_images, check_images) = calibration_sets(
        calib_kind,
        &calib_root,
        if args.int8 { args.calib_n } else { 0 },
        args.check_n,
    )?;
    let views = |imgs: &[RgbImage]| -> Vec<Vec<f32>> {
        imgs.par_iter().map(|i| augment.eval_view(i)).collect()
    };
    let check = views(&check_images);
    let quant = QuantConfig {
        method: args.calib_method,
        weights: if args.per_channel {
            WeightGranularity::PerChannel
        } else {
            WeightGranularity::PerTensor
        },
    };
    let mut kinds = Vec::new();
    if matches!(args.format, Format::Onnx | Format::Both) {
        kinds.extend([ArtifactKind::OnnxFp32, ArtifactKind::OnnxFp32Batched]);
    }
    if matches!(args.format, Format::Nnef | Format::Both) {
        kinds.push(ArtifactKind::NnefFp32);
    }
    if args.int8 {
        kinds.extend([ArtifactKind::OnnxInt8Qlinear, ArtifactKind::OnnxInt8Qdq]);
        info!(
            "calibrating on {} images ({}) from {}",
            calib_images.len(),
            quant.method,
            calib_root.display()
        );
    }
    let (artifacts, quantization) = write_artifacts(
        &net,
        size,
        &kinds,
        &views(&calib_images),
        quant,
        &calib_root.display().to_string(),
        &args.out,
    )?;

    // Parity: every fp32 file in tract vs the unfolded burn model.
    let mut drift = Drift::default();
    let reference = burn_embed(&encoder, &check, size, &device);
    let mut fp32_tract = None;
    for a in artifacts.iter().filter(|a| !a.kind.is_int8()) {
        let path = args.out.join(&a.file);
        let embedder = TractEmbedder::load(&path, size)?;
        let got = embed_with_progress(&embedder, &check, a.file.as_str())?;
        let agreement = Agreement::measure(format!("tract {} vs burn", a.file), &got, &reference);
        if agreement.min_cosine < 0.9999 {
            warn!(
                "{}: min cosine {:.6} < 0.9999 against burn",
                a.file, agreement.min_cosine
            );
        }
        drift.agreements.push(agreement);
        if fp32_tract.is_none() {
            fp32_tract = Some((embedder, got));
        }
    }

    // int8 vs fp32 in tract.
    let mut int8_embedder = None;
    let fp32_ref = match &fp32_tract {
        Some((_, v)) => v.clone(),
        None => reference.clone(),
    };
    for a in artifacts.iter().filter(|a| a.kind.is_int8()) {
        let embedder = TractEmbedder::load(&args.out.join(&a.file), size)?;
        let got = embed_with_progress(&embedder, &check, a.file.as_str())?;
        let agreement =
            Agreement::measure(format!("tract {} vs tract fp32", a.file), &got, &fp32_ref);
        if agreement.mean_cosine < 0.995 {
            warn!(
                "{}: mean cosine {:.5} < 0.995 against fp32; try --per-channel or a percentile calibration",
                a.file, agreement.mean_cosine
            );
        }
        drift.agreements.push(agreement);
        if a.kind == ArtifactKind::OnnxInt8Qlinear {
            int8_embedder = Some(embedder);
        }
    }

    // kNN on tract embeddings, fp32 vs int8.
    if let Some(root) = &args.knn_data {
        let (Some((fp32, _)), Some(int8)) = (&fp32_tract, &int8_embedder) else {
            bail!("--knn-data compares fp32 with int8: pass --int8 and an fp32 --format");
        };
        let kind = args
            .knn_dataset
            .unwrap_or_else(|| DatasetKind::detect(root));
        let (train, test) =
            data::load_labelled(kind, root, args.knn_train_limit, args.knn_test_limit)?;
        let classes = train.num_classes().max(test.num_classes());
        let (bank_views, query_views) = (views(&train.images), views(&test.images));
        let knn = KnnConfig::default();
        let acc = |e: &TractEmbedder, what: &str| -> Result<f64> {
            let bank = Features::normalised(embed_with_progress(
                e,
                &bank_views,
                &format!("{what} bank"),
            )?);
            let query = Features::normalised(embed_with_progress(
                e,
                &query_views,
                &format!("{what} test"),
            )?);
            Ok(knn_accuracy(
                &bank,
                &train.labels,
                &query,
                &test.labels,
                classes,
                knn,
                &device,
            )
            .top1)
        };
        let (fp32_acc, int8_acc) = (acc(fp32, "fp32")?, acc(int8, "int8")?);
        drift.knn = Some(KnnDrift {
            data: root.display().to_string(),
            bank: train.len(),
            queries: test.len(),
            k: knn.k,
            fp32: fp32_acc,
            int8: int8_acc,
        });
    }

    let weights = args.run.join("encoder.bpk");
    let weights_sha256 = sha256_file(&weights)?;
    let mut artifacts = artifacts;
    artifacts.extend(finetune_weights(
        &args.run,
        &cfg.simclr,
        &args.out,
        &device,
    )?);
    let run_name = args
        .run
        .file_name()
        .map_or_else(|| "run".to_string(), |n| n.to_string_lossy().into_owned());
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        producer: format!("edgeclr {}", env!("CARGO_PKG_VERSION")),
        encoder: to_json(&cfg.simclr.encoder),
        output_dim: net.output_dim(),
        input: InputSpec {
            size,
            layout: "NCHW".into(),
            normalize: augment.normalize,
        },
        artifacts,
        quantization,
        drift,
        source: Source {
            run: args.run.display().to_string(),
            model_version: format!("{run_name}-{}", &weights_sha256[..8]),
            weights_sha256,
        },
        recipe: Some(to_json(&cfg.simclr)),
    };
    manifest.save(&args.out)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&manifest)?);
    } else {
        print_summary(&manifest, &args.out);
    }
    Ok(())
}

fn print_summary(m: &Manifest, out: &Path) {
    println!(
        "exported {} ({}×{}, h = {}) to {}",
        m.source.model_version,
        m.input.size,
        m.input.size,
        m.output_dim,
        out.display()
    );
    for a in &m.artifacts {
        println!(
            "  {:<24} {:>10} bytes  sha256 {}",
            a.file,
            a.bytes,
            &a.sha256[..16]
        );
    }
    for a in &m.drift.agreements {
        println!(
            "  {:<48} n={:<4} cosine min {:.6} mean {:.6}  max |Δ| {:.2e}",
            a.compared, a.images, a.min_cosine, a.mean_cosine, a.max_abs_error
        );
    }
    if let Some(k) = &m.drift.knn {
        println!(
            "  kNN top-1 (k={}, bank {}, {} queries): fp32 {:.2}%  int8 {:.2}%  Δ {:+.2}",
            k.k,
            k.bank,
            k.queries,
            k.fp32,
            k.int8,
            k.int8 - k.fp32
        );
    }
}
