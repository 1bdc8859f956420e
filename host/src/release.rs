//! Shipping to boards: `edgeclr keygen`, `edgeclr bundle` and `edgeclr flash`.
//!
//! A bundle (`models::bundle`) holds `bin/edgeclr-device`, the exported model under `model/`,
//! `board.toml`, `edgeclr-device.service` and `MANIFEST.json` (+ `MANIFEST.sig`). Flashing
//! stages it under `ROOT/releases/<version>/` and verifies every file (and the signature, when
//! the board trusts a key) *before* anything changes, switches the `current` symlink
//! atomically, runs the on-device self-test, and on failure switches back and says why.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use edgeclr_artifact::Manifest;
use edgeclr_release::InstallRoot;
use edgeclr_release::bundle::{self, BundleManifest, FORMAT_VERSION, file_entry};
use edgeclr_release::keys::{
    self, fingerprint, key_hex, read_signing_key, read_verifying_key, write_secret_key,
};

use crate::rollout::{Outcome, selftest_summary};
use crate::ssh::{Ssh, Target, sh_quote};
use tracing::{info, warn};

/// `edgeclr keygen`.
#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Secret key file to write (mode 0600); the public key goes to FILE.pub.
    #[arg(long)]
    pub out: PathBuf,
}

/// `edgeclr bundle`.
#[derive(Debug, clap::Args)]
pub struct BundleArgs {
    /// Run folder (its `export/` is bundled unless --export names another).
    #[arg(long)]
    pub run: PathBuf,
    /// Board profile: x86-dev, rpi4, rpi5, jetson-nano, jetson-orin-nano.
    #[arg(long)]
    pub board: String,
    /// Export folder from `edgeclr export` (default RUN/export).
    #[arg(long)]
    pub export: Option<PathBuf>,
    /// The board's `edgeclr-device` (default: the one built next to this `edgeclr`, for
    /// boards of this machine's architecture).
    #[arg(long)]
    pub device_binary: Option<PathBuf>,
    /// Release version (default: model version + a timestamp).
    #[arg(long)]
    pub version: Option<String>,
    /// Output tarball (`--format tar`), or the folder the `.deb` goes to (`--format deb`).
    #[arg(long)]
    pub out: PathBuf,
    /// `tar`: a signed bundle for `edgeclr flash`; `deb`: a Debian package
    /// (`edgeclr-device_VERSION_ARCH.deb`) for apt, an apt repository or Ansible.
    #[arg(long, value_enum, default_value_t = BundleFormat::Tar)]
    pub format: BundleFormat,
    /// `--format deb`: the model in a package of its own (`edgeclr-model_VERSION_all.deb`,
    /// which the device package depends on), so fleets can roll out models without binaries.
    #[arg(long)]
    pub model_package: bool,
    /// `--format deb`: the packages' Maintainer field.
    #[arg(long, default_value = "edgeclr release <release@edgeclr.invalid>")]
    pub maintainer: String,
    /// Sign with this secret key (`edgeclr keygen`).
    #[arg(long)]
    pub sign_key: Option<PathBuf>,
    /// Key rotation: boards that verify this bundle against their current key (the one
    /// `--sign-key` belongs to) trust this public key from then on.
    #[arg(long, requires = "sign_key")]
    pub rotate_key: Option<PathBuf>,
    /// Ship the binary with its debug information (by default it is stripped with llvm-strip
    /// or strip when one is installed: ~800 MB → ~100 MB for a release build).
    #[arg(long)]
    pub no_strip: bool,
}

impl BundleArgs {
    /// `edgeclr bundle --run RUN --board BOARD --out OUT` with every other flag at its default.
    pub fn new(run: PathBuf, board: &str, out: PathBuf) -> Self {
        Self {
            run,
            board: board.into(),
            export: None,
            device_binary: None,
            version: None,
            out,
            sign_key: None,
            rotate_key: None,
            no_strip: false,
            format: BundleFormat::Tar,
            model_package: false,
            maintainer: "edgeclr release <release@edgeclr.invalid>".into(),
        }
    }
}

/// What `edgeclr bundle` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BundleFormat {
    /// edgeclr's signed tarball, for `edgeclr flash`.
    Tar,
    /// Debian packages, for apt.
    Deb,
}

