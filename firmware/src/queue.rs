//! The frame queue between capture and embedding: bounded, drop-oldest (ring-channel). The
//! producer never blocks — a full queue overwrites its oldest frame, which is counted — so a
//! slow embedder sees the newest frames and capture keeps the camera's pace.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use ring_channel::{RingReceiver, RingSender, TryRecvError, ring_channel};

/// Counters shared by both ends.
#[derive(Debug, Default)]
pub struct QueueStats {
    /// Items offered by the producer.
    pub sent: AtomicU64,
    /// Items overwritten before anyone took them.
    pub dropped: AtomicU64,
    /// Items taken by the consumer.
    pub received: AtomicU64,
}

#[derive(Debug, Default)]
struct Wake {
    ready: Mutex<bool>,
    cond: Condvar,
}

/// Producer end.
#[derive(Debug)]
pub struct Sender<T> {
    tx: RingSender<T>,
    wake: Arc<Wake>,
    space: Arc<Wake>,
    stats: Arc<QueueStats>,
    capacity: usize,
}

/// Consumer end.
#[derive(Debug)]
pub struct Receiver<T> {
    rx: RingReceiver<T>,
    wake: Arc<Wake>,
    space: Arc<Wake>,
    stats: Arc<QueueStats>,
}

/// What [`Receiver::recv_timeout`] got.
#[derive(Debug, PartialEq, Eq)]
pub enum Recv<T> {
    /// An item.
    Item(T),
    /// Nothing within the timeout.
    Timeout,
    /// The producer is gone and the queue is empty.
    Closed,
}

/// A drop-oldest queue holding at most `capacity` items.
pub fn bounded<T>(capacity: NonZeroUsize) -> (Sender<T>, Receiver<T>) {
    let (tx, rx) = ring_channel(capacity);
    let wake = Arc::new(Wake::default());
    let space = Arc::new(Wake::default());
    let stats = Arc::new(QueueStats::default());
    (
        Sender {
            tx,
            wake: wake.clone(),
            space: space.clone(),
            stats: stats.clone(),
            capacity: capacity.get(),
        },
        Receiver {
            rx,
            wake,
            space,
            stats,
        },
    )
}

impl<T> Sender<T> {
    /// Enqueues without blocking; returns the overwritten oldest item, if any (counted), or
    /// `Err(item)` when the receiver is gone.
    pub fn send(&self, item: T) -> Result<Option<T>, T> {
        self.stats.sent.fetch_add(1, Ordering::Relaxed);
        match self.tx.send(item) {
            Ok(old) => {
                if old.is_some() {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
                let mut ready = self.wake.ready.lock().expect("queue lock poisoned");
                *ready = true;
                self.wake.cond.notify_one();
                Ok(old)
            }
            Err(ring_channel::SendError::Disconnected(item)) => Err(item),
        }
    }

    /// Lossless variant for recordings replayed as fast as possible: waits while the queue
    /// is full instead of overwriting (a file has no "newest" frame worth the loss). Gives
    /// the item back when `stop` is set or the receiver is gone.
    pub fn send_waiting(&self, item: T, stop: &std::sync::atomic::AtomicBool) -> Result<(), T> {
        loop {
            let s = &self.stats;
            let pending = s.sent.load(Ordering::Acquire)
                - s.dropped.load(Ordering::Acquire)
                - s.received.load(Ordering::Acquire);
            if pending < self.capacity as u64 {
                break;
            }
            if stop.load(Ordering::Relaxed) {
                return Err(item);
            }
            // Woken by the receiver taking an item; the timeout re-checks `stop`.
            let freed = self.space.ready.lock().expect("queue lock poisoned");
            let (mut freed, _) = self
                .space
                .cond
                .wait_timeout_while(freed, Duration::from_millis(10), |f| !*f)
                .expect("queue lock poisoned");
            *freed = false;
        }
        self.send(item).map(|_| ())
    }

    /// The shared counters.
    pub fn stats(&self) -> Arc<QueueStats> {
        self.stats.clone()
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        // Wake a waiting receiver so it sees the disconnect promptly.
        if let Ok(mut ready) = self.wake.ready.lock() {
            *ready = true;
            self.wake.cond.notify_all();
        }
    }
}

impl<T> Receiver<T> {
    /// Takes the oldest pending item, waiting up to `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Recv<T> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            match self.rx.try_recv() {
                Ok(item) => {
                    self.stats.received.fetch_add(1, Ordering::Release);
                    let mut freed = self.space.ready.lock().expect("queue lock poisoned");
                    *freed = true;
                    self.space.cond.notify_one();
                    return Recv::Item(item);
                }
                Err(TryRecvError::Disconnected) => return Recv::Closed,
                Err(TryRecvError::Empty) => {}
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Recv::Timeout;
            }
            let ready = self.wake.ready.lock().expect("queue lock poisoned");
            let (mut ready, _) = self
                .wake
                .cond
                .wait_timeout_while(ready, deadline - now, |r| !*r)
                .expect("queue lock poisoned");
            *ready = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(n: usize) -> NonZeroUsize {
        NonZeroUsize::new(n).expect("non-zero")
    }

