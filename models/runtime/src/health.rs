//! Label-free health of an embedding space, for deciding on the board whether a fine-tuned
//! encoder may replace the running one:
//!
//! - **alignment** (Wang & Isola, 2020): `E ‖f̂(x) − f̂(x⁺)‖²` over positive pairs (two views
//!   of one frame) — lower is better, 0 when views map to one point;
//! - **uniformity**: `log E exp(−2‖f̂(x) − f̂(y)‖²)` over distinct frames — lower is better,
//!   0 when everything collapsed to one point;
//! - **effective rank** (Roy & Vetterli, 2007; RankMe, Garrido et al. 2023): `exp(H(p))` with
//!   `p` the normalised singular values of the centred embedding matrix — between 1 (all
//!   variation along one direction) and the dimension;
//! - **collapse**: effective rank below a floor, or the per-dimension spread of the
//!   normalised embeddings vanishing.
//!
//! Everything here is plain `f32`/`f64` over rows, so the board runs it on tract outputs.
//! [`Health::measure`] centres the embeddings on their mean first (see there).

use serde::{Deserialize, Serialize};

use crate::discrimination::{self, Paired};
use crate::rank::{RankGain, rank_gain};

fn normalized(v: &[f32]) -> Vec<f64> {
    let norm = v
        .iter()
        .map(|x| f64::from(*x).powi(2))
        .sum::<f64>()
        .sqrt()
        .max(1e-12);
    v.iter().map(|x| f64::from(*x) / norm).collect()
}

fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum()
}

/// Mean squared distance between the normalised rows of `a` and `b` (paired by index).
///
/// # Panics
/// When `a` and `b` differ in length or are empty.
pub fn alignment(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    assert!(
        !a.is_empty() && a.len() == b.len(),
        "alignment needs equal, non-empty sets of pairs ({} vs {})",
        a.len(),
        b.len()
    );
    a.iter()
        .zip(b)
        .map(|(x, y)| sq_dist(&normalized(x), &normalized(y)))
        .sum::<f64>()
        / a.len() as f64
}

/// `log mean_{i<j} exp(−t ‖x̂_i − x̂_j‖²)` with `t = 2`, computed stably (log-sum-exp).
///
/// # Panics
/// With fewer than two rows.
pub fn uniformity(x: &[Vec<f32>]) -> f64 {
    assert!(x.len() >= 2, "uniformity needs at least two embeddings");
    let n: Vec<Vec<f64>> = x.iter().map(|r| normalized(r)).collect();
    let mut terms = Vec::with_capacity(n.len() * (n.len() - 1) / 2);
    for i in 0..n.len() {
        for j in i + 1..n.len() {
            terms.push(-2.0 * sq_dist(&n[i], &n[j]));
        }
    }
    let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    max + (terms.iter().map(|t| (t - max).exp()).sum::<f64>() / terms.len() as f64).ln()
}

/// Eigenvalues of the symmetric `d × d` matrix `a` (row-major) by cyclic Jacobi rotations.
fn symmetric_eigenvalues(mut a: Vec<f64>, d: usize) -> Vec<f64> {
    for _sweep in 0..100 {
        let off: f64 = (0..d)
            .flat_map(|i| (0..d).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * d + j].powi(2))
            .sum();
        let scale: f64 = (0..d)
            .map(|i| a[i * d + i].powi(2))
            .sum::<f64>()
            .max(1e-300);
        if off <= 1e-22 * scale {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                let apq = a[p * d + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * d + q] - a[p * d + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..d {
                    let (akp, akq) = (a[k * d + p], a[k * d + q]);
                    a[k * d + p] = c * akp - s * akq;
                    a[k * d + q] = s * akp + c * akq;
                }
                for k in 0..d {
                    let (apk, aqk) = (a[p * d + k], a[q * d + k]);
                    a[p * d + k] = c * apk - s * aqk;
                    a[q * d + k] = s * apk + c * aqk;
                }
            }
        }
    }
    (0..d).map(|i| a[i * d + i]).collect()
}

