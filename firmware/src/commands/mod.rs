//! One module per `edgeclr-device` command, each owning its arguments; `main.rs` only parses
//! and dispatches.

pub mod bench;
pub mod finetune_bench;
pub mod health;
pub mod info;
pub mod profile;
pub mod release;
pub mod rollback;
pub mod run;
pub mod selftest;

use std::path::{Path, PathBuf};

use crate::config::ArtifactChoice;

/// The file `--model` names for `artifact`: the int8 file inside a folder, else as given.
pub(crate) fn model_path(model: &Path, artifact: ArtifactChoice) -> PathBuf {
    match artifact {
        ArtifactChoice::Int8 if model.is_dir() => model.join(artifact.kind().file_name()),
        _ => model.to_path_buf(),
    }
}
