//! Prometheus metrics, registered in Malachite's global registry beside the engine's own (under the
//! `sabt_` prefix with this node's name as `moniker`), served on a separate port.

use malachitebft_app_channel::app::metrics::prometheus::metrics::counter::Counter;
use malachitebft_app_channel::app::metrics::prometheus::metrics::family::Family;
use malachitebft_app_channel::app::metrics::prometheus::metrics::gauge::Gauge;
use malachitebft_app_channel::app::metrics::prometheus::metrics::histogram::{Histogram, exponential_buckets};
use malachitebft_app_channel::app::metrics::{SharedRegistry, export};
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
}

impl Metrics {
    /// Counts a transaction left out of a proposal with refusal `code`.
    pub fn proposal_refused(&self, code: &str) {
        self.proposal_refused.get_or_create(&vec![("code".to_string(), code.to_string())]).inc();
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
