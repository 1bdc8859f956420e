//! `edgeclr-device run` end to end on the shipped camera clip with a model exported by
//! `edgeclr export`: determinism against `edgeclr embed`, corrupt frames, sinks, the status
//! PNG, a missing camera, graceful SIGTERM, and a memory soak.

use std::path::Path;
use std::process::Command;

use e2e::{
    assert_success, binary, clip, cosine, exported_model, path, read_json, read_npy_f32, repo_root,
    run,
};

/// The clip's first `n` frames as separate JPEG files, bytes unchanged.
fn split_clip(n: usize, dir: &Path) -> Vec<Vec<u8>> {
    std::fs::create_dir_all(dir).expect("mkdir");
    let data = std::fs::read(clip()).expect("clip");
    let mut frames = Vec::new();
    let mut i = 0;
    while frames.len() < n {
        let end = data[i..]
            .windows(2)
            .position(|w| w == [0xFF, 0xD9])
            .expect("EOI")
            + i
            + 2;
        frames.push(data[i..end].to_vec());
        i = end;
    }
    for (k, f) in frames.iter().enumerate() {
        std::fs::write(dir.join(format!("frame_{k:03}.jpg")), f).expect("write frame");
    }
    frames
}

#[test]
fn device_runs_the_clip_like_the_host_embeds_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = exported_model(tmp.path());
    let (jsonl, npy, png, report) = (
        tmp.path().join("e.jsonl"),
        tmp.path().join("e.npy"),
        tmp.path().join("status.png"),
        tmp.path().join("report.json"),
    );
    let source = format!("mjpeg:{}", path(&clip()));
    let out = run(
        "edgeclr-device",
        &[
            "run",
            "--model",
            path(&model),
            "--source",
            &source,
            "--frames",
            "20",
            "--sink",
            &format!("jsonl:{}", path(&jsonl)),
            "--sink",
            &format!("npy:{}", path(&npy)),
            "--display",
            &format!("png:{}", path(&png)),
            "--report",
            path(&report),
        ],
    );
    assert_success(&out);
    let r = read_json(&report);
    assert_eq!(r["frames_captured"], 20);
    assert_eq!(r["bad_frames"], 0);
    // At the clip's 10 fps nothing should drop; a loaded CI machine may drop a frame or two
    // (drop-oldest by design), so the accounting is exact and the comparison is by frame id.
    let embedded = r["frames_embedded"].as_u64().expect("n") as usize;
    let dropped = r["dropped_capture_queue"].as_u64().expect("n")
        + r["dropped_embed_queue"].as_u64().expect("n");
    assert_eq!(embedded as u64 + dropped, 20, "{r}");
    assert!(embedded >= 15, "{r}");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&jsonl)
        .expect("jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines.len(), embedded);
    let manifest = read_json(&model.join("manifest.json"));
    assert_eq!(
        lines[0]["model_version"],
        manifest["source"]["model_version"]
    );
    let status = image_size(&png);
    assert_eq!(status, (128, 64));

    // The host embeds the same 20 frames (as JPEG files) through the same preprocessing.
    let frames_dir = tmp.path().join("frames");
    split_clip(20, &frames_dir);
    let host_npy = tmp.path().join("host.npy");
    assert_success(&run(
        "edgeclr",
        &[
            "embed",
            "--model",
            path(&model),
            "--data",
            path(&frames_dir),
            "--dataset",
            "folder",
            "--split",
            "train",
            "--out",
            path(&host_npy),
        ],
    ));
    let (host_shape, host) = read_npy_f32(&host_npy);
    let (dev_shape, dev) = read_npy_f32(&npy);
    let (n, dim) = (host_shape[0], host_shape[1]);
    let (dn, ddim) = (dev_shape[0], dev_shape[1]);
    assert_eq!((n, dim), (20, 128));
    assert_eq!((dn, ddim), (embedded, 128));
    for (i, line) in lines.iter().enumerate() {
        let id = line["frame_id"].as_u64().expect("id") as usize;
        let c = cosine(
            &dev[i * dim..(i + 1) * dim],
            &host[id * dim..(id + 1) * dim],
        );
        assert!(c >= 0.9999, "frame {id}: device vs host cosine {c}");
    }
}

fn image_size(png: &Path) -> (u32, u32) {
    let b = std::fs::read(png).expect("png");
    assert_eq!(&b[1..4], b"PNG");
    (
        u32::from_be_bytes(b[16..20].try_into().expect("w")),
        u32::from_be_bytes(b[20..24].try_into().expect("h")),
    )
}

