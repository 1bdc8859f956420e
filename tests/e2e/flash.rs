//! `edgeclr keygen`, `bundle` and `flash` to a `dir:` board end to end: a signed healthy
//! deploy with the on-device self-test, tampered and unsigned bundles refused before any
//! change, a release whose binary fails at start rolled back, manual rollback, pruning.

use std::path::{Path, PathBuf};

use e2e::{
    assert_success, bundle, clip, exported_model, path, pointer, read_json, releases, run, tamper,
};

fn current(root: &Path) -> Option<String> {
    pointer(root, "current")
}

struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    export: PathBuf,
    key: PathBuf,
    board: PathBuf,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    let export = exported_model(&dir);
    let key = dir.join("key");
    assert_success(&run("edgeclr", &["keygen", "--out", path(&key)]));
    let board = dir.join("board");
    std::fs::create_dir_all(&board).expect("board");
    std::fs::copy(dir.join("key.pub"), board.join("trusted.pub")).expect("trust");
    Setup {
        _tmp: tmp,
        dir,
        export,
        key,
        board,
    }
}

impl Setup {
    fn bundle(&self, version: &str, extra: &[&str]) -> PathBuf {
        bundle(&self.dir, &self.export, version, extra)
    }

    fn signed(&self, version: &str) -> PathBuf {
        self.bundle(version, &["--sign-key", path(&self.key)])
    }

    fn flash(&self, bundle: &Path, extra: &[&str]) -> std::process::Output {
        let source = format!("mjpeg:{}", path(&clip()));
        let to = format!("dir:{}", path(&self.board));
        let mut args = vec![
            "flash",
            "--bundle",
            path(bundle),
            "--to",
            &to,
            "--selftest-source",
            &source,
        ];
        args.extend_from_slice(extra);
        run("edgeclr", &args)
    }
}

#[test]
fn flash_to_a_directory_board_deploys_refuses_rolls_back_and_prunes() {
    let s = setup();
    // Healthy signed deploy: verified, switched, self-tested.
    let v1 = s.signed("v1");
    let out = s.flash(&v1, &[]);
    assert_success(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("PASS"));
    assert_eq!(current(&s.board).as_deref(), Some("v1"));
    assert_eq!(read_json(&s.board.join("state/selftest.json"))["ok"], true);
    let manifest = read_json(&s.board.join("releases/v1/MANIFEST.json"));
    assert_eq!(manifest["board"], "x86-dev");
    assert_eq!(manifest["target_triple"], "x86_64-unknown-linux-gnu");
    assert!(
        manifest["files"]
            .as_array()
            .expect("files")
            .iter()
            .any(|f| f["path"] == "bin/edgeclr-device" && f["mode"] == 0o755)
    );

    // Tampered in transit: one byte of a model file flipped inside the tarball.
    let v2 = s.signed("v2");
    let tampered = s.dir.join("tampered.tar");
    tamper(&v2, "model/encoder.onnx", &tampered);
    let out = s.flash(&tampered, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("before any change") && err.contains("sha256"),
        "{err}"
    );
    assert_eq!(current(&s.board).as_deref(), Some("v1"));
    assert_eq!(releases(&s.board), ["v1"], "nothing staged survives");

    // Unsigned: refused.
    let unsigned = s.bundle("v2u", &[]);
    let out = s.flash(&unsigned, &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unsigned"));
    assert_eq!(current(&s.board).as_deref(), Some("v1"));

    // A release whose binary exits at start: switched, self-test fails, rolled back.
    let broken = s.bundle(
        "v-broken",
        &[
            "--sign-key",
            path(&s.key),
            "--device-binary",
            "/bin/false",
            "--no-strip",
        ],
    );
    let out = s.flash(&broken, &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("rolled back"));
    assert_eq!(current(&s.board).as_deref(), Some("v1"));
    assert_eq!(releases(&s.board), ["v1"]);

    // v2, v3 healthy; keep 2 → v1 pruned? No: previous is pinned. Keep 1 after v3: v1 goes.
    assert_success(&s.flash(&v2, &[]));
    assert_eq!(current(&s.board).as_deref(), Some("v2"));
    let v3 = s.signed("v3");
    assert_success(&s.flash(&v3, &["--keep", "1"]));
    assert_eq!(
        releases(&s.board),
        ["v2", "v3"],
        "current and previous are kept"
    );

    // Rollback by hand.
    let to = format!("dir:{}", path(&s.board));
    assert_success(&run(
        "edgeclr",
        &["flash", "--bundle", path(&v3), "--to", &to, "--rollback"],
    ));
    assert_eq!(current(&s.board).as_deref(), Some("v2"));
}

#[test]
fn quickstart_runs_the_whole_path_on_the_shipped_data() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("qs");
    let o = std::process::Command::new(e2e::binary("edgeclr"))
        .current_dir(e2e::repo_root())
        .args([
            "quickstart",
            "--out",
            path(&out),
            "--epochs",
            "1",
            "--frames",
            "20",
        ])
        .output()
        .expect("spawn");
    assert_success(&o);
    assert!(String::from_utf8_lossy(&o.stdout).contains("edgeclr quickstart finished"));
    let s = read_json(&out.join("quickstart.json"));
    assert!(
        s["knn_top1"]["pretrained"].as_f64().expect("knn") > 10.0,
        "{s}"
    );
    assert!(
        s["export"]["int8_vs_fp32_mean_cosine"]
            .as_f64()
            .expect("cos")
            > 0.99,
        "{s}"
    );
    assert_eq!(s["selftest_ok"], true);
    assert_eq!(s["device"]["frames"], 20);
    assert!(out.join("status.png").exists() && out.join("plots/loss.png").exists());
    assert_eq!(current(&out.join("board")).as_deref(), Some("quickstart"));
}