/// Singular values of the `n × d` matrix of rows `x`, largest first: square roots of the
/// eigenvalues of the smaller of `xᵀx` (`d × d`) and `xxᵀ` (`n × n`), which share their
/// nonzero eigenvalues (the shorter list is padded with zeros to `d`).
pub fn singular_values(x: &[Vec<f32>]) -> Vec<f64> {
    let d = x.first().map_or(0, Vec::len);
    let n = x.len();
    let (side, entry): (usize, Box<dyn Fn(usize, usize) -> f64>) = if n < d {
        (n, Box::new(|i, j| dot32(&x[i], &x[j])))
    } else {
        (
            d,
            Box::new(|i, j| x.iter().map(|r| f64::from(r[i]) * f64::from(r[j])).sum()),
        )
    };
    let mut gram = vec![0.0f64; side * side];
    for i in 0..side {
        for j in i..side {
            let v = entry(i, j);
            gram[i * side + j] = v;
            gram[j * side + i] = v;
        }
    }
    let mut s: Vec<f64> = symmetric_eigenvalues(gram, side)
        .into_iter()
        .map(|l| l.max(0.0).sqrt())
        .collect();
    s.resize(d.max(s.len()), 0.0);
    s.sort_by(|a, b| b.total_cmp(a));
    s
}

fn dot32(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum()
}

/// `exp(−Σ p_k log p_k)`, `p = σ / Σσ`, of the L2-normalised rows of `x` after removing their
/// mean: `h` comes out of ReLU and average pooling, so every row is non-negative and the
/// shared mean direction would otherwise dominate the spectrum.
pub fn effective_rank(x: &[Vec<f32>]) -> f64 {
    let unit: Vec<Vec<f64>> = x.iter().map(|r| normalized(r)).collect();
    let d = unit.first().map_or(0, Vec::len);
    let mut mean = vec![0.0f64; d];
    for r in &unit {
        for (m, v) in mean.iter_mut().zip(r) {
            *m += v / unit.len() as f64;
        }
    }
    let rows: Vec<Vec<f32>> = unit
        .iter()
        .map(|r| r.iter().zip(&mean).map(|(v, m)| (v - m) as f32).collect())
        .collect();
    let s = singular_values(&rows);
    let total: f64 = s.iter().sum();
    if total <= 0.0 {
        return 0.0;
    }
    let entropy: f64 = s
        .iter()
        .map(|v| v / total)
        .filter(|p| *p > 0.0)
        .map(|p| -p * p.ln())
        .sum();
    entropy.exp()
}

/// Mean over dimensions of the standard deviation of the normalised rows (≈ `1/√d` for a
/// spread-out space, → 0 when collapsed).
pub fn mean_dimension_std(x: &[Vec<f32>]) -> f64 {
    let n: Vec<Vec<f64>> = x.iter().map(|r| normalized(r)).collect();
    let d = n.first().map_or(0, Vec::len);
    if n.len() < 2 || d == 0 {
        return 0.0;
    }
    let count = n.len() as f64;
    (0..d)
        .map(|k| {
            let mean = n.iter().map(|r| r[k]).sum::<f64>() / count;
            (n.iter().map(|r| (r[k] - mean).powi(2)).sum::<f64>() / count).sqrt()
        })
        .sum::<f64>()
        / d as f64
}

/// The health of one encoder on one held-out set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// Frames measured.
    pub frames: usize,
    /// Alignment of two augmented views per frame (lower is better).
    pub alignment: f64,
    /// Uniformity of the clean (centre-crop) embeddings (lower is better).
    pub uniformity: f64,
    /// Effective rank of the clean embeddings (higher is better).
    pub effective_rank: f64,
    /// Mean per-dimension std of the normalised clean embeddings.
    pub mean_dimension_std: f64,
    /// kNN top-1 (%) on a labelled probe set, when one ships with the model.
    pub knn_top1: Option<f64>,
    /// Mean held-out instance-discrimination loss of the view pairs
    /// ([`crate::discrimination`]; lower is better). None in records written before it.
    #[serde(default)]
    pub view_loss: Option<f64>,
}

