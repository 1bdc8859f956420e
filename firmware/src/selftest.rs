//! `edgeclr-device selftest`: the on-device test harness, run on the board (and after every
//! flash). Each check measures something real on this board — the camera (or the configured
//! recording), the embedder at fp32 and int8, one fine-tuning step on the available backend, the
//! status screen, disk and memory against the board profile — and the results go to a human
//! summary, `selftest.json` and JUnit XML. The exit code is non-zero when any check fails.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use edgeclr_artifact::ArtifactKind;
use edgeclr_artifact::Manifest;
use edgeclr_artifact::RgbImage;
use edgeclr_runtime::backend::{self, Backend};
use edgeclr_runtime::embed::{self, Embedder, Preprocess};
use serde::Serialize;

use crate::config::choice::EmbedChoice;
use crate::config::{ArtifactChoice, DeviceConfig};
use crate::slots;
use crate::source::{self, CaptureSettings};
use crate::stats::{Status, Window};

/// One check's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Short name (`camera`, `embed-fp32`, …).
    pub name: String,
    /// Passed?
    pub ok: bool,
    /// Skipped (not applicable on this board); counts as passed.
    pub skipped: bool,
    /// One line for a person.
    pub detail: String,
    /// Measured numbers.
    pub values: serde_json::Value,
    /// Wall time of the check, s.
    pub seconds: f64,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Selftest {
    /// Board profile.
    pub board: String,
    /// Model version tested.
    pub model_version: String,
    /// The fastest engine × precision on this board that passed its parity check
    /// (`tract:int8`, `onnxruntime:fp32`, …), now preferred.
    #[serde(serialize_with = "display")]
    pub preferred_artifact: Option<EmbedChoice>,
    /// Every check.
    pub checks: Vec<Check>,
    /// All passed?
    pub ok: bool,
}

fn display<S: serde::Serializer>(c: &Option<EmbedChoice>, s: S) -> Result<S::Ok, S::Error> {
    match c {
        Some(c) => s.collect_str(c),
        None => s.serialize_none(),
    }
}

/// What a check found: numbers, or why it does not apply here.
enum Outcome {
    /// It ran: a line for a person and the measured values.
    Ran(String, serde_json::Value),
    /// Not applicable on this board (counts as passed).
    Skipped(String),
}

fn check(name: &str, f: impl FnOnce() -> Result<Outcome>) -> Check {
    let t = Instant::now();
    let r = f();
    let seconds = t.elapsed().as_secs_f64();
    let (ok, skipped, detail, values) = match r {
        Ok(Outcome::Ran(detail, values)) => (true, false, detail, values),
        Ok(Outcome::Skipped(why)) => (
            true,
            true,
            format!("skipped: {why}"),
            serde_json::Value::Null,
        ),
        Err(e) => (false, false, format!("{e:#}"), serde_json::Value::Null),
    };
    Check {
        name: name.into(),
        ok,
        skipped,
        detail,
        values,
        seconds,
    }
}

/// Embedding latency percentiles (ms) of `e` on `input`, over `n` calls after 3 warm-ups.
fn latency(e: &mut dyn Embedder, input: &[f32], n: usize) -> Result<(f32, f32)> {
    for _ in 0..3 {
        e.embed(input)?;
    }
    let mut w: Window<1024> = Window::default();
    for _ in 0..n {
        let t = Instant::now();
        std::hint::black_box(e.embed(input)?);
        w.push(t.elapsed().as_secs_f32() * 1e3);
    }
    Ok((w.quantile(0.5), w.quantile(0.99)))
}

