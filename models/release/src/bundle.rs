//! Release bundles: one tarball with everything a board runs — the `edgeclr-device` binary,
//! the exported model (tract files, burn weights, manifest), the board profile and the systemd
//! unit — plus `MANIFEST.json` listing every file with its sha256 and mode, optionally signed
//! with ed25519 (`MANIFEST.sig`, over the exact manifest bytes).
//!
//! Shared by the host (`edgeclr bundle`, `edgeclr flash`) and the board
//! (`edgeclr-device verify-release`), so both sides check a release with the same code:
//! [`unpack`] refuses absolute paths, `..`, links and special files, and [`verify_dir`] refuses
//! a missing, extra, modified or re-moded file and a missing or wrong signature when a key is
//! trusted.

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use edgeclr_artifact::manifest::sha256_bytes;

/// The bundle manifest's file name.
pub const MANIFEST: &str = "MANIFEST.json";
/// The detached signature's file name (hex of 64 bytes).
pub const SIGNATURE: &str = "MANIFEST.sig";
/// Version of the bundle layout.
pub const FORMAT_VERSION: u32 = 1;

/// What is wrong with a bundle or release.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A path in the tarball or manifest could escape the release folder.
    #[error("unsafe path `{0}` in the bundle (absolute, `..`, or empty); refusing it")]
    UnsafePath(String),
    /// A tar entry that is not a plain file or folder.
    #[error("`{0}` is a {1} in the bundle; only plain files and folders are allowed")]
    EntryType(String, &'static str),
    /// A file differs from the manifest.
    #[error("{0}")]
    Mismatch(String),
    /// Signature missing or wrong.
    #[error("signature: {0}")]
    Signature(String),
    /// The board trusts no release key yet.
    #[error(
        "{0} is missing: this board trusts no release key, so nothing can be installed; put the release public key there once (`edgeclr flash --trust-on-first-use KEY.pub`, or copy it)"
    )]
    Untrusted(PathBuf),
    /// The manifest cannot be read.
    #[error("{path}: {reason}")]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The archive's bytes cannot be read as tar (from [`unpack`]).
    #[error("the tarball cannot be read ({0})")]
    Archive(String),
    /// The tarball cannot be read as a bundle: truncated, garbled or another kind of file.
    #[error(
        "{bundle}: not a readable edgeclr bundle ({reason}); it is truncated or corrupt — copy it again, or rebuild it with `edgeclr bundle`"
    )]
    Corrupt {
        /// The tarball.
        bundle: PathBuf,
        /// What failed.
        reason: String,
    },
    /// I/O on a named path.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BundleError + '_ {
    move |source| BundleError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One file of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleFile {
    /// Relative path inside the release (`bin/edgeclr-device`, `model/encoder.onnx`, …).
    pub path: String,
    /// Lower-case hex sha256.
    pub sha256: String,
    /// Unix permission bits (`0o755`, `0o644`).
    pub mode: u32,
    /// Size.
    pub bytes: u64,
}

/// `MANIFEST.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleManifest {
    /// Layout version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// Release version (the folder name under `releases/`).
    pub version: String,
    /// Board profile name.
    pub board: String,
    /// Target triple of `bin/edgeclr-device`.
    pub target_triple: String,
    /// Highest `GLIBC_x.y` symbol version the binary needs (none for static binaries).
    pub min_glibc: Option<String>,
    /// Git revision the host was built from, when known.
    pub git_revision: Option<String>,
    /// The model version inside.
    pub model_version: String,
    /// `edgeclr <version>`.
    pub producer: String,
    /// Every file, sorted by path.
    pub files: Vec<BundleFile>,
    /// Key rotation: the public key (hex) that replaces the board's `trusted.pub` once this
    /// manifest's signature has verified against the current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotate_key: Option<String>,
}

/// Checks that a release version is one plain path component (a folder under `releases/`).
///
/// # Errors
/// [`BundleError::UnsafePath`].
pub fn check_version(version: &str) -> Result<(), BundleError> {
    let ok = !version.is_empty()
        && version != "."
        && version != ".."
        && !version.starts_with('.')
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(BundleError::UnsafePath(version.into()))
    }
}

