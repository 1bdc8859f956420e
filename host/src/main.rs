//! `edgeclr` — SimCLR on the training host: pretraining, evaluation, ablations, export
//! and quantisation for the board, embedding with the board's runtime, releases. The work is
//! in the `edgeclr_host` library; this parses the command line, sets up logging and reports
//! errors.

use std::process::ExitCode;

use clap::Parser;
use edgeclr_host::cli::Cli;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // Before any thread starts: a training step frees and reallocates hundreds of megabytes
    // of tensor buffers, which glibc's malloc as it comes returns to the kernel and faults
    // back in every step (docs/backends.md, "Allocator").
    if let Err(e) = edgeclr_host::allocator::keep_freed_memory() {
        eprintln!("warning: {e}; training steps will fault their buffers in afresh");
    }
    let cli = Cli::parse();
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
    match edgeclr_host::run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", edgeclr_artifact::describe(e.as_ref()));
            // A device this machine or build does not have is a usage error, as clap's are.
            let unavailable = e.chain().any(|c| {
                matches!(
                    c.downcast_ref::<edgeclr_learn::error::ModelError>(),
                    Some(edgeclr_learn::error::ModelError::DeviceUnavailable { .. })
                )
            });
            if unavailable {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
