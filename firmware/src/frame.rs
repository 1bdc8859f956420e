//! Frames as captured (owned bytes, copied out of any driver buffer) and their decoding to
//! RGB: MJPEG with zune-jpeg (UVC frames without Huffman tables included), YUYV with the
//! `yuv` crate's SIMD BT.601 conversion.

use std::time::Instant;

use edgeclr_artifact::RgbImage;
use yuv::{YuvPackedImage, YuvRange, YuvStandardMatrix};
use zune_jpeg::JpegDecoder;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;

use crate::error::FrameError;

/// Pixel layout of a captured frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// Packed RGB, 3 bytes per pixel.
    Rgb8,
    /// Packed YUV 4:2:2 (Y0 U Y1 V), 2 bytes per pixel.
    Yuyv,
    /// One JPEG image.
    Mjpeg,
}

/// One captured frame, owning its bytes.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Sequence number from the source (monotonic).
    pub id: u64,
    /// When the source produced it.
    pub captured: Instant,
    /// Width in pixels (0 for MJPEG until decoded is fine).
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Layout of `data`.
    pub format: PixelFormat,
    /// The bytes.
    pub data: Vec<u8>,
}

/// The JPEG Annex K Huffman tables as one DHT segment, inserted into frames that lack DHT
/// (many UVC cameras send MJPEG without them; the AVI1 convention).
const STANDARD_DHT: &[u8] = &[
    0xFF, 0xC4, 0x01, 0xA2, // DHT, length 418
    0x00, 0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
    0x10, 0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D, 0x01, 0x02, 0x03, 0x00, 0x04, 0x11,
    0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07, 0x22, 0x71, 0x14, 0x32, 0x81, 0x91,
    0xA1, 0x08, 0x23, 0x42, 0xB1, 0xC1, 0x15, 0x52, 0xD1, 0xF0, 0x24, 0x33, 0x62, 0x72, 0x82, 0x09,
    0x0A, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2A, 0x34, 0x35, 0x36, 0x37,
    0x38, 0x39, 0x3A, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x53, 0x54, 0x55, 0x56, 0x57,
    0x58, 0x59, 0x5A, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6A, 0x73, 0x74, 0x75, 0x76, 0x77,
    0x78, 0x79, 0x7A, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x92, 0x93, 0x94, 0x95, 0x96,
    0x97, 0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4,
    0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2,
    0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xE1, 0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8,
    0xE9, 0xEA, 0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9, 0xFA, //
    0x01, 0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
    0x11, 0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77, 0x00, 0x01, 0x02, 0x03, 0x11, 0x04,
    0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61, 0x71, 0x13, 0x22, 0x32, 0x81, 0x08, 0x14,
    0x42, 0x91, 0xA1, 0xB1, 0xC1, 0x09, 0x23, 0x33, 0x52, 0xF0, 0x15, 0x62, 0x72, 0xD1, 0x0A, 0x16,
    0x24, 0x34, 0xE1, 0x25, 0xF1, 0x17, 0x18, 0x19, 0x1A, 0x26, 0x27, 0x28, 0x29, 0x2A, 0x35, 0x36,
    0x37, 0x38, 0x39, 0x3A, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x53, 0x54, 0x55, 0x56,
    0x57, 0x58, 0x59, 0x5A, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6A, 0x73, 0x74, 0x75, 0x76,
    0x77, 0x78, 0x79, 0x7A, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x92, 0x93, 0x94,
    0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xB2,
    0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9,
    0xCA, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7,
    0xE8, 0xE9, 0xEA, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9, 0xFA,
];

