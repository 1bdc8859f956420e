//! `edgeclr eval --state STATE`: every model a board's state folder holds — the factory slot,
//! the running one and each kept candidate (`finetune.keep_candidates`) — scored on one
//! labelled dataset through the board's code path (tract, the manifest's input contract), with
//! the data decoded once. Joined with the board's `decisions.jsonl`, it says how often the
//! label-free judge agreed with the labels, and draws target kNN against fine-tuning time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use edgeclr_runtime::embed;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::features::Features;
use super::knn::{self, Accuracy};
use crate::data::{self, DatasetKind, LabeledImages};
use crate::embed::embed_images;
use crate::plots::{self, Series};

/// One line of the board's `decisions.jsonl` (the fields this needs).
#[derive(Debug, Clone, Deserialize)]
struct DecisionLine {
    step: u64,
    candidate: String,
    running: String,
    accepted: bool,
    #[serde(default)]
    at_s: f64,
}

/// A candidate's decision with the labels' view of it.
#[derive(Debug, Clone, Serialize)]
pub struct Judged {
    /// Candidate slot name.
    pub candidate: String,
    /// Fine-tuning step it was exported at.
    pub step: u64,
    /// Seconds after fine-tuning started.
    pub at_s: f64,
    /// Promoted by the board's judge?
    pub accepted: bool,
    /// The model it was compared with.
    pub running: String,
    /// Its kNN on the data.
    pub knn: Option<Accuracy>,
    /// The running model's kNN on the data.
    pub running_knn: Option<Accuracy>,
}

/// How often the label-free judge agreed with the labelled kNN.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Agreement {
    /// Decisions with both kNN values known.
    pub decisions: usize,
    /// Promotions.
    pub promotions: usize,
    /// Promotions that raised kNN top-1.
    pub promotions_that_helped: usize,
    /// Rejections.
    pub rejections: usize,
    /// Rejected candidates whose kNN top-1 was higher than the running model's.
    pub rejections_that_were_better: usize,
    /// Share of decisions the labels agree with (promoted ⇔ higher top-1); none without
    /// decisions.
    pub rate: Option<f64>,
}

impl Agreement {
    fn of(judged: &[Judged]) -> Self {
        let mut a = Self::default();
        for j in judged {
            let (Some(c), Some(r)) = (j.knn, j.running_knn) else {
                continue;
            };
            a.decisions += 1;
            let better = c.top1 > r.top1;
            if j.accepted {
                a.promotions += 1;
                a.promotions_that_helped += usize::from(better);
            } else {
                a.rejections += 1;
                a.rejections_that_were_better += usize::from(better);
            }
        }
        let agreed = a.promotions_that_helped + a.rejections - a.rejections_that_were_better;
        a.rate = (a.decisions > 0).then(|| agreed as f64 / a.decisions as f64);
        a
    }
}

/// The slot a pointer symlink of the state directory (`factory`, `current`) names.
fn pointer(state: &Path, name: &str) -> Option<String> {
    std::fs::read_link(state.join(name))
        .ok()
        .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
}

/// The model folders of a state directory: name → folder.
fn models_of(state: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    for p in ["factory", "current"] {
        if let Some(name) = pointer(state, p) {
            out.insert(name.clone(), state.join("slots").join(&name));
        }
    }
    let kept = state.join("candidates");
    if !kept.is_dir() {
        warn!(
            "{} does not exist: rejected candidates were deleted, so the judge's agreement \
             covers promotions only (run with --set finetune.keep_candidates=true)",
            kept.display()
        );
    } else {
        for entry in std::fs::read_dir(&kept).with_context(|| kept.display().to_string())? {
            let path = entry?.path();
            if let Some(n) = path.file_name() {
                out.entry(n.to_string_lossy().into_owned()).or_insert(path);
            }
        }
    }
    if out.is_empty() {
        bail!(
            "{} holds no model slots: pass the --state folder of edgeclr-device run",
            state.display()
        );
    }
    Ok(out)
}

/// kNN of the model in `dir` on the data.
fn knn_of(dir: &Path, train: &LabeledImages, test: &LabeledImages) -> Result<Accuracy> {
    let opened = embed::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    let bank = Features::normalised(embed_images(&opened, &train.images, "bank")?);
    let query = Features::normalised(embed_images(&opened, &test.images, "test")?);
    let classes = train.num_classes().max(test.num_classes());
    Ok(knn::knn_accuracy(
        &bank,
        &train.labels,
        &query,
        &test.labels,
        classes,
        knn::KnnConfig::default(),
        &Device::flex(),
    ))
}

