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

pub use crate::folded::{FoldedBlock, FoldedConv, FoldedResNet};
pub use edgeclr_artifact::manifest::{self, Artifact, ArtifactKind, Manifest};
pub use error::ExportError;
pub use quantize::{Calibration, CalibrationMethod, QuantConfig, WeightGranularity};
pub use recipe::{encoder_of, recipe_of};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tract_conv_check;

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
