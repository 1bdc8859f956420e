//! tract's per-op profile of every runnable model in an export folder: the optimised plan's
//! nodes with their mean time per batch-1 run, summed per op kind and element type, so a
//! change to what we export (or to tract) is judged op by op (docs/export.md, "Per-op
//! profile"). Prints a table per model and one JSON line per model for scripts.
//!
//! `cargo bench --workspace --bench tract_profile -- EXPORT_DIR [--rounds R] [--table]`

use std::path::PathBuf;

use edgeclr_learn::export::{ArtifactKind, Manifest};
use edgeclr_runtime::TractModel;

struct Args {
    dir: PathBuf,
    rounds: usize,
    table: bool,
}

fn args() -> Args {
    let mut dir = None;
    let mut rounds = 50;
    let mut table = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--rounds" => rounds = it.next().and_then(|v| v.parse().ok()).expect("--rounds R"),
            "--table" => table = true,
            "--bench" => {}
            other => dir = Some(PathBuf::from(other)),
        }
    }
    let dir = dir.expect("usage: tract_profile EXPORT_DIR [--rounds R] [--table]");
    Args { dir, rounds, table }
}

fn main() {
    // As both binaries do (models/runtime/src/allocator.rs): tensors reused, not faulted in.
    edgeclr_runtime::allocator::keep_freed_memory().expect("glibc takes the malloc settings");
    let a = args();
    let manifest = Manifest::load(&a.dir).expect("export folder with manifest.json");
    let size = manifest.input.size;
    let input: Vec<f32> = (0..3 * size * size)
        .map(|i| ((i % 97) as f32 / 48.0) - 1.0)
        .collect();
    for kind in ArtifactKind::ENCODERS {
        let Some(artifact) = manifest.artifact(kind) else {
            continue;
        };
        let path = manifest.verify(&a.dir, artifact).expect("checksum");
        let bytes = std::fs::read(&path).expect("readable model");
        let mut model = TractModel::load_bytes(&bytes, size, &path).expect("loads");
        let profile = model.profile(&input, a.rounds).expect("runs");
        eprintln!(
            "== {} ({size} px): {:.3} ms over {} nodes, {:.3} ms a whole run",
            artifact.file,
            profile.total_ms,
            profile.ops.len(),
            profile.wall_ms
        );
        for (kind, nodes, ms) in profile.by_kind() {
            eprintln!(
                "  {ms:>8.4} ms {:>5.1}%  {nodes:>3}× {kind}",
                100.0 * ms / profile.total_ms
            );
        }
        if a.table {
            eprintln!("{profile}");
        }
        println!(
            "{}",
            serde_json::json!({"file": artifact.file, "size": size, "profile": profile})
        );
    }
}
