//! # edgeclr-runtime — running an exported encoder
//!
//! The board's inference path and `edgeclr embed`'s: open an export folder through its
//! manifest (checksums verified, input size from the contract), run the ONNX/NNEF file with
//! tract ([`tract`], one state per core), behind the [`embed::Embedder`] seam; keep tract's
//! crashing Intel AMX kernels out of the process ([`isa`]); and judge an embedding space
//! without labels ([`health`], [`rank`], [`discrimination`]) before a fine-tuned model may replace the running one; and
//! set glibc's malloc up so that per-op tensors and training buffers are reused rather than
//! faulted in afresh ([`allocator`], called first thing by both binaries).
//! No learning framework is linked: `edgeclr-learn` depends on this crate for its parity
//! checks, never the reverse.

pub mod allocator;
pub mod backend;
pub mod discrimination;
pub mod embed;
pub mod health;
pub mod isa;
#[cfg(feature = "onnxruntime")]
pub mod onnxruntime;
pub mod profile;
pub mod rank;
pub mod tract;

pub use backend::{Backend, OrtSettings, Provider};
pub use embed::{EmbedError, Embedder, Opened, Preprocess, open, open_on};
pub use profile::{OpTime, Profile};
pub use tract::{ModelFormat, TractEmbedder, TractModel};
