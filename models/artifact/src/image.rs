//! An owned, interleaved 8-bit RGB image: the input of every augmentation.

use crate::ArtifactError;

/// An 8-bit RGB image stored row-major, channels interleaved (`RGBRGB…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    width: usize,
    height: usize,
    data: Vec<u8>,
}

impl RgbImage {
    /// Wraps an interleaved RGB buffer.
    ///
    /// # Errors
    /// [`ArtifactError::ImageSize`] when `data.len() != width * height * 3` or a side is zero.
    pub fn new(width: usize, height: usize, data: Vec<u8>) -> Result<Self, ArtifactError> {
        let expected = width * height * 3;
        if data.len() != expected || width == 0 || height == 0 {
            return Err(ArtifactError::ImageSize {
                width,
                height,
                len: data.len(),
                expected,
            });
        }
        Ok(Self {
            width,
            height,
            data,
        })
    }

    /// Builds an image from planar CHW bytes (the CIFAR binary layout: all R, then G, then B).
    ///
    /// # Errors
    /// [`ArtifactError::ImageSize`] when `planar.len() != width * height * 3`.
    pub fn from_planar(width: usize, height: usize, planar: &[u8]) -> Result<Self, ArtifactError> {
        let plane = width * height;
        if planar.len() != plane * 3 {
            return Err(ArtifactError::ImageSize {
                width,
                height,
                len: planar.len(),
                expected: plane * 3,
            });
        }
        let mut data = Vec::with_capacity(plane * 3);
        for i in 0..plane {
            data.extend_from_slice(&[planar[i], planar[plane + i], planar[2 * plane + i]]);
        }
        Self::new(width, height, data)
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// The interleaved RGB bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.data
    }

    /// The pixel at column `x`, row `y`.
    ///
    /// # Panics
    /// When `(x, y)` lies outside the image.
    pub fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        assert!(
            x < self.width && y < self.height,
            "pixel ({x},{y}) outside {}x{}",
            self.width,
            self.height
        );
        let i = (y * self.width + x) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }
}
