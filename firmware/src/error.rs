//! Errors of the board runtime, one enum per seam.

use std::path::PathBuf;

/// A frame source failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The camera device does not exist or cannot be opened.
    #[error(
        "camera {path} cannot be opened ({reason}); check `v4l2-ctl --list-devices` or use --source mjpeg:FILE"
    )]
    Device {
        /// Device path.
        path: PathBuf,
        /// OS error.
        reason: String,
    },
    /// The stream ended (replay finished, camera unplugged).
    #[error("end of stream")]
    End,
    /// A source spec or file is unusable.
    #[error("{0}")]
    Invalid(String),
    /// I/O on a named path.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// A frame could not be turned into pixels.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// JPEG decode failed.
    #[error("frame {id}: corrupt JPEG ({reason})")]
    Jpeg {
        /// Frame id.
        id: u64,
        /// Decoder message.
        reason: String,
    },
    /// The buffer does not match the declared size/format.
    #[error("frame {id}: {reason}")]
    Layout {
        /// Frame id.
        id: u64,
        /// What is wrong.
        reason: String,
    },
}

/// An embedding sink failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// A sink spec is unusable.
    #[error("{0}")]
    Invalid(String),
    /// Not delivered on purpose (a dead connection given up at exit): counted as dropped.
    #[error("{0}")]
    Dropped(String),
    /// I/O while writing or sending.
    #[error("{target}: {source}")]
    Io {
        /// File or address.
        target: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}
