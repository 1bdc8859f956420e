//! The board's install root: verified releases side by side, `current`/`previous` pointers
//! switched atomically, and the one trust anchor — `ROOT/trusted.pub` — that every bundle's
//! signature must verify against. A host-side key may add a check, never replace it; the
//! first key is installed explicitly (trust on first use), later ones only by a bundle signed
//! with the current key (rotation).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use edgeclr_artifact::atomic::{self, Pointers};

use crate::bundle::{
    BundleError, BundleManifest, MANIFEST, check_version, io, unpack, verify_dir, walk,
};
use crate::keys::{fingerprint, key_hex, parse_verifying_key, read_verifying_key};

/// The trust anchor's file name in an install root.
pub const TRUSTED: &str = "trusted.pub";

/// A release staged by [`InstallRoot::stage`].
#[derive(Debug, Clone)]
pub struct Staged {
    /// Its verified manifest.
    pub manifest: BundleManifest,
    /// The fingerprint of the key this release rotates to, once it has passed its self-test
    /// ([`InstallRoot::rotate`]).
    pub rotates_to: Option<String>,
}

/// The folders of an install root on a board:
/// `ROOT/releases/<version>/`, `ROOT/current -> releases/<version>`, `ROOT/previous`, and
/// `ROOT/trusted.pub`, the one key every bundle must be signed with (required).
#[derive(Debug, Clone)]
pub struct InstallRoot {
    root: PathBuf,
    releases: Pointers,
}

/// Errors about the tarball's contents re-worded to name the tarball the user gave, not the
/// scratch folder: unreadable tar bytes become [`BundleError::Corrupt`], a manifest problem
/// names `TARBALL/MANIFEST.json`. Write failures (disk full, permissions) and the others
/// (unsafe paths, signatures, mismatches) pass unchanged.
fn corrupt(tarball: &Path) -> impl Fn(BundleError) -> BundleError + '_ {
    move |e| match e {
        BundleError::Archive(reason) => BundleError::Corrupt {
            bundle: tarball.to_path_buf(),
            reason,
        },
        BundleError::Manifest { reason, .. } => BundleError::Manifest {
            path: tarball.join(MANIFEST),
            reason,
        },
        other => other,
    }
}

fn fsync_dir(dir: &Path) -> Result<(), BundleError> {
    atomic::fsync_dir(dir).map_err(io(dir))
}

