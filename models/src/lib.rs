//! # edgeclr-models — the SimCLR learning core
//!
//! Everything the host trainer and the board share: seeded augmentations
//! ([`augment`]), ResNet encoders ([`encoder`]), projection heads ([`head`]),
//! contrastive losses ([`loss`]), LARS and learning-rate schedules ([`optim`]),
//! the assembled model and its train step ([`simclr`]), atomic checkpoints
//! ([`checkpoint`]), the one place a burn backend is chosen ([`device`]), export to
//! ONNX/NNEF with int8 quantisation ([`export`]) and tract inference of the exported files
//! ([`embed`]).
//!
//! The recipe follows Chen et al., *A Simple Framework for Contrastive Learning of
//! Visual Representations* (ICML 2020, <https://arxiv.org/abs/2002.05709>).
//! burn 0.22 has no backend type parameter: every module takes a runtime
//! [`burn::tensor::Device`].

pub mod augment;
pub mod boards;
pub mod bundle;
pub mod checkpoint;
pub mod config;
pub mod device;
pub mod embed;
pub mod encoder;
pub mod error;
pub mod export;
pub mod head;
pub mod health;
pub mod image;
pub mod loss;
pub mod npy;
pub mod optim;
pub mod simclr;

pub use config::SimclrConfig;
pub use error::ModelError;
pub use image::RgbImage;
pub use simclr::{Simclr, SimclrTrainer};

/// The device unit tests run on: burn's pure-Rust CPU backend (flex), with autodiff.
#[cfg(test)]
pub(crate) fn test_device() -> burn::tensor::Device {
    burn::tensor::Device::flex().autodiff()
}