/// Checks that `path` is relative and stays inside its folder.
///
/// # Errors
/// [`BundleError::UnsafePath`].
pub fn check_path(path: &str) -> Result<PathBuf, BundleError> {
    let p = Path::new(path);
    let ok = !path.is_empty()
        && p.components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        && p.components().any(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(p.components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .collect())
    } else {
        Err(BundleError::UnsafePath(path.into()))
    }
}

/// Extracts the tarball `reader` into the existing empty folder `dest`: plain files (with
/// their mode, at most 0o755) and folders only, every path checked with [`check_path`].
///
/// # Errors
/// The first unsafe path or entry type, or an I/O error; `dest` may then hold part of the
/// bundle (callers extract into a staging folder and delete it on error).
pub fn unpack(reader: impl Read, dest: &Path) -> Result<(), BundleError> {
    let unreadable = |e: std::io::Error| BundleError::Archive(e.to_string());
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(unreadable)? {
        let mut entry = entry.map_err(unreadable)?;
        let raw = entry
            .path()
            .map_err(unreadable)?
            .to_string_lossy()
            .into_owned();
        let rel = check_path(&raw)?;
        let kind = entry.header().entry_type();
        let target = dest.join(&rel);
        if kind.is_dir() {
            fs::create_dir_all(&target).map_err(io(&target))?;
            continue;
        }
        if !kind.is_file() {
            let what = if kind.is_symlink() {
                "symbolic link"
            } else if kind.is_hard_link() {
                "hard link"
            } else {
                "special file"
            };
            return Err(BundleError::EntryType(raw, what));
        }
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let mode = entry.header().mode().map_err(unreadable)? & 0o755;
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(unreadable)?;
        fs::write(&target, &bytes).map_err(io(&target))?;
        set_mode(&target, mode)?;
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<(), BundleError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io(path))
}

fn mode_of(path: &Path) -> Result<u32, BundleError> {
    use std::os::unix::fs::PermissionsExt;
    Ok(fs::symlink_metadata(path)
        .map_err(io(path))?
        .permissions()
        .mode()
        & 0o777)
}

/// Every file under `dir`, as relative paths; links are reported as errors.
pub(crate) fn walk(dir: &Path, base: &Path, out: &mut BTreeSet<String>) -> Result<(), BundleError> {
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        let meta = fs::symlink_metadata(&path).map_err(io(&path))?;
        let rel = path
            .strip_prefix(base)
            .unwrap_or(&path)
            .to_string_lossy()
            .into_owned();
        if meta.file_type().is_symlink() {
            return Err(BundleError::EntryType(rel, "symbolic link"));
        } else if meta.is_dir() {
            walk(&path, base, out)?;
        } else {
            out.insert(rel);
        }
    }
    Ok(())
}

/// Reads `MANIFEST.json` of a release folder.
///
/// # Errors
/// When it is missing or malformed.
pub fn read_manifest(dir: &Path) -> Result<(BundleManifest, Vec<u8>), BundleError> {
    let path = dir.join(MANIFEST);
    let bytes = fs::read(&path).map_err(|e| BundleError::Manifest {
        path: path.clone(),
        reason: format!("cannot read ({e}); is this an edgeclr bundle?"),
    })?;
    let m = serde_json::from_slice(&bytes).map_err(|e| BundleError::Manifest {
        path: path.clone(),
        reason: format!(
            "{e}; the bundle was damaged in transit or made by a newer edgeclr — copy it again, or bundle it with this release"
        ),
    })?;
    Ok((m, bytes))
}

