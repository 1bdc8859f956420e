//! NT-Xent, the normalised temperature-scaled cross-entropy of Algorithm 1:
//! `l(i, j) = −log( exp(s_ij/τ) / Σ_{k≠i} exp(s_ik/τ) )`, averaged over all `2N` anchors.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Bool, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::{check_views, cosine_similarity_matrix, l2_normalize, positive_columns, positive_of};

/// NT-Xent configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NtXentLossConfig {
    /// Temperature τ (paper Table 5: 0.5 for CIFAR-10, 0.1 for ImageNet).
    pub temperature: f64,
}

impl Default for NtXentLossConfig {
    fn default() -> Self {
        Self { temperature: 0.5 }
    }
}

impl NtXentLossConfig {
    /// Sets τ.
    pub fn with_temperature(mut self, t: f64) -> Self {
        self.temperature = t;
        self
    }

    /// Builds the loss.
    pub fn init(&self) -> NtXentLoss {
        NtXentLoss {
            temperature: self.temperature,
        }
    }
}

/// NT-Xent loss.
#[derive(Debug, Clone)]
pub struct NtXentLoss {
    temperature: f64,
}

impl NtXentLoss {
    /// # Shapes
    /// `z: [2N, D] → [1]`
    pub fn forward(&self, z: Tensor<2>) -> Tensor<1> {
        check_views(&z);
        let [m, _] = z.dims();
        let device = z.device();
        let logits = cosine_similarity_matrix(z).div_scalar(self.temperature);
        // Exclude k = i from the denominator. A large finite value keeps gradients NaN-free
        // on every backend (−∞ · 0 in the softmax backward is NaN on some).
        let eye: Vec<bool> = (0..m * m).map(|i| i / m == i % m).collect();
        let eye = Tensor::<2, Bool>::from_data(TensorData::new(eye, [m, m]), &device);
        let logits = logits.mask_fill(eye, -1.0e9);
        let log_prob = log_softmax(logits, 1);
        log_prob
            .gather(1, positive_columns(m, &device))
            .mean()
            .neg()
    }

    /// NT-Xent with extra negatives — a MoCo-style queue of earlier projections for the
    /// small batches an edge board trains with: each anchor's softmax runs over the `2N − 1`
    /// other views and the `K` queue entries (the positive is still the sibling view). The
    /// queue is constant here: pass it detached (no gradient flows into it).
    ///
    /// # Shapes
    /// `z: [2N, D]`, `queue: [K, D] → [1]`
    pub fn forward_with_negatives(&self, z: Tensor<2>, queue: Tensor<2>) -> Tensor<1> {
        let mask = ContrastMask::views(z.dims()[0], queue.dims()[0]);
        self.forward_masked(z, queue, &mask)
    }

    /// The general form: per anchor, the positives and the excluded columns of `mask` over
    /// the batch's views and the queue. With several positives the loss averages their
    /// log-probabilities (SupCon's `L_out`, Khosla et al. 2020); excluded columns leave the
    /// denominator (false negatives: temporal neighbours, the same frame seen earlier).
    ///
    /// # Shapes
    /// `z: [2N, D]`, `queue: [K, D] → [1]`
    ///
    /// # Panics
    /// When the mask's shape does not match `z` and `queue`.
    pub fn forward_masked(&self, z: Tensor<2>, queue: Tensor<2>, mask: &ContrastMask) -> Tensor<1> {
        check_views(&z);
        let [m, d] = z.dims();
        let [k, dq] = queue.dims();
        assert_eq!(d, dq, "queue entries have dimension {dq}, projections {d}");
        assert_eq!(
            (mask.rows, mask.queue),
            (m, k),
            "mask is for {} views and {} queue entries",
            mask.rows,
            mask.queue
        );
        let device = z.device();
        let zn = l2_normalize(z);
        let mut sims = zn.clone().matmul(zn.clone().transpose());
        if k > 0 {
            sims = Tensor::cat(vec![sims, zn.matmul(l2_normalize(queue).transpose())], 1);
        }
        let cols = m + k;
        let excluded = Tensor::<2, Bool>::from_data(
            TensorData::new(mask.excluded.clone(), [m, cols]),
            &device,
        );
        // A large finite value keeps gradients NaN-free on every backend (see `forward`).
        let logits = sims
            .div_scalar(self.temperature)
            .mask_fill(excluded, -1.0e9);
        let weights: Vec<f32> = mask
            .positive
            .chunks(cols)
            .flat_map(|row| {
                let n = row.iter().filter(|p| **p).count() as f32;
                row.iter().map(move |&p| if p { 1.0 / n } else { 0.0 })
            })
            .collect();
        let weights = Tensor::<2>::from_data(TensorData::new(weights, [m, cols]), &device);
        (log_softmax(logits, 1) * weights).sum_dim(1).mean().neg()
    }
}

