//! `sabt-node`: the daemon an agency runs in its data centre.
//!
//! The node joins the permissioned BFT network of the agencies named in the genesis, keeps the
//! registry log and state in its store, and serves the HTTP API. Network, consensus and storage are
//! on the roadmap (docs/ARCHITECTURE.md); today the binary performs the node's first start-up step:
//! loading and checking the genesis it will run.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "sabt-node", version, about = "The Sabt agency node")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check a genesis document as the node does at start, and print what it defines.
    CheckGenesis {
        /// Path to genesis.json.
        genesis: PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    let result = match Cli::parse().command {
        Command::CheckGenesis { genesis } => sabt_genesis::load(&genesis).and_then(|g| sabt_genesis::describe(&g)),
    };
    sabt_genesis::finish(result)
}
