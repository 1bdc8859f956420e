//! Every row of docs/reliability.md's bad-input table, run against the real binaries: the
//! command exits with the status the table states (never a panic or a signal), and the
//! message the user sees contains the table's quoted text. The table is the expectation; a
//! row without a case here, or a case without a row, fails the test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use e2e::{assert_success, binary, cifar_sample, clip, exported_model, path, repo_root, run};

/// One bad input: which binary, with which arguments.
struct Case {
    bin: &'static str,
    args: Vec<String>,
}

fn case(bin: &'static str, args: &[&str]) -> Case {
    Case {
        bin,
        args: args.iter().map(|s| (*s).to_string()).collect(),
    }
}

/// What every case shares: a scratch folder, a small export, a release key, a signed bundle
/// and a board install root that trusts the key.
struct Fixture {
    dir: PathBuf,
    export: PathBuf,
    key: PathBuf,
    bundle: PathBuf,
    board: PathBuf,
}

impl Fixture {
    fn new(dir: &Path) -> Self {
        let export = exported_model(dir);
        let key = dir.join("release.key");
        assert_success(&run("edgeclr", &["keygen", "--out", path(&key)]));
        let bundle = e2e::bundle(dir, &export, "v1", &["--sign-key", path(&key)]);
        let board = dir.join("board");
        std::fs::create_dir_all(&board).expect("board");
        std::fs::copy(dir.join("release.key.pub"), board.join("trusted.pub")).expect("trust");
        Self {
            dir: dir.to_path_buf(),
            export,
            key,
            bundle,
            board,
        }
    }

    /// A fresh path inside the scratch folder.
    fn at(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes `bytes` to a fresh file and returns its path.
    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.at(name);
        std::fs::write(&p, bytes).expect("write");
        p
    }