/// `jpeg` with the standard Huffman tables inserted before SOS when it has none; `None`
/// when it already has DHT or is not a JPEG.
pub fn with_standard_huffman(jpeg: &[u8]) -> Option<Vec<u8>> {
    if !jpeg.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut i = 2;
    while i + 4 <= jpeg.len() {
        if jpeg[i] != 0xFF {
            return None;
        }
        let marker = jpeg[i + 1];
        match marker {
            0xC4 => return None,
            0xDA => {
                let mut out = Vec::with_capacity(jpeg.len() + STANDARD_DHT.len());
                out.extend_from_slice(&jpeg[..i]);
                out.extend_from_slice(STANDARD_DHT);
                out.extend_from_slice(&jpeg[i..]);
                return Some(out);
            }
            _ => {
                let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
                i += 2 + len;
            }
        }
    }
    None
}

fn decode_jpeg(id: u64, bytes: &[u8]) -> Result<RgbImage, FrameError> {
    let options = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::RGB);
    let decode = |b: &[u8]| {
        let mut d = JpegDecoder::new_with_options(std::io::Cursor::new(b), options);
        let pixels = d.decode()?;
        let info = d.info().expect("headers are decoded after decode()");
        Ok::<_, zune_jpeg::errors::DecodeErrors>((
            usize::from(info.width),
            usize::from(info.height),
            pixels,
        ))
    };
    let result = match decode(bytes) {
        Ok(r) => Ok(r),
        Err(first) => match with_standard_huffman(bytes) {
            Some(fixed) => decode(&fixed),
            None => Err(first),
        },
    };
    let (w, h, pixels) = result.map_err(|e| FrameError::Jpeg {
        id,
        reason: e.to_string(),
    })?;
    RgbImage::new(w, h, pixels).map_err(|e| FrameError::Layout {
        id,
        reason: e.to_string(),
    })
}

impl Frame {
    /// Decodes/converts to RGB.
    ///
    /// # Errors
    /// [`FrameError::Jpeg`] for a corrupt JPEG, [`FrameError::Layout`] for a buffer that does
    /// not match the declared size.
    pub fn to_rgb(&self) -> Result<RgbImage, FrameError> {
        let (w, h) = (self.width as usize, self.height as usize);
        match self.format {
            PixelFormat::Mjpeg => decode_jpeg(self.id, &self.data),
            PixelFormat::Rgb8 => {
                RgbImage::new(w, h, self.data.clone()).map_err(|e| FrameError::Layout {
                    id: self.id,
                    reason: e.to_string(),
                })
            }
            PixelFormat::Yuyv => {
                if self.data.len() < w * h * 2 || w % 2 != 0 {
                    return Err(FrameError::Layout {
                        id: self.id,
                        reason: format!(
                            "YUYV {w}x{h} needs {} bytes and an even width, got {}",
                            w * h * 2,
                            self.data.len()
                        ),
                    });
                }
                let packed = YuvPackedImage {
                    yuy: &self.data[..w * h * 2],
                    yuy_stride: self.width * 2,
                    width: self.width,
                    height: self.height,
                };
                let mut rgb = vec![0u8; w * h * 3];
                yuv::yuyv422_to_rgb(
                    &packed,
                    &mut rgb,
                    self.width * 3,
                    YuvRange::Limited,
                    YuvStandardMatrix::Bt601,
                )
                .map_err(|e| FrameError::Layout {
                    id: self.id,
                    reason: format!("YUYV conversion: {e:?}"),
                })?;
                RgbImage::new(w, h, rgb).map_err(|e| FrameError::Layout {
                    id: self.id,
                    reason: e.to_string(),
                })
            }
        }
    }
}

