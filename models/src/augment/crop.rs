//! Random resized crop (Appendix A): a box of U(0.08, 1) of the area with log-uniform
//! aspect ratio in [3/4, 4/3], resized bilinearly to the output side.

use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};

use super::FloatImage;
use crate::image::RgbImage;

/// Random resized crop parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CropConfig {
    /// Smallest fraction of the image area a crop may cover (paper: 0.08).
    pub min_area: f64,
    /// Largest fraction of the image area (paper: 1.0).
    pub max_area: f64,
    /// Smallest aspect ratio w/h (paper: 3/4).
    pub min_aspect: f64,
    /// Largest aspect ratio w/h (paper: 4/3).
    pub max_aspect: f64,
}

impl Default for CropConfig {
    fn default() -> Self {
        Self {
            min_area: 0.08,
            max_area: 1.0,
            min_aspect: 3.0 / 4.0,
            max_aspect: 4.0 / 3.0,
        }
    }
}

/// A crop rectangle in source pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropBox {
    /// Left column.
    pub x: usize,
    /// Top row.
    pub y: usize,
    /// Width in pixels (≥ 1).
    pub width: usize,
    /// Height in pixels (≥ 1).
    pub height: usize,
}

impl CropBox {
    /// The whole `width × height` image.
    pub fn full(width: usize, height: usize) -> Self {
        Self {
            x: 0,
            y: 0,
            width,
            height,
        }
    }
}

/// Samples a crop box the way torchvision's `RandomResizedCrop` does: up to ten draws of
/// (area, log-aspect); the first that fits wins; otherwise a centred crop with the aspect
/// ratio clamped into bounds.
pub fn sample_crop(cfg: &CropConfig, width: usize, height: usize, rng: &mut impl Rng) -> CropBox {
    let area = (width * height) as f64;
    let (log_lo, log_hi) = (cfg.min_aspect.ln(), cfg.max_aspect.ln());
    for _ in 0..10 {
        let target = area * rng.random_range(cfg.min_area..=cfg.max_area);
        let aspect = rng.random_range(log_lo..=log_hi).exp();
        let w = (target * aspect).sqrt().round() as usize;
        let h = (target / aspect).sqrt().round() as usize;
        if (1..=width).contains(&w) && (1..=height).contains(&h) {
            let x = rng.random_range(0..=width - w);
            let y = rng.random_range(0..=height - h);
            return CropBox {
                x,
                y,
                width: w,
                height: h,
            };
        }
    }
    // Fallback: the largest centred box whose aspect lies in bounds.
    let in_aspect = width as f64 / height as f64;
    let (w, h) = if in_aspect < cfg.min_aspect {
        (
            width,
            ((width as f64 / cfg.min_aspect).round() as usize).clamp(1, height),
        )
    } else if in_aspect > cfg.max_aspect {
        (
            ((height as f64 * cfg.max_aspect).round() as usize).clamp(1, width),
            height,
        )
    } else {
        (width, height)
    };
    CropBox {
        x: (width - w) / 2,
        y: (height - h) / 2,
        width: w,
        height: h,
    }
}

/// Cuts `crop` out of `image` and resizes it to `out × out` with bilinear interpolation
/// (half-pixel centres, edge clamping — `align_corners = False`), scaling to [0, 1].
///
/// # Panics
/// When `crop` does not lie inside the image.
pub fn resized_crop(image: &RgbImage, crop: CropBox, out: usize) -> FloatImage {
    assert!(
        crop.x + crop.width <= image.width() && crop.y + crop.height <= image.height(),
        "crop {crop:?} outside {}x{} image",
        image.width(),
        image.height()
    );
    let src = image.as_bytes();
    let stride = image.width() * 3;
    let (sx, sy) = (
        crop.width as f32 / out as f32,
        crop.height as f32 / out as f32,
    );
    // Precompute the two source columns and weights of each output column.
    let taps = |n_out: usize, scale: f32, len: usize, origin: usize| -> Vec<(usize, usize, f32)> {
        (0..n_out)
            .map(|o| {
                let c = ((o as f32 + 0.5) * scale - 0.5).clamp(0.0, (len - 1) as f32);
                let i0 = c.floor() as usize;
                let i1 = (i0 + 1).min(len - 1);
                (origin + i0, origin + i1, c - i0 as f32)
            })
            .collect()
    };
    let cols = taps(out, sx, crop.width, crop.x);
    let rows = taps(out, sy, crop.height, crop.y);
    let plane = out * out;
    let mut chw = vec![0.0f32; 3 * plane];
    for (oy, &(y0, y1, wy)) in rows.iter().enumerate() {
        for (ox, &(x0, x1, wx)) in cols.iter().enumerate() {
            for c in 0..3 {
                let p = |y: usize, x: usize| f32::from(src[y * stride + x * 3 + c]);
                let top = p(y0, x0) * (1.0 - wx) + p(y0, x1) * wx;
                let bottom = p(y1, x0) * (1.0 - wx) + p(y1, x1) * wx;
                chw[c * plane + oy * out + ox] = (top * (1.0 - wy) + bottom * wy) / 255.0;
            }
        }
    }
    FloatImage {
        width: out,
        height: out,
        chw,
    }
}