/// For each anchor of an NT-Xent batch with queue negatives: which columns are positives and
/// which leave the denominator. Columns `0..M` are the batch's `M = 2N` interleaved views
/// (image `a` owns rows `2a` and `2a + 1`), columns `M..M + K` the queue.
#[derive(Debug, Clone, PartialEq)]
pub struct ContrastMask {
    rows: usize,
    queue: usize,
    positive: Vec<bool>,
    excluded: Vec<bool>,
}

impl ContrastMask {
    /// SimCLR's pairing for `m` views and `k` queue entries: each view's sibling is its one
    /// positive, itself is excluded, everything else is a negative.
    ///
    /// # Panics
    /// When `m` is not even and positive.
    pub fn views(m: usize, k: usize) -> Self {
        assert!(
            m >= 2 && m.is_multiple_of(2),
            "need 2N ≥ 2 interleaved views, got {m}"
        );
        let cols = m + k;
        let mut mask = Self {
            rows: m,
            queue: k,
            positive: vec![false; m * cols],
            excluded: vec![false; m * cols],
        };
        for i in 0..m {
            mask.positive[i * cols + positive_of(i)] = true;
            mask.excluded[i * cols + i] = true;
        }
        mask
    }

    /// Images in the batch (`M / 2`).
    pub fn images(&self) -> usize {
        self.rows / 2
    }

    fn cols(&self) -> usize {
        self.rows + self.queue
    }

    /// Makes images `a` and `b` positives of each other (all four view pairings): a frame
    /// and a nearby frame of the same stream.
    pub fn pair_images(&mut self, a: usize, b: usize) {
        let cols = self.cols();
        for (x, y) in [(a, b), (b, a)] {
            for row in [2 * x, 2 * x + 1] {
                for col in [2 * y, 2 * y + 1] {
                    self.positive[row * cols + col] = true;
                    self.excluded[row * cols + col] = false;
                }
            }
        }
    }

    /// Removes images `a` and `b` from each other's denominators (neither positive nor
    /// negative): temporal neighbours when they are not used as positives.
    pub fn exclude_images(&mut self, a: usize, b: usize) {
        let cols = self.cols();
        for (x, y) in [(a, b), (b, a)] {
            for row in [2 * x, 2 * x + 1] {
                for col in [2 * y, 2 * y + 1] {
                    if !self.positive[row * cols + col] {
                        self.excluded[row * cols + col] = true;
                    }
                }
            }
        }
    }

    /// Removes queue entry `q` from image `a`'s denominator (the same or a neighbouring frame
    /// projected at an earlier step).
    pub fn exclude_queue(&mut self, a: usize, q: usize) {
        assert!(q < self.queue, "queue entry {q} of {}", self.queue);
        let cols = self.cols();
        for row in [2 * a, 2 * a + 1] {
            self.excluded[row * cols + self.rows + q] = true;
        }
    }

    /// Negatives left in row `i`'s denominator (for logs and tests).
    pub fn negatives(&self, i: usize) -> usize {
        let cols = self.cols();
        (0..cols)
            .filter(|&j| !self.positive[i * cols + j] && !self.excluded[i * cols + j])
            .count()
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Tensor, TensorData};

    use super::super::fixtures;
    use super::*;
    use crate::test_device;

    #[test]
    fn queue_negatives_golden_values_from_numpy() {
        // zn as in fixtures; q = [[0.5, 0.5, 0.5], [-1.0, 0.2, 0.1]], qn = q / |q|;
        //   l = np.concatenate([zn @ zn.T, zn @ qn.T], 1) / tau; l[i, i] = -inf
        //   lp = l - np.log(np.exp(l).sum(1, keepdims=True)); -mean(lp[i, i ^ 1])
        // -> 2.8895440 (tau=0.5), 8.9497502 (tau=0.1)
        let device = test_device();
        let queue = Tensor::<2>::from_data(
            TensorData::from([[0.5f32, 0.5, 0.5], [-1.0, 0.2, 0.1]]),
            &device,
        );
        for (tau, want) in [(0.5, 2.889_544_f32), (0.1, 8.949_75)] {
            let loss = NtXentLossConfig::default().with_temperature(tau).init();
            let got = loss
                .forward_with_negatives(fixtures::z(&device), queue.clone())
                .into_scalar::<f32>();
            assert!((got - want).abs() < 1e-4, "tau {tau}: {got} vs {want}");
        }
        // Temporal positives and false negatives: images 0 and 1 are neighbouring frames
        // (positives of each other), queue entry 0 is image 2's own frame (excluded).
        //   pos[i, i ^ 1] = True; pos[0:2, 2:4] = pos[2:4, 0:2] = True; exc[i, i] = True
        //   exc[4:6, 6] = True; l = np.where(exc, -np.inf, l); w = pos / pos.sum(1, keepdims=True)
        //   -(np.where(pos, lp, 0) * w).sum(1).mean()
        // -> 2.5315532 (tau=0.5), 7.4510151 (tau=0.1)
        let mut mask = ContrastMask::views(6, 2);
        mask.pair_images(0, 1);
        mask.exclude_queue(2, 0);
        assert_eq!((mask.negatives(0), mask.negatives(4)), (4, 5));
        for (tau, want) in [(0.5, 2.531_553_f32), (0.1, 7.451_015)] {
            let loss = NtXentLossConfig::default().with_temperature(tau).init();
            let got = loss
                .forward_masked(fixtures::z(&device), queue.clone(), &mask)
                .into_scalar::<f32>();
            assert!((got - want).abs() < 1e-4, "tau {tau}: {got} vs {want}");
        }
        // Excluding a neighbour only removes it from the denominator: the loss drops.
        let loss = NtXentLossConfig::default().init();
        let plain = ContrastMask::views(6, 2);
        let mut excl = plain.clone();
        excl.exclude_images(0, 1);
        assert_eq!(excl.negatives(0), plain.negatives(0) - 2);
        let (a, b) = (
            loss.forward_masked(fixtures::z(&device), queue.clone(), &plain)
                .into_scalar::<f32>(),
            loss.forward_masked(fixtures::z(&device), queue.clone(), &excl)
                .into_scalar::<f32>(),
        );
        assert!(b < a, "{b} !< {a}");
        // An empty queue is plain NT-Xent.
        let loss = NtXentLossConfig::default().init();
        let empty = Tensor::<2>::zeros([0, 3], &device);
        let a = loss
            .forward_with_negatives(fixtures::z(&device), empty)
            .into_scalar::<f32>();
        let b = loss.forward(fixtures::z(&device)).into_scalar::<f32>();
        assert_eq!(a, b);
    }

