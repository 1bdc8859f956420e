//! `edgeclr ablate`: the paper's comparisons at a scale this machine can run — the same
//! pretraining budget per row, each row scored by kNN on the test split — printed as tables
//! shaped like the paper's (Table 4 losses, §4.2 heads, Table 1 colour strength).

use std::path::PathBuf;

use anyhow::{Context, Result};
use edgeclr_artifact::atomic::write_atomic;
use edgeclr_learn::head::HeadKind;
use serde_json::json;
use tracing::info;

use crate::pretrain::{LossKind, PretrainArgs};

/// Which comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Table {
    /// NT-Xent, NT-Logistic, margin, the last two ± semi-hard mining (Table 4).
    Loss,
    /// No head, linear head, MLP head (§4.2), evaluated on h.
    Head,
    /// Colour strength 1/8, 1/4, 1/2, 1 and 1 + blur (Table 1).
    Color,
}

/// `edgeclr ablate` arguments: the table plus every `pretrain` flag as the shared budget;
/// `--out` is the folder that receives one run per row and the tables.
#[derive(Debug, clap::Args)]
pub struct AblateArgs {
    /// Which comparison to run.
    #[arg(long, value_enum)]
    pub table: Table,
    /// The budget and recipe every row shares.
    #[command(flatten)]
    pub base: PretrainArgs,
}

/// How a row changes the shared recipe.
type Edit = Box<dyn Fn(&mut PretrainArgs)>;

/// One row: its name and how it changes the shared recipe.
fn rows(table: Table) -> Vec<(&'static str, Edit)> {
    fn loss(kind: LossKind, semi: bool) -> Edit {
        Box::new(move |a| {
            a.loss = Some(kind);
            a.semi_hard = semi;
        })
    }
    fn head(kind: HeadKind) -> Box<dyn Fn(&mut PretrainArgs)> {
        Box::new(move |a| a.head = Some(kind))
    }
    fn color(s: f32, blur: bool) -> Box<dyn Fn(&mut PretrainArgs)> {
        Box::new(move |a| {
            a.color_strength = Some(s);
            a.blur = blur;
            a.no_blur = !blur;
        })
    }
    match table {
        Table::Loss => vec![
            ("margin", loss(LossKind::Margin, false)),
            ("ntlogistic", loss(LossKind::Ntlogistic, false)),
            ("margin-semihard", loss(LossKind::Margin, true)),
            ("ntlogistic-semihard", loss(LossKind::Ntlogistic, true)),
            ("ntxent", loss(LossKind::Ntxent, false)),
        ],
        Table::Head => vec![
            ("none", head(HeadKind::None)),
            ("linear", head(HeadKind::Linear)),
            ("mlp", head(HeadKind::Mlp)),
        ],
        Table::Color => vec![
            ("s=1/8", color(0.125, false)),
            ("s=1/4", color(0.25, false)),
            ("s=1/2", color(0.5, false)),
            ("s=1", color(1.0, false)),
            ("s=1+blur", color(1.0, true)),
        ],
    }
}

/// kNN on the projection `z = g(f(x))` of a finished row (the paper's h-vs-z comparison).
fn knn_on_projection(row: &PretrainArgs) -> Result<crate::eval::knn::Accuracy> {
    use burn::module::Module;
    use edgeclr_learn::checkpoint::CheckpointDir;
    use edgeclr_learn::device::select_device;

    use crate::data::{self, Split};
    use crate::eval::{features, knn};

    let cfg = crate::eval::run_config(&row.out)?;
    let device = select_device(cfg.train.device)?.device;
    let loaded = CheckpointDir::new(row.out.join("checkpoints"), 2)
        .load_latest(&device)?
        .context("the row left no checkpoint")?;
    let model = loaded.model.valid();
    let root = cfg
        .train
        .data
        .clone()
        .context("the row's config has no data path")?;
    let mut train = data::load(cfg.train.dataset, &root, Split::Train)?.labeled_only();
    if let Some(l) = cfg.train.knn_bank_limit {
        train = train.balanced_subset(l);
    }
    let test = data::load(cfg.train.dataset, &root, Split::Test)?.labeled_only();
    let aug = &cfg.simclr.augment;
    let z = |x| model.forward(x).1;
    let bank = features::extract_with(&z, &train.images, aug, &device, 256);
    let query = features::extract_with(&z, &test.images, aug, &device, 256);
    let classes = train.num_classes().max(test.num_classes());
    Ok(knn::knn_accuracy(
        &bank,
        &train.labels,
        &query,
        &test.labels,
        classes,
        knn::KnnConfig::default(),
        &device,
    ))
}

/// Runs `edgeclr ablate`.
pub fn run(args: AblateArgs) -> Result<()> {
    let root: PathBuf = args.base.out.clone();
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let mut results = Vec::new();
    for (name, apply) in rows(args.table) {
        let mut row = args.base.clone();
        apply(&mut row);
        row.out = root.join(name.replace(['/', '='], "_"));
        // Score every row once, at its end, unless the user asked for a per-epoch monitor.
        row.knn_every = Some(row.knn_every.unwrap_or(usize::MAX));
        info!(row = name, out = %row.out.display(), "ablation row");
        crate::pretrain::run(row.clone())?;
        let text = std::fs::read_to_string(row.out.join("results.json"))
            .context("reading the row's results.json")?;
        let r: serde_json::Value = serde_json::from_str(&text)?;
        let knn_z = if args.table == Table::Head {
            Some(knn_on_projection(&row)?)
        } else {
            None
        };
        results.push(json!({
            "row": name, "knn": r["knn"], "knn_z": knn_z, "final_loss": r["final_loss"], "run": row.out
        }));
    }
    let mut md = format!(
        "| {:?} | kNN top-1 on h | kNN top-5 on h | kNN top-1 on z | final loss |\n| --- | ---: | ---: | ---: | ---: |\n",
        args.table
    );
    for r in &results {
        let f = |v: &serde_json::Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.2}"));
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            r["row"].as_str().unwrap_or("?"),
            f(&r["knn"]["top1"]),
            f(&r["knn"]["top5"]),
            f(&r["knn_z"]["top1"]),
            f(&r["final_loss"])
        ));
    }
    write_atomic(
        &root.join("ablation.json"),
        serde_json::to_string_pretty(&results)?.as_bytes(),
    )?;
    write_atomic(&root.join("ablation.md"), md.as_bytes())?;
    println!("{md}");
    Ok(())
}