impl Health {
    /// Measures `clean` embeddings (one per frame) and two augmented views per frame.
    ///
    /// # Panics
    /// With fewer than two frames, or views not paired with each other.
    ///
    /// Every row is first centred on the mean clean embedding: `h` comes out of ReLU and
    /// average pooling, so all its coordinates are non-negative and, uncentred, every pair of
    /// frames has a cosine near 1 — uniformity would sit near its worst value 0 for any model.
    /// The per-dimension spread is taken before centring (it does not depend on it).
    pub fn measure(clean: &[Vec<f32>], view_a: &[Vec<f32>], view_b: &[Vec<f32>]) -> Self {
        Measurement::of(clean, view_a, view_b).health
    }
}

/// A model's [`Health`] on one held-out set with its per-frame view losses, which a paired
/// comparison with another model on the same frames and views needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// The summary.
    pub health: Health,
    /// Per-frame held-out instance-discrimination loss ([`discrimination::view_losses`]).
    pub view_losses: Vec<f64>,
    /// The clean embeddings, centred, one row per frame (for [`rank_gain`]).
    pub clean: Vec<Vec<f32>>,
}

impl Measurement {
    /// Measures `clean` embeddings (one per frame) and two augmented views per frame, every
    /// row centred on the mean clean embedding first (see [`Health::measure`]).
    ///
    /// # Panics
    /// With fewer than two frames, or views not paired with each other.
    pub fn of(clean: &[Vec<f32>], view_a: &[Vec<f32>], view_b: &[Vec<f32>]) -> Self {
        let d = clean.first().map_or(0, Vec::len);
        let mut mean = vec![0.0f32; d];
        for r in clean {
            for (m, v) in mean.iter_mut().zip(r) {
                *m += v / clean.len() as f32;
            }
        }
        let centre = |rows: &[Vec<f32>]| -> Vec<Vec<f32>> {
            rows.iter()
                .map(|r| r.iter().zip(&mean).map(|(v, m)| v - m).collect())
                .collect()
        };
        let (c, a, b) = (centre(clean), centre(view_a), centre(view_b));
        let view_losses = discrimination::view_losses(&a, &b, discrimination::TEMPERATURE);
        let view_loss = view_losses.iter().sum::<f64>() / view_losses.len() as f64;
        let health = Health {
            frames: clean.len(),
            alignment: alignment(&a, &b),
            uniformity: uniformity(&c),
            effective_rank: effective_rank(&c),
            mean_dimension_std: mean_dimension_std(clean),
            knn_top1: None,
            view_loss: Some(view_loss),
        };
        Self {
            health,
            view_losses,
            clean: c,
        }
    }
}

/// When a candidate may replace the running model: it must tell held-out frames apart
/// measurably better ([`crate::discrimination`]: the contrastive objective on frames training
/// never saw, compared frame by frame), not be collapsed, and — where the optional guards are
/// set — not be worse by more than their margins. The effective-rank comparison
/// ([`crate::rank`]) is always measured and recorded; as a gate it is optional, because the
/// rank moves both ways as a camera is learnt (down on a noisy night camera as the noise is
/// learnt away, up on a foggy one as washed-out frames spread; docs/finetune.md).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tolerance {
    /// The candidate's held-out view loss must be below the other model's by at least this
    /// many standard errors of the per-frame paired difference (2: a candidate no better than
    /// the running model passes about 2.5 % of the time). Negative values accept worse
    /// candidates (tests of the swap mechanics do).
    pub view_loss_se: f64,
    /// Optional guard: the effective rank may fall by at most this many jackknife standard
    /// errors.
    pub rank_se: Option<f64>,
    /// Optional guard: alignment may grow by at most this fraction.
    pub alignment: Option<f64>,
    /// Optional guard: uniformity may grow by at most this much (a log: a ratio of kernel
    /// means).
    pub uniformity: Option<f64>,
    /// Optional guard: effective rank may shrink by at most this fraction.
    pub effective_rank: Option<f64>,
    /// Below this effective rank the space counts as collapsed, whatever the running model.
    pub collapse_rank: f64,
    /// Below this mean per-dimension std the space counts as collapsed.
    pub collapse_std: f64,
    /// kNN top-1 may drop by this many points.
    pub knn_points: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Self {
            view_loss_se: 2.0,
            rank_se: None,
            alignment: None,
            uniformity: None,
            effective_rank: None,
            collapse_rank: 2.0,
            collapse_std: 1e-3,
            knn_points: 1.0,
        }
    }
}

