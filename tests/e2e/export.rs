//! `edgeclr export` and `edgeclr embed` on a run produced by `edgeclr pretrain`: the files,
//! the manifest's checksums and drift, the embeddings, and the errors for bad inputs.

use e2e::{
    assert_success, cifar_sample, cosine, path, read_json, read_npy_f32, run, tiny_pretrain,
};

#[test]
fn export_embed_and_refuse_bad_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run_dir = tmp.path().join("run");
    assert_success(&tiny_pretrain(
        &run_dir,
        &["--max-steps", "4", "--knn-every", "0"],
    ));
    let out_dir = tmp.path().join("export");
    let data = cifar_sample();
    let out = run(
        "edgeclr",
        &[
            "export",
            "--run",
            path(&run_dir),
            "--out",
            path(&out_dir),
            "--int8",
            "--calib-n",
            "64",
            "--check-n",
            "256",
            "--knn-data",
            path(&data),
            "--knn-train-limit",
            "500",
            "--knn-test-limit",
            "300",
            "--json",
        ],
    );
    assert_success(&out);
    let manifest = read_json(&out_dir.join("manifest.json"));
    assert_eq!(manifest["input"]["size"], 16);
    assert_eq!(manifest["output_dim"], 128);
    let files: Vec<&str> = manifest["artifacts"]
        .as_array()
        .expect("artifacts")
        .iter()
        .map(|a| a["file"].as_str().expect("file"))
        .collect();
    for f in [
        "encoder.onnx",
        "encoder.batched.onnx",
        "encoder.nnef.tar",
        "encoder.int8.onnx",
        "encoder.int8.qdq.onnx",
    ] {
        assert!(
            files.contains(&f) && out_dir.join(f).is_file(),
            "missing {f}: {files:?}"
        );
    }
    // The contract, measured on 256 real test images and a real kNN check.
    for a in manifest["drift"]["agreements"]
        .as_array()
        .expect("agreements")
    {
        let what = a["compared"].as_str().expect("compared");
        assert_eq!(a["images"], 256, "{what}");
        let (min, mean) = (
            a["min_cosine"].as_f64().expect("min"),
            a["mean_cosine"].as_f64().expect("mean"),
        );
        if what.contains("vs burn") {
            assert!(min >= 0.9999, "{what}: min cosine {min}");
        } else {
            assert!(mean >= 0.995, "{what}: mean cosine {mean}");
        }
    }
    let knn = &manifest["drift"]["knn"];
    let (fp32, int8) = (
        knn["fp32"].as_f64().expect("fp32"),
        knn["int8"].as_f64().expect("int8"),
    );
    assert!(
        fp32 > 10.0 && (fp32 - int8).abs() <= 2.0,
        "kNN fp32 {fp32} int8 {int8}"
    );
    // eval --model: the board's code path scores the same bank and queries (same limits, same
    // kNN) as the export's own check; the int8 file scores what the manifest recorded for it.
    for (file, recorded) in [("encoder.onnx", fp32), ("encoder.int8.onnx", int8)] {
        let out = run(
            "edgeclr",
            &[
                "eval",
                "--model",
                path(&out_dir.join(file)),
                "--data",
                path(&data),
                "--protocol",
                "knn",
                "--train-limit",
                "500",
                "--test-limit",
                "300",
                "--json",
            ],
        );
        assert_success(&out);
        let report: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("eval --json prints JSON");
        assert_eq!(report["test_images"], 300, "{file}");
        let top1 = report["model_result"]["test"]["top1"]
            .as_f64()
            .expect("top1");
        assert!(
            (top1 - recorded).abs() <= 0.34,
            "{file}: eval --model {top1} vs the export's check {recorded}"
        );
    }
    let size = |f: &str| std::fs::metadata(out_dir.join(f)).expect("file").len() as f64;
    let ratio = size("encoder.onnx") / size("encoder.int8.onnx");
    assert!(
        (3.5..=4.0).contains(&ratio),
        "fp32/int8 size ratio {ratio:.2}"
    );

    // embed: the fp32 file and the int8 file over the same images.
    let fp32_npy = tmp.path().join("fp32.npy");
    let int8_jsonl = tmp.path().join("int8.jsonl");
    for (model, dest) in [
        (out_dir.clone(), &fp32_npy),
        (out_dir.join("encoder.int8.onnx"), &int8_jsonl),
    ] {
        let out = run(
            "edgeclr",
            &[
                "embed",
                "--model",
                path(&model),
                "--data",
                path(&data),
                "--limit",
                "40",
                "--out",
                path(dest),
            ],
        );
        assert_success(&out);
    }
    let (shape, fp32) = read_npy_f32(&fp32_npy);
    assert_eq!(shape, vec![40, 128]);
    let labels = std::fs::read(tmp.path().join("fp32.labels.npy")).expect("labels beside the npy");
    assert_eq!(
        labels.len() % 64,
        40 * 4 % 64,
        "40 i32 labels after a 64-aligned header"
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&int8_jsonl)
        .expect("jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 40);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["index"], i);
        let e: Vec<f32> = line["embedding"]
            .as_array()
            .expect("vector")
            .iter()
            .map(|v| v.as_f64().expect("f") as f32)
            .collect();
        let r = &fp32[i * 128..(i + 1) * 128];
        let cos = cosine(&e, r);
        assert!(cos > 0.98, "image {i}: int8 vs fp32 cosine {cos}");
    }

    // Bad inputs: a modified model, a truncated one in a copied folder, a foreign file.
    let copy = tmp.path().join("copy");
    std::fs::create_dir_all(&copy).expect("mkdir");
    for f in ["manifest.json", "encoder.onnx"] {
        std::fs::copy(out_dir.join(f), copy.join(f)).expect("copy");
    }
    let bytes = std::fs::read(copy.join("encoder.onnx")).expect("read");
    std::fs::write(copy.join("encoder.onnx"), &bytes[..bytes.len() / 2]).expect("truncate");
    let out = run(
        "edgeclr",
        &[
            "embed",
            "--model",
            path(&copy),
            "--data",
            path(&data),
            "--limit",
            "2",
            "--out",
            path(&tmp.path().join("x.npy")),
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("does not match the manifest") && err.contains("encoder.onnx"),
        "{err}"
    );
    std::fs::write(copy.join("notes.onnx"), b"hello").expect("write");
    let out = run(
        "edgeclr",
        &[
            "embed",
            "--model",
            path(&copy.join("notes.onnx")),
            "--data",
            path(&data),
            "--out",
            path(&tmp.path().join("x.npy")),
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lists no file `notes.onnx`"), "{err}");
    let out = run(
        "edgeclr",
        &["export", "--run", path(tmp.path()), "--out", path(&copy)],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a run folder"), "{err}");
}
