//! Encoders `f(·)`: ResNets whose global-average-pooled features are the representation
//! `h` that survives training (the projection head is thrown away).

#[cfg(test)]
mod batch_norm_check;
#[cfg(test)]
mod conv_check;
#[cfg(test)]
mod relu_check;
pub mod resnet;

use serde::{Deserialize, Serialize};

pub use resnet::{ResNet, ResidualBlock};

use crate::error::ModelError;

/// Which ResNet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// The small edge encoder: stem + three stages of one basic block, widths 32/64/128 (×1).
    Resnet8,
    /// ResNet-18: basic blocks [2, 2, 2, 2], widths 64–512.
    Resnet18,
    /// ResNet-34: basic blocks [3, 4, 6, 3], widths 64–512.
    Resnet34,
    /// ResNet-50: bottleneck blocks [3, 4, 6, 3], widths 64–512, expansion 4.
    Resnet50,
}

impl Architecture {
    /// Blocks per stage.
    pub fn blocks(self) -> &'static [usize] {
        match self {
            Self::Resnet8 => &[1, 1, 1],
            Self::Resnet18 => &[2, 2, 2, 2],
            Self::Resnet34 | Self::Resnet50 => &[3, 4, 6, 3],
        }
    }

    /// Base width of each stage at width multiplier 1 (before bottleneck expansion).
    pub fn widths(self) -> &'static [usize] {
        match self {
            Self::Resnet8 => &[32, 64, 128],
            _ => &[64, 128, 256, 512],
        }
    }

    /// Whether the stages use bottleneck blocks (1×1, 3×3, 1×1 with expansion 4).
    pub fn bottleneck(self) -> bool {
        matches!(self, Self::Resnet50)
    }
}

impl std::str::FromStr for Architecture {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "resnet8" => Ok(Self::Resnet8),
            "resnet18" => Ok(Self::Resnet18),
            "resnet34" => Ok(Self::Resnet34),
            "resnet50" => Ok(Self::Resnet50),
            other => Err(format!(
                "unknown encoder `{other}`; use resnet8, resnet18, resnet34 or resnet50"
            )),
        }
    }
}

/// The first layers, chosen by input resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stem {
    /// 3×3 stride-1 convolution, no max-pool: for 32×32 inputs (paper Appendix B.9).
    Cifar,
    /// 7×7 stride-2 convolution + 3×3 stride-2 max-pool: for ≥ 96 px inputs.
    Imagenet,
}

/// Encoder configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EncoderConfig {
    /// The ResNet variant.
    pub architecture: Architecture,
    /// Width multiplier (1, 2, 4 in the paper).
    pub width: usize,
    /// Stem variant.
    pub stem: Stem,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        Self {
            architecture: Architecture::Resnet18,
            width: 1,
            stem: Stem::Cifar,
        }
    }
}

impl EncoderConfig {
    /// A config for `architecture` with the CIFAR stem at width 1.
    pub fn new(architecture: Architecture) -> Self {
        Self {
            architecture,
            ..Self::default()
        }
    }

    /// Sets the stem.
    pub fn with_stem(mut self, stem: Stem) -> Self {
        self.stem = stem;
        self
    }

    /// Sets the width multiplier.
    pub fn with_width(mut self, width: usize) -> Self {
        self.width = width;
        self
    }

    /// Channels of the stem output.
    pub fn stem_channels(&self) -> usize {
        self.architecture.widths()[0] * self.width
    }

    /// Dimension of the representation `h`.
    pub fn output_dim(&self) -> usize {
        let last = *self
            .architecture
            .widths()
            .last()
            .expect("every architecture has stages");
        last * self.width * if self.architecture.bottleneck() { 4 } else { 1 }
    }

    /// Checks the values.
    ///
    /// # Errors
    /// [`ModelError::InvalidConfig`] for a zero width multiplier.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.width == 0 {
            return Err(ModelError::InvalidConfig {
                field: "encoder.width",
                value: "0".into(),
                hint: "use a width multiplier ≥ 1",
            });
        }
        Ok(())
    }
}

/// Counts trainable parameters — the figure papers and torchvision report — leaving out
/// buffers such as BatchNorm running statistics, which burn's `num_params` includes.
/// `module` must live on an autodiff device (that is where parameters require grad).
pub fn trainable_params<M: burn::module::Module>(module: &M) -> usize {
    struct Count(usize);
    impl burn::module::ModuleVisitor for Count {
        fn visit_float<const D: usize>(
            &mut self,
            param: &burn::module::Param<burn::tensor::Tensor<D>>,
        ) {
            let value = param.val();
            if value.is_require_grad() {
                self.0 += value.shape().num_elements();
            }
        }
    }
    let mut count = Count(0);
    module.visit(&mut count);
    count.0
}