impl InstallRoot {
    /// The install root at `root` (created on first install).
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            releases: Pointers::new(root, "releases"),
        }
    }

    /// `ROOT/releases`.
    pub fn releases(&self) -> PathBuf {
        self.releases.folder()
    }

    fn pointer(&self, name: &str) -> Option<String> {
        self.releases.get(name)
    }

    /// The current release's version.
    pub fn current(&self) -> Option<String> {
        self.pointer("current")
    }

    /// The previous release's version.
    pub fn previous(&self) -> Option<String> {
        self.pointer("previous")
    }

    /// `ROOT/trusted.pub`.
    pub fn trusted_path(&self) -> PathBuf {
        self.root.join(TRUSTED)
    }

    /// The key every bundle must be signed with.
    ///
    /// # Errors
    /// [`BundleError::Untrusted`] when the board holds none; a signature error when the file
    /// is not a key.
    pub fn trusted_key(&self) -> Result<VerifyingKey, BundleError> {
        let p = self.trusted_path();
        if !p.exists() {
            return Err(BundleError::Untrusted(p));
        }
        read_verifying_key(&p)
    }

    /// First install: trusts `key` when the board trusts none yet. Returns whether it was
    /// written; trusting the key already there is a no-op.
    ///
    /// # Errors
    /// When the board already trusts another key (rotate with a bundle signed by it), or on
    /// I/O errors.
    pub fn trust_on_first_use(&self, key: &VerifyingKey) -> Result<bool, BundleError> {
        match self.trusted_key() {
            Ok(current) if current == *key => Ok(false),
            Ok(current) => Err(BundleError::Signature(format!(
                "{} already trusts key {}; a new key is installed by a bundle signed with that one (`edgeclr bundle --rotate-key NEW.pub`)",
                self.trusted_path().display(),
                fingerprint(&current)
            ))),
            Err(BundleError::Untrusted(_)) => {
                self.write_trusted(key)?;
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }

    fn write_trusted(&self, key: &VerifyingKey) -> Result<(), BundleError> {
        fs::create_dir_all(&self.root).map_err(io(&self.root))?;
        let p = self.trusted_path();
        atomic::write_atomic(&p, format!("{}\n", key_hex(key)).as_bytes())
            .map_err(|e| BundleError::Mismatch(e.to_string()))
    }

    /// Key rotation, once the staged release `version` has proved healthy: its manifest is
    /// verified again against the current key, and if it names another key that key replaces
    /// `trusted.pub` atomically (the old one is kept as `trusted.pub.previous`). Returns the new
    /// key's fingerprint when it changed.
    ///
    /// # Errors
    /// A release that does not verify against the current key, or I/O errors.
    pub fn rotate(&self, version: &str) -> Result<Option<String>, BundleError> {
        check_version(version)?;
        let current = self.trusted_key()?;
        let m = verify_dir(&self.releases().join(version), Some(&current))?;
        let Some(hex) = &m.rotate_key else {
            return Ok(None);
        };
        let next = parse_verifying_key(hex).ok_or_else(|| {
            BundleError::Signature(format!("rotate_key `{hex}` is not a public key"))
        })?;
        if next == current {
            return Ok(None);
        }
        let previous = self.root.join(format!("{TRUSTED}.previous"));
        atomic::write_atomic(&previous, format!("{}\n", key_hex(&current)).as_bytes())
            .map_err(|e| BundleError::Mismatch(e.to_string()))?;
        self.write_trusted(&next)?;
        Ok(Some(fingerprint(&next)))
    }

    fn point(&self, name: &str, version: &str) -> Result<(), BundleError> {
        self.releases
            .set(name, version)
            .map_err(io(&self.root.join(name)))
    }

    /// Unpacks and verifies the bundle `tarball` into `releases/<version>/` without touching
    /// `current`: staged in a fresh `releases/.incoming-*` folder, verified (the signature
    /// against the board's `trusted.pub` — always — and against `also` too when given; every
    /// sha256 and mode), fsynced, then renamed into place. Key rotation waits for
    /// [`InstallRoot::rotate`], after the release passed its self-test.
    ///
    /// # Errors
    /// Anything wrong with the bundle or a board that trusts no key; the staging folder is
    /// deleted and nothing else changed.
    pub fn stage(
        &self,
        tarball: &Path,
        also: Option<&VerifyingKey>,
    ) -> Result<Staged, BundleError> {
        let trusted = self.trusted_key()?;
        let releases = self.releases();
        fs::create_dir_all(&releases).map_err(io(&releases))?;
        let staging = tempfile::Builder::new()
            .prefix(".incoming-")
            .tempdir_in(&releases)
            .map_err(io(&releases))?;
        let result = (|| {
            let staging = staging.path();
            let file = fs::File::open(tarball).map_err(io(tarball))?;
            unpack(std::io::BufReader::new(file), staging).map_err(corrupt(tarball))?;
            let m = verify_dir(staging, Some(&trusted)).map_err(corrupt(tarball))?;
            if let Some(k) = also {
                verify_dir(staging, Some(k))?;
            }
            let mut files = BTreeSet::new();
            walk(staging, staging, &mut files)?;
            for f in files {
                let p = staging.join(f);
                fs::File::open(&p)
                    .and_then(|f| f.sync_all())
                    .map_err(io(&p))?;
            }
            let dest = releases.join(&m.version);
            if dest.exists() {
                if self.current().as_deref() == Some(m.version.as_str()) {
                    return Err(BundleError::Mismatch(format!(
                        "release {} is already current; bundle again with a new --version",
                        m.version
                    )));
                }
                fs::remove_dir_all(&dest).map_err(io(&dest))?;
            }
            fs::rename(staging, &dest).map_err(io(&dest))?;
            fsync_dir(&releases)?;
            let rotates_to = m
                .rotate_key
                .as_deref()
                .and_then(parse_verifying_key)
                .filter(|k| *k != trusted)
                .map(|k| fingerprint(&k));
            Ok(Staged {
                manifest: m,
                rotates_to,
            })
        })();
        // On success the folder was renamed away; on failure it goes with the TempDir.
        drop(staging);
        result
    }

    /// Makes `version` current; the old current becomes `previous`.
    ///
    /// # Errors
    /// I/O errors.
    pub fn switch(&self, version: &str) -> Result<(), BundleError> {
        check_version(version)?;
        if !self.releases().join(version).is_dir() {
            return Err(BundleError::Mismatch(format!(
                "no staged release {version} in {}",
                self.releases().display()
            )));
        }
        self.releases
            .promote(version)
            .map_err(io(&self.root.join("current")))
    }

    /// Swaps `current` and `previous`, returning `(from, to)`.
    ///
    /// # Errors
    /// When there is no previous release.
    pub fn rollback(&self) -> Result<(String, String), BundleError> {
        let (Some(cur), Some(prev)) = (self.current(), self.previous()) else {
            return Err(BundleError::Mismatch(format!(
                "{} has no previous release to roll back to",
                self.root.display()
            )));
        };
        self.point("previous", &cur)?;
        self.point("current", &prev)?;
        Ok((cur, prev))
    }

    /// After a failed start: `current` goes back to `previous` (or is removed when there was
    /// none) and the failed release is deleted.
    ///
    /// # Errors
    /// I/O errors.
    pub fn abandon(&self, failed: &str) -> Result<(), BundleError> {
        check_version(failed)?;
        match self.previous().filter(|p| p != failed) {
            Some(prev) => self.point("current", &prev)?,
            None => {
                let _ = fs::remove_file(self.root.join("current"));
                fsync_dir(&self.root)?;
            }
        }
        let _ = fs::remove_dir_all(self.releases().join(failed));
        Ok(())
    }

    /// Deletes all but the newest `keep` releases (never current or previous); returns what
    /// was deleted.
    pub fn prune(&self, keep: usize) -> Vec<String> {
        let pinned = [self.current(), self.previous()];
        let mut removed = Vec::new();
        for (i, name) in self.releases.newest_first().into_iter().enumerate() {
            if i >= keep
                && !pinned.iter().flatten().any(|p| *p == name)
                && fs::remove_dir_all(self.releases.dir(&name)).is_ok()
            {
                removed.push(name);
            }
        }
        removed
    }
}
