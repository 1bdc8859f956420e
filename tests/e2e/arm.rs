//! The board runtime as a Raspberry Pi runs it: `edgeclr-device` cross-built for
//! `aarch64-unknown-linux-gnu` (`.ci/build-arm`), run here under qemu's user-mode emulator.
//! Its self-test passes, its embeddings of the shipped clip match the x86 binary's frame by
//! frame, `edgeclr bundle --board rpi5` takes it (and refuses an x86 binary), and a `dir:`
//! flash of that bundle runs its self-test through qemu (`flash --runner`).
//!
//! No skip: without the ARM binary or qemu these tests fail and say how to get them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use e2e::{
    assert_success, binary, clip, cosine, exported_model, path, read_json, read_npy_f32, repo_root,
    run,
};

const TRIPLE: &str = "aarch64-unknown-linux-gnu";
/// qemu user mode with the Debian cross toolchain's ARM libraries as the sysroot.
const QEMU: [&str; 3] = ["qemu-aarch64-static", "-L", "/usr/aarch64-linux-gnu"];

/// `target/aarch64-unknown-linux-gnu/release/edgeclr-device`, beside this test's
/// `target/release/`.
pub(crate) fn arm_binary() -> PathBuf {
    let x86 = binary("edgeclr-device");
    let target = x86
        .parent()
        .and_then(Path::parent)
        .expect("target/release has a parent");
    let arm = target.join(TRIPLE).join("release/edgeclr-device");
    assert!(
        arm.is_file(),
        "{} is missing: run .ci/build-arm (the README's test command, .ci/run, does)",
        arm.display()
    );
    arm
}

fn qemu(args: &[&str]) -> Output {
    Command::new(QEMU[0])
        .args(&QEMU[1..])
        .arg(arm_binary())
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap_or_else(|e| panic!("{} does not start ({e}): run .ci/build-arm", QEMU[0]))
}

/// The rpi5 profile with its screen replaced (CI has no I2C bus; a missing screen fails the
/// self-test by design) and the shipped clip as its camera.
fn rpi5_profile(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo_root().join("hardware/boards/rpi5.toml"))
        .expect("rpi5 profile")
        .replace("target = \"ssd1306:/dev/i2c-1\"", "target = \"none\"")
        .replace(
            "spec = \"v4l:/dev/video0\"",
            &format!("spec = \"mjpeg:{}\"", path(&clip())),
        );
    assert!(
        text.contains("target = \"none\"") && text.contains("mjpeg:"),
        "rpi5.toml changed shape"
    );
    let p = dir.join("rpi5-ci.toml");
    std::fs::write(&p, text).expect("write profile");
    p
}

/// Embeds the clip's first 20 frames losslessly with `run` (x86 binary or qemu), into `npy`.
fn embed_clip(profile: &Path, model: &Path, npy: &Path, arm: bool) -> Output {
    let sink = format!("npy:{}", path(npy));
    let args = [
        "run",
        "--config",
        path(profile),
        "--model",
        path(model),
        "--frames",
        "20",
        "--as-fast-as-possible",
        "--sink",
        &sink,
        "--embed-workers",
        "1",
    ];
    if arm {
        qemu(&args)
    } else {
        Command::new(binary("edgeclr-device"))
            .args(args)
            .output()
            .expect("spawn")
    }
}

#[test]
fn arm_binary_self_tests_and_embeds_the_clip_like_x86() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = exported_model(tmp.path());
    let profile = rpi5_profile(tmp.path());
    let out_dir = tmp.path().join("selftest");
    let out = qemu(&[
        "selftest",
        "--config",
        path(&profile),
        "--model",
        path(&model),
        "--frames",
        "10",
        "--out",
        path(&out_dir),
    ]);
    assert_success(&out);
    let report = read_json(&out_dir.join("selftest.json"));
    assert_eq!(report["ok"], true, "{report}");
    let ran: Vec<&str> = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["ok"] == true && c["skipped"] == false)
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    for check in ["camera", "embed-tract-fp32", "finetune-step"] {
        assert!(ran.contains(&check), "{check} did not run on ARM: {report}");
    }

    let (arm_npy, x86_npy) = (tmp.path().join("arm.npy"), tmp.path().join("x86.npy"));
    assert_success(&embed_clip(&profile, &model, &arm_npy, true));
    assert_success(&embed_clip(&profile, &model, &x86_npy, false));
    let (arm_shape, arm) = read_npy_f32(&arm_npy);
    let (x86_shape, x86) = read_npy_f32(&x86_npy);
    assert_eq!(arm_shape, vec![20, 128]);
    assert_eq!(x86_shape, arm_shape);
    let dim = 128;
    for i in 0..20 {
        // NEON and AVX kernels sum in different orders: rounding only.
        let c = cosine(&arm[i * dim..(i + 1) * dim], &x86[i * dim..(i + 1) * dim]);
        assert!(c >= 0.9999, "frame {i}: ARM vs x86 cosine {c}");
    }
}

#[test]
fn rpi5_bundle_takes_the_arm_binary_and_flashes_through_qemu() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let export = exported_model(dir);
    let key = dir.join("key");
    assert_success(&run("edgeclr", &["keygen", "--out", path(&key)]));
    let board = dir.join("board");
    std::fs::create_dir_all(&board).expect("board");
    std::fs::copy(dir.join("key.pub"), board.join("trusted.pub")).expect("trust");
    let bundle = |extra: &[&str]| {
        let out = dir.join("rpi5.tar");
        let mut args = vec![
            "bundle",
            "--run",
            path(dir),
            "--export",
            path(&export),
            "--board",
            "rpi5",
            "--version",
            "arm1",
            "--out",
            path(&out),
            "--sign-key",
            path(&key),
        ];
        args.extend_from_slice(extra);
        (run("edgeclr", &args), out)
    };
    // An x86 binary for an ARM board is refused, naming both.
    let x86 = binary("edgeclr-device");
    let (refused, _) = bundle(&["--device-binary", path(&x86)]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("x86_64") && err.contains(TRIPLE), "{err}");
    // By default the ARM build beside this one is found.
    arm_binary();
    let (made, tar) = bundle(&[]);
    assert_success(&made);
    let to = format!("dir:{}", path(&board));
    let source = format!("mjpeg:{}", path(&clip()));
    let runner = QEMU.join(" ");
    let out = run(
        "edgeclr",
        &[
            "flash",
            "--bundle",
            path(&tar),
            "--to",
            &to,
            "--selftest-source",
            &source,
            "--selftest-display",
            "none",
            "--runner",
            &runner,
        ],
    );
    assert_success(&out);
    assert_eq!(read_json(&board.join("state/selftest.json"))["ok"], true);
    let manifest = read_json(&board.join("releases/arm1/MANIFEST.json"));
    assert_eq!(manifest["target_triple"], TRIPLE);
}