/// A second key pair, as another party (or an attacker) would have.
fn other_key(dir: &Path, name: &str) -> PathBuf {
    let key = dir.join(name);
    assert_success(&run("edgeclr", &["keygen", "--out", path(&key)]));
    key
}

fn pub_of(key: &Path) -> PathBuf {
    PathBuf::from(format!("{}.pub", key.display()))
}

/// Issue 14: the board's trusted.pub is the one authority. A host-side `--key` adds a check
/// and never replaces it; the first key is installed only explicitly; later keys only by a
/// bundle the current key signed.
#[test]
fn the_board_key_alone_decides_what_installs() {
    let s = setup();
    let trusted_before = std::fs::read(s.board.join("trusted.pub")).expect("trusted");
    assert_success(&s.flash(&s.signed("v1"), &[]));

    // A bundle signed by another key, flashed with that key as --key: refused, nothing changed.
    let other = other_key(&s.dir, "other");
    let foreign = s.bundle("v-foreign", &["--sign-key", path(&other)]);
    let out = s.flash(&foreign, &["--key", path(&pub_of(&other))]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("before any change") && err.contains("signature"),
        "{err}"
    );
    assert_eq!(current(&s.board).as_deref(), Some("v1"));
    assert_eq!(releases(&s.board), ["v1"]);
    assert_eq!(
        std::fs::read(s.board.join("trusted.pub")).expect("trusted"),
        trusted_before
    );

    // Rotation signed by a foreign key (announcing itself): refused, the key is unchanged.
    let hijack = s.bundle(
        "v-hijack",
        &[
            "--sign-key",
            path(&other),
            "--rotate-key",
            path(&pub_of(&other)),
        ],
    );
    let out = s.flash(&hijack, &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("signature"));
    assert_eq!(
        std::fs::read(s.board.join("trusted.pub")).expect("trusted"),
        trusted_before
    );
    assert_eq!(releases(&s.board), ["v1"], "nothing of the hijack staged");

    // Rotation signed by the current key: accepted and reported; then only the new key works.
    let next = other_key(&s.dir, "next");
    let rotating = s.bundle(
        "v2",
        &[
            "--sign-key",
            path(&s.key),
            "--rotate-key",
            path(&pub_of(&next)),
        ],
    );
    let out = s.flash(&rotating, &[]);
    assert_success(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("now trusts key"));
    assert_eq!(
        std::fs::read_to_string(s.board.join("trusted.pub")).expect("trusted"),
        std::fs::read_to_string(pub_of(&next)).expect("next.pub")
    );
    assert_eq!(
        std::fs::read(s.board.join("trusted.pub.previous")).expect("previous"),
        trusted_before
    );
    let out = s.flash(&s.signed("v3-old-key"), &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("signature"));
    let v3 = s.bundle("v3", &["--sign-key", path(&next)]);
    assert_success(&s.flash(&v3, &[]));
    assert_eq!(current(&s.board).as_deref(), Some("v3"));
}

#[test]
fn a_board_without_a_trusted_key_installs_nothing_until_told() {
    let s = setup();
    let fresh = s.dir.join("fresh");
    let to = format!("dir:{}", path(&fresh));
    let source = format!("mjpeg:{}", path(&clip()));
    let v1 = s.signed("v1");
    let flash = |extra: &[&str]| {
        let mut args = vec![
            "flash",
            "--bundle",
            path(&v1),
            "--to",
            &to,
            "--selftest-source",
            &source,
        ];
        args.extend_from_slice(extra);
        run("edgeclr", &args)
    };
    let out = flash(&[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("trusted.pub") && err.contains("--trust-on-first-use"),
        "{err}"
    );
    assert!(current(&fresh).is_none() && releases(&fresh).is_empty());
    // Trusting another key than the bundle's on first use does not install it either.
    let other = other_key(&s.dir, "other");
    let out = flash(&["--trust-on-first-use", path(&pub_of(&other))]);
    assert!(!out.status.success());
    assert!(current(&fresh).is_none());
    assert!(
        !fresh.join("trusted.pub").exists(),
        "a refused bundle leaves no key behind"
    );
    // The bundle's key, explicitly: written, said, installed.
    let mut fresh2 = fresh.clone();
    fresh2.set_file_name("fresh2");
    let to2 = format!("dir:{}", path(&fresh2));
    let out = run(
        "edgeclr",
        &[
            "flash",
            "--bundle",
            path(&v1),
            "--to",
            &to2,
            "--selftest-source",
            &source,
            "--trust-on-first-use",
            path(&pub_of(&s.key)),
        ],
    );
    assert_success(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("on first use"));
    assert_eq!(current(&fresh2).as_deref(), Some("v1"));
}

#[test]
fn ssh_destinations_cannot_smuggle_options() {
    let s = setup();
    let v1 = s.signed("v1");
    // No `/` in the smuggled options, so it is the user/host check that refuses them; the
    // marker would be created in the working folder if anything ran.
    for (to, why) in [
        (
            "ssh://-oProxyCommand=touch${IFS}pwned@127.0.0.1",
            "user name",
        ),
        ("ssh://pi@-oProxyCommand=touch${IFS}pwned", "host name"),
    ] {
        let out = std::process::Command::new(e2e::binary("edgeclr"))
            .current_dir(&s.dir)
            .args(["flash", "--bundle", path(&v1), "--to", to])
            .output()
            .expect("spawn");
        assert!(!out.status.success(), "{to} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--to") && err.contains(why), "{to}: {err}");
    }
    assert!(!s.dir.join("pwned").exists(), "a command ran");
}
