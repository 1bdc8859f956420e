//! On-device fine-tuning must adapt, not merely do no harm: a factory model pretrained on
//! clean CIFAR-10 (the shipped sample, the quality gate's recipe) streams the shipped
//! night-camera cut (`tests/data/camera-night`: the same kind of images through blur, low
//! light, noise and JPEG) through `edgeclr-device run --finetune` with the conservative
//! learner ([`CONSERVATIVE`]) at duty cycle 1.0 for a budget of [`STEPS`] steps, twice (two
//! seeds, side by side), and the models `current` points to afterwards must beat the factory
//! model's labelled kNN on that camera: each of them, and by [`MARGIN`] points on average — a
//! test that fails if adaptation stops working.
//!
//! The budget is in steps, not seconds: a wall-clock budget measured the CPU share the test
//! got (on a 2-core AMD EPYC under the parallel suite, 60 s gave +1.4, alone +2.4). What stays
//! is the stream's timing: which frames have arrived by step k, so one run's gain varies.
//! Measured with 125–200 steps (2-core AMD EPYC, 2026-12-03, `edgeclr-device run
//! --finetune-steps`, five runs, some beside a CPU hog): factory 32.00, adapted 33.4–35.2
//! (+1.4 to +3.2, mean +2.2); the Intel Xeon measured +2.6 (40 s). A learner that cannot
//! change the model (learning rate 0, statistics frozen) stays at 32.00 by construction, so
//! a gate of +1.0 on the mean of two runs is far from both.
//!
//! The learner is pinned: the code's defaults, which the Raspberry Pi and Jetson profiles run.
//! The x86-dev profile's factory-recipe learner (every block, Adam 1e-3) wins the 600 s
//! benchmark (docs/finetune.md, "Third sitting") but is noisy in its first hundred steps:
//! in a 40 s run it measured 32.00 → 33.20 (2026-12-02).

use std::path::{Path, PathBuf};

use e2e::{assert_success, path, quickstart_pretrain, repo_root, run};

/// kNN top-1 points the adapted models must gain on the night camera, on average.
const MARGIN: f64 = 1.0;
/// Fine-tuning steps of each run (six candidates at the default `update_every` of 25).
const STEPS: u64 = 150;
/// Seeds of the two runs.
const SEEDS: [u64; 2] = [1, 2];
/// A cap on each run's wall time, so a learner that never gets its frames fails the test
/// instead of hanging it.
const CAP_SECONDS: &str = "900";
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

/// Streams the night camera through the board with fine-tuning into `state` for [`STEPS`]
/// steps with `seed`; returns the steps the run's report counts.
fn adapt(factory: &Path, state: &Path, seed: u64) -> u64 {
    let stream = format!("mjpeg:{}", night().join("stream.mjpeg").display());
    let report = state.with_extension("report.json");
    let (steps, seed) = (STEPS.to_string(), format!("finetune.trainer.seed={seed}"));
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
        "--finetune-steps",
        &steps,
        "--source",
        &stream,
        "--loop",
        "--duration",
        CAP_SECONDS,
        "--sink",
        "jsonl:/dev/null",
        "--report",
        path(&report),
        "--set",
        "finetune.duty_cycle=1.0",
        "--set",
        &seed,
    ];
    for setting in CONSERVATIVE {
        args.extend(["--set", setting]);
    }
    assert_success(&run("edgeclr-device", &args));
    let text = std::fs::read_to_string(&report).expect("the run writes its report");
    let report: serde_json::Value = serde_json::from_str(&text).expect("a JSON report");
    report["finetune"]["steps"]
        .as_u64()
        .unwrap_or_else(|| panic!("no fine-tuning steps in {report}"))
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

    let states: Vec<PathBuf> = SEEDS
        .iter()
        .map(|s| tmp.path().join(format!("adapted-{s}")))
        .collect();
    let factory = factory.as_path();
    let steps: Vec<u64> = std::thread::scope(|scope| {
        let runs: Vec<_> = SEEDS
            .iter()
            .zip(&states)
            .map(|(&seed, state)| scope.spawn(move || adapt(factory, state, seed)))
            .collect();
        runs.into_iter()
            .map(|r| r.join().expect("adaptation thread"))
            .collect()
    });
    assert_eq!(steps, [STEPS; 2], "each run stops at its step budget");
    let after: Vec<f64> = states.iter().map(|s| knn(&current(s))).collect();
    let gain = after.iter().map(|a| a - before).sum::<f64>() / after.len() as f64;
    eprintln!("night-camera kNN: factory {before:.2}, adapted {after:.2?}, mean gain {gain:+.2}");
    assert!(
        after.iter().all(|&a| a > before) && gain >= MARGIN,
        "fine-tuning on the night camera moved kNN {before:.2} → {after:.2?} (mean {gain:+.2}); \
         the gate is a gain in each run and +{MARGIN} on average"
    );
}
