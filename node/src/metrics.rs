//! Prometheus metrics, registered in Malachite's global registry beside the engine's own (under the
//! `sabt_` prefix with this node's name as `moniker`), served on a separate port.

use crate::consensus::telemetry::{Counter, Family, Gauge, Histogram, SharedRegistry, exponential_buckets, export};
use std::net::SocketAddr;

/// The node's own metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Committed height.
    pub height: Gauge,
    /// Current consensus round.
    pub round: Gauge,
    /// Connected peers.
    pub peers: Gauge,
    /// Transactions waiting.
    pub mempool_size: Gauge,
    /// Transactions committed since start.
    pub txs_committed: Counter,
    /// Seconds from the start of the deciding round to the synced commit.
    pub commit_latency: Histogram,
    /// Seconds spent in the synced write of a block.
    pub fsync: Histogram,
    /// Sequence number of the access log's last line.
    pub access_log_seq: Gauge,
    /// Transactions this node, proposing, left out of its block because the rules refuse them
    /// against the block's state, by refusal code.
    pub proposal_refused: Family<Vec<(String, String)>, Counter>,
    /// Consensus messages this node dropped as faulty, by reason (`oversized`, `relayed_part`,
    /// `swapped_body`, `bad_signature`, `bad_block`, `not_proposer`, `conflicting`, `full`,
    /// `clock`, `extension_mismatch`, `synced_bad_block`, `synced_bad_certificate`).
    pub consensus_dropped: Family<Vec<(String, String)>, Counter>,
    /// Equivocations kept as evidence, by kind (`prevote`, `precommit`, `proposal`).
    pub equivocations: Family<Vec<(String, String)>, Counter>,
    /// How far ahead of this node's clock the last block proposed by another validator was when
    /// it arrived, milliseconds (negative: behind). Far from zero on one node only, this node's
    /// clock is off.
    pub clock_offset_ms: Gauge,
    /// API requests (and connections) refused by the API's limits, by code.
    pub api_refused: Family<Vec<(String, String)>, Counter>,
    /// API connections open.
    pub api_connections: Gauge,
}

impl Metrics {
    /// Counts a transaction left out of a proposal with refusal `code`.
    pub fn proposal_refused(&self, code: &str) {
        self.proposal_refused.get_or_create(&vec![("code".to_string(), code.to_string())]).inc();
    }

    /// Counts a consensus message dropped for `reason`.
    pub fn dropped(&self, reason: &str) {
        self.consensus_dropped.get_or_create(&vec![("reason".to_string(), reason.to_string())]).inc();
    }

    /// Counts a request or connection the API's limits refused with `code`.
    pub fn api_refused(&self, code: &str) {
        self.api_refused.get_or_create(&vec![("code".to_string(), code.to_string())]).inc();
    }

    /// Counts an equivocation of `kind` kept as evidence.
    pub fn equivocation(&self, kind: &str) {
        self.equivocations.get_or_create(&vec![("kind".to_string(), kind.to_string())]).inc();
    }

    /// Creates and registers the metrics for node `name`.
    pub fn register(name: &str) -> Metrics {
        let m = Metrics {
            height: Gauge::default(),
            round: Gauge::default(),
            peers: Gauge::default(),
            mempool_size: Gauge::default(),
            txs_committed: Counter::default(),
            commit_latency: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            fsync: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            access_log_seq: Gauge::default(),
            proposal_refused: Family::default(),
            consensus_dropped: Family::default(),
            equivocations: Family::default(),
            clock_offset_ms: Gauge::default(),
            api_refused: Family::default(),
            api_connections: Gauge::default(),
        };
        SharedRegistry::global().with_moniker(name).with_prefix("sabt", |r| {
            r.register("height", "Committed block height", m.height.clone());
            r.register("access_log_seq", "Sequence number of the access log's last line", m.access_log_seq.clone());
            r.register("round", "Current consensus round", m.round.clone());
            r.register("peers", "Connected peers", m.peers.clone());
            r.register("mempool_size", "Transactions waiting in the mempool", m.mempool_size.clone());
            r.register("txs_committed", "Transactions committed since start", m.txs_committed.clone());
            r.register(
                "commit_latency_seconds",
                "Start of the deciding round to synced commit",
                m.commit_latency.clone(),
            );
            r.register("block_write_seconds", "Synced write of one block", m.fsync.clone());
            r.register(
                "proposal_refused",
                "Transactions left out of this node's proposals because the rules refuse them, by code",
                m.proposal_refused.clone(),
            );
            r.register(
                "consensus_dropped",
                "Consensus messages dropped as faulty (relayed or swapped parts, bad extensions, ...), by reason",
                m.consensus_dropped.clone(),
            );
            r.register("equivocations", "Equivocations kept as evidence, by kind", m.equivocations.clone());
            r.register(
                "clock_offset_ms",
                "How far ahead of this node's clock the last block from another proposer was on arrival",
                m.clock_offset_ms.clone(),
            );
            r.register(
                "api_refused",
                "API requests and connections refused by the limits (too_many_connections, too_many_requests, \
                 rate_limited, busy, timeout, body_timeout, too_large, forged_forward, node_connections), by code",
                m.api_refused.clone(),
            );
            r.register("api_connections", "API connections open", m.api_connections.clone());
        });
        m
    }
}

/// Serves `GET /metrics` on `addr` until the process ends.
pub async fn serve(addr: SocketAddr) -> anyhow::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(|| async {
            let mut buf = String::new();
            export(&mut buf);
            ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], buf)
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for metrics on {addr}: {e}"))?;
    axum::serve(listener, app).await?;
    Ok(())
}
