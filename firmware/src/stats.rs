//! Fixed-capacity runtime statistics (heapless): a window of recent latencies with
//! percentiles, and the status snapshot the display and the final report read.

use heapless::HistoryBuf;

/// The last `N` samples (oldest overwritten), with percentiles.
#[derive(Debug)]
pub struct Window<const N: usize> {
    samples: HistoryBuf<f32, N>,
}

impl<const N: usize> Default for Window<N> {
    fn default() -> Self {
        Self {
            samples: HistoryBuf::new(),
        }
    }
}

impl<const N: usize> Window<N> {
    /// Records a sample.
    pub fn push(&mut self, v: f32) {
        self.samples.write(v);
    }

    /// The `q`-quantile (0..=1, nearest rank) of the window; 0 when empty.
    pub fn quantile(&self, q: f32) -> f32 {
        let mut v: heapless::Vec<f32, N> = self.samples.oldest_ordered().copied().collect();
        if v.is_empty() {
            return 0.0;
        }
        v.sort_unstable_by(f32::total_cmp);
        let rank = ((q * v.len() as f32).ceil() as usize).clamp(1, v.len());
        v[rank - 1]
    }
}

/// What the status screen shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    /// Embeddings per second over the last second.
    pub fps: f32,
    /// Frames embedded so far.
    pub frames: u64,
    /// Frames overwritten in the queue.
    pub queue_drops: u64,
    /// Embeddings dropped by slow sinks.
    pub sink_drops: u64,
    /// Frames that failed to decode.
    pub bad_frames: u64,
    /// Embedding latency percentiles, ms.
    pub embed_p50_ms: f32,
    /// 99th percentile, ms.
    pub embed_p99_ms: f32,
    /// Model version.
    pub model: heapless::String<24>,
    /// Fine-tuning loss, when fine-tuning runs.
    pub finetune_loss: Option<f32>,
    /// Recent fps values for the sparkline, oldest first.
    pub fps_history: heapless::Vec<f32, 32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank_over_the_last_n() {
        let mut w: Window<4> = Window::default();
        assert_eq!(w.quantile(0.5), 0.0);
        for v in [100.0, 1.0, 2.0, 3.0, 4.0] {
            w.push(v);
        }
        // 100 fell out of the 4-sample window: [1, 2, 3, 4].
        assert_eq!(w.quantile(0.5), 2.0);
        assert_eq!(w.quantile(0.99), 4.0);
        assert_eq!(w.quantile(0.0), 1.0);
    }
}
