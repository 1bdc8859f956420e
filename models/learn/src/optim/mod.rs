//! Optimisers: LARS ([`lars`]) for the paper's recipe, burn's Adam and SGD for small runs,
//! and the warm-up + cosine schedule with batch-size scaling ([`schedule`]).

pub mod lars;
pub mod schedule;

use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, ModuleOptimizer, SgdConfig};
use serde::{Deserialize, Serialize};

pub use lars::{Lars, LarsConfig};
pub use schedule::{LrScaling, WarmupCosine};

/// Which optimizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum OptimizerConfig {
    /// LARS (the paper's choice for large batches).
    Lars(LarsConfig),
    /// Adam with optional L2 weight decay.
    Adam {
        /// L2 penalty.
        #[serde(default)]
        weight_decay: f32,
    },
    /// SGD with momentum.
    Sgd {
        /// Momentum.
        #[serde(default = "default_momentum")]
        momentum: f64,
        /// L2 penalty.
        #[serde(default)]
        weight_decay: f32,
    },
}

fn default_momentum() -> f64 {
    0.9
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self::Lars(LarsConfig::default())
    }
}

impl OptimizerConfig {
    /// Builds a whole-module optimizer.
    pub fn init(&self) -> ModuleOptimizer {
        let decay = |w: f32| (w > 0.0).then(|| WeightDecayConfig::new(w));
        match self {
            Self::Lars(c) => ModuleOptimizer::from(c.init()),
            Self::Adam { weight_decay } => AdamConfig::new()
                .with_weight_decay(decay(*weight_decay))
                .init(),
            Self::Sgd {
                momentum,
                weight_decay,
            } => SgdConfig::new()
                .with_momentum(Some(
                    MomentumConfig::new()
                        .with_momentum(*momentum)
                        .with_dampening(0.0),
                ))
                .with_weight_decay(decay(*weight_decay))
                .init(),
        }
    }
}
