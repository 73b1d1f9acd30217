//! Building, signing, submitting and waiting for transactions.

use crate::api::Node;
use anyhow::{Context as _, bail};
use sabt_core::codec;
use sabt_core::hash::Hash32;
use sabt_core::sign::SecretKey;
use sabt_core::tx::{Transaction, TxBody};
use std::time::{Duration, Instant};

/// A transaction the node accepted.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// Its id.
    pub id: Hash32,
}

/// Why waiting ended without a commit.
#[derive(Debug, thiserror::Error)]
#[error("transaction {id} is accepted but not committed after {waited:?}; run the command again later to pick it up")]
pub struct StillPending {
    /// The transaction.
    pub id: Hash32,
    /// How long we waited.
    pub waited: Duration,
}

/// The chain id the node runs.
pub fn chain_id(node: &Node) -> anyhow::Result<String> {
    let s = node.get("/v1/status")?;
    s["chain_id"].as_str().map(str::to_string).context("the node's status has no chain_id")
}

/// The signer's next nonce, counting its transactions still waiting at the node.
pub fn next_nonce(node: &Node, key: &SecretKey) -> anyhow::Result<u64> {
    let a = node.get(&format!("/v1/accounts/{}", key.public().to_hex()))?;
    a["next_nonce"].as_u64().context("the node's account answer has no next_nonce")
}

/// Signs `body` with `key` at `nonce` and submits it.
pub fn submit(node: &Node, chain_id: &str, key: &SecretKey, nonce: u64, body: TxBody) -> anyhow::Result<Submitted> {
    let stx = Transaction { chain_id: chain_id.to_string(), signer: key.public(), nonce, body }.sign(key);
    let id = stx.id();
    let answer = match node.post("/v1/txs", &serde_json::json!({"tx": hex::encode(codec::encode(&stx))})) {
        Ok(a) => a,
        // This very transaction (same id) is already waiting or committed there: an earlier
        // attempt that timed out on its way back was admitted.
        Err(e)
            if e.downcast_ref::<crate::api::Refused>()
                .is_some_and(|r| r.code == "duplicate" || r.code == "committed") =>
        {
            return Ok(Submitted { id });
        }
        Err(e) => return Err(e),
    };
    if answer["id"].as_str() != Some(id.to_hex().as_str()) {
        bail!("the node acknowledged a different transaction id: {answer}");
    }
    Ok(Submitted { id })
}

/// Waits until `id` is committed; returns its block height.
pub fn wait_committed(node: &Node, id: &Hash32, within: Duration) -> anyhow::Result<u64> {
    let start = Instant::now();
    loop {
        let v = node.get(&format!("/v1/txs/{id}"));
        if let Ok(v) = &v
            && v["status"] == "committed"
        {
            return v["height"].as_u64().context("committed without a height");
        }
        if start.elapsed() > within {
            return Err(StillPending { id: *id, waited: start.elapsed() }.into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