/// Whether a candidate may replace the running model, with the reasons when not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// True when every check passed.
    pub accept: bool,
    /// The candidate is broken (collapsed or non-finite), not merely no better: the learner
    /// restarts from the running model rather than training on from it.
    #[serde(default)]
    pub broken: bool,
    /// One line per failed check.
    pub reasons: Vec<String>,
    /// Candidate − running model in effective rank.
    #[serde(default)]
    pub rank: Option<RankGain>,
    /// Candidate − running model, per frame, in held-out view loss.
    #[serde(default)]
    pub view_loss: Option<Paired>,
}

impl Tolerance {
    /// Compares `candidate` with `running` on the same frames and views.
    pub fn judge(&self, candidate: &Measurement, running: &Measurement) -> Verdict {
        let c = &candidate.health;
        let mut reasons = Vec::new();
        let finite = [
            c.alignment,
            c.uniformity,
            c.effective_rank,
            c.mean_dimension_std,
        ]
        .iter()
        .chain(&candidate.view_losses)
        .all(|v| v.is_finite());
        if !finite {
            reasons.push("non-finite health metrics (diverged weights)".into());
        }
        if c.effective_rank < self.collapse_rank || c.mean_dimension_std < self.collapse_std {
            reasons.push(format!(
                "collapsed: effective rank {:.2} (floor {}), mean dimension std {:.2e} (floor {:.0e})",
                c.effective_rank, self.collapse_rank, c.mean_dimension_std, self.collapse_std
            ));
        }
        let broken = !reasons.is_empty();
        let same_frames = candidate.clean.len() == running.clean.len()
            && candidate.view_losses.len() == running.view_losses.len()
            && candidate.clean.len() >= 3;
        let (rank, view_loss) = if same_frames {
            (
                Some(rank_gain(&candidate.clean, &running.clean)),
                Some(Paired::of(&candidate.view_losses, &running.view_losses)),
            )
        } else {
            reasons
                .push("not measured on the same three or more frames as the running model".into());
            (None, None)
        };
        if let Some(p) = view_loss
            && p.mean + self.view_loss_se * p.se >= 0.0
        {
            reasons.push(format!(
                "held-out view loss {:+.4} ± {:.4} against running: not {} standard errors better",
                p.mean, p.se, self.view_loss_se
            ));
        }
        if let (Some(g), Some(k)) = (rank, self.rank_se)
            && g.difference + k * g.se < 0.0
        {
            reasons.push(format!(
                "effective rank {:+.2} ± {:.2} against running: poorer by more than {k} standard errors",
                g.difference, g.se
            ));
        }
        reasons.extend(self.guards(c, &running.health));
        Verdict {
            accept: reasons.is_empty(),
            broken,
            reasons,
            rank,
            view_loss,
        }
    }

    /// The optional and kNN guards, one line per failed one.
    fn guards(&self, c: &Health, r: &Health) -> Vec<String> {
        let mut reasons = Vec::new();
        if let Some(tol) = self.alignment
            && c.alignment > r.alignment * (1.0 + tol) + 1e-9
        {
            reasons.push(format!(
                "alignment {:.4} worse than running {:.4} by more than {:.0}%",
                c.alignment,
                r.alignment,
                100.0 * tol
            ));
        }
        if let Some(tol) = self.uniformity
            && c.uniformity > r.uniformity + tol
        {
            reasons.push(format!(
                "uniformity {:.4} worse than running {:.4} by more than {tol}",
                c.uniformity, r.uniformity
            ));
        }
        if let Some(tol) = self.effective_rank
            && c.effective_rank < r.effective_rank * (1.0 - tol)
        {
            reasons.push(format!(
                "effective rank {:.2} below running {:.2} by more than {:.0}%",
                c.effective_rank,
                r.effective_rank,
                100.0 * tol
            ));
        }
        if let (Some(ck), Some(rk)) = (c.knn_top1, r.knn_top1)
            && ck < rk - self.knn_points
        {
            reasons.push(format!(
                "kNN top-1 {ck:.2}% below running {rk:.2}% by more than {} points",
                self.knn_points
            ));
        }
        reasons
    }
}