/// Verifies an unpacked release: the signature over `MANIFEST.json` when `key` is given (an
/// unsigned or mis-signed release is refused), then every listed file's sha256 and mode, and
/// that nothing unlisted is present.
///
/// # Errors
/// The first problem, naming the file.
pub fn verify_dir(dir: &Path, key: Option<&VerifyingKey>) -> Result<BundleManifest, BundleError> {
    let (manifest, bytes) = read_manifest(dir)?;
    check_version(&manifest.version)?;
    if let Some(hex) = &manifest.rotate_key {
        crate::keys::parse_verifying_key(hex).ok_or_else(|| {
            BundleError::Signature(format!("rotate_key `{hex}` is not a public key"))
        })?;
    }
    if let Some(key) = key {
        let sig_path = dir.join(SIGNATURE);
        let hex = fs::read_to_string(&sig_path).map_err(|_| {
            BundleError::Signature(
                "the bundle is unsigned but this board trusts a key; sign it with `edgeclr bundle --sign-key KEY`".into(),
            )
        })?;
        let sig = parse_hex::<64>(hex.trim())
            .map(|b| Signature::from_bytes(&b))
            .ok_or_else(|| {
                BundleError::Signature(format!("{} is not 64 hex bytes", sig_path.display()))
            })?;
        key.verify(&bytes, &sig).map_err(|_| {
            BundleError::Signature("MANIFEST.json is not signed by the trusted key (tampered, or signed with another key)".into())
        })?;
    }
    let mut present = BTreeSet::new();
    walk(dir, dir, &mut present)?;
    present.remove(MANIFEST);
    present.remove(SIGNATURE);
    for f in &manifest.files {
        let rel = check_path(&f.path)?;
        let path = dir.join(&rel);
        let data =
            fs::read(&path).map_err(|e| BundleError::Mismatch(format!("{}: {e}", f.path)))?;
        let sha = sha256_bytes(&data);
        if sha != f.sha256 {
            return Err(BundleError::Mismatch(format!(
                "{}: sha256 {} differs from the manifest's {} (modified or truncated in transit)",
                f.path,
                &sha[..16],
                f.sha256.chars().take(16).collect::<String>()
            )));
        }
        let mode = mode_of(&path)?;
        if mode != f.mode {
            return Err(BundleError::Mismatch(format!(
                "{}: mode {mode:o} differs from the manifest's {:o}",
                f.path, f.mode
            )));
        }
        present.remove(&rel.to_string_lossy().into_owned());
    }
    if let Some(extra) = present.into_iter().next() {
        return Err(BundleError::Mismatch(format!(
            "{extra}: not listed in the manifest"
        )));
    }
    Ok(manifest)
}

/// Writes the tarball: `files` (relative path, bytes, mode) plus the manifest and, with
/// `key`, its signature. Entries carry fixed owner and time, so equal inputs give equal bytes.
///
/// # Errors
/// I/O errors.
pub fn write_tar(
    out: impl std::io::Write,
    manifest: &BundleManifest,
    files: &[(String, Vec<u8>, u32)],
    key: Option<&SigningKey>,
) -> Result<(), std::io::Error> {
    let mut tar = tar::Builder::new(out);
    let mut add = |path: &str, bytes: &[u8], mode: u32| -> std::io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(mode);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, path, bytes)
    };
    let json = serde_json::to_vec_pretty(manifest)?;
    add(MANIFEST, &json, 0o644)?;
    if let Some(k) = key {
        add(SIGNATURE, hex(&k.sign(&json).to_bytes()).as_bytes(), 0o644)?;
    }
    for (path, bytes, mode) in files {
        add(path, bytes, *mode)?;
    }
    tar.into_inner()?.flush()
}

