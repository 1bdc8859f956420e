//! Datasets: labelled in-memory image collections loaded from standard on-disk formats.

pub mod cifar;
pub mod folder;
pub mod shards;
pub mod stl10;

use anyhow::{Context, Result, bail};
use edgeclr_artifact::RgbImage;
use std::path::Path;

/// Which on-disk format `--data` points at.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum DatasetKind {
    /// CIFAR-10 binary version (`data_batch_*.bin`, `test_batch.bin`).
    Cifar10,
    /// CIFAR-100 binary version (`train.bin`, `test.bin`).
    Cifar100,
    /// STL-10 binary version; the training split includes `unlabeled_X.bin` when present.
    Stl10,
    /// JPEG/PNG files, flat (unlabelled) or one subfolder per class; `train/` + `test/` if split.
    Folder,
    /// WebDataset tar shards with `shards.json` (`edgeclr shard`), streamed by `pretrain`.
    Shards,
}

impl DatasetKind {
    /// Guesses the format from the files in `root`: CIFAR-10/100 and STL-10 binaries by
    /// their file names, anything else is an image folder.
    pub fn detect(root: &Path) -> Self {
        let has = |f: &str| root.join(f).is_file();
        if has(shards::INDEX) {
            Self::Shards
        } else if has("data_batch_1.bin") || has("test_batch.bin") {
            Self::Cifar10
        } else if has("train.bin") && has("test.bin") {
            Self::Cifar100
        } else if has("train_X.bin") || has("unlabeled_X.bin") {
            Self::Stl10
        } else {
            Self::Folder
        }
    }
}

/// A train or test split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Training images.
    Train,
    /// Held-out test images.
    Test,
}

/// The label of an image without one (STL-10's unlabelled split, flat image folders).
pub const UNLABELED: u16 = u16::MAX;

/// Images with integer class labels.
#[derive(Debug, Clone, Default)]
pub struct LabeledImages {
    /// The images.
    pub images: Vec<RgbImage>,
    /// One label per image.
    pub labels: Vec<u16>,
    /// Class names by label, when known.
    pub classes: Vec<String>,
}

impl LabeledImages {
    /// Number of images.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// Number of classes (max label + 1, or the class-name count if larger).
    pub fn num_classes(&self) -> usize {
        let from_labels = self
            .labels
            .iter()
            .filter(|&&l| l != UNLABELED)
            .max()
            .map_or(0, |&m| usize::from(m) + 1);
        from_labels.max(self.classes.len())
    }

    /// Only the images that carry a label (a kNN bank or a probe needs labels).
    pub fn labeled_only(self) -> Self {
        let (images, labels) = self
            .images
            .into_iter()
            .zip(self.labels)
            .filter(|(_, l)| *l != UNLABELED)
            .unzip();
        Self {
            images,
            labels,
            classes: self.classes,
        }
    }

    /// A class-balanced subset of at most `limit` images: the first `limit / classes` of each
    /// class in file order (the remainder spread over the first classes).
    pub fn balanced_subset(self, limit: usize) -> Self {
        let classes = self.num_classes().max(1);
        if limit >= self.len() {
            return self;
        }
        let mut quota: Vec<usize> = (0..classes)
            .map(|c| limit / classes + usize::from(c < limit % classes))
            .collect();
        let mut out = Self {
            classes: self.classes,
            ..Self::default()
        };
        for (img, label) in self.images.into_iter().zip(self.labels) {
            if label == UNLABELED {
                continue;
            }
            let q = &mut quota[usize::from(label)];
            if *q > 0 {
                *q -= 1;
                out.images.push(img);
                out.labels.push(label);
            }
        }
        out
    }
}

/// Loads one split of a dataset.
///
/// # Errors
/// Missing or malformed files, named with the fix.
pub fn load(kind: DatasetKind, root: &Path, split: Split) -> Result<LabeledImages> {
    if !root.is_dir() {
        bail!(
            "dataset folder {} does not exist; pass --data with the folder holding the {kind:?} .bin files",
            root.display()
        );
    }
    match kind {
        DatasetKind::Cifar10 => cifar::load(root, cifar::Variant::Cifar10, split),
        DatasetKind::Cifar100 => cifar::load(root, cifar::Variant::Cifar100, split),
        DatasetKind::Stl10 => stl10::load(root, split, true),
        DatasetKind::Folder => folder::load(root, split),
        DatasetKind::Shards => bail!(
            "{} holds tar shards, which only `edgeclr pretrain` streams; evaluate on the folder \
             or binaries they were written from",
            root.display()
        ),
    }
    .with_context(|| format!("loading {kind:?} {split:?} split from {}", root.display()))
}

/// The labelled train split (a kNN bank, probe training labels) and test split of `root`,
/// each optionally class-balanced down to a limit.
///
/// # Errors
/// As [`load`], and when either split has no labelled image.
pub fn load_labelled(
    kind: DatasetKind,
    root: &Path,
    train_limit: Option<usize>,
    test_limit: Option<usize>,
) -> Result<(LabeledImages, LabeledImages)> {
    let limited = |split: Split, limit: Option<usize>| -> Result<LabeledImages> {
        let set = load(kind, root, split)?.labeled_only();
        Ok(match limit {
            Some(l) => set.balanced_subset(l),
            None => set,
        })
    };
    let (train, test) = (
        limited(Split::Train, train_limit)?,
        limited(Split::Test, test_limit)?,
    );
    if train.len() == 0 || test.len() == 0 {
        bail!(
            "{} has no labelled train and test images; evaluation needs labels (an image folder \
             with train/<class>/ and test/<class>/ subfolders, or CIFAR/STL binaries)",
            root.display()
        );
    }
    Ok((train, test))
}
