//! `sabt-node`: the daemon an agency runs in its data centre.
//!
//! The node joins the permissioned BFT network of the agencies named in the genesis (Malachite
//! consensus over libp2p), keeps blocks, the registry log and the state map in RocksDB, and serves
//! the HTTP API and Prometheus metrics.
//!
//! ```text
//! sabt-node init  --home DIR --name AGENCY [--genesis FILE]   keys and a commented config
//! sabt-node start --home DIR [--log-format json]               run until SIGTERM
//! sabt-node check-genesis FILE                                  validate a genesis
//! ```

mod api;
mod config;
mod consensus;
mod forward;
mod mempool;
mod metrics;
mod node;
mod store;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(name = "sabt-node", version, about = "The Sabt agency node")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a node home: keys (mode 0600, never overwritten) and a commented config.toml.
    Init {
        /// The node's home directory.
        #[arg(long, env = "SABT_HOME")]
        home: PathBuf,
        /// This node's agency name, as it will appear in the genesis.
        #[arg(long)]
        name: String,
        /// A genesis document to copy into the home (optional at init).
        #[arg(long)]
        genesis: Option<PathBuf>,
    },
    /// Run the node until SIGTERM or SIGINT.
    Start {
        /// The node's home directory.
        #[arg(long, env = "SABT_HOME")]
        home: PathBuf,
        /// HTTP API listen address (overrides config and SABT_API_LISTEN).
        #[arg(long)]
        api_listen: Option<SocketAddr>,
        /// Metrics listen address (overrides config and SABT_METRICS_LISTEN).
        #[arg(long)]
        metrics_listen: Option<SocketAddr>,
        /// libp2p listen multiaddr (overrides config and SABT_P2P_LISTEN).
        #[arg(long)]
        p2p_listen: Option<String>,
        /// Log format: text or json (overrides config and SABT_LOG_FORMAT).
        #[arg(long)]
        log_format: Option<String>,
    },
    /// Check a genesis document as the node does at start, and print what it defines.
    CheckGenesis {
        /// Path to genesis.json.
        genesis: PathBuf,
    },
}

fn init(home: &Path, name: &str, genesis: Option<&Path>) -> anyhow::Result<String> {
    sabt_core::validator::check_name(name).map_err(|r| anyhow::anyhow!("--name {name:?}: {r}"))?;
    let h = node::Home(home.to_path_buf());
    let mut out = String::new();
    for (path, what) in
        [(h.consensus_key(), "consensus"), (h.network_key(), "network"), (home.join("keys/admin.key"), "admin")]
    {
        if path.exists() {
            out.push_str(&format!("kept existing {what} key {}\n", path.display()));
        } else {
            sabt_genesis::keyfile::write(&path, &sabt_genesis::keyfile::random_seed()?)?;
            out.push_str(&format!("wrote {what} key {}\n", path.display()));
        }
    }
    let cfg = home.join("config.toml");
    if !cfg.exists() {
        let text = sabt_genesis::testnet::config_text(
            name,
            "/ip4/0.0.0.0/tcp/26656",
            "127.0.0.1:26657",
            "127.0.0.1:26660",
            &[],
        );
        std::fs::write(&cfg, text).with_context(|| format!("cannot write {}", cfg.display()))?;
        out.push_str(&format!("wrote {}\n", cfg.display()));
    }
    if let Some(g) = genesis {
        sabt_genesis::load(g)?;
        std::fs::copy(g, home.join("genesis.json")).with_context(|| format!("cannot copy {}", g.display()))?;
    }
    let consensus = sabt_core::sign::SecretKey::from_seed(&sabt_genesis::keyfile::read(&h.consensus_key())?).public();
    let admin =
        sabt_core::sign::SecretKey::from_seed(&sabt_genesis::keyfile::read(&home.join("keys/admin.key"))?).public();
    let peer = sabt_genesis::keyfile::peer_id(&sabt_genesis::keyfile::read(&h.network_key())?)?;
    out.push_str(&format!(
        "for the genesis entry of {name}:\n  consensus_key {consensus}\n  peer_id       {peer}\n  admin_key     {admin}\n"
    ));
    Ok(out)
}

fn start(home: PathBuf, flags: config::Overrides) -> std::process::ExitCode {
    let cfg = match config::Config::load(&home, &flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SABT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,libp2p=warn,ractor=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if cfg.log.format == "json" {
        builder.json().init();
    } else {
        builder.with_ansi(false).init();
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    match rt.block_on(node::run(&home, cfg)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

fn main() -> std::process::ExitCode {
    match Cli::parse().command {
        Command::Init { home, name, genesis } => sabt_genesis::finish(init(&home, &name, genesis.as_deref())),
        Command::Start { home, api_listen, metrics_listen, p2p_listen, log_format } => {
            start(home, config::Overrides { api_listen, metrics_listen, p2p_listen, log_format })
        }
        Command::CheckGenesis { genesis } => {
            sabt_genesis::finish(sabt_genesis::load(&genesis).and_then(|g| sabt_genesis::describe(&g)))
        }
    }
}