/// `edgeclr flash`.
#[derive(Debug, clap::Args)]
pub struct FlashArgs {
    /// The bundle.
    #[arg(long)]
    pub bundle: PathBuf,
    /// `dir:ROOT` or `ssh://USER@HOST[:PORT][/ROOT]` (remote root default /opt/edgeclr).
    #[arg(long, required_unless_present = "to_file", conflicts_with = "to_file")]
    pub to: Option<String>,
    /// A staged rollout: one `--to` target per line (`#` comments, blank lines allowed); the
    /// first `--canary` boards first, then the rest `--parallel` at a time.
    #[arg(long)]
    pub to_file: Option<PathBuf>,
    /// `--to-file`: boards flashed (and self-tested) first; any failure stops the rollout.
    #[arg(long, default_value_t = 1, requires = "to_file")]
    pub canary: usize,
    /// `--to-file`: boards flashed at once.
    #[arg(long, default_value_t = 4, requires = "to_file")]
    pub parallel: usize,
    /// `--to-file`: the rollout's JSON report (every board's versions, self-test, rollback);
    /// each board's output goes to REPORT's name with `.logs/`.
    #[arg(long, default_value = "rollout.json", requires = "to_file")]
    pub report: PathBuf,
    /// `--to-file`: seconds one board may take before it is stopped and counted as failed.
    #[arg(long, default_value_t = 900, requires = "to_file")]
    pub board_timeout: u64,
    /// Write this board's outcome as JSON (what `--to-file` collects from each board).
    #[arg(long, hide = true)]
    pub result_json: Option<PathBuf>,
    /// SSH private key.
    #[arg(long)]
    pub identity: Option<PathBuf>,
    /// SSH known_hosts file (host keys are always checked).
    #[arg(long)]
    pub known_hosts: Option<PathBuf>,
    /// A public key the bundle must also be signed with, checked here before anything is
    /// uploaded. Never sent to the board: the board's ROOT/trusted.pub always decides.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// First install only: the board trusts no key yet, make it trust this one (written to
    /// ROOT/trusted.pub; refused when the board already trusts another key).
    #[arg(long)]
    pub trust_on_first_use: Option<PathBuf>,
    /// Frame source for the self-test (default: the board profile's camera).
    #[arg(long)]
    pub selftest_source: Option<String>,
    /// Status screen for the self-test (default: the board profile's), e.g. `none` for a board
    /// without its screen attached.
    #[arg(long)]
    pub selftest_display: Option<String>,
    /// `dir:` targets: the program that runs the board's binary on this machine, split on
    /// spaces (`qemu-aarch64-static -L /usr/aarch64-linux-gnu` for an ARM bundle on x86).
    /// Explicit rather than binfmt_misc, which needs root and a kernel that allows it.
    #[arg(long)]
    pub runner: Option<String>,
    /// Restart this systemd service before the self-test (ssh targets; empty to skip).
    #[arg(long, default_value = FlashArgs::SERVICE)]
    pub service: String,
    /// Releases to keep.
    #[arg(long, default_value_t = FlashArgs::KEEP)]
    pub keep: usize,
    /// Instead of flashing: make the previous release current again.
    #[arg(long)]
    pub rollback: bool,
    /// Upload bandwidth limit in Kbit/s (scp -l), for slow or shared links.
    #[arg(long)]
    pub limit_kbps: Option<u32>,
}

impl FlashArgs {
    /// `--service`'s default: the unit hardware/systemd ships.
    pub const SERVICE: &str = "edgeclr-device";
    /// `--keep`'s default.
    pub const KEEP: usize = 3;

    /// `edgeclr flash --bundle BUNDLE --to TO` with every other flag at its default.
    pub fn new(bundle: PathBuf, to: String) -> Self {
        Self {
            bundle,
            to: Some(to),
            to_file: None,
            canary: 1,
            parallel: 4,
            report: PathBuf::from("rollout.json"),
            board_timeout: 900,
            result_json: None,
            identity: None,
            known_hosts: None,
            key: None,
            trust_on_first_use: None,
            selftest_source: None,
            selftest_display: None,
            runner: None,
            service: Self::SERVICE.into(),
            keep: Self::KEEP,
            rollback: false,
            limit_kbps: None,
        }
    }
}

