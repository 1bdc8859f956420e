//! Colour distortion of strength `s` (Appendix A): brightness, contrast and saturation
//! factors from U(max(0, 1 − 0.8s), 1 + 0.8s), hue shift from U(−0.2s, 0.2s), applied in a
//! random order — torchvision's `ColorJitter(0.8s, 0.8s, 0.8s, 0.2s)` semantics.

use rand::{Rng, RngExt, seq::SliceRandom};

use super::FloatImage;
use super::grayscale::luma;

/// One of the four jitter operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JitterOp {
    /// Multiply by a factor.
    Brightness,
    /// Blend with the mean luma.
    Contrast,
    /// Blend with the per-pixel luma.
    Saturation,
    /// Rotate the hue.
    Hue,
}

/// Drawn jitter parameters for one view.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JitterParams {
    /// Order the four ops are applied in.
    pub order: [JitterOp; 4],
    /// Brightness factor (1 = unchanged).
    pub brightness: f32,
    /// Contrast factor (1 = unchanged).
    pub contrast: f32,
    /// Saturation factor (1 = unchanged).
    pub saturation: f32,
    /// Hue shift in turns, in [−0.5, 0.5] (0 = unchanged).
    pub hue: f32,
}

impl JitterParams {
    /// Draws parameters for strength `s`.
    pub fn sample(strength: f32, rng: &mut impl Rng) -> Self {
        let mut factor = |amount: f32| {
            if amount <= 0.0 {
                1.0
            } else {
                rng.random_range((1.0 - amount).max(0.0)..=1.0 + amount)
            }
        };
        let brightness = factor(0.8 * strength);
        let contrast = factor(0.8 * strength);
        let saturation = factor(0.8 * strength);
        let h = (0.2 * strength).min(0.5);
        let hue = if h > 0.0 {
            rng.random_range(-h..=h)
        } else {
            0.0
        };
        let mut order = [
            JitterOp::Brightness,
            JitterOp::Contrast,
            JitterOp::Saturation,
            JitterOp::Hue,
        ];
        order.shuffle(rng);
        Self {
            order,
            brightness,
            contrast,
            saturation,
            hue,
        }
    }

    /// Applies the drawn jitter in place; neutral factors leave the image bit-identical.
    pub fn apply(&self, image: &mut FloatImage) {
        for op in self.order {
            match op {
                JitterOp::Brightness if self.brightness != 1.0 => {
                    image
                        .chw
                        .iter_mut()
                        .for_each(|v| *v = (*v * self.brightness).clamp(0.0, 1.0));
                }
                JitterOp::Contrast if self.contrast != 1.0 => {
                    let l = luma(image);
                    let mean = l.iter().sum::<f32>() / l.len() as f32;
                    blend(&mut image.chw, |_| mean, self.contrast);
                }
                JitterOp::Saturation if self.saturation != 1.0 => {
                    let l = luma(image);
                    let plane = l.len();
                    blend(&mut image.chw, |i| l[i % plane], self.saturation);
                }
                JitterOp::Hue if self.hue != 0.0 => shift_hue(image, self.hue),
                _ => {}
            }
        }
    }
}

/// `x ← clamp(f·x + (1 − f)·other(i))`.
fn blend(chw: &mut [f32], other: impl Fn(usize) -> f32, factor: f32) {
    for (i, v) in chw.iter_mut().enumerate() {
        *v = (factor * *v + (1.0 - factor) * other(i)).clamp(0.0, 1.0);
    }
}

/// Rotates the hue of every pixel by `shift` turns through HSV.
fn shift_hue(image: &mut FloatImage, shift: f32) {
    let plane = image.width * image.height;
    let (r, rest) = image.chw.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for i in 0..plane {
        let (h, s, v) = rgb_to_hsv(r[i], g[i], b[i]);
        let (nr, ng, nb) = hsv_to_rgb((h + shift).rem_euclid(1.0), s, v);
        (r[i], g[i], b[i]) = (nr, ng, nb);
    }
}

/// RGB in [0, 1] → (hue in turns, saturation, value).
pub fn rgb_to_hsv(r: f32, g: f32, b: f32) -> (f32, f32, f32) {
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let delta = max - min;
    let s = if max > 0.0 { delta / max } else { 0.0 };
    if delta == 0.0 {
        return (0.0, s, max);
    }
    let h = if max == r {
        ((g - b) / delta).rem_euclid(6.0)
    } else if max == g {
        (b - r) / delta + 2.0
    } else {
        (r - g) / delta + 4.0
    };
    (h / 6.0, s, max)
}

/// (hue in turns, saturation, value) → RGB in [0, 1].
pub fn hsv_to_rgb(h: f32, s: f32, v: f32) -> (f32, f32, f32) {
    let h6 = (h * 6.0).rem_euclid(6.0);
    let sector = h6.floor();
    let f = h6 - sector;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    match sector as u8 {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hsv_round_trip_and_known_values() {
        // colorsys.rgb_to_hsv(1.0, 0.5, 0.0) == (0.08333.., 1.0, 1.0)
        let (h, s, v) = rgb_to_hsv(1.0, 0.5, 0.0);
        assert!((h - 1.0 / 12.0).abs() < 1e-6 && s == 1.0 && v == 1.0);
        // colorsys.rgb_to_hsv(0.2, 0.4, 0.8) == (0.61111.., 0.75, 0.8)
        let (h, s, v) = rgb_to_hsv(0.2, 0.4, 0.8);
        assert!((h - 0.611_111).abs() < 1e-5 && (s - 0.75).abs() < 1e-6 && (v - 0.8).abs() < 1e-6);
        let (r, g, b) = hsv_to_rgb(h, s, v);
        assert!((r - 0.2).abs() < 1e-6 && (g - 0.4).abs() < 1e-6 && (b - 0.8).abs() < 1e-6);
    }

    #[test]
    fn hue_shift_by_a_third_rotates_primaries() {
        // Pure red shifted by 1/3 turn is pure green.
        let mut img = FloatImage {
            width: 1,
            height: 1,
            chw: vec![1.0, 0.0, 0.0],
        };
        shift_hue(&mut img, 1.0 / 3.0);
        assert!(
            (img.chw[0]).abs() < 1e-6 && (img.chw[1] - 1.0).abs() < 1e-6 && img.chw[2].abs() < 1e-6
        );
    }

    #[test]
    fn contrast_zero_gives_mean_luma() {
        let mut img = FloatImage {
            width: 2,
            height: 1,
            chw: vec![1.0, 0.0, 1.0, 0.0, 1.0, 0.0],
        };
        let p = JitterParams {
            order: [
                JitterOp::Contrast,
                JitterOp::Brightness,
                JitterOp::Saturation,
                JitterOp::Hue,
            ],
            brightness: 1.0,
            contrast: 0.0,
            saturation: 1.0,
            hue: 0.0,
        };
        p.apply(&mut img);
        // luma: px0 = 0.299+0.114 = 0.413, px1 = 0.587; mean = 0.5
        assert!(
            img.chw.iter().all(|v| (v - 0.5).abs() < 1e-6),
            "{:?}",
            img.chw
        );
    }
}
