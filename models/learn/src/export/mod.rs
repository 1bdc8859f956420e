//! From a trained encoder to the files the board runs: BatchNorm-folded ONNX graphs written
//! with tract-onnx's protobuf types ([`onnx`]), post-training int8 quantisation calibrated on
//! real images ([`quantize`]), tract's NNEF form ([`nnef`]) and the `manifest.json` that ties
//! the files to their encoder, input contract and measured drift ([`manifest`]).
//!
//! Only the representation `h = f(x)` is exported; the projection head is thrown away after
//! pretraining (Chen et al., 2020, §2.1).

pub mod nnef;
pub mod onnx;
pub mod quantize;
pub mod recipe;

mod error;

pub use edgeclr_artifact::manifest::{self, Artifact, ArtifactKind, Manifest};
pub use error::ExportError;
pub use quantize::{Calibration, CalibrationMethod, QuantConfig, WeightGranularity};
pub use recipe::{encoder_of, recipe_of};

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

#[cfg(test)]
mod tests;

/// Writes the files of `kinds` for `net` at `size`×`size` into `out`, each atomically, and
/// returns them with their checksums; int8 kinds are calibrated on `calib` (normalised CHW
/// views of real images) with `quant`, recorded with `calib_source` in the returned
/// [`QuantInfo`](manifest::QuantInfo). The one writer behind `edgeclr export` and the
/// board's fine-tuning slots.
///
/// # Errors
/// [`ExportError::Calibration`] when an int8 kind is asked for without calibration images;
/// tract or I/O failures, naming the file.
pub fn write_artifacts(
    net: &FoldedResNet,
    size: usize,
    kinds: &[ArtifactKind],
    calib: &[Vec<f32>],
    quant: QuantConfig,
    calib_source: &str,
    out: &std::path::Path,
) -> Result<(Vec<Artifact>, Option<manifest::QuantInfo>), ExportError> {
    let calibration = if kinds.iter().any(|k| k.is_int8()) {
        Some(quantize::calibrate(net, size, calib, quant.method)?)
    } else {
        None
    };
    let mut artifacts = Vec::with_capacity(kinds.len());
    for &kind in kinds {
        let bytes = match kind {
            ArtifactKind::OnnxFp32 => onnx::fp32(net, onnx::Batch::One, size),
            ArtifactKind::OnnxFp32Batched => onnx::fp32(net, onnx::Batch::Symbolic, size),
            ArtifactKind::NnefFp32 => {
                nnef::from_onnx(&onnx::fp32(net, onnx::Batch::Symbolic, size))?
            }
            ArtifactKind::BurnEncoder | ArtifactKind::BurnHead => {
                return Err(ExportError::Calibration(format!(
                    "{} is copied from the run, not generated from the folded network",
                    kind.file_name()
                )));
            }
            ArtifactKind::OnnxInt8Qlinear | ArtifactKind::OnnxInt8Qdq => {
                let c = calibration
                    .as_ref()
                    .expect("calibrated above for int8 kinds");
                if kind == ArtifactKind::OnnxInt8Qlinear {
                    quantize::qlinear(net, c, quant.weights, onnx::Batch::One, size)?
                } else {
                    quantize::qdq(net, c, quant.weights, onnx::Batch::Symbolic, size)?
                }
            }
        };
        artifacts.push(Artifact::write(out, kind, &bytes)?);
    }
    let info = calibration.map(|c| manifest::QuantInfo {
        config: quant,
        activations: "u8 asymmetric per tensor; ReLU outputs zero point 0".into(),
        calibration_images: c.images,
        calibration_data: calib_source.into(),
        ranges: c.ranges,
    });
    Ok((artifacts, info))
}