/// Runs `edgeclr keygen`.
pub fn keygen(args: &KeygenArgs) -> Result<()> {
    let (secret, public) = keys::keygen();
    if args.out.exists() {
        bail!("{} exists; refusing to overwrite a key", args.out.display());
    }
    write_secret_key(&args.out, &secret)?;
    let public_path = PathBuf::from(format!("{}.pub", args.out.display()));
    std::fs::write(&public_path, format!("{public}\n"))?;
    println!(
        "secret key {} (keep it off the board), public key {} (copy to ROOT/trusted.pub on the board)",
        args.out.display(),
        public_path.display()
    );
    Ok(())
}

/// ELF machine of `bytes`: the Rust architecture name.
pub(crate) fn elf_arch(bytes: &[u8]) -> Option<&'static str> {
    if bytes.len() < 20 || &bytes[..4] != b"\x7fELF" {
        return None;
    }
    match u16::from_le_bytes([bytes[18], bytes[19]]) {
        62 => Some("x86_64"),
        183 => Some("aarch64"),
        40 => Some("arm"),
        _ => Some("unknown"),
    }
}

/// The highest `GLIBC_x.y[.z]` version string referenced by an ELF binary.
fn min_glibc(bytes: &[u8]) -> Option<String> {
    let pat = b"GLIBC_";
    let mut best: Option<Vec<u32>> = None;
    let mut i = 0;
    while let Some(p) = bytes[i..].windows(pat.len()).position(|w| w == pat) {
        let start = i + p + pat.len();
        let end = bytes[start..]
            .iter()
            .position(|b| !(b.is_ascii_digit() || *b == b'.'))
            .map_or(bytes.len(), |e| start + e);
        let v: Vec<u32> = std::str::from_utf8(&bytes[start..end])
            .unwrap_or("")
            .split('.')
            .filter_map(|x| x.parse().ok())
            .collect();
        if v.len() >= 2 && best.as_ref().is_none_or(|b| v > *b) {
            best = Some(v);
        }
        i = end.max(start);
    }
    best.map(|v| v.iter().map(u32::to_string).collect::<Vec<_>>().join("."))
}

fn git_revision() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `bin` without symbols and debug information, via `llvm-strip` (any architecture) or
/// `strip`; the input unchanged (with a warning) when neither works.
fn stripped(bin: Vec<u8>, arch: &str) -> Result<Vec<u8>> {
    let dir = tempfile::tempdir()?;
    let (input, output) = (dir.path().join("in"), dir.path().join("out"));
    std::fs::write(&input, &bin)?;
    // The host's `strip` reads only its own architecture: a cross binutils strip for the rest.
    let cross = format!("{arch}-linux-gnu-strip");
    for tool in ["llvm-strip", cross.as_str(), "strip"] {
        let ok = Command::new(tool)
            .arg("-o")
            .arg(&output)
            .arg(&input)
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            let out = std::fs::read(&output)?;
            info!(
                "{tool}: device binary {} → {} MB",
                bin.len() >> 20,
                out.len() >> 20
            );
            return Ok(out);
        }
    }
    warn!(
        "neither llvm-strip nor strip could strip the device binary; shipping it with debug information"
    );
    Ok(bin)
}

/// The systemd unit for a release installed under /opt/edgeclr.
pub(crate) fn unit_for(board: &str) -> String {
    unit_with_exec(&format!(
        "ExecStart=/opt/edgeclr/current/bin/edgeclr-device run --config /opt/edgeclr/current/board.toml --model /opt/edgeclr/current/model --state /var/lib/edgeclr --finetune --sink udp:127.0.0.1:7878\n# board: {board}"
    ))
}