    #[test]
    fn golden_values_from_numpy() {
        // s = zn @ zn.T (see fixtures); for tau in (0.5, 0.1):
        //   l = s / tau; np.fill_diagonal(l, -np.inf)
        //   lp = l - np.log(np.exp(l).sum(1, keepdims=True))
        //   -np.mean([lp[i, i ^ 1] for i in range(M)])
        // -> 2.5368083 (tau=0.5), 8.6260904 (tau=0.1)
        let device = test_device();
        for (tau, want) in [(0.5, 2.536_808_3f32), (0.1, 8.626_09)] {
            let got: f32 = NtXentLossConfig::default()
                .with_temperature(tau)
                .init()
                .forward(fixtures::z(&device))
                .into_scalar();
            assert!(
                (got - want).abs() < 1e-5 * want.max(1.0),
                "tau {tau}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn identical_projections_give_ln_2n_minus_1() {
        let device = test_device();
        for n in [1usize, 2, 5, 16] {
            let z = Tensor::<2>::ones([2 * n, 7], &device);
            let got: f32 = NtXentLossConfig::default().init().forward(z).into_scalar();
            let want = ((2 * n - 1) as f32).ln();
            assert!((got - want).abs() < 1e-5, "N={n}: {got} vs ln(2N-1)={want}");
        }
    }

    #[test]
    fn symmetric_in_the_two_views() {
        // Swapping the views of every pair (rows 2k <-> 2k+1) leaves L unchanged.
        let device = test_device();
        let loss = NtXentLossConfig::default().init();
        let z = fixtures::Z;
        let swapped = [z[1], z[0], z[3], z[2], z[5], z[4]];
        let a: f32 = loss.forward(fixtures::z(&device)).into_scalar();
        let b: f32 = loss
            .forward(Tensor::from_data(TensorData::from(swapped), &device))
            .into_scalar();
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }

    #[test]
    fn separated_pairs_at_low_temperature_go_to_zero() {
        let device = test_device();
        let z = Tensor::<2>::from_data(
            TensorData::from([[1.0f32, 0.0], [1.0, 0.0], [-1.0, 0.0], [-1.0, 0.0]]),
            &device,
        );
        let got: f32 = NtXentLossConfig::default()
            .with_temperature(0.01)
            .init()
            .forward(z)
            .into_scalar();
        assert!(got < 1e-6, "{got}");
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let device = test_device();
        let loss = NtXentLossConfig::default().init();
        let base: Vec<f32> = fixtures::Z.iter().flatten().copied().collect();
        let z =
            Tensor::<2>::from_data(TensorData::new(base.clone(), [6, 3]), &device).require_grad();
        let grads = loss.forward(z.clone()).backward();
        let analytic: Vec<f32> = z
            .grad(&grads)
            .expect("z requires grad")
            .into_data()
            .try_to_vec()
            .expect("f32");
        let eval = |v: Vec<f32>| -> f64 {
            let t = Tensor::<2>::from_data(TensorData::new(v, [6, 3]), &device.clone().inner());
            f64::from(loss.forward(t).into_scalar::<f32>())
        };
        let eps = 1e-2f32;
        for i in 0..base.len() {
            let (mut plus, mut minus) = (base.clone(), base.clone());
            plus[i] += eps;
            minus[i] -= eps;
            let numeric = (eval(plus) - eval(minus)) / (2.0 * f64::from(eps));
            assert!(
                (numeric - f64::from(analytic[i])).abs() < 2e-3,
                "d/dz[{i}]: numeric {numeric} vs autodiff {}",
                analytic[i]
            );
        }
    }
}
