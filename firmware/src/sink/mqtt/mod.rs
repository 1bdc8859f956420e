//! `mqtt://…` and `mqtts://…`: embeddings to an MQTT broker (mosquitto, EMQX, …) through
//! rumqttc's blocking client.
//!
//! - Embeddings go to `TOPIC` (`{board}` filled in), QoS 0 or 1, not retained; the payload is
//!   the udp/tcp binary layout ([`super::socket`]) or, with `sink.format = "json"`, the
//!   `jsonl` object.
//! - `TOPIC/status` holds a retained JSON status: `state` (`online`, `stopped`, or `offline`
//!   from the last will the broker publishes when the board vanishes), board id, model
//!   version, fps and counters; refreshed every `sink.status_every_s` and on every reconnect.
//! - Wrong credentials or an untrusted certificate fail at start; an unreachable broker does
//!   not: the sink connects in the background, reconnecting with backoff (the `link` module).
//! - Nothing here blocks the pipeline: the sink's thread waits on the client's 10-message
//!   channel, the worker's queue in front of it drops when full (counted).

mod link;
mod tls;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rumqttc::{
    Client, ClientError, ConnectionError, Event, LastWill, MqttOptions, Packet, QoS, Request,
    TlsConfiguration, Transport,
};

use self::link::{Link, Shared};
use super::{
    BoardStatus, Embedding, EmbeddingSink, LinkStats, MqttUrl, PayloadFormat, SinkContext,
};
use crate::error::SinkError;

/// Messages the client holds between this sink's thread and the connection.
const CHANNEL: usize = 10;
/// How long [`EmbeddingSink::flush`] waits for the broker to acknowledge what was sent.
const FLUSH_WAIT: Duration = Duration::from_secs(5);

/// An MQTT publisher.
pub struct MqttSink {
    name: String,
    client: Client,
    topic: String,
    status_topic: String,
    qos: QoS,
    format: PayloadFormat,
    board: String,
    model_version: String,
    last: Option<BoardStatus>,
    interrupted: Arc<AtomicBool>,
    shared: Arc<Shared>,
    stats: Arc<LinkStats>,
    link: Option<JoinHandle<()>>,
}

