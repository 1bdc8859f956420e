//! Semi-supervised evaluation: the whole network (encoder + a new linear classifier) is
//! fine-tuned on a class-balanced fraction of the labels with crop + flip only (paper §B.5),
//! then scored on the test split.

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use edgeclr_artifact::RgbImage;
use edgeclr_learn::augment::{AugmentConfig, stack_chw};
use edgeclr_learn::encoder::ResNet;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::knn::Accuracy;
use super::linear::accuracy;

/// Fine-tuning settings.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct FinetuneConfig {
    /// Passes over the labelled subset.
    pub epochs: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Adam learning rate (cosine-decayed).
    pub lr: f64,
    /// Shuffle / augmentation seed.
    pub seed: u64,
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        Self {
            epochs: 30,
            batch_size: 64,
            lr: 1e-3,
            seed: 0,
        }
    }
}

/// Encoder plus linear classifier.
#[derive(Module, Debug)]
struct Classifier {
    encoder: ResNet,
    fc: Linear,
}

impl Classifier {
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.fc.forward(self.encoder.forward(x))
    }
}

/// The augmentation used for fine-tuning: the run's crop and size, flip, nothing else.
pub fn crop_flip_only(augment: &AugmentConfig) -> AugmentConfig {
    AugmentConfig {
        jitter_p: 0.0,
        grayscale_p: 0.0,
        blur_p: 0.0,
        ..augment.clone()
    }
}

/// Fine-tunes `encoder` (on the autodiff version of `device`) and returns test accuracy.
#[allow(clippy::too_many_arguments)]
pub fn finetune(
    encoder: ResNet,
    encoder_dim: usize,
    train: (&[RgbImage], &[u16]),
    test: (&[RgbImage], &[u16]),
    num_classes: usize,
    augment: &AugmentConfig,
    cfg: FinetuneConfig,
    device: &Device,
) -> Accuracy {
    let ad = device.clone().autodiff();
    let aug = crop_flip_only(augment);
    let side = aug.image_size;
    let mut model = Classifier {
        encoder: encoder.to_device(&ad),
        fc: LinearConfig::new(encoder_dim, num_classes).init(&ad),
    };
    let mut optim = AdamConfig::new().init();
    let ce = CrossEntropyLossConfig::new().init(&ad);
    let (images, labels) = train;
    let batch = cfg.batch_size.min(images.len()).max(2);
    let steps_per_epoch = images.len().div_ceil(batch);
    let total = (steps_per_epoch * cfg.epochs).max(1);
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut step = 0;
    for _ in 0..cfg.epochs {
        let mut order: Vec<usize> = (0..images.len()).collect();
        order.shuffle(&mut rng);
        for chunk in order.chunks(batch) {
            let seeds: Vec<u64> = chunk
                .iter()
                .map(|_| rand::RngExt::random(&mut rng))
                .collect();
            let views: Vec<Vec<f32>> = chunk
                .par_iter()
                .zip(seeds)
                .map(|(&i, s)| {
                    let mut v = aug.view(&images[i], &mut ChaCha8Rng::seed_from_u64(s));
                    aug.normalize.apply(&mut v.chw);
                    v.chw
                })
                .collect();
            let y: Vec<i64> = chunk.iter().map(|&i| i64::from(labels[i])).collect();
            let y = Tensor::<1, Int>::from_data(TensorData::new(y, [chunk.len()]), &ad);
            let loss = ce.forward(model.forward(stack_chw(&views, side, &ad)), y);
            let lr =
                cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / total as f64).cos());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads);
            step += 1;
        }
    }
    let model = model.valid();
    let (test_images, test_labels) = test;
    let mut logits = Vec::new();
    for part in test_images.chunks(256) {
        let views: Vec<Vec<f32>> = part.par_iter().map(|img| aug.eval_view(img)).collect();
        logits.push(model.forward(stack_chw(&views, side, device)));
    }
    accuracy(Tensor::cat(logits, 0), test_labels)
}
