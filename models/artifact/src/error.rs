//! Errors of the artifact contract: manifests, checksums, file writes, image buffers.

use std::path::PathBuf;

/// What can go wrong reading, writing or checking an export folder or an image buffer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArtifactError {
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
    /// An image buffer does not match its declared size.
    #[error("image buffer holds {len} bytes but {width}x{height} RGB needs {expected}")]
    ImageSize {
        /// Declared width.
        width: usize,
        /// Declared height.
        height: usize,
        /// Bytes given.
        len: usize,
        /// Bytes needed (`width * height * 3`).
        expected: usize,
    },
}

impl ArtifactError {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}
