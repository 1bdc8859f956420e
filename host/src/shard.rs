//! `edgeclr shard`: writes a data set as WebDataset-layout tar shards plus `shards.json`, the
//! form `edgeclr pretrain` streams without holding the data in memory (data::shards).
//! Image folders are copied byte for byte; CIFAR/STL binaries are written as PNG (lossless).
//! Every shard is written under a temporary name and renamed when complete; the index last.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};

use crate::data::shards::ShardWriter;
use crate::data::{self, DatasetKind, Split, folder};

/// `edgeclr shard`.
#[derive(Debug, clap::Args)]
pub struct ShardArgs {
    /// The data set: an image folder or CIFAR/STL binaries.
    #[arg(long)]
    pub data: PathBuf,
    /// Its format (detected from the files when omitted).
    #[arg(long, value_enum)]
    pub dataset: Option<DatasetKind>,
    /// Which split to write.
    #[arg(long, value_enum, default_value = "train")]
    pub split: SplitArg,
    /// Output folder (created; must not already hold shards).
    #[arg(long)]
    pub out: PathBuf,
    /// Samples per shard.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub per_shard: u32,
    /// Write every sample this many times (a larger stand-in data set for memory tests).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub repeat: u32,
}

/// `--split`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SplitArg {
    /// The training split.
    Train,
    /// The test split.
    Test,
}

/// One sample to write: encoded bytes, extension, label.
type Encoded = (Vec<u8>, &'static str, u16);

fn png(img: &edgeclr_artifact::RgbImage) -> Result<Vec<u8>> {
    let buf = image::RgbImage::from_raw(
        img.width() as u32,
        img.height() as u32,
        img.as_bytes().to_vec(),
    )
    .context("image buffer size")?;
    let mut out = std::io::Cursor::new(Vec::new());
    buf.write_to(&mut out, image::ImageFormat::Png)?;
    Ok(out.into_inner())
}

/// Sample `i`: PNG of the decoded image, or an image folder's file as it is.
fn encoded(
    set: Option<&data::LabeledImages>,
    files: &[(PathBuf, u16)],
    i: usize,
) -> Result<Encoded> {
    if let Some(s) = set {
        return Ok((png(&s.images[i])?, "png", s.labels[i]));
    }
    let (path, label) = &files[i];
    let ext = if folder::is_png(path) { "png" } else { "jpg" };
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok((bytes, ext, *label))
}

/// Runs `edgeclr shard`.
///
/// # Errors
/// Unreadable input, an output folder that already holds shards, a write failure.
pub fn run(args: &ShardArgs) -> Result<()> {
    let kind = args
        .dataset
        .unwrap_or_else(|| DatasetKind::detect(&args.data));
    let split = match args.split {
        SplitArg::Train => Split::Train,
        SplitArg::Test => Split::Test,
    };
    let occupied = std::fs::read_dir(&args.out)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if occupied {
        bail!(
            "--out {} is not empty; write shards into a new folder (a re-run after an \
             interrupted one: remove the folder first)",
            args.out.display()
        );
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let (files, classes) = match kind {
        DatasetKind::Folder => folder::list(&args.data, split)?,
        _ => (Vec::new(), Vec::new()),
    };
    let set = match kind {
        DatasetKind::Folder => None,
        _ => Some(data::load(kind, &args.data, split)?),
    };
    let n = set.as_ref().map_or(files.len(), data::LabeledImages::len);
    let classes = set.as_ref().map_or(classes, |s| s.classes.clone());
    let repeat = args.repeat as usize;
    if n == 0 {
        bail!("{} has no samples to shard", args.data.display());
    }
    let bar = ProgressBar::new((n * repeat) as u64).with_style(
        ProgressStyle::with_template("shard {bar:30} {pos}/{len} samples {per_sec} ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut writer = ShardWriter::new(&args.out, args.per_shard as usize, classes);
    for _ in 0..repeat {
        for i in 0..n {
            let (bytes, ext, label) = encoded(set.as_ref(), &files, i)?;
            writer.add(&bytes, ext, label)?;
            bar.inc(1);
        }
    }
    let index = writer.finish()?;
    bar.finish_and_clear();
    println!(
        "{}",
        serde_json::json!({"out": args.out.display().to_string(), "shards": index.shards.len(),
                           "samples": index.samples(), "classes": index.classes.len()})
    );
    Ok(())
}