impl MqttSink {
    /// Connects (waiting for the broker's answer up to 5 s) and starts the connection thread.
    ///
    /// # Errors
    /// [`SinkError::Invalid`] when the broker refuses the credentials or the client, the TLS
    /// handshake fails, or the password or CA file is unusable. An unreachable broker is not
    /// an error: the sink keeps trying in the background.
    pub fn open(url: &MqttUrl, context: &SinkContext) -> Result<Self, SinkError> {
        let name = url.to_string();
        let board = context.board.clone();
        let (topic, status_topic) = (url.topic_for(&board), url.status_topic_for(&board));
        let options = options(url, &board, &status_topic)?;
        let (client, mut conn) = Client::new(options, CHANNEL);
        let shared = Arc::new(Shared::default());
        handshake(&mut conn, &name, &topic, &shared)?;
        let stats = Arc::new(LinkStats::default());
        let link = Link {
            client: client.clone(),
            shared: shared.clone(),
            stats: stats.clone(),
            status_topic: status_topic.clone(),
            name: name.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("mqtt link".into())
            .spawn(move || link.run(conn))
            .map_err(|e| SinkError::Io {
                target: name.clone(),
                source: e,
            })?;
        let mut sink = Self {
            name,
            client,
            topic,
            status_topic,
            qos: if url.qos == 0 {
                QoS::AtMostOnce
            } else {
                QoS::AtLeastOnce
            },
            format: context.format,
            board,
            model_version: context.model_version.clone(),
            last: None,
            interrupted: Arc::new(AtomicBool::new(false)),
            shared,
            stats,
            link: Some(handle),
        };
        sink.publish_status("online", None)?;
        Ok(sink)
    }

    /// Publishes the retained status; the link re-publishes the latest on every reconnect.
    fn publish_status(&mut self, state: &str, s: Option<&BoardStatus>) -> Result<(), SinkError> {
        let payload = status_payload(&self.board, state, &self.model_version, s);
        *self.shared.last_status.lock().expect("status lock") = payload.clone();
        match self
            .client
            .try_publish(&self.status_topic, QoS::AtLeastOnce, true, payload)
        {
            Ok(()) => {
                self.shared.published.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            // A full client channel means the broker is behind or gone: the next status, or
            // the reconnect, carries this one's news.
            Err(e) => Err(SinkError::Invalid(format!(
                "{}: status not sent: {e}",
                self.name
            ))),
        }
    }

    /// Waits until the broker has acknowledged everything handed to the client, or `wait`.
    fn wait_acked(&self, wait: Duration) -> u64 {
        let t = Instant::now();
        loop {
            let published = self.shared.published.load(Ordering::Relaxed);
            let acked = self.stats.acked.load(Ordering::Relaxed);
            if acked >= published || t.elapsed() >= wait {
                return published.saturating_sub(acked);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl EmbeddingSink for MqttSink {
    /// Hands the embedding to the client, waiting while its channel is full (the broker is
    /// slow or gone: the worker's queue fills and drops meanwhile), until the worker says to
    /// give up at exit.
    fn push(&mut self, e: &Embedding) -> Result<(), SinkError> {
        let payload = match self.format {
            PayloadFormat::Binary => super::socket::encode(e),
            PayloadFormat::Json => serde_json::to_vec(e).expect("embeddings serialise"),
        };
        let mut payload = payload;
        // A refused request hands the payload back: no copy per frame, none per retry.
        while let Err(ClientError::TryRequest(Request::Publish(p))) =
            self.client
                .try_publish(&self.topic, self.qos, false, std::mem::take(&mut payload))
        {
            payload = Vec::from(p.payload);
            if self.interrupted.load(Ordering::Relaxed) {
                return Err(SinkError::Dropped(format!(
                    "{}: the broker never took it; given up at exit",
                    self.name
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        self.shared.published.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn status(&mut self, status: &BoardStatus) -> Result<(), SinkError> {
        self.model_version.clone_from(&status.model_version);
        self.last = Some(status.clone());
        self.publish_status("online", Some(status))
    }

    /// Says `stopped` (retained), waits for the broker's acknowledgements (5 s, or 1 s once
    /// told to give up), then disconnects cleanly (so the broker does not fire the last will).
    fn flush(&mut self) -> Result<(), SinkError> {
        let last = self.last.take();
        let _ = self.publish_status("stopped", last.as_ref());
        let wait = if self.interrupted.load(Ordering::Relaxed) {
            Duration::from_secs(1)
        } else {
            FLUSH_WAIT
        };
        let unacked = self.wait_acked(wait);
        self.stats.unacked_at_exit.store(unacked, Ordering::Relaxed);
        self.shared.stop.store(true, Ordering::Relaxed);
        let _ = self.client.try_disconnect();
        if let Some(h) = self.link.take() {
            let t = Instant::now();
            while !h.is_finished() && t.elapsed() < Duration::from_secs(2) {
                std::thread::sleep(Duration::from_millis(10));
            }
            if h.is_finished() {
                let _ = h.join();
            }
        }
        if unacked > 0 {
            return Err(SinkError::Invalid(format!(
                "{}: {unacked} messages unacknowledged by the broker after {wait:?}",
                self.name
            )));
        }
        Ok(())
    }

    fn describe(&self) -> String {
        self.name.clone()
    }

    fn link(&self) -> Option<Arc<LinkStats>> {
        Some(self.stats.clone())
    }

    fn interrupt_flag(&self) -> Option<Arc<std::sync::atomic::AtomicBool>> {
        Some(self.interrupted.clone())
    }
}

/// Waits for the broker's first answer: refused credentials, client or certificate are
/// errors; an unreachable broker is not (the link keeps trying).
fn handshake(
    conn: &mut rumqttc::Connection,
    name: &str,
    topic: &str,
    shared: &Shared,
) -> Result<(), SinkError> {
    match conn.recv() {
        Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
            shared.connected.store(true, Ordering::Relaxed);
            tracing::info!(sink = %name, "connected; publishing to {topic}");
        }
        Ok(Err(e)) if fatal(&e) => {
            return Err(SinkError::Invalid(format!(
                "sink {name}: {}",
                link::describe(&e)
            )));
        }
        Ok(Err(e)) => tracing::warn!(
            sink = %name,
            "{}; starting anyway, embeddings queue and drop until it answers",
            link::describe(&e)
        ),
        Ok(Ok(other)) => tracing::debug!(sink = %name, "before connack: {other:?}"),
        Err(_) => {
            return Err(SinkError::Invalid(format!(
                "sink {name}: the client closed"
            )));
        }
    }
    Ok(())
}

/// Errors that mean the configuration is wrong, not the network.
fn fatal(e: &ConnectionError) -> bool {
    matches!(
        e,
        ConnectionError::ConnectionRefused(_) | ConnectionError::Tls(_)
    )
}

/// Client options: id, keep-alive, credentials, last will, TLS.
fn options(url: &MqttUrl, board: &str, status_topic: &str) -> Result<MqttOptions, SinkError> {
    let mut o = MqttOptions::new(url.client_id_for(board), url.host.clone(), url.port);
    o.set_keep_alive(Duration::from_secs(url.keepalive_s.into()));
    // The link re-sends what a lost connection left unacknowledged, so no broker-side session
    // is needed.
    o.set_clean_session(true);
    o.set_max_packet_size(1 << 20, 1 << 20);
    if let Some(user) = &url.user {
        let password = url
            .resolve_password()
            .map_err(|e| SinkError::Invalid(format!("sink {url}: {e}")))?;
        o.set_credentials(user.clone(), password.unwrap_or_default());
    }
    o.set_last_will(LastWill::new(
        status_topic,
        status_payload(board, "offline", "", None),
        QoS::AtLeastOnce,
        true,
    ));
    if let Some(ca) = url.ca.as_deref().filter(|_| url.tls) {
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            tls::client_config(ca)?,
        )));
    }
    Ok(o)
}

/// The retained status: board, state, time, model, and the pipeline's counters when known.
#[derive(serde::Serialize)]
struct StatusMessage<'a> {
    board: &'a str,
    state: &'a str,
    at_unix_s: f64,
    /// Only without `status` (which carries its own).
    #[serde(skip_serializing_if = "Option::is_none")]
    model_version: Option<&'a str>,
    #[serde(flatten)]
    status: Option<&'a BoardStatus>,
}

fn status_payload(board: &str, state: &str, model: &str, s: Option<&BoardStatus>) -> Vec<u8> {
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let message = StatusMessage {
        board,
        state,
        at_unix_s: (at * 1000.0).round() / 1000.0,
        model_version: Some(model).filter(|m| !m.is_empty() && s.is_none()),
        status: s,
    };
    serde_json::to_vec(&message).expect("status serialises")
}
