//! `edgeclr-device release`: the install-root operations `edgeclr flash` runs on the board.

use std::path::PathBuf;

use anyhow::{Context, Result};
use edgeclr_release::InstallRoot;
use edgeclr_release::keys::read_verifying_key;

/// `edgeclr-device release`.
#[derive(Debug, clap::Args)]
pub struct ReleaseArgs {
    /// What to do.
    #[arg(value_enum)]
    pub action: ReleaseAction,
    /// The install root (`releases/`, `current`, `previous`, `trusted.pub`).
    #[arg(long)]
    pub root: PathBuf,
    /// `stage`: the bundle tarball.
    #[arg(long)]
    pub bundle: Option<PathBuf>,
    /// `stage`: a public key the bundle must also be signed with (`ROOT/trusted.pub` always
    /// applies).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// `switch`, `abandon`, `rotate`: the release version.
    #[arg(long)]
    pub version: Option<String>,
    /// `prune`: releases to keep.
    #[arg(long, default_value_t = 3)]
    pub keep: usize,
}

/// Install-root actions.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ReleaseAction {
    /// Unpack and verify a bundle into `releases/VERSION` (current unchanged).
    Stage,
    /// Make a staged release current.
    Switch,
    /// Undo a release that failed its health check.
    Abandon,
    /// Swap current and previous.
    Rollback,
    /// Delete old releases.
    Prune,
    /// Print current and previous.
    Status,
    /// After a release passed its self-test: apply the key rotation its manifest asks for
    /// (verified again against the current key).
    Rotate,
}

/// Runs one install-root action and prints its outcome.
///
/// # Errors
/// A missing argument for the action, or the install root's error.
pub fn run(args: &ReleaseArgs) -> Result<()> {
    let root = InstallRoot::new(&args.root);
    let version = || {
        args.version
            .clone()
            .context("--version is required for this action")
    };
    match args.action {
        ReleaseAction::Stage => {
            let bundle = args
                .bundle
                .as_ref()
                .context("--bundle is required for stage")?;
            let key = args.key.as_deref().map(read_verifying_key).transpose()?;
            let staged = root.stage(bundle, key.as_ref())?;
            println!("staged {}", staged.manifest.version);
            if let Some(fp) = staged.rotates_to {
                println!("rotates the trusted key to {fp} once healthy");
            }
        }
        ReleaseAction::Switch => {
            let v = version()?;
            root.switch(&v)?;
            println!("current {v}");
        }
        ReleaseAction::Abandon => {
            let v = version()?;
            root.abandon(&v)?;
            println!(
                "abandoned {v}; current {}",
                root.current().unwrap_or_default()
            );
        }
        ReleaseAction::Rollback => {
            let (from, to) = root.rollback()?;
            println!("rolled back {from} -> {to}");
        }
        ReleaseAction::Prune => {
            for r in root.prune(args.keep) {
                println!("pruned {r}");
            }
        }
        ReleaseAction::Rotate => {
            if let Some(fp) = root.rotate(&version()?)? {
                println!("the board now trusts key {fp}");
            }
        }
        ReleaseAction::Status => println!(
            "{}",
            serde_json::json!({"current": root.current(), "previous": root.previous()})
        ),
    }
    Ok(())
}
