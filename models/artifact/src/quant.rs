//! The int8 recipe recorded in a manifest: how activation ranges were taken and how weights
//! were scaled. The quantiser itself lives in the learning crate (`edgeclr-learn`).

use serde::{Deserialize, Serialize};

/// How activation ranges are taken from the calibration data.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CalibrationMethod {
    /// The observed minimum and maximum of each tensor.
    MinMax,
    /// The `p`-th and `(100 − p)`-th percentiles (e.g. 99.99): clips rare outliers so the
    /// common values get finer steps.
    Percentile(f32),
}

impl std::str::FromStr for CalibrationMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "minmax" => Ok(Self::MinMax),
            _ => s
                .strip_prefix("percentile:")
                .and_then(|p| p.parse::<f32>().ok())
                .filter(|p| (50.0..=100.0).contains(p))
                .map(Self::Percentile)
                .ok_or_else(|| {
                    format!("unknown calibration `{s}`; use minmax or percentile:P with 50 ≤ P ≤ 100 (e.g. percentile:99.99)")
                }),
        }
    }
}

impl std::fmt::Display for CalibrationMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::MinMax => write!(f, "minmax"),
            Self::Percentile(p) => write!(f, "percentile:{p}"),
        }
    }
}

/// Weight scale granularity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WeightGranularity {
    /// One scale per convolution: tract fuses requantisation into its int8 matmul.
    PerTensor,
    /// One scale per output channel: more accurate after BatchNorm folding; tract
    /// requantises through separate element-wise ops.
    PerChannel,
}

/// The quantisation recipe.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantConfig {
    /// Activation range estimate.
    pub method: CalibrationMethod,
    /// Weight scales.
    pub weights: WeightGranularity,
}

impl Default for QuantConfig {
    fn default() -> Self {
        Self {
            method: CalibrationMethod::MinMax,
            weights: WeightGranularity::PerTensor,
        }
    }
}
