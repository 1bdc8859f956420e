//! A recording read whole, for the commands that measure on it (fine-tuning benchmarks,
//! health): every n-th frame, downscaled to training scale, with its frame id.

use anyhow::{Result, bail};
use edgeclr_artifact::RgbImage;

use super::{CaptureSettings, SourceSpec};
use crate::frame::downscale;

/// Every `every`-th frame of a recording, downscaled to training scale for `size`-px models
/// (short side `2·size`), with its frame id.
///
/// # Errors
/// When the recording cannot be opened, a frame does not decode, or it holds no frame.
pub fn recording_frames(
    spec: &SourceSpec,
    size: usize,
    every: usize,
) -> Result<Vec<(u64, RgbImage)>> {
    let mut src = super::open(spec, CaptureSettings::replay())?;
    let mut frames = Vec::new();
    while let Ok(f) = src.next_frame() {
        if (f.id as usize).is_multiple_of(every.max(1)) {
            frames.push((f.id, downscale(&f.to_rgb()?, 2 * size)));
        }
    }
    if frames.is_empty() {
        bail!("{spec} has no frames");
    }
    Ok(frames)
}
