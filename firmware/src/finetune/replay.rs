//! The fine-tuner's replay buffer: a fixed number of frames chosen for diversity. When full, a
//! new frame replaces the *most redundant* entry — the one most similar (cosine, on the running
//! model's embedding) to its nearest neighbour in the buffer — instead of the oldest, and is
//! refused when it is itself at least that redundant. A static scene therefore occupies one or
//! two slots, not the whole buffer.
//!
//! Cost per offer: one pass over the buffer (`O(n·d)`) plus re-scanning only the entries whose
//! nearest neighbour was evicted.
//!
//! Two classic rules are there to compare against ([`ReplayPolicy`]): *reservoir* sampling
//! (every frame seen so far is held with equal probability `capacity / seen`) and *FIFO* (the
//! newest `capacity` frames).

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use crate::config::finetune::ReplayPolicy;

/// What [`ReplayBuffer::offer`] did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Admission {
    /// The buffer had room.
    Added,
    /// The most redundant entry (its nearest-neighbour cosine given) was replaced.
    Replaced {
        /// Cosine of the evicted entry to its nearest neighbour.
        evicted_similarity: f32,
    },
    /// The new frame was at least as redundant as every entry; nothing changed.
    Rejected {
        /// Cosine of the new frame to its nearest entry.
        similarity: f32,
    },
}

#[derive(Debug)]
struct Entry<T> {
    item: T,
    key: Vec<f32>,
    /// Index of the most similar other entry and that similarity.
    nn: Option<(usize, f32)>,
}

/// A fixed-capacity buffer of `T` keyed by embeddings; diversity-preserving by default.
#[derive(Debug)]
pub struct ReplayBuffer<T> {
    capacity: usize,
    entries: Vec<Entry<T>>,
    policy: ReplayPolicy,
    /// Frames offered so far (reservoir sampling).
    seen: u64,
    /// The oldest slot (FIFO).
    oldest: usize,
    rng: ChaCha8Rng,
}

