//! A monochrome in-memory canvas (a `DrawTarget`) and the `png:FILE` screen built on it: the
//! headless target, rewritten atomically at each refresh, and the canvas the framebuffer
//! screen renders from.

use std::path::PathBuf;

use embedded_graphics::pixelcolor::BinaryColor;
use embedded_graphics::prelude::*;

use super::{Screen, draw_status};
use crate::stats::Status;

/// A `width×height` 1-bit canvas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonoCanvas {
    width: u32,
    height: u32,
    on: Vec<bool>,
}

impl MonoCanvas {
    /// An all-off canvas.
    pub fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            on: vec![false; (width * height) as usize],
        }
    }

    /// Whether pixel `(x, y)` is on.
    pub fn get(&self, x: u32, y: u32) -> bool {
        self.on[(y * self.width + x) as usize]
    }

    /// Grayscale bytes (on = 255).
    pub fn to_luma(&self) -> Vec<u8> {
        self.on.iter().map(|&b| if b { 255 } else { 0 }).collect()
    }

    /// PNG bytes of the canvas.
    pub fn to_png(&self) -> Vec<u8> {
        let mut out = Vec::new();
        image::GrayImage::from_raw(self.width, self.height, self.to_luma())
            .expect("buffer matches the size")
            .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
            .expect("PNG encoding to memory");
        out
    }
}

impl OriginDimensions for MonoCanvas {
    fn size(&self) -> Size {
        Size::new(self.width, self.height)
    }
}

impl DrawTarget for MonoCanvas {
    type Color = BinaryColor;
    type Error = core::convert::Infallible;

    fn draw_iter<I: IntoIterator<Item = Pixel<BinaryColor>>>(
        &mut self,
        pixels: I,
    ) -> Result<(), Self::Error> {
        for Pixel(p, c) in pixels {
            if p.x >= 0 && p.y >= 0 && (p.x as u32) < self.width && (p.y as u32) < self.height {
                self.on[(p.y as u32 * self.width + p.x as u32) as usize] = c.is_on();
            }
        }
        Ok(())
    }
}

/// `png:FILE`.
#[derive(Debug)]
pub struct PngScreen {
    path: PathBuf,
    canvas: MonoCanvas,
}

impl PngScreen {
    /// A 128×64 screen written to `path`.
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            canvas: MonoCanvas::new(128, 64),
        }
    }
}

impl Screen for PngScreen {
    fn show(&mut self, s: &Status) -> Result<(), String> {
        let Ok(()) = draw_status(&mut self.canvas, s);
        edgeclr_artifact::atomic::write_atomic(&self.path, &self.canvas.to_png())
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::display::tests::sample_status;

    /// The golden image of `sample_status()`; regenerate with `UPDATE_GOLDEN=1 cargo test`
    /// after an intended layout change, and look at it.
    const GOLDEN: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/status_128x64.png"
    );

    #[test]
    fn status_screen_matches_the_golden_png() {
        let mut c = MonoCanvas::new(128, 64);
        let Ok(()) = draw_status(&mut c, &sample_status());
        // Layout facts independent of the golden file: the sparkline box frame is drawn
        // and the top-left of the first text line is lit somewhere in row band 0..10.
        assert!(
            (0..128).all(|x| c.get(x, 44) && c.get(x, 63)),
            "sparkline box top and bottom edges"
        );
        assert!(
            (0..10).any(|y| (0..60).any(|x| c.get(x, y))),
            "first text line"
        );
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::create_dir_all(std::path::Path::new(GOLDEN).parent().expect("parent"))
                .expect("mkdir");
            std::fs::write(GOLDEN, c.to_png()).expect("write golden");
        }
        let golden = image::open(GOLDEN)
            .expect("golden PNG (UPDATE_GOLDEN=1 to create)")
            .to_luma8();
        assert_eq!(golden.dimensions(), (128, 64));
        assert_eq!(
            golden.into_raw(),
            c.to_luma(),
            "status screen differs from {GOLDEN}"
        );
    }
}
