//! Forwarding of submitted transactions to the other validators, so that a transaction sent to any
//! node is in the next proposer's mempool, whoever that is.
//!
//! A transaction a client submits is admitted locally, then queued here for each peer. Every peer
//! has its own bounded queue and its own worker thread, so a peer that is down, or up but not
//! answering (a paused process accepts connections and never replies), delays only its own queue:
//! the others keep receiving. When a peer's queue is full the transaction is not forwarded to that
//! peer and waits for another node's turn to propose. A worker sends queued transactions in batches
//! to its peer's `POST /v1/txs/batch`, marked as forwarded so that peers do not forward them again.
//! Peers check every transaction themselves: forwarding carries no trust.

use sabt_core::codec;
use sabt_core::tx::SignedTx;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};
use tracing::{debug, warn};

/// Header that marks a forwarded submission.
pub const FORWARDED_HEADER: &str = "x-sabt-forwarded";
/// Most transactions queued for one peer.
pub const QUEUE: usize = 8192;
/// Most transactions in one forwarded batch.
pub const BATCH: usize = 512;

/// The sending side, held by the API.
#[derive(Debug, Clone)]
pub struct Forwarder {
    peers: Vec<(String, SyncSender<Arc<str>>)>,
}

impl Forwarder {
    /// Starts one worker thread for each of `peers` (API base URLs).
    pub fn start(peers: Vec<String>) -> std::io::Result<Forwarder> {
        let mut out = Vec::with_capacity(peers.len());
        for peer in peers {
            let (tx, rx) = sync_channel(QUEUE);
            let p = peer.clone();
            std::thread::Builder::new().name("sabt-forward".into()).spawn(move || run(rx, p))?;
            out.push((peer, tx));
        }
        Ok(Forwarder { peers: out })
    }

    /// Queues `stx` for every peer; returns false if some peer's queue was full (that peer does not
    /// get it from this node).
    pub fn push(&self, stx: &SignedTx) -> bool {
        let hex: Arc<str> = hex::encode(codec::encode(stx)).into();
        let mut all = true;
        for (peer, q) in &self.peers {
            match q.try_send(hex.clone()) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    debug!(peer = %peer, "forwarding queue is full; the transaction waits for another node's turn to propose");
                    all = false;
                }
                Err(TrySendError::Disconnected(_)) => all = false,
            }
        }
        all
    }
}

fn run(rx: Receiver<Arc<str>>, peer: String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let mut last_warning: Option<Instant> = None;
    loop {
        let first = match rx.recv() {
            Ok(t) => t,
            Err(_) => return,
        };
        let mut batch = vec![first];
        let deadline = Instant::now() + Duration::from_millis(10);
        while batch.len() < BATCH {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(t) => batch.push(t),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        let body = serde_json::json!({ "txs": batch.iter().map(|t| &**t).collect::<Vec<&str>>() });
        let r = agent.post(format!("{peer}/v1/txs/batch")).header(FORWARDED_HEADER, "1").send_json(&body);
        if let Err(e) = r {
            // Peers that are down are expected in a BFT network; say so at most every 30 s.
            if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(30)) {
                warn!(peer = %peer, error = %e, "cannot forward transactions to a peer");
                last_warning = Some(Instant::now());
            }
        }
    }
}
