//! The wgpu backend runs the same SimCLR step as flex and gives the same loss.
//!
//! The work happens in a child process (this test binary re-run with `--ignored --exact`)
//! so that a crash inside a Vulkan driver fails this test with its exit status instead of
//! killing the whole test runner.

use std::process::Command;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use edgeclr_learn::augment::{AugmentConfig, BatchBuilder};
use edgeclr_learn::device::{DeviceChoice, adapters, select_device};
use edgeclr_learn::encoder::{Architecture, EncoderConfig};
use edgeclr_learn::optim::OptimizerConfig;
use edgeclr_learn::{RgbImage, SimclrConfig, SimclrTrainer};

const CHILD: &str = "wgpu_child_train_step";

fn config() -> SimclrConfig {
    SimclrConfig {
        augment: AugmentConfig::cifar().with_image_size(8),
        encoder: EncoderConfig::new(Architecture::Resnet8),
        optim: OptimizerConfig::Adam { weight_decay: 0.0 },
        ..SimclrConfig::default()
    }
}

/// Loss before and after one Adam step, from the same weights and views.
fn losses(device: &Device, record: burn::store::ModuleRecord, views: &[f32]) -> (f32, f32) {
    let cfg = config();
    let model = cfg.init_model(device).load_record(record);
    let t = || Tensor::<4>::from_data(TensorData::new(views.to_vec(), [8, 3, 8, 8]), device);
    let mut trainer = SimclrTrainer::new(model, &cfg);
    let before = trainer.step(t(), 1e-2).loss;
    let after = trainer.loss(t());
    (before, after)
}

#[test]
#[ignore = "run by wgpu_matches_flex in a child process"]
fn wgpu_child_train_step() {
    if adapters().is_empty() {
        println!("RESULT skip no-wgpu-adapter");
        return;
    }
    let wgpu = select_device(DeviceChoice::Wgpu).expect("an adapter was listed");
    println!("RESULT device {}", wgpu.description);
    let flex = Device::flex().autodiff();
    let images: Vec<RgbImage> = (0..4u8)
        .map(|k| {
            RgbImage::new(
                8,
                8,
                (0..192)
                    .map(|i| (i as u8).wrapping_mul(k * 5 + 3))
                    .collect(),
            )
            .expect("8x8")
        })
        .collect();
    let refs: Vec<&RgbImage> = images.iter().collect();
    let views = BatchBuilder::new(config().augment).views(&refs, 11);
    let record = config().init_model(&flex).into_record();
    let (f0, f1) = losses(&flex, record.clone(), &views);
    let (w0, w1) = losses(&wgpu.device.autodiff(), record, &views);
    println!("RESULT losses {f0} {f1} {w0} {w1}");
}

#[test]
fn wgpu_matches_flex() {
    let exe = std::env::current_exe().expect("test binary path");
    let out = Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            CHILD,
            "--nocapture",
            "--test-threads=1",
        ])
        .output()
        .expect("spawn child test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "wgpu child process failed ({}); a driver crash shows as a signal here.\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("RESULT "))
        .collect();
    if result.iter().any(|l| l.starts_with("skip")) {
        // `.ci/run` installs lavapipe and sets EDGECLR_NO_SKIP=1: there a missing adapter fails.
        assert!(
            std::env::var("EDGECLR_NO_SKIP").as_deref() != Ok("1"),
            "no wgpu adapter, but EDGECLR_NO_SKIP=1 (.ci/run installed mesa-vulkan-drivers)"
        );
        eprintln!(
            "SKIPPED wgpu_matches_flex: no wgpu adapter on this machine (install mesa-vulkan-drivers)"
        );
        return;
    }
    let losses: Vec<f32> = result
        .iter()
        .find_map(|l| l.strip_prefix("losses "))
        .expect("child printed losses")
        .split_whitespace()
        .map(|v| v.parse().expect("a float"))
        .collect();
    let [f0, f1, w0, w1] = losses[..] else {
        panic!("expected 4 losses, got {losses:?}")
    };
    let device = result
        .iter()
        .find_map(|l| l.strip_prefix("device "))
        .unwrap_or("wgpu");
    eprintln!("{device}: flex {f0} -> {f1}, wgpu {w0} -> {w1}");
    assert!(
        (f0 - w0).abs() < 1e-3,
        "loss before the step: flex {f0} vs wgpu {w0}"
    );
    assert!(
        (f1 - w1).abs() < 1e-3,
        "loss after the step: flex {f1} vs wgpu {w1}"
    );
    assert!(
        f1 < f0 && w1 < w0,
        "the step lowered neither loss: flex {f0}->{f1}, wgpu {w0}->{w1}"
    );
}
