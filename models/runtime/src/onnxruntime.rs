//! [`OrtEmbedder`]: exported ONNX files run by onnxruntime through the `ort` crate, with the
//! library dlopen()ed at run time from what the user installed (a PyPI wheel's
//! `onnxruntime/capi/`, a distro package, NVIDIA's Jetson build). Nothing is linked or
//! downloaded at build time, and a board without the library still runs on tract.
//!
//! The library is loaded once per process ([`library`]); every `ort` call comes after a
//! successful load, so a missing library is an error and never reaches `ort`'s own panics.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ort::environment::Environment;
use ort::ep;
use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::value::TensorRef;

use crate::backend::{Backend, OrtSettings, Provider};
use crate::embed::{EmbedError, Embedder};
use crate::tract::load_error;

/// The onnxruntime library this process loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Library {
    /// The file loaded.
    pub path: PathBuf,
    /// Its `major.minor.patch` version.
    pub version: String,
}

/// The loaded library and the one environment `ort` allows per process.
static LOADED: Mutex<Option<(Library, Environment)>> = Mutex::new(None);

/// The file to load: `configured` (a file, or a folder holding `libonnxruntime.so*`: the
/// fullest version name wins), else `ORT_DYLIB_PATH`, else the bare name (`ort` looks beside
/// the executable, then the dynamic linker searches its path).
fn resolve(configured: Option<&Path>) -> PathBuf {
    let given = configured.map(Path::to_path_buf).or_else(|| {
        std::env::var_os("ORT_DYLIB_PATH")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    match given {
        Some(dir) if dir.is_dir() => std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("libonnxruntime.so"))
            })
            .max_by_key(|p| p.as_os_str().len())
            .unwrap_or_else(|| dir.join("libonnxruntime.so")),
        Some(file) => file,
        None => PathBuf::from("libonnxruntime.so"),
    }
}

fn library_error(path: &Path, why: impl std::fmt::Display) -> EmbedError {
    EmbedError::Load {
        path: path.to_path_buf(),
        reason: format!(
            "cannot load onnxruntime ({why}); install it (`pip install onnxruntime`, a distro \
             package, or JetPack's onnxruntime-gpu) and point ORT_DYLIB_PATH or the profile's \
             [runtime.onnxruntime] library at libonnxruntime.so or the folder holding it \
             (a wheel's onnxruntime/capi/), or run with tract"
        ),
    }
}

/// Loads onnxruntime once for the process (later calls return the first library loaded).
///
/// # Errors
/// [`EmbedError::Load`] naming the path tried when it is missing, not onnxruntime, or older
/// than 1.17.
pub fn library(configured: Option<&Path>) -> Result<Library, EmbedError> {
    let mut loaded = LOADED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((lib, _)) = loaded.as_ref() {
        return Ok(lib.clone());
    }
    let path = resolve(configured);
    // `ort` resolves a relative name against the executable's folder with `expect`: make
    // sure that cannot fail first (and make relative paths absolute ourselves).
    let path = if path.components().count() > 1 {
        std::path::absolute(&path).map_err(|e| library_error(&path, e))?
    } else {
        std::env::current_exe().map_err(|e| library_error(&path, e))?;
        path
    };
    let env = ort::init_from(&path)
        .map_err(|e| library_error(&path, e))?
        .with_name("edgeclr")
        .build()
        .map_err(|e| library_error(&path, e))?;
    let version = version_of(&path);
    let lib = Library { path, version };
    *loaded = Some((lib.clone(), env));
    Ok(lib)
}

/// The library's version: from its file name (`libonnxruntime.so.1.23.2`), else from the
/// build string's release branch (`git-branch=rel-1.19.0`), else `unknown`.
fn version_of(path: &Path) -> String {
    let from_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split_once(".so."))
        .map(|(_, v)| v.to_string());
    from_name
        .or_else(|| {
            ort::info()
                .split(',')
                .find_map(|kv| kv.trim().strip_prefix("git-branch=rel-"))
                .map(str::to_string)
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The process's environment (after [`library`] succeeded).
fn environment() -> Result<Environment, EmbedError> {
    LOADED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .as_ref()
        .map(|(_, env)| env.clone())
        .ok_or_else(|| EmbedError::Run("onnxruntime is not loaded".into()))
}

/// An exported ONNX encoder run by onnxruntime, batch 1, one session per embedder.
pub struct OrtEmbedder {
    session: Session,
    bytes: Arc<[u8]>,
    input: String,
    size: usize,
    dim: usize,
    settings: OrtSettings,
    source: PathBuf,
}

impl std::fmt::Debug for OrtEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrtEmbedder")
            .field("source", &self.source)
            .field("size", &self.size)
            .field("dim", &self.dim)
            .finish_non_exhaustive()
    }
}

/// The providers of `wanted` this library was built with, in order (CPU always usable).
pub fn usable_providers(wanted: &[Provider]) -> Vec<Provider> {
    use ort::ep::ExecutionProvider;
    wanted
        .iter()
        .copied()
        .filter(|p| match p {
            Provider::Cpu => true,
            Provider::Cuda => ep::CUDA::is_available().unwrap_or(false),
            Provider::Tensorrt => ep::TensorRT::is_available().unwrap_or(false),
        })
        .collect()
}

