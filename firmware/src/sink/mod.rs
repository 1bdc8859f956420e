//! Where embeddings go: [`EmbeddingSink`] and its implementations — `jsonl:-`/`jsonl:FILE`,
//! `npy:FILE`, `udp:HOST:PORT`, `tcp:HOST:PORT`, `mqtt://…` — each behind a [`SinkWorker`]:
//! its own thread and a bounded queue, so a slow sink drops embeddings (counted) and never
//! stalls capture or embedding.

pub mod file;
#[cfg(test)]
pub mod memory;
#[cfg(feature = "mqtt")]
pub mod mqtt;
pub mod mqtt_url;
pub mod socket;
mod worker;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

pub use self::mqtt_url::MqttUrl;
pub use self::worker::{SinkReport, SinkWorker, finish_all};
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
    /// The board's state, every few seconds (the MQTT sink publishes it retained).
    ///
    /// # Errors
    /// [`SinkError`] when it cannot be sent (logged, not counted as a dropped embedding).
    fn status(&mut self, _status: &BoardStatus) -> Result<(), SinkError> {
        Ok(())
    }
    /// Counters of the connection, for sinks that hold one to a broker.
    fn link(&self) -> Option<Arc<LinkStats>> {
        None
    }
    /// A flag the worker sets when the sink has had its time to drain at exit: a sink that
    /// waits on a connection then stops waiting ([`SinkError::Dropped`]).
    fn interrupt_flag(&self) -> Option<Arc<std::sync::atomic::AtomicBool>> {
        None
    }
}

/// What a sink knows of the board it runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkContext {
    /// The board id (`[board] id`, else the host name): `{board}` in MQTT topics.
    pub board: String,
    /// The model version at start.
    pub model_version: String,
    /// Payload of message sinks.
    pub format: PayloadFormat,
}

/// How a message sink (MQTT) encodes one embedding.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum PayloadFormat {
    /// The little-endian layout of [`socket`] (24 + 4·dim bytes).
    #[default]
    Binary,
    /// One JSON object, as a `jsonl` line.
    Json,
}

/// The board's state as the pipeline sees it, offered to every sink every few seconds.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BoardStatus {
    /// The model now embedding.
    pub model_version: String,
    /// Embeddings per second over the last refresh.
    pub fps: f32,
    /// Embeddings so far.
    pub frames: u64,
    /// Frames dropped before embedding (queues).
    pub dropped_frames: u64,
    /// Embeddings dropped by slow sinks.
    pub sink_drops: u64,
    /// Seconds since the run started.
    pub uptime_s: f64,
}

/// Counters of a sink's connection to a broker.
#[derive(Debug, Default)]
pub struct LinkStats {
    /// Connections re-established after a loss.
    pub reconnects: AtomicU64,
    /// Messages the broker acknowledged (QoS 1), or wrote to the socket (QoS 0).
    pub acked: AtomicU64,
    /// Messages still unacknowledged when the sink gave up at exit (lost).
    pub unacked_at_exit: AtomicU64,
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
    /// An MQTT broker.
    Mqtt(Box<MqttUrl>),
}

impl std::str::FromStr for SinkSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some((scheme, rest)) = s.split_once("://")
            && matches!(scheme.to_ascii_lowercase().as_str(), "mqtt" | "mqtts")
        {
            let canonical = format!("{}://{rest}", scheme.to_ascii_lowercase());
            return Ok(Self::Mqtt(Box::new(canonical.parse()?)));
        }
        // Errors show the spec with any `USER:PASS@` hidden.
        let shown = mqtt_url::redacted(s);
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
                "sink `{shown}`: {kind} needs HOST:PORT with a port from 0 to 65535, e.g. {kind}:192.168.1.10:9000"
            )),
            "jsonl" | "npy" => Err(format!(
                "sink `{shown}`: name the file, e.g. {kind}:embeddings.{kind} (jsonl:- for stdout)"
            )),
            _ => Err(format!(
                "unknown sink `{shown}`; use jsonl:-, jsonl:FILE, npy:FILE, udp:HOST:PORT, tcp:HOST:PORT or mqtt://HOST/TOPIC"
            )),
        }
    }
}

/// clap's parser for `--sink`: a bad value gets our message (password hidden), not clap's
/// usual "invalid value '…'", which would echo a password to the terminal and the journal.
#[derive(Debug, Clone, Copy)]
pub struct SinkParser;

impl clap::builder::TypedValueParser for SinkParser {
    type Value = SinkSpec;
    fn parse_ref(
        &self,
        _: &clap::Command,
        _: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<SinkSpec, clap::Error> {
        use clap::error::ErrorKind;
        let text = value
            .to_str()
            .ok_or_else(|| clap::Error::raw(ErrorKind::InvalidUtf8, "--sink is not UTF-8\n"))?;
        text.parse()
            .map_err(|e| clap::Error::raw(ErrorKind::ValueValidation, format!("--sink: {e}\n")))
    }
}

impl std::fmt::Display for SinkSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Jsonl(p) => write!(f, "jsonl:{p}"),
            Self::Npy(p) => write!(f, "npy:{p}"),
            Self::Udp(a) => write!(f, "udp:{a}"),
            Self::Tcp(a) => write!(f, "tcp:{a}"),
            Self::Mqtt(u) => write!(f, "{u}"),
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
/// [`SinkError`] when a file cannot be created, an address does not resolve or a broker
/// refuses the credentials.
pub fn open(spec: &SinkSpec, context: &SinkContext) -> Result<Box<dyn EmbeddingSink>, SinkError> {
    Ok(match spec {
        SinkSpec::Jsonl(p) => Box::new(file::JsonlSink::open(p)?),
        SinkSpec::Npy(p) => Box::new(file::NpySink::open(p)?),
        SinkSpec::Udp(a) => Box::new(socket::UdpSink::open(a)?),
        SinkSpec::Tcp(a) => Box::new(socket::TcpSink::new(a)),
        SinkSpec::Mqtt(u) => open_mqtt(u, context)?,
    })
}

#[cfg(feature = "mqtt")]
fn open_mqtt(url: &MqttUrl, context: &SinkContext) -> Result<Box<dyn EmbeddingSink>, SinkError> {
    Ok(Box::new(mqtt::MqttSink::open(url, context)?))
}

#[cfg(not(feature = "mqtt"))]
fn open_mqtt(url: &MqttUrl, _: &SinkContext) -> Result<Box<dyn EmbeddingSink>, SinkError> {
    Err(SinkError::Invalid(format!(
        "sink {url}: this edgeclr-device is built without MQTT; rebuild with the default features (or --features mqtt)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        for s in [
            "jsonl:-",
            "jsonl:out.jsonl",
            "npy:e.npy",
            "udp:127.0.0.1:9000",
            "tcp:host:7",
            "mqtt://broker:1883/edgeclr/{board}/embeddings?qos=1",
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
