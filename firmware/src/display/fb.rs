//! `fb:/dev/fbN` — the status screen on a Linux framebuffer (HDMI console, SPI TFTs with an
//! fbtft driver). Geometry comes from sysfs (`virtual_size`, `bits_per_pixel`, `stride`), so
//! no ioctl is needed; 16-bit (RGB565) and 32-bit (XRGB8888) layouts are supported. The
//! 128×64 layout is drawn scaled ×2 at the top-left.

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::png::MonoCanvas;
use super::{Screen, draw_status};
use crate::stats::Status;

/// A framebuffer device.
#[derive(Debug)]
pub struct FbScreen {
    device: PathBuf,
    width: u32,
    height: u32,
    bpp: u32,
    stride: u32,
    canvas: MonoCanvas,
}

fn sysfs(device: &Path, file: &str) -> Result<String, String> {
    let name = device.file_name().and_then(|n| n.to_str()).unwrap_or("fb0");
    let p = Path::new("/sys/class/graphics").join(name).join(file);
    std::fs::read_to_string(&p)
        .map(|s| s.trim().to_string())
        .map_err(|e| {
            format!(
                "{}: {e}; is {} a framebuffer? (ls /dev/fb*; use png:FILE on headless boards)",
                p.display(),
                device.display()
            )
        })
}

impl FbScreen {
    /// Reads the geometry of `device` from sysfs.
    ///
    /// # Errors
    /// A message naming the device when it is absent or has an unsupported depth.
    pub fn open(device: &str) -> Result<Self, String> {
        let dev = PathBuf::from(device);
        let size = sysfs(&dev, "virtual_size")?;
        let (w, h) = size
            .split_once(',')
            .ok_or_else(|| format!("{device}: unreadable virtual_size `{size}`"))?;
        let parse = |v: &str| {
            v.trim()
                .parse::<u32>()
                .map_err(|e| format!("{device}: {e}"))
        };
        let (width, height) = (parse(w)?, parse(h)?);
        let bpp = parse(&sysfs(&dev, "bits_per_pixel")?)?;
        let stride = parse(&sysfs(&dev, "stride")?)?;
        if bpp != 16 && bpp != 32 {
            return Err(format!(
                "{device}: {bpp} bits per pixel; only 16 and 32 are supported"
            ));
        }
        Ok(Self {
            device: dev,
            width,
            height,
            bpp,
            stride,
            canvas: MonoCanvas::new(128, 64),
        })
    }
}

/// The framebuffer rows of `canvas` scaled by `scale`, in `bpp` (16 or 32) layout.
pub fn render(canvas: &MonoCanvas, scale: u32, bpp: u32, fb_width: u32) -> Vec<Vec<u8>> {
    let bytes = (bpp / 8) as usize;
    let w = (128 * scale).min(fb_width);
    (0..64 * scale)
        .map(|y| {
            let mut row = Vec::with_capacity(w as usize * bytes);
            for x in 0..w {
                let on = canvas.get(x / scale, y / scale);
                match bpp {
                    16 => row.extend_from_slice(&(if on { 0xFFFFu16 } else { 0 }).to_le_bytes()),
                    _ => {
                        row.extend_from_slice(&(if on { 0x00FF_FFFFu32 } else { 0 }).to_le_bytes())
                    }
                }
            }
            row
        })
        .collect()
}

impl Screen for FbScreen {
    fn show(&mut self, s: &Status) -> Result<(), String> {
        let Ok(()) = draw_status(&mut self.canvas, s);
        let err = |e: std::io::Error| format!("{}: {e}", self.device.display());
        let mut fb = OpenOptions::new()
            .write(true)
            .open(&self.device)
            .map_err(err)?;
        for (y, row) in render(&self.canvas, 2, self.bpp, self.width)
            .iter()
            .enumerate()
            .take(self.height as usize)
        {
            fb.seek(SeekFrom::Start(y as u64 * u64::from(self.stride)))
                .map_err(err)?;
            fb.write_all(row).map_err(err)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use embedded_graphics::pixelcolor::BinaryColor;
    use embedded_graphics::prelude::*;

    use super::*;

    #[test]
    fn renders_scaled_in_both_depths() {
        let mut c = MonoCanvas::new(128, 64);
        let Ok(()) = Pixel(Point::new(1, 0), BinaryColor::On).draw(&mut c);
        let rows = render(&c, 2, 16, 800);
        assert_eq!(rows.len(), 128);
        assert_eq!(rows[0].len(), 256 * 2);
        // Canvas pixel (1, 0) covers framebuffer pixels x 2..4 of rows 0..2.
        assert_eq!(&rows[1][..8], &[0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
        let rows = render(&c, 1, 32, 100);
        assert_eq!(rows[0].len(), 100 * 4, "clipped to the framebuffer width");
        assert_eq!(&rows[0][4..8], &[0xFF, 0xFF, 0xFF, 0]);
    }

    #[test]
    fn a_missing_framebuffer_names_the_device() {
        let err = FbScreen::open("/dev/fb-missing").expect_err("absent");
        assert!(
            err.contains("/dev/fb-missing") && err.contains("png:FILE"),
            "{err}"
        );
    }
}
