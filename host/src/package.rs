//! `edgeclr bundle --format deb`: the board runtime as Debian packages, so a board is
//! provisioned with `apt install ./edgeclr-device_VERSION_arm64.deb` and a fleet from an apt
//! repository or Ansible.
//!
//! `edgeclr-device_VERSION_ARCH.deb` holds `/usr/bin/edgeclr-device`, the systemd unit,
//! the `edgeclr` system user (sysusers.d, or adduser where systemd-sysusers is missing),
//! `/etc/edgeclr/board.toml` (the board's profile, a conffile: sinks and camera are set there
//! and survive upgrades), every profile under `/usr/share/edgeclr/boards/`, `/var/lib/edgeclr`
//! and the model under `/usr/share/edgeclr/model/`. With `--model-package` the model goes to
//! `edgeclr-model_VERSION_all.deb` instead, which the device package depends on: models then
//! roll out without touching the binary. The maintainer scripts honour `DPKG_ROOT`, so the
//! package also installs into an image (`dpkg --root … --force-script-chrootless`).

use anyhow::{Context, Result};

use crate::deb::{self, Control, Entry, Package};
use crate::release::{BundleArgs, Release};

/// Where the package puts things.
const MODEL_DIR: &str = "/usr/share/edgeclr/model";
const CONFIG: &str = "/etc/edgeclr/board.toml";

/// Writes the package(s) into `args.out` (a folder), printing each path.
///
/// # Errors
/// An invalid `--version`, an architecture Debian has no name for, an unwritable folder.
pub fn write_debs(args: &BundleArgs, r: &Release) -> Result<()> {
    let version = match &args.version {
        Some(v) => v.clone(),
        None => format!("{}+{}", env!("CARGO_PKG_VERSION"), r.created),
    };
    deb::check_version(&version).context("--version for --format deb")?;
    let arch = deb::debian_arch(r.arch)
        .with_context(|| format!("no Debian architecture for {}", r.arch))?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut packages = vec![device_package(args, r, &version, arch)];
    if args.model_package {
        packages.push(model_package(args, r, &version));
    }
    for p in &packages {
        let bytes = deb::build(p, r.created)?;
        let path = args.out.join(deb::file_name(&p.control));
        edgeclr_artifact::atomic::write_atomic(&path, &bytes)?;
        println!(
            "{} {} ({}, {} files, {} bytes) → {}",
            p.control.package,
            p.control.version,
            p.control.architecture,
            p.entries.iter().filter(|e| e.bytes.is_some()).count(),
            bytes.len(),
            path.display()
        );
    }
    Ok(())
}

fn device_package(args: &BundleArgs, r: &Release, version: &str, arch: &str) -> Package {
    let mut entries = vec![
        Entry::file("/usr/bin/edgeclr-device", r.bin.clone(), 0o755),
        Entry::file(
            "/lib/systemd/system/edgeclr-device.service",
            unit().into_bytes(),
            0o644,
        ),
        Entry::file(
            "/usr/lib/sysusers.d/edgeclr.conf",
            SYSUSERS.as_bytes().to_vec(),
            0o644,
        ),
        Entry::file(CONFIG, r.profile.as_bytes().to_vec(), 0o644),
        Entry::dir("/var/lib/edgeclr", 0o750),
    ];
    for (name, _, text) in edgeclr_artifact::boards::BOARDS {
        entries.push(Entry::file(
            &format!("/usr/share/edgeclr/boards/{name}.toml"),
            text.as_bytes().to_vec(),
            0o644,
        ));
    }
    let mut depends = r
        .min_glibc
        .as_ref()
        .map_or_else(|| "libc6".to_string(), |g| format!("libc6 (>= {g})"));
    if args.model_package {
        depends += ", edgeclr-model";
    } else {
        entries.extend(model_entries(r));
    }
    // A device package with the model inside and a model package own the same files.
    let relations = if args.model_package {
        Vec::new()
    } else {
        vec![
            ("Conflicts".into(), "edgeclr-model".into()),
            ("Replaces".into(), "edgeclr-model".into()),
        ]
    };
    let model_line = if args.model_package {
        "The model comes with the edgeclr-model package.".to_string()
    } else {
        format!("Model {} ({MODEL_DIR}).", r.model_version)
    };
    Package {
        control: Control {
            package: "edgeclr-device".into(),
            version: version.into(),
            architecture: arch.into(),
            maintainer: args.maintainer.clone(),
            depends: Some(depends),
            relations,
            description: vec![
                "edgeclr board runtime: camera frames to SimCLR embeddings".into(),
                format!(
                    "Built for the {} board profile ({}). {model_line}",
                    args.board, r.triple
                ),
                format!("Set sinks and camera in {CONFIG}; the service is edgeclr-device."),
            ],
        },
        entries,
        conffiles: vec![CONFIG.into()],
        scripts: vec![
            ("postinst".into(), POSTINST.into()),
            ("prerm".into(), PRERM.into()),
            ("postrm".into(), POSTRM.into()),
        ],
    }
}

