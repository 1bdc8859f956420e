//! Whether the board computes what was shipped. Every engine × precision's embeddings of the
//! board's own frames are compared with tract's fp32 embeddings of the same frames: another
//! fp32 engine must agree to rounding (cosine ≥ [`FP32_MIN_COSINE`] on every frame, the
//! export's own fp32 contract), an int8 file to the int8-vs-fp32 agreement `edgeclr export`
//! measured on the host and wrote to the manifest. `selftest` prefers only what passes
//! (issue 17: the fastest backend × precision that passes the parity check).

use anyhow::{Result, bail};
use edgeclr_artifact::manifest::{Agreement, Manifest};

use crate::config::ArtifactChoice;
use crate::config::choice::EmbedChoice;

/// How far the board's mean cosine may fall below the manifest's: the host measured 256 held-out
/// images, the board a handful of its own frames, and int8 rounding differs per image.
pub const MEAN_COSINE_MARGIN: f64 = 0.005;

/// Mean cosine floor when the manifest records no int8 agreement (the export contract's).
pub const MEAN_COSINE_FLOOR: f64 = 0.995;

/// Per-frame cosine another fp32 engine must reach against tract fp32 (`edgeclr export`
/// holds tract fp32 to the same against burn).
pub const FP32_MIN_COSINE: f64 = 0.9999;

/// Checks `got` (`choice`'s embeddings of the board's frames) against `reference` (tract
/// fp32's of the same frames).
///
/// # Errors
/// When the agreement is below the floor for `choice` (see the module docs).
pub fn check(
    manifest: &Manifest,
    choice: EmbedChoice,
    got: &[Vec<f32>],
    reference: &[Vec<f32>],
) -> Result<Agreement> {
    let file = choice.artifact.kind().file_name();
    let a = Agreement::measure(
        format!("board {choice} {file} vs tract fp32"),
        got,
        reference,
    );
    if choice.artifact == ArtifactChoice::Fp32 {
        if a.min_cosine < FP32_MIN_COSINE {
            bail!(
                "{choice} disagrees with tract fp32 on this board: min cosine {:.6} over {} frames, below {FP32_MIN_COSINE}; run tract (`--backend tract`) and report the engine's version",
                a.min_cosine,
                a.images
            );
        }
        return Ok(a);
    }
    let floor = manifest
        .drift
        .agreements
        .iter()
        .find(|r| r.compared.contains(file) && r.compared.contains("fp32"))
        .map_or(MEAN_COSINE_FLOOR, |r| r.mean_cosine - MEAN_COSINE_MARGIN);
    if a.mean_cosine < floor {
        bail!(
            "{choice} disagrees with fp32 on this board: mean cosine {:.5} over {} frames, below {floor:.5} (the export's measurement less {MEAN_COSINE_MARGIN}); run fp32 (`--artifact fp32`) and re-export on this runtime version",
            a.mean_cosine,
            a.images
        );
    }
    Ok(a)
}
