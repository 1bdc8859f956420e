//! tract throughput on exported encoders: every runnable model in one or more export
//! folders, batch 1, single thread and all cores (one tract state per core), reported as
//! JSON lines for `host/bench/export_speed.sh`, which runs onnxruntime on the same files in
//! the same session and prints the ratios.
//!
//! A plain harness (not criterion): the comparison partner is a Python process, so both
//! sides report the same statistic — the median of per-round mean latency over repeated
//! rounds — and the driver script forms the ratios.
//!
//! `cargo bench --workspace --bench embed_speed -- EXPORT_DIR... [--rounds R] [--images N]`

use std::path::PathBuf;
use std::time::Instant;

use edgeclr_learn::export::{ArtifactKind, Manifest};
use edgeclr_runtime::embed::{Embedder, TractEmbedder};
use rayon::prelude::*;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut dirs = Vec::new();
    let mut rounds = 7usize;
    let mut images = 64usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rounds" => {
                rounds = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--rounds R")
            }
            "--images" => {
                images = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--images N")
            }
            "--bench" => {}
            other => dirs.push(PathBuf::from(other)),
        }
    }
    assert!(
        !dirs.is_empty(),
        "usage: embed_speed EXPORT_DIR... [--rounds R] [--images N]"
    );
    let cores = rayon::current_num_threads();
    for dir in &dirs {
        let manifest = Manifest::load(dir).expect("export folder with manifest.json");
        let size = manifest.input.size;
        let inputs: Vec<Vec<f32>> = (0..images)
            .map(|k| {
                (0..3 * size * size)
                    .map(|i| (((i * (k + 7)) % 97) as f32 / 48.0) - 1.0)
                    .collect()
            })
            .collect();
        for kind in [
            ArtifactKind::OnnxFp32,
            ArtifactKind::NnefFp32,
            ArtifactKind::OnnxInt8Qlinear,
            ArtifactKind::OnnxInt8Qdq,
        ] {
            let Some(artifact) = manifest.artifact(kind) else {
                continue;
            };
            let path = manifest.verify(dir, artifact).expect("checksum");
            let load_start = Instant::now();
            let mut single = TractEmbedder::load(&path, size).expect("loads");
            let load_ms = load_start.elapsed().as_secs_f64() * 1e3;
            for x in inputs.iter().take(4) {
                single.embed(x).expect("warm-up");
            }
            // Single thread: mean latency per image, per round.
            let one: Vec<f64> = (0..rounds)
                .map(|_| {
                    let t = Instant::now();
                    for x in &inputs {
                        std::hint::black_box(single.embed(x).expect("runs"));
                    }
                    t.elapsed().as_secs_f64() * 1e3 / images as f64
                })
                .collect();
            // All cores: one state per core, images split evenly; wall time per image.
            let mut workers: Vec<TractEmbedder> =
                (0..cores).map(|_| single.fork().expect("fork")).collect();
            let all: Vec<f64> = (0..rounds)
                .map(|_| {
                    let t = Instant::now();
                    let chunk = images.div_ceil(cores);
                    workers
                        .par_iter_mut()
                        .zip(inputs.par_chunks(chunk))
                        .for_each(|(w, part)| {
                            for x in part {
                                std::hint::black_box(w.embed(x).expect("runs"));
                            }
                        });
                    t.elapsed().as_secs_f64() * 1e3 / images as f64
                })
                .collect();
            for (threads, ms) in [(1, median(one)), (cores, median(all))] {
                println!(
                    "{}",
                    serde_json::json!({
                        "engine": "tract", "file": artifact.file, "size": size,
                        "threads": threads, "ms_per_image": ms, "images_per_s": 1e3 / ms,
                        "load_ms": load_ms, "dir": dir.display().to_string(),
                    })
                );
            }
        }
    }
}
