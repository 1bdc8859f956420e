//! `edgeclr eval --model EXPORT`: an export folder (or one model file in it) scored on a
//! labelled dataset through the board's code path — tract, with the manifest's input contract
//! (centre crop, resize, normalise) — so a user can label a few hundred of their own frames
//! and judge the model a board runs. kNN and linear protocols (fine-tuning needs the burn
//! weights of a run: `--run`).

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use edgeclr_runtime::embed;
use serde_json::json;
use tracing::info;

use super::features::Features;
use super::{EvalArgs, Protocol, score};
use crate::data::{self, DatasetKind};
use crate::embed::embed_images;

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
    let kind = args
        .dataset
        .unwrap_or_else(|| DatasetKind::detect(&args.data));
    let (train, test) = data::load_labelled(kind, &args.data, args.train_limit, args.test_limit)?;
    info!(train = train.len(), test = test.len(), protocol = ?args.protocol, "evaluating");
    let bank = Features::normalised(embed_images(&opened, &train.images, "bank")?);
    let query = Features::normalised(embed_images(&opened, &test.images, "test")?);
    let result = score(
        args.protocol,
        (&bank, &train),
        (&query, &test),
        &Device::flex(),
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
