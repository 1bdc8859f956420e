//! `edgeclr quickstart`: the whole path on the data shipped in the repository, in a few
//! minutes on 2 cores — SimCLR pretraining → kNN against a random-init floor → fp32 + int8
//! export → bundle for `x86-dev` → flash to a local `dir:` board (verified, self-tested) → the
//! device runtime on the shipped street clip with the status screen rendered to PNG → summary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use edgeclr_learn::device::DeviceChoice;
use edgeclr_learn::encoder::Architecture;
use serde_json::Value;

use crate::eval::{EvalArgs, Protocol};
use crate::export::ExportArgs;
use crate::pretrain::{OptimizerKind, PretrainArgs};
use crate::release::{BundleArgs, FlashArgs};

/// `edgeclr quickstart`.
#[derive(Debug, clap::Args)]
pub struct QuickstartArgs {
    /// Output folder (replaced if it holds an earlier quickstart).
    #[arg(long, default_value = "runs/quickstart")]
    pub out: PathBuf,
    /// Shipped CIFAR-10 sample.
    #[arg(long, default_value = "tests/data/cifar10")]
    pub data: PathBuf,
    /// Shipped camera clip.
    #[arg(long, default_value = "tests/data/camera/clip_320x240.mjpeg")]
    pub clip: PathBuf,
    /// Pretraining epochs over the 1,000-image sample.
    #[arg(long, default_value_t = 2)]
    pub epochs: usize,
    /// Frames the device runtime embeds from the (looped) clip.
    #[arg(long, default_value_t = 300)]
    pub frames: u64,
}

fn read(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(serde_json::from_str(&text)?)
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap_or_default()
}

