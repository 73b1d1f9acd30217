//! `sabt-genesis`: validate and inspect genesis documents.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "sabt-genesis", version, about = "Validate and inspect Sabt genesis documents")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate a genesis document and print its chain id, hash and validator set.
    Inspect {
        /// Path to genesis.json.
        genesis: PathBuf,
    },
    /// Print only the genesis hash (hex), for scripts.
    Hash {
        /// Path to genesis.json.
        genesis: PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    let result = match Cli::parse().command {
        Command::Inspect { genesis } => sabt_genesis::load(&genesis).and_then(|g| sabt_genesis::describe(&g)),
        Command::Hash { genesis } => sabt_genesis::load(&genesis).map(|g| format!("{}\n", g.hash())),
    };
    sabt_genesis::finish(result)
}
