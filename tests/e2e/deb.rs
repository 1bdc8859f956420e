//! `edgeclr bundle --format deb`: the amd64 package inspected with `dpkg-deb`, installed into a
//! throwaway root with `dpkg --root … --force-script-chrootless` (maintainer scripts run,
//! honouring DPKG_ROOT), its unit checked with `systemd-analyze verify`, its binary run on the
//! clip from the installed paths, then removed and purged; the arm64 package built from the
//! cross build and inspected.

use std::path::{Path, PathBuf};
use std::process::Command;

use e2e::{assert_success, clip, exported_model, path, read_json, run};

fn has(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `edgeclr bundle --format deb` into `out`; the one `.deb` whose name starts with `package_`.
fn build_debs(tmp: &Path, board: &str, extra: &[&str]) -> PathBuf {
    let export = exported_model(tmp);
    let out = tmp.join(format!("debs-{board}"));
    let mut args = vec![
        "bundle",
        "--run",
        path(tmp),
        "--export",
        path(&export),
        "--board",
        board,
        "--format",
        "deb",
        "--version",
        "1.2.0+7",
        "--out",
        path(&out),
    ];
    args.extend_from_slice(extra);
    assert_success(&run("edgeclr", &args));
    out
}

fn dpkg_deb(args: &[&str]) -> String {
    let out = Command::new("dpkg-deb")
        .args(args)
        .output()
        .expect("dpkg-deb");
    assert_success(&out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `dpkg --root ROOT …` with maintainer scripts run outside a chroot (DPKG_ROOT set).
fn dpkg(root: &Path, args: &[&str]) -> std::process::Output {
    Command::new("dpkg")
        .args([
            "--root",
            path(root),
            "--force-script-chrootless",
            "--force-not-root",
            "--log=/dev/null",
        ])
        .args(args)
        .output()
        .expect("dpkg")
}

fn empty_dpkg_root(root: &Path) {
    for d in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/triggers",
        "etc",
    ] {
        std::fs::create_dir_all(root.join(d)).expect("dpkg dirs");
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").expect("status");
}

#[test]
fn the_amd64_package_installs_into_a_root_runs_and_purges() {
    if !has("dpkg-deb") || !has("systemd-analyze") {
        e2e::skip(
            "dpkg-deb or systemd-analyze missing (Debian's dpkg and systemd; .ci/run installs them)",
        );
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = build_debs(tmp.path(), "x86-dev", &[]);
    let deb = out.join("edgeclr-device_1.2.0+7_amd64.deb");
    let info = dpkg_deb(&["--info", path(&deb)]);
    for field in [
        "Package: edgeclr-device",
        "Version: 1.2.0+7",
        "Architecture: amd64",
        "Depends: libc6 (>= 2.",
    ] {
        assert!(info.contains(field), "{field} in\n{info}");
    }
    let contents = dpkg_deb(&["--contents", path(&deb)]);
    for f in [
        "./usr/bin/edgeclr-device",
        "./lib/systemd/system/edgeclr-device.service",
        "./usr/lib/sysusers.d/edgeclr.conf",
        "./etc/edgeclr/board.toml",
        "./usr/share/edgeclr/boards/rpi5.toml",
        "./usr/share/edgeclr/model/manifest.json",
        "./var/lib/edgeclr/",
    ] {
        assert!(
            contents.lines().any(|l| l.ends_with(f)),
            "{f} in\n{contents}"
        );
    }
    assert!(
        contents.lines().all(|l| l.contains(" root/root ")),
        "owned by root:\n{contents}"
    );

    let root = tmp.path().join("root");
    empty_dpkg_root(&root);
    let installed = dpkg(&root, &["--force-depends", "-i", path(&deb)]);
    assert_success(&installed);
    // The maintainer script made the service user and enabled the unit, inside the root.
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap_or_default();
    assert!(
        passwd.lines().any(|l| l.starts_with("edgeclr:")),
        "sysusers made the user:\n{passwd}"
    );
    let wants = root.join("etc/systemd/system/multi-user.target.wants/edgeclr-device.service");
    assert!(wants.symlink_metadata().is_ok(), "the unit is enabled");
    // The installed unit parses; systemd-analyze resolves ExecStart on this machine, where
    // /usr/bin/edgeclr-device is not installed: the one complaint allowed, and the binary it
    // names is checked in the root instead.
    let unit = root.join("lib/systemd/system/edgeclr-device.service");
    let verify = Command::new("systemd-analyze")
        .args(["verify", path(&unit)])
        .output()
        .expect("systemd-analyze");
    let stderr = String::from_utf8_lossy(&verify.stderr);
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| {
            !l.contains("/usr/bin/edgeclr-device is not executable") && !l.trim().is_empty()
        })
        .collect();
    assert!(complaints.is_empty(), "{complaints:#?}");
    let text = std::fs::read_to_string(&unit).expect("unit");
    let exec = text
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let bin = exec.split_whitespace().next().expect("program");
    assert_eq!(bin, "/usr/bin/edgeclr-device");
    for (flag, file) in [
        ("--config", "/etc/edgeclr/board.toml"),
        ("--model", "/usr/share/edgeclr/model"),
    ] {
        assert!(exec.contains(&format!("{flag} {file}")), "{exec}");
        assert!(root.join(&file[1..]).exists(), "{file} is installed");
    }

    // The installed binary embeds the clip with the installed profile and model.
    let jsonl = tmp.path().join("e.jsonl");
    let ran = Command::new(root.join("usr/bin/edgeclr-device"))
        .args([
            "run",
            "--config",
            path(&root.join("etc/edgeclr/board.toml")),
        ])
        .args(["--model", path(&root.join("usr/share/edgeclr/model"))])
        .args([
            "--source",
            &format!("mjpeg:{}", path(&clip())),
            "--frames",
            "5",
            "--display",
            "none",
        ])
        .args(["--sink", &format!("jsonl:{}", path(&jsonl))])
        .output()
        .expect("installed edgeclr-device");
    assert_success(&ran);
    assert_eq!(
        std::fs::read_to_string(&jsonl)
            .expect("jsonl")
            .lines()
            .count(),
        5
    );
    let manifest = read_json(&root.join("usr/share/edgeclr/model/manifest.json"));
    assert!(manifest["source"]["model_version"].is_string());

    // Remove keeps the edited conffile; purge drops it and the state.
    std::fs::write(root.join("etc/edgeclr/board.toml"), "# edited\n").expect("edit");
    std::fs::write(root.join("var/lib/edgeclr/current"), "slot").expect("state");
    assert_success(&dpkg(&root, &["-r", "edgeclr-device"]));
    assert!(!root.join("usr/bin/edgeclr-device").exists());
    assert!(
        root.join("etc/edgeclr/board.toml").exists(),
        "remove keeps conffiles"
    );
    assert!(
        wants.symlink_metadata().is_err(),
        "remove disables the unit"
    );
    assert_success(&dpkg(&root, &["--purge", "edgeclr-device"]));
    assert!(
        !root.join("etc/edgeclr/board.toml").exists() && !root.join("var/lib/edgeclr").exists()
    );
}

#[test]
fn the_arm64_package_holds_the_arm_binary_and_the_model_can_ship_alone() {
    if !has("dpkg-deb") {
        e2e::skip("dpkg-deb missing");
        return;
    }
    let arm = crate::arm::arm_binary();
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = build_debs(
        tmp.path(),
        "rpi5",
        &["--model-package", "--device-binary", path(&arm)],
    );
    let deb = out.join("edgeclr-device_1.2.0+7_arm64.deb");
    let model = out.join("edgeclr-model_1.2.0+7_all.deb");
    let info = dpkg_deb(&["--info", path(&deb)]);
    assert!(
        info.contains("Architecture: arm64") && info.contains("edgeclr-model"),
        "{info}"
    );
    let contents = dpkg_deb(&["--contents", path(&deb)]);
    assert!(
        !contents.contains("usr/share/edgeclr/model/"),
        "the model ships alone:\n{contents}"
    );
    let model_contents = dpkg_deb(&["--contents", path(&model)]);
    assert!(
        model_contents.contains("./usr/share/edgeclr/model/manifest.json"),
        "{model_contents}"
    );
    assert!(dpkg_deb(&["--info", path(&model)]).contains("Architecture: all"));
    // The packaged binary is the 64-bit ARM ELF, and the conffile is the rpi5 profile.
    let x = tmp.path().join("x");
    dpkg_deb(&["-x", path(&deb), path(&x)]);
    let elf = std::fs::read(x.join("usr/bin/edgeclr-device")).expect("binary");
    assert_eq!(u16::from_le_bytes([elf[18], elf[19]]), 183, "EM_AARCH64");
    let profile = std::fs::read_to_string(x.join("etc/edgeclr/board.toml")).expect("profile");
    assert!(profile.contains("name = \"rpi5\""), "{profile}");
}
