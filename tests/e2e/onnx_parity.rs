//! The exported ONNX files as other runtimes see them: `onnx.checker` (full check) on every
//! file, and onnxruntime's outputs against `edgeclr embed`'s (tract) on the same images —
//! fp32 single and batched (cosine ≥ 0.9999), int8 QDQ and QLinear (≥ 0.99). Python side:
//! tests/python/onnx_parity.py, in the venv .ci/run makes from tests/python/requirements.txt.

use std::path::{Path, PathBuf};
use std::process::Command;

use e2e::{assert_success, exported_model, path, repo_root, run};

/// The venv's python (`EDGECLR_PYTHON` overrides).
fn python() -> Option<PathBuf> {
    let p = std::env::var_os("EDGECLR_PYTHON").map_or_else(
        || {
            let home = std::env::var_os("HOME").unwrap_or_default();
            Path::new(&home).join(".cache/edgeclr/venv/bin/python")
        },
        PathBuf::from,
    );
    p.exists().then_some(p)
}

fn script(python: &Path, args: &[&str]) -> std::process::Output {
    Command::new(python)
        .arg(repo_root().join("tests/python/onnx_parity.py"))
        .args(args)
        .output()
        .expect("spawn python")
}

fn embed(model: &Path, images: &Path, out: &Path) {
    assert_success(&run(
        "edgeclr",
        &[
            "embed",
            "--model",
            path(model),
            "--data",
            path(images),
            "--dataset",
            "folder",
            "--out",
            path(out),
        ],
    ));
}

#[test]
fn onnx_files_pass_the_checker_and_match_onnxruntime() {
    let Some(python) = python() else {
        e2e::skip(
            "no venv with onnx + onnxruntime (python3 -m venv ~/.cache/edgeclr/venv && pip install -r tests/python/requirements.txt; .ci/run does)",
        );
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let export = exported_model(tmp.path());
    let images = tmp.path().join("images");
    assert_success(&script(&python, &["images", path(&export), path(&images)]));
    let (fp32, int8) = (tmp.path().join("fp32.npy"), tmp.path().join("int8.npy"));
    embed(&export, &images, &fp32);
    embed(&export.join("encoder.int8.onnx"), &images, &int8);
    let out = script(
        &python,
        &[
            "compare",
            path(&export),
            path(&images),
            path(&fp32),
            path(&int8),
        ],
    );
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!("{report}");
    assert_success(&out);
    let json: serde_json::Value = serde_json::from_str(&report).expect("JSON report");
    assert_eq!(
        json["checker"].as_object().map(|m| m.len()),
        Some(4),
        "{json}"
    );
    assert_eq!(
        json["parity"].as_object().map(|m| m.len()),
        Some(4),
        "{json}"
    );
}
