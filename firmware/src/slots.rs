//! Model slots on disk with atomic pointer switches, so a power cut at any moment leaves a
//! model that loads.
//!
//! ```text
//! STATE/slots/<version>/        complete model folders (manifest.json + the files it lists)
//! STATE/slots/.staging-<name>/  a candidate being written (deleted on the next start)
//! STATE/current  -> slots/<version>   the running model (symlink)
//! STATE/previous -> slots/<version>   the last good model before it, for rollback
//! STATE/factory  -> slots/<version>   the model last installed from a bundle (never pruned)
//! STATE/candidates/<version>/   with `keep_candidates`: every candidate, promoted or not
//! ```
//!
//! A candidate is written into a staging folder, every file and the folder fsynced, then the
//! folder is renamed into `slots/` (atomic) and only then do the pointers move: `previous`
//! first, then `current`, each by creating a temporary symlink and renaming it over the old
//! one, with an fsync of `STATE/`. Every intermediate state on disk is one of: old pointers
//! (the candidate is ignored or pruned later), or `previous` already moved (both pointers name
//! the old model), or the new model current. Loading verifies every file's sha256 against the
//! manifest and falls back to `previous`, then to any other complete slot, newest first.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use edgeclr_artifact::atomic::{Pointers, fsync_dir};
use edgeclr_artifact::{ArtifactKind, Manifest};
use tracing::{info, warn};

use crate::config::ArtifactChoice;

const SLOTS: &str = "slots";
const CURRENT: &str = "current";
const PREVIOUS: &str = "previous";
const FACTORY: &str = "factory";
const STAGING: &str = ".staging-";
const CANDIDATES: &str = "candidates";

/// The slot folders of one state directory.
#[derive(Debug, Clone)]
pub struct Slots {
    pointers: Pointers,
}

