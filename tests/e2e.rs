//! End-to-end tests of the `edgeclr` and `edgeclr-device` binaries.

#[path = "e2e/pretrain.rs"]
mod pretrain;