/// The unit hardware/systemd ships with its `ExecStart=` line replaced by `exec` (which may
/// span lines): bundles and Debian packages differ only in where things are installed.
pub(crate) fn unit_with_exec(exec: &str) -> String {
    edgeclr_artifact::boards::SYSTEMD_UNIT
        .lines()
        .map(|l| if l.starts_with("ExecStart=") { exec } else { l })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// What a release ships, gathered and checked: the board's binary, the model, its profile.
#[derive(Debug)]
pub struct Release {
    /// The board's target triple.
    pub triple: &'static str,
    /// Its ELF architecture (`aarch64`, `x86_64`).
    pub arch: &'static str,
    /// The board profile's TOML.
    pub profile: &'static str,
    /// `edgeclr-device` for the board, stripped unless --no-strip.
    pub bin: Vec<u8>,
    /// The exported model's files (artifacts and manifest): (file name, bytes).
    pub model: Vec<(String, Vec<u8>)>,
    /// The model's version.
    pub model_version: String,
    /// The newest glibc symbol version the binary needs.
    pub min_glibc: Option<String>,
    /// Seconds since the Unix epoch when gathered.
    pub created: u64,
}

/// Checks the export and the board binary and reads them.
///
/// # Errors
/// A folder that is not an export, a tampered artifact, a missing binary or one built for
/// another architecture, each with the command that fixes it.
pub fn gather(args: &BundleArgs) -> Result<Release> {
    let (triple, profile) =
        edgeclr_artifact::boards::board(&args.board).map_err(anyhow::Error::msg)?;
    let export = args
        .export
        .clone()
        .unwrap_or_else(|| args.run.join("export"));
    let model = Manifest::load(&export).with_context(|| {
        format!(
            "{} is not an export folder; run `edgeclr export --run {} --out {} --int8` first",
            export.display(),
            args.run.display(),
            export.display()
        )
    })?;
    for a in &model.artifacts {
        model.verify(&export, a)?;
    }
    let binary = match &args.device_binary {
        Some(p) => p.clone(),
        None => default_device_binary(triple)?,
    };
    let bin = std::fs::read(&binary).with_context(|| {
        format!(
            "reading the device binary {} for {triple}; build it with `.ci/build-arm` (aarch64: \
             Debian's cross toolchain) or `cargo build --release -p edgeclr-firmware --target \
             {triple}`, or pass --device-binary",
            binary.display()
        )
    })?;
    let want = triple.split('-').next().unwrap_or_default();
    let arch = match elf_arch(&bin) {
        Some(arch) if arch == want => arch,
        Some(arch) => bail!(
            "{} is an {arch} binary but {} runs {triple}; pass --device-binary built for {triple}",
            binary.display(),
            args.board
        ),
        None => bail!("{} is not an ELF executable", binary.display()),
    };
    let bin = if args.no_strip {
        bin
    } else {
        stripped(bin, want)?
    };
    let mut names: Vec<String> = model.artifacts.iter().map(|a| a.file.clone()).collect();
    names.push(edgeclr_artifact::manifest::MANIFEST.into());
    let mut files = Vec::new();
    for f in names {
        let bytes = std::fs::read(export.join(&f))?;
        files.push((f, bytes));
    }
    Ok(Release {
        triple,
        arch,
        profile,
        min_glibc: min_glibc(&bin),
        bin,
        model: files,
        model_version: model.source.model_version.clone(),
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    })
}

/// Runs `edgeclr bundle`: a signed tarball for `edgeclr flash`, or Debian packages.
pub fn bundle(args: &BundleArgs) -> Result<()> {
    let release = gather(args)?;
    match args.format {
        BundleFormat::Tar => write_bundle(args, release),
        BundleFormat::Deb => crate::package::write_debs(args, &release),
    }
}

fn write_bundle(args: &BundleArgs, r: Release) -> Result<()> {
    let triple = r.triple;
    let mut files: Vec<(String, Vec<u8>, u32)> = vec![("bin/edgeclr-device".into(), r.bin, 0o755)];
    for (f, bytes) in r.model {
        files.push((format!("model/{f}"), bytes, 0o644));
    }
    files.push(("board.toml".into(), r.profile.as_bytes().to_vec(), 0o644));
    files.push((
        "edgeclr-device.service".into(),
        unit_for(&args.board).into_bytes(),
        0o644,
    ));
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let version = args
        .version
        .clone()
        .unwrap_or_else(|| format!("{}-{}", r.model_version, r.created));
    bundle::check_version(&version)
        .map_err(|e| anyhow::anyhow!("--version {version}: {e}; use letters, digits and `._+-`"))?;
    let manifest = BundleManifest {
        format_version: FORMAT_VERSION,
        version: version.clone(),
        board: args.board.clone(),
        target_triple: triple.into(),
        min_glibc: r.min_glibc,
        git_revision: git_revision(),
        model_version: r.model_version,
        producer: format!("edgeclr {}", env!("CARGO_PKG_VERSION")),
        files: files.iter().map(|(p, b, m)| file_entry(p, b, *m)).collect(),
        rotate_key: args
            .rotate_key
            .as_deref()
            .map(read_verifying_key)
            .transpose()?
            .map(|k| key_hex(&k)),
    };
    let key = args.sign_key.as_deref().map(read_signing_key).transpose()?;
    let mut tar = Vec::new();
    bundle::write_tar(&mut tar, &manifest, &files, key.as_ref())?;
    edgeclr_artifact::atomic::write_atomic(&args.out, &tar)?;
    println!(
        "bundle {} for {} ({triple}, glibc ≥ {}): {} files, {} bytes{} → {}",
        version,
        args.board,
        manifest.min_glibc.as_deref().unwrap_or("static"),
        manifest.files.len(),
        tar.len(),
        if key.is_some() { ", signed" } else { "" },
        args.out.display()
    );
    Ok(())
}

/// The `edgeclr-device` built beside this `edgeclr` for `triple`: this binary's own folder
/// (or `target/ship/`) for this machine's architecture, `target/<triple>/{ship,release}/` for
/// another (a cross build into the same target folder); the `ship` build when it is the
/// newer. `ship-small` (inference only) is never picked implicitly: pass it with
/// `--device-binary`.
fn default_device_binary(triple: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("no folder for the edgeclr binary")?;
    let target = dir
        .parent()
        .context("no target folder above the edgeclr binary")?;
    let (ship, release) = if triple.split('-').next() == Some(std::env::consts::ARCH) {
        (
            target.join("ship/edgeclr-device"),
            dir.join("edgeclr-device"),
        )
    } else {
        let folder = target.join(triple);
        (
            folder.join("ship/edgeclr-device"),
            folder.join("release/edgeclr-device"),
        )
    };
    // The `ship` profile (LTO, stripped) when it is the newer build.
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Ok(match (modified(&ship), modified(&release)) {
        (Some(s), Some(r)) if s >= r => ship,
        (Some(_), None) => ship,
        _ => release,
    })
}

/// Runs `edgeclr flash`: one board (`--to`), or a staged rollout (`--to-file`).
pub fn flash(args: &FlashArgs) -> Result<()> {
    if let Some(file) = &args.to_file {
        return crate::rollout::run(args, file);
    }
    let to = args
        .to
        .as_deref()
        .context("name the board: --to TARGET (or --to-file FILE for several)")?;
    let started = std::time::Instant::now();
    let mut outcome = Outcome::new(to);
    let result = flash_to(args, to, &mut outcome);
    if let Some(path) = &args.result_json {
        outcome.finish(result.as_ref().err(), started.elapsed());
        let written = serde_json::to_vec_pretty(&outcome)
            .map_err(anyhow::Error::from)
            .and_then(|j| Ok(edgeclr_artifact::atomic::write_atomic(path, &j)?));
        if let Err(e) = written {
            warn!("--result-json {}: {e:#}", path.display());
        }
    }
    result
}

/// Checks the bundle here (checksums, and the signature of `--key` when given) without
/// touching a board: what a rollout does once before its first board.
///
/// # Errors
/// The bundle is unreadable, tampered, or not signed by `--key`.
pub fn verify_bundle(args: &FlashArgs) -> Result<()> {
    let key = args.key.as_deref().map(read_verifying_key).transpose()?;
    let keys: Vec<_> = key.iter().collect();
    let (_staging, m) = verify_here(&args.bundle, &keys)?;
    info!("bundle {} for {} verified here", m.version, m.board);
    Ok(())
}

/// Flashes one board, recording its versions before and after in `out`.
fn flash_to(args: &FlashArgs, to: &str, out: &mut Outcome) -> Result<()> {
    let target: Target = to.parse().map_err(anyhow::Error::msg)?;
    if args.runner.is_some() && !matches!(target, Target::Dir(_)) {
        bail!("--runner applies to dir: targets; an ssh board runs its own binary");
    }
    match target {
        Target::Dir(root) => {
            out.before = InstallRoot::new(&root).current();
            let r = flash_dir(args, &root, out);
            out.after = InstallRoot::new(&root).current();
            r
        }
        Target::Ssh(t) => {
            let ssh = Ssh {
                target: t,
                known_hosts: args.known_hosts.clone(),
                identity: args.identity.clone(),
                limit_kbps: args.limit_kbps,
            };
            out.before = remote_current(&ssh);
            let r = flash_ssh(args, &ssh, out);
            out.after = remote_current(&ssh);
            r
        }
    }
}

/// The release `ROOT/current` names on an ssh board (None when unreachable or absent).
fn remote_current(ssh: &Ssh) -> Option<String> {
    let link = format!("{}/current", ssh.target.root);
    match ssh.run(&format!("readlink {}", sh_quote(&link))) {
        Ok((true, text)) => Path::new(text.trim())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned()),
        _ => None,
    }
}

