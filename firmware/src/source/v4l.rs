//! `v4l:/dev/videoN` — real capture through V4L2 (the `v4l` crate, mmap streaming). Negotiates
//! MJPEG or YUYV at the requested size and rate, copies each buffer (`bytesused` bytes) into
//! an owned [`Frame`] before it is queued, and reopens the device with backoff when it
//! disappears (USB unplug) — the capture loop calls [`FrameSource::reopen`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use v4l::buffer::Type;
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;
use v4l::video::Capture;
use v4l::{Device, FourCC};

use super::{CaptureSettings, FrameSource};
use crate::error::SourceError;
use crate::frame::{Frame, PixelFormat};

/// A V4L2 camera.
pub struct V4lSource {
    path: PathBuf,
    settings: CaptureSettings,
    stream: Stream<'static>,
    format: PixelFormat,
    width: u32,
    height: u32,
    next: u64,
}

impl std::fmt::Debug for V4lSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("V4lSource")
            .field("path", &self.path)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

fn device_error(path: &Path, e: std::io::Error) -> SourceError {
    SourceError::Device {
        path: path.into(),
        reason: e.to_string(),
    }
}

fn start(
    path: &Path,
    settings: CaptureSettings,
) -> Result<(Stream<'static>, PixelFormat, u32, u32), SourceError> {
    let dev = Device::with_path(path).map_err(|e| device_error(path, e))?;
    let offered: Vec<FourCC> = dev
        .enum_formats()
        .map_err(|e| device_error(path, e))?
        .into_iter()
        .map(|d| d.fourcc)
        .collect();
    // MJPEG first: USB cameras deliver larger frames at full rate only compressed.
    let wanted = [
        (FourCC::new(b"MJPG"), PixelFormat::Mjpeg),
        (FourCC::new(b"YUYV"), PixelFormat::Yuyv),
    ];
    let (fourcc, format) = wanted.into_iter().find(|(f, _)| offered.contains(f)).ok_or_else(|| {
        SourceError::Invalid(format!(
            "{}: offers {:?} but neither MJPG nor YUYV; use a UVC camera or feed frames with mjpeg:- from a GStreamer/libcamera pipe",
            path.display(),
            offered.iter().map(ToString::to_string).collect::<Vec<_>>()
        ))
    })?;
    let mut fmt = dev.format().map_err(|e| device_error(path, e))?;
    fmt.width = settings.width;
    fmt.height = settings.height;
    fmt.fourcc = fourcc;
    // Drivers silently substitute what they support: keep what they return.
    let fmt = dev.set_format(&fmt).map_err(|e| device_error(path, e))?;
    if fmt.fourcc != fourcc {
        return Err(SourceError::Invalid(format!(
            "{}: driver refused {fourcc} (gave {})",
            path.display(),
            fmt.fourcc
        )));
    }
    if settings.fps > 0.0 {
        let _ = dev.set_params(&v4l::video::capture::Parameters::with_fps(
            settings.fps.round() as u32,
        ));
    }
    let mut stream =
        Stream::with_buffers(&dev, Type::VideoCapture, 4).map_err(|e| device_error(path, e))?;
    stream.set_timeout(Duration::from_secs(2));
    tracing::info!(device = %path.display(), fourcc = %fmt.fourcc, width = fmt.width, height = fmt.height, "camera streaming");
    Ok((stream, format, fmt.width, fmt.height))
}

impl V4lSource {
    /// Opens and starts streaming from `path`.
    ///
    /// # Errors
    /// [`SourceError::Device`] naming the path (and `v4l2-ctl --list-devices`) when it cannot
    /// be opened; [`SourceError::Invalid`] when it offers neither MJPEG nor YUYV.
    pub fn open(path: &Path, settings: CaptureSettings) -> Result<Self, SourceError> {
        let (stream, format, width, height) = start(path, settings)?;
        Ok(Self {
            path: path.into(),
            settings,
            stream,
            format,
            width,
            height,
            next: 0,
        })
    }
}

impl FrameSource for V4lSource {
    fn next_frame(&mut self) -> Result<Frame, SourceError> {
        if self.settings.max_frames.is_some_and(|m| self.next >= m) {
            return Err(SourceError::End);
        }
        let (buf, meta) = self
            .stream
            .next()
            .map_err(|e| device_error(&self.path, e))?;
        let used = (meta.bytesused as usize).min(buf.len());
        let frame = Frame {
            id: self.next,
            captured: Instant::now(),
            width: self.width,
            height: self.height,
            format: self.format,
            data: buf[..used].to_vec(),
        };
        self.next += 1;
        Ok(frame)
    }

    fn describe(&self) -> String {
        format!(
            "v4l:{} {:?} {}x{}",
            self.path.display(),
            self.format,
            self.width,
            self.height
        )
    }

    fn reopen(&mut self) -> Result<(), SourceError> {
        let (stream, format, width, height) = start(&self.path, self.settings)?;
        self.stream = stream;
        self.format = format;
        self.width = width;
        self.height = height;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_camera_names_the_path_and_the_fix() {
        let s = CaptureSettings {
            width: 320,
            height: 240,
            fps: 10.0,
            as_fast_as_possible: false,
            max_frames: None,
            looped: false,
        };
        let err =
            V4lSource::open(Path::new("/dev/video-does-not-exist"), s).expect_err("no such device");
        let msg = err.to_string();
        assert!(
            msg.contains("/dev/video-does-not-exist") && msg.contains("v4l2-ctl --list-devices"),
            "{msg}"
        );
    }
}
