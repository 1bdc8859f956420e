//! # edgeclr-firmware — `edgeclr-device`, the board runtime
//!
//! The board's code path, in the order a frame travels:
//!
//! 1. [`source`] — a camera (`v4l:`, cargo feature `camera`), a recording (`mjpeg:`, `folder:`)
//!    or a synthetic pattern, behind [`source::FrameSource`]; frames are owned [`frame::Frame`]s;
//! 2. [`queue`] — drop-oldest queues between the stages, so a slow stage drops (counted) and
//!    never stalls capture;
//! 3. [`pipeline`] — decode, preprocess with the export's input contract
//!    (`edgeclr_artifact::Preprocess`), embed with tract (`edgeclr_runtime`, one state per
//!    worker, hot-swappable through [`live`] when [`slots`] moves `current`);
//! 4. [`sink`] — JSON lines, `.npy`, UDP, TCP, each on its own thread with a bounded queue;
//! 5. [`display`] — the status screen (PNG, framebuffer, SSD1306 with feature `ssd1306`), a
//!    side consumer that never stops the stream.
//!
//! Beside it: the board profile ([`config`]), the on-device self-test ([`selftest`]), and the
//! [`learner::Learner`] seam through which the on-device fine-tuner ([`finetune`], cargo
//! feature `finetune`, the only part that links burn) learns from the stream. One module per
//! command in [`commands`]; `main.rs` only parses and dispatches.

pub mod commands;
pub mod config;
pub mod display;
pub mod error;
#[cfg(feature = "finetune")]
pub mod finetune;
pub mod frame;
pub mod learner;
pub mod live;
pub mod parity;
pub mod pipeline;
pub mod queue;
pub mod selftest;
pub mod sink;
pub mod slots;
pub mod source;
pub mod stats;
