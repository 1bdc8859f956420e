//! `edgeclr eval` on a short run over the shipped CIFAR-10 sample.

use std::path::Path;

use e2e::{assert_success, cifar_sample, read_json, run, tiny_pretrain};

fn eval_json(run_dir: &Path, protocol: &str, extra: &[&str]) -> serde_json::Value {
    let data = cifar_sample();
    let mut args = vec![
        "eval",
        "--run",
        run_dir.to_str().expect("utf-8"),
        "--data",
        data.to_str().expect("utf-8"),
        "--protocol",
        protocol,
        "--train-limit",
        "200",
        "--test-limit",
        "100",
        "--device",
        "cpu",
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = run("edgeclr", &args);
    assert_success(&out);
    let line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .expect("a JSON line")
        .to_string();
    serde_json::from_str(&line).expect("JSON report")
}

fn in_percent(v: &serde_json::Value) -> bool {
    v.as_f64().is_some_and(|x| (0.0..=100.0).contains(&x))
}

#[test]
fn knn_linear_and_finetune_report_trained_and_random_init() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run_dir = tmp.path().join("run");
    assert_success(&tiny_pretrain(
        &run_dir,
        &["--epochs", "1", "--knn-every", "1"],
    ));
    for png in ["plots/loss.png", "plots/lr.png", "plots/knn.png"] {
        assert!(run_dir.join(png).exists(), "missing {png}");
    }
    for (protocol, extra) in [
        ("knn", vec![]),
        ("linear", vec![]),
        ("finetune", vec!["--finetune-epochs", "1"]),
    ] {
        let report = eval_json(&run_dir, protocol, &extra);
        for which in ["pretrained", "random_init"] {
            let test = &report[which]["test"];
            assert!(
                in_percent(&test["top1"]) && in_percent(&test["top5"]),
                "{protocol} {which}: {report}"
            );
            assert!(
                test["top5"].as_f64() >= test["top1"].as_f64(),
                "top-5 ≥ top-1: {report}"
            );
        }
        assert!(run_dir.join(format!("eval-{protocol}.json")).exists());
    }
    let linear = eval_json(&run_dir, "linear", &["--random-init"]);
    assert!(
        linear.get("pretrained").is_none(),
        "--random-init evaluates only the floor"
    );
    assert!(in_percent(&linear["random_init"]["train"]["top1"]));
}

#[test]
fn supervised_ceiling_learns_above_chance() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = cifar_sample();
    let out = tmp.path().join("sup");
    let result = run(
        "edgeclr",
        &[
            "supervised",
            "--data",
            data.to_str().expect("utf-8"),
            "--encoder",
            "resnet8",
            "--epochs",
            "5",
            "--batch-size",
            "32",
            "--device",
            "cpu",
            "--out",
            out.to_str().expect("utf-8"),
        ],
    );
    assert_success(&result);
    let report = read_json(&out.join("supervised.json"));
    // 10 balanced classes on 500 test images: chance is 10% ± 1.3% (one σ); five epochs on
    // 1,000 labelled images must clear chance by more than 3σ.
    let top1 = report["test"]["top1"].as_f64().expect("top1");
    assert!(
        top1 > 14.0,
        "supervised resnet8 stayed near chance: {report}"
    );
}
