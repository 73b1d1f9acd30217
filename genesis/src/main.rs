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
    /// Write a ready local network: genesis, and each node's keys (mode 0600) and config.
    Testnet {
        /// Number of validators (1 to 64).
        #[arg(long, default_value_t = 4)]
        validators: u16,
        /// Output directory (must not hold a testnet already).
        #[arg(long)]
        out: PathBuf,
        /// Chain id.
        #[arg(long, default_value = "sabt-localnet")]
        chain_id: String,
        /// Ports: node I listens for p2p on BASE+I, API on BASE+100+I, metrics on BASE+200+I.
        #[arg(long, default_value_t = 26600)]
        base_port: u16,
        /// Shortest time between blocks, milliseconds (10 to 600000): the wait a transaction
        /// has for the next proposal, against the number of (often empty) blocks stored.
        #[arg(long, default_value_t = sabt_core::genesis::Params::default().block_interval_ms)]
        block_interval_ms: u64,
        /// Largest block, bytes (1 KiB to 16 MiB; a transaction stays within 256 KiB).
        #[arg(long, default_value_t = sabt_core::genesis::Params::default().max_block_bytes)]
        max_block_bytes: u64,
        /// The IPv4 address of each node in turn, comma-separated (one per validator), for nodes
        /// on separate hosts or network namespaces; all on 127.0.0.1 if not given.
        #[arg(long, value_delimiter = ',')]
        hosts: Vec<std::net::Ipv4Addr>,
    },
}

fn main() -> std::process::ExitCode {
    let result = match Cli::parse().command {
        Command::Inspect { genesis } => sabt_genesis::load(&genesis).and_then(|g| sabt_genesis::describe(&g)),
        Command::Hash { genesis } => sabt_genesis::load(&genesis).map(|g| format!("{}\n", g.hash())),
        Command::Testnet { validators, out, chain_id, base_port, block_interval_ms, max_block_bytes, hosts } => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(0))
                .unwrap_or(0);
            let defaults = sabt_core::genesis::Params::default();
            let params = sabt_core::genesis::Params {
                block_interval_ms,
                max_block_bytes,
                max_tx_bytes: defaults.max_tx_bytes.min(max_block_bytes),
                ..defaults
            };
            sabt_genesis::testnet::write(&out, validators, &chain_id, base_port, &hosts, now, params).map(|g| {
                format!(
                    "wrote a {validators}-validator testnet for chain {} ({}) to {}\n",
                    g.chain_id,
                    g.hash(),
                    out.display()
                )
            })
        }
    };
    sabt_genesis::finish(result)
}
