//! `edgeclr` — SimCLR on the training host: pretraining, evaluation, ablations, export
//! and quantisation for the board, embedding with the board's runtime.

mod ablate;
mod cli;
mod config;
mod data;
mod embed;
mod eval;
mod export;
mod plots;
mod pretrain;
mod quickstart;
mod release;
mod ssh;
mod supervised;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let default_level = match cli.verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        cli::Command::Quickstart(args) => quickstart::run(&args),
        cli::Command::Pretrain(args) => pretrain::run(args),
        cli::Command::Eval(args) => eval::run(args),
        cli::Command::Ablate(args) => ablate::run(args),
        cli::Command::Supervised(args) => supervised::run(args),
        cli::Command::Export(args) => export::run(args),
        cli::Command::Embed(args) => embed::run(args),
        cli::Command::Keygen(args) => release::keygen(&args),
        cli::Command::Bundle(args) => release::bundle(&args),
        cli::Command::Flash(args) => release::flash(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", edgeclr_artifact::describe(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}