fn read_decisions(state: &Path) -> Result<Vec<DecisionLine>> {
    let path = state.join("decisions.jsonl");
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    // A power cut can leave a torn last line: skip what does not parse.
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// Target kNN against fine-tuning time: every candidate, the running model, the factory's.
fn plot(path: &Path, judged: &[Judged], factory: Option<f64>) -> Result<()> {
    let every: Vec<(f64, f64)> = judged
        .iter()
        .filter_map(|j| j.knn.map(|k| (j.at_s, k.top1)))
        .collect();
    let end = every.last().map_or(1.0, |p| p.0);
    let mut running = Vec::new();
    if let Some(f) = factory {
        running.push((0.0, f));
    }
    for j in judged {
        if let (true, Some(k)) = (j.accepted, j.knn) {
            if let Some(&(_, prev)) = running.last() {
                running.push((j.at_s, prev));
            }
            running.push((j.at_s, k.top1));
        }
    }
    if let Some(&(_, last)) = running.last() {
        running.push((end, last));
    }
    let mut series = vec![
        Series {
            label: "every candidate",
            points: every,
        },
        Series {
            label: "running model",
            points: running,
        },
    ];
    if let Some(f) = factory {
        series.push(Series {
            label: "factory model",
            points: vec![(0.0, f), (end, f)],
        });
    }
    plots::line_chart(
        path,
        "On-device fine-tuning: target-domain kNN",
        "seconds of fine-tuning",
        "kNN top-1 (%)",
        &series,
    )
}

/// Runs `edgeclr eval --state`.
pub fn run(args: &super::EvalArgs, state: &Path) -> Result<()> {
    let models = models_of(state)?;
    edgeclr_runtime::isa::apply();
    let kind = args
        .dataset
        .unwrap_or_else(|| DatasetKind::detect(&args.data));
    let (train, test) = data::load_labelled(kind, &args.data, args.train_limit, args.test_limit)?;
    info!(
        models = models.len(),
        train = train.len(),
        test = test.len(),
        "evaluating a state folder"
    );
    let bar = indicatif::ProgressBar::new(models.len() as u64);
    let mut scores: BTreeMap<String, Accuracy> = BTreeMap::new();
    for (name, dir) in &models {
        match knn_of(dir, &train, &test) {
            Ok(a) => {
                scores.insert(name.clone(), a);
            }
            Err(e) => warn!("{name}: {e:#}"),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let judged: Vec<Judged> = read_decisions(state)?
        .into_iter()
        .map(|d| Judged {
            knn: scores.get(&d.candidate).copied(),
            running_knn: scores.get(&d.running).copied(),
            candidate: d.candidate,
            step: d.step,
            at_s: d.at_s,
            accepted: d.accepted,
            running: d.running,
        })
        .collect();
    let named = |p: &str| {
        pointer(state, p).map(|n| {
            let knn = scores.get(&n).copied();
            serde_json::json!({"slot": n, "knn": knn})
        })
    };
    let report = serde_json::json!({
        "state": state,
        "data": args.data,
        "train_images": train.len(),
        "test_images": test.len(),
        "factory": named("factory"),
        "current": named("current"),
        "models": scores,
        "decisions": judged,
        "agreement": Agreement::of(&judged),
    });
    if let Some(png) = &args.plot {
        let factory = pointer(state, "factory")
            .and_then(|n| scores.get(&n))
            .map(|a| a.top1);
        plot(png, &judged, factory)?;
    }
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(accepted: bool, cand: f64, running: f64) -> Judged {
        let acc = |top1| Some(Accuracy { top1, top5: 0.0 });
        Judged {
            candidate: "c".into(),
            step: 0,
            at_s: 0.0,
            accepted,
            running: "r".into(),
            knn: acc(cand),
            running_knn: acc(running),
        }
    }

    #[test]
    fn agreement_counts_promotions_that_helped_and_rejections_that_were_better() {
        // Promoted and better (agree), promoted and worse (disagree), rejected and worse
        // (agree), rejected and better (disagree), rejected and equal (agree): 3 of 5.
        let a = Agreement::of(&[
            judged(true, 40.0, 39.0),
            judged(true, 38.0, 39.0),
            judged(false, 38.0, 39.0),
            judged(false, 41.0, 39.0),
            judged(false, 39.0, 39.0),
        ]);
        assert_eq!(
            (a.decisions, a.promotions, a.promotions_that_helped),
            (5, 2, 1)
        );
        assert_eq!((a.rejections, a.rejections_that_were_better), (3, 1));
        assert!(a.rate.is_some_and(|r| (r - 0.6).abs() < 1e-12), "{a:?}");
        assert_eq!(Agreement::of(&[]).rate, None);
    }
}
