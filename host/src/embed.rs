//! `edgeclr embed`: embeds a dataset with an exported model through tract — the code path
//! the board runs, with the board's preprocessing (centre crop, resize, normalise) — into `.npy` (float32 `[n, dim]`, labels beside it) or `.jsonl`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use edgeclr_artifact::atomic::write_atomic;
use edgeclr_runtime::embed::{self, Embedder};
use rayon::prelude::*;
use tracing::info;

use crate::data::{self, DatasetKind, Split, UNLABELED};
use crate::export::embed_with_progress;

/// Which split to embed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SplitArg {
    /// Training split.
    Train,
    /// Test split.
    Test,
}

/// `edgeclr embed` arguments.
#[derive(Debug, clap::Args)]
pub struct EmbedArgs {
    /// An export folder (its manifest picks the model) or one model file inside it.
    #[arg(long)]
    pub model: PathBuf,
    /// Dataset folder to embed.
    #[arg(long)]
    pub data: PathBuf,
    /// Dataset format; default: detected from the files.
    #[arg(long, value_enum)]
    pub dataset: Option<DatasetKind>,
    /// Split to embed.
    #[arg(long, value_enum, default_value = "test")]
    pub split: SplitArg,
    /// Embed only the first N images.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Output: `.npy` (float32 [n, dim]; `<stem>.labels.npy` beside it when labelled) or
    /// `.jsonl` (one `{"index", "label", "embedding"}` object per line).
    #[arg(long)]
    pub out: PathBuf,
}

/// A whole `.npy` file: header for `descr`/`shape`, then the little-endian `data`.
fn npy_bytes(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = edgeclr_artifact::npy::header(descr, shape);
    out.extend_from_slice(data);
    out
}

/// Runs `edgeclr embed`.
pub fn run(args: EmbedArgs) -> Result<()> {
    let ext = args.out.extension().and_then(|e| e.to_str()).unwrap_or("");
    if !matches!(ext, "npy" | "jsonl") {
        bail!("--out {} must end in .npy or .jsonl", args.out.display());
    }
    let opened = embed::open(&args.model)
        .with_context(|| format!("opening --model {}", args.model.display()))?;
    let m = &opened.manifest;
    info!(
        "model {} ({:?}, {}×{}, h = {})",
        m.source.model_version, opened.kind, m.input.size, m.input.size, m.output_dim
    );
    let isa = edgeclr_runtime::isa::apply();
    info!(tract_isa = %isa.tract_isa, amx = isa.amx_in_use, "tract CPU kernels");
    let kind = args
        .dataset
        .unwrap_or_else(|| DatasetKind::detect(&args.data));
    let split = match args.split {
        SplitArg::Train => Split::Train,
        SplitArg::Test => Split::Test,
    };
    let mut set = data::load(kind, &args.data, split)?;
    if let Some(limit) = args.limit {
        set.images.truncate(limit);
        set.labels.truncate(limit);
    }
    if set.images.is_empty() {
        bail!(
            "{} has no images in its {split:?} split",
            args.data.display()
        );
    }
    let rows = embed_images(&opened, &set.images, "embed")?;
    write_output(&args.out, &rows, &set.labels, opened.embedder.dim())?;
    println!(
        "embedded {} images ({} split) with {} into {} [{} × {}]",
        rows.len(),
        format!("{split:?}").to_lowercase(),
        opened.embedder.source().display(),
        args.out.display(),
        rows.len(),
        opened.embedder.dim()
    );
    Ok(())
}

/// Embeds `images` as the board does: the manifest's preprocessing, then the opened model
/// (all cores, with a progress bar labelled `what`).
pub fn embed_images(
    opened: &embed::Opened,
    images: &[edgeclr_artifact::RgbImage],
    what: &str,
) -> Result<Vec<Vec<f32>>> {
    let preprocess = embed::Preprocess::from_manifest(&opened.manifest);
    let views: Vec<Vec<f32>> = images.par_iter().map(|i| preprocess.apply(i)).collect();
    embed_with_progress(&opened.embedder, &views, what)
}

fn write_output(out: &Path, rows: &[Vec<f32>], labels: &[u16], dim: usize) -> Result<()> {
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let labelled = labels.iter().any(|&l| l != UNLABELED);
    if out.extension().is_some_and(|e| e == "npy") {
        let data: Vec<u8> = rows
            .iter()
            .flatten()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        write_atomic(out, &npy_bytes("<f4", &[rows.len(), dim], &data))?;
        if labelled {
            let l: Vec<u8> = labels
                .iter()
                .flat_map(|&l| if l == UNLABELED { -1i32 } else { i32::from(l) }.to_le_bytes())
                .collect();
            let path = out.with_extension("labels.npy");
            write_atomic(&path, &npy_bytes("<i4", &[labels.len()], &l))?;
        }
    } else {
        let mut text = Vec::new();
        for (i, (row, &label)) in rows.iter().zip(labels).enumerate() {
            let label = (label != UNLABELED).then_some(label);
            let line = serde_json::json!({"index": i, "label": label, "embedding": row});
            writeln!(text, "{line}").expect("writing to memory");
        }
        write_atomic(out, &text)?;
    }
    Ok(())
}