    /// A copy of the export folder with `edit` applied to its manifest (as JSON).
    fn export_with(&self, name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
        let dir = self.at(name);
        copy_dir(&self.export, &dir);
        let m = dir.join("manifest.json");
        let mut json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&m).expect("manifest")).expect("json");
        edit(&mut json);
        std::fs::write(&m, serde_json::to_string_pretty(&json).expect("json")).expect("write");
        dir
    }

    /// A copy of the export whose `encoder.onnx` is `bytes`, re-listed with its checksum so
    /// that the bytes reach tract.
    fn export_with_onnx(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let sha = sha256(bytes);
        let dir = self.export_with(name, |m| {
            for a in m["artifacts"].as_array_mut().expect("artifacts") {
                if a["file"] == "encoder.onnx" {
                    a["sha256"] = sha.clone().into();
                    a["bytes"] = bytes.len().into();
                }
            }
        });
        std::fs::write(dir.join("encoder.onnx"), bytes).expect("write");
        dir
    }

    fn embed(&self, model: &Path) -> Case {
        let out = self.at("x.npy");
        case(
            "edgeclr",
            &[
                "embed",
                "--model",
                path(model),
                "--data",
                path(&cifar_sample()),
                "--limit",
                "2",
                "--out",
                path(&out),
            ],
        )
    }

    fn pretrain(&self, data: &Path, dataset: &str) -> Case {
        let out = self.at("run-bad");
        case(
            "edgeclr",
            &[
                "pretrain",
                "--data",
                path(data),
                "--dataset",
                dataset,
                "--encoder",
                "resnet8",
                "--image-size",
                "16",
                "--batch-size",
                "16",
                "--max-steps",
                "1",
                "--knn-every",
                "0",
                "--device",
                "cpu",
                "--out",
                path(&out),
            ],
        )
    }

    /// `edgeclr-device run` on the synthetic source with `extra` flags.
    fn device(&self, extra: &[&str]) -> Case {
        let mut args = vec![
            "run",
            "--model",
            path(&self.export),
            "--frames",
            "3",
            "--as-fast-as-possible",
        ];
        if !extra.contains(&"--source") {
            args.extend_from_slice(&["--source", "synthetic"]);
        }
        args.extend_from_slice(extra);
        case("edgeclr-device", &args)
    }

    fn mjpeg(&self, name: &str, bytes: &[u8]) -> Case {
        let f = self.file(name, bytes);
        let source = format!("mjpeg:{}", path(&f));
        self.device(&["--source", &source, "--sink", "jsonl:-"])
    }

    fn stage(&self, bundle: &Path) -> Case {
        case(
            "edgeclr-device",
            &[
                "release",
                "stage",
                "--root",
                path(&self.board),
                "--bundle",
                path(bundle),
            ],
        )
    }

    fn flash_to(&self, to: &str) -> Case {
        case(
            "edgeclr",
            &["flash", "--bundle", path(&self.bundle), "--to", to],
        )
    }

    fn sign_with(&self, key: &Path) -> Case {
        let out = self.at("signed-by-bad-key.tar");
        case(
            "edgeclr",
            &[
                "bundle",
                "--run",
                path(&self.dir),
                "--export",
                path(&self.export),
                "--board",
                "x86-dev",
                "--version",
                "v9",
                "--sign-key",
                path(key),
                "--out",
                path(&out),
            ],
        )
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir").flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

fn sha256(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum (coreutils)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(bytes)
        .expect("pipe");
    let out = child.wait_with_output().expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("digest")
        .to_string()
}

/// A copy of the shipped CIFAR-10 sample with `edit` applied to `data_batch_1.bin`.
fn cifar_with(fx: &Fixture, name: &str, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let dir = fx.at(name);
    copy_dir(&cifar_sample(), &dir);
    let f = dir.join("data_batch_1.bin");
    let mut bytes = std::fs::read(&f).expect("batch");
    edit(&mut bytes);
    std::fs::write(&f, bytes).expect("write");
    dir
}

/// An image-folder dataset: `files` (name, bytes) inside one class folder.
fn folder_with(fx: &Fixture, name: &str, files: &[(&str, &[u8])]) -> PathBuf {
    let dir = fx.at(name);
    std::fs::create_dir_all(dir.join("cat")).expect("mkdir");
    for (f, bytes) in files {
        std::fs::write(dir.join("cat").join(f), bytes).expect("write");
    }
    dir
}

/// The first JPEG of the shipped clip.
fn first_frame() -> Vec<u8> {
    let clip = std::fs::read(clip()).expect("clip");
    let end = clip
        .windows(2)
        .position(|w| w == [0xFF, 0xD9])
        .expect("EOI");
    clip[..end + 2].to_vec()
}

/// `jpeg` with its SOF0 header claiming `height`×`width`.
fn with_claimed_size(mut jpeg: Vec<u8>, height: u16, width: u16) -> Vec<u8> {
    let sof = jpeg
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("SOF0");
    jpeg[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    jpeg[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    jpeg
}

/// A one-entry ustar archive whose entry is named `name` (which `tar::Builder` would refuse
/// to write when it escapes).
fn raw_tar(name: &str, data: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(512) + 1024, 0);
    out
}

fn cases(fx: &Fixture) -> BTreeMap<&'static str, Case> {
    let mut c = BTreeMap::new();
    data_cases(fx, &mut c);
    model_cases(fx, &mut c);
    board_cases(fx, &mut c);
    stream_cases(fx, &mut c);
    bundle_cases(fx, &mut c);
    spec_cases(fx, &mut c);
    key_cases(fx, &mut c);
    c
}

fn data_cases(fx: &Fixture, c: &mut BTreeMap<&'static str, Case>) {
    c.insert(
        "cifar-missing",
        fx.pretrain(&fx.at("no-such-data"), "cifar10"),
    );
    let empty = fx.at("empty-data");
    std::fs::create_dir_all(&empty).expect("mkdir");
    c.insert("cifar-empty", fx.pretrain(&empty, "cifar10"));
    let truncated = cifar_with(fx, "cifar-truncated", |b| b.truncate(3073 * 3 + 1000));
    c.insert("cifar-truncated", fx.pretrain(&truncated, "cifar10"));
    let label = cifar_with(fx, "cifar-label", |b| b[3073 * 2] = 200);
    c.insert("cifar-bad-label", fx.pretrain(&label, "cifar10"));
    let no_images = folder_with(fx, "folder-no-images", &[("notes.txt", b"hello")]);
    c.insert("folder-no-images", fx.pretrain(&no_images, "folder"));
    let corrupt = folder_with(
        fx,
        "folder-corrupt",
        &[
            ("a.jpg", b"not a jpeg"),
            ("b.png", b"\x89PNG\r\n\x1a\nbroken"),
        ],
    );
    c.insert("folder-all-corrupt", fx.pretrain(&corrupt, "folder"));
}

fn model_cases(fx: &Fixture, c: &mut BTreeMap<&'static str, Case>) {
    let bare = fx.at("no-manifest");
    std::fs::create_dir_all(&bare).expect("mkdir");
    std::fs::copy(fx.export.join("encoder.onnx"), bare.join("encoder.onnx")).expect("copy");
    c.insert("manifest-missing", fx.embed(&bare));
    let garbled = fx.export_with("manifest-garbled", |_| {});
    std::fs::write(
        garbled.join("manifest.json"),
        b"{\"format_version\": 1, \"artif",
    )
    .expect("w");
    c.insert("manifest-not-json", fx.embed(&garbled));
    let future = fx.export_with("manifest-future", |m| m["format_version"] = 99.into());
    c.insert("manifest-future-version", fx.embed(&future));
    std::fs::copy(fx.export.join("encoder.onnx"), fx.at("encoder.onnx")).expect("copy");
    let escape = fx.export_with("manifest-escape", |m| {
        m["artifacts"][0]["file"] = "../encoder.onnx".into();
    });
    c.insert("manifest-file-escapes", fx.embed(&escape));
    let changed = fx.export_with("manifest-checksum", |_| {});
    let mut onnx = std::fs::read(changed.join("encoder.onnx")).expect("onnx");
    let mid = onnx.len() / 2;
    onnx[mid] ^= 0x55;
    std::fs::write(changed.join("encoder.onnx"), onnx).expect("write");
    c.insert("manifest-checksum", fx.embed(&changed));
    let dim = fx.export_with("manifest-dim", |m| m["output_dim"] = 64.into());
    c.insert("manifest-output-dim", fx.embed(&dim));
    let size = fx.export_with("manifest-size", |m| m["input"]["size"] = 32.into());
    c.insert("manifest-input-size", fx.embed(&size));
    let onnx = std::fs::read(fx.export.join("encoder.onnx")).expect("onnx");
    let truncated = fx.export_with_onnx("onnx-truncated", &onnx[..onnx.len() / 3]);
    c.insert("onnx-truncated", fx.embed(&truncated));
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let garbage = fx.export_with_onnx("onnx-garbage", &noise);
    c.insert("onnx-garbage", fx.embed(&garbage));
    let stray = fx.export_with("model-unlisted", |_| {});
    std::fs::write(stray.join("notes.onnx"), b"hello").expect("write");
    c.insert("model-unlisted", fx.embed(&stray.join("notes.onnx")));
}

fn board_cases(fx: &Fixture, c: &mut BTreeMap<&'static str, Case>) {
    let profile =
        std::fs::read_to_string(repo_root().join("hardware/boards/x86-dev.toml")).expect("toml");
    let unknown = fx.file(
        "unknown-key.toml",
        format!("{profile}\n[camera]\nzoom = 3\n").as_bytes(),
    );
    c.insert(
        "board-unknown-key",
        fx.device(&["--config", path(&unknown)]),
    );
    let typed = profile.replace("queue_capacity = 2", "queue_capacity = \"two\"");
    let typed = fx.file("bad-type.toml", typed.as_bytes());
    c.insert("board-bad-type", fx.device(&["--config", path(&typed)]));
    let syntax = fx.file("syntax.toml", b"[board\nname = ");
    c.insert("board-syntax", fx.device(&["--config", path(&syntax)]));
    let zero = profile.replace("queue_capacity = 2", "queue_capacity = 0");
    let zero = fx.file("zero-queue.toml", zero.as_bytes());
    c.insert("board-zero-queue", fx.device(&["--config", path(&zero)]));
    c.insert("board-unknown-name", fx.device(&["--board", "rpi9"]));
    let missing = fx.at("no-such-profile.toml");
    c.insert(
        "board-config-missing",
        fx.device(&["--config", path(&missing)]),
    );
}

fn stream_cases(fx: &Fixture, c: &mut BTreeMap<&'static str, Case>) {
    let clip = std::fs::read(clip()).expect("clip");
    c.insert("mjpeg-empty", fx.mjpeg("empty.mjpeg", b""));
    let noise: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(40_503) >> 7) as u8)
        .collect();
    c.insert("mjpeg-garbage", fx.mjpeg("garbage.mjpeg", &noise));
    let frame = first_frame();
    let mut no_eoi = frame.clone();
    no_eoi.truncate(frame.len() - 2);
    c.insert("mjpeg-no-eoi", fx.mjpeg("no-eoi.mjpeg", &no_eoi));
    let mut truncated = frame.clone();
    truncated.extend_from_slice(&clip[frame.len()..frame.len() + 300]);
    c.insert("mjpeg-truncated", fx.mjpeg("truncated.mjpeg", &truncated));
    let huge = with_claimed_size(frame.clone(), 65_000, 65_000);
    c.insert("mjpeg-huge-size", fx.mjpeg("huge.mjpeg", &huge));
    let mut cut = frame.clone();
    let keep = cut.len() / 2;
    cut.drain(keep..cut.len() - 2);
    c.insert("mjpeg-cut-scan", fx.mjpeg("cut-scan.mjpeg", &cut));
    let missing = format!("mjpeg:{}", path(&fx.at("no-such.mjpeg")));
    c.insert("mjpeg-missing", fx.device(&["--source", &missing]));
}

