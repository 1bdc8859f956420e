//! The queue of recent projections used as extra negatives (MoCo, He et al. 2020), so a
//! batch of 16–64 frames still sees hundreds of negatives.
//!
//! **Staleness.** MoCo keeps queued keys consistent with a momentum encoder. On the board
//! a few layers and the head train (by default the last stage), at a small learning rate, so
//! the projections of one frame drift slowly; instead of a second (momentum) copy of the
//! model — memory a board does not have — each entry carries the step that produced it and
//! entries older than `max_age` steps are dropped before they are used. Each entry also carries its frame id, so a frame is
//! never its own negative (replayed buffer frames come back) and temporal neighbours can be
//! excluded.

use std::collections::VecDeque;

/// One queued projection.
#[derive(Debug, Clone, PartialEq)]
pub struct Queued {
    /// Training step that produced it.
    pub step: u64,
    /// Frame it was projected from.
    pub frame_id: u64,
    /// The projection `z` (as produced; the loss normalises).
    pub z: Vec<f32>,
}

/// A FIFO of at most `capacity` projections no older than `max_age` steps.
#[derive(Debug)]
pub struct NegativeQueue {
    capacity: usize,
    max_age: u64,
    entries: VecDeque<Queued>,
}

impl NegativeQueue {
    /// An empty queue.
    pub fn new(capacity: usize, max_age: u64) -> Self {
        Self {
            capacity,
            max_age,
            entries: VecDeque::with_capacity(capacity),
        }
    }

    /// Appends the projections of one step, evicting the oldest beyond capacity.
    pub fn push(&mut self, step: u64, frame_ids: &[u64], z: &[f32], dim: usize) {
        for (id, row) in frame_ids.iter().zip(z.chunks(dim)) {
            if self.capacity == 0 {
                return;
            }
            if self.entries.len() == self.capacity {
                self.entries.pop_front();
            }
            self.entries.push_back(Queued {
                step,
                frame_id: *id,
                z: row.to_vec(),
            });
        }
    }

    /// Drops entries made more than `max_age` steps before `step`, then returns the rest,
    /// oldest first.
    pub fn fresh(&mut self, step: u64) -> &VecDeque<Queued> {
        while self
            .entries
            .front()
            .is_some_and(|e| step.saturating_sub(e.step) > self.max_age)
        {
            self.entries.pop_front();
        }
        &self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_and_age_bound_the_queue() {
        let mut q = NegativeQueue::new(4, 2);
        q.push(0, &[10, 11], &[1.0, 0.0, 0.0, 1.0], 2);
        q.push(1, &[12, 13, 14], &[0.5; 6], 2);
        // Capacity 4: frame 10 was evicted first.
        let ids: Vec<u64> = q.fresh(1).iter().map(|e| e.frame_id).collect();
        assert_eq!(ids, [11, 12, 13, 14]);
        assert_eq!(q.fresh(1)[0].z, [0.0, 1.0]);
        // At step 3 the step-0 entry is 3 > 2 steps old; step-1 entries are 2 old and stay.
        let ids: Vec<u64> = q.fresh(3).iter().map(|e| e.frame_id).collect();
        assert_eq!(ids, [12, 13, 14]);
        assert!(q.fresh(4).is_empty());
        let mut none = NegativeQueue::new(0, 10);
        none.push(0, &[1], &[1.0], 1);
        assert!(none.fresh(0).is_empty());
    }
}
