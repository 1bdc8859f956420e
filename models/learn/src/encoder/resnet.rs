//! ResNet (He et al., 2016) with basic and bottleneck blocks; bottlenecks stride in the
//! 3×3 convolution (torchvision's "v1.5"). Convolutions have no bias (BatchNorm follows).

use std::ops::Range;

use burn::module::{Initializer, Module};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::{EncoderConfig, Stem};
use crate::folded::{FoldedBlock, FoldedConv, FoldedResNet};

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

    /// Partial fine-tuning: the stem and every block but the last `trainable_blocks` stop
    /// taking gradients and use their BatchNorm running statistics (burn's
    /// [`Module::freeze`]); with `freeze_bn_stats`, the trainable blocks also normalise with
    /// their running statistics (their γ and β still learn), which small on-device batches
    /// would otherwise make noisy. Call on the autodiff device the model trains on.
    pub fn freeze_early(self, trainable_blocks: usize, freeze_bn_stats: bool) -> Self {
        let first_trainable = self.blocks.len().saturating_sub(trainable_blocks);
        self.freeze_except(false, first_trainable..usize::MAX, freeze_bn_stats)
    }

    /// Partial fine-tuning from the input end (surgical fine-tuning for input-level shifts):
    /// the stem and the first `trainable_blocks` blocks train, every later block stops taking
    /// gradients; `freeze_bn_stats` as in [`Self::freeze_early`].
    pub fn freeze_late(self, trainable_blocks: usize, freeze_bn_stats: bool) -> Self {
        self.freeze_except(true, 0..trainable_blocks, freeze_bn_stats)
    }

    /// Freezes the stem unless `stem`, and every block whose index is outside `blocks`.
    fn freeze_except(mut self, stem: bool, blocks: Range<usize>, freeze_bn_stats: bool) -> Self {
        let freeze_stats = |bn: BatchNorm| bn.freeze().set_require_grad(true);
        if !stem {
            self.stem_conv = self.stem_conv.freeze();
            self.stem_bn = self.stem_bn.freeze();
        } else if freeze_bn_stats {
            self.stem_bn = freeze_stats(self.stem_bn);
        }
        self.blocks = std::mem::take(&mut self.blocks)
            .into_iter()
            .enumerate()
            .map(|(i, mut b)| {
                if !blocks.contains(&i) {
                    return b.freeze();
                }
                if freeze_bn_stats {
                    b.bn1 = freeze_stats(b.bn1);
                    b.bn2 = freeze_stats(b.bn2);
                    b.bn3 = b.bn3.map(freeze_stats);
                    if let Some(s) = b.shortcut.as_mut() {
                        s.bn = freeze_stats(s.bn.clone());
                    }
                }
                b
            })
            .collect();
        self
    }

    /// BatchNorm statistics that follow the data: every BatchNorm layer, frozen or not,
    /// normalises with the batch's statistics and moves its running statistics toward them
    /// (burn's momentum), while frozen weights, γ and β stay put — test-time adaptation's
    /// re-estimation of normalisation statistics on a shifted input distribution. Call after
    /// [`Self::freeze_early`] or [`Self::freeze_late`], on the autodiff device.
    pub fn adapt_bn_statistics(self) -> Self {
        self.map_bn(|mut bn| {
            bn.training = bn.training.with_value(true);
            bn
        })
    }

    /// Every BatchNorm layer with running-statistics momentum `momentum` (`running ←
    /// (1 − m)·running + m·batch`): `1/k` for the `k`-th of equal batches makes the running
    /// statistics their exact average (precise BatchNorm, Wu & Johnson 2021).
    pub fn with_bn_momentum(self, momentum: f64) -> Self {
        self.map_bn(|mut bn| {
            bn.momentum = momentum;
            bn
        })
    }

    /// Applies `f` to every BatchNorm layer.
    fn map_bn(mut self, f: impl Fn(BatchNorm) -> BatchNorm) -> Self {
        self.stem_bn = f(self.stem_bn);
        self.blocks = std::mem::take(&mut self.blocks)
            .into_iter()
            .map(|mut b| {
                b.bn1 = f(b.bn1);
                b.bn2 = f(b.bn2);
                b.bn3 = b.bn3.map(&f);
                if let Some(s) = b.shortcut.as_mut() {
                    s.bn = f(s.bn.clone());
                }
                b
            })
            .collect();
        self
    }
}