fn bundle_cases(fx: &Fixture, c: &mut BTreeMap<&'static str, Case>) {
    let bytes = std::fs::read(&fx.bundle).expect("bundle");
    let truncated = fx.file("truncated.tar", &bytes[..bytes.len() / 2]);
    c.insert("bundle-truncated", fx.stage(&truncated));
    let text = fx.file("not-a-tar.tar", b"release notes, not a tarball\n");
    c.insert("bundle-not-tar", fx.stage(&text));
    let tampered = fx.at("tampered.tar");
    e2e::tamper(&fx.bundle, "MANIFEST.json", &tampered);
    c.insert("bundle-tampered", fx.stage(&tampered));
    let other = fx.at("other.key");
    assert_success(&run("edgeclr", &["keygen", "--out", path(&other)]));
    let foreign = e2e::bundle(&fx.dir, &fx.export, "v2", &["--sign-key", path(&other)]);
    c.insert("bundle-foreign-key", fx.stage(&foreign));
    let unsigned = e2e::bundle(&fx.dir, &fx.export, "v3", &[]);
    c.insert("bundle-unsigned", fx.stage(&unsigned));
    let escape = fx.file("escape.tar", &raw_tar("../../evil.sh", b"#!/bin/sh\n"));
    c.insert("bundle-path-escapes", fx.stage(&escape));
    let mut version = fx.sign_with(&fx.key);
    let at = version
        .args
        .iter()
        .position(|a| a == "v9")
        .expect("version");
    version.args[at] = "../v9".into();
    c.insert("bundle-bad-version", version);
    c.insert("bundle-missing", fx.stage(&fx.at("no-such.tar")));
}

