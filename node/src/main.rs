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
//! sabt-node access-log verify --home DIR [--expect-head SEQ:HASH] check the access log's chain
//! ```

use sabt_node::{access, config, node};

/// The daemon allocates for every transaction it decodes, checks and executes, on many threads at
/// once; mimalloc serves those from per-thread heaps (see docs/BENCHMARKS.md for the measurement).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Work with the node's hash-chained access log.
    AccessLog {
        #[command(subcommand)]
        command: AccessLogCommand,
    },
}

#[derive(Subcommand, Debug)]
enum AccessLogCommand {
    /// Check that no line of the access log was edited, inserted, reordered or deleted.
    /// Exit 0 intact, 1 broken (the first bad line is named), 2 usage or input error.
    Verify {
        /// The node's home directory (the log is data/access.log).
        #[arg(long, env = "SABT_HOME", required_unless_present = "file")]
        home: Option<PathBuf>,
        /// The log file itself, instead of --home.
        #[arg(long, conflicts_with = "home")]
        file: Option<PathBuf>,
        /// A head recorded elsewhere, `SEQ` or `SEQ:HASH`: the log must reach it (lines deleted
        /// at the end are caught this way).
        #[arg(long)]
        expect_head: Option<String>,
    },
}

fn access_log_verify(home: Option<&Path>, file: Option<&Path>, expect: Option<&str>) -> std::process::ExitCode {
    use std::process::ExitCode;
    let path = match (file, home) {
        (Some(f), _) => f.to_path_buf(),
        (None, Some(h)) => node::Home(h.to_path_buf()).access_log(),
        (None, None) => {
            eprintln!("error: give --home DIR or --file PATH");
            return ExitCode::from(2);
        }
    };
    let expect = match expect.map(parse_head).transpose() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: --expect-head: {e}");
            return ExitCode::from(2);
        }
    };
    let f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: cannot open {}: {e} (is --home right?)", path.display());
            return ExitCode::from(2);
        }
    };
    match access::verify(f) {
        Ok(head) => {
            if let Some((seq, hash)) = expect {
                let reached = head.seq >= seq;
                if !reached {
                    println!(
                        "BROKEN: the log ends at seq {} but reached seq {seq} before: lines were deleted",
                        head.seq
                    );
                    return ExitCode::from(1);
                }
                if let Some(h) = hash
                    && head.seq == seq
                    && head.hash != h
                {
                    println!("BROKEN: seq {seq} has hash {}, not the recorded {h}", head.hash);
                    return ExitCode::from(1);
                }
            }
            println!("INTACT: {} lines; head seq {} hash {}", head.seq, head.seq, head.hash);
            ExitCode::SUCCESS
        }
        Err(b) => {
            println!("BROKEN at {b}");
            ExitCode::from(1)
        }
    }
}

fn parse_head(text: &str) -> anyhow::Result<(u64, Option<sabt_core::hash::Hash32>)> {
    let (seq, hash) = match text.split_once(':') {
        Some((s, h)) => (s, Some(sabt_core::hash::Hash32::from_hex(h).map_err(|e| anyhow::anyhow!("hash: {e}"))?)),
        None => (text, None),
    };
    Ok((seq.parse().map_err(|_| anyhow::anyhow!("{seq:?} is not a sequence number"))?, hash))
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
        Command::AccessLog { command: AccessLogCommand::Verify { home, file, expect_head } } => {
            access_log_verify(home.as_deref(), file.as_deref(), expect_head.as_deref())
        }
    }
}
