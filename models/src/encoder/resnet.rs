//! ResNet (He et al., 2016) with basic and bottleneck blocks; bottlenecks stride in the
//! 3×3 convolution (torchvision's "v1.5"). Convolutions have no bias (BatchNorm follows).

use burn::module::{Initializer, Module};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::{EncoderConfig, Stem};

/// Kaiming-normal, fan-out, ReLU gain: torchvision's ResNet convolution init.
fn conv(cin: usize, cout: usize, k: usize, stride: usize, device: &Device) -> Conv2d {
    let p = k / 2;
    Conv2dConfig::new([cin, cout], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .with_bias(false)
        .with_initializer(Initializer::KaimingNormal {
            gain: std::f64::consts::SQRT_2,
            fan_out_only: true,
        })
        .init(device)
}

fn bn(c: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(c).init(device)
}

/// The 1×1 projection shortcut used when a block changes shape.
#[derive(Module, Debug)]
pub struct Shortcut {
    conv: Conv2d,
    bn: BatchNorm,
}

/// A residual block: basic (3×3, 3×3) or bottleneck (1×1, 3×3, 1×1 ×4).
#[derive(Module, Debug)]
pub struct ResidualBlock {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    conv3: Option<Conv2d>,
    bn3: Option<BatchNorm>,
    shortcut: Option<Shortcut>,
}

impl ResidualBlock {
    /// A basic block `cin → cout` with `stride` on the first convolution.
    pub fn basic(cin: usize, cout: usize, stride: usize, device: &Device) -> Self {
        Self {
            conv1: conv(cin, cout, 3, stride, device),
            bn1: bn(cout, device),
            conv2: conv(cout, cout, 3, 1, device),
            bn2: bn(cout, device),
            conv3: None,
            bn3: None,
            shortcut: (stride != 1 || cin != cout).then(|| Shortcut {
                conv: conv(cin, cout, 1, stride, device),
                bn: bn(cout, device),
            }),
        }
    }

    /// A bottleneck block `cin → 4·width` with `stride` on the 3×3 convolution.
    pub fn bottleneck(cin: usize, width: usize, stride: usize, device: &Device) -> Self {
        let cout = width * 4;
        Self {
            conv1: conv(cin, width, 1, 1, device),
            bn1: bn(width, device),
            conv2: conv(width, width, 3, stride, device),
            bn2: bn(width, device),
            conv3: Some(conv(width, cout, 1, 1, device)),
            bn3: Some(bn(cout, device)),
            shortcut: (stride != 1 || cin != cout).then(|| Shortcut {
                conv: conv(cin, cout, 1, stride, device),
                bn: bn(cout, device),
            }),
        }
    }

    /// # Shapes
    /// `[B, cin, H, W] → [B, cout, H/stride, W/stride]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = match &self.shortcut {
            Some(s) => s.bn.forward(s.conv.forward(x.clone())),
            None => x.clone(),
        };
        let mut y = relu(self.bn1.forward(self.conv1.forward(x)));
        y = self.bn2.forward(self.conv2.forward(y));
        if let (Some(c3), Some(b3)) = (&self.conv3, &self.bn3) {
            y = b3.forward(c3.forward(relu(y)));
        }
        relu(y + identity)
    }
}

/// A ResNet encoder without its classifier: `x ↦ h`, the pooled features.
#[derive(Module, Debug)]
pub struct ResNet {
    stem_conv: Conv2d,
    stem_bn: BatchNorm,
    stem_pool: Option<MaxPool2d>,
    blocks: Vec<ResidualBlock>,
    pool: AdaptiveAvgPool2d,
}

