//! `edgeclr eval --model EXPORT`: an export folder (or one model file in it) scored on a
//! labelled dataset through the board's code path — tract, with the manifest's input contract
//! (centre crop, resize, normalise) — so a user can label a few hundred of their own frames
//! and judge the model a board runs. kNN and linear protocols (fine-tuning needs the burn
//! weights of a run: `--run`).

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use edgeclr_runtime::embed::{self, Preprocess};
use rayon::prelude::*;
use serde_json::{Value, json};
use tracing::info;

use super::features::Features;
use super::{EvalArgs, Protocol, knn, linear};
use crate::data::{self, DatasetKind, LabeledImages, Split};
use crate::export::embed_with_progress;

/// L2-normalised rows as [`Features`].
pub fn normalised(rows: Vec<Vec<f32>>) -> Features {
    let dim = rows.first().map_or(0, Vec::len);
    let n = rows.len();
    let mut values = Vec::with_capacity(n * dim);
    for mut r in rows {
        let norm = r.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        r.iter_mut().for_each(|v| *v /= norm);
        values.extend(r);
    }
    Features { n, dim, values }
}

/// The labelled train (bank) and test splits of `root`, each optionally class-balanced down.
pub fn labelled_splits(
    root: &Path,
    kind: Option<DatasetKind>,
    train_limit: Option<usize>,
    test_limit: Option<usize>,
) -> Result<(LabeledImages, LabeledImages)> {
    let kind = kind.unwrap_or_else(|| DatasetKind::detect(root));
    let limit = |d: LabeledImages, l: Option<usize>| match l {
        Some(l) => d.labeled_only().balanced_subset(l),
        None => d.labeled_only(),
    };
    let train = limit(data::load(kind, root, Split::Train)?, train_limit);
    let test = limit(data::load(kind, root, Split::Test)?, test_limit);
    if train.len() == 0 || test.len() == 0 {
        bail!(
            "{} has no labelled train and test images; evaluation needs labels (an image folder \
             with train/<class>/ and test/<class>/ subfolders, or CIFAR/STL binaries)",
            root.display()
        );
    }
    Ok((train, test))
}

/// Runs `edgeclr eval --model`.
pub fn run(args: &EvalArgs, model: &Path) -> Result<()> {
    if args.protocol == Protocol::Finetune || args.random_init {
        bail!(
            "--model scores an export with kNN or linear evaluation; --protocol finetune and \
             --random-init need the burn weights of a run: pass --run RUN instead"
        );
    }
    let opened =
        embed::open(model).with_context(|| format!("opening --model {}", model.display()))?;
    edgeclr_runtime::isa::apply();
    let (train, test) =
        labelled_splits(&args.data, args.dataset, args.train_limit, args.test_limit)?;
    info!(train = train.len(), test = test.len(), protocol = ?args.protocol, "evaluating");
    let preprocess = Preprocess::from_manifest(&opened.manifest);
    let embed = |images: &[edgeclr_artifact::RgbImage], what: &str| -> Result<Features> {
        let views: Vec<Vec<f32>> = images.par_iter().map(|i| preprocess.apply(i)).collect();
        Ok(normalised(embed_with_progress(
            &opened.embedder,
            &views,
            what,
        )?))
    };
    let (bank, query) = (embed(&train.images, "bank")?, embed(&test.images, "test")?);
    let classes = train.num_classes().max(test.num_classes());
    let device = Device::flex();
    let result = score(
        args.protocol,
        (&bank, &train),
        (&query, &test),
        classes,
        &device,
    );
    let report = json!({
        "protocol": args.protocol,
        "model": opened.embedder.source(),
        "model_kind": format!("{:?}", opened.kind),
        "model_version": opened.manifest.source.model_version,
        "data": args.data,
        "train_images": train.len(),
        "test_images": test.len(),
        "model_result": result,
    });
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        let t = &report["model_result"]["test"];
        println!(
            "{:?} evaluation of {} on {} test images ({} bank): top-1 {:.2}%  top-5 {:.2}%",
            args.protocol,
            opened.embedder.source().display(),
            test.len(),
            train.len(),
            t["top1"].as_f64().unwrap_or(f64::NAN),
            t["top5"].as_f64().unwrap_or(f64::NAN)
        );
    }
    Ok(())
}

/// kNN or linear evaluation of precomputed features.
fn score(
    protocol: Protocol,
    (bank, train): (&Features, &LabeledImages),
    (query, test): (&Features, &LabeledImages),
    classes: usize,
    device: &Device,
) -> Value {
    if protocol == Protocol::Knn {
        let c = knn::KnnConfig::default();
        let acc = knn::knn_accuracy(bank, &train.labels, query, &test.labels, classes, c, device);
        return json!({"test": acc, "k": c.k, "temperature": c.temperature});
    }
    let r = linear::linear_probe(
        bank,
        &train.labels,
        query,
        &test.labels,
        classes,
        linear::LinearProbeConfig::default(),
        device,
    );
    serde_json::to_value(r).unwrap_or(Value::Null)
}
