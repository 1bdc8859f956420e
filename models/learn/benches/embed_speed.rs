//! Embedder throughput on exported encoders: every runnable model in one or more export
//! folders on each engine this build has (tract; onnxruntime through our `OrtEmbedder` when
//! its library loads — `ORT_DYLIB_PATH`), batch 1, single thread and all cores (one state or
//! session per core), reported as JSON lines for `host/bench/export_speed.sh`, which runs
//! onnxruntime from Python on the same files in the same session and prints the ratios.
//!
//! A plain harness (not criterion): the comparison partner is a Python process, so both
//! sides report the same statistic — the median of per-round mean latency over repeated
//! rounds — and the driver script forms the ratios.
//!
//! `cargo bench --workspace --bench embed_speed -- EXPORT_DIR... [--rounds R] [--images N]`

use std::path::PathBuf;
use std::time::Instant;

use edgeclr_learn::export::{ArtifactKind, Manifest};
use edgeclr_runtime::OrtSettings;
use edgeclr_runtime::backend::{self, Backend};
use edgeclr_runtime::embed::Embedder;
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
    let ort = OrtSettings::default();
    let engines: Vec<Backend> = Backend::ALL
        .into_iter()
        .filter(|&b| match backend::available(b, &ort) {
            Ok(what) => {
                eprintln!("embed_speed: {what}");
                true
            }
            Err(e) => {
                eprintln!("embed_speed: {b} not timed: {e}");
                false
            }
        })
        .collect();
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
        for &engine in &engines {
            for kind in [
                ArtifactKind::OnnxFp32,
                ArtifactKind::NnefFp32,
                ArtifactKind::OnnxInt8Qlinear,
                ArtifactKind::OnnxInt8Qdq,
            ] {
                let Some(artifact) = manifest.artifact(kind) else {
                    continue;
                };
                if engine == Backend::Onnxruntime && kind == ArtifactKind::NnefFp32 {
                    continue;
                }
                let path = manifest.verify(dir, artifact).expect("checksum");
                let load_start = Instant::now();
                let single = backend::load(&path, size, engine, &ort).expect("loads");
                let load_ms = load_start.elapsed().as_secs_f64() * 1e3;
                let (one, all) = time(single, &inputs, rounds, cores);
                for (threads, ms) in [(1, one), (cores, all)] {
                    println!(
                        "{}",
                        serde_json::json!({
                            "engine": engine.name(), "file": artifact.file, "size": size,
                            "threads": threads, "ms_per_image": ms, "images_per_s": 1e3 / ms,
                            "load_ms": load_ms, "dir": dir.display().to_string(),
                        })
                    );
                }
            }
        }
    }
}

/// Median over `rounds` of the mean ms per image: on `single` alone, and on one fork per
/// core with the images split evenly (wall time per image).
fn time(
    mut single: Box<dyn Embedder>,
    inputs: &[Vec<f32>],
    rounds: usize,
    cores: usize,
) -> (f64, f64) {
    for x in inputs.iter().take(4) {
        single.embed(x).expect("warm-up");
    }
    let n = inputs.len() as f64;
    let one: Vec<f64> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            for x in inputs {
                std::hint::black_box(single.embed(x).expect("runs"));
            }
            t.elapsed().as_secs_f64() * 1e3 / n
        })
        .collect();
    let mut workers: Vec<Box<dyn Embedder>> = (0..cores)
        .map(|_| single.fork_boxed().expect("fork"))
        .collect();
    for w in &mut workers {
        w.embed(&inputs[0]).expect("warm-up");
    }
    let all: Vec<f64> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            workers
                .par_iter_mut()
                .zip(inputs.par_chunks(inputs.len().div_ceil(cores)))
                .for_each(|(w, part)| {
                    for x in part {
                        std::hint::black_box(w.embed(x).expect("runs"));
                    }
                });
            t.elapsed().as_secs_f64() * 1e3 / n
        })
        .collect();
    (median(one), median(all))
}
