//! Random resized crop (Appendix A): a box of U(0.08, 1) of the area with log-uniform
//! aspect ratio in [3/4, 4/3], resized bilinearly to the output side.

use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};

pub use edgeclr_artifact::resize::{CropBox, resized_crop};

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
