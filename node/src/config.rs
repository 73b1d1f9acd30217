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
        Api { listen: SocketAddr::from(([127, 0, 0, 1], 26657)), max_body_bytes: 1 << 20, max_concurrent: 256 }
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
        if self.api.max_concurrent == 0 || self.api.max_concurrent > 65_536 {
            bail!("config: api.max_concurrent must be 1 to 65536");
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
        );
        std::fs::write(dir.path().join("config.toml"), text).unwrap();
        let cfg = Config::load(dir.path(), &Overrides::default()).unwrap();
        assert_eq!(cfg.name, "agency-1");
        assert_eq!(cfg.api.listen.port(), 2);
        assert_eq!(cfg.mempool.peers, vec!["http://127.0.0.1:4".to_string()]);
        let flags = Overrides { api_listen: Some("127.0.0.1:9".parse().unwrap()), ..Default::default() };
        assert_eq!(Config::load(dir.path(), &flags).unwrap().api.listen.port(), 9);
        std::fs::write(dir.path().join("config.toml"), "name = \"a\"\nbogus = 1\n").unwrap();
        assert!(Config::load(dir.path(), &Overrides::default()).is_err());
    }
}
