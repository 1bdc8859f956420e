//! The assembled model `x ↦ (h, z)` and one SimCLR optimisation step:
//! image → views → encoder → head → contrastive loss → optimizer.

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};

use crate::config::SimclrConfig;
use crate::encoder::ResNet;
use crate::head::ProjectionHead;
use crate::loss::ContrastiveLoss;

/// Encoder `f` and projection head `g`.
#[derive(Module, Debug)]
pub struct Simclr {
    /// The encoder; `h = encoder(x)` is the representation kept after training.
    pub encoder: ResNet,
    /// The projection head; discarded after training.
    pub head: ProjectionHead,
}

impl SimclrConfig {
    /// Builds encoder and head on `device`.
    pub fn init_model(&self, device: &Device) -> Simclr {
        let encoder = self.encoder.init(device);
        let head = self.head.init(self.encoder.output_dim(), device);
        Simclr { encoder, head }
    }
}

impl Simclr {
    /// Representation and projection.
    ///
    /// # Shapes
    /// `x: [B, 3, P, P] → (h: [B, encoder dim], z: [B, head dim])`
    pub fn forward(&self, x: Tensor<4>) -> (Tensor<2>, Tensor<2>) {
        let h = self.encoder.forward(x);
        let z = self.head.forward(h.clone());
        (h, z)
    }
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepOutcome {
    /// The loss on the batch before the update.
    pub loss: f32,
    /// The learning rate used.
    pub lr: f64,
}

/// Owns a model on an autodiff device with its optimizer and loss, and runs steps.
pub struct SimclrTrainer {
    model: Option<Simclr>,
    optim: ModuleOptimizer,
    loss: ContrastiveLoss,
}

impl SimclrTrainer {
    /// A trainer for `model` (which must live on an autodiff device).
    pub fn new(model: Simclr, config: &SimclrConfig) -> Self {
        Self {
            model: Some(model),
            optim: config.optim.init(),
            loss: config.loss.init(),
        }
    }

    /// Replaces the optimizer (e.g. restored from a checkpoint).
    pub fn with_optimizer(mut self, optim: ModuleOptimizer) -> Self {
        self.optim = optim;
        self
    }

    /// The model.
    pub fn model(&self) -> &Simclr {
        self.model
            .as_ref()
            .expect("model is only taken inside step")
    }

    /// The optimizer (for checkpointing).
    pub fn optimizer(&self) -> &ModuleOptimizer {
        &self.optim
    }

    /// Consumes the trainer, returning the model.
    pub fn into_model(self) -> Simclr {
        self.model.expect("model is only taken inside step")
    }

    /// Loss of the current model on `views` without updating anything.
    ///
    /// # Shapes
    /// `views: [2N, 3, P, P]`, interleaved pairs.
    pub fn loss(&self, views: Tensor<4>) -> f32 {
        let (_, z) = self.model().forward(views);
        self.loss.forward(z).into_scalar()
    }

    /// One optimisation step on the interleaved views at learning rate `lr`. On a non-finite
    /// loss the optimizer is not stepped (no parameter changes), but the forward pass has
    /// already folded the batch into BatchNorm running statistics: roll back to a checkpoint.
    ///
    /// # Shapes
    /// `views: [2N, 3, P, P]`, rows `2k` and `2k + 1` the two views of image `k`.
    pub fn step(&mut self, views: Tensor<4>, lr: f64) -> StepOutcome {
        let model = self.model.take().expect("model is only taken inside step");
        let (_, z) = model.forward(views);
        let loss_t = self.loss.forward(z);
        let loss: f32 = loss_t.clone().into_scalar();
        if !loss.is_finite() {
            self.model = Some(model);
            return StepOutcome { loss, lr };
        }
        let grads = GradientsParams::from_grads(loss_t.backward(), &model);
        self.model = Some(self.optim.step(lr, model, grads));
        StepOutcome { loss, lr }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::augment::{AugmentConfig, BatchBuilder};
    use crate::encoder::{Architecture, EncoderConfig};
    use crate::image::RgbImage;
    use crate::optim::OptimizerConfig;
    use crate::test_device;

    #[test]
    fn a_train_step_lowers_the_loss_on_that_batch() {
        let device = test_device();
        let config = SimclrConfig {
            augment: AugmentConfig::cifar().with_image_size(16),
            encoder: EncoderConfig::new(Architecture::Resnet8),
            optim: OptimizerConfig::Adam { weight_decay: 0.0 },
            ..SimclrConfig::default()
        };
        let images: Vec<RgbImage> = (0..4u8)
            .map(|k| {
                RgbImage::new(
                    16,
                    16,
                    (0..768)
                        .map(|i| ((i * (k as usize + 3)) % 251) as u8)
                        .collect(),
                )
                .expect("16x16")
            })
            .collect();
        let refs: Vec<&RgbImage> = images.iter().collect();
        let views = BatchBuilder::new(config.augment.clone()).batch(&refs, 1, &device);
        let mut trainer = SimclrTrainer::new(config.init_model(&device), &config);
        let first = trainer.step(views.clone(), 1e-3).loss;
        for _ in 0..2 {
            trainer.step(views.clone(), 1e-3);
        }
        let after = trainer.loss(views);
        assert!(after < first, "loss did not drop: {first} -> {after}");
    }

    #[test]
    fn a_non_finite_loss_leaves_the_model_untouched() {
        use burn::tensor::TensorData;
        let device = test_device();
        let config = SimclrConfig {
            encoder: EncoderConfig::new(Architecture::Resnet8),
            ..SimclrConfig::default()
        };
        let mut trainer = SimclrTrainer::new(config.init_model(&device), &config);
        // Trainable parameters only: the forward pass itself folds the batch into BatchNorm
        // running statistics, which is why the host rolls back to a checkpoint on divergence.
        struct Collect(Vec<f32>);
        impl burn::module::ModuleVisitor for Collect {
            fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<D>>) {
                let v = p.val();
                if v.is_require_grad() {
                    self.0
                        .extend(v.into_data().try_to_vec::<f32>().expect("f32"));
                }
            }
        }
        let weights = |t: &SimclrTrainer| {
            let mut c = Collect(Vec::new());
            t.model().visit(&mut c);
            c.0
        };
        let before = weights(&trainer);
        let nan = Tensor::<4>::from_data(
            TensorData::new(vec![f32::NAN; 4 * 3 * 8 * 8], [4, 3, 8, 8]),
            &device,
        );
        let out = trainer.step(nan, 0.1);
        assert!(out.loss.is_nan());
        assert!(before == weights(&trainer), "weights changed on a NaN step");
    }
}
