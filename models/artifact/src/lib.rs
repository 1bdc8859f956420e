//! # edgeclr-artifact — the contract between training and the board
//!
//! What an export folder is and what it promises, with no learning framework and no
//! inference engine behind it: the manifest with every file's sha256 and the drift measured at
//! export ([`manifest`]), the input contract that turns a frame into the model's input
//! ([`preprocess`], on top of [`image`], [`resize`] and [`normalize`]), crash-safe writes and
//! pointer switches ([`atomic`]), the `.npy` header ([`npy`]) and the built-in board profiles
//! ([`boards`]). The host's trainer (`edgeclr-learn`), the board's runtime
//! (`edgeclr-runtime`) and the release tooling (`edgeclr-release`) all speak it.

pub mod atomic;
pub mod boards;
pub mod image;
pub mod manifest;
pub mod normalize;
pub mod npy;
pub mod preprocess;
pub mod quant;
pub mod resize;
pub mod similarity;

mod error;
#[cfg(test)]
mod fuzz;

pub use error::{ArtifactError, describe};
pub use image::RgbImage;
pub use manifest::{Artifact, ArtifactKind, Manifest};
pub use preprocess::Preprocess;
