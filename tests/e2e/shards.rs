//! Data bigger than RAM (issue 18): `edgeclr shard` writes tar shards, `edgeclr pretrain`
//! streams them, skips what does not decode, and resumes on the right sample.

use std::path::Path;

use e2e::{assert_success, cifar_sample, path, read_json, run};

fn step_losses(run_dir: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .expect("metrics.jsonl")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON line"))
        .filter_map(|v| Some((v.get("step")?.as_u64()?, v.get("loss")?.as_f64()?)))
        .collect()
}

/// `edgeclr pretrain` of a tiny resnet8 on the shards in `data` (16 px, Adam) at `batch`.
fn pretrain(data: &Path, out: &Path, batch: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "pretrain",
        "--data",
        path(data),
        "--out",
        path(out),
        "--encoder",
        "resnet8",
        "--batch-size",
        batch,
        "--image-size",
        "16",
        "--optimizer",
        "adam",
        "--lr",
        "0.001",
        "--warmup-epochs",
        "0",
        "--seed",
        "5",
        "--device",
        "cpu",
        "--knn-every",
        "0",
    ];
    if !extra.contains(&"--shuffle-buffer") {
        args.extend_from_slice(&["--shuffle-buffer", "64"]);
    }
    args.extend_from_slice(extra);
    run("edgeclr", &args)
}

#[test]
fn shards_stream_into_pretrain_and_resume_on_the_right_sample() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let shards = tmp.path().join("shards");
    let sample = cifar_sample();
    let args = [
        "shard",
        "--data",
        path(&sample),
        "--out",
        path(&shards),
        "--per-shard",
        "300",
    ];
    assert_success(&run("edgeclr", &args));
    let index = read_json(&shards.join("shards.json"));
    let counts: Vec<u64> = index["shards"]
        .as_array()
        .expect("shards")
        .iter()
        .map(|s| s["samples"].as_u64().expect("samples"))
        .collect();
    assert_eq!(
        counts,
        [300, 300, 300, 100],
        "the sample's 1,000 training images"
    );
    assert_eq!(index["classes"].as_array().map(Vec::len), Some(10));
    let again = run("edgeclr", &args);
    assert!(!again.status.success(), "writing over shards must refuse");

    // 8 steps straight, against 4 steps and a resume to 8: the same losses, step for step.
    let (full, split) = (tmp.path().join("full"), tmp.path().join("split"));
    assert_success(&pretrain(&shards, &full, "16", &["--max-steps", "8"]));
    assert_success(&pretrain(&shards, &split, "16", &["--max-steps", "4"]));
    let resume = ["--max-steps", "8", "--resume"];
    assert_success(&pretrain(&shards, &split, "16", &resume));
    let (a, b) = (step_losses(&full), step_losses(&split));
    assert_eq!(a.len(), 8);
    assert_eq!(a, b, "a resumed stream must continue on the same samples");
    let results = read_json(&full.join("results.json"));
    assert_eq!(results["corrupt_samples"], 0, "{results}");

    // Shards are for streaming: evaluation names what to do instead.
    let out = run(
        "edgeclr",
        &[
            "eval",
            "--encoder-weights",
            path(&full.join("encoder.bpk")),
            "--data",
            path(&shards),
        ],
    );
    assert!(!out.status.success());
}

#[test]
fn an_image_folder_shards_byte_for_byte_and_bad_images_are_counted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Two classes of the shipped night-camera bank, plus one file that is not an image.
    let bank = e2e::repo_root().join("tests/data/camera-night/train");
    let folder = tmp.path().join("folder");
    let mut originals = Vec::new();
    for class in ["cat", "dog"] {
        std::fs::create_dir_all(folder.join(class)).expect("mkdir");
        let mut files: Vec<_> = std::fs::read_dir(bank.join(class))
            .expect("class folder")
            .map(|e| e.expect("entry").path())
            .collect();
        files.sort();
        for f in files.iter().take(12) {
            let name = f.file_name().expect("name");
            std::fs::copy(f, folder.join(class).join(name)).expect("copy");
            originals.push(std::fs::read(f).expect("read"));
        }
    }
    std::fs::write(folder.join("dog/zz-broken.jpg"), b"not a jpeg").expect("write");
    let shards = tmp.path().join("shards");
    let args = [
        "shard",
        "--data",
        path(&folder),
        "--dataset",
        "folder",
        "--out",
        path(&shards),
        "--per-shard",
        "10",
    ];
    assert_success(&run("edgeclr", &args));
    let index = read_json(&shards.join("shards.json"));
    assert_eq!(index["classes"], serde_json::json!(["cat", "dog"]));
    // The files went in unchanged: the first shard holds the first cat's bytes, at 512 bytes
    // past the tar header of entry 000000000.jpg.
    let tar = std::fs::read(shards.join("shard-000000.tar")).expect("shard");
    assert_eq!(&tar[..13], b"000000000.jpg");
    assert_eq!(&tar[512..512 + originals[0].len()], originals[0].as_slice());
    // 25 samples (24 good), batch 8: 80 good samples take three full passes and part of a
    // fourth, each pass meeting the broken file once if it reaches it.
    let (full, split) = (tmp.path().join("full"), tmp.path().join("split"));
    assert_success(&pretrain(&shards, &full, "8", &["--max-steps", "10"]));
    assert_success(&pretrain(&shards, &split, "8", &["--max-steps", "4"]));
    let resume = ["--max-steps", "10", "--resume"];
    // The stream's shuffle is part of the position: another buffer cannot resume it.
    let other = [&resume[..], &["--shuffle-buffer", "7"]].concat();
    let refused = pretrain(&shards, &split, "8", &other);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--shuffle-buffer 64"));
    assert_success(&pretrain(&shards, &split, "8", &resume));
    assert_eq!(
        step_losses(&full),
        step_losses(&split),
        "resumed across passes"
    );
    let (a, b) = (
        read_json(&full.join("results.json")),
        read_json(&split.join("results.json")),
    );
    let corrupt = a["corrupt_samples"].as_u64().expect("count");
    assert!((3..=4).contains(&corrupt), "met once per pass: {a}");
    assert_eq!(
        a["corrupt_samples"], b["corrupt_samples"],
        "the count survives a resume"
    );
}
