//! On-device fine-tuning must adapt, not merely do no harm: a factory model pretrained on
//! clean CIFAR-10 (the shipped sample, the quality gate's recipe) streams the shipped
//! night-camera cut (`tests/data/camera-night`: the same kind of images through blur, low
//! light, noise and JPEG) through `edgeclr-device run --finetune` with the conservative
//! learner ([`CONSERVATIVE`]) at duty cycle 1.0, and the model `current` points to
//! afterwards must beat the factory model's labelled kNN on that camera by [`MARGIN`]
//! points — a test that fails if adaptation stops working.
//!
//! Measured once before the gate was set (2-core Intel Xeon, 2026-12-02): factory 32.00,
//! adapted 34.60 (+2.6); a learner that cannot change the model (learning rate 0, statistics
//! frozen) stays at 32.00 by construction, so the gate of 1.5 points leaves room for a machine
//! that takes fewer steps in the budget.
//!
//! The learner is pinned: the code's defaults, which the Raspberry Pi and Jetson profiles run.
//! The x86-dev profile's factory-recipe learner (every block, Adam 1e-3) wins the 600 s
//! benchmark (docs/finetune.md, "Third sitting") but is noisy in its first hundred steps:
//! in this test's 40 s it measured 32.00 → 33.20 (2026-12-02), under the gate.

use std::path::{Path, PathBuf};

use e2e::{assert_success, path, quickstart_pretrain, repo_root, run};

/// kNN top-1 points the adapted model must gain on the night camera.
const MARGIN: f64 = 1.5;
/// Seconds of streaming and fine-tuning.
// Wall-clock budget of the fine-tuning run. On a 2-core AMD EPYC with the rest of the suite
// running beside it (2026-12-03): 40 s gave +1.2 (32.00 → 33.20), 60 s +1.4; alone it passes.
const SECONDS: &str = "60";
/// `--set` values that put the x86-dev profile back on the code's default learner:
/// `TrainerConfig::default()` and the x86-dev budgets it was measured with.
const CONSERVATIVE: [&str; 7] = [
    "finetune.threads=1",
    "finetune.replay_capacity=256",
    "finetune.trainer.lr=1e-4",
    "finetune.trainer.temperature=0.2",
    "finetune.trainer.trainable_blocks=1",
    "finetune.trainer.distill_weight=1.0",
    "finetune.trainer.queue_size=256",
];

fn night() -> PathBuf {
    repo_root().join("tests/data/camera-night")
}

/// The factory model: the quality gate's recipe (resnet8, 32 px, batch 32, Adam 1e-3) on the
/// shipped clean sample, exported with its burn weights.
fn factory(dir: &Path) -> PathBuf {
    let run_dir = dir.join("run");
    assert_success(&quickstart_pretrain(&run_dir, "310", "1"));
    let export = dir.join("export");
    assert_success(&run(
        "edgeclr",
        &["export", "--run", path(&run_dir), "--out", path(&export)],
    ));
    export
}

/// Streams the night camera through the board with fine-tuning; returns the state folder.
fn adapt(factory: &Path, state: &Path) {
    let stream = format!("mjpeg:{}", night().join("stream.mjpeg").display());
    let mut args = vec![
        "run",
        "--board",
        "x86-dev",
        "--model",
        path(factory),
        "--state",
        path(state),
        "--finetune",
        "--finetune-device",
        "cpu",
        "--source",
        &stream,
        "--loop",
        "--duration",
        SECONDS,
        "--sink",
        "jsonl:/dev/null",
        "--set",
        "finetune.duty_cycle=1.0",
    ];
    for setting in CONSERVATIVE {
        args.extend(["--set", setting]);
    }
    assert_success(&run("edgeclr-device", &args));
}

/// kNN top-1 of the model in `dir` on the night camera's labelled bank and test images.
fn knn(dir: &Path) -> f64 {
    let out = run(
        "edgeclr",
        &[
            "eval",
            "--model",
            path(dir),
            "--data",
            path(&night()),
            "--protocol",
            "knn",
            "--json",
        ],
    );
    assert_success(&out);
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("eval --json prints one JSON object");
    report["model_result"]["test"]["top1"]
        .as_f64()
        .unwrap_or_else(|| panic!("no top-1 in {report}"))
}

fn current(state: &Path) -> PathBuf {
    let name = e2e::pointer(state, "current").expect("a current model");
    state.join("slots").join(name)
}

#[test]
fn finetuning_on_a_night_camera_raises_its_knn() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let factory = factory(tmp.path());
    let before = knn(&factory);

    let adapted = tmp.path().join("adapted");
    adapt(&factory, &adapted);
    let after = knn(&current(&adapted));
    assert!(
        after - before >= MARGIN,
        "fine-tuning on the night camera moved kNN {before:.2} → {after:.2}; the gate is +{MARGIN}"
    );
    eprintln!("night-camera kNN: factory {before:.2}, adapted {after:.2}, gate +{MARGIN}");
}
