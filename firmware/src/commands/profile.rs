//! `--board NAME` / `--config FILE`: which board profile a command runs with.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::config::DeviceConfig;

/// Which board profile applies: a built-in one, or a file in the same shape.
#[derive(Debug, clap::Args)]
pub struct ProfileArgs {
    /// Board profile (x86-dev, rpi4, rpi5, jetson-nano, jetson-orin-nano).
    #[arg(long, default_value = "x86-dev")]
    pub board: String,
    /// A TOML file in the board-profile shape, replacing the built-in profile.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

impl ProfileArgs {
    /// The profile, parsed (not yet validated).
    ///
    /// # Errors
    /// An unknown board or an unreadable or malformed file, named.
    pub fn load(&self) -> Result<DeviceConfig> {
        match &self.config {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading --config {}", p.display()))?;
                DeviceConfig::parse(&text, &p.display().to_string()).map_err(anyhow::Error::msg)
            }
            None => DeviceConfig::board(&self.board).map_err(anyhow::Error::msg),
        }
    }
}
