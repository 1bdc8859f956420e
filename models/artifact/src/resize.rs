//! From 8-bit pixels to the model's float input: a crop box, bilinear resizing to the
//! model's side and [0, 1] scaling. Training views and the board's frames use the same code.

use crate::image::RgbImage;

/// A float image, channels planar (CHW), values in [0, 1] until normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct FloatImage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `3 * width * height` values, plane by plane.
    pub chw: Vec<f32>,
}

impl FloatImage {
    /// Converts an 8-bit image to [0, 1] floats without any resampling.
    pub fn from_rgb(image: &RgbImage) -> Self {
        let plane = image.width() * image.height();
        let mut chw = vec![0.0; 3 * plane];
        for (i, px) in image.as_bytes().chunks_exact(3).enumerate() {
            for c in 0..3 {
                chw[c * plane + i] = f32::from(px[c]) / 255.0;
            }
        }
        Self {
            width: image.width(),
            height: image.height(),
            chw,
        }
    }
}

/// A crop rectangle in source pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropBox {
    /// Left column.
    pub x: usize,
    /// Top row.
    pub y: usize,
    /// Width in pixels (≥ 1).
    pub width: usize,
    /// Height in pixels (≥ 1).
    pub height: usize,
}

impl CropBox {
    /// The whole `width × height` image.
    pub fn full(width: usize, height: usize) -> Self {
        Self {
            x: 0,
            y: 0,
            width,
            height,
        }
    }
}

/// Cuts `crop` out of `image` and resizes it to `out × out` with bilinear interpolation
/// (half-pixel centres, edge clamping — `align_corners = False`), scaling to [0, 1].
///
/// # Panics
/// When `crop` does not lie inside the image.
pub fn resized_crop(image: &RgbImage, crop: CropBox, out: usize) -> FloatImage {
    assert!(
        crop.x + crop.width <= image.width() && crop.y + crop.height <= image.height(),
        "crop {crop:?} outside {}x{} image",
        image.width(),
        image.height()
    );
    let src = image.as_bytes();
    let stride = image.width() * 3;
    let (sx, sy) = (
        crop.width as f32 / out as f32,
        crop.height as f32 / out as f32,
    );
    // Precompute the two source columns and weights of each output column.
    let taps = |n_out: usize, scale: f32, len: usize, origin: usize| -> Vec<(usize, usize, f32)> {
        (0..n_out)
            .map(|o| {
                let c = ((o as f32 + 0.5) * scale - 0.5).clamp(0.0, (len - 1) as f32);
                let i0 = c.floor() as usize;
                let i1 = (i0 + 1).min(len - 1);
                (origin + i0, origin + i1, c - i0 as f32)
            })
            .collect()
    };
    let cols = taps(out, sx, crop.width, crop.x);
    let rows = taps(out, sy, crop.height, crop.y);
    let plane = out * out;
    let mut chw = vec![0.0f32; 3 * plane];
    for (oy, &(y0, y1, wy)) in rows.iter().enumerate() {
        for (ox, &(x0, x1, wx)) in cols.iter().enumerate() {
            for c in 0..3 {
                let p = |y: usize, x: usize| f32::from(src[y * stride + x * 3 + c]);
                let top = p(y0, x0) * (1.0 - wx) + p(y0, x1) * wx;
                let bottom = p(y1, x0) * (1.0 - wx) + p(y1, x1) * wx;
                chw[c * plane + oy * out + ox] = (top * (1.0 - wy) + bottom * wy) / 255.0;
            }
        }
    }
    FloatImage {
        width: out,
        height: out,
        chw,
    }
}
