//! Which engine runs an exported file: tract (built in, the default) or onnxruntime (the
//! `onnxruntime` feature; the user's own `libonnxruntime.so`, loaded at run time). Both sit
//! behind [`Embedder`]; [`load`] opens a file on either, so `selftest` can time every
//! backend × precision on the board and the pipeline can run whichever won.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::embed::{EmbedError, Embedder};
use crate::tract::TractEmbedder;

/// An inference engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// tract, compiled in: always available.
    #[default]
    Tract,
    /// onnxruntime, dlopen()ed from the board's `libonnxruntime.so`.
    Onnxruntime,
}

impl Backend {
    /// Every backend, tract first.
    pub const ALL: [Self; 2] = [Self::Tract, Self::Onnxruntime];

    /// The name used in configs, `STATE/artifact` and reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tract => "tract",
            Self::Onnxruntime => "onnxruntime",
        }
    }

    /// Whether this build can run it at all (onnxruntime needs the `onnxruntime` feature).
    pub fn compiled(self) -> bool {
        match self {
            Self::Tract => true,
            Self::Onnxruntime => cfg!(feature = "onnxruntime"),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| format!("unknown backend `{s}`; use `tract` or `onnxruntime`"))
    }
}

/// An onnxruntime execution provider, tried in the order configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// onnxruntime's own CPU kernels (MLAS).
    Cpu,
    /// NVIDIA CUDA (onnxruntime-gpu, JetPack's build).
    Cuda,
    /// NVIDIA TensorRT (JetPack's build; engines cached beside the model).
    Tensorrt,
}

impl Provider {
    /// The name used in profiles and reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
            Self::Tensorrt => "tensorrt",
        }
    }
}

/// Where onnxruntime comes from and how it runs (`[runtime.onnxruntime]` on the board).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrtSettings {
    /// `libonnxruntime.so` or a folder holding it (a wheel's `onnxruntime/capi/`); unset:
    /// `ORT_DYLIB_PATH`, then the dynamic linker's search path.
    pub library: Option<PathBuf>,
    /// Intra-op threads per session; the board runs one session per embedding worker, so 1.
    pub threads: usize,
    /// Execution providers in priority order. One the library was not built with (CUDA on a
    /// CPU-only wheel) is left out, and `selftest` names the ones used; one it has but cannot
    /// start fails the session instead of falling back to the CPU unseen.
    pub providers: Vec<Provider>,
}

impl Default for OrtSettings {
    fn default() -> Self {
        Self {
            library: None,
            threads: 1,
            providers: vec![Provider::Cpu],
        }
    }
}

/// Whether `backend` can run here: its name and version (and onnxruntime's library path),
/// loading onnxruntime's library if it is not loaded yet.
///
/// # Errors
/// [`EmbedError::Load`] naming the library tried and the fix when onnxruntime is missing.
pub fn available(backend: Backend, ort: &OrtSettings) -> Result<String, EmbedError> {
    match backend {
        Backend::Tract => Ok("tract (built in)".into()),
        Backend::Onnxruntime => ort_available(ort),
    }
}

#[cfg(feature = "onnxruntime")]
fn ort_available(ort: &OrtSettings) -> Result<String, EmbedError> {
    let lib = crate::onnxruntime::library(ort.library.as_deref())?;
    let providers: Vec<&str> = crate::onnxruntime::usable_providers(&ort.providers)
        .into_iter()
        .map(Provider::name)
        .collect();
    Ok(format!(
        "onnxruntime {} on {} ({})",
        lib.version,
        providers.join(", "),
        lib.path.display()
    ))
}

#[cfg(not(feature = "onnxruntime"))]
fn ort_available(_: &OrtSettings) -> Result<String, EmbedError> {
    Err(not_compiled(Path::new("libonnxruntime.so")))
}

#[cfg(not(feature = "onnxruntime"))]
fn not_compiled(path: &Path) -> EmbedError {
    EmbedError::Load {
        path: path.to_path_buf(),
        reason: "this build has no onnxruntime backend; rebuild with the `onnxruntime` feature \
                 (on by default in edgeclr-device) or run it with tract"
            .into(),
    }
}

/// Opens `file` (ONNX, or NNEF for tract) for a `size`×`size` input on `backend`.
///
/// # Errors
/// [`EmbedError::Load`] when the file does not load, or onnxruntime is not compiled in or its
/// library cannot be loaded (the message names the library path tried and the fix).
pub fn load(
    file: &Path,
    size: usize,
    backend: Backend,
    ort: &OrtSettings,
) -> Result<Box<dyn Embedder>, EmbedError> {
    match backend {
        Backend::Tract => Ok(Box::new(TractEmbedder::load(file, size)?)),
        Backend::Onnxruntime => load_ort(file, size, ort),
    }
}

#[cfg(feature = "onnxruntime")]
fn load_ort(file: &Path, size: usize, ort: &OrtSettings) -> Result<Box<dyn Embedder>, EmbedError> {
    Ok(Box::new(crate::onnxruntime::OrtEmbedder::load(
        file, size, ort,
    )?))
}

#[cfg(not(feature = "onnxruntime"))]
fn load_ort(file: &Path, _: usize, _: &OrtSettings) -> Result<Box<dyn Embedder>, EmbedError> {
    Err(not_compiled(file))
}
