//! Errors of export, quantisation and artifact verification.

use std::path::PathBuf;

/// What can go wrong turning an encoder into board artifacts or checking them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// Calibration data or ranges are unusable.
    #[error("calibration: {0}")]
    Calibration(String),
    /// tract failed to load, convert or run a graph.
    #[error("tract: {0}")]
    Tract(String),
    /// The export folder's contract: manifest, checksum or atomic write.
    #[error(transparent)]
    Artifact(#[from] edgeclr_artifact::ArtifactError),
    /// An I/O error on a named path.
    #[error("{path}: {source}")]
    Io {
        /// The path being read or written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}
