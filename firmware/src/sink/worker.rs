//! [`SinkWorker`]: one sink on its own thread behind a bounded queue. Offering never waits:
//! a full queue drops the embedding (counted). At exit the queue drains for at most a bounded
//! time, so a sink stuck on a dead broker or socket cannot hold the board's shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use super::{BoardStatus, Embedding, EmbeddingSink, LinkStats};

/// Per-sink counters.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Taken into the queue.
    pub accepted: AtomicU64,
    /// Delivered.
    pub delivered: AtomicU64,
    /// Dropped because the sink's queue was full (or abandoned at exit).
    pub dropped: AtomicU64,
    /// Pushes that failed.
    pub errors: AtomicU64,
}

/// What one sink did over a run (the report's `sinks`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SinkReport {
    /// The sink, as given (passwords hidden).
    pub sink: String,
    /// Embeddings it delivered (MQTT: handed to the client; see `acked`).
    pub delivered: u64,
    /// Embeddings dropped because its queue was full, or still queued when it gave up at exit.
    pub dropped: u64,
    /// Deliveries that failed.
    pub errors: u64,
    /// Connections re-established (sinks with a broker).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconnects: Option<u64>,
    /// Messages the broker acknowledged, status messages included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acked: Option<u64>,
    /// Messages never acknowledged when the sink gave up at exit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unacked_at_exit: Option<u64>,
}

enum Item {
    Embedding(Arc<Embedding>),
    Status(Arc<BoardStatus>),
}

/// A sink on its own thread behind a bounded queue.
#[derive(Debug)]
pub struct SinkWorker {
    name: String,
    tx: Option<SyncSender<Item>>,
    /// Signalled when the thread ends (a Mutex so the worker is Sync).
    done: std::sync::Mutex<Receiver<()>>,
    stats: Arc<SinkStats>,
    link: Option<Arc<LinkStats>>,
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Embedding(e) => write!(f, "embedding {}", e.frame_id),
            Self::Status(_) => write!(f, "status"),
        }
    }
}

impl SinkWorker {
    /// Starts `sink` with a queue of `capacity` embeddings.
    pub fn spawn(sink: Box<dyn EmbeddingSink>, capacity: usize) -> Self {
        let name = sink.describe();
        let link = sink.link();
        let (tx, rx) = sync_channel::<Item>(capacity.max(1));
        let (done_tx, done) = sync_channel(1);
        let stats = Arc::new(SinkStats::default());
        let s = stats.clone();
        let thread_name = name.clone();
        std::thread::Builder::new()
            .name(format!("sink {name}"))
            .spawn(move || {
                drain(sink, &rx, &s, &thread_name);
                let _ = done_tx.send(());
            })
            .expect("spawning a sink thread");
        Self {
            name,
            tx: Some(tx),
            done: std::sync::Mutex::new(done),
            stats,
            link,
        }
    }

    /// Offers an embedding; drops it (counted) when the sink is behind.
    pub fn offer(&self, e: &Arc<Embedding>) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(Item::Embedding(e.clone())) {
            Ok(()) => self.stats.accepted.fetch_add(1, Ordering::Relaxed),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed)
            }
        };
    }

    /// Offers the board's state; skipped (not counted) when the sink is behind.
    pub fn offer_status(&self, status: &Arc<BoardStatus>) {
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(Item::Status(status.clone()));
        }
    }

    /// Counters.
    pub fn stats(&self) -> &Arc<SinkStats> {
        &self.stats
    }

    /// Description.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Delivers what is queued, flushes and stops the thread, waiting at most `drain`; what is
    /// still queued then counts as dropped and the thread is left to the process's exit.
    pub fn finish(mut self, drain: Duration) -> SinkReport {
        self.tx.take();
        let ended = self.done.lock().map(|d| d.recv_timeout(drain).is_ok());
        if !ended.unwrap_or(false) {
            let st = &self.stats;
            let pending = st.accepted.load(Ordering::Relaxed)
                - st.delivered.load(Ordering::Relaxed)
                - st.errors.load(Ordering::Relaxed);
            st.dropped.fetch_add(pending, Ordering::Relaxed);
            tracing::warn!(sink = %self.name, "still busy after {drain:?}; {pending} queued embeddings abandoned");
        }
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SinkReport {
            sink: self.name.clone(),
            delivered: load(&self.stats.delivered),
            dropped: load(&self.stats.dropped),
            errors: load(&self.stats.errors),
            reconnects: self.link.as_ref().map(|l| load(&l.reconnects)),
            acked: self.link.as_ref().map(|l| load(&l.acked)),
            unacked_at_exit: self.link.as_ref().map(|l| load(&l.unacked_at_exit)),
        }
    }
}

