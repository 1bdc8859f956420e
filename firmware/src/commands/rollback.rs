//! `edgeclr-device rollback`: make the previous model slot current again.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::slots::Slots;

/// `edgeclr-device rollback`.
#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    /// State directory of the device (`--state` of `run`).
    #[arg(long)]
    pub state: PathBuf,
}

/// Swaps `current` and `previous` in the state directory.
///
/// # Errors
/// When the state directory has no previous slot.
pub fn run(args: &RollbackArgs) -> Result<()> {
    let slots = Slots::open(&args.state)
        .with_context(|| format!("opening --state {}", args.state.display()))?;
    let (from, to) = slots.rollback().map_err(anyhow::Error::msg)?;
    println!("rolled back: {from} -> {to} (a running edgeclr-device switches at its next refresh)");
    Ok(())
}