/// Unpacks `bundle` into a fresh scratch folder and verifies it against every key in `keys`
/// (all must hold), here on the host, before anything reaches a board.
fn verify_here(
    bundle: &Path,
    keys: &[&ed25519_dalek::VerifyingKey],
) -> Result<(tempfile::TempDir, BundleManifest)> {
    let staging = tempfile::Builder::new()
        .prefix("edgeclr-flash-")
        .tempdir()?;
    let file =
        std::fs::File::open(bundle).with_context(|| format!("reading {}", bundle.display()))?;
    let check = || -> Result<BundleManifest, bundle::BundleError> {
        bundle::unpack(std::io::BufReader::new(file), staging.path())?;
        // Signatures first: nothing else of an unsigned bundle is looked at.
        for k in keys {
            bundle::verify_dir(staging.path(), Some(k))?;
        }
        bundle::verify_dir(staging.path(), None)
    };
    let m = check()
        .map_err(|e| anyhow::anyhow!("refused {} before any change: {e}", bundle.display()))?;
    bundle::check_version(&m.version)
        .map_err(|e| anyhow::anyhow!("refused {} before any change: {e}", bundle.display()))?;
    Ok((staging, m))
}

fn selftest_command(
    bin: &str,
    root: &str,
    source: Option<&str>,
    display: Option<&str>,
) -> Vec<String> {
    let mut v = vec![
        bin.to_string(),
        "selftest".into(),
        "--config".into(),
        format!("{root}/current/board.toml"),
        "--model".into(),
        format!("{root}/current/model"),
        "--state".into(),
        format!("{root}/state"),
        "--frames".into(),
        "10".into(),
    ];
    if let Some(s) = source {
        v.extend(["--source".into(), s.into()]);
    }
    if let Some(d) = display {
        v.extend(["--display".into(), d.into()]);
    }
    v
}

