//! Node configuration: `HOME/config.toml`, overridden by environment variables, overridden by
//! command-line flags (flag > environment > file > default).
//!
//! `sabt-node init` writes the file with every setting and a comment for each.

use anyhow::{Context as _, bail};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This node's agency name (as in the genesis).
    pub name: String,
    /// Genesis path, relative to home.
    pub genesis: PathBuf,
    /// Peer-to-peer settings.
    pub p2p: P2p,
    /// HTTP API.
    pub api: Api,
    /// Metrics endpoint.
    pub metrics: Metrics,
    /// Mempool bounds.
    pub mempool: MempoolCfg,
    /// Consensus timeouts.
    pub consensus: ConsensusCfg,
    /// Logging.
    pub log: Log,
}

/// Peer-to-peer settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct P2p {
    /// libp2p listen multiaddr.
    pub listen: String,
}

/// HTTP API settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Api {
    /// Listen address.
    pub listen: SocketAddr,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Most requests served at once; beyond this, 503 with `Retry-After`.
    pub max_concurrent: usize,
    /// Requests whose handlers run at once, each on a thread of its own off the consensus
    /// runtime; the others admitted wait for one.
    pub workers: usize,
    /// Most open connections; a connection beyond is closed at once (after a 503, if the socket
    /// takes it without waiting).
    pub max_connections: usize,
    /// Open connections from one client address (an IPv6 /64) beyond which its requests are
    /// answered 429; health probes are served on every connection.
    pub max_connections_per_address: usize,
    /// Requests from one client address served at once; beyond this, 429 with `Retry-After`.
    pub max_concurrent_per_address: usize,
    /// Requests one client address may make per second, sustained; beyond, 429 with `Retry-After`.
    pub requests_per_second_per_address: u32,
    /// Requests one client address may make at once after being idle.
    pub burst_per_address: u32,
    /// Client addresses the per-address limits do not apply to: this node's own reverse proxy or
    /// the portal's gateway, through which many users arrive from one address. Empty by default.
    pub exempt_addresses: Vec<std::net::IpAddr>,
    /// Time to receive a request's head (line and headers), and the longest a kept-alive
    /// connection may stay idle: then the connection is closed.
    pub header_timeout_ms: u64,
    /// Time to receive a request's whole body: then 408.
    pub body_timeout_ms: u64,
    /// Time from a request's head to its answer: then 503 `timeout`.
    pub request_timeout_ms: u64,
}

/// Metrics settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Metrics {
    /// Listen address.
    pub listen: SocketAddr,
}

/// Mempool settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MempoolCfg {
    /// Most transactions.
    pub max_txs: usize,
    /// Most bytes.
    pub max_bytes: usize,
    /// API URLs of the other validators, to which submitted transactions are forwarded.
    pub peers: Vec<String>,
}

/// Consensus timeouts.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsensusCfg {
    /// Propose timeout.
    pub timeout_propose_ms: u64,
    /// Prevote timeout.
    pub timeout_prevote_ms: u64,
    /// Precommit timeout.
    pub timeout_precommit_ms: u64,
    /// Added per round.
    pub timeout_delta_ms: u64,
}

/// Logging.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Log {
    /// `text` or `json`.
    pub format: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: String::new(),
            genesis: PathBuf::from("genesis.json"),
            p2p: P2p::default(),
            api: Api::default(),
            metrics: Metrics::default(),
            mempool: MempoolCfg::default(),
            consensus: ConsensusCfg::default(),
            log: Log::default(),
        }
    }
}

impl Default for P2p {
    fn default() -> Self {
        P2p { listen: "/ip4/0.0.0.0/tcp/26656".into() }
    }
}

