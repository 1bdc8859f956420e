//! [`SinkWorker`]: one sink on its own thread behind a bounded queue. Offering never waits:
//! a full queue drops the embedding (counted). At exit ([`finish_all`]) every queue drains at
//! once for a bounded time, then sinks still waiting on a connection are told to give up, so
//! a dead broker or socket cannot hold the board's shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use super::{BoardStatus, Embedding, EmbeddingSink, LinkStats};
use crate::error::SinkError;

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
    /// Taken from the queue but given up at exit (also counted in `dropped`).
    pub given_up: AtomicU64,
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
    interrupt: Option<Arc<AtomicBool>>,
    ended: bool,
}

/// How long a sink told to give up at exit may take to do so (MQTT: 1 s for the broker's
/// last acknowledgements, 2 s for its connection thread).
pub const GIVE_UP: Duration = Duration::from_secs(4);

/// Closes every sink's queue, lets them all deliver what is queued for `drain`, tells those
/// still busy to give up (for at most `GIVE_UP`, 4 s, more), and reports each; what a sink never
/// delivered counts as dropped.
pub fn finish_all(mut sinks: Vec<SinkWorker>, drain: Duration) -> Vec<SinkReport> {
    for s in &mut sinks {
        s.tx.take();
    }
    let deadline = Instant::now() + drain;
    for s in &mut sinks {
        s.wait(deadline);
    }
    let deadline = Instant::now() + GIVE_UP;
    for s in sinks.iter().filter(|s| !s.ended) {
        if let Some(f) = &s.interrupt {
            f.store(true, Ordering::Relaxed);
        }
    }
    for s in &mut sinks {
        s.wait(deadline);
    }
    sinks.into_iter().map(|s| s.report(drain)).collect()
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
        let (link, interrupt) = (sink.link(), sink.interrupt_flag());
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
            interrupt,
            ended: false,
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

    /// Delivers what is queued, flushes and stops the thread ([`finish_all`] for one sink).
    pub fn finish(self, drain: Duration) -> SinkReport {
        finish_all(vec![self], drain).remove(0)
    }

    /// Waits for the thread to end, until `deadline`.
    fn wait(&mut self, deadline: Instant) {
        if !self.ended {
            let left = deadline.saturating_duration_since(Instant::now());
            self.ended = self.done.lock().is_ok_and(|d| d.recv_timeout(left).is_ok());
        }
    }

    /// The counters; a thread that never ended leaves its queue counted as dropped.
    fn report(self, drain: Duration) -> SinkReport {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let st = &self.stats;
        if !self.ended {
            let pending = load(&st.accepted)
                .saturating_sub(load(&st.delivered) + load(&st.errors) + load(&st.given_up));
            st.dropped.fetch_add(pending, Ordering::Relaxed);
            tracing::warn!(sink = %self.name, "still busy after {drain:?} + {GIVE_UP:?}; {pending} queued embeddings abandoned");
        }
        SinkReport {
            sink: self.name.clone(),
            delivered: load(&st.delivered),
            dropped: load(&st.dropped),
            errors: load(&st.errors),
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
                Err(SinkError::Dropped(_)) => {
                    s.given_up.fetch_add(1, Ordering::Relaxed);
                    s.dropped.fetch_add(1, Ordering::Relaxed);
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
        // No interrupt flag: drain, then the give-up time, then abandoned.
        assert!(
            t.elapsed() < GIVE_UP + Duration::from_secs(2),
            "{:?}",
            t.elapsed()
        );
        // One is stuck in push, 8 queued behind it, 11 never fitted: all 20 are lost, counted.
        assert_eq!((r.delivered, r.errors, r.dropped), (0, 0, 20), "{r:?}");
    }
}
