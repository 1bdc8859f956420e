//! Horizontal flip (p = 0.5 in the paper).

use super::FloatImage;

/// Mirrors the image left–right in place.
pub fn hflip(image: &mut FloatImage) {
    let w = image.width;
    for row in image.chw.chunks_mut(w) {
        row.reverse();
    }
}
