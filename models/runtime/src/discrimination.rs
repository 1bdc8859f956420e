//! Held-out instance discrimination: how well an encoder tells each held-out frame's augmented
//! view from every other frame's — the contrastive objective measured on frames training never
//! saw, per frame, so that two encoders judged on the same frames and views can be compared
//! pair by pair with a standard error instead of a fixed tolerance.
//!
//! For views `a_i`, `b_i` of frame `i` (rows L2-normalised after centring), the frame's loss
//! is the symmetric InfoNCE term
//! `ℓ_i = ½ [−log softmax_j(â_i·b̂_j / τ)_i − log softmax_j(b̂_i·â_j / τ)_i]`,
//! with `τ` = [`TEMPERATURE`]. Its mean is the SimCLR loss of the held-out set (Wang & Isola,
//! 2020: alignment and uniformity in one number, in the units the learner optimises); unlike
//! alignment or uniformity alone it cannot improve by a change of scale or by trading one for
//! the other.

use serde::{Deserialize, Serialize};

/// Temperature of the held-out loss: the SimCLR CIFAR recipe's 0.5.
pub const TEMPERATURE: f64 = 0.5;

fn unit(v: &[f32]) -> Vec<f64> {
    let norm = v
        .iter()
        .map(|x| f64::from(*x).powi(2))
        .sum::<f64>()
        .sqrt()
        .max(1e-12);
    v.iter().map(|x| f64::from(*x) / norm).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `−log softmax(row / τ)[i]`, stably.
fn nll(row: &[f64], i: usize, tau: f64) -> f64 {
    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let lse = max / tau
        + row
            .iter()
            .map(|s| ((s - max) / tau).exp())
            .sum::<f64>()
            .ln();
    lse - row[i] / tau
}

/// The per-frame symmetric InfoNCE loss of paired views `a[i]`, `b[i]` (see the module).
///
/// # Panics
/// When `a` and `b` differ in length or hold fewer than two frames.
pub fn view_losses(a: &[Vec<f32>], b: &[Vec<f32>], tau: f64) -> Vec<f64> {
    assert!(
        a.len() >= 2 && a.len() == b.len(),
        "view losses need two or more paired views ({} vs {})",
        a.len(),
        b.len()
    );
    let (a, b): (Vec<Vec<f64>>, Vec<Vec<f64>>) = (
        a.iter().map(|r| unit(r)).collect(),
        b.iter().map(|r| unit(r)).collect(),
    );
    let sim: Vec<Vec<f64>> = a
        .iter()
        .map(|x| b.iter().map(|y| dot(x, y)).collect())
        .collect();
    (0..a.len())
        .map(|i| {
            let column: Vec<f64> = sim.iter().map(|r| r[i]).collect();
            0.5 * (nll(&sim[i], i, tau) + nll(&column, i, tau))
        })
        .collect()
}

/// A paired comparison of two encoders' per-frame losses on the same frames and views.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Paired {
    /// Mean of `candidate − baseline` (negative: the candidate discriminates better).
    pub mean: f64,
    /// Its standard error (sample standard deviation / √n).
    pub se: f64,
}

impl Paired {
    /// Compares per-frame losses.
    ///
    /// # Panics
    /// When the two differ in length or hold fewer than two frames.
    pub fn of(candidate: &[f64], baseline: &[f64]) -> Self {
        assert!(
            candidate.len() >= 2 && candidate.len() == baseline.len(),
            "a paired comparison needs the same two or more frames ({} vs {})",
            candidate.len(),
            baseline.len()
        );
        let n = candidate.len() as f64;
        let d: Vec<f64> = candidate.iter().zip(baseline).map(|(c, b)| c - b).collect();
        let mean = d.iter().sum::<f64>() / n;
        let var = d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        Self {
            mean,
            se: (var / n).sqrt(),
        }
    }

    /// `mean / se` (0 when the two are identical frame by frame).
    pub fn t(&self) -> f64 {
        if self.se > 0.0 {
            self.mean / self.se
        } else if self.mean == 0.0 {
            0.0
        } else {
            self.mean.signum() * f64::INFINITY
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_losses_match_hand_values() {
        // Views matched, orthogonal frames, τ 0.5: each row softmaxes (2, 0) at its own index,
        // −log(e²/(e²+1)) = ln(1 + e⁻²) = 0.126928 in both directions.
        let a = vec![vec![1.0, 0.0], vec![0.0, 3.0]];
        let b = vec![vec![2.0, 0.0], vec![0.0, 1.0]];
        for l in view_losses(&a, &b, 0.5) {
            assert!((l - (1.0 + (-2.0f64).exp()).ln()).abs() < 1e-12, "{l}");
        }
        // Views swapped: the right match scores 0 against 2, ln(1 + e²) = 2.126928.
        let swapped = vec![vec![0.0, 1.0], vec![2.0, 0.0]];
        for l in view_losses(&a, &swapped, 0.5) {
            assert!((l - (1.0 + 2.0f64.exp()).ln()).abs() < 1e-12, "{l}");
        }
        // Asymmetric case, three frames in the plane, τ 1 (numpy: a = unit rows, S = a @ b.T,
        // l_i = ½(−log_softmax(S)[i, i] − log_softmax(S.T)[i, i])).
        let a = vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![1.0, 1.0]];
        let b = vec![vec![1.0, 0.0], vec![1.0, 1.0], vec![0.0, 1.0]];
        let s = std::f64::consts::FRAC_1_SQRT_2;
        let sim = [[1.0, s, 0.0], [0.0, s, 1.0], [s, 1.0, s]];
        let lse = |v: [f64; 3]| v.iter().map(|x| x.exp()).sum::<f64>().ln();
        let got = view_losses(&a, &b, 1.0);
        for i in 0..3 {
            let row = lse(sim[i]) - sim[i][i];
            let col = lse([sim[0][i], sim[1][i], sim[2][i]]) - sim[i][i];
            assert!((got[i] - 0.5 * (row + col)).abs() < 1e-12, "{got:?}");
        }
    }

    #[test]
    fn paired_differences_give_mean_and_standard_error() {
        // d = 1, 2, 3: mean 2, sample variance 1, se 1/√3.
        let p = Paired::of(&[1.0, 2.0, 3.0], &[0.0, 0.0, 0.0]);
        assert!((p.mean - 2.0).abs() < 1e-12 && (p.se - 3f64.sqrt().recip()).abs() < 1e-12);
        assert!((p.t() - 2.0 * 3f64.sqrt()).abs() < 1e-9);
        let same = Paired::of(&[1.0, 2.0], &[1.0, 2.0]);
        assert_eq!((same.mean, same.se, same.t()), (0.0, 0.0, 0.0));
        // A constant shift has no spread: infinitely significant.
        assert_eq!(Paired::of(&[1.0, 2.0], &[2.0, 3.0]).t(), f64::NEG_INFINITY);
    }
}
