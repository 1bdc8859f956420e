//! The whole SimCLR recipe in one serde struct: one TOML table per concern.

use serde::{Deserialize, Serialize};

use crate::augment::AugmentConfig;
use crate::encoder::EncoderConfig;
use crate::error::ModelError;
use crate::head::HeadConfig;
use crate::loss::LossConfig;
use crate::optim::OptimizerConfig;

/// Encoder, head, loss, augmentations and optimizer of a SimCLR run.
///
/// Defaults are the paper's CIFAR-10 recipe on a ResNet-18 (CIFAR stem, 2-layer MLP head
/// to 128-d, NT-Xent τ = 0.5, s = 0.5 without blur, LARS).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimclrConfig {
    /// Augmentations.
    pub augment: AugmentConfig,
    /// Encoder `f`.
    pub encoder: EncoderConfig,
    /// Projection head `g`.
    pub head: HeadConfig,
    /// Contrastive loss.
    pub loss: LossConfig,
    /// Optimizer.
    pub optim: OptimizerConfig,
}

impl Default for SimclrConfig {
    fn default() -> Self {
        Self {
            augment: AugmentConfig::cifar(),
            encoder: EncoderConfig::default(),
            head: HeadConfig::default(),
            loss: LossConfig::default(),
            optim: OptimizerConfig::default(),
        }
    }
}

impl SimclrConfig {
    /// Checks every part.
    ///
    /// # Errors
    /// The first [`ModelError::InvalidConfig`] found.
    pub fn validate(&self) -> Result<(), ModelError> {
        self.augment.validate()?;
        self.encoder.validate()?;
        self.head.validate()?;
        self.loss.validate()
    }
}
