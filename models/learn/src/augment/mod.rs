//! SimCLR's stochastic augmentation family (Appendix A of the paper): random resized crop
//! and flip, colour jitter of strength `s` (p = 0.8), random grayscale (p = 0.2), Gaussian
//! blur (p = 0.5), then normalisation. Every draw comes from an explicit, seeded RNG, so the
//! same seed gives the same views on any machine and any number of threads.

pub mod blur;
pub mod color_jitter;
pub mod crop;
pub mod flip;
pub mod grayscale;

use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub use color_jitter::JitterParams;
pub use crop::{CropBox, CropConfig};
pub use edgeclr_artifact::normalize::{self, Normalize};
pub use edgeclr_artifact::resize::FloatImage;

use crate::error::ModelError;
use edgeclr_artifact::RgbImage;

/// Configuration of the augmentation pipeline. Defaults are the paper's ImageNet recipe
/// (Appendix A); [`AugmentConfig::cifar`] is its CIFAR-10 variant (s = 0.5, no blur).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentConfig {
    /// Output side in pixels (views are square).
    pub image_size: usize,
    /// Random resized crop bounds; `None` keeps the whole image (resized).
    pub crop: Option<CropConfig>,
    /// Probability of a horizontal flip.
    pub flip_p: f64,
    /// Colour distortion strength `s`.
    pub color_strength: f32,
    /// Probability that colour jitter is applied at all.
    pub jitter_p: f64,
    /// Probability of converting to grayscale.
    pub grayscale_p: f64,
    /// Probability of a Gaussian blur (0 disables it).
    pub blur_p: f64,
    /// Range of the blur's σ in pixels.
    pub blur_sigma: (f32, f32),
    /// Final normalisation.
    pub normalize: Normalize,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            image_size: 224,
            crop: Some(CropConfig::default()),
            flip_p: 0.5,
            color_strength: 1.0,
            jitter_p: 0.8,
            grayscale_p: 0.2,
            blur_p: 0.5,
            blur_sigma: (0.1, 2.0),
            normalize: Normalize::IMAGENET,
        }
    }
}

impl AugmentConfig {
    /// The paper's CIFAR-10 variant: 32×32 crop + flip, s = 0.5, no blur, CIFAR statistics.
    pub fn cifar() -> Self {
        Self {
            image_size: 32,
            color_strength: 0.5,
            blur_p: 0.0,
            normalize: Normalize::CIFAR10,
            ..Self::default()
        }
    }

    /// Sets the output side.
    pub fn with_image_size(mut self, size: usize) -> Self {
        self.image_size = size;
        self
    }

    /// Sets the colour distortion strength.
    pub fn with_color_strength(mut self, s: f32) -> Self {
        self.color_strength = s;
        self
    }

    /// Sets the blur probability (0 disables blur).
    pub fn with_blur_p(mut self, p: f64) -> Self {
        self.blur_p = p;
        self
    }

    /// Checks every value; call before building views from user configuration.
    ///
    /// # Errors
    /// [`ModelError::InvalidConfig`] naming the first bad field.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad =
            |field, value: String, hint| Err(ModelError::InvalidConfig { field, value, hint });
        if self.image_size == 0 {
            return bad(
                "augment.image_size",
                "0".into(),
                "use a positive side such as 32 or 96",
            );
        }
        for (field, p) in [
            ("augment.flip_p", self.flip_p),
            ("augment.jitter_p", self.jitter_p),
            ("augment.grayscale_p", self.grayscale_p),
            ("augment.blur_p", self.blur_p),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return bad(field, p.to_string(), "a probability in [0, 1]");
            }
        }
        if !(self.color_strength >= 0.0 && self.color_strength.is_finite()) {
            return bad(
                "augment.color_strength",
                self.color_strength.to_string(),
                "a finite strength ≥ 0 (paper: 1.0 ImageNet, 0.5 CIFAR)",
            );
        }
        if let Some(c) = &self.crop
            && !(0.0 < c.min_area
                && c.min_area <= c.max_area
                && c.max_area <= 1.0
                && 0.0 < c.min_aspect
                && c.min_aspect <= c.max_aspect)
        {
            return bad(
                "augment.crop",
                format!("{c:?}"),
                "need 0 < min_area ≤ max_area ≤ 1 and 0 < min_aspect ≤ max_aspect",
            );
        }
        let (lo, hi) = self.blur_sigma;
        if !(0.0 < lo && lo <= hi) {
            return bad(
                "augment.blur_sigma",
                format!("({lo}, {hi})"),
                "need 0 < low ≤ high",
            );
        }
        Ok(())
    }

    /// Produces one augmented view of `image`, not yet normalised (values in [0, 1]).
    pub fn view(&self, image: &RgbImage, rng: &mut impl Rng) -> FloatImage {
        let crop = match &self.crop {
            Some(c) => crop::sample_crop(c, image.width(), image.height(), rng),
            None => CropBox::full(image.width(), image.height()),
        };
        let mut view = crop::resized_crop(image, crop, self.image_size);
        if rng.random_bool(self.flip_p) {
            flip::hflip(&mut view);
        }
        if rng.random_bool(self.jitter_p) {
            JitterParams::sample(self.color_strength, rng).apply(&mut view);
        }
        if rng.random_bool(self.grayscale_p) {
            grayscale::to_grayscale(&mut view);
        }
        if self.blur_p > 0.0 && rng.random_bool(self.blur_p) {
            let sigma = rng.random_range(self.blur_sigma.0..=self.blur_sigma.1);
            blur::gaussian_blur(&mut view, sigma, blur::kernel_size(self.image_size));
        }
        // Resampling, luma and blur weights sum to 1 only up to float rounding; keep [0, 1]
        // exact (proptest found a 1-ulp overshoot, see proptest-regressions/).
        view.chw.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
        view
    }

    /// The deterministic evaluation transform: resize the whole image to the output side and
    /// normalise (CHW floats).
    pub fn eval_view(&self, image: &RgbImage) -> Vec<f32> {
        let mut v = crop::resized_crop(
            image,
            CropBox::full(image.width(), image.height()),
            self.image_size,
        );
        self.normalize.apply(&mut v.chw);
        v.chw
    }
}

