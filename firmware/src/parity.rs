//! Whether the board computes what was shipped: the int8 file's embeddings of the board's own
//! frames against the fp32 file's, held to the agreement `edgeclr export` measured on the host
//! and wrote to the manifest. `selftest` prefers int8 only when it passes (issue 17: the
//! fastest artifact that passes the parity check).

use std::path::Path;

use anyhow::{Result, bail};
use edgeclr_artifact::ArtifactKind;
use edgeclr_artifact::manifest::{Agreement, Manifest};
use edgeclr_runtime::embed::{self, Embedder};

/// How far the board's mean cosine may fall below the manifest's: the host measured 256 held-out
/// images, the board a handful of its own frames, and int8 rounding differs per image.
pub const MEAN_COSINE_MARGIN: f64 = 0.005;

/// Mean cosine floor when the manifest records no int8 agreement (the export contract's).
pub const MEAN_COSINE_FLOOR: f64 = 0.995;

/// Embeds `inputs` with `kind` and with the fp32 file in `model`, and checks their agreement
/// against the manifest's record for `kind`.
///
/// # Errors
/// When a file does not load or run, or the agreement is below the record minus
/// [`MEAN_COSINE_MARGIN`] (or [`MEAN_COSINE_FLOOR`] without a record).
pub fn check(
    manifest: &Manifest,
    model: &Path,
    kind: ArtifactKind,
    inputs: &[Vec<f32>],
) -> Result<Agreement> {
    let embed_all = |k: ArtifactKind| -> Result<Vec<Vec<f32>>> {
        let mut e = embed::open(&model.join(k.file_name()))?.embedder.fork()?;
        inputs.iter().map(|x| Ok(e.embed(x)?)).collect()
    };
    let file = kind.file_name();
    let got = Agreement::measure(
        format!("board {file} vs fp32"),
        &embed_all(kind)?,
        &embed_all(ArtifactKind::OnnxFp32)?,
    );
    let floor = manifest
        .drift
        .agreements
        .iter()
        .find(|a| a.compared.contains(file) && a.compared.contains("fp32"))
        .map_or(MEAN_COSINE_FLOOR, |a| a.mean_cosine - MEAN_COSINE_MARGIN);
    if got.mean_cosine < floor {
        bail!(
            "{file} disagrees with fp32 on this board: mean cosine {:.5} over {} frames, below {floor:.5} (the export's measurement less {MEAN_COSINE_MARGIN}); run fp32 (`--artifact fp32`) and re-export on this tract version",
            got.mean_cosine,
            got.images
        );
    }
    Ok(got)
}
