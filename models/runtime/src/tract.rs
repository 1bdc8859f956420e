//! [`TractEmbedder`]: exported models run with tract — ONNX through tract-onnx, NNEF
//! through tract-nnef — with a concrete batch-1 input fixed at load time. A concrete shape
//! lets tract plan lazy im2col convolutions, about 2× faster than a symbolic batch
//! (docs/export.md); throughput comes from one state per core ([`TractEmbedder::fork`],
//! [`TractEmbedder::embed_all`]), not from batching.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use prost::Message;
use rayon::prelude::*;
use tract_onnx::pb;
use tract_onnx::prelude::*;

use crate::backend::Backend;
use crate::embed::{EmbedError, Embedder};

/// On-disk model formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFormat {
    /// An ONNX protobuf.
    Onnx,
    /// tract's NNEF archive (tar, or gzipped tar).
    Nnef,
}

impl ModelFormat {
    /// Recognises a file by content: tar (`ustar` at byte 257) or gzip magic → NNEF,
    /// anything else is tried as ONNX.
    pub fn sniff(bytes: &[u8]) -> Self {
        let tar = bytes.get(257..262) == Some(b"ustar".as_slice());
        let gzip = bytes.starts_with(&[0x1f, 0x8b]);
        if tar || gzip { Self::Nnef } else { Self::Onnx }
    }
}

/// A tract plan with one run state: runs a model on one `[1, 3, P, P]` input and returns
/// every graph output flattened.
pub struct TractModel {
    plan: Arc<TypedRunnableModel>,
    state: TypedSimpleState,
    size: usize,
}

