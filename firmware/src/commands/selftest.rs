//! `edgeclr-device selftest`: the board check after every flash (checks in `crate::selftest`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use super::profile::ProfileArgs;
use crate::display::DisplaySpec;
use crate::slots::Slots;
use crate::source::SourceSpec;

/// `edgeclr-device selftest`.
#[derive(Debug, clap::Args)]
pub struct SelftestArgs {
    /// The board profile.
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// Model folder; with --state, the current slot is tested instead when one exists.
    #[arg(long)]
    pub model: PathBuf,
    /// State directory: the faster artifact is recorded there for `run`.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Frame source instead of the profile's.
    #[arg(long)]
    pub source: Option<SourceSpec>,
    /// Status screen instead of the profile's (`none` where the board has none attached).
    #[arg(long)]
    pub display: Option<DisplaySpec>,
    /// Frames to read from the source.
    #[arg(long, default_value_t = 30)]
    pub frames: u64,
    /// Folder for selftest.json and selftest.junit.xml (default: the state dir, else ".").
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Runs the checks and writes the reports; the exit code says whether all passed.
pub fn run(args: &SelftestArgs) -> ExitCode {
    let result = (|| -> Result<bool> {
        let mut cfg = args.profile.load()?;
        if let Some(s) = &args.source {
            cfg.source.spec = s.clone();
        }
        if let Some(d) = &args.display {
            cfg.display.target = d.clone();
        }
        cfg.validate().map_err(anyhow::Error::msg)?;
        let model = match &args.state {
            Some(st) => Slots::open(st)
                .ok()
                .and_then(|s| s.loadable().map(|(n, _)| s.dir(&n)))
                .unwrap_or_else(|| args.model.clone()),
            None => args.model.clone(),
        };
        let report = crate::selftest::run(&cfg, &model, args.state.as_deref(), args.frames)?;
        let out = args
            .out
            .clone()
            .or_else(|| args.state.clone())
            .unwrap_or_else(|| PathBuf::from("."));
        std::fs::create_dir_all(&out)?;
        edgeclr_artifact::atomic::write_atomic(
            &out.join("selftest.json"),
            serde_json::to_string_pretty(&report)?.as_bytes(),
        )?;
        edgeclr_artifact::atomic::write_atomic(
            &out.join("selftest.junit.xml"),
            report.junit().as_bytes(),
        )?;
        print!("{}", report.summary());
        println!("results: {}", out.join("selftest.json").display());
        Ok(report.ok)
    })();
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
