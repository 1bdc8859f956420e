//! Learning-rate schedule: linear warm-up then cosine decay (paper §B.1), and the batch-size
//! scaling rules `lr = 0.3 × B/256` (linear) and `lr = 0.075 × √B` (sqrt, better for small
//! batches, Appendix B.1).

use serde::{Deserialize, Serialize};

/// How the base learning rate follows the batch size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrScaling {
    /// `0.3 × B / 256`.
    Linear,
    /// `0.075 × √B`.
    Sqrt,
}

impl LrScaling {
    /// The base learning rate for batch size `batch` (images, not views).
    pub fn base_lr(self, batch: usize) -> f64 {
        match self {
            Self::Linear => 0.3 * batch as f64 / 256.0,
            Self::Sqrt => 0.075 * (batch as f64).sqrt(),
        }
    }
}

/// Linear warm-up from 0 over `warmup_steps`, then cosine decay to 0 at `total_steps`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WarmupCosine {
    /// Peak learning rate.
    pub base_lr: f64,
    /// Steps of linear warm-up.
    pub warmup_steps: usize,
    /// Total steps of the run.
    pub total_steps: usize,
}

impl WarmupCosine {
    /// The learning rate at 0-based `step`:
    /// `base · step / warmup` during warm-up (TF SimCLR), then
    /// `base · ½ (1 + cos(π (step − warmup) / (total − warmup)))`.
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.base_lr * step as f64 / self.warmup_steps as f64;
        }
        let decay = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let progress = ((step - self.warmup_steps) as f64 / decay as f64).min(1.0);
        self.base_lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_at_chosen_steps() {
        let s = WarmupCosine {
            base_lr: 1.2,
            warmup_steps: 10,
            total_steps: 110,
        };
        assert_eq!(s.lr(0), 0.0);
        assert!((s.lr(5) - 0.6).abs() < 1e-12); // half-way through warm-up
        assert!((s.lr(10) - 1.2).abs() < 1e-12); // peak
        assert!((s.lr(60) - 0.6).abs() < 1e-12); // cos(π/2) = 0 ⇒ half
        // step 35: progress 0.25, ½(1 + cos(π/4)) = 0.853553…
        assert!((s.lr(35) - 1.2 * 0.853_553_390_593_273_7).abs() < 1e-12);
        assert!(s.lr(110).abs() < 1e-12 && s.lr(500).abs() < 1e-12);
    }

    #[test]
    fn scaling_rules() {
        assert!((LrScaling::Linear.base_lr(4096) - 4.8).abs() < 1e-12);
        assert!((LrScaling::Linear.base_lr(256) - 0.3).abs() < 1e-12);
        assert!((LrScaling::Sqrt.base_lr(4096) - 4.8).abs() < 1e-12); // 0.075 × 64
        assert!((LrScaling::Sqrt.base_lr(256) - 1.2).abs() < 1e-12);
    }
}