/// Top-1 accuracy (%) of a cosine-similarity kNN classifier with similarity-weighted votes
/// (`exp(s/τ)`, τ = 0.07, as in Wu et al. 2018), for the small probe sets that ship to a board.
///
/// # Panics
/// When labels and rows differ in number.
pub fn knn_top1(
    bank: &[Vec<f32>],
    bank_labels: &[u8],
    queries: &[Vec<f32>],
    query_labels: &[u8],
    k: usize,
) -> f64 {
    assert_eq!(bank.len(), bank_labels.len(), "one label per bank row");
    assert_eq!(queries.len(), query_labels.len(), "one label per query");
    let bank: Vec<Vec<f64>> = bank.iter().map(|r| normalized(r)).collect();
    let classes = bank_labels
        .iter()
        .copied()
        .max()
        .map_or(0, |m| m as usize + 1);
    let mut correct = 0usize;
    for (q, &label) in queries.iter().zip(query_labels) {
        let q = normalized(q);
        let mut sims: Vec<(f64, u8)> = bank
            .iter()
            .zip(bank_labels)
            .map(|(b, &l)| (b.iter().zip(&q).map(|(x, y)| x * y).sum::<f64>(), l))
            .collect();
        let k = k.min(sims.len());
        if k == 0 {
            continue;
        }
        sims.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
        let mut votes = vec![0.0f64; classes];
        for &(s, l) in &sims[..k] {
            votes[l as usize] += (s / 0.07).exp();
        }
        let best = votes
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i);
        if best == Some(label as usize) {
            correct += 1;
        }
    }
    100.0 * correct as f64 / queries.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_and_uniformity_match_hand_values() {
        // Orthogonal unit pairs: ‖e1 − e2‖² = 2.
        let a = vec![vec![1.0, 0.0], vec![0.0, 3.0]];
        let b = vec![vec![0.0, 2.0], vec![0.0, 1.0]];
        assert!((alignment(&a, &b) - 1.0).abs() < 1e-12); // (2 + 0) / 2
        // Two antipodal points: ‖x − y‖² = 4 → log exp(−8) = −8.
        assert!((uniformity(&[vec![1.0, 0.0], vec![-2.0, 0.0]]) + 8.0).abs() < 1e-12);
        // Everything at one point: 0, the worst value.
        assert!(uniformity(&vec![vec![1.0, 1.0]; 5]).abs() < 1e-12);
        // Three points at 120° on the circle: ‖x − y‖² = 3 → −6.
        let c: Vec<Vec<f32>> = (0..3)
            .map(|k| {
                let t = 2.0 * std::f32::consts::PI * k as f32 / 3.0;
                vec![t.cos(), t.sin()]
            })
            .collect();
        assert!((uniformity(&c) + 6.0).abs() < 1e-5);
    }

    #[test]
    fn singular_values_of_a_known_matrix() {
        // np.linalg.svd([[3, 0, 0], [0, 4, 0], [0, 0, 0], [0, 0, 1]]) -> 4, 3, 1
        let x = vec![
            vec![3.0, 0.0, 0.0],
            vec![0.0, 4.0, 0.0],
            vec![0.0, 0.0, 0.0],
            vec![0.0, 0.0, 1.0],
        ];
        let s = singular_values(&x);
        for (got, want) in s.iter().zip([4.0, 3.0, 1.0]) {
            assert!((got - want).abs() < 1e-9, "{s:?}");
        }
        // Wider than tall goes through the 3 × 3 Gram xxᵀ; the same values, padded with a zero:
        // np.linalg.svd([[3, 0, 0, 0], [0, 4, 0, 0], [0, 0, 0, 1]]) -> 4, 3, 1
        let wide = vec![
            vec![3.0, 0.0, 0.0, 0.0],
            vec![0.0, 4.0, 0.0, 0.0],
            vec![0.0, 0.0, 0.0, 1.0],
        ];
        let s = singular_values(&wide);
        for (got, want) in s.iter().zip([4.0, 3.0, 1.0, 0.0]) {
            assert!((got - want).abs() < 1e-9, "{s:?}");
        }
        // A dense rotation of diag(5, 2): np.linalg.svd([[3, 4], [-1.6, 1.2]]) -> 5, 2 (orthogonal rows)
        let s = singular_values(&[vec![3.0, 4.0], vec![-1.6, 1.2]]);
        assert!(
            (s[0] - 5.0).abs() < 1e-5 && (s[1] - 2.0).abs() < 1e-5,
            "{s:?}"
        );
    }

    #[test]
    fn effective_rank_spans_one_to_the_dimension() {
        // ±e_k for k < 8: zero mean, sixteen rows with equal singular values → rank = d = 8.
        let spread: Vec<Vec<f32>> = (0..16)
            .map(|i| {
                (0..8)
                    .map(|j| {
                        if i % 8 == j {
                            if i < 8 { 1.0 } else { -1.0 }
                        } else {
                            0.0
                        }
                    })
                    .collect()
            })
            .collect();
        assert!((effective_rank(&spread) - 8.0).abs() < 1e-6);
        // The 8 one-hot rows alone: centring removes the mean (1/8, …), leaving I − 11ᵀ/8,
        // whose singular values are 1 (×7) and 0 → rank 7.
        assert!((effective_rank(&spread[..8]) - 7.0).abs() < 1e-6);
        // Every row the same direction: nothing varies; collapsed by the std test too.
        let same = vec![vec![0.3, -0.1, 0.7, 0.2]; 16];
        assert!(effective_rank(&same) < 1.0 + 1e-6);
        assert!(mean_dimension_std(&same) < 1e-9);
        // Rows varying along one direction only (±e₁) → 1.
        let line: Vec<Vec<f32>> = (0..10)
            .map(|i| vec![if i % 2 == 0 { 1.0 } else { -1.0 }, 0.0, 0.0, 0.0])
            .collect();
        assert!((effective_rank(&line) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn measure_centres_on_the_mean_clean_embedding() {
        // Clean rows (10, 1) and (10, -1): uncentred they are 0.02 rad apart; centred they are
        // antipodal, uniformity log exp(−8) = −8. Views equal to the clean rows: alignment 0.
        let clean = vec![vec![10.0, 1.0], vec![10.0, -1.0]];
        let h = Health::measure(&clean, &clean, &clean);
        assert!((h.uniformity + 8.0).abs() < 1e-9, "{h:?}");
        assert!(h.alignment.abs() < 1e-12 && (h.effective_rank - 1.0).abs() < 1e-9);
        // Uncentred: cos = 99/101, ‖x̂ − ŷ‖² = 2 − 2·99/101 → −2·4/101 = −0.0792, near collapse.
        assert!((uniformity(&clean) + 8.0 / 101.0).abs() < 1e-9);
    }

    /// Rows spread over the first `dims` of 8 dimensions (a fixed pseudo-random pattern).
    fn spread(n: usize, dims: usize) -> Vec<Vec<f32>> {
        (0..n)
            .map(|i| {
                (0..8)
                    .map(|k| {
                        if k < dims {
                            ((i * 7 + k * 13) % 17) as f32 / 8.0 - 1.0
                        } else {
                            0.0
                        }
                    })
                    .collect()
            })
            .collect()
    }

    fn measured(health: Health, view_losses: &[f64], clean: Vec<Vec<f32>>) -> Measurement {
        Measurement {
            health,
            view_losses: view_losses.to_vec(),
            clean,
        }
    }

    const GOOD: Health = Health {
        frames: 32,
        alignment: 0.5,
        uniformity: -2.0,
        effective_rank: 20.0,
        mean_dimension_std: 0.05,
        knn_top1: Some(40.0),
        view_loss: Some(2.0),
    };

    #[test]
    fn the_judge_promotes_only_a_measurably_better_view_loss() {
        let running = measured(GOOD, &[2.0; 4], spread(4, 2));
        let t = Tolerance::default();
        // Identical: not better, rejected, not broken.
        let v = t.judge(&running, &running);
        assert!(!v.accept && !v.broken, "{v:?}");
        // Differences −0.3, −0.2, −0.1, −0.2: mean −0.2, sample sd √(0.02/3) = 0.08165,
        // se 0.04082; −0.2 + 2·0.04082 < 0 → promoted (np.std([.3,.2,.1,.2], ddof=1)/2).
        let better = measured(GOOD, &[1.7, 1.8, 1.9, 1.8], spread(4, 2));
        let v = t.judge(&better, &running);
        assert!(v.accept, "{v:?}");
        let p = v.view_loss.expect("paired");
        assert!(
            (p.mean + 0.2).abs() < 1e-12 && (p.se - 0.040_824_829).abs() < 1e-8,
            "{p:?}"
        );
        // The same mean gain but noisy (−1.0, +0.6, −0.6, +0.2: se 0.3651): rejected.
        let noisy = measured(GOOD, &[1.0, 2.6, 1.4, 2.2], spread(4, 2));
        assert!(!t.judge(&noisy, &running).accept);
        // A negative threshold lets a worse candidate through (the swap-mechanics tests).
        let loose = Tolerance {
            view_loss_se: -1e9,
            ..t
        };
        assert!(loose.judge(&noisy, &running).accept);
    }

    #[test]
    fn the_optional_rank_guard_rejects_a_measurably_poorer_space() {
        let mut losses = vec![1.7; 32];
        for (i, l) in losses.iter_mut().enumerate() {
            *l += 0.01 * (i % 3) as f64;
        }
        let running = measured(GOOD, &[2.0; 32], spread(32, 6));
        let poorer = measured(GOOD, &losses, spread(32, 2));
        let t = Tolerance::default();
        let v = t.judge(&poorer, &running);
        assert!(v.accept, "off by default: {v:?}");
        let g = v.rank.expect("always measured");
        assert!(g.difference < -2.0 * g.se, "{g:?}");
        let guarded = Tolerance {
            rank_se: Some(2.0),
            ..t
        };
        let v = guarded.judge(&poorer, &running);
        assert!(
            !v.accept && !v.broken && v.reasons[0].contains("effective rank"),
            "{v:?}"
        );
    }

    #[test]
    fn the_judge_calls_collapse_and_divergence_broken_and_keeps_its_guards() {
        let running = measured(GOOD, &[2.0; 32], spread(32, 2));
        let flat: Vec<f64> = (0..32).map(|i| 1.7 + 0.01 * (i % 3) as f64).collect();
        let t = Tolerance::default();
        let collapsed = Health {
            effective_rank: 1.0,
            mean_dimension_std: 0.0,
            ..GOOD
        };
        let v = t.judge(&measured(collapsed, &flat, spread(32, 6)), &running);
        assert!(!v.accept && v.broken, "{v:?}");
        assert!(
            v.reasons.iter().any(|r| r.starts_with("collapsed")),
            "{v:?}"
        );
        let mut nan = flat.clone();
        nan[3] = f64::NAN;
        let v = t.judge(&measured(GOOD, &nan, spread(32, 6)), &running);
        assert!(!v.accept && v.broken, "{v:?}");
        // Better, but kNN on a probe 1.5 points down: rejected, not broken (training goes on).
        let forgot = Health {
            knn_top1: Some(38.5),
            ..GOOD
        };
        let v = t.judge(&measured(forgot, &flat, spread(32, 6)), &running);
        assert!(!v.accept && !v.broken, "{v:?}");
        // The optional alignment guard, off by default, rejects 10 % worse alignment when set.
        let loose_views = Health {
            alignment: 0.55,
            ..GOOD
        };
        let candidate = measured(loose_views, &flat, spread(32, 6));
        assert!(t.judge(&candidate, &running).accept);
        let guarded = Tolerance {
            alignment: Some(0.05),
            ..t
        };
        assert!(!guarded.judge(&candidate, &running).accept);
        // Different frames cannot be compared.
        let v = t.judge(&measured(GOOD, &[2.0; 31], spread(31, 6)), &running);
        assert!(!v.accept && !v.broken, "{v:?}");
    }

    #[test]
    fn knn_votes_by_nearest_neighbours() {
        let bank = vec![
            vec![1.0, 0.0],
            vec![0.9, 0.1],
            vec![0.0, 1.0],
            vec![0.1, 0.9],
        ];
        let labels = [0u8, 0, 1, 1];
        let queries = vec![vec![1.0, 0.05], vec![0.05, 1.0], vec![1.0, 0.0]];
        assert!((knn_top1(&bank, &labels, &queries, &[0, 1, 1], 2) - 200.0 / 3.0).abs() < 1e-9);
    }
}