fn spec_cases(fx: &Fixture, c: &mut BTreeMap<&'static str, Case>) {
    c.insert("sink-unknown", fx.device(&["--sink", "pigeon:home"]));
    c.insert(
        "sink-mqtt-qos2",
        fx.device(&["--sink", "mqtt://broker/t?qos=2"]),
    );
    c.insert(
        "sink-mqtt-secret",
        fx.device(&["--sink", "mqtt://cam:hunter2@broker:99x/t"]),
    );
    c.insert(
        "sink-bad-port",
        fx.device(&["--sink", "udp:localhost:99999"]),
    );
    c.insert("source-unknown", fx.device(&["--source", "webcam"]));
    c.insert("display-unknown", fx.device(&["--display", "hdmi:0"]));
    // Run from the scratch folder: the ProxyCommand would create `proxy-ran` there.
    c.insert(
        "to-ssh-option",
        fx.flash_to("ssh://-oProxyCommand=touch proxy-ran@board"),
    );
    c.insert(
        "to-ssh-host-option",
        fx.flash_to("ssh://pi@-oProxyCommand=sh"),
    );
    c.insert("to-unknown-scheme", fx.flash_to("ftp://board/releases"));
    c.insert("to-ipv6-unclosed", fx.flash_to("ssh://pi@[fe80::1:22"));
    c.insert("to-root-dir", fx.flash_to("dir:/"));
}

