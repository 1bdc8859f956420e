//! `edgeclr flash --to-file`: a staged rollout over six boards — four `dir:` roots and two
//! real sshd instances on loopback. The first release reaches all six; the second meets a
//! canary made to fail (its state folder is a file, so its self-test cannot run): that canary
//! rolls back, the rollout stops, and the four other boards keep the first release untouched.

use std::path::{Path, PathBuf};

use e2e::{assert_success, bundle, clip, exported_model, path, pointer, read_json, run};

use crate::ssh::start_sshd;

fn roll(bundle: &Path, boards: &Path, report: &Path, ssh: (&Path, &Path)) -> std::process::Output {
    let source = format!("mjpeg:{}", path(&clip()));
    run(
        "edgeclr",
        &[
            "flash",
            "--bundle",
            path(bundle),
            "--to-file",
            path(boards),
            "--canary",
            "2",
            "--parallel",
            "3",
            "--identity",
            path(ssh.0),
            "--known-hosts",
            path(ssh.1),
            "--service",
            "",
            "--selftest-source",
            &source,
            "--selftest-display",
            "none",
            "--report",
            path(report),
        ],
    )
}

#[test]
fn a_failing_canary_stops_the_rollout_and_leaves_the_rest_untouched() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    for d in ["sshd-a", "sshd-b"] {
        std::fs::create_dir_all(dir.join(d)).expect("sshd folder");
    }
    let (Some(a), Some(b)) = (
        start_sshd(&dir.join("sshd-a")),
        start_sshd(&dir.join("sshd-b")),
    ) else {
        e2e::skip("no sshd (install openssh-server; .ci/run does)");
        return;
    };
    // One identity and one known_hosts file for both servers.
    let key_a = std::fs::read_to_string(dir.join("sshd-a/user_key.pub")).expect("key");
    let auth_b = dir.join("sshd-b/authorized_keys");
    let both = std::fs::read_to_string(&auth_b).expect("authorized") + &key_a;
    std::fs::write(&auth_b, both).expect("authorize a's key on b");
    let known = dir.join("known_hosts");
    let hosts = std::fs::read_to_string(&a.known_hosts).expect("a")
        + "\n"
        + &std::fs::read_to_string(&b.known_hosts).expect("b");
    std::fs::write(&known, hosts).expect("known_hosts");

    let export = exported_model(dir);
    let key = dir.join("release.key");
    assert_success(&run("edgeclr", &["keygen", "--out", path(&key)]));
    let sign = ["--sign-key", path(&key)];
    let (v1, v2) = (
        bundle(dir, &export, "v1", &sign),
        bundle(dir, &export, "v2", &sign),
    );
    let roots: Vec<PathBuf> = ["s1", "s2", "d1", "d2", "d3", "d4"]
        .iter()
        .map(|n| dir.join(n))
        .collect();
    for r in &roots {
        std::fs::create_dir_all(r).expect("root");
        std::fs::copy(dir.join("release.key.pub"), r.join("trusted.pub")).expect("trust");
    }
    let mut boards = String::from("# canaries: the two ssh boards\n");
    boards += &format!("ssh://{}@127.0.0.1:{}{}\n", a.user, a.port, path(&roots[0]));
    boards += &format!(
        "ssh://{}@127.0.0.1:{}{}  # the one made to fail\n\n# the rest\n",
        b.user,
        b.port,
        path(&roots[1])
    );
    for r in &roots[2..] {
        boards += &format!("dir:{}\n", path(r));
    }
    let list = dir.join("boards.txt");
    std::fs::write(&list, boards).expect("boards.txt");

    let report1 = dir.join("rollout-v1.json");
    let out = roll(&v1, &list, &report1, (&a.identity, &known));
    assert_success(&out);
    let r = read_json(&report1);
    let all = r["boards"].as_array().expect("boards");
    assert_eq!(all.len(), 6);
    for o in all {
        assert_eq!(
            (&o["status"], &o["after"], &o["rolled_back"]),
            (&"ok".into(), &"v1".into(), &false.into()),
            "{o}"
        );
        assert!(
            o["selftest"]
                .as_str()
                .is_some_and(|s| s.starts_with("PASS")),
            "{o}"
        );
    }
    assert_eq!(all.iter().filter(|o| o["phase"] == "canary").count(), 2);

    // s2's state folder becomes a file: its next self-test fails.
    std::fs::rename(roots[1].join("state"), dir.join("s2-state")).expect("move state");
    std::fs::write(roots[1].join("state"), "not a folder").expect("break s2");
    let report2 = dir.join("rollout-v2.json");
    let out = roll(&v2, &list, &report2, (&a.identity, &known));
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("failed") && l.ends_with("yes")),
        "the table:\n{stdout}"
    );
    let r = read_json(&report2);
    assert_eq!(r["stopped_by_canary"], true);
    let b = &r["boards"];
    assert_eq!(
        (&b[0]["status"], &b[0]["before"], &b[0]["after"]),
        (&"ok".into(), &"v1".into(), &"v2".into())
    );
    assert_eq!(
        (&b[1]["status"], &b[1]["after"], &b[1]["rolled_back"]),
        (&"failed".into(), &"v1".into(), &true.into()),
        "{}",
        b[1]
    );
    for (o, root) in b.as_array().expect("boards")[2..].iter().zip(&roots[2..]) {
        assert_eq!(
            (&o["status"], &o["version"]),
            (&"skipped".into(), &serde_json::Value::Null),
            "{o}"
        );
        assert_eq!(
            pointer(root, "current").as_deref(),
            Some("v1"),
            "{}",
            root.display()
        );
        assert!(
            !root.join("releases/v2").exists(),
            "{} untouched",
            root.display()
        );
    }
    assert_eq!(pointer(&roots[0], "current").as_deref(), Some("v2"));
    assert_eq!(pointer(&roots[1], "current").as_deref(), Some("v1"));
}
