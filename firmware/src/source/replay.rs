//! `mjpeg:FILE` — replays a concatenated-JPEG stream (what `v4l2-ctl --stream-to`, `ffmpeg -f
//! mjpeg` and `rpicam-vid --codec mjpeg -o -` write) at its nominal rate or as fast as
//! possible. Frames are split on SOI/EOI markers; `-` reads stdin (a camera pipe).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{CaptureSettings, FrameSource, pace};
use crate::error::SourceError;
use crate::frame::{Frame, PixelFormat};

/// Splits a concatenated JPEG stream into frames (each `FF D8 … FF D9`).
pub fn split_jpegs(stream: &[u8]) -> Vec<&[u8]> {
    let mut frames = Vec::new();
    let mut i = 0;
    while let Some(start) = find(stream, i, [0xFF, 0xD8]) {
        // Scan for EOI past the entropy-coded data (FF D9 cannot occur inside it: stuffed).
        match find(stream, start + 2, [0xFF, 0xD9]) {
            Some(end) => {
                frames.push(&stream[start..end + 2]);
                i = end + 2;
            }
            None => break,
        }
    }
    frames
}

fn find(s: &[u8], from: usize, pat: [u8; 2]) -> Option<usize> {
    s.get(from..)?
        .windows(2)
        .position(|w| w == pat)
        .map(|p| p + from)
}

/// Replays an MJPEG stream.
#[derive(Debug)]
pub struct MjpegReplay {
    path: PathBuf,
    frames: Vec<(usize, usize)>,
    data: Vec<u8>,
    next: u64,
    start: Instant,
    settings: CaptureSettings,
}

impl MjpegReplay {
    /// Loads the stream at `path` (`-` = stdin, read to its end).
    ///
    /// # Errors
    /// [`SourceError::Io`] when unreadable, [`SourceError::Invalid`] when it holds no JPEG.
    pub fn open(path: &Path, settings: CaptureSettings) -> Result<Self, SourceError> {
        let data = if path == Path::new("-") {
            let mut v = Vec::new();
            std::io::stdin()
                .read_to_end(&mut v)
                .map_err(|source| SourceError::Io {
                    path: path.into(),
                    source,
                })?;
            v
        } else {
            std::fs::read(path).map_err(|source| SourceError::Io {
                path: path.into(),
                source,
            })?
        };
        let frames: Vec<(usize, usize)> = split_jpegs(&data)
            .iter()
            .map(|f| (f.as_ptr() as usize - data.as_ptr() as usize, f.len()))
            .collect();
        if frames.is_empty() {
            return Err(SourceError::Invalid(format!(
                "{}: no JPEG frames (FF D8 … FF D9) found; record one with `v4l2-ctl --stream-mmap --stream-to=clip.mjpeg` or `ffmpeg -i in.mp4 -f mjpeg clip.mjpeg`",
                path.display()
            )));
        }
        let end = frames.last().map_or(0, |&(at, len)| at + len);
        if find(&data, end, [0xFF, 0xD8]).is_some() {
            tracing::warn!(
                "{}: the last {} bytes are an incomplete frame (no FF D9 end marker; the recording was cut); replaying the {} complete frames",
                path.display(),
                data.len() - end,
                frames.len()
            );
        }
        Ok(Self {
            path: path.into(),
            frames,
            data,
            next: 0,
            start: Instant::now(),
            settings,
        })
    }
}

impl FrameSource for MjpegReplay {
    fn next_frame(&mut self) -> Result<Frame, SourceError> {
        let mut i = self.next as usize;
        if self.settings.looped {
            i %= self.frames.len();
        }
        if i >= self.frames.len() || self.settings.max_frames.is_some_and(|m| self.next >= m) {
            return Err(SourceError::End);
        }
        if self.next == 0 {
            self.start = Instant::now();
        }
        if !self.settings.as_fast_as_possible {
            pace(self.start, self.next, self.settings.fps);
        }
        let (off, len) = self.frames[i];
        self.next += 1;
        Ok(Frame {
            id: self.next - 1,
            captured: Instant::now(),
            width: 0,
            height: 0,
            format: PixelFormat::Mjpeg,
            data: self.data[off..off + len].to_vec(),
        })
    }

    fn describe(&self) -> String {
        format!(
            "mjpeg:{} ({} frames)",
            self.path.display(),
            self.frames.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_the_shipped_clip_into_its_100_frames() {
        let clip =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/camera/clip_320x240.mjpeg");
        let settings = CaptureSettings::replay();
        let mut r = MjpegReplay::open(&clip, settings).expect("opens");
        assert!(r.describe().ends_with("(100 frames)"), "{}", r.describe());
        let f = r.next_frame().expect("frame");
        // Frame 0 is 11,918 bytes per the shared data's index.csv.
        assert_eq!(f.data.len(), 11_918);
        let rgb = f.to_rgb().expect("decodes");
        assert_eq!((rgb.width(), rgb.height()), (320, 240));
        let mut n = 1;
        while r.next_frame().is_ok() {
            n += 1;
        }
        assert_eq!(n, 100);
    }

    #[test]
    fn pacing_follows_the_nominal_rate() {
        let clip =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/camera/clip_320x240.mjpeg");
        let settings = CaptureSettings {
            width: 0,
            height: 0,
            fps: 100.0,
            as_fast_as_possible: false,
            max_frames: Some(6),
            looped: false,
        };
        let mut r = MjpegReplay::open(&clip, settings).expect("opens");
        let t = Instant::now();
        while r.next_frame().is_ok() {}
        // 6 frames at 100 fps: the last is due 50 ms after the first.
        assert!(t.elapsed().as_millis() >= 50, "{:?}", t.elapsed());
    }

    #[test]
    fn garbage_and_missing_files_are_clear_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x.mjpeg");
        std::fs::write(&p, b"not jpeg").expect("write");
        let s = CaptureSettings::replay();
        let err = MjpegReplay::open(&p, s).expect_err("no frames");
        assert!(err.to_string().contains("no JPEG frames"), "{err}");
        let err = MjpegReplay::open(&dir.path().join("missing.mjpeg"), s).expect_err("missing");
        assert!(err.to_string().contains("missing.mjpeg"), "{err}");
        assert_eq!(
            split_jpegs(&[0xFF, 0xD8, 1, 2, 0xFF, 0xD9, 0, 0xFF, 0xD8, 3, 0xFF, 0xD9]).len(),
            2
        );
    }
}