impl std::fmt::Debug for TractModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TractModel")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// [`EmbedError::Load`] for `path`.
pub(crate) fn load_error(path: &Path, reason: impl Into<String>) -> EmbedError {
    EmbedError::Load {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Checks an ONNX input declaration against `[N|1, 3, size, size]`.
fn check_onnx_input(path: &Path, model: &pb::ModelProto, size: usize) -> Result<(), EmbedError> {
    use pb::tensor_shape_proto::dimension::Value as Dim;
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| load_error(path, "ONNX file has no graph; is it an edgeclr export?"))?;
    let initializers: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs: Vec<&pb::ValueInfoProto> = graph
        .input
        .iter()
        .filter(|i| !initializers.contains(i.name.as_str()))
        .collect();
    let [input] = inputs.as_slice() else {
        return Err(load_error(
            path,
            format!(
                "ONNX graph has {} inputs; an image encoder has exactly one",
                inputs.len()
            ),
        ));
    };
    let dims: Vec<Option<i64>> = match input.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(pb::type_proto::Value::TensorType(t)) => t
            .shape
            .as_ref()
            .map(|s| {
                s.dim
                    .iter()
                    .map(|d| match d.value {
                        Some(Dim::DimValue(v)) => Some(v),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let want = [None, Some(3), Some(size as i64), Some(size as i64)];
    let fits = dims.len() == 4
        && dims[0].is_none_or(|n| n == 1)
        && dims[1..]
            .iter()
            .zip(&want[1..])
            .all(|(d, w)| d.is_none_or(|d| Some(d) == *w));
    if !fits {
        let shown: Vec<String> = dims
            .iter()
            .map(|d| d.map_or("?".to_string(), |v| v.to_string()))
            .collect();
        return Err(load_error(
            path,
            format!(
                "model input `{}` is [{}] but the manifest says [1, 3, {size}, {size}]; export the model again with --image-size {size}, or use the manifest that came with this file",
                input.name,
                shown.join(", ")
            ),
        ));
    }
    Ok(())
}

impl TractModel {
    /// Loads ONNX or NNEF bytes (sniffed) for a `size`×`size` input. `path` only names the
    /// source in errors.
    ///
    /// # Errors
    /// [`EmbedError::Load`] for a truncated or foreign file or an input shape other than
    /// `[1|N, 3, size, size]`.
    pub fn load_bytes(bytes: &[u8], size: usize, path: &Path) -> Result<Self, EmbedError> {
        crate::isa::apply();
        let model = match ModelFormat::sniff(bytes) {
            ModelFormat::Onnx => {
                let proto = pb::ModelProto::decode(bytes).map_err(|e| {
                    load_error(path, format!("not an ONNX or NNEF model ({e}); the file may be truncated — export it again"))
                })?;
                check_onnx_input(path, &proto, size)?;
                let mut model = tract_onnx::onnx()
                    .with_ignore_output_shapes(true)
                    .with_ignore_value_info(true)
                    .model_for_proto_model(&proto)
                    .map_err(|e| {
                        load_error(path, format!("tract cannot load this ONNX graph: {e:#}"))
                    })?;
                model
                    .set_input_fact(0, f32::fact([1, 3, size, size]).into())
                    .map_err(|e| load_error(path, format!("{e:#}")))?;
                model.into_typed().map_err(|e| {
                    load_error(path, format!("tract cannot type this ONNX graph: {e:#}"))
                })?
            }
            ModelFormat::Nnef => {
                let model = tract_nnef::nnef()
                    .with_onnx()
                    .model_for_read(&mut &bytes[..])
                    .map_err(|e| load_error(path, format!("not a readable NNEF archive ({e:#}); the file may be truncated — export it again")))?;
                let shape: Vec<TDim> = model
                    .input_fact(0)
                    .map_err(|e| load_error(path, format!("{e:#}")))?
                    .shape
                    .iter()
                    .cloned()
                    .collect();
                let mut subs = HashMap::new();
                if let Some(TDim::Sym(n)) = shape.first() {
                    subs.insert(n.clone(), TDim::Val(1));
                }
                let concrete: Vec<Option<i64>> = shape.iter().skip(1).map(TDim::as_i64).collect();
                let want = [Some(3), Some(size as i64), Some(size as i64)];
                if shape.len() != 4 || concrete != want {
                    return Err(load_error(
                        path,
                        format!(
                            "model input is {shape:?} but the manifest says [1, 3, {size}, {size}]; export the model again with --image-size {size}"
                        ),
                    ));
                }
                model
                    .set_symbols(&subs)
                    .map_err(|e| load_error(path, format!("{e:#}")))?
            }
        };
        let plan = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(|e| load_error(path, format!("tract cannot optimise this graph: {e:#}")))?;
        let state = plan
            .spawn()
            .map_err(|e| load_error(path, format!("{e:#}")))?;
        Ok(Self { plan, state, size })
    }

    /// Loads ONNX bytes built in memory.
    ///
    /// # Errors
    /// As [`TractModel::load_bytes`].
    pub fn from_onnx(bytes: &[u8], size: usize) -> Result<Self, EmbedError> {
        Self::load_bytes(bytes, size, Path::new("<memory>"))
    }

    /// A second run state on the same optimised plan (cheap; one per thread).
    ///
    /// # Errors
    /// [`EmbedError::Run`] if tract cannot create the state.
    pub fn fork(&self) -> Result<Self, EmbedError> {
        Ok(Self {
            plan: self.plan.clone(),
            state: self
                .plan
                .spawn()
                .map_err(|e| EmbedError::Run(format!("{e:#}")))?,
            size: self.size,
        })
    }

    /// Side of the input.
    pub fn size(&self) -> usize {
        self.size
    }

    /// `chw` as the plan's `[1, 3, P, P]` input.
    ///
    /// # Errors
    /// [`EmbedError::InputSize`] when `chw` is not `3·P·P` long.
    pub(crate) fn input_tensor(&self, chw: &[f32]) -> Result<Tensor, EmbedError> {
        let expected = 3 * self.size * self.size;
        if chw.len() != expected {
            return Err(EmbedError::InputSize {
                got: chw.len(),
                size: self.size,
                expected,
            });
        }
        Tensor::from_shape(&[1, 3, self.size, self.size], chw)
            .map_err(|e| EmbedError::Run(format!("{e:#}")))
    }

    /// The optimised plan.
    pub(crate) fn plan(&self) -> &TypedRunnableModel {
        &self.plan
    }

    /// The run state (for [`TractModel::profile`]'s instrumented runs).
    pub(crate) fn state_mut(&mut self) -> &mut TypedSimpleState {
        &mut self.state
    }

    /// Runs one image; returns every output flattened, in graph order.
    ///
    /// # Errors
    /// [`EmbedError::InputSize`] or [`EmbedError::Run`].
    pub fn run(&mut self, chw: &[f32]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let input = self.input_tensor(chw)?;
        let outputs = self
            .state
            .run(tvec!(input.into_tvalue()))
            .map_err(|e| EmbedError::Run(format!("{e:#}")))?;
        outputs
            .iter()
            .map(|o| {
                o.to_plain_array_view::<f32>()
                    .map(|v| v.iter().copied().collect())
                    .map_err(|e| EmbedError::Run(format!("{e:#}")))
            })
            .collect()
    }
}

/// An exported encoder (fp32 or int8, ONNX or NNEF) run by tract, batch 1.
#[derive(Debug)]
pub struct TractEmbedder {
    model: TractModel,
    dim: usize,
    source: PathBuf,
}

impl TractEmbedder {
    /// Loads `path` for a `size`×`size` input.
    ///
    /// # Errors
    /// [`EmbedError::Load`] when the file is missing, truncated, foreign, or its input is
    /// not `[1|N, 3, size, size]`.
    pub fn load(path: &Path, size: usize) -> Result<Self, EmbedError> {
        let bytes =
            std::fs::read(path).map_err(|e| load_error(path, format!("cannot read: {e}")))?;
        Self::from_bytes(&bytes, size, path)
    }

    /// Loads model bytes; `path` names them in errors.
    ///
    /// # Errors
    /// As [`TractEmbedder::load`].
    pub fn from_bytes(bytes: &[u8], size: usize, path: &Path) -> Result<Self, EmbedError> {
        let mut model = TractModel::load_bytes(bytes, size, path)?;
        // One probe run fixes the output dimension and proves the graph executes.
        let probe = model.run(&vec![0.0; 3 * size * size]).map_err(|e| {
            load_error(
                path,
                format!("the model does not run on a [1, 3, {size}, {size}] input: {e}"),
            )
        })?;
        let dim = probe.first().map_or(0, Vec::len);
        if dim == 0 {
            return Err(load_error(
                path,
                "the model has no output; is it an edgeclr encoder?",
            ));
        }
        Ok(Self {
            model,
            dim,
            source: path.to_path_buf(),
        })
    }

    /// A second embedder sharing the optimised plan (one per thread).
    ///
    /// # Errors
    /// [`EmbedError::Run`] if tract cannot create a state.
    pub fn fork(&self) -> Result<Self, EmbedError> {
        Ok(Self {
            model: self.model.fork()?,
            dim: self.dim,
            source: self.source.clone(),
        })
    }

    /// The file this embedder was loaded from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Embeds many images on all rayon threads, one tract state per worker; results are in
    /// input order.
    ///
    /// # Errors
    /// The first error of any image.
    pub fn embed_all(&self, images: &[Vec<f32>]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let chunk = images
            .len()
            .div_ceil(rayon::current_num_threads().max(1))
            .max(1);
        // The plan is shared (Send + Sync); run states are not, so each worker spawns its own.
        let plan = &self.model.plan;
        let size = self.model.size;
        let parts: Vec<Result<Vec<Vec<f32>>, EmbedError>> = images
            .par_chunks(chunk)
            .map(|part| {
                let state = plan
                    .spawn()
                    .map_err(|e| EmbedError::Run(format!("{e:#}")))?;
                let mut worker = TractModel {
                    plan: plan.clone(),
                    state,
                    size,
                };
                part.iter()
                    .map(|x| worker.run(x).map(|mut o| o.swap_remove(0)))
                    .collect()
            })
            .collect();
        let mut out = Vec::with_capacity(images.len());
        for p in parts {
            out.extend(p?);
        }
        Ok(out)
    }
}

impl Embedder for TractEmbedder {
    fn input_size(&self) -> usize {
        self.model.size
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn embed(&mut self, chw: &[f32]) -> Result<Vec<f32>, EmbedError> {
        let mut outputs = self.model.run(chw)?;
        Ok(outputs.swap_remove(0))
    }

    fn backend(&self) -> Backend {
        Backend::Tract
    }

    fn fork_boxed(&self) -> Result<Box<dyn Embedder>, EmbedError> {
        Ok(Box::new(self.fork()?))
    }
}
