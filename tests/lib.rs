//! Helpers for the end-to-end tests: locating the built binaries and the shipped data.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The repository root.
pub fn repo_root() -> PathBuf {
    // Read at run time (cargo sets it for tests): a test binary reused from a shared target
    // folder may have been compiled in another checkout.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The shipped CIFAR-10 sample.
pub fn cifar_sample() -> PathBuf {
    repo_root().join("tests/data/cifar10")
}

/// Path of a workspace binary built in the same profile as this test.
///
/// # Panics
/// When the binary has not been built; the message says how to build it.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/e2e-<hash> → target/<profile>/<name>
    let path = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>/deps")
        .join(name);
    assert!(
        path.exists(),
        "{} not built; run `cargo build --release --workspace` before the tests (the README's test command does)",
        path.display()
    );
    path
}

/// Runs `binary(name)` with `args`, returning its output.
pub fn run(name: &str, args: &[&str]) -> Output {
    Command::new(binary(name))
        .args(args)
        .output()
        .expect("spawn binary")
}

/// Panics with both streams unless `out` succeeded.
pub fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "command failed ({})\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Parses the JSON file at `path`.
///
/// # Panics
/// When the file is missing or not JSON, naming it.
pub fn read_json(path: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `edgeclr pretrain` of a tiny resnet8 (16 px views, batch 16, Adam) on 64 images of the
/// shipped sample into `out`, with `extra` flags appended (`--device cpu` unless given).
pub fn tiny_pretrain(out: &std::path::Path, extra: &[&str]) -> Output {
    tiny(&["pretrain"], out, extra)
}

/// `command` (any subcommand taking the pretrain flags, e.g. `["ablate", "--table", "head"]`)
/// with the tiny recipe of [`tiny_pretrain`].
pub fn tiny(command: &[&str], out: &std::path::Path, extra: &[&str]) -> Output {
    let data = cifar_sample();
    let mut args = command.to_vec();
    args.extend_from_slice(&[
        "--data",
        data.to_str().expect("utf-8 path"),
        "--encoder",
        "resnet8",
        "--batch-size",
        "16",
        "--image-size",
        "16",
        "--optimizer",
        "adam",
        "--lr",
        "0.001",
        "--warmup-epochs",
        "0",
        "--train-limit",
        "64",
        "--seed",
        "5",
        "--out",
        out.to_str().expect("utf-8 path"),
    ]);
    args.extend_from_slice(extra);
    if !extra.contains(&"--device") {
        args.extend_from_slice(&["--device", "cpu"]);
    }
    run("edgeclr", &args)
}

/// A path as the `&str` a command-line argument needs.
///
/// # Panics
/// For a non-UTF-8 path.
pub fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Reads a float32 `.npy` (written by `edgeclr embed` or the device's npy sink): `(shape, values)`.
///
/// # Panics
/// When the file is missing or not a float32 npy.
pub fn read_npy_f32(p: &std::path::Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(p).expect("npy exists");
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00", "npy magic");
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + len]).expect("ascii header");
    assert!(header.contains("'descr': '<f4'"), "{header}");
    let shape_text = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .expect("shape");
    let shape: Vec<usize> = shape_text
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().expect("dim"))
        .collect();
    let values: Vec<f32> = bytes[10 + len..]
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(values.len(), shape.iter().product::<usize>());
    (shape, values)
}

/// Cosine similarity of two vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    dot / (a.iter().map(|x| x * x).sum::<f32>().sqrt()
        * b.iter().map(|x| x * x).sum::<f32>().sqrt())
}

/// The shipped 100-frame street clip.
pub fn clip() -> PathBuf {
    repo_root().join("tests/data/camera/clip_320x240.mjpeg")
}

/// A tiny pretrained + exported model (16 px input, fp32 + int8, burn weights) in `dir/export`.
pub fn exported_model(dir: &std::path::Path) -> PathBuf {
    let run_dir = dir.join("run");
    assert_success(&tiny_pretrain(
        &run_dir,
        &["--max-steps", "2", "--knn-every", "0"],
    ));
    let out = dir.join("export");
    assert_success(&run(
        "edgeclr",
        &[
            "export",
            "--run",
            path(&run_dir),
            "--out",
            path(&out),
            "--int8",
            "--calib-n",
            "16",
            "--check-n",
            "16",
        ],
    ));
    out
}

/// The name a pointer symlink (`current`, `previous`) in `root` points at.
pub fn pointer(root: &std::path::Path, name: &str) -> Option<String> {
    std::fs::read_link(root.join(name))
        .ok()
        .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
}