fn key_cases(fx: &Fixture, c: &mut BTreeMap<&'static str, Case>) {
    let open = fx.at("open.key");
    assert_success(&run("edgeclr", &["keygen", "--out", path(&open)]));
    set_mode(&open, 0o644);
    c.insert("key-group-readable", fx.sign_with(&open));
    let short = fx.file("short.key", b"0123456789");
    set_mode(&short, 0o600);
    c.insert("key-garbage", fx.sign_with(&short));
    let bad_pub = fx.file("bad.pub", b"not-hex-at-all\n");
    let fresh = fx.at("fresh-board");
    let to = format!("dir:{}", path(&fresh));
    c.insert(
        "pubkey-garbage",
        case(
            "edgeclr",
            &[
                "flash",
                "--bundle",
                path(&fx.bundle),
                "--to",
                &to,
                "--trust-on-first-use",
                path(&bad_pub),
            ],
        ),
    );
    let existing = fx.key.clone();
    c.insert(
        "keygen-overwrite",
        case("edgeclr", &["keygen", "--out", path(&existing)]),
    );
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A row of the table: the exit status it states and the quoted fragments of the message.
struct Row {
    exit: i32,
    quotes: Vec<String>,
}

/// Rows of docs/reliability.md's table, by case id: `| n | `id` | input | command | exit N: `quote` … |`.
fn table() -> BTreeMap<String, Row> {
    let doc = std::fs::read_to_string(repo_root().join("docs/reliability.md")).expect("doc");
    let mut rows = BTreeMap::new();
    for line in doc.lines().filter(|l| l.starts_with("| ")) {
        let cells: Vec<&str> = line.trim_start_matches("| ").split(" | ").collect();
        if cells[0].parse::<usize>().is_err() {
            continue; // another table (fuzzing), or the header
        }
        let (Some(id), Some(seen)) = (cells.get(1), cells.last()) else {
            continue;
        };
        let Some(id) = id.strip_prefix('`').and_then(|s| s.strip_suffix('`')) else {
            continue;
        };
        let exit = seen
            .strip_prefix("exit ")
            .and_then(|s| s.split(':').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("row {id}: the last cell starts `exit N:`"));
        let quotes = seen
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect();
        rows.insert(id.to_string(), Row { exit, quotes });
    }
    rows
}

fn execute(c: &Case, dir: &Path) -> Output {
    Command::new(binary(c.bin))
        .args(&c.args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("spawn")
}

/// The first problem with a case's output against its row, if any.
fn check(id: &str, row: &Row, out: &Output) -> Option<String> {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let problem = match out.status.code() {
        None => Some(format!("killed by a signal ({})", out.status)),
        Some(101) => Some("panicked (exit 101)".into()),
        Some(c) if c != row.exit => Some(format!("exit {c}, the table says {}", row.exit)),
        _ if text.contains("panicked") => Some("printed a panic".into()),
        _ => row
            .quotes
            .iter()
            .find(|q| !text.contains(q.as_str()))
            .map(|q| format!("output lacks `{q}`")),
    };
    problem.map(|p| format!("{id}: {p}\n--- output ---\n{text}"))
}

#[test]
fn every_row_of_the_bad_input_table_gets_its_message_and_no_panic() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fx = Fixture::new(tmp.path());
    let cases = cases(&fx);
    let rows = table();
    let ids: Vec<&str> = cases.keys().copied().collect();
    let documented: Vec<&str> = rows.keys().map(String::as_str).collect();
    let mut failures: Vec<String> = Vec::new();
    for (id, c) in &cases {
        let out = execute(c, &fx.dir);
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if printed.contains("hunter2") {
            failures.push(format!("{id}: printed the password:\n{printed}"));
        }
        match rows.get(*id) {
            Some(row) => failures.extend(check(id, row, &out)),
            None => failures.push(format!(
                "{id}: no row in docs/reliability.md; it printed (exit {:?}):\n{}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            )),
        }
    }
    for id in documented.iter().filter(|d| !ids.contains(d)) {
        failures.push(format!("{id}: a table row without a case"));
    }
    assert!(
        !fx.at("proxy-ran").exists(),
        "the ProxyCommand in an ssh:// target ran"
    );
    // `../../evil.sh` unpacked in board/releases/.incoming-*/ would land in board/.
    assert!(
        !fx.board.join("evil.sh").exists() && !fx.dir.join("evil.sh").exists(),
        "a bundle entry escaped the staging folder"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(rows.len() >= 25, "the table has {} rows", rows.len());
}
