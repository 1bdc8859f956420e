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

pub use crate::backend::{Backend, OrtSettings};
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

/// A model opened through its manifest: by tract ([`open`]) or on any backend ([`open_on`]).
#[derive(Debug)]
pub struct Opened<E = TractEmbedder> {
    /// The runnable embedder.
    pub embedder: E,
    /// The export folder's manifest.
    pub manifest: Manifest,
    /// Which file was loaded.
    pub kind: ArtifactKind,
}

/// Opens what a user points at with tract: an export folder (its first artifact in
/// [`DEFAULT_PREFERENCE`]) or one file inside it. The file's sha256 is checked against the
/// manifest and the input size comes from the manifest.
///
/// # Errors
/// [`EmbedError::Artifact`] for a missing/malformed manifest, a file the manifest does not
/// list, or a checksum mismatch; [`EmbedError::Load`] when tract rejects the file.
pub fn open(path: &Path) -> Result<Opened, EmbedError> {
    let (file, manifest, kind) = locate(path)?;
    let embedder = TractEmbedder::load(&file, manifest.input.size)?;
    check_dim(&file, embedder.dim(), &manifest)?;
    Ok(Opened {
        embedder,
        manifest,
        kind,
    })
}

/// [`open`] on `backend` (onnxruntime set up by `ort`).
///
/// # Errors
/// As [`open`], and [`EmbedError::Load`] when onnxruntime is not available (see
/// [`crate::backend::load`]).
pub fn open_on(
    path: &Path,
    backend: Backend,
    ort: &OrtSettings,
) -> Result<Opened<Box<dyn Embedder>>, EmbedError> {
    let (file, manifest, kind) = locate(path)?;
    let embedder = crate::backend::load(&file, manifest.input.size, backend, ort)?;
    check_dim(&file, embedder.dim(), &manifest)?;
    Ok(Opened {
        embedder,
        manifest,
        kind,
    })
}

fn check_dim(file: &Path, dim: usize, manifest: &Manifest) -> Result<(), EmbedError> {
    if dim == manifest.output_dim {
        return Ok(());
    }
    Err(EmbedError::Load {
        path: file.to_path_buf(),
        reason: format!(
            "outputs {dim} values but the manifest says {}; the file belongs to another export",
            manifest.output_dim
        ),
    })
}

/// The verified file `path` names (a folder: its preferred artifact), its manifest and kind.
fn locate(path: &Path) -> Result<(PathBuf, Manifest, ArtifactKind), EmbedError> {
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
    Ok((file_path, manifest, kind))
}

/// Maps one normalised image to its representation.
pub trait Embedder: Send + std::fmt::Debug {
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
    /// The engine running it.
    fn backend(&self) -> Backend;
    /// A second embedder on the same model for another thread (a tract state on the shared
    /// plan, or a new onnxruntime session).
    ///
    /// # Errors
    /// [`EmbedError::Run`] when the runtime cannot create it.
    fn fork_boxed(&self) -> Result<Box<dyn Embedder>, EmbedError>;
}
