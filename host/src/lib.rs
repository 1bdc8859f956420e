//! # edgeclr-host — SimCLR on the training host
//!
//! The `edgeclr` binary is [`cli::Cli`] parsed and handed to [`run`]; everything it does is
//! here, one module per command, each owning its arguments and its `run` function, so a
//! command can be called with a typed configuration (as [`quickstart`] does) instead of an
//! argv: [`pretrain`] (SimCLR pretraining), [`eval`] (kNN, linear probe, fine-tuning against
//! a random-init floor), [`ablate`], [`supervised`], [`export`] (ONNX/NNEF, int8, drift),
//! [`embed`], [`shard`] (tar shards for data bigger than RAM), and [`release`] (keygen, bundle, flash over [`ssh`] or to a folder).
//! Shared pieces: [`data`] (datasets), [`config`] (the run's TOML), [`plots`].

pub mod ablate;
/// glibc's malloc settings, shared with the board's binary.
pub use edgeclr_runtime::allocator;
pub mod cli;
pub mod config;
pub mod data;
pub mod deb;
pub mod embed;
pub mod eval;
pub mod export;
pub mod package;
pub mod plots;
pub mod pretrain;
pub mod quickstart;
pub mod release;
pub mod rollout;
pub mod shard;
pub mod ssh;
pub mod supervised;

/// Runs one parsed command.
///
/// # Errors
/// Whatever the command reports; the binary prints it with its causes and exits 1.
pub fn run(command: cli::Command) -> anyhow::Result<()> {
    use cli::Command;
    match command {
        Command::Quickstart(args) => quickstart::run(&args),
        Command::Pretrain(args) => pretrain::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Ablate(args) => ablate::run(args),
        Command::Supervised(args) => supervised::run(args),
        Command::Export(args) => export::run(args),
        Command::Embed(args) => embed::run(args),
        Command::Keygen(args) => release::keygen(&args),
        Command::Bundle(args) => release::bundle(&args),
        Command::Flash(args) => release::flash(&args),
        Command::Shard(args) => shard::run(&args),
    }
}
