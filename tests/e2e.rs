//! End-to-end tests of the `edgeclr` and `edgeclr-device` binaries.

#[path = "e2e/ablate.rs"]
mod ablate;
#[path = "e2e/adapt.rs"]
mod adapt;
#[path = "e2e/arm.rs"]
mod arm;
#[path = "e2e/bad_input.rs"]
mod bad_input;
#[path = "e2e/deb.rs"]
mod deb;
#[path = "e2e/device.rs"]
mod device;
#[path = "e2e/eval.rs"]
mod eval;
#[path = "e2e/export.rs"]
mod export;
#[path = "e2e/finetune.rs"]
mod finetune;
#[path = "e2e/flash.rs"]
mod flash;
#[path = "e2e/isa.rs"]
mod isa;
#[path = "e2e/mqtt.rs"]
mod mqtt;
#[path = "e2e/onnx_parity.rs"]
mod onnx_parity;
#[path = "e2e/onnxruntime.rs"]
mod onnxruntime;
#[path = "e2e/pretrain.rs"]
mod pretrain;
#[path = "e2e/quality.rs"]
mod quality;
#[path = "e2e/rollout.rs"]
mod rollout;
#[path = "e2e/shards.rs"]
mod shards;
#[path = "e2e/ssh.rs"]
mod ssh;
