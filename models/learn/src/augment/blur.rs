//! Gaussian blur (p = 0.5, σ ~ U(0.1, 2.0), kernel 10% of the image side), separable,
//! with reflect padding so a constant image stays constant.

use super::FloatImage;

/// The odd kernel size for an image side: 10% of the side, at least 3.
pub fn kernel_size(side: usize) -> usize {
    let k = (side as f64 * 0.1) as usize;
    (k.max(3)) | 1
}

/// The normalised 1-D Gaussian of `size` taps and standard deviation `sigma`.
pub fn kernel(size: usize, sigma: f32) -> Vec<f32> {
    let r = (size / 2) as f32;
    let mut k: Vec<f32> = (0..size)
        .map(|i| {
            let d = i as f32 - r;
            (-(d * d) / (2.0 * sigma * sigma)).exp()
        })
        .collect();
    let sum: f32 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= sum);
    k
}

/// Reflects an index into `0..len` (`-1 → 1`, `len → len - 2`), as numpy's `reflect` mode.
fn reflect(i: isize, len: usize) -> usize {
    let n = len as isize;
    if n == 1 {
        return 0;
    }
    let period = 2 * (n - 1);
    let mut m = i.rem_euclid(period);
    if m >= n {
        m = period - m;
    }
    m as usize
}

/// Blurs the image in place with a separable Gaussian of `size` taps.
pub fn gaussian_blur(image: &mut FloatImage, sigma: f32, size: usize) {
    let k = kernel(size, sigma);
    let r = (size / 2) as isize;
    let (w, h) = (image.width, image.height);
    let mut tmp = vec![0.0f32; w * h];
    for plane in image.chw.chunks_mut(w * h) {
        for y in 0..h {
            for x in 0..w {
                tmp[y * w + x] = k
                    .iter()
                    .enumerate()
                    .map(|(t, kv)| kv * plane[y * w + reflect(x as isize + t as isize - r, w)])
                    .sum();
            }
        }
        for y in 0..h {
            for x in 0..w {
                plane[y * w + x] = k
                    .iter()
                    .enumerate()
                    .map(|(t, kv)| kv * tmp[reflect(y as isize + t as isize - r, h) * w + x])
                    .sum();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_matches_numpy_reflect_mode() {
        // np.pad(np.arange(4), 2, mode="reflect") == [2, 1, 0, 1, 2, 3, 2, 1]
        let got: Vec<usize> = (-2..6).map(|i| reflect(i, 4)).collect();
        assert_eq!(got, vec![2, 1, 0, 1, 2, 3, 2, 1]);
    }

    #[test]
    fn kernel_is_normalised_and_symmetric() {
        let k = kernel(5, 1.0);
        assert!((k.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((k[0] - k[4]).abs() < 1e-7 && (k[1] - k[3]).abs() < 1e-7);
        // exp(-2)/(2exp(-2)+2exp(-0.5)+1) = 0.05448868
        assert!((k[0] - 0.054_488_68).abs() < 1e-6, "{}", k[0]);
    }

    #[test]
    fn kernel_sizes_are_odd_tenth_of_side() {
        assert_eq!(kernel_size(32), 3);
        assert_eq!(kernel_size(96), 9);
        assert_eq!(kernel_size(224), 23);
    }
}