fn flash_dir(args: &FlashArgs, root_path: &Path, outcome: &mut Outcome) -> Result<()> {
    let root = InstallRoot::new(root_path);
    if args.rollback {
        let (from, to) = root.rollback()?;
        println!("rolled back {from} -> {to}");
        return Ok(());
    }
    let key = args.key.as_deref().map(read_verifying_key).transpose()?;
    if let Some(path) = &args.trust_on_first_use {
        let k = read_verifying_key(path)?;
        if matches!(root.trusted_key(), Err(bundle::BundleError::Untrusted(_))) {
            // Trust a key only for a bundle it signed: a refused bundle leaves no key behind.
            verify_here(&args.bundle, &[&k])?;
        }
        if root.trust_on_first_use(&k)? {
            println!(
                "trusting key {} ({}) on first use: {}",
                fingerprint(&k),
                path.display(),
                root.trusted_path().display()
            );
        }
    }
    let staged = root
        .stage(&args.bundle, key.as_ref())
        .map_err(|e| anyhow::anyhow!("refused {} before any change: {e}", args.bundle.display()))?;
    let m = staged.manifest;
    outcome.version = Some(m.version.clone());
    info!("staged {} for {}", m.version, m.board);
    root.switch(&m.version)?;
    let root_s = root_path.display().to_string();
    let mut cmd: Vec<String> = args
        .runner
        .as_deref()
        .map(|r| r.split_whitespace().map(String::from).collect())
        .unwrap_or_default();
    cmd.extend(selftest_command(
        &format!("{root_s}/current/bin/edgeclr-device"),
        &root_s,
        args.selftest_source.as_deref(),
        args.selftest_display.as_deref(),
    ));
    let out = Command::new(&cmd[0]).args(&cmd[1..]).output();
    let (ok, text) = match out {
        Ok(o) => (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        ),
        Err(e) => (
            false,
            format!("the release's edgeclr-device does not start: {e}"),
        ),
    };
    print!("{text}");
    outcome.selftest = selftest_summary(&text);
    if !ok {
        root.abandon(&m.version)?;
        outcome.rolled_back = true;
        bail!(
            "release {} failed its self-test and was rolled back; current is {}",
            m.version,
            root.current().unwrap_or_else(|| "none".into())
        );
    }
    if let Some(fp) = root.rotate(&m.version)? {
        println!("the board now trusts key {fp} (rotated by this healthy release)");
    }
    let pruned = root.prune(args.keep);
    println!(
        "flashed {} to {} (previous {}, pruned {:?})",
        m.version,
        root_path.display(),
        root.previous().unwrap_or_else(|| "none".into()),
        pruned
    );
    Ok(())
}

