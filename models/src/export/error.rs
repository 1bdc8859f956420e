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
    /// The manifest is missing, unreadable or disagrees with the files.
    #[error("manifest {path}: {reason}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// A file's sha256 differs from the manifest's.
    #[error(
        "{path}: sha256 {actual} does not match the manifest's {expected}; the file was modified or truncated after export — re-run edgeclr export or copy the bundle again"
    )]
    Checksum {
        /// The artifact.
        path: PathBuf,
        /// From the manifest.
        expected: String,
        /// Of the file on disk.
        actual: String,
    },
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
