//! Contrastive losses over the `2N` projections of a batch whose rows `2k` and `2k + 1`
//! are the two views of image `k` (Algorithm 1's positives `(2k−1, 2k)`, 0-based).
//!
//! Table 4 of the paper compares NT-Xent ([`ntxent`]), NT-Logistic ([`ntlogistic`]) and the
//! margin triplet loss ([`margin`]), the last two with and without semi-hard negative mining.

pub mod margin;
pub mod ntlogistic;
pub mod ntxent;

use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

pub use margin::{MarginLoss, MarginLossConfig};
pub use ntlogistic::{NtLogisticLoss, NtLogisticLossConfig};
pub use ntxent::{ContrastMask, NtXentLoss, NtXentLossConfig};

use crate::error::ModelError;

/// Which contrastive loss, with its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum LossConfig {
    /// NT-Xent (the paper's loss).
    Ntxent(NtXentLossConfig),
    /// NT-Logistic.
    Ntlogistic(NtLogisticLossConfig),
    /// Margin triplet.
    Margin(MarginLossConfig),
}

impl Default for LossConfig {
    fn default() -> Self {
        Self::Ntxent(NtXentLossConfig::default())
    }
}

impl LossConfig {
    /// Builds the loss.
    pub fn init(&self) -> ContrastiveLoss {
        match self {
            Self::Ntxent(c) => ContrastiveLoss::NtXent(c.init()),
            Self::Ntlogistic(c) => ContrastiveLoss::NtLogistic(c.init()),
            Self::Margin(c) => ContrastiveLoss::Margin(c.init()),
        }
    }

    /// Checks the values.
    ///
    /// # Errors
    /// [`ModelError::InvalidConfig`] for a non-positive temperature or negative margin.
    pub fn validate(&self) -> Result<(), ModelError> {
        let t = match self {
            Self::Ntxent(c) => c.temperature,
            Self::Ntlogistic(c) => c.temperature,
            Self::Margin(c) => {
                if c.margin.is_nan() || c.margin < 0.0 {
                    return Err(ModelError::InvalidConfig {
                        field: "loss.margin",
                        value: c.margin.to_string(),
                        hint: "use a margin ≥ 0",
                    });
                }
                1.0
            }
        };
        if !(t > 0.0 && t.is_finite()) {
            return Err(ModelError::InvalidConfig {
                field: "loss.temperature",
                value: t.to_string(),
                hint: "use a positive temperature (paper: 0.5 on CIFAR-10, 0.1 on ImageNet)",
            });
        }
        Ok(())
    }
}

/// A built contrastive loss.
#[derive(Debug, Clone)]
pub enum ContrastiveLoss {
    /// NT-Xent.
    NtXent(NtXentLoss),
    /// NT-Logistic.
    NtLogistic(NtLogisticLoss),
    /// Margin triplet.
    Margin(MarginLoss),
}

impl ContrastiveLoss {
    /// The mean loss over all `2N` anchors.
    ///
    /// # Shapes
    /// `z: [2N, D] → [1]`
    pub fn forward(&self, z: Tensor<2>) -> Tensor<1> {
        match self {
            Self::NtXent(l) => l.forward(z),
            Self::NtLogistic(l) => l.forward(z),
            Self::Margin(l) => l.forward(z),
        }
    }
}

/// Rows divided by their L2 norm (norms clamped at 1e-12).
///
/// # Shapes
/// `[M, D] → [M, D]`
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x
        .clone()
        .powf_scalar(2.0)
        .sum_dim(1)
        .sqrt()
        .clamp_min(1e-12);
    x / norm
}

/// Cosine similarity matrix `s_ij = z_iᵀ z_j / (‖z_i‖ ‖z_j‖)`.
///
/// # Shapes
/// `[M, D] → [M, M]`
pub fn cosine_similarity_matrix(z: Tensor<2>) -> Tensor<2> {
    let zn = l2_normalize(z);
    zn.clone().matmul(zn.transpose())
}

/// The index of row `i`'s positive: its sibling view (`i ^ 1`).
pub fn positive_of(i: usize) -> usize {
    i ^ 1
}

/// `[M, 1]` Int tensor of each row's positive column.
pub(crate) fn positive_columns(m: usize, device: &Device) -> Tensor<2, Int> {
    let idx: Vec<i64> = (0..m).map(|i| positive_of(i) as i64).collect();
    Tensor::from_data(TensorData::new(idx, [m, 1]), device)
}

/// Panics with both sizes when `z` is not `[2N, D]` with N ≥ 1.
pub(crate) fn check_views(z: &Tensor<2>) {
    let [m, _] = z.dims();
    assert!(
        m >= 2 && m % 2 == 0,
        "contrastive loss needs 2N ≥ 2 interleaved views, got {m} rows"
    );
}

/// A `[M, M]` 0/1 mask of the negatives of each row (everything but itself and its positive).
pub(crate) fn negatives_mask(m: usize) -> Vec<f32> {
    let mut mask = vec![1.0f32; m * m];
    for i in 0..m {
        mask[i * m + i] = 0.0;
        mask[i * m + positive_of(i)] = 0.0;
    }
    mask
}

/// `[M, M]` weights selecting each row's negatives. Without mining: every negative. With
/// `semi_hard_window = Some(w)`: only negatives with `s⁺ − w < s⁻ < s⁺`. The selection is
/// made on detached values (it is not differentiated).
pub(crate) fn negative_weights(
    s: &Tensor<2>,
    s_pos: &Tensor<2>,
    semi_hard_window: Option<f64>,
) -> Tensor<2> {
    let [m, _] = s.dims();
    let device = s.device();
    let mut mask = negatives_mask(m);
    if let Some(window) = semi_hard_window {
        let sv: Vec<f32> = s
            .clone()
            .into_data()
            .try_to_vec()
            .expect("similarities are f32");
        let pv: Vec<f32> = s_pos
            .clone()
            .into_data()
            .try_to_vec()
            .expect("similarities are f32");
        for i in 0..m {
            for k in 0..m {
                let (neg, pos) = (f64::from(sv[i * m + k]), f64::from(pv[i]));
                if !(neg < pos && neg > pos - window) {
                    mask[i * m + k] = 0.0;
                }
            }
        }
    }
    Tensor::from_data(TensorData::new(mask, [m, m]), &device)
}

#[cfg(test)]
pub(crate) mod fixtures {
    use burn::tensor::{Device, Tensor, TensorData};

    /// The 2N = 6, D = 3 projections used by every golden test (rows 2k, 2k+1 are pairs).
    /// Several negatives are more similar than the positive, so semi-hard mining matters.
    ///
    /// ```python
    /// z = np.array([[1.0, 0.2, 0.5], [0.3, 0.9, 0.4], [0.9, 0.1, 0.2],
    ///               [-0.3, 1.0, 0.1], [0.1, -0.6, 0.8], [0.4, 0.5, -0.7]])
    /// zn = z / np.linalg.norm(z, axis=1, keepdims=True)
    /// s = zn @ zn.T; M = 6
    /// ```
    pub const Z: [[f32; 3]; 6] = [
        [1.0, 0.2, 0.5],
        [0.3, 0.9, 0.4],
        [0.9, 0.1, 0.2],
        [-0.3, 1.0, 0.1],
        [0.1, -0.6, 0.8],
        [0.4, 0.5, -0.7],
    ];

    pub fn z(device: &Device) -> Tensor<2> {
        Tensor::from_data(TensorData::from(Z), device)
    }
}