/// Runs `edgeclr quickstart`.
pub fn run(args: &QuickstartArgs) -> Result<()> {
    let started = Instant::now();
    for (what, path) in [("--data", &args.data), ("--clip", &args.clip)] {
        if !path.exists() {
            bail!(
                "{what} {} does not exist; run quickstart from the repository root (the sample data ships in tests/data/)",
                path.display()
            );
        }
    }
    let out = &args.out;
    if out.exists() {
        let ours = out.join("quickstart.json").exists() || out.join("config.toml").exists();
        if !ours && std::fs::read_dir(out)?.next().is_some() {
            bail!(
                "{} exists and is not an earlier quickstart; pass another --out",
                out.display()
            );
        }
        std::fs::remove_dir_all(out).with_context(|| format!("replacing {}", out.display()))?;
    }
    let stage = |k: usize, what: &str| {
        eprintln!(
            "\n[{k}/6] {what} ({:.0} s)",
            started.elapsed().as_secs_f64()
        );
    };

    stage(
        1,
        "SimCLR pretraining of resnet8 on the shipped 1,000-image CIFAR-10 sample",
    );
    crate::pretrain::run(PretrainArgs {
        data: Some(args.data.clone()),
        encoder: Some(Architecture::Resnet8),
        batch_size: Some(32),
        epochs: Some(args.epochs),
        optimizer: Some(OptimizerKind::Adam),
        lr: Some(0.001),
        warmup_epochs: Some(0),
        device: Some(DeviceChoice::Cpu),
        out: out.clone(),
        ..PretrainArgs::default()
    })?;

    stage(
        2,
        "kNN on the 500 shipped test images, trained vs random init",
    );
    crate::eval::run(EvalArgs {
        device: DeviceChoice::Cpu,
        ..EvalArgs::new(out.clone(), args.data.clone(), Protocol::Knn)
    })?;
    let knn = read(&out.join("eval-knn.json"))?;

    stage(
        3,
        "export: fp32 ONNX/NNEF + int8 (calibrated on the sample), parity and drift",
    );
    let export = out.join("export");
    crate::export::run(ExportArgs {
        int8: true,
        calib_n: 128,
        check_n: 128,
        ..ExportArgs::new(out.clone(), export.clone())
    })?;
    let manifest = read(&export.join("manifest.json"))?;

    stage(
        4,
        "bundle for x86-dev (signed) and flash to the local board folder",
    );
    let key = out.join("signing.key");
    crate::release::keygen(&crate::release::KeygenArgs { out: key.clone() })?;
    let board = out.join("board");
    std::fs::create_dir_all(&board)?;
    std::fs::copy(out.join("signing.key.pub"), board.join("trusted.pub"))?;
    let tar = out.join("bundle-x86-dev.tar");
    crate::release::bundle(&BundleArgs {
        version: Some("quickstart".into()),
        sign_key: Some(key.clone()),
        ..BundleArgs::new(out.clone(), "x86-dev", tar.clone())
    })?;
    let source = format!("mjpeg:{}", p(&args.clip));
    crate::release::flash(&FlashArgs {
        selftest_source: Some(source.clone()),
        ..FlashArgs::new(tar.clone(), format!("dir:{}", p(&board)))
    })?;
    let selftest = read(&board.join("state/selftest.json"))?;

    stage(5, "the flashed device runtime on the shipped street clip");
    let current = board.join("current");
    let (report, png, jsonl) = (
        out.join("device-report.json"),
        out.join("status.png"),
        out.join("clip.jsonl"),
    );
    let frames = args.frames.to_string();
    let status = Command::new(current.join("bin/edgeclr-device"))
        .args([
            "run",
            "--config",
            p(&current.join("board.toml")),
            "--model",
            p(&current.join("model")),
            "--state",
            p(&board.join("state")),
            "--source",
            &source,
            "--loop",
            "--frames",
            &frames,
            "--sink",
            &format!("jsonl:{}", p(&jsonl)),
            "--display",
            &format!("png:{}", p(&png)),
            "--report",
            p(&report),
        ])
        .status()
        .context("starting the flashed edgeclr-device")?;
    if !status.success() {
        bail!("the device runtime failed ({status})");
    }
    let device = read(&report)?;

    stage(6, "summary");
    let top1 = |k: &str| knn[k]["test"]["top1"].as_f64().unwrap_or(f64::NAN);
    let int8 = manifest["drift"]["agreements"]
        .as_array()
        .and_then(|a| {
            a.iter().find(|x| {
                x["compared"]
                    .as_str()
                    .is_some_and(|c| c.contains("int8.onnx vs"))
            })
        })
        .and_then(|x| x["mean_cosine"].as_f64())
        .unwrap_or(f64::NAN);
    let parity = manifest["drift"]["agreements"][0]["max_abs_error"]
        .as_f64()
        .unwrap_or(f64::NAN);
    let summary = serde_json::json!({
        "knn_top1": {"pretrained": top1("pretrained"), "random_init": top1("random_init")},
        "export": {"tract_vs_burn_max_abs": parity, "int8_vs_fp32_mean_cosine": int8},
        "selftest_ok": selftest["ok"],
        "preferred_artifact": selftest["preferred_artifact"],
        "device": {"frames": device["frames_embedded"], "fps": device["fps"],
                   "latency_p99_ms": device["latency_p99_ms"], "peak_rss_mib": device["peak_rss_mib"]},
        "seconds": started.elapsed().as_secs_f64(),
    });
    edgeclr_artifact::atomic::write_atomic(
        &out.join("quickstart.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    println!(
        "\nedgeclr quickstart finished in {:.0} s\n\
         kNN top-1 on 500 test images: {:.1} % pretrained vs {:.1} % random init\n\
         export: tract vs burn max |Δ| {:.1e}; int8 vs fp32 mean cosine {:.5}\n\
         board: bundle verified and flashed to {}, self-test {} (faster embedder: {})\n\
         device: {} frames of the street clip at {:.0} fps, p99 latency {:.1} ms, peak RSS {:.0} MiB\n\
         look at: {}/plots/*.png (training curves), {} (status screen), {} (embeddings),\n\
         {} (summary), {} (export manifest)",
        started.elapsed().as_secs_f64(),
        top1("pretrained"),
        top1("random_init"),
        parity,
        int8,
        board.display(),
        if selftest["ok"] == true {
            "passed"
        } else {
            "FAILED"
        },
        selftest["preferred_artifact"].as_str().unwrap_or("?"),
        device["frames_embedded"],
        device["fps"].as_f64().unwrap_or(f64::NAN),
        device["latency_p99_ms"].as_f64().unwrap_or(f64::NAN),
        device["peak_rss_mib"].as_f64().unwrap_or(f64::NAN),
        out.display(),
        png.display(),
        jsonl.display(),
        out.join("quickstart.json").display(),
        export.join("manifest.json").display(),
    );
    Ok(())
}
