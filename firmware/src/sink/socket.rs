//! Network sinks. Wire format (both UDP and TCP), all little-endian:
//!
//! ```text
//! u32  length of the rest of the message in bytes (= 20 + 4·dim)
//! u64  frame id
//! u64  capture time, µs since the Unix epoch
//! u32  dim
//! f32 × dim  the embedding
//! ```
//!
//! One UDP datagram carries one message. TCP reconnects (at most once per second) after an
//! error; messages offered while disconnected are counted as errors and dropped.

use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use super::{Embedding, EmbeddingSink};
use crate::error::SinkError;

/// Encodes one message of the wire format.
pub fn encode(e: &Embedding) -> Vec<u8> {
    let dim = e.vector.len();
    let mut out = Vec::with_capacity(24 + 4 * dim);
    out.extend_from_slice(&((20 + 4 * dim) as u32).to_le_bytes());
    out.extend_from_slice(&e.frame_id.to_le_bytes());
    out.extend_from_slice(&e.timestamp_us.to_le_bytes());
    out.extend_from_slice(&(dim as u32).to_le_bytes());
    for v in &e.vector {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// `udp:HOST:PORT`.
#[derive(Debug)]
pub struct UdpSink {
    addr: String,
    socket: UdpSocket,
}

impl UdpSink {
    /// Binds an ephemeral local port and resolves `addr`.
    ///
    /// # Errors
    /// [`SinkError::Io`] when binding or resolving fails.
    pub fn open(addr: &str) -> Result<Self, SinkError> {
        let io = |source| SinkError::Io {
            target: format!("udp:{addr}"),
            source,
        };
        let socket = UdpSocket::bind("0.0.0.0:0").map_err(io)?;
        socket.connect(addr).map_err(io)?;
        Ok(Self {
            addr: addr.into(),
            socket,
        })
    }
}

impl EmbeddingSink for UdpSink {
    fn push(&mut self, e: &Embedding) -> Result<(), SinkError> {
        self.socket
            .send(&encode(e))
            .map(|_| ())
            .map_err(|source| SinkError::Io {
                target: format!("udp:{}", self.addr),
                source,
            })
    }

    fn describe(&self) -> String {
        format!("udp:{}", self.addr)
    }
}

/// `tcp:HOST:PORT`, reconnecting.
#[derive(Debug)]
pub struct TcpSink {
    addr: String,
    stream: Option<TcpStream>,
    last_attempt: Option<Instant>,
}

impl TcpSink {
    /// A sink that connects on first use.
    pub fn new(addr: &str) -> Self {
        Self {
            addr: addr.into(),
            stream: None,
            last_attempt: None,
        }
    }

    fn connect(&mut self) -> Result<&mut TcpStream, SinkError> {
        let io = |source| SinkError::Io {
            target: format!("tcp:{}", self.addr),
            source,
        };
        if self.stream.is_none() {
            if self
                .last_attempt
                .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
            {
                return Err(SinkError::Invalid(format!(
                    "tcp:{}: not connected (retrying every second)",
                    self.addr
                )));
            }
            self.last_attempt = Some(Instant::now());
            let addr = self
                .addr
                .to_socket_addrs()
                .map_err(io)?
                .next()
                .ok_or_else(|| {
                    SinkError::Invalid(format!("tcp:{}: does not resolve", self.addr))
                })?;
            let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(io)?;
            s.set_nodelay(true).map_err(io)?;
            s.set_write_timeout(Some(Duration::from_secs(2)))
                .map_err(io)?;
            self.stream = Some(s);
        }
        Ok(self.stream.as_mut().expect("connected above"))
    }
}

impl EmbeddingSink for TcpSink {
    fn push(&mut self, e: &Embedding) -> Result<(), SinkError> {
        let msg = encode(e);
        let addr = self.addr.clone();
        let result = self.connect()?.write_all(&msg);
        result.map_err(|source| {
            self.stream = None;
            SinkError::Io {
                target: format!("tcp:{addr}"),
                source,
            }
        })
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        match self.stream.as_mut() {
            Some(s) => s.flush().map_err(|source| SinkError::Io {
                target: format!("tcp:{}", self.addr),
                source,
            }),
            None => Ok(()),
        }
    }

    fn describe(&self) -> String {
        format!("tcp:{}", self.addr)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::TcpListener;

    use super::*;

    fn emb() -> Embedding {
        Embedding {
            frame_id: 9,
            timestamp_us: 42,
            model_version: "m".into(),
            vector: vec![1.0, -2.0],
        }
    }

    fn decode(m: &[u8]) -> (u32, u64, u64, Vec<f32>) {
        let u32_at = |i: usize| u32::from_le_bytes(m[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(m[i..i + 8].try_into().expect("8 bytes"));
        let dim = u32_at(20) as usize;
        let v = (0..dim)
            .map(|k| f32::from_le_bytes(m[24 + 4 * k..28 + 4 * k].try_into().expect("4 bytes")))
            .collect();
        (u32_at(0), u64_at(4), u64_at(12), v)
    }

    #[test]
    fn udp_and_tcp_deliver_the_documented_format() {
        let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        rx.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut udp = UdpSink::open(&rx.local_addr().expect("addr").to_string()).expect("open");
        udp.push(&emb()).expect("send");
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).expect("datagram");
        assert_eq!(n, 32);
        assert_eq!(decode(&buf[..n]), (28, 9, 42, vec![1.0, -2.0]));

        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut tcp = TcpSink::new(&listener.local_addr().expect("addr").to_string());
        tcp.push(&emb()).expect("send");
        tcp.push(&emb()).expect("send");
        tcp.flush().expect("flush");
        let (mut conn, _) = listener.accept().expect("accept");
        let mut got = vec![0u8; 64];
        conn.read_exact(&mut got).expect("two messages");
        assert_eq!(decode(&got[..32]), (28, 9, 42, vec![1.0, -2.0]));
        assert_eq!(decode(&got[32..]), (28, 9, 42, vec![1.0, -2.0]));
    }

    #[test]
    fn tcp_without_a_listener_fails_and_backs_off() {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let mut tcp = TcpSink::new(&format!("127.0.0.1:{port}"));
        assert!(tcp.push(&emb()).is_err());
        let err = tcp.push(&emb()).expect_err("backing off");
        assert!(err.to_string().contains("retrying every second"), "{err}");
    }
}
