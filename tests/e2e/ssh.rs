//! `edgeclr flash --to ssh://…` against a real OpenSSH server the test starts on 127.0.0.1 with
//! throwaway host and user keys (Debian's `openssh-server`, installed by `.ci/run`): healthy
//! deploy, a binary that exits at start rolled back, a tampered bundle refused before any
//! change, an upload killed mid-transfer leaving the old release current, rollback, pruning.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::{
    assert_success, binary, bundle, clip, exported_model, path, pointer, read_json, releases, run,
    tamper,
};

fn sshd_path() -> Option<PathBuf> {
    ["/usr/sbin/sshd", "/usr/bin/sshd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

pub(crate) struct Sshd {
    child: Child,
    pub(crate) port: u16,
    pub(crate) user: String,
    pub(crate) identity: PathBuf,
    pub(crate) known_hosts: PathBuf,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-f",
            path.to_str().expect("utf-8"),
        ])
        .output()
        .expect("ssh-keygen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub(crate) fn start_sshd(dir: &Path) -> Option<Sshd> {
    let sshd = sshd_path()?;
    let user = String::from_utf8(Command::new("id").arg("-un").output().ok()?.stdout)
        .ok()?
        .trim()
        .to_string();
    let (host_key, user_key) = (dir.join("host_key"), dir.join("user_key"));
    keygen(&host_key);
    keygen(&user_key);
    std::fs::copy(dir.join("user_key.pub"), dir.join("authorized_keys")).expect("authorized");
    // sshd wants its privilege-separation folder even when it runs unprivileged.
    let _ = std::fs::create_dir_all("/run/sshd");
    let port = TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
             StrictModes no\nPermitRootLogin prohibit-password\nPidFile {}\nSubsystem sftp internal-sftp\n",
            host_key.display(),
            dir.join("authorized_keys").display(),
            dir.join("sshd.pid").display()
        ),
    )
    .expect("config");
    let child = Command::new(sshd)
        .args(["-D", "-e", "-f", config.to_str().expect("utf-8")])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("sshd.log")).expect("log"))
        .spawn()
        .ok()?;
    let host_pub = std::fs::read_to_string(dir.join("host_key.pub")).expect("host pub");
    let known_hosts = dir.join("known_hosts");
    std::fs::write(&known_hosts, format!("[127.0.0.1]:{port} {host_pub}")).expect("known_hosts");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(Sshd {
        child,
        port,
        user,
        identity: user_key,
        known_hosts,
    })
}

/// Direct children of `pid` (from /proc/*/stat).
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let child: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // pid (comm) state ppid …: comm may hold spaces, so split after the last ')'.
            let ppid: u32 = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            (ppid == pid).then_some(child)
        })
        .collect()
}

fn current(root: &Path) -> Option<String> {
    pointer(root, "current")
}