/// The release folders of an install root, sorted.
pub fn releases(root: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root.join("releases"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// `edgeclr bundle` of the export folder `export` for `x86-dev` as release `version` into
/// `dir/<version>.tar`, with `extra` flags; returns the tarball.
pub fn bundle(
    dir: &std::path::Path,
    export: &std::path::Path,
    version: &str,
    extra: &[&str],
) -> PathBuf {
    let out = dir.join(format!("{version}.tar"));
    let mut args = vec![
        "bundle",
        "--run",
        path(dir),
        "--export",
        path(export),
        "--board",
        "x86-dev",
        "--version",
        version,
        "--out",
        path(&out),
    ];
    args.extend_from_slice(extra);
    assert_success(&run("edgeclr", &args));
    out
}

/// A copy of the tarball `tar` at `out` with one byte of entry `name`'s data flipped (as
/// corruption in transit would): the entry's 512-byte header starts with its name, its data
/// follows in the next block.
pub fn tamper(tar: &std::path::Path, name: &str, out: &std::path::Path) {
    let mut bytes = std::fs::read(tar).expect("tarball");
    let at = (0..bytes.len() / 512)
        .map(|b| b * 512)
        .find(|&o| bytes[o..].starts_with(name.as_bytes()))
        .unwrap_or_else(|| panic!("no entry {name}"));
    bytes[at + 512 + 100] ^= 0xff;
    std::fs::write(out, bytes).expect("write");
}

/// A test that cannot run here says why — and fails instead when `EDGECLR_NO_SKIP=1`, which
/// `.ci/run` sets because it installs everything the tests need: a green CI run cannot hide a
/// test that never ran.
///
/// # Panics
/// Under `EDGECLR_NO_SKIP=1`.
pub fn skip(reason: &str) {
    assert!(
        std::env::var("EDGECLR_NO_SKIP").as_deref() != Ok("1"),
        "{reason}, but EDGECLR_NO_SKIP=1 (.ci/run installed it): failing instead of skipping"
    );
    eprintln!("SKIPPED: {reason}");
}

/// `edgeclr pretrain` with the quickstart's recipe on the shipped CIFAR-10 sample (resnet8,
/// 32 px, batch 32, Adam 1e-3, 10 epochs = 310 steps), stopped after `steps` steps, with
/// `seed`, into `out`: the quality gate's run and the adaptation test's factory model.
pub fn quickstart_pretrain(out: &std::path::Path, steps: &str, seed: &str) -> Output {
    let data = cifar_sample();
    run(
        "edgeclr",
        &[
            "pretrain",
            "--data",
            path(&data),
            "--encoder",
            "resnet8",
            "--batch-size",
            "32",
            "--epochs",
            "10",
            "--max-steps",
            steps,
            "--optimizer",
            "adam",
            "--lr",
            "0.001",
            "--warmup-epochs",
            "0",
            "--knn-every",
            "0",
            "--seed",
            seed,
            "--device",
            "cpu",
            "--out",
            path(out),
        ],
    )
}

/// The onnxruntime library the tests run `edgeclr-device --backend onnxruntime` with:
/// `ORT_DYLIB_PATH` (a file or a wheel's `capi/` folder; `.ci/run` exports the test venv's),
/// else the test venv's wheel. `None` after [`skip`] when neither exists.
pub fn onnxruntime_library() -> Option<PathBuf> {
    let given = std::env::var_os("ORT_DYLIB_PATH")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let venv = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/edgeclr/venv/lib"));
    let from_venv = || -> Option<PathBuf> {
        std::fs::read_dir(venv.as_ref()?)
            .ok()?
            .flatten()
            .map(|py| py.path().join("site-packages/onnxruntime/capi"))
            .find(|capi| capi.is_dir())
    };
    match given.filter(|p| p.exists()).or_else(from_venv) {
        Some(p) => Some(p),
        None => {
            skip("no onnxruntime library (ORT_DYLIB_PATH unset; .ci/run installs the test venv's)");
            None
        }
    }
}

/// The int8-vs-fp32 mean cosine `edgeclr export` recorded in `model`'s manifest.
///
/// # Panics
/// When the manifest records none.
pub fn recorded_int8_agreement(model: &std::path::Path) -> f64 {
    read_json(&model.join("manifest.json"))["drift"]["agreements"]
        .as_array()
        .expect("agreements")
        .iter()
        .find(|a| {
            a["compared"]
                .as_str()
                .is_some_and(|c| c.contains("encoder.int8.onnx"))
        })
        .and_then(|a| a["mean_cosine"].as_f64())
        .expect("the export records int8 vs fp32")
}
