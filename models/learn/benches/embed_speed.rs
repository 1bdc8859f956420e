//! Embedder throughput on exported encoders: every runnable model in one or more export
//! folders on each engine this build has (tract; onnxruntime through our `OrtEmbedder` when
//! its library loads — `ORT_DYLIB_PATH`), batch 1, single thread and all cores (one state or
//! session per core), reported as JSON lines for `host/bench/export_speed.sh`, which runs
//! onnxruntime from Python on the same files in the same session and prints the ratios.
//!
//! A plain harness (not criterion): the comparison partner is a Python process, so both
//! sides report the same statistic — the median of per-round mean latency over repeated
//! rounds — and the driver script forms the ratios. Rounds are interleaved across every
//! model and engine, and each line also carries the median per-round ratio against
//! onnxruntime fp32 run by our embedder in the same rounds (`vs_onnxruntime_fp32`): on a
//! shared machine whose speed drifts by ±20 % between minutes, that is the figure to trust.
//!
//! `cargo bench --workspace --bench embed_speed -- EXPORT_DIR... [--rounds R] [--images N]
//! [--knob NAME=VALUE]...`

use std::path::{Path, PathBuf};
use std::time::Instant;

use edgeclr_learn::export::{ArtifactKind, Manifest};
use edgeclr_runtime::OrtSettings;
use edgeclr_runtime::backend::{self, Backend};
use edgeclr_runtime::embed::Embedder;
use rayon::prelude::*;
use tract_onnx::tract_core::knobs::KnobScope;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // As both binaries do (models/runtime/src/allocator.rs): tensors reused, not faulted in.
    edgeclr_runtime::allocator::keep_freed_memory().expect("glibc takes the malloc settings");
    let mut dirs = Vec::new();
    let mut rounds = 9usize;
    let mut images = 64usize;
    let mut knobs: Vec<(String, String)> = Vec::new();
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
            "--knob" => knobs.push(
                args.next()
                    .and_then(|v| {
                        v.split_once('=')
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                    })
                    .expect("--knob NAME=VALUE"),
            ),
            "--bench" => {}
            other => dirs.push(PathBuf::from(other)),
        }
    }
    assert!(
        !dirs.is_empty(),
        "usage: embed_speed EXPORT_DIR... [--rounds R] [--images N] [--knob NAME=VALUE]..."
    );
    // With --knob, tract also runs every model planned under those tract knobs (e.g.
    // TRACT_DISABLE_DIRECT_CONV=true: tract's own plans), interleaved with the rest.
    let scope = (!knobs.is_empty()).then(|| {
        let label = knobs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>();
        let scope = KnobScope::new(knobs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .expect("tract knows these knobs");
        (format!("tract[{}]", label.join(",")), scope)
    });
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
        let mut runs = load_all(dir, &manifest, &engines, &ort, cores, &inputs, None);
        if let Some((label, scope)) = &scope {
            runs.extend(scope.enter(|| {
                load_all(
                    dir,
                    &manifest,
                    &[Backend::Tract],
                    &ort,
                    cores,
                    &inputs,
                    Some(label),
                )
            }));
        }
        // Interleaved: every round times each model once, single-threaded, then once on all
        // cores, so a slow spell on this shared machine lands on every engine alike and the
        // per-round ratios below compare like with like.
        for _ in 0..rounds {
            for r in &mut runs {
                r.one.push(time_single(r.single.as_mut(), &inputs));
            }
            for r in &mut runs {
                r.all.push(time_all(&mut r.workers, &inputs, cores));
            }
        }
        report(dir, size, &runs, cores);
    }
}

/// One model on one engine: a single embedder, one fork per core, and its round times.
struct Timed {
    engine: Backend,
    /// The engine's name, or `tract[KNOB=VALUE]` for a plan built under tract knobs.
    label: String,
    file: String,
    load_ms: f64,
    single: Box<dyn Embedder>,
    workers: Vec<Box<dyn Embedder>>,
    one: Vec<f64>,
    all: Vec<f64>,
}

/// Every artifact of `dir` on every engine that runs it, warmed up.
fn load_all(
    dir: &Path,
    manifest: &Manifest,
    engines: &[Backend],
    ort: &OrtSettings,
    cores: usize,
    inputs: &[Vec<f32>],
    label: Option<&str>,
) -> Vec<Timed> {
    let mut runs = Vec::new();
    for &engine in engines {
        for kind in ArtifactKind::ENCODERS {
            let Some(artifact) = manifest.artifact(kind) else {
                continue;
            };
            if engine == Backend::Onnxruntime && kind == ArtifactKind::NnefFp32 {
                continue;
            }
            let path = manifest.verify(dir, artifact).expect("checksum");
            let load_start = Instant::now();
            let mut single = backend::load(&path, manifest.input.size, engine, ort).expect("loads");
            let load_ms = load_start.elapsed().as_secs_f64() * 1e3;
            let mut workers: Vec<Box<dyn Embedder>> = (0..cores)
                .map(|_| single.fork_boxed().expect("fork"))
                .collect();
            for x in inputs.iter().take(4) {
                single.embed(x).expect("warm-up");
            }
            for w in &mut workers {
                w.embed(&inputs[0]).expect("warm-up");
            }
            runs.push(Timed {
                engine,
                label: label.map_or_else(|| engine.name().to_string(), str::to_string),
                file: artifact.file.clone(),
                load_ms,
                single,
                workers,
                one: vec![],
                all: vec![],
            });
        }
    }
    runs
}

/// Mean ms per image of one pass over `inputs` on `single`.
fn time_single(single: &mut dyn Embedder, inputs: &[Vec<f32>]) -> f64 {
    let t = Instant::now();
    for x in inputs {
        std::hint::black_box(single.embed(x).expect("runs"));
    }
    t.elapsed().as_secs_f64() * 1e3 / inputs.len() as f64
}

/// Wall ms per image of one pass over `inputs` split evenly over one worker per core.
fn time_all(workers: &mut [Box<dyn Embedder>], inputs: &[Vec<f32>], cores: usize) -> f64 {
    let t = Instant::now();
    workers
        .par_iter_mut()
        .zip(inputs.par_chunks(inputs.len().div_ceil(cores)))
        .for_each(|(w, part)| {
            for x in part {
                std::hint::black_box(w.embed(x).expect("runs"));
            }
        });
    t.elapsed().as_secs_f64() * 1e3 / inputs.len() as f64
}

/// One JSON line per model and thread count: the median ms per image and, where onnxruntime
/// ran the fp32 file in the same rounds, the median over rounds of its time ÷ ours (the
/// throughput ratio against onnxruntime fp32, measured interleaved in this process).
fn report(dir: &Path, size: usize, runs: &[Timed], cores: usize) {
    let ort_fp32 = runs
        .iter()
        .find(|r| r.engine == Backend::Onnxruntime && r.file == "encoder.onnx");
    for r in runs {
        for (threads, ours, theirs) in [
            (1, &r.one, ort_fp32.map(|o| &o.one)),
            (cores, &r.all, ort_fp32.map(|o| &o.all)),
        ] {
            let ms = median(ours.clone());
            let vs_ort = theirs.map(|t| median(t.iter().zip(ours).map(|(t, o)| t / o).collect()));
            println!(
                "{}",
                serde_json::json!({
                    "engine": r.label, "file": r.file, "size": size,
                    "threads": threads, "ms_per_image": ms, "images_per_s": 1e3 / ms,
                    "load_ms": r.load_ms, "dir": dir.display().to_string(),
                    "rounds": ours.len(), "vs_onnxruntime_fp32": vs_ort,
                })
            );
        }
    }
}