/// Registers the usable providers; one that the library has but cannot start (no GPU
/// memory, a missing CUDA library) fails the session rather than falling back unseen.
fn with_providers(
    b: SessionBuilder,
    providers: &[Provider],
    cache: Option<&Path>,
) -> ort::Result<SessionBuilder> {
    let eps: Vec<ep::ExecutionProviderDispatch> = usable_providers(providers)
        .into_iter()
        .map(|p| match p {
            Provider::Cpu => ep::CPU::default().build(),
            Provider::Cuda => ep::CUDA::default().build().error_on_failure(),
            Provider::Tensorrt => {
                let trt = ep::TensorRT::default().with_engine_cache(true);
                let trt = match cache {
                    Some(dir) => trt.with_engine_cache_path(dir.display()),
                    None => trt,
                };
                trt.build().error_on_failure()
            }
        })
        .collect();
    Ok(b.with_execution_providers(eps)?)
}

/// A session on `bytes` with `settings`: all graph optimisations, sequential execution,
/// `threads` intra-op threads that never spin (the board shares its cores with the camera,
/// the fine-tuner and the other workers). TensorRT caches its engines in `cache`.
fn session(
    env: &Environment,
    bytes: &[u8],
    settings: &OrtSettings,
    cache: Option<&Path>,
) -> ort::Result<Session> {
    let b = Session::builder(env)?
        .with_optimization_level(GraphOptimizationLevel::All)?
        .with_intra_threads(settings.threads.max(1))?
        .with_inter_threads(1)?
        .with_parallel_execution(false)?
        .with_intra_op_spinning(false)?;
    with_providers(b, &settings.providers, cache)?.commit_from_memory(bytes)
}

impl OrtEmbedder {
    /// Loads the ONNX file `path` for a `size`×`size` input.
    ///
    /// # Errors
    /// [`EmbedError::Load`] when the library cannot be loaded, the file is missing or not
    /// ONNX (NNEF is tract's), or the model does not run on `[1, 3, size, size]`.
    pub fn load(path: &Path, size: usize, settings: &OrtSettings) -> Result<Self, EmbedError> {
        library(settings.library.as_deref())?;
        let bytes: Arc<[u8]> = std::fs::read(path)
            .map_err(|e| load_error(path, format!("cannot read: {e}")))?
            .into();
        if crate::tract::ModelFormat::sniff(&bytes) == crate::tract::ModelFormat::Nnef {
            return Err(load_error(
                path,
                "an NNEF archive; onnxruntime runs the .onnx files",
            ));
        }
        let session = session(&environment()?, &bytes, settings, path.parent()).map_err(|e| {
            load_error(
                path,
                format!(
                    "onnxruntime cannot run this model ({e}); export it again, or run it with tract"
                ),
            )
        })?;
        if session.outputs().is_empty() {
            return Err(load_error(
                path,
                "the model has no output; is it an edgeclr encoder?",
            ));
        }
        let input = session
            .inputs()
            .first()
            .map(|i| i.name().to_string())
            .ok_or_else(|| load_error(path, "the model has no input; is it an edgeclr encoder?"))?;
        let mut e = Self {
            session,
            bytes,
            input,
            size,
            dim: 0,
            settings: settings.clone(),
            source: path.to_path_buf(),
        };
        // One probe run fixes the output dimension and proves the graph runs at this size.
        e.dim = e
            .run(&vec![0.0; 3 * size * size])
            .map_err(|err| {
                load_error(
                    path,
                    format!("the model does not run on a [1, 3, {size}, {size}] input: {err}"),
                )
            })?
            .len();
        if e.dim == 0 {
            return Err(load_error(
                path,
                "the model has no output; is it an edgeclr encoder?",
            ));
        }
        Ok(e)
    }

    /// A second session on the same bytes (one per worker thread).
    ///
    /// # Errors
    /// [`EmbedError::Run`] when onnxruntime cannot create it.
    pub fn fork(&self) -> Result<Self, EmbedError> {
        let session = session(
            &environment()?,
            &self.bytes,
            &self.settings,
            self.source.parent(),
        )
        .map_err(|e| EmbedError::Run(e.to_string()))?;
        Ok(Self {
            session,
            bytes: self.bytes.clone(),
            input: self.input.clone(),
            size: self.size,
            dim: self.dim,
            settings: self.settings.clone(),
            source: self.source.clone(),
        })
    }

    /// The file this embedder was loaded from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    fn run(&mut self, chw: &[f32]) -> Result<Vec<f32>, EmbedError> {
        let expected = 3 * self.size * self.size;
        if chw.len() != expected {
            return Err(EmbedError::InputSize {
                got: chw.len(),
                size: self.size,
                expected,
            });
        }
        let run = |e: ort::Error| EmbedError::Run(e.to_string());
        let x =
            TensorRef::from_array_view(([1usize, 3, self.size, self.size], chw)).map_err(run)?;
        let outputs = self
            .session
            .run(ort::inputs![self.input.as_str() => x])
            .map_err(run)?;
        let (_, values) = outputs[0].try_extract_tensor::<f32>().map_err(run)?;
        Ok(values.to_vec())
    }
}

impl Embedder for OrtEmbedder {
    fn input_size(&self) -> usize {
        self.size
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn embed(&mut self, chw: &[f32]) -> Result<Vec<f32>, EmbedError> {
        self.run(chw)
    }

    fn backend(&self) -> Backend {
        Backend::Onnxruntime
    }

    fn fork_boxed(&self) -> Result<Box<dyn Embedder>, EmbedError> {
        Ok(Box::new(self.fork()?))
    }
}
