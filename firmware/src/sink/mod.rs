//! Where embeddings go: [`EmbeddingSink`] and its implementations — `jsonl:-`/`jsonl:FILE`,
//! `npy:FILE`, `udp:HOST:PORT`, `tcp:HOST:PORT` — each behind a [`SinkWorker`]: its own thread
//! and a bounded queue, so a slow sink drops embeddings (counted) and never stalls capture or
//! embedding.

pub mod file;
#[cfg(test)]
pub mod memory;
pub mod socket;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;

use crate::error::SinkError;

/// One frame's representation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Embedding {
    /// Source frame id.
    pub frame_id: u64,
    /// Capture time, microseconds since the Unix epoch.
    pub timestamp_us: u64,
    /// The model that produced it (manifest `source.model_version`).
    pub model_version: Arc<str>,
    /// `h = f(x)`.
    pub vector: Vec<f32>,
}

/// A consumer of embeddings.
pub trait EmbeddingSink: Send {
    /// Delivers one embedding.
    ///
    /// # Errors
    /// [`SinkError`] when writing/sending fails (the worker logs, counts and goes on).
    fn push(&mut self, e: &Embedding) -> Result<(), SinkError>;
    /// Makes everything pushed so far durable/visible.
    ///
    /// # Errors
    /// [`SinkError`] on I/O failure.
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
    /// For logs.
    fn describe(&self) -> String;
}

/// A parsed `--sink` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkSpec {
    /// JSON lines to stdout (`-`) or a file.
    Jsonl(String),
    /// A float32 `.npy` written at shutdown.
    Npy(String),
    /// Datagrams (the wire format of [`socket`]).
    Udp(String),
    /// A length-prefixed stream.
    Tcp(String),
}

impl std::str::FromStr for SinkSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (kind, rest) = s.split_once(':').unwrap_or((s, ""));
        let needs_port = |r: &str| {
            r.rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
        };
        match kind {
            "jsonl" if !rest.is_empty() => Ok(Self::Jsonl(rest.into())),
            "npy" if !rest.is_empty() => Ok(Self::Npy(rest.into())),
            "udp" if needs_port(rest) => Ok(Self::Udp(rest.into())),
            "tcp" if needs_port(rest) => Ok(Self::Tcp(rest.into())),
            "udp" | "tcp" => Err(format!(
                "sink `{s}`: {kind} needs HOST:PORT with a port from 0 to 65535, e.g. {kind}:192.168.1.10:9000"
            )),
            "jsonl" | "npy" => Err(format!(
                "sink `{s}`: name the file, e.g. {kind}:embeddings.{kind} (jsonl:- for stdout)"
            )),
            _ => Err(format!(
                "unknown sink `{s}`; use jsonl:-, jsonl:FILE, npy:FILE, udp:HOST:PORT or tcp:HOST:PORT"
            )),
        }
    }
}

impl std::fmt::Display for SinkSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Jsonl(p) => write!(f, "jsonl:{p}"),
            Self::Npy(p) => write!(f, "npy:{p}"),
            Self::Udp(a) => write!(f, "udp:{a}"),
            Self::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

impl serde::Serialize for SinkSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for SinkSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Opens the sink named by `spec`.
///
/// # Errors
/// [`SinkError`] when a file cannot be created or an address does not resolve.
pub fn open(spec: &SinkSpec) -> Result<Box<dyn EmbeddingSink>, SinkError> {
    Ok(match spec {
        SinkSpec::Jsonl(p) => Box::new(file::JsonlSink::open(p)?),
        SinkSpec::Npy(p) => Box::new(file::NpySink::open(p)?),
        SinkSpec::Udp(a) => Box::new(socket::UdpSink::open(a)?),
        SinkSpec::Tcp(a) => Box::new(socket::TcpSink::new(a)),
    })
}

/// Per-sink counters.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Delivered.
    pub delivered: AtomicU64,
    /// Dropped because the sink's queue was full.
    pub dropped: AtomicU64,
    /// Pushes that failed.
    pub errors: AtomicU64,
}

/// A sink on its own thread behind a bounded queue.
#[derive(Debug)]
pub struct SinkWorker {
    name: String,
    tx: Option<SyncSender<Arc<Embedding>>>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<SinkStats>,
}

impl SinkWorker {
    /// Starts `sink` with a queue of `capacity` embeddings.
    pub fn spawn(mut sink: Box<dyn EmbeddingSink>, capacity: usize) -> Self {
        let name = sink.describe();
        let (tx, rx) = sync_channel::<Arc<Embedding>>(capacity.max(1));
        let stats = Arc::new(SinkStats::default());
        let s = stats.clone();
        let thread_name = name.clone();
        let thread = std::thread::Builder::new()
            .name(format!("sink {name}"))
            .spawn(move || {
                for e in rx {
                    match sink.push(&e) {
                        Ok(()) => s.delivered.fetch_add(1, Ordering::Relaxed),
                        Err(err) => {
                            if s.errors.fetch_add(1, Ordering::Relaxed) % 100 == 0 {
                                tracing::warn!(sink = %thread_name, "{err}");
                            }
                            0
                        }
                    };
                }
                if let Err(err) = sink.flush() {
                    tracing::error!(sink = %thread_name, "flush failed: {err}");
                }
            })
            .expect("spawning a sink thread");
        Self {
            name,
            tx: Some(tx),
            thread: Some(thread),
            stats,
        }
    }

    /// Offers an embedding; drops it (counted) when the sink is behind.
    pub fn offer(&self, e: &Arc<Embedding>) {
        if let Some(tx) = &self.tx {
            match tx.try_send(e.clone()) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
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

    /// Delivers what is queued, flushes and stops the thread.
    pub fn finish(mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Slow(Arc<std::sync::Mutex<Vec<u64>>>);
    impl EmbeddingSink for Slow {
        fn push(&mut self, e: &Embedding) -> Result<(), SinkError> {
            std::thread::sleep(std::time::Duration::from_millis(20));
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
        let w = SinkWorker::spawn(Box::new(Slow(got.clone())), 2);
        let t = std::time::Instant::now();
        for i in 0..50 {
            w.offer(&emb(i));
        }
        assert!(
            t.elapsed().as_millis() < 20,
            "offering never waits on the sink: {:?}",
            t.elapsed()
        );
        let stats = w.stats().clone();
        w.finish();
        let delivered = got.lock().expect("lock").len() as u64;
        assert_eq!(delivered, stats.delivered.load(Ordering::Relaxed));
        assert_eq!(delivered + stats.dropped.load(Ordering::Relaxed), 50);
        assert!(
            stats.dropped.load(Ordering::Relaxed) >= 45,
            "most are dropped"
        );
    }

    #[test]
    fn specs_parse() {
        for s in [
            "jsonl:-",
            "jsonl:out.jsonl",
            "npy:e.npy",
            "udp:127.0.0.1:9000",
            "tcp:host:7",
        ] {
            assert_eq!(s.parse::<SinkSpec>().expect(s).to_string(), s);
        }
        assert!("udp:nohost".parse::<SinkSpec>().is_err());
        assert!(
            "kafka:x"
                .parse::<SinkSpec>()
                .expect_err("unknown")
                .contains("tcp:HOST:PORT")
        );
    }
}
