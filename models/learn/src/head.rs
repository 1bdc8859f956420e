//! Projection heads `g(·)`: none, linear, or an MLP `W_n σ(… σ(W_1 h))` (paper §4.2:
//! nonlinear beats linear by ~3% and no head by >10%). The output `z` feeds the loss only.

use burn::module::Module;
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::ModelError;

/// Head family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadKind {
    /// `z = h`.
    None,
    /// `z = W h`.
    Linear,
    /// `z = W_n σ(… σ(W_1 h))`, σ = ReLU.
    Mlp,
}

impl std::str::FromStr for HeadKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Self::None),
            "linear" => Ok(Self::Linear),
            "mlp" => Ok(Self::Mlp),
            other => Err(format!("unknown head `{other}`; use mlp, linear or none")),
        }
    }
}

/// Projection head configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeadConfig {
    /// Head family.
    pub kind: HeadKind,
    /// Linear layers in the MLP (2 in SimCLR, 3 in SimCLRv2); ignored otherwise.
    pub layers: usize,
    /// Hidden width; `None` = the input dimension (the paper's choice).
    pub hidden_dim: Option<usize>,
    /// Output dimension of `z` (paper: 128).
    pub out_dim: usize,
    /// BatchNorm after each hidden linear layer.
    pub batch_norm: bool,
}

impl Default for HeadConfig {
    fn default() -> Self {
        Self {
            kind: HeadKind::Mlp,
            layers: 2,
            hidden_dim: None,
            out_dim: 128,
            batch_norm: true,
        }
    }
}

impl HeadConfig {
    /// Sets the head family.
    pub fn with_kind(mut self, kind: HeadKind) -> Self {
        self.kind = kind;
        self
    }

    /// Sets the output dimension.
    pub fn with_out_dim(mut self, d: usize) -> Self {
        self.out_dim = d;
        self
    }

    /// Sets the number of MLP layers.
    pub fn with_layers(mut self, n: usize) -> Self {
        self.layers = n;
        self
    }

    /// Sets BatchNorm on hidden layers.
    pub fn with_batch_norm(mut self, on: bool) -> Self {
        self.batch_norm = on;
        self
    }

    /// Checks the values.
    ///
    /// # Errors
    /// [`ModelError::InvalidConfig`] for an MLP of fewer than 2 layers or a zero output.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.kind == HeadKind::Mlp && self.layers < 2 {
            return Err(ModelError::InvalidConfig {
                field: "head.layers",
                value: self.layers.to_string(),
                hint: "an MLP head needs ≥ 2 layers; use kind = \"linear\" for one",
            });
        }
        if self.out_dim == 0 {
            return Err(ModelError::InvalidConfig {
                field: "head.out_dim",
                value: "0".into(),
                hint: "use a positive dimension (paper: 128)",
            });
        }
        Ok(())
    }

    /// Dimension of `z` for an input of `in_dim`.
    pub fn output_dim(&self, in_dim: usize) -> usize {
        match self.kind {
            HeadKind::None => in_dim,
            _ => self.out_dim,
        }
    }

    /// Builds the head for representations of `in_dim` on `device`.
    pub fn init(&self, in_dim: usize, device: &Device) -> ProjectionHead {
        let hidden = self.hidden_dim.unwrap_or(in_dim);
        let dims: Vec<usize> = match self.kind {
            HeadKind::None => vec![],
            HeadKind::Linear => vec![in_dim, self.out_dim],
            HeadKind::Mlp => std::iter::once(in_dim)
                .chain(std::iter::repeat_n(hidden, self.layers - 1))
                .chain(std::iter::once(self.out_dim))
                .collect(),
        };
        let layers: Vec<Linear> = dims
            .windows(2)
            .map(|w| LinearConfig::new(w[0], w[1]).init(device))
            .collect();
        let hidden_layers = layers.len().saturating_sub(1);
        let norms = if self.batch_norm {
            (0..hidden_layers)
                .map(|i| BatchNormConfig::new(dims[i + 1]).init(device))
                .collect()
        } else {
            Vec::new()
        };
        ProjectionHead { layers, norms }
    }
}

/// The projection head.
#[derive(Module, Debug)]
pub struct ProjectionHead {
    layers: Vec<Linear>,
    norms: Vec<BatchNorm>,
}

impl ProjectionHead {
    /// `z = g(h)`.
    ///
    /// # Shapes
    /// `[B, in_dim] → [B, out_dim]` (identity for the `none` head).
    pub fn forward(&self, h: Tensor<2>) -> Tensor<2> {
        let last = self.layers.len().saturating_sub(1);
        let mut z = h;
        for (i, layer) in self.layers.iter().enumerate() {
            z = layer.forward(z);
            if i < last {
                if let Some(norm) = self.norms.get(i) {
                    z = norm.forward(z);
                }
                z = relu(z);
            }
        }
        z
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoder::trainable_params;
    use crate::test_device;

    #[test]
    fn shapes_and_parameter_counts() {
        let device = test_device();
        let h = Tensor::<2>::ones([4, 16], &device);
        let none = HeadConfig::default()
            .with_kind(HeadKind::None)
            .init(16, &device);
        assert_eq!(none.forward(h.clone()).dims(), [4, 16]);
        assert_eq!(trainable_params(&none), 0);
        let lin = HeadConfig::default()
            .with_kind(HeadKind::Linear)
            .with_out_dim(8)
            .init(16, &device);
        assert_eq!(lin.forward(h.clone()).dims(), [4, 8]);
        assert_eq!(trainable_params(&lin), 16 * 8 + 8);
        // 2-layer MLP with BN: (16·16 + 16) + BN(2·16) + (16·8 + 8)
        let mlp = HeadConfig::default().with_out_dim(8).init(16, &device);
        assert_eq!(mlp.forward(h.clone()).dims(), [4, 8]);
        assert_eq!(trainable_params(&mlp), 272 + 32 + 136);
        let mlp3 = HeadConfig::default()
            .with_layers(3)
            .with_batch_norm(false)
            .with_out_dim(8)
            .init(16, &device);
        assert_eq!(trainable_params(&mlp3), 272 + 272 + 136);
    }

    #[test]
    fn mlp_with_one_layer_is_rejected() {
        let err = HeadConfig::default()
            .with_layers(1)
            .validate()
            .expect_err("1-layer MLP");
        assert!(err.to_string().contains("head.layers"));
    }
}