#[test]
fn flash_over_ssh_to_a_real_sshd_on_loopback() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(sshd) = start_sshd(tmp.path()) else {
        e2e::skip("no sshd (install openssh-server; .ci/run does)");
        return;
    };
    let export = exported_model(tmp.path());
    let board = tmp.path().join("board");
    let to = format!(
        "ssh://{}@127.0.0.1:{}{}",
        sshd.user,
        sshd.port,
        path(&board)
    );
    let key = tmp.path().join("release.key");
    assert_success(&run("edgeclr", &["keygen", "--out", path(&key)]));
    let signed = |extra: &[&str]| -> Vec<String> {
        let mut v = vec!["--sign-key".to_string(), path(&key).to_string()];
        v.extend(extra.iter().map(ToString::to_string));
        v
    };
    let bundle = |version: &str, extra: &[&str]| {
        let args = signed(extra);
        bundle(
            tmp.path(),
            &export,
            version,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        )
    };
    let trust = format!("{}.pub", path(&key));
    let source = format!("mjpeg:{}", path(&clip()));
    let flash_args = |b: &Path| -> Vec<String> {
        [
            "flash",
            "--bundle",
            path(b),
            "--to",
            &to,
            "--identity",
            path(&sshd.identity),
            "--known-hosts",
            path(&sshd.known_hosts),
            "--service",
            "",
            "--keep",
            "2",
            "--selftest-source",
            &source,
        ]
        .iter()
        .map(ToString::to_string)
        .collect()
    };
    let flash = |b: &Path| {
        let args = flash_args(b);
        run(
            "edgeclr",
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        )
    };

    // A board that trusts no key refuses before anything is uploaded.
    let v1 = bundle("v1", &[]);
    let out = flash(&v1);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--trust-on-first-use"));
    assert!(!board.join("releases").exists() && !board.join("bootstrap").exists());
    // Healthy first deploy, trusting the release key explicitly (the bundle's own binary
    // bootstraps the install, after the host checked it against that key).
    let mut first = flash_args(&v1);
    first.extend(["--trust-on-first-use".into(), trust.clone()]);
    let out = run(
        "edgeclr",
        &first.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_success(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("on first use"));
    assert_eq!(current(&board).as_deref(), Some("v1"));
    assert_eq!(read_json(&board.join("state/selftest.json"))["ok"], true);

    // A wrong host key is refused (host-key checking is on).
    let wrong = tmp.path().join("wrong_known_hosts");
    std::fs::write(&wrong, format!("[127.0.0.1]:{} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKbGd0bJ4sdfnLQnhgBv5v1r3A9GnQq2Vh+uXmJvY2Zk\n", sshd.port)).expect("write");
    let mut args = flash_args(&v1);
    let i = args
        .iter()
        .position(|a| a == "--known-hosts")
        .expect("flag");
    args[i + 1] = path(&wrong).to_string();
    let out = run(
        "edgeclr",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Host key verification failed"), "{err}");

    // Tampered: refused before anything on the board changes.
    let v2 = bundle("v2", &[]);
    let tampered = tmp.path().join("tampered.tar");
    tamper(&v2, "model/encoder.onnx", &tampered);
    let out = flash(&tampered);
    assert!(String::from_utf8_lossy(&out.stderr).contains("before any change"));
    assert_eq!(
        (current(&board).as_deref(), releases(&board)),
        (Some("v1"), vec!["v1".to_string()])
    );

    // The binary exits at start: switched, self-test fails, rolled back over ssh.
    let broken = bundle("v-broken", &["--device-binary", "/bin/false", "--no-strip"]);
    let out = flash(&broken);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rolled back"), "{err}");
    assert_eq!(current(&board).as_deref(), Some("v1"));

    // Upload killed mid-transfer (the whole flash process group, scp included).
    let mut args = flash_args(&v2);
    args.extend(["--limit-kbps".into(), "40000".into()]);
    let mut child = Command::new(binary("edgeclr"))
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let part = board.join("incoming/v2.tar.part");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !part.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(part.exists(), "the upload never started");
    std::thread::sleep(Duration::from_millis(300));
    // SIGKILL the flash and its scp (found through /proc), as a dropped link would.
    for pid in children(child.id()) {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    assert_eq!(
        current(&board).as_deref(),
        Some("v1"),
        "an interrupted upload changed nothing"
    );
    assert!(!board.join("incoming/v2.tar").exists());

    // The same bundle again: goes through; then v3 with keep 2 prunes nothing pinned.
    assert_success(&flash(&v2));
    assert_eq!(current(&board).as_deref(), Some("v2"));
    let v3 = bundle("v3", &[]);
    assert_success(&flash(&v3));
    assert_eq!(releases(&board), ["v2", "v3"], "v1 pruned (keep 2)");

    // Rollback over ssh.
    let mut args = flash_args(&v3);
    args.push("--rollback".into());
    assert_success(&run(
        "edgeclr",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    assert_eq!(current(&board).as_deref(), Some("v2"));
}