fn io_err(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Checks that `dir` holds a manifest and every file it lists with the listed sha256.
///
/// # Errors
/// The first missing, unreadable or modified file.
pub fn verify(dir: &Path) -> Result<Manifest, String> {
    let manifest = Manifest::load(dir).map_err(|e| e.to_string())?;
    for a in &manifest.artifacts {
        manifest.verify(dir, a).map_err(|e| e.to_string())?;
    }
    Ok(manifest)
}

impl Slots {
    /// Opens (creating) the state directory `root` and deletes staging folders left by an
    /// interrupted write.
    ///
    /// # Errors
    /// When `root` cannot be created or read.
    pub fn open(root: &Path) -> io::Result<Self> {
        let slots = root.join(SLOTS);
        fs::create_dir_all(&slots).map_err(|e| io_err(&slots, e))?;
        for entry in fs::read_dir(&slots).map_err(|e| io_err(&slots, e))? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(STAGING) {
                info!(
                    "removing {} (a write interrupted before it completed)",
                    entry.path().display()
                );
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        // Temporary symlinks of a pointer switch cut short.
        for entry in fs::read_dir(root).map_err(|e| io_err(root, e))?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.contains(".tmp-") {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(Self {
            pointers: Pointers::new(root, SLOTS),
        })
    }

    /// The state directory.
    pub fn root(&self) -> &Path {
        self.pointers.root()
    }

    fn pointer(&self, name: &str) -> Option<String> {
        self.pointers.get(name)
    }

    /// The slot `current` names, if it exists.
    pub fn current_name(&self) -> Option<String> {
        self.pointer(CURRENT)
    }

    /// The slot `factory` names: the model last installed from a bundle.
    pub fn factory_name(&self) -> Option<String> {
        self.pointer(FACTORY)
    }

    /// The slot `previous` names, if any.
    pub fn previous_name(&self) -> Option<String> {
        self.pointer(PREVIOUS)
    }

    /// The folder of slot `name`.
    pub fn dir(&self, name: &str) -> PathBuf {
        self.pointers.dir(name)
    }

    /// Complete slot names, newest (by modification time) first.
    pub fn list(&self) -> Vec<String> {
        self.pointers.newest_first()
    }

    /// A fresh, empty staging folder for slot `name`.
    ///
    /// # Errors
    /// I/O errors naming the folder.
    pub fn stage(&self, name: &str) -> io::Result<PathBuf> {
        let dir = self.pointers.folder().join(format!("{STAGING}{name}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        Ok(dir)
    }

    /// Makes staged slot `name` complete: fsyncs its files and folder, renames it into
    /// `slots/` and fsyncs that. The pointers do not move.
    ///
    /// # Errors
    /// I/O errors naming the file; the staging folder is left to the next start's cleanup.
    pub fn commit(&self, name: &str) -> io::Result<PathBuf> {
        let staged = self.pointers.folder().join(format!("{STAGING}{name}"));
        for entry in fs::read_dir(&staged).map_err(|e| io_err(&staged, e))? {
            let path = entry?.path();
            fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| io_err(&path, e))?;
        }
        fsync_dir(&staged).map_err(|e| io_err(&staged, e))?;
        let dest = self.dir(name);
        if dest.exists() {
            fs::remove_dir_all(&dest).map_err(|e| io_err(&dest, e))?;
        }
        fs::rename(&staged, &dest).map_err(|e| io_err(&dest, e))?;
        fsync_dir(&self.pointers.folder()).map_err(|e| io_err(self.root(), e))?;
        Ok(dest)
    }

    /// Keeps a copy of complete slot `name` in `STATE/candidates/<name>/` that pruning and
    /// rejection never delete (hard links: slot files are written once and never changed),
    /// for evaluating every candidate after a run. Returns the copy's folder.
    ///
    /// # Errors
    /// I/O errors naming the file.
    pub fn archive(&self, name: &str) -> io::Result<PathBuf> {
        let from = self.dir(name);
        let to = self.root().join(CANDIDATES).join(name);
        fs::create_dir_all(&to).map_err(|e| io_err(&to, e))?;
        for entry in fs::read_dir(&from).map_err(|e| io_err(&from, e))? {
            let src = entry?.path();
            let Some(file) = src.file_name() else {
                continue;
            };
            let dst = to.join(file);
            let _ = fs::remove_file(&dst);
            fs::hard_link(&src, &dst)
                .or_else(|_| fs::copy(&src, &dst).map(drop))
                .map_err(|e| io_err(&dst, e))?;
        }
        Ok(to)
    }

    fn point(&self, pointer: &str, slot: &str) -> io::Result<()> {
        self.pointers.set(pointer, slot)
    }

    /// Makes complete slot `name` current; the old current becomes `previous`.
    ///
    /// # Errors
    /// I/O errors naming the pointer.
    pub fn promote(&self, name: &str) -> io::Result<()> {
        self.pointers.promote(name)
    }

    /// Swaps `current` and `previous`; returns `(from, to)`.
    ///
    /// # Errors
    /// When there is no previous slot or it no longer verifies.
    pub fn rollback(&self) -> Result<(String, String), String> {
        let current = self
            .current_name()
            .ok_or_else(|| format!("{} has no current model", self.root().display()))?;
        let previous = self.previous_name().ok_or_else(|| {
            format!(
                "{} has no previous model to roll back to (none was replaced yet)",
                self.root().display()
            )
        })?;
        verify(&self.dir(&previous))
            .map_err(|e| format!("previous model {previous} does not verify: {e}"))?;
        self.point(PREVIOUS, &current).map_err(|e| e.to_string())?;
        self.point(CURRENT, &previous).map_err(|e| e.to_string())?;
        Ok((current, previous))
    }

    /// Deletes complete slots that no pointer (current, previous, factory) names, keeping the
    /// `keep` newest of them besides. Best effort.
    pub fn prune(&self, keep: usize) {
        let pinned = [
            self.current_name(),
            self.previous_name(),
            self.pointer(FACTORY),
        ];
        for name in self
            .list()
            .into_iter()
            .filter(|n| !pinned.iter().flatten().any(|p| p == n))
            .skip(keep)
        {
            let _ = fs::remove_dir_all(self.dir(&name));
        }
    }

    /// Copies the model folder `model` (its manifest and every file it lists) into a slot
    /// named by its model version, marks it as the factory model and makes it current — the
    /// first start on a board, or a newly flashed bundle.
    ///
    /// # Errors
    /// When `model` does not verify or a copy fails.
    pub fn install(&self, model: &Path) -> Result<String, String> {
        let manifest = verify(model).map_err(|e| format!("--model {}: {e}", model.display()))?;
        let name = slot_name(&manifest.source.model_version);
        if verify(&self.dir(&name)).is_err() {
            let staged = self.stage(&name).map_err(|e| e.to_string())?;
            let mut files: Vec<String> =
                manifest.artifacts.iter().map(|a| a.file.clone()).collect();
            files.push(edgeclr_artifact::manifest::MANIFEST.into());
            for f in files {
                fs::copy(model.join(&f), staged.join(&f))
                    .map_err(|e| format!("copying {}: {e}", model.join(&f).display()))?;
            }
            self.commit(&name).map_err(|e| e.to_string())?;
        }
        self.point(FACTORY, &name).map_err(|e| e.to_string())?;
        self.promote(&name).map_err(|e| e.to_string())?;
        Ok(name)
    }

    /// The slot to run: `current` if it verifies, else `previous`, else the newest complete
    /// slot that verifies (re-pointing `current` at it). `None` when no slot verifies.
    pub fn loadable(&self) -> Option<(String, Manifest)> {
        let mut candidates: Vec<String> = Vec::new();
        candidates.extend(self.current_name());
        candidates.extend(self.previous_name());
        candidates.extend(self.list());
        let current = self.current_name();
        for name in candidates {
            match verify(&self.dir(&name)) {
                Ok(m) => {
                    if current.as_deref() != Some(name.as_str()) {
                        warn!(
                            "current model {:?} does not load; falling back to {name}",
                            current
                        );
                        if let Err(e) = self.point(CURRENT, &name) {
                            warn!("could not re-point current: {e}");
                        }
                    }
                    return Some((name, m));
                }
                Err(e) => warn!("slot {name}: {e}"),
            }
        }
        None
    }
}

/// A folder name for a model version (path separators and dots replaced).
pub fn slot_name(version: &str) -> String {
    version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '+' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The file the pipeline runs for `choice` in a slot folder.
pub fn model_file(dir: &Path, manifest: &Manifest, choice: ArtifactChoice) -> PathBuf {
    let kind = match choice {
        ArtifactChoice::Int8 if manifest.artifact(ArtifactKind::OnnxInt8Qlinear).is_some() => {
            ArtifactKind::OnnxInt8Qlinear
        }
        _ => edgeclr_runtime::embed::DEFAULT_PREFERENCE
            .iter()
            .copied()
            .find(|k| manifest.artifact(*k).is_some())
            .unwrap_or(ArtifactKind::OnnxFp32),
    };
    dir.join(kind.file_name())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A complete slot: one file and a manifest listing it with its checksum.
    fn fake_slot(slots: &Slots, name: &str, content: &[u8]) {
        use edgeclr_artifact::manifest::{Artifact, ArtifactKind, sha256_bytes};
        let dir = slots.stage(name).expect("stage");
        fs::write(dir.join("encoder.onnx"), content).expect("write");
        let m = Manifest {
            format_version: edgeclr_artifact::manifest::FORMAT_VERSION,
            producer: "test".into(),
            encoder: serde_json::json!({"architecture": "resnet8"}),
            output_dim: 4,
            input: edgeclr_artifact::manifest::InputSpec {
                size: 8,
                layout: "NCHW".into(),
                normalize: edgeclr_artifact::normalize::Normalize::CIFAR10,
            },
            artifacts: vec![Artifact {
                file: "encoder.onnx".into(),
                kind: ArtifactKind::OnnxFp32,
                sha256: sha256_bytes(content),
                bytes: content.len() as u64,
            }],
            quantization: None,
            drift: Default::default(),
            source: edgeclr_artifact::manifest::Source {
                run: "test".into(),
                weights_sha256: String::new(),
                model_version: String::new(),
            },
            recipe: None,
        };
        let mut m = m;
        m.source.model_version = name.into();
        m.save(&dir).expect("manifest");
        slots.commit(name).expect("commit");
    }

    #[test]
    fn promote_rollback_and_prune_move_the_pointers() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let slots = Slots::open(tmp.path()).expect("open");
        assert!(slots.loadable().is_none());
        fake_slot(&slots, "a", b"model a");
        slots.promote("a").expect("promote");
        assert_eq!(
            (slots.current_name().as_deref(), slots.previous_name()),
            (Some("a"), None)
        );
        fake_slot(&slots, "b", b"model b");
        // Committed but not promoted: still running a.
        assert_eq!(slots.loadable().map(|(n, _)| n).as_deref(), Some("a"));
        slots.promote("b").expect("promote");
        assert_eq!(slots.current_name().as_deref(), Some("b"));
        assert_eq!(slots.previous_name().as_deref(), Some("a"));
        assert_eq!(
            slots.rollback().expect("rollback"),
            ("b".into(), "a".into())
        );
        assert_eq!(slots.current_name().as_deref(), Some("a"));
        assert_eq!(slots.previous_name().as_deref(), Some("b"));
        fake_slot(&slots, "c", b"model c");
        fake_slot(&slots, "d", b"model d");
        slots.prune(0);
        let mut left = slots.list();
        left.sort();
        assert_eq!(left, ["a", "b"], "only the pointed-to slots survive");
    }

    #[test]
    fn a_corrupted_current_falls_back_and_staging_is_cleaned() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let slots = Slots::open(tmp.path()).expect("open");
        fake_slot(&slots, "a", b"model a");
        slots.promote("a").expect("promote");
        fake_slot(&slots, "b", b"model b");
        slots.promote("b").expect("promote");
        // Bit rot in the current model: loading falls back to previous and re-points current.
        fs::write(slots.dir("b").join("encoder.onnx"), b"model B").expect("corrupt");
        let (name, _) = slots.loadable().expect("a loadable slot");
        assert_eq!(name, "a");
        assert_eq!(slots.current_name().as_deref(), Some("a"));
        // A staging folder from an interrupted write disappears on the next open.
        let staged = slots.stage("half").expect("stage");
        fs::write(staged.join("encoder.onnx"), b"partial").expect("write");
        let slots = Slots::open(tmp.path()).expect("reopen");
        assert!(!staged.exists());
        assert!(!slots.list().iter().any(|n| n.contains("half")));
        // Rolling back to a slot that no longer verifies is refused and moves nothing.
        slots.promote("a").expect("promote");
        assert_eq!(slots.previous_name().as_deref(), Some("a"));
        fs::write(slots.dir("b").join("encoder.onnx"), b"model b").expect("repair");
        slots.promote("b").expect("promote b");
        slots.promote("a").expect("promote a");
        fs::write(slots.dir("b").join("encoder.onnx"), b"gone bad").expect("corrupt");
        let err = slots.rollback().expect_err("b does not verify");
        assert!(err.contains("does not verify"), "{err}");
        assert_eq!(slots.current_name().as_deref(), Some("a"));
    }
}
