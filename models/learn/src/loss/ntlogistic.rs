//! NT-Logistic (paper Table 2): `−log σ(s⁺/τ) − mean_neg log σ(−s⁻/τ)` per anchor, averaged
//! over the `2N` anchors; negatives are weighted by their mean so one positive balances
//! `2N − 2` negatives. With semi-hard mining only negatives with `s⁻ < s⁺` count.

use burn::tensor::Tensor;
use burn::tensor::activation::log_sigmoid;
use serde::{Deserialize, Serialize};

use super::{check_views, cosine_similarity_matrix, negative_weights, positive_columns};

/// NT-Logistic configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NtLogisticLossConfig {
    /// Temperature τ.
    pub temperature: f64,
    /// Semi-hard negative mining: only negatives less similar than the positive.
    pub semi_hard: bool,
}

impl Default for NtLogisticLossConfig {
    fn default() -> Self {
        Self {
            temperature: 0.5,
            semi_hard: false,
        }
    }
}

impl NtLogisticLossConfig {
    /// Sets τ.
    pub fn with_temperature(mut self, t: f64) -> Self {
        self.temperature = t;
        self
    }

    /// Turns semi-hard mining on or off.
    pub fn with_semi_hard(mut self, on: bool) -> Self {
        self.semi_hard = on;
        self
    }

    /// Builds the loss.
    pub fn init(&self) -> NtLogisticLoss {
        NtLogisticLoss {
            config: self.clone(),
        }
    }
}

/// NT-Logistic loss.
#[derive(Debug, Clone)]
pub struct NtLogisticLoss {
    config: NtLogisticLossConfig,
}

impl NtLogisticLoss {
    /// # Shapes
    /// `z: [2N, D] → [1]`
    pub fn forward(&self, z: Tensor<2>) -> Tensor<1> {
        check_views(&z);
        let [m, _] = z.dims();
        let device = z.device();
        let s = cosine_similarity_matrix(z);
        let s_pos = s.clone().gather(1, positive_columns(m, &device));
        let weights = negative_weights(&s, &s_pos, self.config.semi_hard.then_some(f64::INFINITY));
        let count = weights.clone().sum_dim(1).clamp_min(1.0);
        let t = self.config.temperature;
        let pos = log_sigmoid(s_pos.div_scalar(t));
        let neg = (log_sigmoid(s.div_scalar(t).neg()) * weights).sum_dim(1) / count;
        (pos + neg).mean().neg()
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;
    use crate::test_device;

    #[test]
    fn golden_values_from_numpy() {
        // ls = lambda x: -np.log1p(np.exp(-x))   # log sigmoid
        // for each anchor i (p = i ^ 1, negatives = all k not in {i, p}), tau = 0.5:
        //   neg = [k for k in negs if (not semi) or s[i, k] < s[i, p]]
        //   term_i = ls(s[i,p]/tau) + (np.mean([ls(-s[i,k]/tau) for k in neg]) if neg else 0)
        // L = -mean(term_i)  ->  plain 2.0506122, semi-hard 1.3551213
        let device = test_device();
        for (semi, want) in [(false, 2.050_612_2f32), (true, 1.355_121_3)] {
            let got: f32 = NtLogisticLossConfig::default()
                .with_semi_hard(semi)
                .init()
                .forward(fixtures::z(&device))
                .into_scalar();
            assert!((got - want).abs() < 1e-5, "semi {semi}: {got} vs {want}");
        }
    }
}
