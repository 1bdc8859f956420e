//! Per-channel normalisation `(x - mean) / std`, applied last.

use serde::{Deserialize, Serialize};

/// Per-channel mean and standard deviation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalize {
    /// Channel means (RGB) of [0, 1] pixels.
    pub mean: [f32; 3],
    /// Channel standard deviations (RGB).
    pub std: [f32; 3],
}

impl Normalize {
    /// CIFAR-10 training-set statistics.
    pub const CIFAR10: Self = Self {
        mean: [0.4914, 0.4822, 0.4465],
        std: [0.2470, 0.2435, 0.2616],
    };
    /// ImageNet statistics (torchvision's defaults).
    pub const IMAGENET: Self = Self {
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
    };

    /// Normalises a CHW buffer in place.
    pub fn apply(&self, chw: &mut [f32]) {
        let plane = chw.len() / 3;
        for (c, channel) in chw.chunks_mut(plane).enumerate() {
            let (m, s) = (self.mean[c], self.std[c]);
            channel.iter_mut().for_each(|v| *v = (*v - m) / s);
        }
    }
}

impl Default for Normalize {
    fn default() -> Self {
        Self::CIFAR10
    }
}