/// The manifest entry of a file.
pub fn file_entry(path: &str, bytes: &[u8], mode: u32) -> BundleFile {
    BundleFile {
        path: path.into(),
        sha256: sha256_bytes(bytes),
        mode,
        bytes: bytes.len() as u64,
    }
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(crate) fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::keys::{keygen, read_signing_key, read_verifying_key};

    pub(crate) fn manifest(files: &[(String, Vec<u8>, u32)]) -> BundleManifest {
        BundleManifest {
            format_version: FORMAT_VERSION,
            version: "v1".into(),
            board: "x86-dev".into(),
            target_triple: "x86_64-unknown-linux-gnu".into(),
            min_glibc: None,
            git_revision: None,
            model_version: "m".into(),
            producer: "test".into(),
            files: files.iter().map(|(p, b, m)| file_entry(p, b, *m)).collect(),
            rotate_key: None,
        }
    }

    pub(crate) fn files() -> Vec<(String, Vec<u8>, u32)> {
        vec![
            (
                "bin/edgeclr-device".into(),
                b"\x7fELF binary".to_vec(),
                0o755,
            ),
            ("model/manifest.json".into(), b"{}".to_vec(), 0o644),
        ]
    }

    #[test]
    fn paths_that_escape_are_refused() {
        for bad in ["/etc/passwd", "../x", "a/../../x", "", "..", "a/.."] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
        assert_eq!(check_path("./a/b").expect("ok"), PathBuf::from("a/b"));
    }

    #[test]
    fn signed_round_trip_and_every_tampering_is_caught() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (secret, public) = keygen();
        crate::keys::write_secret_key(&tmp.path().join("k"), &secret).expect("k");
        std::fs::write(tmp.path().join("k.pub"), &public).expect("pub");
        let sk = read_signing_key(&tmp.path().join("k")).expect("sk");
        let pk = read_verifying_key(&tmp.path().join("k.pub")).expect("pk");
        let f = files();
        let mut tar = Vec::new();
        write_tar(&mut tar, &manifest(&f), &f, Some(&sk)).expect("tar");
        let mut again = Vec::new();
        write_tar(&mut again, &manifest(&f), &f, Some(&sk)).expect("tar");
        assert_eq!(tar, again, "bundles are byte-reproducible");
        let dir = tmp.path().join("r");
        std::fs::create_dir(&dir).expect("dir");
        unpack(tar.as_slice(), &dir).expect("unpack");
        assert_eq!(verify_dir(&dir, Some(&pk)).expect("verifies").version, "v1");
        // Another key: refused.
        let (_, other) = keygen();
        std::fs::write(tmp.path().join("o.pub"), other).expect("pub");
        let opk = read_verifying_key(&tmp.path().join("o.pub")).expect("pk");
        assert!(matches!(
            verify_dir(&dir, Some(&opk)),
            Err(BundleError::Signature(_))
        ));
        // A changed file, a changed mode, an extra file, a missing signature.
        let bin = dir.join("bin/edgeclr-device");
        std::fs::write(&bin, b"\x7fELF evil!!").expect("write");
        assert!(
            matches!(verify_dir(&dir, None), Err(BundleError::Mismatch(m)) if m.contains("sha256"))
        );
        std::fs::write(&bin, b"\x7fELF binary").expect("write");
        set_mode(&bin, 0o777).expect("chmod");
        assert!(
            matches!(verify_dir(&dir, None), Err(BundleError::Mismatch(m)) if m.contains("mode"))
        );
        set_mode(&bin, 0o755).expect("chmod");
        std::fs::write(dir.join("model/extra"), b"x").expect("write");
        assert!(
            matches!(verify_dir(&dir, None), Err(BundleError::Mismatch(m)) if m.contains("not listed"))
        );
        std::fs::remove_file(dir.join("model/extra")).expect("rm");
        std::fs::remove_file(dir.join(SIGNATURE)).expect("rm");
        assert!(verify_dir(&dir, None).is_ok());
        assert!(
            matches!(verify_dir(&dir, Some(&pk)), Err(BundleError::Signature(m)) if m.contains("unsigned"))
        );
    }

    #[test]
    fn crafted_tarballs_cannot_write_outside() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let craft = |name: &[u8], kind: tar::EntryType| -> Vec<u8> {
            // Raw header: tar::Builder itself refuses `..`, so write the name bytes directly.
            let mut h = tar::Header::new_old();
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            h.set_size(if kind.is_file() { 3 } else { 0 });
            h.set_mode(0o644);
            h.set_entry_type(kind);
            if kind.is_symlink() {
                h.set_link_name("/etc").expect("link");
            }
            h.set_cksum();
            let mut out = h.as_bytes().to_vec();
            if kind.is_file() {
                out.extend_from_slice(b"bad");
                out.resize(1024, 0);
            }
            out.extend_from_slice(&[0u8; 1024]);
            out
        };
        for (name, kind) in [
            (&b"../escape"[..], tar::EntryType::Regular),
            (b"/tmp/abs", tar::EntryType::Regular),
            (b"a/../../b", tar::EntryType::Regular),
            (b"link", tar::EntryType::Symlink),
        ] {
            let dest = tmp.path().join("dest");
            let _ = std::fs::remove_dir_all(&dest);
            std::fs::create_dir(&dest).expect("dir");
            let err = unpack(craft(name, kind).as_slice(), &dest).expect_err("refused");
            assert!(
                matches!(err, BundleError::UnsafePath(_) | BundleError::EntryType(..)),
                "{err}"
            );
            assert!(!tmp.path().join("escape").exists() && !Path::new("/tmp/abs").exists());
            assert_eq!(
                std::fs::read_dir(&dest).expect("dest").count(),
                0,
                "nothing written"
            );
        }
    }
}
