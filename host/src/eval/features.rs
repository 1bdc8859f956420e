//! Frozen features `h = f(x)` of a whole dataset, computed in inference mode (BatchNorm on
//! running statistics), L2-normalised.

use burn::tensor::{Device, Tensor};
use edgeclr_artifact::RgbImage;
use edgeclr_learn::augment::{AugmentConfig, stack_chw};
use edgeclr_learn::encoder::ResNet;
use rayon::prelude::*;

/// Row-major `[n, dim]` features.
#[derive(Debug, Clone)]
pub struct Features {
    /// Number of rows.
    pub n: usize,
    /// Feature dimension.
    pub dim: usize,
    /// `n * dim` values.
    pub values: Vec<f32>,
}

impl Features {
    /// Rows of equal length (embeddings from tract, say), each L2-normalised.
    pub fn normalised(rows: Vec<Vec<f32>>) -> Self {
        let dim = rows.first().map_or(0, Vec::len);
        let n = rows.len();
        let mut values = Vec::with_capacity(n * dim);
        for mut r in rows {
            let norm = r.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            r.iter_mut().for_each(|v| *v /= norm);
            values.extend(r);
        }
        Self { n, dim, values }
    }

    /// The features as a `[n, dim]` tensor.
    pub fn tensor(&self, device: &Device) -> Tensor<2> {
        Tensor::from_data(
            burn::tensor::TensorData::new(self.values.clone(), [self.n, self.dim]),
            device,
        )
    }
}

pub use edgeclr_learn::loss::l2_normalize;

/// Embeds `images` with `encoder` (an inference-mode module on `device`), in chunks.
pub fn extract(
    encoder: &ResNet,
    images: &[RgbImage],
    augment: &AugmentConfig,
    device: &Device,
    chunk: usize,
) -> Features {
    extract_with(&|x| encoder.forward(x), images, augment, device, chunk)
}

/// Like [`extract`] for any image → vector map (e.g. `z = g(f(x))` to score the projection).
pub fn extract_with(
    forward: &dyn Fn(Tensor<4>) -> Tensor<2>,
    images: &[RgbImage],
    augment: &AugmentConfig,
    device: &Device,
    chunk: usize,
) -> Features {
    let side = augment.image_size;
    let mut values = Vec::new();
    let mut dim = 0;
    for part in images.chunks(chunk.max(1)) {
        let views: Vec<Vec<f32>> = part.par_iter().map(|img| augment.eval_view(img)).collect();
        let h = l2_normalize(forward(stack_chw(&views, side, device)));
        dim = h.dims()[1];
        values.extend(h.into_data().try_to_vec::<f32>().expect("features are f32"));
    }
    Features {
        n: images.len(),
        dim,
        values,
    }
}