/// The sink thread: push what comes until the queue closes, then flush.
fn drain(mut sink: Box<dyn EmbeddingSink>, rx: &Receiver<Item>, s: &SinkStats, name: &str) {
    for item in rx {
        match item {
            Item::Embedding(e) => match sink.push(&e) {
                Ok(()) => {
                    s.delivered.fetch_add(1, Ordering::Relaxed);
                }
                Err(err) => {
                    if s.errors.fetch_add(1, Ordering::Relaxed).is_multiple_of(100) {
                        tracing::warn!(sink = %name, "{err}");
                    }
                }
            },
            Item::Status(st) => {
                if let Err(err) = sink.status(&st) {
                    tracing::debug!(sink = %name, "status: {err}");
                }
            }
        }
    }
    if let Err(err) = sink.flush() {
        tracing::error!(sink = %name, "flush failed: {err}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::SinkError;

    struct Slow(Arc<std::sync::Mutex<Vec<u64>>>, Duration);
    impl EmbeddingSink for Slow {
        fn push(&mut self, e: &Embedding) -> Result<(), SinkError> {
            std::thread::sleep(self.1);
            self.0.lock().expect("lock").push(e.frame_id);
            Ok(())
        }
        fn describe(&self) -> String {
            "slow".into()
        }
    }

    fn emb(id: u64) -> Arc<Embedding> {
        Arc::new(Embedding {
            frame_id: id,
            timestamp_us: 0,
            model_version: "m".into(),
            vector: vec![1.0],
        })
    }

    #[test]
    fn a_slow_sink_drops_instead_of_blocking() {
        let got = Arc::new(std::sync::Mutex::new(Vec::new()));
        let w = SinkWorker::spawn(Box::new(Slow(got.clone(), Duration::from_millis(20))), 2);
        let t = std::time::Instant::now();
        for i in 0..50 {
            w.offer(&emb(i));
        }
        assert!(
            t.elapsed().as_millis() < 20,
            "offering never waits on the sink: {:?}",
            t.elapsed()
        );
        let r = w.finish(Duration::from_secs(30));
        let delivered = got.lock().expect("lock").len() as u64;
        assert_eq!(delivered, r.delivered);
        assert_eq!(r.delivered + r.dropped, 50);
        assert!(r.dropped >= 45, "most are dropped: {r:?}");
        assert_eq!(r.reconnects, None);
    }

    #[test]
    fn a_stuck_sink_is_abandoned_at_exit_with_its_queue_counted() {
        let got = Arc::new(std::sync::Mutex::new(Vec::new()));
        let w = SinkWorker::spawn(Box::new(Slow(got, Duration::from_secs(3600))), 8);
        for i in 0..20 {
            w.offer(&emb(i));
        }
        let t = std::time::Instant::now();
        let r = w.finish(Duration::from_millis(200));
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        // One is stuck in push, 8 queued behind it, 11 never fitted: all 20 are lost, counted.
        assert_eq!((r.delivered, r.errors, r.dropped), (0, 0, 20), "{r:?}");
    }
}
