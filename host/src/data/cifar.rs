//! CIFAR-10 / CIFAR-100 "binary version" readers.
//!
//! CIFAR-10 records are 3,073 bytes (label, 1,024 R, 1,024 G, 1,024 B); CIFAR-100 records are
//! 3,074 bytes (coarse label, fine label, then the planes; we use the fine label). The
//! record count is the file size ÷ record size: batches need not hold 10,000 records.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use edgeclr_artifact::RgbImage;

use super::{LabeledImages, Split};

/// Which CIFAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// 10 classes, `data_batch_{1..5}.bin` + `test_batch.bin`.
    Cifar10,
    /// 100 classes, `train.bin` + `test.bin`.
    Cifar100,
}

impl Variant {
    fn label_bytes(self) -> usize {
        match self {
            Self::Cifar10 => 1,
            Self::Cifar100 => 2,
        }
    }

    /// Bytes per record.
    pub fn record_size(self) -> usize {
        self.label_bytes() + 3 * 32 * 32
    }
}

fn split_files(root: &Path, variant: Variant, split: Split) -> Result<Vec<PathBuf>> {
    let files: Vec<PathBuf> = match (variant, split) {
        (Variant::Cifar10, Split::Train) => (1..=5)
            .map(|i| root.join(format!("data_batch_{i}.bin")))
            .filter(|p| p.exists())
            .collect(),
        (Variant::Cifar10, Split::Test) => vec![root.join("test_batch.bin")],
        (Variant::Cifar100, Split::Train) => vec![root.join("train.bin")],
        (Variant::Cifar100, Split::Test) => vec![root.join("test.bin")],
    };
    if files.is_empty() || !files[0].exists() {
        let want = match (variant, split) {
            (Variant::Cifar10, Split::Train) => "data_batch_1.bin … data_batch_5.bin",
            (Variant::Cifar10, Split::Test) => "test_batch.bin",
            (Variant::Cifar100, Split::Train) => "train.bin",
            (Variant::Cifar100, Split::Test) => "test.bin",
        };
        bail!(
            "no {want} in {}; point --data at the extracted \"binary version\" folder",
            root.display()
        );
    }
    Ok(files)
}

/// Parses CIFAR records from `bytes` (the contents of `file`).
///
/// # Errors
/// A size that is not a whole number of records, or a label out of range, naming the file
/// and byte offset.
pub fn parse(bytes: &[u8], variant: Variant, file: &Path) -> Result<LabeledImages> {
    let rs = variant.record_size();
    if !bytes.len().is_multiple_of(rs) {
        let whole = bytes.len() / rs;
        bail!(
            "{} is truncated or not CIFAR: {} bytes is not a multiple of the {rs}-byte record \
             (the record at offset {} is incomplete); re-download or re-extract it",
            file.display(),
            bytes.len(),
            whole * rs
        );
    }
    let max_label = match variant {
        Variant::Cifar10 => 9,
        Variant::Cifar100 => 99,
    };
    let mut out = LabeledImages::default();
    for (i, rec) in bytes.chunks_exact(rs).enumerate() {
        let label = rec[variant.label_bytes() - 1];
        if label > max_label {
            bail!(
                "{}: record {i} (offset {}) has label {label} > {max_label}; the file is corrupt or not {variant:?}",
                file.display(),
                i * rs
            );
        }
        out.images.push(
            RgbImage::from_planar(32, 32, &rec[variant.label_bytes()..])
                .expect("record is 32x32x3 by construction"),
        );
        out.labels.push(u16::from(label));
    }
    Ok(out)
}

/// Loads a split from `root`.
///
/// # Errors
/// Missing, truncated or corrupt files, named.
pub fn load(root: &Path, variant: Variant, split: Split) -> Result<LabeledImages> {
    let mut all = LabeledImages::default();
    for file in split_files(root, variant, split)? {
        let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
        let part = parse(&bytes, variant, &file)?;
        all.images.extend(part.images);
        all.labels.extend(part.labels);
    }
    let meta = root.join(match variant {
        Variant::Cifar10 => "batches.meta.txt",
        Variant::Cifar100 => "fine_label_names.txt",
    });
    if let Ok(text) = std::fs::read_to_string(meta) {
        all.classes = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(label: u8, r: u8, g: u8, b: u8) -> Vec<u8> {
        let mut v = vec![label];
        v.extend(std::iter::repeat_n(r, 1024));
        v.extend(std::iter::repeat_n(g, 1024));
        v.extend(std::iter::repeat_n(b, 1024));
        v
    }

    #[test]
    fn parses_planar_records_into_interleaved_pixels() {
        let bytes = [record(3, 10, 20, 30), record(7, 1, 2, 3)].concat();
        let d = parse(&bytes, Variant::Cifar10, Path::new("x.bin")).expect("valid");
        assert_eq!(d.labels, vec![3, 7]);
        assert_eq!(d.images[0].pixel(31, 31), [10, 20, 30]);
        assert_eq!(d.images[1].pixel(0, 0), [1, 2, 3]);
    }

    #[test]
    fn truncated_file_names_file_and_offset() {
        let mut bytes = [record(1, 0, 0, 0), record(2, 0, 0, 0)].concat();
        bytes.truncate(3073 + 100);
        let err =
            parse(&bytes, Variant::Cifar10, Path::new("data_batch_9.bin")).expect_err("truncated");
        let msg = format!("{err:#}");
        assert!(
            msg.contains("data_batch_9.bin") && msg.contains("offset 3073"),
            "{msg}"
        );
    }

    #[test]
    fn shipped_sample_is_balanced() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/cifar10");
        let train = load(&root, Variant::Cifar10, Split::Train).expect("shipped sample");
        assert_eq!(train.len(), 1000);
        assert_eq!(train.classes.len(), 10);
        for c in 0..10u16 {
            assert_eq!(train.labels.iter().filter(|&&l| l == c).count(), 100);
        }
        let sub = train.balanced_subset(25);
        assert_eq!(sub.len(), 25);
        assert_eq!(sub.labels.iter().filter(|&&l| l == 0).count(), 3);
        assert_eq!(sub.labels.iter().filter(|&&l| l == 9).count(), 2);
    }
}