#[test]
fn corrupt_frames_are_skipped_and_bad_sources_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = exported_model(tmp.path());
    let frames = split_clip(6, &tmp.path().join("f"));
    // Frame 2 keeps its SOI/EOI markers but its headers and data are garbage.
    let mut stream = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        if i == 2 {
            stream.extend_from_slice(&[0xFF, 0xD8]);
            stream.extend_from_slice(&[0x5A; 600]);
            stream.extend_from_slice(&[0xFF, 0xD9]);
        } else {
            stream.extend_from_slice(f);
        }
    }
    let bad = tmp.path().join("bad.mjpeg");
    std::fs::write(&bad, &stream).expect("write");
    let report = tmp.path().join("r.json");
    let out = run(
        "edgeclr-device",
        &[
            "run",
            "--model",
            path(&model),
            "--source",
            &format!("mjpeg:{}", path(&bad)),
            "--sink",
            &format!("jsonl:{}", path(&tmp.path().join("e.jsonl"))),
            "--report",
            path(&report),
        ],
    );
    assert_success(&out);
    let r = read_json(&report);
    assert_eq!(r["bad_frames"], 1, "{r}");
    assert_eq!(r["frames_embedded"], 5, "{r}");

    let out = run(
        "edgeclr-device",
        &[
            "run",
            "--model",
            path(&model),
            "--source",
            "v4l:/dev/video-missing",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/dev/video-missing")
            && (err.contains("v4l2-ctl --list-devices")
                || err.contains("without the `camera` feature")),
        "{err}"
    );
    let out = run(
        "edgeclr-device",
        &["run", "--model", path(tmp.path()), "--source", "synthetic"],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("manifest.json"),
        "a folder without an export is named"
    );
    let out = run(
        "edgeclr-device",
        &["run", "--board", "pi-zero", "--model", path(&model)],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("rpi5"),
        "unknown boards list the known ones"
    );
}

#[test]
fn sigterm_stops_gracefully_and_flushes_sinks() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = exported_model(tmp.path());
    let npy = tmp.path().join("e.npy");
    let child = Command::new(binary("edgeclr-device"))
        .args([
            "run",
            "--model",
            path(&model),
            "--source",
            "synthetic",
            "--sink",
            &format!("npy:{}", path(&npy)),
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (shape, _) = read_npy_f32(&npy);
    let (n, dim) = (shape[0], shape[1]);
    assert!(n > 5 && dim == 128, "{n} rows flushed at SIGTERM");
}

#[test]
fn soak_replay_memory_does_not_grow() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = exported_model(tmp.path());
    let report = tmp.path().join("r.json");
    let out = run(
        "edgeclr-device",
        &[
            "run",
            "--model",
            path(&model),
            "--source",
            "synthetic",
            "--as-fast-as-possible",
            "--duration",
            "90",
            "--sink",
            "jsonl:/dev/null",
            "--display",
            &format!("png:{}", path(&tmp.path().join("s.png"))),
            "--report",
            path(&report),
        ],
    );
    assert_success(&out);
    let r = read_json(&report);
    let samples: Vec<f64> = r["rss_samples"]
        .as_array()
        .expect("samples")
        .iter()
        .map(|s| s[1].as_f64().expect("mib"))
        .collect();
    assert!(samples.len() >= 100, "{} samples", samples.len());
    assert!(r["frames_embedded"].as_u64().expect("frames") > 1000, "{r}");
    // After warm-up (first third), the last third's mean must not exceed the middle third's
    // by more than allocator noise.
    let third = samples.len() / 3;
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    let (middle, last) = (
        mean(&samples[third..2 * third]),
        mean(&samples[2 * third..]),
    );
    assert!(
        last - middle < 4.0,
        "RSS grew from {middle:.1} to {last:.1} MiB"
    );
}

#[test]
fn systemd_unit_parses() {
    // systemd-analyze exits 0 even on parse errors, so its stderr is what is checked; the
    // binary is not installed on a build machine, which is the one complaint allowed.
    let unit = repo_root().join("hardware/systemd/edgeclr-device.service");
    let Ok(out) = Command::new("systemd-analyze")
        .args(["verify", path(&unit)])
        .output()
    else {
        e2e::skip("systemd-analyze not installed (package systemd; .ci/run installs it)");
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.contains("is not executable") && !l.trim().is_empty())
        .collect();
    assert!(complaints.is_empty(), "{complaints:#?}");
}

