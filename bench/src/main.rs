//! `sabt-bench`: Sabt's measurements, one subcommand each, every one printing a JSON object on
//! standard output (progress on standard error). `scripts/bench` runs them all against release
//! binaries and a real four-validator network and writes `docs/BENCHMARKS.md` with `report`.
//!
//! ```text
//! sabt-bench limits  --dir DIR [--secs S] [--fsyncs N]     signature, hash and fsync limits
//! sabt-bench merkle  --leaves N [--proofs K]               Sabt's log against ct-merkle and rs_merkle
//! sabt-bench proofs  --dir DIR --entries N [--samples K]   proofs from a log filled through the store
//! sabt-bench anchor-path --dir DIR --txs N [--block B]     one node's anchor path into its store
//! sabt-bench load    --net DIR --rate R --secs S ...       open-loop load on a running network
//! sabt-bench attack  --net DIR --secs S [--slow N] [--flood R]  slow clients and a flood at every node's API
//! sabt-bench storage --home NODE_HOME                      bytes on disk after compaction (node stopped)
//! sabt-bench rss     --net DIR                             the nodes' resident memory
//! sabt-bench docs    --dir DIR --count N                   N distinct 1 KiB documents to anchor
//! sabt-bench pg-records --out FILE --count N               the same records as CSV for PostgreSQL
//! sabt-bench report  --results DIR --out FILE [--json]     BENCHMARKS.md and the summary JSON
//! sabt-bench get     FILE KEY.PATH                         one number from a saved result
//! ```

/// The same allocator as the node's daemon, so that the anchor path measured in this process
/// allocates as a node does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod anchor_path;
mod attack;
mod cpu;
mod disk;
mod http;
mod limits;
mod load;
mod merkle;
mod pg;
mod proofs;
mod records;
mod report;
mod stats;
mod storage;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(name = "sabt-bench", version, about = "Sabt's benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Ed25519, SHA-256, BLAKE3 and fsync on this machine.
    Limits {
        /// Directory on the disk to measure fsync on (the data directory's disk).
        #[arg(long)]
        dir: PathBuf,
        /// Seconds spent on each figure.
        #[arg(long, default_value_t = 1.0)]
        secs: f64,
        /// Durable 4 KiB appends to time.
        #[arg(long, default_value_t = 1000)]
        fsyncs: usize,
    },
    /// Sabt's Merkle log against ct-merkle and rs_merkle on the same leaves.
    Merkle {
        /// Leaves in each tree.
        #[arg(long)]
        leaves: u64,
        /// Proofs generated and verified by each.
        #[arg(long, default_value_t = 2000)]
        proofs: usize,
    },
    /// Proof generation, size and verification on a log filled through the node's store.
    Proofs {
        /// Directory for the filled store (reused when it already holds this many entries).
        #[arg(long)]
        dir: PathBuf,
        /// Log entries.
        #[arg(long)]
        entries: u64,
        /// Proofs to generate and verify.
        #[arg(long, default_value_t = 2000)]
        samples: usize,
    },
    /// One node's anchor path: build, execute and commit blocks of anchors into a RocksDB store.
    AnchorPath {
        /// Directory for the store (must be absent or empty).
        #[arg(long)]
        dir: PathBuf,
        /// Transactions.
        #[arg(long)]
        txs: usize,
        /// Transactions per block.
        #[arg(long, default_value_t = 2000)]
        block: usize,
    },
    /// Open-loop load of single-document anchors on a running network (scripts/localnet).
    Load {
        /// The network directory (genesis.json, urls, node-1/keys/admin.key).
        #[arg(long)]
        net: PathBuf,
        /// Nodes to send to, by number (default: all in DIR/urls).
        #[arg(long, value_delimiter = ',')]
        nodes: Vec<usize>,
        /// Offered transactions per second.
        #[arg(long)]
        rate: f64,
        /// Seconds of offered load.
        #[arg(long)]
        secs: f64,
        /// Seconds left out of the throughput window at the start.
        #[arg(long, default_value_t = 2.0)]
        warmup: f64,
        /// Concurrent clients.
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Fetch and check the proof of every N-th transaction (default: about 20 a second).
        #[arg(long)]
        sample: Option<usize>,
        /// Run number: keys and records differ between runs on one network.
        #[arg(long)]
        run: u64,
        /// Seconds to wait for accepted transactions to commit after the load.
        #[arg(long, default_value_t = 30.0)]
        drain: f64,
        /// Also write each block and each transaction's times to this file (JSON lines).
        #[arg(long)]
        trace: Option<PathBuf>,
    },
    /// Slow clients and a flood of junk and forged-forwarded submissions at every node's API, from
    /// loopback addresses of their own, while `/livez` is timed from 127.0.0.1.
    Attack {
        /// The network directory (genesis.json, urls).
        #[arg(long)]
        net: PathBuf,
        /// Seconds to attack.
        #[arg(long)]
        secs: f64,
        /// Slow connections held to each node (64 per source address; at most 16,000).
        #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u16).range(0..=16_000))]
        slow: u16,
        /// Junk and forged-forwarded submissions per second, over all nodes.
        #[arg(long, default_value_t = 200.0)]
        flood: f64,
    },
    /// Compacts a stopped node's store and measures bytes on disk per anchored fingerprint.
    Storage {
        /// The node's home directory.
        #[arg(long)]
        home: PathBuf,
    },
    /// Peak and current resident memory of the network's nodes.
    Rss {
        /// The network directory (node-I/pid).
        #[arg(long)]
        net: PathBuf,
    },
    /// Writes `count` distinct 1 KiB documents into `dir`.
    Docs {
        /// Where to write them.
        #[arg(long)]
        dir: PathBuf,
        /// How many.
        #[arg(long)]
        count: u64,
    },
    /// Writes the records PostgreSQL anchors, as CSV for COPY.
    PgRecords {
        /// The CSV file.
        #[arg(long)]
        out: PathBuf,
        /// Records.
        #[arg(long)]
        count: u64,
        /// Run number (the same records as `load --run`).
        #[arg(long, default_value_t = 9)]
        run: u64,
    },
    /// Writes BENCHMARKS.md from a results directory; prints the summary JSON with --json.
    Report {
        /// The directory the other subcommands' outputs were saved in.
        #[arg(long)]
        results: PathBuf,
        /// The Markdown file to write (the part between its generated markers is replaced).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print the summary as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Prints one value of a saved JSON result (for scripts/bench).
    Get {
        /// The JSON file.
        file: PathBuf,
        /// Dotted path, e.g. `proof_latency_ms.p99`.
        path: String,
    },
}

fn print<T: Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// The process ids of nodes 1 to `n` of the network in `net` (`node-N/pid`, written by
/// `scripts/localnet`).
fn node_pids(net: &std::path::Path, n: usize) -> anyhow::Result<Vec<u32>> {
    (1..=n)
        .map(|i| {
            let pid_file = net.join(format!("node-{i}/pid"));
            std::fs::read_to_string(&pid_file)
                .with_context(|| {
                    format!("cannot read {}; is the network up (scripts/localnet up)?", pid_file.display())
                })?
                .trim()
                .parse::<u32>()
                .with_context(|| format!("{} holds no pid", pid_file.display()))
        })
        .collect()
}

fn urls(net: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(net.join("urls"))
        .with_context(|| format!("cannot read {}/urls; start the network with scripts/localnet up", net.display()))?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect())
}

