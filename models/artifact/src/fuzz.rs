//! Bounded fuzzing (proptest, run by `cargo test`) of the manifest parser and the checksum
//! check every loader runs: a real export's manifest with random byte edits and cuts, with one
//! value anywhere in it replaced by a random one (most of these still parse, so the checksum
//! check runs), and with arbitrary artifact file names. Nothing may panic, and whatever verifies is a file inside
//! the export folder with the listed checksum — even when a file with that very checksum
//! waits one folder up.

use std::path::Path;

use proptest::prelude::*;
use proptest::sample::Index;

use crate::manifest::{MANIFEST, Manifest, sha256_bytes};

/// A real export's manifest, its artifacts re-listed as the two small files below.
const TEMPLATE: &str = include_str!("../testdata/manifest.json");
const FILES: [(&str, &[u8]); 2] = [
    ("encoder.onnx", b"onnx bytes"),
    ("encoder.nnef.tar", b"nnef bytes"),
];
/// Inputs tried per property (docs/reliability.md reports them).
const CASES: u32 = 3000;

/// An export folder (`dir/export`) with the files and `manifest`, and beside it a copy of
/// `encoder.onnx` as `secret.onnx`: a manifest that names `../secret.onnx` would verify.
fn export_with(manifest: &[u8]) -> std::io::Result<tempfile::TempDir> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("export");
    std::fs::create_dir(&dir)?;
    for (name, bytes) in FILES {
        std::fs::write(dir.join(name), bytes)?;
    }
    std::fs::write(tmp.path().join("secret.onnx"), FILES[0].1)?;
    std::fs::write(dir.join(MANIFEST), manifest)?;
    Ok(tmp)
}

/// Loads and verifies every artifact; what verifies must lie in `dir` and match its sha256.
fn load_and_verify(dir: &Path) -> Result<(), TestCaseError> {
    let Ok(manifest) = Manifest::load(dir) else {
        return Ok(());
    };
    for a in &manifest.artifacts {
        if let Ok(path) = manifest.verify(dir, a) {
            prop_assert_eq!(path.parent(), Some(dir), "{} escaped", a.file);
            prop_assert_eq!(sha256_bytes(&std::fs::read(&path)?), a.sha256.clone());
        }
    }
    Ok(())
}

/// JSON pointers of every scalar in `v`.
fn leaves(v: &serde_json::Value, at: String, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                leaves(x, format!("{at}/{k}"), out);
            }
        }
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                leaves(x, format!("{at}/{i}"), out);
            }
        }
        _ => out.push(at),
    }
}

/// A random JSON scalar, biased to what a manifest holds: names, paths, sizes, hex digests.
fn scalar() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        (-1e9f64..1e9).prop_map(serde_json::Value::from),
        "(\\.\\./|/)?[a-z0-9._-]{0,16}".prop_map(serde_json::Value::from),
        "[0-9a-f]{64}".prop_map(serde_json::Value::from),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn edited_manifests_never_panic_or_escape(
        edits in prop::collection::vec((any::<Index>(), 1u8..), 1..6),
        cut in prop::option::of(any::<Index>()),
    ) {
        let mut bytes = TEMPLATE.as_bytes().to_vec();
        for (at, x) in &edits {
            let i = at.index(bytes.len());
            bytes[i] ^= x;
        }
        if let Some(c) = cut {
            bytes.truncate(c.index(bytes.len()));
        }
        let tmp = export_with(&bytes)?;
        load_and_verify(&tmp.path().join("export"))?;
    }

    #[test]
    fn manifests_with_one_value_replaced_never_panic_or_escape(at in any::<Index>(), value in scalar()) {
        let mut json: serde_json::Value = serde_json::from_str(TEMPLATE)?;
        let mut all = Vec::new();
        leaves(&json, String::new(), &mut all);
        let pointer = &all[at.index(all.len())];
        if let Some(leaf) = json.pointer_mut(pointer) {
            *leaf = value;
        }
        let tmp = export_with(serde_json::to_string(&json)?.as_bytes())?;
        load_and_verify(&tmp.path().join("export"))?;
    }

    #[test]
    fn only_plain_file_names_verify(name in "(\\.\\./|\\./|/|[a-z]{1,3}/|\\.\\.){0,3}(secret|encoder)\\.onnx") {
        let mut json: serde_json::Value = serde_json::from_str(TEMPLATE)?;
        json["artifacts"][0]["file"] = name.clone().into();
        let tmp = export_with(serde_json::to_string(&json)?.as_bytes())?;
        let dir = tmp.path().join("export");
        load_and_verify(&dir)?;
        prop_assert_eq!(Manifest::load(&dir).is_ok(), !name.contains('/'), "{}", name);
    }
}

#[test]
fn the_template_loads_and_verifies() {
    let tmp = export_with(TEMPLATE.as_bytes()).expect("export");
    let dir = tmp.path().join("export");
    let m = Manifest::load(&dir).expect("loads");
    assert_eq!(m.artifacts.len(), 2);
    for a in &m.artifacts {
        m.verify(&dir, a).expect("verifies");
    }
}
