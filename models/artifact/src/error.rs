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

/// `error` and its causes as one line for the user, `outer: inner: …`, skipping a cause whose
/// text its parent already printed (errors that show their source in their own message).
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !line.contains(&text) {
            line = format!("{line}: {text}");
        }
        cause = c.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[derive(Debug, thiserror::Error)]
    #[error("{path}: {source}")]
    struct Shows {
        path: &'static str,
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("opening the model")]
    struct Hides(#[source] std::io::Error);

    #[test]
    fn causes_are_printed_once() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let shown = Shows {
            path: "a.onnx",
            source: io(),
        };
        assert_eq!(describe(&shown), "a.onnx: no such file");
        assert_eq!(describe(&Hides(io())), "opening the model: no such file");
    }
}
