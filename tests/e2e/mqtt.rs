//! `edgeclr-device run --sink mqtt://…` against a real mosquitto broker (Debian's `mosquitto`
//! and `mosquitto-clients`, installed by `.ci/run`) that the test starts on 127.0.0.1 with a
//! password file and persistence, read by mosquitto's own `mosquitto_sub` (an independent
//! client): every frame of the clip arrives at QoS 1 with the documented payload, the status is
//! retained, a broker restart mid-stream loses only what the queue could not hold (counted),
//! the last will marks a killed board offline, wrong credentials fail at start.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::{assert_success, binary, clip, exported_model, path, read_json};

const USER: &str = "camera";
const PASSWORD: &str = "s3cret-pass";

struct Broker {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
    /// The CA `mosquitto_sub` trusts, for a TLS listener.
    ca: Option<PathBuf>,
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Broker {
    /// A broker on a free loopback port, or None (skipped) without mosquitto.
    fn start(dir: &Path) -> Option<Self> {
        Self::start_with(dir, "", None)
    }

    /// With `extra` lines in the listener's configuration (TLS) and the CA clients trust.
    fn start_with(dir: &Path, extra: &str, ca: Option<PathBuf>) -> Option<Self> {
        let found = [
            "/usr/sbin/mosquitto",
            "/usr/bin/mosquitto_sub",
            "/usr/bin/mosquitto_passwd",
        ]
        .iter()
        .all(|p| Path::new(p).exists());
        if !found {
            e2e::skip("mosquitto or mosquitto-clients not installed (.ci/run installs them)");
            return None;
        }
        let passwd = dir.join("passwd");
        let out = Command::new("mosquitto_passwd")
            .args(["-b", "-c", path(&passwd), USER, PASSWORD])
            .output()
            .expect("mosquitto_passwd");
        assert_success(&out);
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let root =
            String::from_utf8_lossy(&Command::new("id").arg("-u").output().expect("id").stdout)
                .trim()
                == "0";
        let conf = format!(
            "listener {port} 127.0.0.1\n{extra}allow_anonymous false\npassword_file {}\npersistence true\npersistence_location {}/\nlog_dest file {}\n{}",
            path(&passwd),
            path(dir),
            path(&dir.join("mosquitto.log")),
            if root { "user root\n" } else { "" }
        );
        std::fs::write(dir.join("mosquitto.conf"), conf).expect("conf");
        let mut b = Self {
            dir: dir.to_path_buf(),
            port,
            child: None,
            ca,
        };
        b.restart();
        Some(b)
    }

    /// (Re)starts mosquitto on the same port and persistence, waiting until it listens.
    fn restart(&mut self) {
        let child = Command::new("/usr/sbin/mosquitto")
            .args(["-c", path(&self.dir.join("mosquitto.conf"))])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto");
        self.child = Some(child);
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "mosquitto did not listen: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM (mosquitto saves its persistence file) and wait.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }

    fn url(&self, password: &str, query: &str) -> String {
        format!(
            "mqtt://{USER}:{password}@127.0.0.1:{}/edgeclr/{{board}}/embeddings?{query}",
            self.port
        )
    }

    /// `mosquitto_sub` args for our credentials.
    fn sub_args(&self) -> Vec<String> {
        let port = self.port.to_string();
        let mut v: Vec<String> = ["-h", "127.0.0.1", "-p", &port, "-u", USER, "-P", PASSWORD]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if let Some(ca) = &self.ca {
            v.extend(["--cafile".to_string(), path(ca).to_string()]);
        }
        v
    }

    /// The retained message on `topic` (`mosquitto_sub -C 1`), as (retained flag, payload).
    fn retained(&self, topic: &str) -> (bool, serde_json::Value) {
        let out = Command::new("mosquitto_sub")
            .args(self.sub_args())
            .args(["-t", topic, "-C", "1", "-W", "5", "-F", "%r %p"])
            .output()
            .expect("mosquitto_sub");
        let text = String::from_utf8_lossy(&out.stdout);
        let (flag, payload) = text
            .trim()
            .split_once(' ')
            .unwrap_or_else(|| panic!("no retained message on {topic}: {text:?}"));
        (
            flag == "1",
            serde_json::from_str(payload).expect("status JSON"),
        )
    }
}

/// A persistent-session `mosquitto_sub` collecting `topic/#` and `topic` messages as
/// (topic, payload bytes); it reconnects by itself when the broker restarts.
/// (topic, payload) pairs in arrival order.
type Messages = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

struct Subscriber {
    child: Child,
    messages: Messages,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Subscriber {
    fn start(broker: &Broker, topic: &str) -> Self {
        // Line-buffered: the SUBACK line and each message arrive as they happen.
        let mut child = Command::new("stdbuf")
            .args(["-oL", "mosquitto_sub"])
            .args(broker.sub_args())
            .args([
                "-t",
                topic,
                "-t",
                &format!("{topic}/status"),
                "-q",
                "1",
                "-c",
                "-i",
                "edgeclr-test-sub",
                "-d",
            ])
            .args(["-F", "MSG %t %x"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub");
        let messages: Messages = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        let sink = messages.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("received SUBACK") {
                    let _ = tx.send(());
                }
                if let Some(rest) = line.strip_prefix("MSG ") {
                    let (t, hex) = rest.rsplit_once(' ').expect("topic and payload");
                    sink.lock().expect("lock").push((t.to_string(), unhex(hex)));
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("mosquitto_sub subscribed");
        Self { child, messages }
    }

    /// Waits until `done(messages)` or `timeout`; returns a copy.
    fn wait(
        &self,
        timeout: Duration,
        done: impl Fn(&[(String, Vec<u8>)]) -> bool,
    ) -> Vec<(String, Vec<u8>)> {
        let t = Instant::now();
        loop {
            let m = self.messages.lock().expect("lock").clone();
            if done(&m) || t.elapsed() > timeout {
                return m;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

/// (frame id, vector) of one binary payload: u32 length, u64 id, u64 time, u32 dim, f32 × dim.
fn decode(m: &[u8]) -> (u64, Vec<f32>) {
    let u32_at = |i: usize| u32::from_le_bytes(m[i..i + 4].try_into().expect("4 bytes"));
    let dim = u32_at(20) as usize;
    assert_eq!(m.len(), 24 + 4 * dim, "payload length");
    assert_eq!(u32_at(0) as usize, 20 + 4 * dim, "length prefix");
    let id = u64::from_le_bytes(m[4..12].try_into().expect("8 bytes"));
    let v = (0..dim)
        .map(|k| f32::from_le_bytes(m[24 + 4 * k..28 + 4 * k].try_into().expect("4 bytes")))
        .collect();
    (id, v)
}

const TOPIC: &str = "edgeclr/cam-test/embeddings";
/// JPEG frames in tests/data/camera/clip_320x240.mjpeg.
const CLIP_FRAMES: u64 = 100;

fn device(model: &Path, sink: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(binary("edgeclr-device"));
    c.args([
        "run",
        "--model",
        path(model),
        "--source",
        &format!("mjpeg:{}", path(&clip())),
    ])
    .args([
        "--sink",
        sink,
        "--set",
        "board.id=cam-test",
        "--display",
        "none",
    ])
    .args(extra);
    c
}

fn embeddings(messages: &[(String, Vec<u8>)]) -> BTreeMap<u64, Vec<f32>> {
    messages
        .iter()
        .filter(|(t, _)| t == TOPIC)
        .map(|(_, p)| decode(p))
        .collect()
}

/// The status messages among `messages`, parsed.
fn statuses(messages: &[(String, Vec<u8>)]) -> Vec<serde_json::Value> {
    messages
        .iter()
        .filter(|(t, _)| t.ends_with("/status"))
        .map(|(_, p)| serde_json::from_slice(p).expect("status JSON"))
        .collect()
}

#[test]
fn every_frame_of_the_clip_arrives_at_qos1_and_the_status_is_retained() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(broker) = Broker::start(tmp.path()) else {
        return;
    };
    let model = exported_model(tmp.path());
    let sub = Subscriber::start(&broker, TOPIC);
    let (jsonl, report) = (tmp.path().join("e.jsonl"), tmp.path().join("report.json"));
    let out = device(
        &model,
        &broker.url(PASSWORD, "qos=1"),
        &["--as-fast-as-possible", "--report", path(&report)],
    )
    .args(["--sink", &format!("jsonl:{}", path(&jsonl))])
    .args([
        "--set",
        "sink.capacity=1000",
        "--set",
        "sink.status_every_s=0.2",
    ])
    .output()
    .expect("edgeclr-device");
    assert_success(&out);
    let r = read_json(&report);
    // The shipped clip holds 100 frames; replayed as fast as possible, every one is embedded.
    let frames = r["frames_embedded"].as_u64().expect("n");
    assert_eq!(
        (frames, r["frames_captured"].as_u64()),
        (CLIP_FRAMES, Some(CLIP_FRAMES)),
        "{r}"
    );
    let m = &r["sinks"][0];
    assert_eq!(
        (m["delivered"].as_u64(), m["dropped"].as_u64()),
        (Some(frames), Some(0)),
        "{m}"
    );
    assert_eq!(m["unacked_at_exit"], 0, "{m}");
    assert!(m["acked"].as_u64().expect("acked") >= frames, "{m}");

    let got = embeddings(&sub.wait(Duration::from_secs(30), |m| {
        embeddings(m).len() as u64 >= frames
    }));
    assert_eq!(got.len() as u64, frames, "distinct frames received");
    // The payload carries what the jsonl sink wrote for the same frame, bit for bit.
    for line in std::fs::read_to_string(&jsonl).expect("jsonl").lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        let id = v["frame_id"].as_u64().expect("id");
        let want: Vec<f32> = v["vector"]
            .as_array()
            .expect("vector")
            .iter()
            .map(|x| x.as_f64().expect("f") as f32)
            .collect();
        assert_eq!(got[&id], want, "frame {id}");
    }
    // `online` at start, then `stopped`, retained for late subscribers.
    let statuses = statuses(&sub.wait(Duration::from_secs(5), |_| true));
    let manifest = read_json(&model.join("manifest.json"));
    let version = &manifest["source"]["model_version"];
    assert_eq!(
        statuses.first().map(|s| &s["state"]),
        Some(&"online".into()),
        "{statuses:?}"
    );
    let (retained, last) = broker.retained(&format!("{TOPIC}/status"));
    assert!(retained);
    assert_eq!(
        (&last["state"], &last["board"], &last["model_version"]),
        (&"stopped".into(), &"cam-test".into(), version)
    );
}

#[test]
fn a_broker_restart_mid_stream_loses_only_what_the_queue_could_not_hold() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(mut broker) = Broker::start(tmp.path()) else {
        return;
    };
    let model = exported_model(tmp.path());
    let sub = Subscriber::start(&broker, TOPIC);
    let report = tmp.path().join("report.json");
    // The clip looped to 500 frames at 50 fps: 10 s, with the broker gone for 3 s of it; 20
    // embeddings of queue.
    let board = device(
        &model,
        &broker.url(PASSWORD, "qos=1"),
        &["--report", path(&report), "--loop", "--frames", "500"],
    )
    .args([
        "--set",
        "source.fps=50",
        "--set",
        "sink.capacity=20",
        "--set",
        "sink.status_every_s=0.5",
    ])
    .stderr(Stdio::piped())
    .spawn()
    .expect("edgeclr-device");
    let seen = sub.wait(Duration::from_secs(30), |m| embeddings(m).len() >= 100);
    assert!(embeddings(&seen).len() >= 100, "the stream started");
    broker.stop();
    std::thread::sleep(Duration::from_secs(3));
    broker.restart();
    let out = board.wait_with_output().expect("board");
    assert_success(&out);
    let r = read_json(&report);
    let m = &r["sinks"][0];
    let (embedded, dropped) = (
        r["frames_embedded"].as_u64().expect("n"),
        m["dropped"].as_u64().expect("n"),
    );
    let got = embeddings(&sub.wait(Duration::from_secs(30), |s| {
        embeddings(s).len() as u64 + dropped >= embedded
    }));
    eprintln!(
        "mqtt restart: embedded {embedded}, received {}, dropped {dropped}, sink {m}",
        got.len()
    );
    assert_eq!(
        got.len() as u64 + dropped,
        embedded,
        "every embedding arrived or was counted as dropped: {m}"
    );
    assert!(
        dropped > 0,
        "3 s at 50 fps overflows a 20-embedding queue: {m}"
    );
    assert!(m["reconnects"].as_u64() >= Some(1), "{m}");
    assert_eq!(m["unacked_at_exit"], 0, "{m}");
    // The periodic status carried the measured rate, also after the reconnect.
    let statuses = statuses(&sub.wait(Duration::from_secs(1), |_| false));
    let measured = statuses
        .iter()
        .filter(|s| s["state"] == "online" && s["fps"].as_f64() > Some(20.0))
        .count();
    assert!(measured >= 5, "{statuses:?}");
    assert_eq!(
        statuses.last().map(|s| &s["state"]),
        Some(&"stopped".into())
    );
}

#[test]
fn the_last_will_marks_a_killed_board_offline() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(broker) = Broker::start(tmp.path()) else {
        return;
    };
    let model = exported_model(tmp.path());
    let sub = Subscriber::start(&broker, TOPIC);
    let mut board = device(&model, &broker.url(PASSWORD, "qos=0"), &["--loop"])
        .args(["--set", "sink.status_every_s=0.2", "--sink-format", "json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("edgeclr-device");
    let m = sub.wait(Duration::from_secs(30), |m| {
        m.iter().any(|(t, _)| t == TOPIC)
    });
    let (_, json) = m
        .iter()
        .find(|(t, _)| t == TOPIC)
        .expect("an embedding arrived");
    let e: serde_json::Value = serde_json::from_slice(json).expect("--sink-format json payload");
    assert!(
        e["vector"].as_array().is_some_and(|v| !v.is_empty()) && e["frame_id"].is_u64(),
        "{e}"
    );
    let (_, online) = broker.retained(&format!("{TOPIC}/status"));
    assert_eq!(online["state"], "online", "{online}");
    board.kill().expect("SIGKILL");
    let _ = board.wait();
    let t = Instant::now();
    let mut last = online;
    while last["state"] != "offline" && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
        last = broker.retained(&format!("{TOPIC}/status")).1;
    }
    assert_eq!(
        (&last["state"], &last["board"]),
        (&"offline".into(), &"cam-test".into()),
        "{last}"
    );
}

#[test]
fn wrong_credentials_fail_at_start_with_a_clear_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(broker) = Broker::start(tmp.path()) else {
        return;
    };
    let model = exported_model(tmp.path());
    let t = Instant::now();
    let out = device(&model, &broker.url("wrong", "qos=1"), &["--frames", "5"])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("refused the credentials") && stderr.contains("password_file"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("wrong@"),
        "the password is not echoed: {stderr}"
    );
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
}

/// `openssl` args, run in `dir`; panics with its stderr on failure.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert_success(&out);
}

/// A CA (`NAME.pem`, `NAME.key`) and, signed by it, a certificate for 127.0.0.1 (`NAME-server.*`).
fn pki(dir: &Path, name: &str) {
    let subj = format!("/CN=edgeclr test {name}");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &subj,
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            &format!("{name}-server.key"),
            "-out",
            &format!("{name}-server.csr"),
        ],
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            &format!("{name}-server.csr"),
            "-CA",
            &format!("{name}.pem"),
            "-CAkey",
            &format!("{name}.key"),
            "-CAcreateserial",
            "-extfile",
            "san.ext",
            "-out",
            &format!("{name}-server.pem"),
        ],
    );
}

#[test]
fn mqtts_delivers_with_the_ca_file_and_refuses_another_ca() {
    let tmp = tempfile::tempdir().expect("tempdir");
    if Command::new("openssl").arg("version").output().is_err() {
        e2e::skip("openssl missing (.ci/run installs it)");
        return;
    }
    pki(tmp.path(), "ca");
    pki(tmp.path(), "other");
    let tls = format!(
        "cafile {0}/ca.pem\ncertfile {0}/ca-server.pem\nkeyfile {0}/ca-server.key\n",
        path(tmp.path())
    );
    let Some(broker) = Broker::start_with(tmp.path(), &tls, Some(tmp.path().join("ca.pem"))) else {
        return;
    };
    let model = exported_model(tmp.path());
    let sub = Subscriber::start(&broker, TOPIC);
    let url = |ca: &str| {
        format!(
            "mqtts://{USER}:{PASSWORD}@127.0.0.1:{}/edgeclr/{{board}}/embeddings?ca={}/{ca}.pem",
            broker.port,
            path(tmp.path())
        )
    };
    let report = tmp.path().join("report.json");
    let out = device(
        &model,
        &url("ca"),
        &[
            "--as-fast-as-possible",
            "--frames",
            "20",
            "--report",
            path(&report),
        ],
    )
    .output()
    .expect("edgeclr-device");
    assert_success(&out);
    let m = &read_json(&report)["sinks"][0];
    assert_eq!(
        (m["delivered"].as_u64(), m["unacked_at_exit"].as_u64()),
        (Some(20), Some(0)),
        "{m}"
    );
    let got = embeddings(&sub.wait(Duration::from_secs(20), |m| embeddings(m).len() >= 20));
    assert_eq!(got.len(), 20);
    // A CA that did not sign the broker's certificate: refused at start, named.
    let out = device(&model, &url("other"), &["--frames", "5"])
        .output()
        .expect("edgeclr-device");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("TLS") || stderr.contains("certificate"),
        "{stderr}"
    );
}
