//! `manifest.json`: what an export folder holds and what it promises — the encoder, the
//! input contract (size, layout, normalisation), every file with its sha256, the
//! quantisation recipe and the drift measured at export time, and the source run.
//! Loaders verify the checksum of the file they run and take the input size from here.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ArtifactError;
use crate::atomic::write_atomic;
use crate::normalize::Normalize;
use crate::quant::QuantConfig;

/// File name of the manifest inside an export folder.
pub const MANIFEST: &str = "manifest.json";
/// Version of the manifest layout.
pub const FORMAT_VERSION: u32 = 1;

/// What an exported file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArtifactKind {
    /// fp32 ONNX, input `[1, 3, P, P]`.
    OnnxFp32,
    /// fp32 ONNX, input `[N, 3, P, P]` (symbolic batch).
    OnnxFp32Batched,
    /// fp32 NNEF tar (symbolic batch) for tract-nnef.
    NnefFp32,
    /// int8 ONNX with QLinearConv: the form tract runs on int8 kernels.
    OnnxInt8Qlinear,
    /// int8 ONNX in QDQ form, for other runtimes (onnxruntime, TensorRT).
    OnnxInt8Qdq,
    /// burn weights of the encoder (burnpack): where on-device fine-tuning starts.
    BurnEncoder,
    /// burn weights of the projection head, kept for on-device fine-tuning.
    BurnHead,
}

impl ArtifactKind {
    /// The batch-1 encoder files an export may hold, each runnable by an embedder.
    pub const ENCODERS: [ArtifactKind; 4] = [
        Self::OnnxFp32,
        Self::NnefFp32,
        Self::OnnxInt8Qlinear,
        Self::OnnxInt8Qdq,
    ];

    /// The file name an export writes for this kind.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::OnnxFp32 => "encoder.onnx",
            Self::OnnxFp32Batched => "encoder.batched.onnx",
            Self::NnefFp32 => "encoder.nnef.tar",
            Self::OnnxInt8Qlinear => "encoder.int8.onnx",
            Self::OnnxInt8Qdq => "encoder.int8.qdq.onnx",
            Self::BurnEncoder => "encoder.bpk",
            Self::BurnHead => "head.bpk",
        }
    }

    /// Whether the weights are int8.
    pub fn is_int8(self) -> bool {
        matches!(self, Self::OnnxInt8Qlinear | Self::OnnxInt8Qdq)
    }
}

/// One exported file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// File name, relative to the manifest.
    pub file: String,
    /// What it is.
    pub kind: ArtifactKind,
    /// Lower-case hex sha256 of the file.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
}

impl Artifact {
    /// Writes `bytes` atomically as `kind`'s file in `dir` and returns its entry.
    ///
    /// # Errors
    /// [`ArtifactError::Io`] naming the file.
    pub fn write(dir: &Path, kind: ArtifactKind, bytes: &[u8]) -> Result<Self, ArtifactError> {
        let path = dir.join(kind.file_name());
        write_atomic(&path, bytes)?;
        Ok(Self {
            file: kind.file_name().into(),
            kind,
            sha256: sha256_bytes(bytes),
            bytes: bytes.len() as u64,
        })
    }

    /// The entry of `kind`'s file already in `dir`.
    ///
    /// # Errors
    /// [`ArtifactError::Io`] when it cannot be read.
    pub fn of_file(dir: &Path, kind: ArtifactKind) -> Result<Self, ArtifactError> {
        let path = dir.join(kind.file_name());
        let bytes = std::fs::read(&path).map_err(|source| ArtifactError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(Self {
            file: kind.file_name().into(),
            kind,
            sha256: sha256_bytes(&bytes),
            bytes: bytes.len() as u64,
        })
    }
}

/// The input contract: what a frame must become before it reaches the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Side of the square input in pixels.
    pub size: usize,
    /// Memory layout (always `NCHW`, RGB channel order).
    pub layout: String,
    /// Pixels scaled to [0, 1], then `(x − mean) / std` per channel.
    pub normalize: Normalize,
}

/// Agreement of one model's embeddings with a reference's on the same images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agreement {
    /// What was compared against what (`tract fp32 ONNX vs burn`).
    pub compared: String,
    /// Number of images.
    pub images: usize,
    /// Smallest per-image cosine similarity.
    pub min_cosine: f64,
    /// Mean per-image cosine similarity.
    pub mean_cosine: f64,
    /// Largest absolute difference of any component.
    pub max_abs_error: f64,
}

impl Agreement {
    /// Compares `model` embeddings with `reference` embeddings, row by row.
    pub fn measure(
        compared: impl Into<String>,
        model: &[Vec<f32>],
        reference: &[Vec<f32>],
    ) -> Self {
        assert_eq!(
            model.len(),
            reference.len(),
            "compare embeddings of the same images"
        );
        let mut min_cosine = f64::INFINITY;
        let mut sum = 0.0;
        let mut max_abs_error = 0.0f64;
        for (a, b) in model.iter().zip(reference) {
            let c = crate::similarity::cosine(a, b);
            min_cosine = min_cosine.min(c);
            sum += c;
            for (x, y) in a.iter().zip(b) {
                max_abs_error = max_abs_error.max(f64::from((x - y).abs()));
            }
        }
        Self {
            compared: compared.into(),
            images: model.len(),
            min_cosine,
            mean_cosine: sum / model.len().max(1) as f64,
            max_abs_error,
        }
    }
}

/// kNN top-1 accuracy on the exported models' own embeddings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnnDrift {
    /// Labelled dataset used.
    pub data: String,
    /// Memory-bank (train) images.
    pub bank: usize,
    /// Scored (test) images.
    pub queries: usize,
    /// Neighbours.
    pub k: usize,
    /// Top-1 % with the fp32 model.
    pub fp32: f64,
    /// Top-1 % with the int8 model.
    pub int8: f64,
}

