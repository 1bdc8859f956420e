//! Margin triplet loss (paper Table 2): `mean_neg max(0, s⁻ − s⁺ + m)` per anchor, averaged
//! over the `2N` anchors. Semi-hard mining keeps only negatives with `s⁺ − m < s⁻ < s⁺`
//! (less similar than the positive, but within the margin).

use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use serde::{Deserialize, Serialize};

use super::{check_views, cosine_similarity_matrix, negative_weights, positive_columns};

/// Margin triplet configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MarginLossConfig {
    /// Margin `m` on cosine similarities.
    pub margin: f64,
    /// Semi-hard negative mining.
    pub semi_hard: bool,
}

impl Default for MarginLossConfig {
    fn default() -> Self {
        Self {
            margin: 0.5,
            semi_hard: false,
        }
    }
}

impl MarginLossConfig {
    /// Sets the margin.
    pub fn with_margin(mut self, m: f64) -> Self {
        self.margin = m;
        self
    }

    /// Turns semi-hard mining on or off.
    pub fn with_semi_hard(mut self, on: bool) -> Self {
        self.semi_hard = on;
        self
    }

    /// Builds the loss.
    pub fn init(&self) -> MarginLoss {
        MarginLoss {
            config: self.clone(),
        }
    }
}

/// Margin triplet loss.
#[derive(Debug, Clone)]
pub struct MarginLoss {
    config: MarginLossConfig,
}

impl MarginLoss {
    /// # Shapes
    /// `z: [2N, D] → [1]`
    pub fn forward(&self, z: Tensor<2>) -> Tensor<1> {
        check_views(&z);
        let [m, _] = z.dims();
        let device = z.device();
        let s = cosine_similarity_matrix(z);
        let s_pos = s.clone().gather(1, positive_columns(m, &device));
        let weights = negative_weights(
            &s,
            &s_pos,
            self.config.semi_hard.then_some(self.config.margin),
        );
        let count = weights.clone().sum_dim(1).clamp_min(1.0);
        let hinge = relu(s - s_pos + self.config.margin);
        ((hinge * weights).sum_dim(1) / count).mean()
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;
    use crate::test_device;

    #[test]
    fn golden_values_from_numpy() {
        // m = 0.5; for each anchor i (p = i ^ 1, negatives = all k not in {i, p}):
        //   neg = [k for k in negs if (not semi) or (s[i,p] - m < s[i,k] < s[i,p])]
        //   term_i = np.mean([max(0, s[i,k] - s[i,p] + m) for k in neg]) if neg else 0
        // L = mean(term_i)  ->  m = 0.5: plain 0.9154812, semi-hard 0.0973876;
        //                       m = 1.5: plain 1.8992882, semi-hard 0.5506910
        let device = test_device();
        for (margin, semi, want) in [
            (0.5, false, 0.915_481_2f32),
            (0.5, true, 0.097_387_6),
            (1.5, false, 1.899_288_2),
            (1.5, true, 0.550_691),
        ] {
            let got: f32 = MarginLossConfig::default()
                .with_margin(margin)
                .with_semi_hard(semi)
                .init()
                .forward(fixtures::z(&device))
                .into_scalar();
            assert!(
                (got - want).abs() < 1e-5,
                "m {margin} semi {semi}: {got} vs {want}"
            );
        }
    }
}
