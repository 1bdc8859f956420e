//! Errors of the learning core.

use std::path::PathBuf;

/// What can go wrong in the learning core: bad configuration, bad inputs, checkpoint I/O.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A configuration value is out of its valid range.
    #[error("invalid config `{field}` = {value}: {hint}")]
    InvalidConfig {
        /// The offending field, dotted (`augment.color_strength`).
        field: &'static str,
        /// The value given.
        value: String,
        /// What a valid value looks like.
        hint: &'static str,
    },
    /// The requested compute device is not on this machine or not in this build.
    #[error("--device {device}: {why}; {fix}")]
    DeviceUnavailable {
        /// `cuda`, `wgpu`.
        device: &'static str,
        /// What is missing.
        why: String,
        /// What to do.
        fix: &'static str,
    },
    /// An image buffer, atomic write or manifest of the artifact contract.
    #[error(transparent)]
    Artifact(#[from] edgeclr_artifact::ArtifactError),
    /// Reading or writing a checkpoint failed.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The checkpoint directory or file.
        path: PathBuf,
        /// What failed and what to do.
        reason: String,
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

impl ModelError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}