    #[test]
    fn full_queue_drops_the_oldest_and_counts_it() {
        let (tx, rx) = bounded(cap(2));
        let s = tx.stats();
        for i in 0..5 {
            let old = tx.send(i).expect("receiver alive");
            assert_eq!(old, if i >= 2 { Some(i - 2) } else { None });
        }
        assert_eq!(rx.recv_timeout(Duration::ZERO), Recv::Item(3));
        assert_eq!(rx.recv_timeout(Duration::ZERO), Recv::Item(4));
        assert_eq!(rx.recv_timeout(Duration::from_millis(1)), Recv::Timeout);
        assert_eq!(
            (
                s.sent.load(Ordering::Relaxed),
                s.dropped.load(Ordering::Relaxed)
            ),
            (5, 3)
        );
        drop(tx);
        assert_eq!(rx.recv_timeout(Duration::from_millis(1)), Recv::Closed);
    }

    #[test]
    fn waiting_send_loses_nothing() {
        let (tx, rx) = bounded(cap(2));
        let s = tx.stats();
        let stop = std::sync::atomic::AtomicBool::new(false);
        let producer = std::thread::spawn(move || {
            for i in 0..100u64 {
                tx.send_waiting(i, &stop).expect("receiver alive");
            }
        });
        let mut got = Vec::new();
        while let Recv::Item(i) = rx.recv_timeout(Duration::from_secs(2)) {
            got.push(i);
            std::thread::sleep(Duration::from_micros(300));
        }
        producer.join().expect("producer");
        assert_eq!(got, (0..100).collect::<Vec<_>>());
        assert_eq!(s.dropped.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn fast_producer_slow_consumer_keeps_the_newest_in_order() {
        let (tx, rx) = bounded(cap(2));
        let s = tx.stats();
        let producer = std::thread::spawn(move || {
            for i in 0..200u64 {
                tx.send(i).expect("receiver alive");
                std::thread::sleep(Duration::from_micros(200));
            }
        });
        let mut got = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(2)) {
                Recv::Item(i) => {
                    got.push(i);
                    std::thread::sleep(Duration::from_millis(2));
                }
                Recv::Closed => break,
                Recv::Timeout => panic!("producer stalled"),
            }
        }
        producer.join().expect("producer");
        assert!(got.windows(2).all(|w| w[0] < w[1]), "in order: {got:?}");
        assert_eq!(got.last(), Some(&199), "the newest frame always arrives");
        assert_eq!(s.dropped.load(Ordering::Relaxed) + got.len() as u64, 200);
        assert!(
            s.dropped.load(Ordering::Relaxed) > 0,
            "a slow consumer causes drops"
        );
    }
}
