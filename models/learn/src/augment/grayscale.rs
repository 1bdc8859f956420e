//! Random grayscale (p = 0.2): ITU-R 601 luma copied into all three channels, as
//! torchvision's `RandomGrayscale`.

use super::FloatImage;

/// Luma weights (ITU-R BT.601), as used by torchvision and PIL.
pub const LUMA: [f32; 3] = [0.299, 0.587, 0.114];

/// The luma plane of a CHW image.
pub fn luma(image: &FloatImage) -> Vec<f32> {
    let plane = image.width * image.height;
    (0..plane)
        .map(|i| {
            LUMA[0] * image.chw[i]
                + LUMA[1] * image.chw[plane + i]
                + LUMA[2] * image.chw[2 * plane + i]
        })
        .collect()
}

/// Replaces every channel by the luma.
pub fn to_grayscale(image: &mut FloatImage) {
    let plane = image.width * image.height;
    let l = luma(image);
    for c in 0..3 {
        image.chw[c * plane..(c + 1) * plane].copy_from_slice(&l);
    }
}