/// Two independently augmented, normalised views of one image (CHW floats each).
#[derive(Debug, Clone, PartialEq)]
pub struct ViewPair {
    /// First view, `x̃_{2k−1}`.
    pub first: Vec<f32>,
    /// Second view, `x̃_{2k}`.
    pub second: Vec<f32>,
}

impl ViewPair {
    /// Draws two views of `image` with `rng`.
    pub fn new(config: &AugmentConfig, image: &RgbImage, rng: &mut impl Rng) -> Self {
        let mut one = || {
            let mut v = config.view(image, rng);
            config.normalize.apply(&mut v.chw);
            v.chw
        };
        let first = one();
        let second = one();
        Self { first, second }
    }
}

/// Builds the `[2N, 3, P, P]` batch of views for N images on several threads.
///
/// Image `k` gets its own RNG seeded from `(seed, k)`, so the result does not depend on
/// the number of threads or their scheduling. Views are interleaved: rows `2k` and
/// `2k + 1` are the two views of image `k` — the positive pairs of NT-Xent.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    config: AugmentConfig,
}

impl BatchBuilder {
    /// A builder for `config`.
    pub fn new(config: AugmentConfig) -> Self {
        Self { config }
    }

    /// The augmentation config in use.
    pub fn config(&self) -> &AugmentConfig {
        &self.config
    }

    /// The per-image RNG for image `index` of the batch drawn with `seed`.
    pub fn image_rng(seed: u64, index: usize) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(index as u64);
        rng
    }

    /// Augments `images` into an interleaved `2N × 3 × P × P` host buffer.
    pub fn views(&self, images: &[&RgbImage], seed: u64) -> Vec<f32> {
        let pairs: Vec<ViewPair> = images
            .par_iter()
            .enumerate()
            .map(|(k, img)| ViewPair::new(&self.config, img, &mut Self::image_rng(seed, k)))
            .collect();
        let mut out =
            Vec::with_capacity(pairs.len() * 2 * pairs.first().map_or(0, |p| p.first.len()));
        for p in pairs {
            out.extend_from_slice(&p.first);
            out.extend_from_slice(&p.second);
        }
        out
    }

    /// Augments `images` into a `[2N, 3, P, P]` tensor on `device`.
    ///
    /// # Shapes
    /// - output: `[2 * images.len(), 3, image_size, image_size]`
    pub fn batch(&self, images: &[&RgbImage], seed: u64, device: &Device) -> Tensor<4> {
        let p = self.config.image_size;
        let data = TensorData::new(self.views(images, seed), [2 * images.len(), 3, p, p]);
        Tensor::from_data(data, device)
    }
}

/// Stacks CHW float buffers of side `size` into a `[N, 3, size, size]` tensor.
///
/// # Panics
/// When a buffer is not `3 * size * size` long.
pub fn stack_chw(views: &[Vec<f32>], size: usize, device: &Device) -> Tensor<4> {
    let mut flat = Vec::with_capacity(views.len() * 3 * size * size);
    for v in views {
        assert_eq!(
            v.len(),
            3 * size * size,
            "view has {} values, expected 3x{size}x{size}",
            v.len()
        );
        flat.extend_from_slice(v);
    }
    Tensor::from_data(TensorData::new(flat, [views.len(), 3, size, size]), device)
}

#[cfg(test)]
mod tests;