#[test]
fn selftest_passes_on_the_clip_and_fails_without_a_camera() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = exported_model(tmp.path());
    let state = tmp.path().join("state");
    let source = format!("mjpeg:{}", path(&clip()));
    let out = run(
        "edgeclr-device",
        &[
            "selftest",
            "--model",
            path(&model),
            "--state",
            path(&state),
            "--source",
            &source,
            "--frames",
            "10",
        ],
    );
    assert_success(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("PASS"));
    let report = read_json(&state.join("selftest.json"));
    assert_eq!(report["ok"], true, "{report}");
    let names: Vec<&str> = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        [
            "camera",
            "embed-tract-fp32",
            "embed-tract-int8",
            "embed-onnxruntime-fp32",
            "embed-onnxruntime-int8",
            "finetune-step",
            "display",
            "disk",
            "memory"
        ]
    );
    let fp32 = &report["checks"][1]["values"];
    assert!(
        fp32["p99_ms"].as_f64() >= fp32["p50_ms"].as_f64() && fp32["p50_ms"].as_f64() > Some(0.0)
    );
    assert!(
        report["checks"][5]["values"]["loss"]
            .as_f64()
            .expect("loss")
            .is_finite()
    );
    // The faster artifact is recorded for `run`.
    let preferred = std::fs::read_to_string(state.join("artifact")).expect("artifact");
    assert_eq!(
        Some(preferred.as_str()),
        report["preferred_artifact"].as_str()
    );
    let junit = std::fs::read_to_string(state.join("selftest.junit.xml")).expect("junit");
    assert!(junit.contains("tests=\"9\" failures=\"0\""), "{junit}");
    // int8 was held to the export's int8-vs-fp32 agreement on the board's own frames.
    let parity = &report["checks"][2]["values"]["parity"];
    assert_eq!(parity["images"], 10, "{parity}");
    let recorded = e2e::recorded_int8_agreement(&model);
    let measured = parity["mean_cosine"].as_f64().expect("mean cosine");
    assert!(
        measured >= recorded - 0.005 && measured <= 1.0 + 1e-9,
        "{measured} vs {recorded}"
    );

    // A manifest promising more agreement than int8 gives: int8 fails its check and is not
    // preferred, whatever its speed.
    let strict = tmp.path().join("strict");
    std::fs::create_dir_all(&strict).expect("mkdir");
    for entry in std::fs::read_dir(&model).expect("model dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), strict.join(entry.file_name())).expect("copy");
    }
    let text = std::fs::read_to_string(strict.join("manifest.json")).expect("manifest");
    let mut manifest: serde_json::Value = serde_json::from_str(&text).expect("json");
    for a in manifest["drift"]["agreements"]
        .as_array_mut()
        .expect("agreements")
    {
        if a["compared"]
            .as_str()
            .is_some_and(|c| c.contains("encoder.int8.onnx"))
        {
            a["mean_cosine"] = serde_json::json!(1.01);
        }
    }
    std::fs::write(strict.join("manifest.json"), manifest.to_string()).expect("write");
    let strict_state = tmp.path().join("strict-state");
    let out = run(
        "edgeclr-device",
        &[
            "selftest",
            "--model",
            path(&strict),
            "--state",
            path(&strict_state),
            "--source",
            &source,
            "--frames",
            "10",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let report = read_json(&strict_state.join("selftest.json"));
    assert_eq!(report["checks"][2]["ok"], false, "{report}");
    assert!(
        report["preferred_artifact"]
            .as_str()
            .is_some_and(|p| p.ends_with(":fp32")),
        "{report}"
    );

    // No camera: the camera check fails, the rest still run, exit code 1.
    let fail = tmp.path().join("fail");
    let out = run(
        "edgeclr-device",
        &[
            "selftest",
            "--model",
            path(&model),
            "--source",
            "v4l:/dev/video99",
            "--frames",
            "5",
            "--out",
            path(&fail),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let junit = std::fs::read_to_string(fail.join("selftest.junit.xml")).expect("junit");
    assert!(
        junit.contains("failures=\"1\"") && junit.contains("<failure message="),
        "{junit}"
    );
    assert_eq!(
        read_json(&fail.join("selftest.json"))["checks"][0]["ok"],
        false
    );
}

/// Every shipped board profile starts with the default build and a synthetic camera, and a
/// screen that is not there (no `/dev/i2c-1`, no `/dev/fb0` on a CI machine) is logged once
/// and the runtime goes on headless: embeddings never wait for a display.
#[test]
fn every_board_profile_starts_headless_when_its_screen_is_missing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = exported_model(tmp.path());
    let boards = repo_root().join("hardware/boards");
    let mut names: Vec<String> = std::fs::read_dir(&boards)
        .expect("hardware/boards")
        .filter_map(|e| {
            let p = e.expect("dir entry").path();
            (p.extension()? == "toml").then(|| p.file_stem()?.to_str().map(String::from))?
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["jetson-nano", "jetson-orin-nano", "rpi4", "rpi5", "x86-dev"],
        "a new profile belongs in this test"
    );
    for name in &names {
        let jsonl = tmp.path().join(format!("{name}.jsonl"));
        let sink = format!("jsonl:{}", path(&jsonl));
        let out = Command::new(binary("edgeclr-device"))
            .args(["run", "--board", name, "--model", path(&model)])
            .args(["--source", "synthetic", "--frames", "20", "--sink", &sink])
            .env("RUST_LOG", "warn")
            .output()
            .expect("spawn edgeclr-device");
        assert_success(&out);
        let lines = std::fs::read_to_string(&jsonl)
            .expect("sink written")
            .lines()
            .count();
        assert!(lines > 0, "{name}: no embeddings reached the sink");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let headless = stderr.matches("running headless").count();
        let profile =
            std::fs::read_to_string(boards.join(format!("{name}.toml"))).expect("profile");
        let has_screen = ["ssd1306:", "fb:"]
            .iter()
            .any(|t| profile.contains(&format!("target = \"{t}")));
        let present = ["/dev/i2c-1", "/dev/fb0"]
            .iter()
            .any(|d| Path::new(d).exists());
        if has_screen && !present {
            assert_eq!(
                headless, 1,
                "{name}: the missing screen is logged once:\n{stderr}"
            );
        } else if !has_screen {
            assert_eq!(headless, 0, "{name}: no screen configured:\n{stderr}");
        }
    }
}