fn flash_ssh(args: &FlashArgs, ssh: &Ssh, outcome: &mut Outcome) -> Result<()> {
    let root = ssh.target.root.as_str();
    let q = |s: &str| sh_quote(s);
    let current_bin = format!("{root}/current/bin/edgeclr-device");
    if args.rollback {
        let text = ssh.must(
            &format!("{} release rollback --root {}", q(&current_bin), q(root)),
            "rollback",
        )?;
        print!("{text}");
        return Ok(());
    }
    // The board's trusted.pub decides. Read it first and check the bundle against it here
    // (and against --key): on a first install the bundle's own binary does the staging, so
    // nothing from an unverified bundle may reach the board.
    let anchor = trust_anchor(args, ssh)?;
    let extra = args.key.as_deref().map(read_verifying_key).transpose()?;
    let keys: Vec<_> = std::iter::once(&anchor.key).chain(extra.as_ref()).collect();
    let (staging, m) = verify_here(&args.bundle, &keys)?;
    let version = m.version.clone();
    outcome.version = Some(version.clone());
    ssh.must(
        &format!("mkdir -p {}/incoming {}/bootstrap", q(root), q(root)),
        "preparing the install root",
    )?;
    if let Some(path) = &anchor.first_use {
        let trusted = format!("{root}/trusted.pub");
        let local = tempfile::NamedTempFile::new()?;
        std::fs::write(local.path(), format!("{}\n", key_hex(&anchor.key)))?;
        ssh.upload(local.path(), &format!("{trusted}.part"))?;
        // `ln` creates the name only if it is absent: a key that appeared meanwhile wins.
        ssh.must(
            &format!(
                "ln {0}.part {0}; s=$?; rm -f {0}.part; exit $s",
                q(&trusted)
            ),
            "installing the trusted key (is one there already?)",
        )?;
        println!(
            "trusting key {} ({}) on first use: {}:{trusted}",
            fingerprint(&anchor.key),
            path.display(),
            ssh.target.dest()
        );
    }
    // The installer on the board: the current release's binary, else (first install) the
    // bundle's own, uploaded on its own.
    let (has_current, _) = ssh.run(&format!("test -x {}", q(&current_bin)))?;
    let installer = if has_current {
        // The real path: `current` is about to move, and a failed new release must not be the
        // binary that rolls itself back.
        ssh.must(
            &format!("readlink -f {}", q(&current_bin)),
            "resolving the installed binary",
        )?
        .trim()
        .to_string()
    } else {
        let b = format!("{root}/bootstrap/edgeclr-device");
        ssh.upload(
            &staging.path().join("bin/edgeclr-device"),
            &format!("{b}.part"),
        )?;
        ssh.must(
            &format!("chmod 755 {0}.part && mv {0}.part {0}", q(&b)),
            "installing the bootstrap binary",
        )?;
        b
    };
    // Upload under a temporary name: an interrupted transfer never looks complete.
    let remote_tar = format!("{root}/incoming/{version}.tar");
    ssh.upload(&args.bundle, &format!("{remote_tar}.part"))?;
    ssh.must(
        &format!("mv {0}.part {0}", q(&remote_tar)),
        "finishing the upload",
    )?;
    let staged = ssh.must(
        &format!(
            "{} release stage --root {} --bundle {}; s=$?; rm -f {}; exit $s",
            q(&installer),
            q(root),
            q(&remote_tar),
            q(&remote_tar)
        ),
        "verifying the bundle on the board (nothing changed)",
    )?;
    print!("{staged}");
    ssh.must(
        &format!(
            "{} release switch --root {} --version {}",
            q(&installer),
            q(root),
            q(&version)
        ),
        "switching current",
    )?;
    if !args.service.is_empty() {
        let (ok, text) = ssh.run(&format!("systemctl restart -- {}", q(&args.service)))?;
        if !ok {
            warn!(
                "restarting {} failed ({}); running the self-test anyway",
                args.service,
                text.trim()
            );
        }
    }
    let cmd = selftest_command(
        &current_bin,
        root,
        args.selftest_source.as_deref(),
        args.selftest_display.as_deref(),
    );
    let (ok, text) = ssh.run(&cmd.iter().map(|c| q(c)).collect::<Vec<_>>().join(" "))?;
    print!("{text}");
    outcome.selftest = selftest_summary(&text);
    if !ok {
        ssh.must(
            &format!(
                "{} release abandon --root {} --version {}",
                q(&installer),
                q(root),
                q(&version)
            ),
            "rolling back",
        )?;
        outcome.rolled_back = true;
        bail!(
            "release {version} failed its self-test on {} and was rolled back",
            ssh.target.dest()
        );
    }
    let text = ssh.must(
        &format!(
            "{0} release rotate --root {1} --version {2} && {0} release prune --root {1} --keep {3}",
            q(&current_bin),
            q(root),
            q(&version),
            args.keep
        ),
        "rotating the key (if asked) and pruning",
    )?;
    print!("{text}");
    println!("flashed {version} to {}:{root}", ssh.target.dest());
    Ok(())
}

