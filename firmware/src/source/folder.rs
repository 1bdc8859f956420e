//! `folder:DIR` — the JPEG/PNG images of a folder in name order, as RGB frames.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{CaptureSettings, FrameSource, pace};
use crate::error::SourceError;
use crate::frame::{Frame, PixelFormat};

/// Images of a folder replayed as frames.
#[derive(Debug)]
pub struct FolderSource {
    dir: PathBuf,
    files: Vec<PathBuf>,
    next: u64,
    start: Instant,
    settings: CaptureSettings,
}

impl FolderSource {
    /// Lists the images of `dir`.
    ///
    /// # Errors
    /// [`SourceError::Io`] when unreadable, [`SourceError::Invalid`] when it has no images.
    pub fn open(dir: &Path, settings: CaptureSettings) -> Result<Self, SourceError> {
        let io = |source| SourceError::Io {
            path: dir.into(),
            source,
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                    matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png")
                })
            })
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(SourceError::Invalid(format!(
                "{}: no .jpg/.jpeg/.png images",
                dir.display()
            )));
        }
        Ok(Self {
            dir: dir.into(),
            files,
            next: 0,
            start: Instant::now(),
            settings,
        })
    }
}

impl FrameSource for FolderSource {
    fn next_frame(&mut self) -> Result<Frame, SourceError> {
        let i = self.next as usize;
        if i >= self.files.len() || self.settings.max_frames.is_some_and(|m| self.next >= m) {
            return Err(SourceError::End);
        }
        if !self.settings.as_fast_as_possible {
            pace(self.start, self.next, self.settings.fps);
        }
        self.next += 1;
        let path = &self.files[i];
        let img = image::open(path)
            .map_err(|e| SourceError::Invalid(format!("{}: {e}", path.display())))?
            .to_rgb8();
        Ok(Frame {
            id: i as u64,
            captured: Instant::now(),
            width: img.width(),
            height: img.height(),
            format: PixelFormat::Rgb8,
            data: img.into_raw(),
        })
    }

    fn describe(&self) -> String {
        format!(
            "folder:{} ({} images)",
            self.dir.display(),
            self.files.len()
        )
    }
}
