//! LARS — Layer-wise Adaptive Rate Scaling (You et al., 2017), as SimCLR uses it:
//! momentum 0.9, trust coefficient η = 0.001, weight decay and trust-ratio adaptation
//! skipped for biases and BatchNorm parameters.
//!
//! Per parameter tensor `w` with gradient `g` (TF SimCLR's `LARSOptimizer`):
//! ```text
//! g' = g + λ w                      (adapted tensors only)
//! r  = η ‖w‖ / ‖g'‖                 (1 when either norm is 0, or the tensor is excluded)
//! v  = μ v + lr · r · g'
//! w  = w − v
//! ```
//! Excluded tensors are recognised by rank: biases and BatchNorm γ/β are the only rank-1
//! parameters of our encoders and heads (weights are rank 2 or 4).

use burn::optim::{LearningRate, Optimizer, RecordState, StateSink, StateSource};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// LARS configuration (defaults: the paper's values).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LarsConfig {
    /// Momentum μ.
    pub momentum: f64,
    /// Trust coefficient η.
    pub trust_coefficient: f64,
    /// Weight decay λ (paper: 1e-6).
    pub weight_decay: f64,
}

impl Default for LarsConfig {
    fn default() -> Self {
        Self {
            momentum: 0.9,
            trust_coefficient: 0.001,
            weight_decay: 1e-6,
        }
    }
}

impl LarsConfig {
    /// Builds the per-tensor optimizer (wrap it with `ModuleOptimizer::from`).
    pub fn init(&self) -> Lars {
        Lars {
            config: self.clone(),
        }
    }
}

/// The LARS optimizer.
#[derive(Debug, Clone)]
pub struct Lars {
    config: LarsConfig,
}

/// Momentum buffer of one parameter.
#[derive(Clone)]
pub struct LarsState<const D: usize> {
    /// The velocity `v`.
    pub velocity: Tensor<D>,
}

impl<const D: usize> RecordState for LarsState<D> {
    fn state_flatten(&self, prefix: &str, out: &mut StateSink) {
        out.push_tensor(prefix, "velocity", self.velocity.to_data());
    }

    fn state_unflatten(prefix: &str, src: &mut StateSource, device: &Device) -> Option<Self> {
        let data = src.take_tensor(prefix, "velocity")?;
        Some(Self {
            velocity: Tensor::from_data(data, device),
        })
    }
}

/// ‖t‖₂ as a one-element tensor.
fn l2_norm<const D: usize>(t: Tensor<D>) -> Tensor<1> {
    t.powf_scalar(2.0).sum().sqrt()
}

impl Optimizer for Lars {
    type State<const D: usize> = LarsState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let adapt = D > 1;
        let update = if adapt {
            let g = grad + tensor.clone().mul_scalar(self.config.weight_decay);
            let (w_norm, g_norm) = (l2_norm(tensor.clone()), l2_norm(g.clone()));
            let degenerate = w_norm
                .clone()
                .equal_elem(0.0)
                .bool_or(g_norm.clone().equal_elem(0.0));
            let trust = (w_norm.mul_scalar(self.config.trust_coefficient)
                / g_norm.clamp_min(f32::MIN_POSITIVE))
            .mask_fill(degenerate, 1.0);
            g * trust.unsqueeze::<D>().mul_scalar(lr)
        } else {
            grad.mul_scalar(lr)
        };
        let velocity = match state {
            Some(s) => s.velocity.mul_scalar(self.config.momentum) + update,
            None => update,
        };
        (tensor - velocity.clone(), Some(LarsState { velocity }))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        LarsState {
            velocity: state.velocity.to_device(device),
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::TensorData;

    use super::*;

    fn t<const D: usize>(v: Vec<f32>, shape: [usize; D]) -> Tensor<D> {
        Tensor::from_data(TensorData::new(v, shape), &Device::flex())
    }

    fn values<const D: usize>(x: Tensor<D>) -> Vec<f32> {
        x.into_data().try_to_vec().expect("f32")
    }

    #[test]
    fn one_step_on_a_weight_matches_hand_computation() {
        // w = [[3, 4]] (‖w‖ = 5), g = [[0.6, 0.8]], λ = 0.1, η = 0.001, lr = 2:
        // g' = g + λw = [0.9, 1.2], ‖g'‖ = 1.5, r = 0.001·5/1.5 = 1/300
        // v = lr·r·g' = [0.006, 0.008]; w ← [2.994, 3.992]
        let lars = LarsConfig {
            momentum: 0.9,
            trust_coefficient: 0.001,
            weight_decay: 0.1,
        }
        .init();
        let (w, state) = lars.step(
            2.0,
            t(vec![3.0, 4.0], [1, 2]),
            t(vec![0.6, 0.8], [1, 2]),
            None,
        );
        let w = values(w);
        assert!(
            (w[0] - 2.994).abs() < 1e-6 && (w[1] - 3.992).abs() < 1e-6,
            "{w:?}"
        );
        // Second step, same gradient: g' = g + λw₁, r = η‖w₁‖/‖g'‖, v = μ·v₁ + lr·r·g'.
        // numpy: w1 = np.array([2.994, 3.992]); g2 = np.array([.6, .8]) + .1 * w1
        //        r = .001 * np.linalg.norm(w1) / np.linalg.norm(g2)
        //        w1 - (.9 * np.array([.006, .008]) + 2 * r * g2) -> [2.982612, 3.976816]
        let (w2, _) = lars.step(2.0, t(w, [1, 2]), t(vec![0.6, 0.8], [1, 2]), state);
        let w2 = values(w2);
        assert!(
            (w2[0] - 2.982_612).abs() < 2e-6 && (w2[1] - 3.976_816).abs() < 2e-6,
            "{w2:?}"
        );
    }

    #[test]
    fn biases_skip_weight_decay_and_trust_ratio() {
        // Rank-1 (bias / BN): plain momentum SGD, v = lr·g = [0.2, -0.4]; w ← [0.8, 2.4].
        let lars = LarsConfig {
            momentum: 0.9,
            trust_coefficient: 0.001,
            weight_decay: 0.1,
        }
        .init();
        let (w, _) = lars.step(2.0, t(vec![1.0, 2.0], [2]), t(vec![0.1, -0.2], [2]), None);
        let w = values(w);
        assert!(
            (w[0] - 0.8).abs() < 1e-6 && (w[1] - 2.4).abs() < 1e-6,
            "{w:?}"
        );
    }

    #[test]
    fn zero_weight_falls_back_to_unit_trust() {
        // ‖w‖ = 0 ⇒ r = 1: w ← 0 − lr·(g + 0) = [-0.5, -1].
        let lars = LarsConfig {
            weight_decay: 0.0,
            ..LarsConfig::default()
        }
        .init();
        let (w, _) = lars.step(
            0.5,
            t(vec![0.0, 0.0], [2, 1]),
            t(vec![1.0, 2.0], [2, 1]),
            None,
        );
        assert_eq!(values(w), vec![-0.5, -1.0]);
    }
}