fn exec(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Limits { dir, secs, fsyncs } => print(&limits::run(&dir, Duration::from_secs_f64(secs), fsyncs)?),
        Command::Merkle { leaves, proofs } => print(&merkle::run(leaves, proofs)?),
        Command::Proofs { dir, entries, samples } => print(&proofs::run(&dir, entries, samples)?),
        Command::AnchorPath { dir, txs, block } => print(&anchor_path::run(&dir, txs, block)?),
        Command::Load { net, nodes, rate, secs, warmup, clients, sample, run, drain, trace } => {
            let all = urls(&net)?;
            let pick = if nodes.is_empty() { (1..=all.len()).collect() } else { nodes };
            let targets = pick
                .iter()
                .map(|&n| {
                    all.get(n.wrapping_sub(1))
                        .cloned()
                        .with_context(|| format!("no node {n} in {}/urls", net.display()))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let cfg = load::LoadCfg {
                watch: targets[0].clone(),
                urls: targets,
                genesis: net.join("genesis.json"),
                admin_key: net.join("node-1/keys/admin.key"),
                clients,
                rate,
                secs,
                warmup,
                sample: sample.unwrap_or_else(|| ((rate / 20.0) as usize).max(1)),
                run,
                drain,
                pids: node_pids(&net, all.len())?,
                trace,
            };
            print(&load::run(&cfg)?)
        }
        Command::Attack { net, secs, slow, flood } => {
            let genesis = sabt_core::genesis::Genesis::from_json(
                &std::fs::read_to_string(net.join("genesis.json")).context("the network's genesis.json")?,
            )?;
            let nodes = urls(&net)?
                .iter()
                .map(|u| u.trim_start_matches("http://").parse().with_context(|| format!("{u} is not http://IP:PORT")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let cfg = attack::AttackCfg {
                nodes,
                chain_id: genesis.chain_id,
                secs,
                slow_per_node: usize::from(slow),
                flood_per_s: flood,
            };
            print(&attack::run(&cfg)?)
        }
        Command::Storage { home } => print(&storage::run(&home)?),
        Command::Rss { net } => {
            let mut out = Vec::new();
            for (i, pid) in node_pids(&net, urls(&net)?.len())?.into_iter().enumerate() {
                let (peak, now) = disk::rss(pid)?;
                out.push(serde_json::json!({ "node": i + 1, "peak_rss_bytes": peak, "rss_bytes": now }));
            }
            print(&out)
        }
        Command::Docs { dir, count } => {
            std::fs::create_dir_all(&dir)?;
            for n in 0..count {
                let mut page = vec![0u8; 1024];
                let tag = format!("Sabt benchmark document {n}\n");
                page[..tag.len()].copy_from_slice(tag.as_bytes());
                std::fs::write(dir.join(format!("page-{n:07}.txt")), &page)?;
            }
            print(&serde_json::json!({ "documents": count }))
        }
        Command::PgRecords { out, count, run } => {
            pg::write_records(&out, run, count)?;
            print(&serde_json::json!({ "records": count }))
        }
        Command::Report { results, out, json } => report::run(&results, out.as_deref(), json),
        Command::Get { file, path } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let v: serde_json::Value = serde_json::from_str(&text)?;
            let got = path.split('.').fold(&v, |v, k| &v[k]);
            anyhow::ensure!(!got.is_null(), "{} has no value at {path}", file.display());
            println!("{}", got.as_str().map(String::from).unwrap_or_else(|| got.to_string()));
            Ok(())
        }
    }
}

fn main() -> std::process::ExitCode {
    match exec(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
