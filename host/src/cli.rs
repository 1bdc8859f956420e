//! Command-line interface (clap derive). Doc comments are the help text.

use clap::{Parser, Subcommand};

use crate::pretrain::PretrainArgs;

/// edgeclr: contrastive self-supervised learning (SimCLR) from the training host to the edge board.
#[derive(Debug, Parser)]
#[command(name = "edgeclr", version, about)]
pub struct Cli {
    /// More logging (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The whole path on the shipped data in a few minutes: pretrain → kNN → export → bundle →
    /// flash to a local board folder → device runtime on the street clip → summary.
    Quickstart(crate::quickstart::QuickstartArgs),
    /// SimCLR pretraining of an encoder on unlabelled images.
    Pretrain(PretrainArgs),
    /// Evaluate a pretrained encoder: kNN, linear probe or fine-tuning, next to a random-init floor.
    Eval(crate::eval::EvalArgs),
    /// Reproduce the paper's loss / head / colour comparisons at a small, equal budget per row.
    Ablate(crate::ablate::AblateArgs),
    /// Train the same encoder with labels and cross-entropy: the supervised ceiling.
    Supervised(crate::supervised::SupervisedArgs),
    /// Export the encoder for the board: fp32 ONNX/NNEF, int8 (calibrated), manifest with drift.
    Export(crate::export::ExportArgs),
    /// Embed a dataset with an exported model through tract (the board's code path).
    Embed(crate::embed::EmbedArgs),
    /// Make an ed25519 key pair for signing bundles.
    Keygen(crate::release::KeygenArgs),
    /// Pack a run's export, the board binary, profile and unit into a verified (signed) tarball.
    Bundle(crate::release::BundleArgs),
    /// Install a bundle on a board (ssh:// or dir:), self-test it, roll back on failure.
    Flash(crate::release::FlashArgs),
    /// Write a data set as WebDataset tar shards that `pretrain` streams (data bigger than RAM).
    Shard(crate::shard::ShardArgs),
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use clap::Parser;

    use super::{Cli, Command};
    use crate::eval::{EvalArgs, Protocol};
    use crate::export::ExportArgs;
    use crate::pretrain::PretrainArgs;
    use crate::release::{BundleArgs, FlashArgs};

    fn parse(args: &[&str]) -> Command {
        let argv = std::iter::once("edgeclr").chain(args.iter().copied());
        Cli::try_parse_from(argv).expect("parses").command
    }

    /// What `quickstart` builds in code is what the same command line would parse to.
    #[test]
    fn typed_constructors_match_the_command_lines_defaults() {
        let p = PathBuf::from;
        let same = |parsed: Command, built: String| {
            let parsed = format!("{parsed:?}");
            assert!(parsed.ends_with(&format!("({built})")), "{parsed}\n{built}");
        };
        let built = PretrainArgs {
            out: p("o"),
            ..PretrainArgs::default()
        };
        same(parse(&["pretrain", "--out", "o"]), format!("{built:?}"));
        let built = EvalArgs::new(p("r"), p("d"), Protocol::Knn);
        let argv = ["eval", "--run", "r", "--data", "d", "--protocol", "knn"];
        same(parse(&argv), format!("{built:?}"));
        let built = ExportArgs::new(p("r"), p("o"));
        same(
            parse(&["export", "--run", "r", "--out", "o"]),
            format!("{built:?}"),
        );
        let built = BundleArgs::new(p("r"), "rpi5", p("o"));
        let argv = ["bundle", "--run", "r", "--board", "rpi5", "--out", "o"];
        same(parse(&argv), format!("{built:?}"));
        let built = FlashArgs::new(p("b"), "dir:x".into());
        same(
            parse(&["flash", "--bundle", "b", "--to", "dir:x"]),
            format!("{built:?}"),
        );
    }
}
