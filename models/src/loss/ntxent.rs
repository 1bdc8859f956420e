//! NT-Xent, the normalised temperature-scaled cross-entropy of Algorithm 1:
//! `l(i, j) = −log( exp(s_ij/τ) / Σ_{k≠i} exp(s_ik/τ) )`, averaged over all `2N` anchors.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Bool, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::{check_views, cosine_similarity_matrix, l2_normalize, positive_columns};

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
        check_views(&z);
        let [m, d] = z.dims();
        let [k, dq] = queue.dims();
        assert_eq!(d, dq, "queue entries have dimension {dq}, projections {d}");
        if k == 0 {
            return self.forward(z);
        }
        let device = z.device();
        let zn = l2_normalize(z);
        let qn = l2_normalize(queue);
        let views = zn.clone().matmul(zn.clone().transpose());
        let eye: Vec<bool> = (0..m * m).map(|i| i / m == i % m).collect();
        let eye = Tensor::<2, Bool>::from_data(TensorData::new(eye, [m, m]), &device);
        let views = views.mask_fill(eye, -1.0e9 * self.temperature);
        let extra = zn.matmul(qn.transpose());
        let logits = Tensor::cat(vec![views, extra], 1).div_scalar(self.temperature);
        log_softmax(logits, 1)
            .gather(1, positive_columns(m, &device))
            .mean()
            .neg()
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
        for (tau, want) in [(0.5, 2.889_544_f32), (0.1, 8.949_750)] {
            let loss = NtXentLossConfig::default().with_temperature(tau).init();
            let got = loss
                .forward_with_negatives(fixtures::z(&device), queue.clone())
                .into_scalar::<f32>();
            assert!((got - want).abs() < 1e-4, "tau {tau}: {got} vs {want}");
        }
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
        for (tau, want) in [(0.5, 2.536_808_3f32), (0.1, 8.626_090_4)] {
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