fn normalized(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter().map(|x| x / norm).collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl<T> ReplayBuffer<T> {
    /// An empty buffer holding at most `capacity` (≥ 2) entries.
    ///
    /// # Panics
    /// When `capacity < 2` (redundancy needs a neighbour).
    pub fn new(capacity: usize) -> Self {
        Self::with_policy(capacity, ReplayPolicy::Diversity, 0)
    }

    /// An empty buffer with admission rule `policy` (`seed`: reservoir sampling's draws).
    ///
    /// # Panics
    /// When `capacity < 2`.
    pub fn with_policy(capacity: usize, policy: ReplayPolicy, seed: u64) -> Self {
        assert!(
            capacity >= 2,
            "a replay buffer needs capacity ≥ 2, got {capacity}"
        );
        Self {
            capacity,
            entries: Vec::with_capacity(capacity),
            policy,
            seen: 0,
            oldest: 0,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is held yet.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The held items, in slot order.
    pub fn items(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().map(|e| &e.item)
    }

    /// Nearest entry to `key` (normalised) other than `skip`.
    fn nearest(&self, key: &[f32], skip: Option<usize>) -> Option<(usize, f32)> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != skip)
            .map(|(i, e)| (i, dot(key, &e.key)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// Offers `item` with its embedding `key`.
    ///
    /// # Panics
    /// When `key` differs in length from the keys already held.
    pub fn offer(&mut self, item: T, key: &[f32]) -> Admission {
        let key = normalized(key);
        if let Some(e) = self.entries.first() {
            assert_eq!(
                e.key.len(),
                key.len(),
                "replay keys must share one embedding dimension"
            );
        }
        self.seen += 1;
        if self.entries.len() < self.capacity {
            let nearest = self.nearest(&key, None);
            self.insert(self.entries.len(), item, key, nearest);
            return Admission::Added;
        }
        let victim = match self.policy {
            ReplayPolicy::Diversity => return self.offer_diverse(item, key),
            ReplayPolicy::Fifo => {
                let v = self.oldest;
                self.oldest = (v + 1) % self.capacity;
                v
            }
            ReplayPolicy::Reservoir => {
                let j = self.rng.random_range(0..self.seen);
                if j >= self.capacity as u64 {
                    return Admission::Rejected {
                        similarity: f32::NAN,
                    };
                }
                j as usize
            }
        };
        let victim_sim = self.entries[victim].nn.map_or(f32::NAN, |(_, s)| s);
        let nearest = self.nearest(&key, Some(victim));
        self.insert(victim, item, key, nearest);
        Admission::Replaced {
            evicted_similarity: victim_sim,
        }
    }

    /// A full buffer's diversity rule: replace the most redundant entry unless the new frame
    /// is at least as redundant.
    fn offer_diverse(&mut self, item: T, key: Vec<f32>) -> Admission {
        let nearest = self.nearest(&key, None);
        let new_sim = nearest.map_or(f32::NEG_INFINITY, |(_, s)| s);
        let (victim, victim_sim) = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (i, e.nn.map_or(f32::NEG_INFINITY, |(_, s)| s)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .expect("a full buffer has entries");
        if new_sim >= victim_sim {
            return Admission::Rejected {
                similarity: new_sim,
            };
        }
        // Evict in place, then repair neighbours that pointed at the evicted slot.
        let nearest = self.nearest(&key, Some(victim));
        self.insert(victim, item, key, nearest);
        Admission::Replaced {
            evicted_similarity: victim_sim,
        }
    }

    /// Puts an entry at `slot` (a new slot at the end, or replacing one) and updates the
    /// nearest-neighbour links.
    fn insert(&mut self, slot: usize, item: T, key: Vec<f32>, nearest: Option<(usize, f32)>) {
        let entry = Entry {
            item,
            key,
            nn: nearest,
        };
        if slot == self.entries.len() {
            self.entries.push(entry);
        } else {
            self.entries[slot] = entry;
        }
        for i in 0..self.entries.len() {
            if i == slot {
                continue;
            }
            let s = dot(&self.entries[i].key, &self.entries[slot].key);
            let stale = self.entries[i].nn.is_some_and(|(j, _)| j == slot);
            if stale {
                let key = self.entries[i].key.clone();
                self.entries[i].nn = self.nearest(&key, Some(i));
            } else if self.entries[i].nn.is_none_or(|(_, best)| s > best) {
                self.entries[i].nn = Some((slot, s));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(i: usize, dim: usize) -> Vec<f32> {
        (0..dim).map(|k| if k == i { 1.0 } else { 0.0 }).collect()
    }

    #[test]
    fn a_static_scene_does_not_flood_the_buffer() {
        let mut b = ReplayBuffer::new(4);
        // 50 frames of one scene (tiny jitter), then three different scenes.
        for t in 0..50 {
            let mut k = unit(0, 8);
            k[7] = 0.001 * t as f32;
            b.offer(format!("static{t}"), &k);
        }
        for s in 1..=3 {
            assert!(!matches!(
                b.offer(format!("scene{s}"), &unit(s, 8)),
                Admission::Rejected { .. }
            ));
        }
        let statics = b.items().filter(|i| i.starts_with("static")).count();
        assert_eq!(statics, 1, "{:?}", b.items().collect::<Vec<_>>());
        assert_eq!(b.len(), 4);
    }

    #[test]
    fn the_most_redundant_entry_goes_not_the_oldest() {
        let mut b = ReplayBuffer::new(4);
        // Oldest is a distinct scene; the near-duplicate pair arrives later.
        b.offer("old-distinct", &unit(0, 6));
        b.offer("a", &[0.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
        b.offer("a-dup", &[0.0, 1.0, 0.05, 0.0, 0.0, 0.0]);
        b.offer("c", &unit(3, 6));
        // cos(a, a-dup) = 1/√1.0025 ≈ 0.99875: one of the pair is evicted.
        match b.offer("d", &unit(4, 6)) {
            Admission::Replaced { evicted_similarity } => {
                assert!((evicted_similarity - 0.998_75).abs() < 1e-4)
            }
            other => panic!("{other:?}"),
        }
        let held: Vec<&&str> = b.items().collect();
        assert!(
            held.contains(&&"old-distinct") && held.contains(&&"d") && held.contains(&&"c"),
            "{held:?}"
        );
        assert_eq!(held.iter().filter(|h| h.starts_with('a')).count(), 1);
    }

    #[test]
    fn a_duplicate_of_a_held_frame_is_refused() {
        let mut b = ReplayBuffer::new(3);
        for i in 0..3 {
            b.offer(i, &unit(i, 3));
        }
        // All entries are mutually orthogonal (nn cosine 0); a copy of entry 1 has cosine 1.
        assert_eq!(
            b.offer(9, &unit(1, 3)),
            Admission::Rejected { similarity: 1.0 }
        );
        assert_eq!(b.items().copied().collect::<Vec<_>>(), vec![0, 1, 2]);
    }

    #[test]
    fn fifo_keeps_the_newest_and_reservoir_keeps_a_uniform_sample() {
        let mut b = ReplayBuffer::with_policy(4, ReplayPolicy::Fifo, 0);
        for t in 0..10 {
            b.offer(t, &unit(t % 3, 3));
        }
        let mut held: Vec<usize> = b.items().copied().collect();
        held.sort_unstable();
        assert_eq!(held, [6, 7, 8, 9]);
        // Reservoir: over 2000 buffers of 10 from a stream of 100, each frame is held with
        // probability 10/100; the mean count per frame decile is 2000·10·(10/100) = 2000 with
        // a binomial σ of ≈ 42, so ±250 is a > 5σ bound.
        let mut per_decile = [0usize; 10];
        for seed in 0..2000 {
            let mut r = ReplayBuffer::with_policy(10, ReplayPolicy::Reservoir, seed);
            for t in 0..100usize {
                r.offer(t, &unit(t % 3, 3));
            }
            assert_eq!(r.len(), 10);
            for &t in r.items() {
                per_decile[t / 10] += 1;
            }
        }
        assert!(
            per_decile.iter().all(|&c| c.abs_diff(2000) < 250),
            "{per_decile:?}"
        );
    }

    #[test]
    fn neighbour_links_match_a_brute_force_recount() {
        // Pseudo-random keys: after every offer each entry's cached nearest-neighbour
        // similarity equals the brute-force maximum over the other entries.
        let mut b = ReplayBuffer::new(6);
        let mut state = 12345u64;
        let mut rnd = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        for t in 0..200 {
            let k: Vec<f32> = (0..5).map(|_| rnd()).collect();
            b.offer(t, &k);
            if b.len() < 2 {
                assert!(b.entries[0].nn.is_none(), "a lone entry has no neighbour");
                continue;
            }
            for (i, e) in b.entries.iter().enumerate() {
                let brute = b
                    .entries
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, o)| dot(&e.key, &o.key))
                    .fold(f32::NEG_INFINITY, f32::max);
                let cached = e.nn.map_or(f32::NEG_INFINITY, |(_, s)| s);
                assert!(
                    (brute - cached).abs() < 1e-6,
                    "offer {t}, entry {i}: cached {cached} vs {brute}"
                );
            }
        }
    }
}