impl EncoderConfig {
    /// Builds the encoder on `device`.
    pub fn init(&self, device: &Device) -> ResNet {
        let stem_out = self.stem_channels();
        let (stem_conv, stem_pool) = match self.stem {
            Stem::Cifar => (conv(3, stem_out, 3, 1, device), None),
            Stem::Imagenet => (
                conv(3, stem_out, 7, 2, device),
                Some(
                    MaxPool2dConfig::new([3, 3])
                        .with_strides([2, 2])
                        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                        .init(),
                ),
            ),
        };
        let arch = self.architecture;
        let mut blocks = Vec::new();
        let mut cin = stem_out;
        for (stage, (&n, &w)) in arch.blocks().iter().zip(arch.widths()).enumerate() {
            let width = w * self.width;
            for i in 0..n {
                let stride = if i == 0 && stage > 0 { 2 } else { 1 };
                let block = if arch.bottleneck() {
                    ResidualBlock::bottleneck(cin, width, stride, device)
                } else {
                    ResidualBlock::basic(cin, width, stride, device)
                };
                cin = if arch.bottleneck() { width * 4 } else { width };
                blocks.push(block);
            }
        }
        ResNet {
            stem_conv,
            stem_bn: bn(stem_out, device),
            stem_pool,
            blocks,
            pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
        }
    }
}

impl ResNet {
    /// The representation `h`.
    ///
    /// # Shapes
    /// `[B, 3, H, W] → [B, output_dim]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let mut y = relu(self.stem_bn.forward(self.stem_conv.forward(x)));
        if let Some(p) = &self.stem_pool {
            y = p.forward(y);
        }
        for b in &self.blocks {
            y = b.forward(y);
        }
        self.pool.forward(y).flatten(1, 3)
    }

    /// Number of residual blocks (for freezing early stages on the board).
    pub fn num_blocks(&self) -> usize {
        self.blocks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Architecture, trainable_params};
    use super::*;
    use crate::test_device;

    #[test]
    fn parameter_counts_match_torchvision() {
        let device = Device::flex().autodiff();
        // torchvision resnet18: 11,689,512 params − fc (512·1000 + 1000) = 11,176,512.
        let r18 = EncoderConfig::new(Architecture::Resnet18)
            .with_stem(Stem::Imagenet)
            .init(&device);
        assert_eq!(trainable_params(&r18), 11_176_512);
        // torchvision resnet50: 25,557,032 − fc (2048·1000 + 1000) = 23,508,032.
        let r50 = EncoderConfig::new(Architecture::Resnet50)
            .with_stem(Stem::Imagenet)
            .init(&device);
        assert_eq!(trainable_params(&r50), 23_508_032);
        // CIFAR stem swaps the 7×7×3×64 kernel (9,408) for 3×3×3×64 (1,728).
        let r18c = EncoderConfig::new(Architecture::Resnet18).init(&device);
        assert_eq!(trainable_params(&r18c), 11_176_512 - 9_408 + 1_728);
        // burn's num_params also counts BN running mean/var: 2 × 4,800 BN channels in ResNet-18.
        assert_eq!(r18.num_params(), 11_176_512 + 9_600);
    }

    #[test]
    fn output_shapes_for_each_variant_and_stem() {
        let device = test_device();
        for (arch, stem, side, dim) in [
            (Architecture::Resnet8, Stem::Cifar, 32, 128),
            (Architecture::Resnet8, Stem::Imagenet, 64, 128),
            (Architecture::Resnet18, Stem::Cifar, 16, 512),
            (Architecture::Resnet34, Stem::Imagenet, 64, 512),
            (Architecture::Resnet50, Stem::Cifar, 8, 2048),
        ] {
            let cfg = EncoderConfig::new(arch).with_stem(stem);
            assert_eq!(cfg.output_dim(), dim);
            let enc = cfg.init(&device);
            let h = enc.forward(Tensor::zeros([2, 3, side, side], &device));
            assert_eq!(h.dims(), [2, dim], "{arch:?} {stem:?}");
        }
        let wide = EncoderConfig::new(Architecture::Resnet8).with_width(2);
        assert_eq!(
            wide.init(&device)
                .forward(Tensor::zeros([1, 3, 8, 8], &device))
                .dims(),
            [1, 256]
        );
    }
}
