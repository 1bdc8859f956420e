//! `edgeclr-device` — the on-board runtime for Raspberry Pi and Jetson.
//!
//! This first cut reports what the board offers the learning core (backends and wgpu
//! adapters); the camera → embedding pipeline, fine-tuning and self-test follow.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use edgeclr_models::device::{DeviceChoice, adapters, select_device};
use tracing_subscriber::EnvFilter;

/// edgeclr-device: camera frames to embeddings on the board.
#[derive(Debug, Parser)]
#[command(name = "edgeclr-device", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the compute backends this board offers and which one `auto` picks.
    Info,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Command::Info => {
            for a in adapters() {
                println!(
                    "wgpu adapter: {} ({}){}",
                    a.name,
                    a.kind,
                    if a.software { " [software]" } else { "" }
                );
            }
            match select_device(DeviceChoice::Auto) {
                Ok(d) => {
                    println!("auto backend: {}", d.description);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {:#}", anyhow::Error::from(e));
                    ExitCode::FAILURE
                }
            }
        }
    }
}