impl Default for Api {
    fn default() -> Self {
        Api {
            listen: SocketAddr::from(([127, 0, 0, 1], 26657)),
            max_body_bytes: 1 << 20,
            max_concurrent: 256,
            workers: 4,
            max_connections: 1024,
            max_connections_per_address: 64,
            max_concurrent_per_address: 32,
            requests_per_second_per_address: 200,
            burst_per_address: 400,
            exempt_addresses: Vec::new(),
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            request_timeout_ms: 60_000,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics { listen: SocketAddr::from(([127, 0, 0, 1], 26660)) }
    }
}

impl Default for MempoolCfg {
    fn default() -> Self {
        MempoolCfg { max_txs: 20_000, max_bytes: 64 << 20, peers: Vec::new() }
    }
}

impl Default for ConsensusCfg {
    fn default() -> Self {
        ConsensusCfg {
            timeout_propose_ms: 2000,
            timeout_prevote_ms: 1000,
            timeout_precommit_ms: 1000,
            timeout_delta_ms: 500,
        }
    }
}

impl Default for Log {
    fn default() -> Self {
        Log { format: "text".into() }
    }
}

/// Values given on the command line (highest precedence).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--api-listen`.
    pub api_listen: Option<SocketAddr>,
    /// `--metrics-listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// `--p2p-listen`.
    pub p2p_listen: Option<String>,
    /// `--log-format`.
    pub log_format: Option<String>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Config {
    /// Loads `home/config.toml` (defaults if absent), then environment, then `flags`.
    pub fn load(home: &Path, flags: &Overrides) -> anyhow::Result<Config> {
        let path = home.join("config.toml");
        let mut cfg = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str::<Config>(&text)
                .with_context(|| format!("{} is not a valid configuration", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bail!("{} does not exist; run `sabt-node init --home {}` first", path.display(), home.display())
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        if let Some(v) = env("SABT_API_LISTEN") {
            cfg.api.listen = v.parse().with_context(|| format!("SABT_API_LISTEN={v} is not host:port"))?;
        }
        if let Some(v) = env("SABT_METRICS_LISTEN") {
            cfg.metrics.listen = v.parse().with_context(|| format!("SABT_METRICS_LISTEN={v} is not host:port"))?;
        }
        if let Some(v) = env("SABT_P2P_LISTEN") {
            cfg.p2p.listen = v;
        }
        if let Some(v) = env("SABT_LOG_FORMAT") {
            cfg.log.format = v;
        }
        if let Some(v) = flags.api_listen {
            cfg.api.listen = v;
        }
        if let Some(v) = flags.metrics_listen {
            cfg.metrics.listen = v;
        }
        if let Some(v) = &flags.p2p_listen {
            cfg.p2p.listen = v.clone();
        }
        if let Some(v) = &flags.log_format {
            cfg.log.format = v.clone();
        }
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.name.is_empty() {
            bail!("config: `name` (this node's agency name in the genesis) is not set");
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            bail!("config: log.format must be \"text\" or \"json\", not {:?}", self.log.format);
        }
        if !self.p2p.listen.contains("/tcp/") {
            bail!(
                "config: p2p.listen must be a TCP multiaddr such as /ip4/0.0.0.0/tcp/26656, not {:?}",
                self.p2p.listen
            );
        }
        if self.mempool.max_txs == 0 || self.mempool.max_bytes < 1024 {
            bail!("config: mempool.max_txs must be at least 1 and mempool.max_bytes at least 1024");
        }
        if let Some(p) = self.mempool.peers.iter().find(|p| !(p.starts_with("http://") || p.starts_with("https://"))) {
            bail!("config: mempool.peers entries must be http:// or https:// URLs, not {p:?}");
        }
        if self.api.max_body_bytes < 1024 || self.api.max_body_bytes > 64 << 20 {
            bail!("config: api.max_body_bytes must be 1 KiB to 64 MiB");
        }
        let a = &self.api;
        for (name, v, max) in [
            ("max_concurrent", a.max_concurrent, 65_536),
            ("workers", a.workers, 256),
            ("max_connections", a.max_connections, 1 << 20),
            ("max_connections_per_address", a.max_connections_per_address, 1 << 20),
            ("max_concurrent_per_address", a.max_concurrent_per_address, 65_536),
            ("requests_per_second_per_address", a.requests_per_second_per_address as usize, 1_000_000),
            ("burst_per_address", a.burst_per_address as usize, 1_000_000),
        ] {
            if v == 0 || v > max {
                bail!("config: api.{name} must be 1 to {max}");
            }
        }
        for (name, v) in [
            ("header_timeout_ms", a.header_timeout_ms),
            ("body_timeout_ms", a.body_timeout_ms),
            ("request_timeout_ms", a.request_timeout_ms),
        ] {
            if !(100..=3_600_000).contains(&v) {
                bail!("config: api.{name} must be 100 to 3600000 ms");
            }
        }
        let c = &self.consensus;
        for (name, v) in [
            ("timeout_propose_ms", c.timeout_propose_ms),
            ("timeout_prevote_ms", c.timeout_prevote_ms),
            ("timeout_precommit_ms", c.timeout_precommit_ms),
        ] {
            if !(50..=600_000).contains(&v) {
                bail!("config: consensus.{name} must be 50 to 600000 ms");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_generated_file_parses_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let text = sabt_genesis::testnet::config_text(
            "agency-1",
            "/ip4/127.0.0.1/tcp/1",
            "127.0.0.1:2",
            "127.0.0.1:3",
            &["http://127.0.0.1:4".to_string()],
            &["127.0.0.1"],
        );
        std::fs::write(dir.path().join("config.toml"), text).unwrap();
        let cfg = Config::load(dir.path(), &Overrides::default()).unwrap();
        assert_eq!(cfg.name, "agency-1");
        let defaults = Api::default();
        let a = &cfg.api;
        assert_eq!(
            (a.max_concurrent, a.workers, a.max_connections, a.max_connections_per_address),
            (defaults.max_concurrent, defaults.workers, defaults.max_connections, defaults.max_connections_per_address),
            "the template writes the built-in defaults"
        );
        assert_eq!(
            (a.max_concurrent_per_address, a.requests_per_second_per_address, a.burst_per_address),
            (defaults.max_concurrent_per_address, defaults.requests_per_second_per_address, defaults.burst_per_address)
        );
        assert_eq!(
            (a.header_timeout_ms, a.body_timeout_ms, a.request_timeout_ms),
            (defaults.header_timeout_ms, defaults.body_timeout_ms, defaults.request_timeout_ms)
        );
        assert_eq!(a.exempt_addresses, vec![std::net::IpAddr::from([127, 0, 0, 1])]);
        assert_eq!(cfg.api.listen.port(), 2);
        assert_eq!(cfg.mempool.peers, vec!["http://127.0.0.1:4".to_string()]);
        let flags = Overrides { api_listen: Some("127.0.0.1:9".parse().unwrap()), ..Default::default() };
        assert_eq!(Config::load(dir.path(), &flags).unwrap().api.listen.port(), 9);
        std::fs::write(dir.path().join("config.toml"), "name = \"a\"\nbogus = 1\n").unwrap();
        assert!(Config::load(dir.path(), &Overrides::default()).is_err());
    }
}