/// The key the board trusts (or will, on first use) and, for a first use, the file to install.
struct Anchor {
    key: ed25519_dalek::VerifyingKey,
    first_use: Option<PathBuf>,
}

/// Reads the board's `ROOT/trusted.pub` over ssh and reconciles it with
/// `--trust-on-first-use`.
fn trust_anchor(args: &FlashArgs, ssh: &Ssh) -> Result<Anchor> {
    let trusted = format!("{}/trusted.pub", ssh.target.root);
    let text = ssh.must(
        &format!(
            "if [ -e {0} ]; then cat {0}; else echo NO-TRUSTED-KEY; fi",
            sh_quote(&trusted)
        ),
        "reading the board's trusted key",
    )?;
    let board = match text.trim() {
        "NO-TRUSTED-KEY" => None,
        t => Some(
            keys::parse_verifying_key(t)
                .with_context(|| format!("{}:{trusted} is not a public key", ssh.target.dest()))?,
        ),
    };
    let tofu = args
        .trust_on_first_use
        .as_deref()
        .map(|p| read_verifying_key(p).map(|k| (k, p.to_path_buf())))
        .transpose()?;
    match (board, tofu) {
        (Some(b), Some((t, _))) if b != t => bail!(
            "{}:{trusted} already trusts key {}, not {}; a new key reaches a board only in a bundle signed with the current one (`edgeclr bundle --rotate-key`); nothing was changed",
            ssh.target.dest(),
            fingerprint(&b),
            fingerprint(&t)
        ),
        (Some(b), _) => Ok(Anchor {
            key: b,
            first_use: None,
        }),
        (None, Some((t, path))) => Ok(Anchor {
            key: t,
            first_use: Some(path),
        }),
        (None, None) => bail!(
            "{}:{trusted} is missing: the board trusts no release key; pass --trust-on-first-use KEY.pub once (nothing was changed)",
            ssh.target.dest()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_and_elf_are_read_from_the_binary() {
        let mut b = vec![0x7f, b'E', b'L', b'F'];
        b.resize(18, 0);
        b.extend_from_slice(&183u16.to_le_bytes());
        b.extend_from_slice(b"\0GLIBC_2.17\0GLIBC_2.34\0GLIBC_2.2.5\0GLIBC_PRIVATE\0");
        assert_eq!(elf_arch(&b), Some("aarch64"));
        assert_eq!(min_glibc(&b).as_deref(), Some("2.34"));
        assert_eq!(elf_arch(b"#!/bin/sh"), None);
    }
}
