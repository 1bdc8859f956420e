//! Where frames come from: [`FrameSource`] and its implementations — `v4l:/dev/videoN`
//! (cargo feature `v4l`), `mjpeg:FILE` replay, `folder:DIR` of images, `synthetic`.

pub mod folder;
#[cfg(test)]
mod fuzz;
pub mod recording;
pub mod replay;
pub mod synthetic;
#[cfg(feature = "camera")]
pub mod v4l;

use std::path::PathBuf;

pub use recording::recording_frames;

use crate::error::SourceError;
use crate::frame::Frame;

/// A stream of frames. `next_frame` blocks until one is ready (pacing is the source's job).
pub trait FrameSource: Send {
    /// The next frame; [`SourceError::End`] when the stream is over.
    ///
    /// # Errors
    /// [`SourceError::End`] at the end; other variants for failures (a camera may recover:
    /// the capture loop reopens it with backoff).
    fn next_frame(&mut self) -> Result<Frame, SourceError>;
    /// A short description for logs and the status screen.
    fn describe(&self) -> String;
    /// Reopens after a failure (unplugged camera); sources that cannot recover return the
    /// error again.
    ///
    /// # Errors
    /// When reopening fails.
    fn reopen(&mut self) -> Result<(), SourceError> {
        Err(SourceError::End)
    }
}

/// A parsed `--source` value.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceSpec {
    /// A V4L2 capture device.
    V4l(PathBuf),
    /// A concatenated-JPEG stream file (or `-` for stdin).
    Mjpeg(PathBuf),
    /// A folder of images.
    Folder(PathBuf),
    /// Generated frames.
    Synthetic,
}

impl std::str::FromStr for SourceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (kind, rest) = s.split_once(':').unwrap_or((s, ""));
        match (kind, rest) {
            ("v4l", p) if !p.is_empty() => Ok(Self::V4l(p.into())),
            ("mjpeg", p) if !p.is_empty() => Ok(Self::Mjpeg(p.into())),
            ("folder", p) if !p.is_empty() => Ok(Self::Folder(p.into())),
            ("synthetic", _) => Ok(Self::Synthetic),
            _ => Err(format!(
                "unknown source `{s}`; use v4l:/dev/videoN, mjpeg:FILE, folder:DIR or synthetic"
            )),
        }
    }
}

impl std::fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::V4l(p) => write!(f, "v4l:{}", p.display()),
            Self::Mjpeg(p) => write!(f, "mjpeg:{}", p.display()),
            Self::Folder(p) => write!(f, "folder:{}", p.display()),
            Self::Synthetic => write!(f, "synthetic"),
        }
    }
}

impl serde::Serialize for SourceSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for SourceSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Capture settings a source may use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CaptureSettings {
    /// Requested width.
    pub width: u32,
    /// Requested height.
    pub height: u32,
    /// Requested / replay frame rate.
    pub fps: f64,
    /// Replay as fast as possible instead of at `fps`.
    pub as_fast_as_possible: bool,
    /// Stop after this many frames.
    pub max_frames: Option<u64>,
    /// Replay a recording in a loop (until `max_frames` or the run's duration); frame ids keep
    /// counting up.
    pub looped: bool,
}

impl CaptureSettings {
    /// A recording read once, as fast as possible, at its own size.
    pub fn replay() -> Self {
        Self {
            width: 0,
            height: 0,
            fps: 10.0,
            as_fast_as_possible: true,
            max_frames: None,
            looped: false,
        }
    }
}

/// Opens the source named by `spec`.
///
/// # Errors
/// [`SourceError`] naming the path when it cannot be opened.
pub fn open(
    spec: &SourceSpec,
    settings: CaptureSettings,
) -> Result<Box<dyn FrameSource>, SourceError> {
    Ok(match spec {
        SourceSpec::Mjpeg(p) => Box::new(replay::MjpegReplay::open(p, settings)?),
        SourceSpec::Folder(p) => Box::new(folder::FolderSource::open(p, settings)?),
        SourceSpec::Synthetic => Box::new(synthetic::SyntheticSource::new(settings)),
        #[cfg(feature = "camera")]
        SourceSpec::V4l(p) => Box::new(v4l::V4lSource::open(p, settings)?),
        #[cfg(not(feature = "camera"))]
        SourceSpec::V4l(p) => {
            return Err(SourceError::Invalid(format!(
                "{}: this edgeclr-device was built without the `camera` feature (V4L2); rebuild with default features (needs libclang) or use mjpeg:FILE",
                p.display()
            )));
        }
    })
}

/// Sleeps until frame `index` is due at `fps` after `start` (no sleep when late).
pub(crate) fn pace(start: std::time::Instant, index: u64, fps: f64) {
    if fps <= 0.0 {
        return;
    }
    let due = start + std::time::Duration::from_secs_f64(index as f64 / fps);
    let now = std::time::Instant::now();
    if due > now {
        std::thread::sleep(due - now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_print() {
        for s in [
            "v4l:/dev/video0",
            "mjpeg:clip.mjpeg",
            "folder:frames",
            "synthetic",
        ] {
            assert_eq!(s.parse::<SourceSpec>().expect(s).to_string(), s);
        }
        let err = "camera".parse::<SourceSpec>().expect_err("unknown");
        assert!(err.contains("v4l:/dev/videoN"), "{err}");
    }
}
