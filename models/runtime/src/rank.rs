//! Is one encoder's embedding space richer than another's on the same frames? The difference
//! in effective rank (RankMe, Garrido et al. 2023: the rank of a self-supervised
//! representation predicts its downstream accuracy without labels) with a delete-a-group
//! jackknife standard error, so that a judge can ask for a gain beyond what another draw of
//! held-out frames would give.
//!
//! The jackknife: frames fall into [`GROUPS`] groups by index; `θ_g` is the difference
//! computed with group `g` left out, and `se² = (G − 1)/G · Σ (θ_g − θ̄)²` (Efron & Tibshirani,
//! 1993, §11.5: the grouped jackknife of a smooth statistic).

use serde::{Deserialize, Serialize};

use crate::health::effective_rank;

/// Jackknife groups (frame `i` is in group `i mod GROUPS`).
pub const GROUPS: usize = 8;

/// Candidate − baseline effective rank on the same frames.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RankGain {
    /// The difference on every frame.
    pub difference: f64,
    /// Its jackknife standard error.
    pub se: f64,
}

/// Compares the effective ranks of two encoders' embeddings of the same frames (row `i` of
/// each is frame `i`).
///
/// # Panics
/// When the two differ in length or hold fewer than three frames.
pub fn rank_gain(candidate: &[Vec<f32>], baseline: &[Vec<f32>]) -> RankGain {
    assert!(
        candidate.len() >= 3 && candidate.len() == baseline.len(),
        "a rank comparison needs the same three or more frames ({} vs {})",
        candidate.len(),
        baseline.len()
    );
    let difference = effective_rank(candidate) - effective_rank(baseline);
    let groups = GROUPS.min(candidate.len());
    let without = |rows: &[Vec<f32>], g: usize| -> Vec<Vec<f32>> {
        rows.iter()
            .enumerate()
            .filter(|(i, _)| i % groups != g)
            .map(|(_, r)| r.clone())
            .collect()
    };
    let thetas: Vec<f64> = (0..groups)
        .map(|g| effective_rank(&without(candidate, g)) - effective_rank(&without(baseline, g)))
        .collect();
    let k = groups as f64;
    let mean = thetas.iter().sum::<f64>() / k;
    let spread: f64 = thetas.iter().map(|t| (t - mean).powi(2)).sum();
    RankGain {
        difference,
        se: ((k - 1.0) / k * spread).sqrt(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random rows (splitmix64 → uniform in [−1, 1)).
    fn rows(n: usize, d: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut state = seed;
        let mut next = move || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            ((z ^ (z >> 31)) >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0
        };
        (0..n).map(|_| (0..d).map(|_| next()).collect()).collect()
    }

    #[test]
    fn a_rotated_copy_has_the_same_rank_in_every_jackknife_sample() {
        let base = rows(40, 6, 1);
        // A permutation with sign flips is orthogonal and exact in floating point.
        let rotated: Vec<Vec<f32>> = base
            .iter()
            .map(|r| vec![-r[3], r[0], r[5], -r[1], r[2], r[4]])
            .collect();
        let g = rank_gain(&rotated, &base);
        assert!(g.difference.abs() < 1e-9 && g.se < 1e-9, "{g:?}");
    }

    #[test]
    fn a_space_spread_over_more_dimensions_gains_beyond_its_standard_error() {
        // The baseline uses 2 of 8 dimensions (the rest zero); the candidate keeps those and
        // spreads into the other 6: a larger effective rank on every subset of frames.
        let base2 = rows(64, 2, 2);
        let extra = rows(64, 6, 3);
        let base: Vec<Vec<f32>> = base2
            .iter()
            .map(|r| [r.as_slice(), &[0.0; 6]].concat())
            .collect();
        let richer: Vec<Vec<f32>> = base2
            .iter()
            .zip(&extra)
            .map(|(a, b)| [a.as_slice(), b].concat())
            .collect();
        let g = rank_gain(&richer, &base);
        let (rb, rr) = (effective_rank(&base), effective_rank(&richer));
        assert!(rb <= 2.0 + 1e-9 && rr > 4.0, "{rb} {rr}");
        assert!((g.difference - (rr - rb)).abs() < 1e-12, "{g:?}");
        assert!(g.se > 0.0 && g.difference > 2.0 * g.se, "{g:?}");
        // And the other way round, a loss of the same size.
        let back = rank_gain(&base, &richer);
        assert!((back.difference + g.difference).abs() < 1e-12 && (back.se - g.se).abs() < 1e-12);
    }

    #[test]
    fn the_jackknife_matches_its_formula_on_three_frames() {
        // Candidate e1, e2, e3: centred, an equilateral triangle, two equal singular values,
        // effective rank 2. Baseline e1, e1, −e1: centred, one line, rank 1. Difference 1.
        // Three groups, one frame each. Any two distinct unit rows centre to ±(a − b)/2, rank
        // 1; the baseline's pair e1, e1 centres to zero, rank 0. Leaving out frame 0 or 1:
        // θ = 1 − 1 = 0; leaving out frame 2: θ = 1 − 0 = 1. θ̄ = 1/3,
        // se² = 2/3 · (1/9 + 1/9 + 4/9) = 4/9, se = 2/3.
        let candidate = vec![
            vec![1.0, 0.0, 0.0],
            vec![0.0, 1.0, 0.0],
            vec![0.0, 0.0, 1.0],
        ];
        let baseline = vec![
            vec![1.0, 0.0, 0.0],
            vec![1.0, 0.0, 0.0],
            vec![-1.0, 0.0, 0.0],
        ];
        let g = rank_gain(&candidate, &baseline);
        // (effective_rank centres in f32: 1e-7 of rounding.)
        assert!((g.difference - 1.0).abs() < 1e-6, "{g:?}");
        assert!((g.se - 2.0 / 3.0).abs() < 1e-9, "{g:?}");
    }
}
