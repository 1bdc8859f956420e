//! `edgeclr pretrain` on the shipped CIFAR-10 sample.

use std::fs;
use std::path::Path;

use e2e::{assert_success, cifar_sample, read_json, run, tiny_pretrain as pretrain};

fn step_losses(run_dir: &Path) -> Vec<(u64, f64)> {
    fs::read_to_string(run_dir.join("metrics.jsonl"))
        .expect("metrics.jsonl")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON line"))
        .filter_map(|v| Some((v.get("step")?.as_u64()?, v.get("loss")?.as_f64()?)))
        .collect()
}

#[test]
fn pretrain_writes_artifacts_and_resumes_bit_for_bit() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Uninterrupted: 2 epochs of 4 steps.
    let full = tmp.path().join("full");
    assert_success(&pretrain(&full, &["--epochs", "2"]));
    for f in [
        "config.toml",
        "metrics.jsonl",
        "results.json",
        "encoder.bpk",
        "checkpoints/LATEST",
    ] {
        assert!(full.join(f).exists(), "missing {f}");
    }
    let results = read_json(&full.join("results.json"));
    assert_eq!(results["steps"], 8);
    assert_eq!(results["epochs_completed"], 2);

    // Interrupted after 3 steps (mid-epoch), then resumed.
    let split = tmp.path().join("split");
    assert_success(&pretrain(&split, &["--epochs", "2", "--max-steps", "3"]));
    let again = pretrain(&split, &["--epochs", "2"]);
    assert!(
        !again.status.success(),
        "a second run into the same folder without --resume must refuse"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("--resume"));
    assert_success(&pretrain(&split, &["--epochs", "2", "--resume"]));
    assert_eq!(
        step_losses(&full),
        step_losses(&split),
        "resumed run must replay the same losses"
    );
}

#[test]
fn bad_dataset_path_is_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = run(
        "edgeclr",
        &[
            "pretrain",
            "--data",
            "/nonexistent/cifar",
            "--out",
            tmp.path().join("r").to_str().expect("utf-8"),
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/cifar") && err.contains("--data"),
        "{err}"
    );
}

#[test]
fn divergence_rolls_back_halves_lr_and_never_checkpoints_nan() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("diverge");
    // SGD at lr 1e30 blows up at once; each rollback halves the lr until the guard gives up.
    let data = cifar_sample();
    let run_out = run(
        "edgeclr",
        &[
            "pretrain",
            "--data",
            data.to_str().expect("utf-8"),
            "--encoder",
            "resnet8",
            "--batch-size",
            "8",
            "--image-size",
            "8",
            "--optimizer",
            "sgd",
            "--lr",
            "1e30",
            "--warmup-epochs",
            "0",
            "--train-limit",
            "16",
            "--epochs",
            "1",
            "--knn-every",
            "0",
            "--device",
            "cpu",
            "--out",
            out.to_str().expect("utf-8"),
        ],
    );
    assert!(
        !run_out.status.success(),
        "a run that never stops diverging must fail"
    );
    let stderr = String::from_utf8_lossy(&run_out.stderr);
    assert!(stderr.contains("diverging"), "{stderr}");
    let events: Vec<serde_json::Value> = fs::read_to_string(out.join("metrics.jsonl"))
        .expect("metrics")
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "diverged")
        .collect();
    assert!(
        events.len() >= 2,
        "expected repeated rollbacks, got {events:?}"
    );
    let scales: Vec<f64> = events
        .iter()
        .map(|e| e["lr_scale"].as_f64().expect("lr_scale"))
        .collect();
    assert_eq!(scales[0], 0.5);
    assert!(
        scales.windows(2).all(|w| (w[1] - w[0] / 2.0).abs() < 1e-15),
        "lr halves each time: {scales:?}"
    );
    // The only checkpoint is the initial, finite one.
    let latest = fs::read_to_string(out.join("checkpoints/LATEST")).expect("LATEST");
    assert_eq!(latest.trim(), "step-000000000");
}

#[test]
fn wgpu_backend_runs_pretrain_and_reports_its_adapter() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("wgpu");
    let result = pretrain(
        &out,
        &[
            "--epochs",
            "1",
            "--max-steps",
            "2",
            "--knn-every",
            "0",
            "--device",
            "wgpu",
        ],
    );
    let stderr = String::from_utf8_lossy(&result.stderr);
    if !result.status.success() && stderr.contains("no usable wgpu adapter") {
        e2e::skip("no wgpu adapter on this machine (install mesa-vulkan-drivers)");
        return;
    }
    assert_success(&result);
    let results = read_json(&out.join("results.json"));
    let device = results["device"].as_str().expect("device string");
    assert!(
        device.starts_with("wgpu: "),
        "device selection must name the adapter: {device}"
    );
    // .ci/run installs Mesa's lavapipe: there the adapter must be Vulkan, not wgpu's GL
    // fallback (which would hide a missing or broken Vulkan driver behind a green run).
    if std::env::var("EDGECLR_NO_SKIP").as_deref() == Ok("1") {
        assert!(
            device.contains("Vulkan"),
            "CI installs lavapipe (Vulkan) but wgpu ran on {device}"
        );
    }
    assert_eq!(results["steps"], 2);
    assert!(
        results["final_loss"].as_f64().is_some_and(f64::is_finite),
        "{results}"
    );
}

/// `--device cuda`: on a machine without NVIDIA's driver (or a build without the `cuda`
/// feature) a one-line error naming the flag and the fix, exit 2, nothing trained.
#[test]
fn cuda_without_nvidia_is_a_one_line_error_with_exit_2() {
    let has_nvidia = Path::new("/proc/driver/nvidia/gpus").is_dir();
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = pretrain(
        &tmp.path().join("run"),
        &["--device", "cuda", "--max-steps", "1"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    if has_nvidia && out.status.success() {
        // A CUDA build on an NVIDIA machine trains instead.
        let results = read_json(&tmp.path().join("run/results.json"));
        assert!(
            results["device"]
                .as_str()
                .is_some_and(|d| d.starts_with("cuda:")),
            "{results}"
        );
        return;
    }
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("--device cuda") && errors[0].contains("--device wgpu or cpu"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!tmp.path().join("run/encoder.bpk").exists());
}
