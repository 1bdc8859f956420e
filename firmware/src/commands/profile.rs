//! `--board NAME` / `--config FILE`: which board profile a command runs with.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::config::DeviceConfig;
use crate::config::overrides::{self, Override};

/// Which board profile applies: a built-in one, or a file in the same shape.
#[derive(Debug, clap::Args)]
pub struct ProfileArgs {
    /// Board profile (x86-dev, rpi4, rpi5, jetson-nano, jetson-orin-nano).
    #[arg(long, default_value = "x86-dev")]
    pub board: String,
    /// A TOML file in the board-profile shape, replacing the built-in profile.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Change one setting of the profile, repeatable: `--set finetune.trainer.lr=1e-3`
    /// (the value is TOML; a bare word is a string).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<Override>,
}

impl ProfileArgs {
    /// The profile, parsed (not yet validated).
    ///
    /// # Errors
    /// An unknown board or an unreadable or malformed file, named.
    pub fn load(&self) -> Result<DeviceConfig> {
        let (text, origin) = match &self.config {
            Some(p) => (
                std::fs::read_to_string(p)
                    .with_context(|| format!("reading --config {}", p.display()))?,
                p.display().to_string(),
            ),
            None => {
                let (_, text) =
                    edgeclr_artifact::boards::board(&self.board).map_err(anyhow::Error::msg)?;
                (text.to_string(), format!("built-in board {}", self.board))
            }
        };
        let text = overrides::apply_all(&text, &origin, &self.set).map_err(anyhow::Error::msg)?;
        DeviceConfig::parse(&text, &origin).map_err(anyhow::Error::msg)
    }
}
