//! `edgeclr-device` — the on-board runtime for Raspberry Pi and Jetson: camera frames →
//! embeddings with the exported encoder (tract), to sinks, with a status screen. This file
//! only parses the command line and dispatches to `edgeclr_firmware::commands`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use edgeclr_firmware::commands::{
    bench, finetune_bench, health, info, release, rollback, run, selftest,
};
use tracing_subscriber::EnvFilter;

/// edgeclr-device: camera frames to embeddings on the board.
#[derive(Debug, Parser)]
#[command(name = "edgeclr-device", version, about)]
struct Cli {
    /// More logging (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print tract's CPU kernels, the build's features and the training backends.
    Info,
    /// Stream frames from a camera (or a recording) to embeddings.
    Run(run::RunArgs),
    /// Measure the pipeline against the bare embedder on the same frames.
    Bench(bench::BenchArgs),
    /// Make the previous model current again (a running device switches within a refresh).
    Rollback(rollback::RollbackArgs),
    /// Time fine-tuning steps and peak memory at one batch size and resolution.
    FinetuneBench(finetune_bench::FinetuneBenchArgs),
    /// Label-free health of a model (alignment, uniformity, effective rank) on a recording.
    Health(health::HealthArgs),
    /// Check this board: camera, embedder fp32/int8 latency, a fine-tuning step, display, disk,
    /// memory; writes selftest.json and JUnit XML; non-zero exit on failure.
    Selftest(selftest::SelftestArgs),
    /// Install-root operations `edgeclr flash` runs on the board (stage, switch, abandon,
    /// rollback, prune, status).
    Release(release::ReleaseArgs),
}

fn main() -> ExitCode {
    // Before any thread starts: tract allocates every op's output afresh, and fine-tuning
    // frees and reallocates its buffers every step; glibc as it comes faults them all in
    // again each time (models/runtime/src/allocator.rs).
    if let Err(e) = edgeclr_runtime::allocator::keep_freed_memory() {
        eprintln!("warning: {e}; every frame's tensors will be faulted in afresh");
    }
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        Command::Info => info::run(),
        Command::Run(args) => run::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Rollback(args) => rollback::run(&args),
        Command::FinetuneBench(args) => finetune_bench::run(&args),
        Command::Health(args) => health::run(&args),
        Command::Selftest(args) => return selftest::run(&args),
        Command::Release(args) => release::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", edgeclr_artifact::describe(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}