/// One engine × precision on the board's frames: its agreement with tract fp32 (`reference`;
/// tract fp32 itself fills it) and its latency. Skipped when the model has no such file or
/// the engine's library is not installed.
fn embed_check(
    cfg: &DeviceConfig,
    manifest: &Manifest,
    model: &Path,
    choice: EmbedChoice,
    frames: &[Vec<f32>],
    reference: &mut Option<Vec<Vec<f32>>>,
) -> Result<(Outcome, Option<f32>)> {
    let kind = choice.artifact.kind();
    if manifest.artifact(kind).is_none() {
        let why = format!("the model has no {}", kind.file_name());
        return Ok((Outcome::Skipped(why), None));
    }
    let ort = &cfg.runtime.onnxruntime;
    let engine = match backend::available(choice.backend, ort) {
        Ok(engine) => engine,
        Err(e) => return Ok((Outcome::Skipped(e.to_string()), None)),
    };
    let mut e = embed::open_on(&model.join(kind.file_name()), choice.backend, ort)?.embedder;
    let got = frames
        .iter()
        .map(|x| e.embed(x))
        .collect::<Result<Vec<_>, _>>()?;
    let parity = match (choice.backend, choice.artifact, reference.as_ref()) {
        (Backend::Tract, ArtifactChoice::Fp32, _) => {
            *reference = Some(got);
            None
        }
        (_, _, Some(r)) => Some(crate::parity::check(manifest, choice, &got, r)?),
        (_, _, None) => bail!("no tract fp32 reference to check {choice} against"),
    };
    let (p50, p99) = latency(e.as_mut(), &frames[0], 50)?;
    let agrees = parity.as_ref().map_or(String::new(), |g| {
        format!(
            ", mean cosine {:.5} with tract fp32 on {} frames",
            g.mean_cosine, g.images
        )
    });
    Ok((
        Outcome::Ran(
            format!(
                "{engine}, {}: p50 {p50:.2} ms, p99 {p99:.2} ms{agrees}",
                kind.file_name()
            ),
            serde_json::json!({"p50_ms": p50, "p99_ms": p99, "parity": parity, "engine": engine}),
        ),
        Some(p50),
    ))
}

/// Every engine × precision this build has; the fastest that passed is preferred and, with
/// `state`, written to `STATE/artifact` for `run`.
fn embed_checks(
    cfg: &DeviceConfig,
    manifest: &Manifest,
    model: &Path,
    frames: &[Vec<f32>],
    state: Option<&Path>,
) -> Result<(Vec<Check>, Option<EmbedChoice>)> {
    let mut reference = None;
    let mut timed = Vec::new();
    let mut checks = Vec::new();
    for choice in EmbedChoice::all() {
        let name = format!("embed-{}", choice.to_string().replace(':', "-"));
        checks.push(check(&name, || {
            let (outcome, p50) = embed_check(cfg, manifest, model, choice, frames, &mut reference)?;
            timed.extend(p50.map(|t| (choice, t)));
            Ok(outcome)
        }));
    }
    let preferred = timed
        .iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(c, _)| *c);
    if let (Some(dir), Some(choice)) = (state, preferred) {
        edgeclr_artifact::atomic::write_atomic(
            &dir.join("artifact"),
            choice.to_string().as_bytes(),
        )?;
    }
    Ok((checks, preferred))
}

/// `MemAvailable` in MiB from /proc/meminfo.
fn mem_available_mib() -> Option<f64> {
    std::fs::read_to_string("/proc/meminfo")
        .ok()?
        .lines()
        .find(|l| l.starts_with("MemAvailable:"))?
        .split_whitespace()
        .nth(1)?
        .parse::<f64>()
        .ok()
        .map(|kb| kb / 1024.0)
}