fn model_package(args: &BundleArgs, r: &Release, version: &str) -> Package {
    Package {
        control: Control {
            package: "edgeclr-model".into(),
            version: version.into(),
            architecture: "all".into(),
            maintainer: args.maintainer.clone(),
            depends: None,
            // It takes over the model files of a device package that carried them.
            relations: vec![
                ("Replaces".into(), format!("edgeclr-device (<< {version})")),
                ("Breaks".into(), format!("edgeclr-device (<< {version})")),
            ],
            description: vec![
                format!("edgeclr encoder {} for edgeclr-device", r.model_version),
                format!("The exported model (ONNX fp32/int8 + manifest) in {MODEL_DIR}."),
                "A running edgeclr-device restarts onto it and keeps the previous one as a slot."
                    .into(),
            ],
        },
        entries: model_entries(r).collect(),
        conffiles: Vec::new(),
        scripts: vec![("postinst".into(), MODEL_POSTINST.into())],
    }
}

fn model_entries(r: &Release) -> impl Iterator<Item = Entry> + '_ {
    r.model
        .iter()
        .map(|(f, b)| Entry::file(&format!("{MODEL_DIR}/{f}"), b.clone(), 0o644))
}

/// The shipped unit with the package's paths: config from /etc, model from /usr/share.
fn unit() -> String {
    let exec = format!(
        "ExecStart=/usr/bin/edgeclr-device run --config {CONFIG} --model {MODEL_DIR} --state /var/lib/edgeclr --finetune"
    );
    let shipped = crate::release::unit_with_exec(&exec);
    // The shipped unit's leading comments are install instructions for a copy by hand.
    let body: Vec<&str> = shipped.lines().skip_while(|l| l.starts_with('#')).collect();
    "# Installed by the edgeclr-device package. Sinks, camera and screen: /etc/edgeclr/board.toml,\n\
     # then `systemctl restart edgeclr-device`. Model slots and fine-tuning state: /var/lib/edgeclr.\n"
        .to_string()
        + &body.join("\n")
        + "\n"
}

// The package's files that are not Rust: hardware/debian/ (readable and shell-checked there).
const SYSUSERS: &str = include_str!("../../hardware/debian/edgeclr.sysusers");
const POSTINST: &str = include_str!("../../hardware/debian/edgeclr-device.postinst");
const PRERM: &str = include_str!("../../hardware/debian/edgeclr-device.prerm");
const POSTRM: &str = include_str!("../../hardware/debian/edgeclr-device.postrm");
const MODEL_POSTINST: &str = include_str!("../../hardware/debian/edgeclr-model.postinst");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_maintainer_scripts_parse_as_posix_sh() {
        for (name, text) in [
            ("postinst", POSTINST),
            ("prerm", PRERM),
            ("postrm", POSTRM),
            ("model postinst", MODEL_POSTINST),
        ] {
            assert!(text.starts_with("#!/bin/sh\n"), "{name}");
            let out = std::process::Command::new("sh")
                .args(["-n", "-c", text])
                .output()
                .expect("sh");
            assert!(
                out.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    #[test]
    fn the_unit_runs_the_packaged_paths_and_keeps_the_service_settings() {
        let u = unit();
        let exec: Vec<&str> = u.lines().filter(|l| l.starts_with("ExecStart=")).collect();
        assert_eq!(
            exec,
            [
                "ExecStart=/usr/bin/edgeclr-device run --config /etc/edgeclr/board.toml --model /usr/share/edgeclr/model --state /var/lib/edgeclr --finetune"
            ]
        );
        for kept in [
            "Type=notify",
            "WatchdogSec=30",
            "User=edgeclr",
            "StateDirectory=edgeclr",
            "[Install]",
        ] {
            assert!(u.contains(kept), "{kept}");
        }
        assert!(!u.contains("/usr/local/bin"), "{u}");
    }
}
