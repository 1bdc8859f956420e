//! The input contract as code, shared by the board and the host: what a camera frame or a
//! dataset image becomes before it reaches the model.

use crate::image::RgbImage;
use crate::manifest::Manifest;
use crate::normalize::Normalize;
use crate::resize::{CropBox, resized_crop};

/// The input contract as code: centre-crop to a square, resize to the model's side
/// (bilinear), scale to [0, 1], normalise per channel. The board and `edgeclr embed` both use
/// it, so the same frame gives the same embedding on both. For square images it equals the
/// evaluation transform used in training (`edgeclr_learn::augment::AugmentConfig::eval_view`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Preprocess {
    /// Output side in pixels.
    pub size: usize,
    /// Per-channel normalisation.
    pub normalize: Normalize,
}

impl Preprocess {
    /// The contract recorded in an export's manifest.
    pub fn from_manifest(manifest: &Manifest) -> Self {
        Self {
            size: manifest.input.size,
            normalize: manifest.input.normalize,
        }
    }

    /// Normalised CHW floats of `image`.
    ///
    /// # Shapes
    /// any `W×H` RGB → `3 · size²` values.
    pub fn apply(&self, image: &RgbImage) -> Vec<f32> {
        let (w, h) = (image.width(), image.height());
        let side = w.min(h);
        let square = CropBox {
            x: (w - side) / 2,
            y: (h - side) / 2,
            width: side,
            height: side,
        };
        let mut view = resized_crop(image, square, self.size);
        self.normalize.apply(&mut view.chw);
        view.chw
    }
}
