//! `sabt-genesis testnet`: a ready local network in one directory.
//!
//! ```text
//! DIR/genesis.json
//! DIR/node-I/config.toml        node I's configuration (ports from --base-port)
//! DIR/node-I/genesis.json       a copy of the genesis
//! DIR/node-I/keys/consensus.key validator key (mode 0600)
//! DIR/node-I/keys/network.key   libp2p identity (mode 0600)
//! DIR/node-I/keys/admin.key     the agency's admin key (mode 0600)
//! ```

use crate::keyfile;
use anyhow::{Context as _, bail};
use sabt_core::genesis::{Agency, AgencyRole, GENESIS_FORMAT, Genesis, Params, ValidatorInfo};
use sabt_core::sign::SecretKey;
use std::path::Path;

/// Ports of node `i` (from 1) for a testnet based at `base`.
pub fn ports(base: u16, i: u16) -> (u16, u16, u16) {
    (base + i, base + 100 + i, base + 200 + i)
}

/// A node's configuration file, commented; the node writes the same layout on `init`.
/// `exempt` lists the client addresses the API's per-address limits do not apply to.
pub fn config_text(name: &str, p2p: &str, api: &str, metrics: &str, peers: &[String], exempt: &[&str]) -> String {
    let peers = peers.iter().map(|p| format!("{p:?}")).collect::<Vec<_>>().join(", ");
    let exempt = exempt.iter().map(|p| format!("{p:?}")).collect::<Vec<_>>().join(", ");
    format!(
        r#"# Sabt node configuration.
# Precedence: command-line flag > environment variable (SABT_*) > this file > built-in default.

# This node's agency name; its validator key must be the one the genesis lists for it.
name = "{name}"
# The genesis document, relative to the node's home directory.
genesis = "genesis.json"

[p2p]
# libp2p listen address (TCP). Only the validators named in the genesis may connect.
listen = "{p2p}"

[api]
# HTTP API (status, blocks, transactions, health). Env: SABT_API_LISTEN.
listen = "{api}"
# Largest request body accepted, in bytes.
max_body_bytes = 1048576
# Most requests served at once; beyond this the node answers 503 with Retry-After.
max_concurrent = 256
# Requests whose handlers run at once, off the consensus runtime; the others admitted wait.
workers = 4
# Most open connections; beyond, a new connection is closed at once.
max_connections = 1024
# Per client address (an IPv6 /64): open connections beyond which its requests get 429 (health
# probes are always served), requests at once, and requests per second sustained and in a burst.
max_connections_per_address = 64
max_concurrent_per_address = 32
requests_per_second_per_address = 200
burst_per_address = 400
# Addresses those per-address limits do not apply to: a reverse proxy or the portal's gateway, through
# which many users arrive from one address (a local network exempts its own machine, where every client is).
exempt_addresses = [{exempt}]
# Time to receive a request's head (also the longest idle keep-alive), its body, and to answer it.
header_timeout_ms = 10000
body_timeout_ms = 30000
request_timeout_ms = 60000

[metrics]
# Prometheus metrics (GET /metrics). Env: SABT_METRICS_LISTEN.
listen = "{metrics}"

[mempool]
# Most transactions waiting; beyond this, submissions are refused with HTTP 429.
max_txs = 20000
# Most bytes waiting.
max_bytes = 67108864
# API URLs of the other validators: transactions submitted here are forwarded to them, so the next
# proposer has them whoever it is. Each peer checks them again.
peers = [{peers}]

[consensus]
# Round timeouts (milliseconds); each later round waits longer by the matching delta.
timeout_propose_ms = 2000
timeout_prevote_ms = 1000
timeout_precommit_ms = 1000
timeout_delta_ms = 500

[log]
# "text" or "json". Env: SABT_LOG_FORMAT. Level filter: SABT_LOG (e.g. "info,sabt_node=debug").
format = "text"
"#
    )
}

/// Writes a testnet of `n` validators under `out`, with the genesis parameters `params`;
/// node I listens on `hosts[I-1]` (every node on 127.0.0.1 if `hosts` is empty); returns the
/// genesis.
pub fn write(
    out: &Path,
    n: u16,
    chain_id: &str,
    base_port: u16,
    hosts: &[std::net::Ipv4Addr],
    genesis_time_ms: u64,
    params: Params,
) -> anyhow::Result<Genesis> {
    if n == 0 || n > 64 {
        bail!("--validators must be 1 to 64");
    }
    if !hosts.is_empty() && hosts.len() != usize::from(n) {
        bail!("--hosts names {} addresses for {n} validators; give one address per validator", hosts.len());
    }
    let host = |i: u16| hosts.get(usize::from(i) - 1).copied().unwrap_or(std::net::Ipv4Addr::LOCALHOST);
    if base_port > 65_000 {
        bail!("--base-port must be at most 65000 (node I uses up to BASE+200+I)");
    }
    if out.join("genesis.json").exists() {
        bail!("{} already holds a testnet (genesis.json exists); choose an empty directory", out.display());
    }
    struct Node {
        consensus: [u8; 32],
        network: [u8; 32],
        admin: [u8; 32],
    }
    let mut nodes = Vec::new();
    for _ in 0..n {
        nodes.push(Node {
            consensus: keyfile::random_seed()?,
            network: keyfile::random_seed()?,
            admin: keyfile::random_seed()?,
        });
    }
    let mut agencies = Vec::new();
    for (i, node) in (1u16..).zip(&nodes) {
        let (p2p, _, _) = ports(base_port, i);
        agencies.push(Agency {
            name: format!("agency-{i}"),
            roles: vec![AgencyRole::Archive, AgencyRole::Land],
            admin_key: SecretKey::from_seed(&node.admin).public(),
            validator: Some(ValidatorInfo {
                consensus_key: SecretKey::from_seed(&node.consensus).public(),
                peer_id: keyfile::peer_id(&node.network)?,
                addresses: vec![format!("/ip4/{}/tcp/{p2p}", host(i))],
                power: 1,
            }),
        });
    }
    let genesis = Genesis { format: GENESIS_FORMAT, chain_id: chain_id.to_string(), genesis_time_ms, agencies, params };
    genesis
        .validate()
        .context("generated genesis (--block-interval-ms must be 10 to 600000, --max-block-bytes 1 KiB to 16 MiB)")?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let json = genesis.to_json();
    for (i, node) in (1u16..).zip(&nodes) {
        let home = out.join(format!("node-{i}"));
        let (p2p, api, metrics) = ports(base_port, i);
        let peers: Vec<String> =
            (1..=n).filter(|j| *j != i).map(|j| format!("http://{}:{}", host(j), ports(base_port, j).1)).collect();
        std::fs::create_dir_all(&home)?;
        keyfile::write(&home.join("keys/consensus.key"), &node.consensus)?;
        keyfile::write(&home.join("keys/network.key"), &node.network)?;
        keyfile::write(&home.join("keys/admin.key"), &node.admin)?;
        std::fs::write(home.join("genesis.json"), &json)?;
        std::fs::write(
            home.join("config.toml"),
            config_text(
                &format!("agency-{i}"),
                &format!("/ip4/{}/tcp/{p2p}", host(i)),
                &format!("{}:{api}", host(i)),
                &format!("{}:{metrics}", host(i)),
                &peers,
                &["127.0.0.1"],
            ),
        )?;
    }
    std::fs::write(out.join("genesis.json"), &json)?;
    Ok(genesis)
}
