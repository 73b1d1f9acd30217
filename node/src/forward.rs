//! Forwarding of submitted transactions to the other validators, so that a transaction sent to any
//! node is in the next proposer's mempool, whoever that is.
//!
//! A transaction a client submits is admitted locally, then queued here (bounded; when the queue is
//! full the transaction is not forwarded and waits for this node's own turn to propose). A worker
//! thread sends queued transactions in batches to each peer's `POST /v1/txs/batch`, marked as
//! forwarded so that peers do not forward them again. Peers check every transaction themselves:
//! forwarding carries no trust.

use sabt_core::codec;
use sabt_core::tx::SignedTx;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};
use tracing::{debug, warn};

/// Header that marks a forwarded submission.
pub const FORWARDED_HEADER: &str = "x-sabt-forwarded";
/// Most transactions queued for forwarding.
pub const QUEUE: usize = 8192;
/// Most transactions in one forwarded batch.
pub const BATCH: usize = 512;

/// The sending side, held by the API.
#[derive(Debug, Clone)]
pub struct Forwarder {
    tx: SyncSender<SignedTx>,
}

impl Forwarder {
    /// Starts the worker thread that forwards to `peers` (API base URLs).
    pub fn start(peers: Vec<String>) -> std::io::Result<Forwarder> {
        let (tx, rx) = sync_channel(QUEUE);
        std::thread::Builder::new().name("sabt-forward".into()).spawn(move || run(rx, peers))?;
        Ok(Forwarder { tx })
    }

    /// Queues `stx`; returns false (and drops it) if the queue is full.
    pub fn push(&self, stx: SignedTx) -> bool {
        match self.tx.try_send(stx) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                debug!("forwarding queue is full; the transaction waits for this node's turn to propose");
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

fn run(rx: Receiver<SignedTx>, peers: Vec<String>) {
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
        let body = serde_json::json!({
            "txs": batch.iter().map(|t| hex::encode(codec::encode(t))).collect::<Vec<_>>()
        });
        for peer in &peers {
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
}
