//! # edgeclr-learn — the SimCLR learning core (burn)
//!
//! What the host trainer and the board's fine-tuner share: seeded augmentations
//! ([`augment`]), ResNet encoders ([`encoder`]), projection heads ([`head`]),
//! contrastive losses ([`loss`]), LARS and learning-rate schedules ([`optim`]),
//! the assembled model and its train step ([`simclr`]), resumable checkpoints
//! ([`checkpoint`]), the one place a burn backend is chosen ([`device`]), and export to
//! ONNX/NNEF with int8 quantisation ([`export`]), checked against tract through
//! `edgeclr-runtime`. What an export folder promises is `edgeclr-artifact`'s; running one
//! is `edgeclr-runtime`'s, which never links burn.
//!
//! The recipe follows Chen et al., *A Simple Framework for Contrastive Learning of
//! Visual Representations* (ICML 2020, <https://arxiv.org/abs/2002.05709>).
//! burn 0.22 has no backend type parameter: every module takes a runtime
//! [`burn::tensor::Device`].

pub mod augment;
pub mod checkpoint;
pub mod config;
pub mod device;
pub mod encoder;
pub mod error;
pub mod export;
pub mod folded;
pub mod head;
pub mod loss;
pub mod optim;
pub mod simclr;

pub use config::SimclrConfig;
pub use edgeclr_artifact::RgbImage;
pub use edgeclr_artifact::image;
pub use error::ModelError;
pub use simclr::{Simclr, SimclrTrainer};

/// The device unit tests run on: burn's pure-Rust CPU backend (flex), with autodiff.
#[cfg(test)]
pub(crate) fn test_device() -> burn::tensor::Device {
    burn::tensor::Device::flex().autodiff()
}
