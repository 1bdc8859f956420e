//! Image folders: JPEG/PNG files either flat (unlabelled) or one subfolder per class. If the
//! folder holds `train/` and `test/`, those are the splits; otherwise everything is `train`.
//! Unreadable images are skipped with a warning and counted, never a panic.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use edgeclr_artifact::RgbImage;
use image::imageops::FilterType;
use rayon::prelude::*;
use tracing::warn;

use super::{LabeledImages, Split, UNLABELED};

/// Longest shorter side kept in memory; larger images are downscaled on load (augmentation
/// crops and resizes to the training size anyway).
pub const MAX_SHORT_SIDE: u32 = 256;

/// Whether `p` names a PNG (else a JPEG) by extension.
pub fn is_png(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("png"))
}

fn is_image(p: &Path) -> bool {
    matches!(
        p.extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("jpg" | "jpeg" | "png")
    )
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("reading folder {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    v.sort();
    Ok(v)
}

/// Decodes one file to RGB, downscaling large images.
pub fn decode(path: &Path) -> Result<RgbImage> {
    let img = image::open(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    to_rgb(img)
}

/// A decoded image as RGB, its shorter side capped at [`MAX_SHORT_SIDE`].
pub fn to_rgb(img: image::DynamicImage) -> Result<RgbImage> {
    let (w, h) = (img.width(), img.height());
    let short = w.min(h);
    let img = if short > MAX_SHORT_SIDE {
        let s = f64::from(MAX_SHORT_SIDE) / f64::from(short);
        img.resize_exact(
            (f64::from(w) * s).round() as u32,
            (f64::from(h) * s).round() as u32,
            FilterType::Triangle,
        )
    } else {
        img
    };
    let rgb = img.to_rgb8();
    Ok(RgbImage::new(
        rgb.width() as usize,
        rgb.height() as usize,
        rgb.into_raw(),
    )?)
}

/// Image files with their labels, and the class names.
pub type Listing = (Vec<(PathBuf, u16)>, Vec<String>);

/// The image files of a split with their labels (class subfolders in name order; files at
/// the top are unlabelled), and the class names.
///
/// # Errors
/// A missing folder.
pub fn list(root: &Path, split: Split) -> Result<Listing> {
    let has_splits = root.join("train").is_dir();
    let dir = match (has_splits, split) {
        (true, Split::Train) => root.join("train"),
        (true, Split::Test) => root.join("test"),
        (false, Split::Train) => root.to_path_buf(),
        (false, Split::Test) => bail!(
            "{} has no test/ subfolder; evaluation needs train/ and test/ splits",
            root.display()
        ),
    };
    if !dir.is_dir() {
        bail!("image folder {} does not exist", dir.display());
    }
    let entries = sorted_entries(&dir)?;
    let class_dirs: Vec<&PathBuf> = entries.iter().filter(|p| p.is_dir()).collect();
    let mut files: Vec<(PathBuf, u16)> = entries
        .iter()
        .filter(|p| is_image(p))
        .map(|p| (p.clone(), UNLABELED))
        .collect();
    let mut classes = Vec::new();
    for (label, class_dir) in class_dirs.iter().enumerate() {
        classes.push(
            class_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        for p in sorted_entries(class_dir)?
            .into_iter()
            .filter(|p| is_image(p))
        {
            files.push((p, label as u16));
        }
    }
    Ok((files, classes))
}

/// Loads a split of an image folder.
///
/// # Errors
/// A missing folder or one without any readable image.
pub fn load(root: &Path, split: Split) -> Result<LabeledImages> {
    let (files, classes) = list(root, split)?;
    let decoded: Vec<(Result<RgbImage>, u16)> =
        files.par_iter().map(|(p, l)| (decode(p), *l)).collect();
    let mut out = LabeledImages {
        classes,
        ..LabeledImages::default()
    };
    let mut skipped = 0usize;
    for (img, label) in decoded {
        match img {
            Ok(img) => {
                out.images.push(img);
                out.labels.push(label);
            }
            Err(e) => {
                skipped += 1;
                warn!("skipping unreadable image: {e:#}");
            }
        }
    }
    if skipped > 0 {
        warn!(skipped, kept = out.images.len(), folder = %root.display(), "skipped unreadable images");
    }
    if out.images.is_empty() {
        bail!(
            "no readable .jpg/.jpeg/.png images in {} ({skipped} unreadable)",
            root.display()
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_folders_label_images_and_bad_files_are_skipped() {
        let tmp = tempfile::tempdir().expect("tempdir");
        for (class, colour) in [("cat", [200u8, 10, 10]), ("dog", [10, 200, 10])] {
            let d = tmp.path().join(class);
            std::fs::create_dir_all(&d).expect("mkdir");
            let img = image::RgbImage::from_pixel(40, 30, image::Rgb(colour));
            img.save(d.join("a.png")).expect("png");
        }
        std::fs::write(tmp.path().join("dog/broken.jpg"), b"not a jpeg").expect("write");
        let set = load(tmp.path(), Split::Train).expect("load");
        assert_eq!(set.classes, vec!["cat", "dog"]);
        assert_eq!(set.labels, vec![0, 1]);
        assert_eq!(set.images[1].pixel(5, 5), [10, 200, 10]);
        assert_eq!((set.images[0].width(), set.images[0].height()), (40, 30));
    }

    #[test]
    fn large_images_are_downscaled_on_load() {
        let tmp = tempfile::tempdir().expect("tempdir");
        image::RgbImage::from_pixel(1024, 512, image::Rgb([1, 2, 3]))
            .save(tmp.path().join("big.png"))
            .expect("png");
        let set = load(tmp.path(), Split::Train).expect("load");
        assert_eq!((set.images[0].width(), set.images[0].height()), (512, 256));
        assert_eq!(set.labels, vec![UNLABELED]);
    }
}
