//! `edgeclr ablate` on a tiny budget: one run per row, tables written.

use std::fs;

use e2e::{assert_success, read_json, tiny};

#[test]
fn head_table_trains_each_row_and_writes_tables() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("ablate");
    assert_success(&tiny(
        &["ablate", "--table", "head"],
        &out,
        &["--epochs", "1"],
    ));
    let rows = read_json(&out.join("ablation.json"));
    let rows = rows.as_array().expect("one object per row");
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["row"].as_str().expect("row name"))
        .collect();
    assert_eq!(names, ["none", "linear", "mlp"]);
    for r in rows {
        let top1 = r["knn"]["top1"]
            .as_f64()
            .expect("every row is scored by kNN");
        assert!((0.0..=100.0).contains(&top1), "{r}");
        let z1 = r["knn_z"]["top1"]
            .as_f64()
            .expect("head rows are also scored on z");
        assert!((0.0..=100.0).contains(&z1), "{r}");
    }
    let md = fs::read_to_string(out.join("ablation.md")).expect("ablation.md");
    assert!(md.lines().count() == 5 && md.contains("| mlp |"), "{md}");
    // The rows really differ in their head: the none-head run's config says so.
    let cfg = fs::read_to_string(out.join("none/config.toml")).expect("row config");
    assert!(cfg.contains("kind = \"none\""), "{cfg}");
}
