//! `synthetic` — deterministic moving-gradient YUYV frames for tests and soak runs without a
//! camera (exercises the YUYV conversion path the USB cameras use).

use std::time::Instant;

use super::{CaptureSettings, FrameSource, pace};
use crate::error::SourceError;
use crate::frame::{Frame, PixelFormat};

/// Generated frames.
#[derive(Debug)]
pub struct SyntheticSource {
    next: u64,
    start: Instant,
    settings: CaptureSettings,
}

impl SyntheticSource {
    /// A source of `settings.width`×`settings.height` frames (default 320×240).
    pub fn new(mut settings: CaptureSettings) -> Self {
        if settings.width == 0 || settings.height == 0 {
            settings.width = 320;
            settings.height = 240;
        }
        settings.width += settings.width % 2;
        Self {
            next: 0,
            start: Instant::now(),
            settings,
        }
    }
}

impl FrameSource for SyntheticSource {
    fn next_frame(&mut self) -> Result<Frame, SourceError> {
        if self.settings.max_frames.is_some_and(|m| self.next >= m) {
            return Err(SourceError::End);
        }
        if !self.settings.as_fast_as_possible {
            pace(self.start, self.next, self.settings.fps);
        }
        let (w, h) = (self.settings.width as usize, self.settings.height as usize);
        let t = self.next as usize;
        let mut data = Vec::with_capacity(w * h * 2);
        for y in 0..h {
            for x in (0..w).step_by(2) {
                let luma = |x: usize| (16 + ((x + y + 3 * t) % 220)) as u8;
                data.extend_from_slice(&[
                    luma(x),
                    (128 + (y % 64)) as u8,
                    luma(x + 1),
                    (128 - (x % 64) as i32) as u8,
                ]);
            }
        }
        let id = self.next;
        self.next += 1;
        Ok(Frame {
            id,
            captured: Instant::now(),
            width: w as u32,
            height: h as u32,
            format: PixelFormat::Yuyv,
            data,
        })
    }

    fn describe(&self) -> String {
        format!(
            "synthetic {}x{} YUYV",
            self.settings.width, self.settings.height
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_deterministic_and_move() {
        let s = CaptureSettings {
            width: 64,
            height: 48,
            fps: 30.0,
            as_fast_as_possible: true,
            max_frames: Some(3),
            looped: false,
        };
        let (mut a, mut b) = (SyntheticSource::new(s), SyntheticSource::new(s));
        let (a0, b0) = (
            a.next_frame().expect("frame"),
            b.next_frame().expect("frame"),
        );
        assert_eq!(a0.data, b0.data);
        let a1 = a.next_frame().expect("frame");
        assert_ne!(a0.data, a1.data);
        assert_eq!(a1.to_rgb().expect("converts").width(), 64);
        a.next_frame().expect("third");
        assert!(matches!(a.next_frame(), Err(SourceError::End)));
    }
}