/// Folds an inference-mode BatchNorm into the bias-free convolution before it:
/// `w'[o] = w[o]·γ[o]/√(σ²[o]+ε)`, `b'[o] = β[o] − μ[o]·γ[o]/√(σ²[o]+ε)`.
fn fold(conv: &Conv2d, bn: &BatchNorm) -> FoldedConv {
    let vec = |t: Tensor<1>| {
        t.into_data()
            .try_to_vec::<f32>()
            .expect("BatchNorm state is f32")
    };
    let gamma = vec(bn.gamma.val());
    let beta = vec(bn.beta.val());
    let mean = vec(bn.running_mean.value());
    let var = vec(bn.running_var.value());
    let [cout, cin, kh, kw] = conv.weight.val().dims();
    let mut weight = conv
        .weight
        .val()
        .into_data()
        .try_to_vec::<f32>()
        .expect("conv weights are f32");
    let old_bias = conv.bias.as_ref().map(|b| vec(b.val()));
    let per_out = cin * kh * kw;
    let mut bias = vec![0.0; cout];
    for o in 0..cout {
        // f64 so folding adds no error of its own beyond the final rounding to f32.
        let scale = f64::from(gamma[o]) / (f64::from(var[o]) + bn.epsilon).sqrt();
        for w in &mut weight[o * per_out..(o + 1) * per_out] {
            *w = (f64::from(*w) * scale) as f32;
        }
        let b0 = old_bias.as_ref().map_or(0.0, |b| f64::from(b[o]));
        bias[o] = (f64::from(beta[o]) + (b0 - f64::from(mean[o])) * scale) as f32;
    }
    let padding = match conv.padding {
        PaddingConfig2d::Explicit(top, left, bottom, right) => [top, left, bottom, right],
        PaddingConfig2d::Valid => [0; 4],
        PaddingConfig2d::Same => [kh / 2, kw / 2, kh / 2, kw / 2],
    };
    FoldedConv {
        shape: [cout, cin, kh, kw],
        weight,
        bias,
        stride: conv.stride,
        padding,
    }
}

impl ResNet {
    /// The inference-mode network as plain data with every BatchNorm folded into its
    /// convolution: what the ONNX/NNEF exporters and the quantiser consume.
    pub fn fold(&self) -> FoldedResNet {
        FoldedResNet {
            stem: fold(&self.stem_conv, &self.stem_bn),
            stem_pool: self.stem_pool.is_some(),
            blocks: self
                .blocks
                .iter()
                .map(|b| {
                    let mut convs = vec![fold(&b.conv1, &b.bn1), fold(&b.conv2, &b.bn2)];
                    if let (Some(c3), Some(b3)) = (&b.conv3, &b.bn3) {
                        convs.push(fold(c3, b3));
                    }
                    FoldedBlock {
                        convs,
                        shortcut: b.shortcut.as_ref().map(|s| fold(&s.conv, &s.bn)),
                    }
                })
                .collect(),
        }
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
    fn folding_matches_hand_computed_values() {
        use burn::module::{Param, RunningState};
        use burn::tensor::TensorData;
        // y = γ (w·x − μ) / √(σ² + ε) + β with w = 2, μ = 1, σ² = 3, ε = 1e-5, γ = 0.5,
        // β = 0.25 folds to w' = 2·0.5/√(3 + 1e-5) = 0.5773493, b' = 0.25 − 0.5/√3.00001
        // = −0.0386747 (numpy: 2*0.5/np.sqrt(3+1e-5), 0.25-0.5/np.sqrt(3+1e-5)).
        let device = Device::flex();
        let one = |v: f32| Tensor::<1>::from_data(TensorData::new(vec![v], [1]), &device);
        let mut c = Conv2dConfig::new([1, 1], [1, 1])
            .with_bias(false)
            .init(&device);
        c.weight = Param::from_tensor(one(2.0).reshape([1, 1, 1, 1]));
        let mut b = BatchNormConfig::new(1).init(&device);
        b.gamma = Param::from_tensor(one(0.5));
        b.beta = Param::from_tensor(one(0.25));
        b.running_mean = RunningState::new(one(1.0));
        b.running_var = RunningState::new(one(3.0));
        let f = fold(&c, &b);
        assert!((f.weight[0] - 0.577_349_3).abs() < 1e-6, "{:?}", f.weight);
        assert!((f.bias[0] + 0.038_674_65).abs() < 1e-6, "{:?}", f.bias);
        assert_eq!((f.stride, f.padding), ([1, 1], [0; 4]));
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
