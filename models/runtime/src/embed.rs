//! Turning a normalised image into its representation `h` with an exported model: the one
//! code path the board and `edgeclr embed` share.
//!
//! [`Embedder`] is the seam; [`TractEmbedder`] runs the exported ONNX/NNEF files with tract.
//! Inputs are normalised CHW floats at the model's input size (the manifest says which
//! normalisation; [`Preprocess`] produces them from any image).

use std::path::{Path, PathBuf};

use edgeclr_artifact::manifest::MANIFEST;
pub use edgeclr_artifact::preprocess::Preprocess;
pub use edgeclr_artifact::similarity::cosine;
use edgeclr_artifact::{ArtifactError, ArtifactKind, Manifest};

pub use crate::tract::{ModelFormat, TractEmbedder, TractModel};

/// What can go wrong loading or running an exported model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmbedError {
    /// The file is not a model we can run, or disagrees with what we expect of it.
    #[error("{path}: {reason}")]
    Load {
        /// The model file (or `<memory>`).
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// An input buffer of the wrong length.
    #[error(
        "input has {got} values but the model takes 3×{size}×{size} = {expected} normalised CHW floats; resize/crop frames to {size}×{size} first"
    )]
    InputSize {
        /// Values given.
        got: usize,
        /// The model's input side.
        size: usize,
        /// Values expected.
        expected: usize,
    },
    /// tract failed while running.
    #[error("inference failed: {0}")]
    Run(String),
    /// The manifest or a checksum disagrees with the files.
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
}

/// Artifacts an export folder is opened with, best first: measured fastest on the board's
/// CPU path for equal accuracy (docs/export.md).
pub const DEFAULT_PREFERENCE: [ArtifactKind; 4] = [
    ArtifactKind::OnnxFp32,
    ArtifactKind::NnefFp32,
    ArtifactKind::OnnxInt8Qlinear,
    ArtifactKind::OnnxFp32Batched,
];

/// A model opened through its manifest.
#[derive(Debug)]
pub struct Opened {
    /// The runnable embedder.
    pub embedder: TractEmbedder,
    /// The export folder's manifest.
    pub manifest: Manifest,
    /// Which file was loaded.
    pub kind: ArtifactKind,
}

/// Opens what a user points at: an export folder (its first artifact in
/// [`DEFAULT_PREFERENCE`]) or one file inside it. The file's sha256 is checked against the
/// manifest and the input size comes from the manifest.
///
/// # Errors
/// [`EmbedError::Artifact`] for a missing/malformed manifest, a file the manifest does not
/// list, or a checksum mismatch; [`EmbedError::Load`] when tract rejects the file.
pub fn open(path: &Path) -> Result<Opened, EmbedError> {
    let (dir, file) = if path.is_dir() {
        (path.to_path_buf(), None)
    } else {
        let dir = path
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        (dir, name)
    };
    let manifest = Manifest::load(&dir)?;
    let artifact = match &file {
        Some(name) => manifest
            .artifact_named(name)
            .ok_or_else(|| ArtifactError::Manifest {
                path: dir.join(MANIFEST),
                reason: format!(
                    "lists no file `{name}`; it holds {}",
                    manifest
                        .artifacts
                        .iter()
                        .map(|a| a.file.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?,
        None => DEFAULT_PREFERENCE
            .iter()
            .find_map(|&k| manifest.artifact(k))
            .ok_or_else(|| ArtifactError::Manifest {
                path: dir.join(MANIFEST),
                reason: "lists no runnable model; export again".into(),
            })?,
    };
    let kind = artifact.kind;
    let file_path = manifest.verify(&dir, artifact)?;
    let embedder = TractEmbedder::load(&file_path, manifest.input.size)?;
    if embedder.dim() != manifest.output_dim {
        return Err(EmbedError::Load {
            path: file_path,
            reason: format!(
                "outputs {} values but the manifest says {}; the file belongs to another export",
                embedder.dim(),
                manifest.output_dim
            ),
        });
    }
    Ok(Opened {
        embedder,
        manifest,
        kind,
    })
}

/// Maps one normalised image to its representation.
pub trait Embedder: Send {
    /// Side of the square input in pixels.
    fn input_size(&self) -> usize;
    /// Dimension of the returned vectors.
    fn dim(&self) -> usize;
    /// Embeds one image.
    ///
    /// # Shapes
    /// `chw`: `3 · input_size²` values → `dim` values.
    ///
    /// # Errors
    /// [`EmbedError::InputSize`] for a buffer of the wrong length; [`EmbedError::Run`] when
    /// the runtime fails.
    fn embed(&mut self, chw: &[f32]) -> Result<Vec<f32>, EmbedError>;
}