/// Runs every check. `model` is the model folder (an export or a slot); `state`, when given,
/// receives the preferred artifact (`STATE/artifact`) for `run --artifact auto`.
pub fn run(
    cfg: &DeviceConfig,
    model: &Path,
    state: Option<&Path>,
    frames: u64,
) -> Result<Selftest> {
    let manifest = slots::verify(model).map_err(anyhow::Error::msg)?;
    let size = manifest.input.size;
    let pre = Preprocess::from_manifest(&manifest);
    let mut checks = Vec::new();
    let mut decoded: Vec<(u64, RgbImage)> = Vec::new();

    // Camera (or the configured recording): open, read, decode, measure the frame rate.
    checks.push(check("camera", || {
        let settings = CaptureSettings {
            width: cfg.source.width,
            height: cfg.source.height,
            fps: cfg.source.fps,
            as_fast_as_possible: false,
            max_frames: Some(frames),
            looped: true,
        };
        let mut src = source::open(&cfg.source.spec, settings)
            .with_context(|| format!("opening {}", cfg.source.spec))?;
        let t = Instant::now();
        let mut n = 0u64;
        let mut bad = 0u64;
        while n < frames {
            let f = src.next_frame().map_err(|e| anyhow::anyhow!("{e}"))?;
            n += 1;
            match f.to_rgb() {
                Ok(rgb) => decoded.push((f.id, rgb)),
                Err(_) => bad += 1,
            }
        }
        let fps = n as f64 / t.elapsed().as_secs_f64();
        if decoded.is_empty() {
            bail!("{} delivered {n} frames and none decoded", src.describe());
        }
        if fps < 0.5 * cfg.source.fps {
            bail!("{}: {fps:.1} fps, below half the configured {} fps", src.describe(), cfg.source.fps);
        }
        Ok(Outcome::Ran(
            format!("{}: {fps:.1} fps over {n} frames ({bad} undecodable)", src.describe()),
            serde_json::json!({"fps": fps, "frames": n, "bad_frames": bad, "configured_fps": cfg.source.fps}),
        ))
    }));

    // Every engine × precision on up to 16 of the board's frames (a blank frame without a
    // camera); the fastest that passes its parity check becomes the preferred choice.
    let frames: Vec<Vec<f32>> = if decoded.is_empty() {
        vec![vec![0.0; 3 * size * size]]
    } else {
        decoded.iter().take(16).map(|(_, f)| pre.apply(f)).collect()
    };
    let (embeds, preferred) = embed_checks(cfg, &manifest, model, &frames, state)?;
    checks.extend(embeds);

    // One fine-tuning step on the backend the profile selects.
    checks.push(check("finetune-step", || {
        finetune_step(cfg, &manifest, model, &decoded, size)
    }));

    // The status screen.
    checks.push(check("display", || {
        let status = Status {
            fps: 1.0,
            ..Status::default()
        };
        match crate::display::open(&cfg.display.target).map_err(anyhow::Error::msg)? {
            Some(mut screen) => {
                screen.show(&status).map_err(anyhow::Error::msg)?;
                Ok(Outcome::Ran(
                    format!("drew the status screen on {:?}", cfg.display.target),
                    serde_json::Value::Null,
                ))
            }
            None => {
                // No screen configured: still render to memory, so the drawing code ran.
                let mut canvas = crate::display::png::MonoCanvas::new(128, 64);
                crate::display::draw_status(&mut canvas, &status)
                    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
                Ok(Outcome::Skipped(
                    "no screen configured (rendered to memory)".into(),
                ))
            }
        }
    }));

    // Disk: room for two more model slots and the fine-tuning checkpoints.
    checks.push(check("disk", || {
        let dir: PathBuf = state.map_or_else(|| model.to_path_buf(), Path::to_path_buf);
        let st = rustix::fs::statvfs(&dir).with_context(|| format!("statvfs {}", dir.display()))?;
        let free = (st.f_bavail * st.f_frsize) as f64 / (1024.0 * 1024.0);
        let model_mib =
            manifest.artifacts.iter().map(|a| a.bytes).sum::<u64>() as f64 / (1024.0 * 1024.0);
        let need = 4.0 * model_mib + 64.0;
        if free < need {
            bail!(
                "{}: {free:.0} MiB free, need {need:.0} MiB (two slots, checkpoints, margin)",
                dir.display()
            );
        }
        Ok(Outcome::Ran(
            format!("{}: {free:.0} MiB free (need {need:.0})", dir.display()),
            serde_json::json!({"free_mib": free, "need_mib": need}),
        ))
    }));

    // Memory headroom against the board's budget.
    checks.push(check("memory", || {
        let avail = mem_available_mib().context("no MemAvailable in /proc/meminfo")?;
        let budget = cfg.runtime.memory_budget_mib as f64;
        if avail < budget {
            bail!("{avail:.0} MiB available, below the profile's budget of {budget:.0} MiB");
        }
        Ok(Outcome::Ran(
            format!("{avail:.0} MiB available, budget {budget:.0} MiB"),
            serde_json::json!({"available_mib": avail, "budget_mib": budget}),
        ))
    }));

    let ok = checks.iter().all(|c| c.ok);
    Ok(Selftest {
        board: cfg.board.name.clone(),
        model_version: manifest.source.model_version,
        preferred_artifact: preferred,
        checks,
        ok,
    })
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Selftest {
    /// JUnit XML (one testsuite, one testcase per check).
    pub fn junit(&self) -> String {
        let failures = self.checks.iter().filter(|c| !c.ok).count();
        let skipped = self.checks.iter().filter(|c| c.skipped).count();
        let total: f64 = self.checks.iter().map(|c| c.seconds).sum();
        let mut x = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite name=\"edgeclr-selftest.{}\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\" time=\"{total:.3}\">\n",
            xml_escape(&self.board),
            self.checks.len()
        );
        for c in &self.checks {
            x += &format!(
                "  <testcase classname=\"edgeclr.selftest\" name=\"{}\" time=\"{:.3}\">",
                xml_escape(&c.name),
                c.seconds
            );
            if !c.ok {
                x += &format!("<failure message=\"{}\"/>", xml_escape(&c.detail));
            } else if c.skipped {
                x += &format!("<skipped message=\"{}\"/>", xml_escape(&c.detail));
            } else {
                x += &format!("<system-out>{}</system-out>", xml_escape(&c.detail));
            }
            x += "</testcase>\n";
        }
        x + "</testsuite>\n"
    }

    /// The human summary.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "edgeclr selftest on {} with {}\n",
            self.board, self.model_version
        );
        for c in &self.checks {
            let mark = if !c.ok {
                "FAIL"
            } else if c.skipped {
                "skip"
            } else {
                " ok "
            };
            s += &format!("  [{mark}] {:<22} {}\n", c.name, c.detail);
        }
        if let Some(a) = self.preferred_artifact {
            s += &format!("  fastest embedder here: {a}\n");
        }
        s += if self.ok { "PASS\n" } else { "FAIL\n" };
        s
    }
}

