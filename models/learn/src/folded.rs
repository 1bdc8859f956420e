//! The encoder after BatchNorm folding: plain convolutions with biases, residual blocks and
//! the pooling in between, with no learning framework types. [`ResNet::fold`] produces it;
//! export lowers it to ONNX/NNEF and quantises it. Living apart from both keeps the encoder
//! from depending on the exporter.
//!
//! [`ResNet::fold`]: crate::encoder::ResNet::fold

/// A convolution with its BatchNorm folded in: `y = conv(x, weight) + bias`.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldedConv {
    /// `[out_channels, in_channels, kernel_h, kernel_w]`.
    pub shape: [usize; 4],
    /// Row-major weights, `shape.iter().product()` values.
    pub weight: Vec<f32>,
    /// One bias per output channel.
    pub bias: Vec<f32>,
    /// `[stride_h, stride_w]`.
    pub stride: [usize; 2],
    /// `[top, left, bottom, right]` zero padding (ONNX `pads` order).
    pub padding: [usize; 4],
}

impl FoldedConv {
    /// Weights of output channel `o`.
    pub fn channel(&self, o: usize) -> &[f32] {
        let per = self.shape[1] * self.shape[2] * self.shape[3];
        &self.weight[o * per..(o + 1) * per]
    }
}

/// A residual block after folding: 2 (basic) or 3 (bottleneck) convolutions, ReLU after all
/// but the last, then `relu(main + shortcut)`.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldedBlock {
    /// The main path in order.
    pub convs: Vec<FoldedConv>,
    /// The 1×1 projection when the block changes shape; identity otherwise.
    pub shortcut: Option<FoldedConv>,
}

/// A whole ResNet encoder after folding: stem conv + ReLU (+ 3×3/2 max-pool), residual
/// blocks, global average pool.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldedResNet {
    /// The stem convolution (followed by ReLU).
    pub stem: FoldedConv,
    /// Whether a 3×3 stride-2 max-pool (padding 1) follows the stem (ImageNet stem).
    pub stem_pool: bool,
    /// Residual blocks in order.
    pub blocks: Vec<FoldedBlock>,
}

impl FoldedResNet {
    /// Dimension of the representation (output channels of the last block).
    pub fn output_dim(&self) -> usize {
        let last = self.blocks.last().map_or(&self.stem, |b| {
            b.convs.last().expect("a block has convolutions")
        });
        last.shape[0]
    }

    /// Every tensor the int8 forms quantise (the calibration points), in graph order:
    /// `input`, `stem`, `stem.pool` (ImageNet stem), then per block `blockI.convJ`,
    /// `blockI.shortcut` (when projected) and `blockI.out`.
    pub fn points(&self) -> Vec<String> {
        let mut out = vec!["input".to_string(), "stem".to_string()];
        if self.stem_pool {
            out.push("stem.pool".into());
        }
        for (i, b) in self.blocks.iter().enumerate() {
            out.extend((0..b.convs.len()).map(|j| format!("block{i}.conv{j}")));
            if b.shortcut.is_some() {
                out.push(format!("block{i}.shortcut"));
            }
            out.push(format!("block{i}.out"));
        }
        out
    }

    /// Every convolution, in graph order, with its calibration-point name.
    pub fn convs(&self) -> Vec<(String, &FoldedConv)> {
        let mut out = vec![("stem".to_string(), &self.stem)];
        for (i, b) in self.blocks.iter().enumerate() {
            for (j, c) in b.convs.iter().enumerate() {
                out.push((format!("block{i}.conv{j}"), c));
            }
            if let Some(s) = &b.shortcut {
                out.push((format!("block{i}.shortcut"), s));
            }
        }
        out
    }
}
