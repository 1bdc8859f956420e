//! onnxruntime as the board's second engine (issue 17): `selftest` times every engine ×
//! precision on the board's frames, holds each to its parity check and records the fastest;
//! `run` embeds on onnxruntime like tract does; a missing library is named, never a crash.

use std::path::Path;
use std::process::{Command, Output};

use e2e::{
    assert_success, binary, clip, cosine, exported_model, onnxruntime_library, path, read_json,
    read_npy_f32,
};

fn device(args: &[&str], library: &Path) -> Output {
    Command::new(binary("edgeclr-device"))
        .args(args)
        .env("ORT_DYLIB_PATH", library)
        .output()
        .expect("spawn edgeclr-device")
}

/// `edgeclr-device selftest` of `model` on `frames` frames of the clip into `state`.
fn selftest(model: &Path, state: &Path, frames: u32, library: &Path) -> Output {
    let source = format!("mjpeg:{}", path(&clip()));
    let frames = frames.to_string();
    let args = [
        "selftest",
        "--model",
        path(model),
        "--state",
        path(state),
        "--source",
        &source,
        "--frames",
        &frames,
    ];
    device(&args, library)
}

fn check<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report}"))
}

/// The clip's first 20 frames embedded by `run` with `extra` flags, as rows, and the log.
fn embed_clip(model: &Path, npy: &Path, library: &Path, extra: &[&str]) -> (Vec<Vec<f32>>, String) {
    let sink = format!("npy:{}", path(npy));
    let source = format!("mjpeg:{}", path(&clip()));
    let mut args = vec![
        "run",
        "--board",
        "x86-dev",
        "--model",
        path(model),
        "--source",
        &source,
        "--frames",
        "20",
        "--as-fast-as-possible",
        "--sink",
        &sink,
        "--embed-workers",
        "1",
    ];
    args.extend_from_slice(extra);
    let out = device(&args, library);
    assert_success(&out);
    let (shape, values) = read_npy_f32(npy);
    assert_eq!(shape[0], 20, "{shape:?}");
    let rows = values.chunks(shape[1]).map(<[f32]>::to_vec).collect();
    (rows, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn selftest_times_every_engine_and_prefers_the_fastest_that_agrees() {
    let Some(library) = onnxruntime_library() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = exported_model(tmp.path());
    let state = tmp.path().join("state");
    assert_success(&selftest(&model, &state, 10, &library));
    let report = read_json(&state.join("selftest.json"));
    let engines = [
        "tract-fp32",
        "tract-int8",
        "onnxruntime-fp32",
        "onnxruntime-int8",
    ];
    let mut fastest = (f64::INFINITY, String::new());
    for e in engines {
        let c = check(&report, &format!("embed-{e}"));
        assert!(c["ok"] == true && c["skipped"] == false, "{c}");
        let engine = c["values"]["engine"].as_str().expect("engine");
        assert!(engine.starts_with(&e[..e.len() - 5]), "{e} ran on {engine}");
        let p50 = c["values"]["p50_ms"].as_f64().expect("p50");
        assert!(
            p50 > 0.0 && c["values"]["p99_ms"].as_f64() >= Some(p50),
            "{c}"
        );
        if p50 < fastest.0 {
            fastest = (p50, e.replacen('-', ":", 1));
        }
    }
    // Another fp32 engine agrees with tract fp32 to rounding on every frame.
    let ort_fp32 = &check(&report, "embed-onnxruntime-fp32")["values"]["parity"];
    assert_eq!(ort_fp32["images"], 10, "{ort_fp32}");
    assert!(
        ort_fp32["min_cosine"].as_f64() >= Some(0.9999),
        "{ort_fp32}"
    );
    // Both int8 engines are held to the export's int8-vs-fp32 record.
    let recorded = e2e::recorded_int8_agreement(&model);
    for e in ["tract-int8", "onnxruntime-int8"] {
        let mean = check(&report, &format!("embed-{e}"))["values"]["parity"]["mean_cosine"]
            .as_f64()
            .expect("mean cosine");
        assert!(mean >= recorded - 0.005, "{e}: {mean} vs {recorded}");
    }
    // The fastest of the four is preferred and recorded for `run`.
    assert_eq!(report["preferred_artifact"], fastest.1.as_str(), "{report}");
    let recorded = std::fs::read_to_string(state.join("artifact")).expect("STATE/artifact");
    assert_eq!(recorded, fastest.1);
}

#[test]
fn run_on_onnxruntime_embeds_like_tract_and_follows_state() {
    let Some(library) = onnxruntime_library() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = exported_model(tmp.path());
    let npy = |n: &str| tmp.path().join(format!("{n}.npy"));
    let (tract, log) = embed_clip(&model, &npy("tract"), &library, &["--backend", "tract"]);
    assert!(log.contains("on tract"), "{log}");
    let (ort, log) = embed_clip(&model, &npy("ort"), &library, &["--backend", "onnxruntime"]);
    assert!(log.contains("on onnxruntime"), "{log}");
    for (i, (a, b)) in tract.iter().zip(&ort).enumerate() {
        assert!(cosine(a, b) >= 0.9999, "frame {i}: cosine {}", cosine(a, b));
    }
    let int8 = ["--backend", "onnxruntime", "--artifact", "int8"];
    let (ort8, _) = embed_clip(&model, &npy("ort8"), &library, &int8);
    let (tract8, _) = embed_clip(&model, &npy("tract8"), &library, &["--artifact", "int8"]);
    let mean = |x: &[Vec<f32>], y: &[Vec<f32>]| {
        x.iter()
            .zip(y)
            .map(|(a, b)| f64::from(cosine(a, b)))
            .sum::<f64>()
            / 20.0
    };
    let (m_ort8, m_tract8) = (mean(&ort8, &tract), mean(&tract8, &tract));
    assert!(m_ort8 > 0.99 && m_tract8 > 0.99, "{m_ort8} {m_tract8}");

    // STATE/artifact (what selftest writes) chooses the engine when no flag does.
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).expect("mkdir");
    std::fs::write(state.join("artifact"), "onnxruntime:int8").expect("write");
    let flags = ["--state", path(&state)];
    let (followed, log) = embed_clip(&model, &npy("state"), &library, &flags);
    assert!(log.contains("embedding with onnxruntime:int8"), "{log}");
    assert!(
        mean(&followed, &ort8) > 0.999_999,
        "{}",
        mean(&followed, &ort8)
    );
    // Where the library has gone since selftest, the service keeps running on tract.
    let elsewhere = tmp.path().join("gone/libonnxruntime.so");
    let (fallback, log) = embed_clip(&model, &npy("fallback"), &elsewhere, &flags);
    assert!(log.contains("running tract:int8"), "{log}");
    assert!(
        mean(&fallback, &tract8) > 0.999_999,
        "{}",
        mean(&fallback, &tract8)
    );
}

#[test]
fn a_missing_library_is_named_and_tract_still_runs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = exported_model(tmp.path());
    let missing = tmp.path().join("nowhere/libonnxruntime.so.1.99.0");
    // A bare name goes to the dynamic linker's search, and is named when it finds nothing.
    let bare = Path::new("libonnxruntime-not-installed.so");
    let source = format!("mjpeg:{}", path(&clip()));
    let state = tmp.path().join("state");
    assert_success(&selftest(&model, &state, 4, &missing));
    let report = read_json(&state.join("selftest.json"));
    for e in ["onnxruntime-fp32", "onnxruntime-int8"] {
        let c = check(&report, &format!("embed-{e}"));
        let detail = c["detail"].as_str().expect("detail");
        assert!(
            c["skipped"] == true && detail.contains(path(&missing)),
            "{c}"
        );
        assert!(detail.contains("pip install onnxruntime"), "{detail}");
    }
    assert!(
        report["preferred_artifact"]
            .as_str()
            .is_some_and(|p| p.starts_with("tract:")),
        "{report}"
    );

    let out = device(
        &[
            "run",
            "--model",
            path(&model),
            "--source",
            &source,
            "--frames",
            "2",
            "--backend",
            "onnxruntime",
        ],
        &missing,
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(path(&missing)) && stderr.contains("ORT_DYLIB_PATH"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let out = device(
        &[
            "run",
            "--model",
            path(&model),
            "--source",
            &source,
            "--frames",
            "2",
            "--backend",
            "onnxruntime",
        ],
        bare,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains(path(bare)),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
