//! Crash-safe files and pointers: atomic writes (temp file, fsync, rename, fsync of the
//! folder) and symlink pointers switched by rename. A power cut leaves the old state or the
//! new one, never a torn file or a dangling `current`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::ArtifactError;

/// Writes `bytes` to `path` atomically: temp file in the same folder, fsync, rename, fsync
/// of the folder. Readers see the old file or the new one, never a torn one.
///
/// # Errors
/// [`ArtifactError::Io`] naming the path.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ArtifactError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(ArtifactError::io(dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        fsync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(ArtifactError::io(path))
}

/// fsyncs the folder `dir`, so renames and new entries in it survive a power cut.
///
/// # Errors
/// The I/O error.
pub fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Points the symlink `link` at `target` atomically: a temporary link in the same folder is
/// renamed over it, then the folder is fsynced. Readers see the old target or the new one.
/// The temporary name is `.<name>.tmp-<pid>`; leftovers of a crash can be deleted by that
/// pattern.
///
/// # Errors
/// The I/O error, naming the link.
pub fn replace_symlink(link: &Path, target: &Path) -> std::io::Result<()> {
    let dir = link
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = link
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let named =
        |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", link.display()));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).map_err(named)?;
    fs::rename(&tmp, link).map_err(named)?;
    fsync_dir(dir).map_err(named)
}

/// Named versions under `ROOT/<folder>/<entry>/` and symlink pointers to them
/// (`ROOT/current -> <folder>/<entry>`, `ROOT/previous`, …), switched with
/// [`replace_symlink`]: the model slots of the board's state directory and the releases of an
/// install root. Folders whose names start with `.` are work in progress and never entries.
#[derive(Debug, Clone)]
pub struct Pointers {
    root: PathBuf,
    folder: &'static str,
}

impl Pointers {
    /// Entries in `root/folder`.
    pub fn new(root: &Path, folder: &'static str) -> Self {
        Self {
            root: root.to_path_buf(),
            folder,
        }
    }

    /// The root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `root/folder`.
    pub fn folder(&self) -> PathBuf {
        self.root.join(self.folder)
    }

    /// The folder of `entry`.
    pub fn dir(&self, entry: &str) -> PathBuf {
        self.folder().join(entry)
    }

    /// The entry `pointer` names, if the link exists.
    pub fn get(&self, pointer: &str) -> Option<String> {
        fs::read_link(self.root.join(pointer))
            .ok()
            .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
    }

    /// Points `pointer` at `entry` atomically.
    ///
    /// # Errors
    /// The I/O error, naming the link.
    pub fn set(&self, pointer: &str, entry: &str) -> std::io::Result<()> {
        replace_symlink(
            &self.root.join(pointer),
            &Path::new(self.folder).join(entry),
        )
    }

    /// Makes `entry` current; the old current (if another) becomes `previous` first, so every
    /// intermediate state names complete entries.
    ///
    /// # Errors
    /// The I/O error, naming the link.
    pub fn promote(&self, entry: &str) -> std::io::Result<()> {
        if let Some(old) = self.get("current").filter(|old| old != entry) {
            self.set("previous", &old)?;
        }
        self.set("current", entry)
    }

    /// Entry names, newest (folder modification time) first.
    pub fn newest_first(&self) -> Vec<String> {
        let mut all: Vec<(std::time::SystemTime, String)> = fs::read_dir(self.folder())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter_map(|e| {
                let t = e.metadata().and_then(|m| m.modified()).ok()?;
                Some((t, e.file_name().to_string_lossy().into_owned()))
            })
            .collect();
        all.sort_by(|a, b| b.cmp(a));
        all.into_iter().map(|(_, n)| n).collect()
    }
}