/// One fine-tuning step on the backend the profile selects, on the decoded camera frames
/// (or the synthetic source's when the camera gave none).
#[cfg(feature = "finetune")]
fn finetune_step(
    cfg: &DeviceConfig,
    manifest: &edgeclr_artifact::Manifest,
    model: &Path,
    decoded: &[(u64, RgbImage)],
    size: usize,
) -> Result<Outcome> {
    use std::sync::Arc;

    use crate::finetune::trainer::{Sample, Trainer, TrainerConfig};
    let Some(recipe) = edgeclr_learn::export::recipe_of(manifest)? else {
        return Ok(Outcome::Skipped(
            "the model carries no burn weights (export without them)".into(),
        ));
    };
    let selected = crate::finetune::select_backend(cfg.finetune.device)?;
    // Without camera frames (that check failed) the backend is still tested, on the
    // synthetic source's frames.
    let synthetic: Vec<(u64, RgbImage)> = if decoded.len() < 2 {
        let settings = CaptureSettings {
            width: 320,
            height: 240,
            fps: 30.0,
            as_fast_as_possible: true,
            max_frames: Some(8),
            looped: false,
        };
        let mut src = crate::source::synthetic::SyntheticSource::new(settings);
        let mut v = Vec::new();
        while let Ok(f) = crate::source::FrameSource::next_frame(&mut src) {
            v.push((f.id, f.to_rgb()?));
        }
        v
    } else {
        Vec::new()
    };
    let images: Vec<Sample> = decoded
        .iter()
        .chain(&synthetic)
        .take(8)
        .map(|(id, f)| Sample {
            frame_id: *id * 100,
            image: Arc::new(crate::frame::downscale(f, 2 * size)),
        })
        .collect();
    if images.len() < 2 {
        bail!("fewer than two decoded frames to train on");
    }
    let head = model.join(ArtifactKind::BurnHead.file_name());
    let mut t = Trainer::new(
        &recipe,
        &model.join(ArtifactKind::BurnEncoder.file_name()),
        head.exists().then_some(head.as_path()),
        size,
        TrainerConfig {
            batch: images.len(),
            ..cfg.finetune.trainer.clone()
        },
        &selected.device,
    )?;
    let r = t.step(&images);
    if !r.loss.is_finite() {
        bail!("{}: non-finite loss {}", selected.description, r.loss);
    }
    Ok(Outcome::Ran(
        format!(
            "{}: loss {:.4}, {:.0} ms for {} frames",
            selected.description,
            r.loss,
            r.ms,
            images.len()
        ),
        serde_json::json!({"backend": selected.description, "loss": r.loss, "ms": r.ms, "batch": images.len()}),
    ))
}

#[cfg(not(feature = "finetune"))]
fn finetune_step(
    _: &DeviceConfig,
    _: &edgeclr_artifact::Manifest,
    _: &Path,
    _: &[(u64, RgbImage)],
    _: usize,
) -> Result<Outcome> {
    Ok(Outcome::Skipped(
        "this edgeclr-device is built without the `finetune` feature (inference only)".into(),
    ))
}