/// Measured drift of the exported files.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drift {
    /// Agreements measured at export time.
    pub agreements: Vec<Agreement>,
    /// kNN accuracy fp32 vs int8, when labelled data was given.
    pub knn: Option<KnnDrift>,
}

/// How the int8 files were made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantInfo {
    /// Calibration method and weight granularity.
    pub config: QuantConfig,
    /// Activation encoding.
    pub activations: String,
    /// Calibration images used.
    pub calibration_images: usize,
    /// Where they came from.
    pub calibration_data: String,
    /// Activation range per calibration point.
    pub ranges: BTreeMap<String, [f32; 2]>,
}

/// Where the exported encoder came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// The pretraining run folder.
    pub run: String,
    /// sha256 of the run's `encoder.bpk`.
    pub weights_sha256: String,
    /// Model version label (the run folder name + weights hash prefix).
    pub model_version: String,
}

/// The manifest of an export folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Layout version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// `edgeclr <version>`.
    pub producer: String,
    /// Encoder architecture: the learning crate's `EncoderConfig` as JSON (this crate
    /// carries no training types; `edgeclr_learn::export::encoder_of` reads it typed).
    pub encoder: serde_json::Value,
    /// Dimension of `h`.
    pub output_dim: usize,
    /// Input contract.
    pub input: InputSpec,
    /// The files.
    pub artifacts: Vec<Artifact>,
    /// int8 recipe, when int8 files exist.
    pub quantization: Option<QuantInfo>,
    /// Measured drift.
    pub drift: Drift,
    /// Provenance.
    pub source: Source,
    /// The SimCLR recipe the burn weights belong to (encoder, head, augmentations, loss):
    /// present when the folder carries [`ArtifactKind::BurnEncoder`] for fine-tuning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The learning crate's `SimclrConfig` as JSON (`edgeclr_learn::export::recipe_of`).
    pub recipe: Option<serde_json::Value>,
}

/// Lower-case hex sha256 of a file.
///
/// # Errors
/// [`ArtifactError::Io`] when the file cannot be read.
pub fn sha256_file(path: &Path) -> Result<String, ArtifactError> {
    let io = |source| ArtifactError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Lower-case hex sha256 of bytes.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Whether `name` is one normal path component: what an export writes, and all a loader may
/// open (a manifest naming `../x` or `/etc/x` must not reach outside its folder).
fn is_plain_file_name(name: &str) -> bool {
    let mut parts = Path::new(name).components();
    matches!(
        (parts.next(), parts.next()),
        (Some(std::path::Component::Normal(_)), None)
    ) && !name.contains('/')
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl Manifest {
    /// Reads `dir/manifest.json`.
    ///
    /// # Errors
    /// [`ArtifactError::Manifest`] when it is missing or malformed.
    pub fn load(dir: &Path) -> Result<Self, ArtifactError> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(|e| ArtifactError::Manifest {
            path: path.clone(),
            reason: format!("cannot read ({e}); point at a folder written by edgeclr export"),
        })?;
        let manifest: Self = serde_json::from_str(&text).map_err(|e| ArtifactError::Manifest {
            path: path.clone(),
            reason: format!("malformed ({e}); export again with edgeclr export"),
        })?;
        if manifest.format_version != FORMAT_VERSION {
            return Err(ArtifactError::Manifest {
                path,
                reason: format!(
                    "format version {} is not {FORMAT_VERSION}; use the edgeclr release that wrote it or export again",
                    manifest.format_version
                ),
            });
        }
        if let Some(bad) = manifest
            .artifacts
            .iter()
            .find(|a| !is_plain_file_name(&a.file))
        {
            return Err(ArtifactError::Manifest {
                path,
                reason: format!(
                    "artifact file `{}` is not a plain file name inside the export folder (no `/`, `..` or absolute paths); export again",
                    bad.file
                ),
            });
        }
        Ok(manifest)
    }

    /// Writes `dir/manifest.json` atomically.
    ///
    /// # Errors
    /// [`ArtifactError::Io`] on write failure.
    pub fn save(&self, dir: &Path) -> Result<(), ArtifactError> {
        let path = dir.join(MANIFEST);
        let text = serde_json::to_string_pretty(self).expect("the manifest serialises");
        write_atomic(&path, text.as_bytes())
    }

    /// The entry for `kind`, if exported.
    pub fn artifact(&self, kind: ArtifactKind) -> Option<&Artifact> {
        self.artifacts.iter().find(|a| a.kind == kind)
    }

    /// The entry whose file name is `file`.
    pub fn artifact_named(&self, file: &str) -> Option<&Artifact> {
        self.artifacts.iter().find(|a| a.file == file)
    }

    /// Checks that `artifact` exists in `dir` with the recorded sha256; returns its path.
    ///
    /// # Errors
    /// [`ArtifactError::Io`] when missing, [`ArtifactError::Checksum`] when changed.
    pub fn verify(&self, dir: &Path, artifact: &Artifact) -> Result<PathBuf, ArtifactError> {
        let path = dir.join(&artifact.file);
        if !is_plain_file_name(&artifact.file) {
            return Err(ArtifactError::Manifest {
                path,
                reason: "not a plain file name inside the export folder".into(),
            });
        }
        let actual = sha256_file(&path)?;
        if actual != artifact.sha256 {
            return Err(ArtifactError::Checksum {
                path,
                expected: artifact.sha256.clone(),
                actual,
            });
        }
        Ok(path)
    }
}