/// Downscales `img` so its short side is `side` (area-averaging), for the replay buffer.
pub fn downscale(img: &RgbImage, side: usize) -> RgbImage {
    let (w, h) = (img.width(), img.height());
    let short = w.min(h);
    if short <= side {
        return img.clone();
    }
    let (nw, nh) = ((w * side).div_ceil(short), (h * side).div_ceil(short));
    let src = image::RgbImage::from_raw(w as u32, h as u32, img.as_bytes().to_vec())
        .expect("sizes match");
    let small = image::imageops::resize(
        &src,
        nw as u32,
        nh as u32,
        image::imageops::FilterType::Triangle,
    );
    RgbImage::new(nw, nh, small.into_raw()).expect("sizes match")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/data/camera")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn first_frame() -> Vec<u8> {
        let clip = fixture("clip_320x240.mjpeg");
        let end = clip
            .windows(2)
            .position(|w| w == [0xFF, 0xD9])
            .expect("EOI")
            + 2;
        clip[..end].to_vec()
    }

    fn frame(format: PixelFormat, w: u32, h: u32, data: Vec<u8>) -> Frame {
        Frame {
            id: 7,
            captured: Instant::now(),
            width: w,
            height: h,
            format,
            data,
        }
    }

    #[test]
    fn mjpeg_without_huffman_tables_decodes_like_the_original() {
        // frame0_standard_huffman.jpg carries the Annex K tables explicitly; the fixture is
        // the same file with DHT removed and an AVI1 marker added (tests/data/camera/README.md).
        let original = frame(
            PixelFormat::Mjpeg,
            0,
            0,
            fixture("frame0_standard_huffman.jpg"),
        )
        .to_rgb()
        .expect("decodes");
        let stripped = fixture("frame0_no_huffman.jpg");
        assert!(
            with_standard_huffman(&stripped).is_some(),
            "the fixture has no DHT"
        );
        let fixed = frame(PixelFormat::Mjpeg, 0, 0, stripped.clone())
            .to_rgb()
            .expect("decodes with Annex K tables");
        assert_eq!((fixed.width(), fixed.height()), (320, 240));
        assert!(
            fixed.as_bytes() == original.as_bytes(),
            "AVI1 frame decodes to the original pixels"
        );
        // Without the AVI1 marker the decoder has no tables of its own: ours are inserted.
        let no_avi1: Vec<u8> = [&stripped[..2], &stripped[2 + 18..]].concat();
        assert_eq!(
            &no_avi1[..4],
            &[0xFF, 0xD8, 0xFF, 0xE0],
            "JFIF APP0 follows SOI"
        );
        let fixed = frame(PixelFormat::Mjpeg, 0, 0, no_avi1)
            .to_rgb()
            .expect("decodes with inserted tables");
        assert!(
            fixed.as_bytes() == original.as_bytes(),
            "inserted tables decode to the original pixels"
        );
        assert!(
            with_standard_huffman(&first_frame()).is_none(),
            "frames with DHT are left alone"
        );
    }

    #[test]
    fn corrupt_jpeg_is_an_error_naming_the_frame() {
        let mut bytes = vec![0xFF, 0xD8];
        bytes.extend_from_slice(&[0x5A; 600]);
        bytes.extend_from_slice(&[0xFF, 0xD9]);
        let err = frame(PixelFormat::Mjpeg, 0, 0, bytes)
            .to_rgb()
            .expect_err("garbage");
        assert!(
            err.to_string().starts_with("frame 7: corrupt JPEG"),
            "{err}"
        );
    }

    #[test]
    fn yuyv_grey_and_primaries() {
        // BT.601 limited range: Y=16 → black, Y=235 → white, U=V=128 → no colour.
        let data = vec![16, 128, 235, 128, 126, 128, 126, 128];
        let rgb = frame(PixelFormat::Yuyv, 2, 2, data)
            .to_rgb()
            .expect("converts");
        let px = |i: usize| rgb.as_bytes()[i * 3];
        assert!(px(0) <= 1, "black {}", px(0));
        assert!(px(1) >= 254, "white {}", px(1));
        // Y=126: (126−16)·255/219 = 128.1
        assert!((i32::from(px(2)) - 128).abs() <= 1, "grey {}", px(2));
        let err = frame(PixelFormat::Yuyv, 3, 2, vec![0; 12])
            .to_rgb()
            .expect_err("odd width");
        assert!(err.to_string().contains("even width"), "{err}");
    }
}
