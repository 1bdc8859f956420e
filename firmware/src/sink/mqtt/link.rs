//! The MQTT connection's own thread: it drives rumqttc's event loop, counts acknowledgements,
//! reconnects with exponential backoff, and keeps what a lost connection had not delivered.
//!
//! rumqttc drops its unacknowledged messages when a broker answers a reconnect without the old
//! session (a restarted broker without persistence). The link takes them out of the event loop
//! when the connection fails and puts them back once the new one is up, so a broker restart
//! loses nothing that was already handed to the client (QoS 1 may deliver it twice).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{Client, Connection, ConnectionError, Event, Outgoing, Packet, QoS, Request};

use crate::sink::LinkStats;

/// Backoff between reconnect attempts: doubles from the first to the last.
pub const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// State the sink and its link share.
#[derive(Debug, Default)]
pub struct Shared {
    /// Messages handed to the client (embeddings and status).
    pub published: AtomicU64,
    /// The latest status payload, re-published (retained) on every reconnect.
    pub last_status: Mutex<Vec<u8>>,
    /// Set at exit: stop reconnecting.
    pub stop: AtomicBool,
    /// Connected now.
    pub connected: AtomicBool,
}

/// What the link needs besides the connection.
pub struct Link {
    /// For re-publishing the status.
    pub client: Client,
    /// Counters shared with the sink.
    pub shared: Arc<Shared>,
    /// Reconnects, acknowledgements.
    pub stats: Arc<LinkStats>,
    /// Where the status goes.
    pub status_topic: String,
    /// For logs (password hidden).
    pub name: String,
}

impl Link {
    /// Runs until the client disconnects or `shared.stop` is set after a failure.
    pub fn run(self, mut conn: Connection) {
        let mut saved: VecDeque<Request> = VecDeque::new();
        let mut backoff = BACKOFF.0;
        let mut failures = 0u32;
        let mut ever_connected = self.shared.connected.load(Ordering::Relaxed);
        while let Ok(event) = conn.recv() {
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    if ever_connected {
                        self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::info!(
                        sink = %self.name,
                        "connected{}; re-sending {} undelivered messages",
                        if ever_connected { " again" } else { "" },
                        saved.len()
                    );
                    ever_connected = true;
                    self.shared.connected.store(true, Ordering::Relaxed);
                    (backoff, failures) = (BACKOFF.0, 0);
                    // Ours go first: they are older than anything in the event loop. (After a
                    // second loss, re-sent and never-sent ones may interleave: consumers key on
                    // frame_id, and QoS 1 allows duplicates anyway.)
                    while let Some(r) = saved.pop_back() {
                        conn.eventloop.pending.push_front(r);
                    }
                    self.republish_status();
                }
                Ok(Event::Incoming(Packet::PubAck(_)))
                | Ok(Event::Outgoing(Outgoing::Publish(0))) => {
                    self.stats.acked.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(e) => {
                    self.shared.connected.store(false, Ordering::Relaxed);
                    saved.extend(std::mem::take(&mut conn.eventloop.pending));
                    self.log_failure(&e, failures, backoff);
                    failures += 1;
                    if !self.sleep_unless_stopped(backoff) {
                        break;
                    }
                    backoff = (backoff * 2).min(BACKOFF.1);
                }
            }
        }
        let lost = saved
            .iter()
            .filter(|r| matches!(r, Request::Publish(_)))
            .count();
        if lost > 0 {
            tracing::warn!(sink = %self.name, "{lost} messages never reached the broker");
        }
    }

    /// Sleeps `d` in short steps; false as soon as the sink says stop.
    fn sleep_unless_stopped(&self, d: Duration) -> bool {
        let until = std::time::Instant::now() + d;
        while std::time::Instant::now() < until {
            if self.shared.stop.load(Ordering::Relaxed) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        !self.shared.stop.load(Ordering::Relaxed)
    }

    fn republish_status(&self) {
        let payload = self.shared.last_status.lock().expect("status lock").clone();
        if !payload.is_empty()
            && self
                .client
                .try_publish(&self.status_topic, QoS::AtLeastOnce, true, payload)
                .is_ok()
        {
            self.shared.published.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn log_failure(&self, e: &ConnectionError, failures: u32, backoff: Duration) {
        let refused = matches!(e, ConnectionError::ConnectionRefused(_));
        if failures == 0 || refused && failures.is_power_of_two() {
            tracing::warn!(sink = %self.name, "{}; retrying in {backoff:?} (then backing off to {:?})", describe(e), BACKOFF.1);
        } else {
            tracing::debug!(sink = %self.name, "attempt {failures}: {}", describe(e));
        }
    }
}

/// An error in words a board's operator can act on.
pub fn describe(e: &ConnectionError) -> String {
    use rumqttc::ConnectReturnCode as C;
    match e {
        ConnectionError::ConnectionRefused(C::BadUserNamePassword) => {
            "the broker refused the credentials: bad user name or password (fix USER:PASS or password_file)".into()
        }
        // mosquitto answers a wrong password with this code too.
        ConnectionError::ConnectionRefused(C::NotAuthorized) => {
            "the broker refused the credentials: not authorised (fix USER:PASS or password_file, or the broker's ACL)".into()
        }
        ConnectionError::ConnectionRefused(code) => format!("the broker refused the connection: {code:?}"),
        ConnectionError::Io(io) => format!("broker unreachable: {io}"),
        ConnectionError::NetworkTimeout => "broker unreachable: connection timed out".into(),
        ConnectionError::Tls(e) => format!(
            "TLS with the broker failed: {e} (is ?ca= the CA that signed the broker's certificate, for this host name?)"
        ),
        other => format!("connection lost: {other}"),
    }
}
