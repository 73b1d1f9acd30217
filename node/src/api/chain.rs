//! The chain: status, blocks, checkpoints, evidence, the genesis and log consistency.

use super::{ApiError, Res, load_block, load_header, no_such_block, note_of, parse_height, query};
use crate::node::Shared;
use crate::schema::*;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use sabt_core::block::Block;
use sabt_core::codec;
use sabt_core::merkle::{self, Blake3};
use sabt_core::tx::{SignedTx, TxBody};
use serde_json::{Value, json};
use std::sync::Arc;

#[utoipa::path(get, path = "/v1/status", tag = "chain", responses((status = 200, description = "The node's view of the chain", body = StatusView)))]
pub(super) async fn status(State(s): State<Arc<Shared>>) -> Json<StatusView> {
    let tip = s.tip();
    let validators = s
        .validator_set
        .validators()
        .iter()
        .map(|v| ValidatorView { name: v.name.clone(), key: v.key.to_hex(), power: v.power })
        .collect();
    Json(StatusView {
        node: s.name.clone(),
        chain_id: s.genesis.chain_id.clone(),
        genesis_hash: s.genesis_hash.to_hex(),
        height: tip.height,
        block_hash: tip.block_hash.to_hex(),
        time_ms: tip.time_ms,
        log_size: tip.log_size,
        log_root: tip.log_root.to_hex(),
        state_root: tip.state_root.to_hex(),
        validator_set_hash: s.validator_set.hash().to_hex(),
        validators,
        mempool_size: s.mempool_len(),
        ready: s.is_ready(),
    })
}

pub(super) fn tx_json(t: &SignedTx) -> Value {
    let (kind, detail) = match &t.tx.body {
        TxBody::Anchor(r) => {
            ("anchor", json!({"sha256": r.fingerprint.sha256.to_hex(), "record_kind": r.kind.as_str()}))
        }
        TxBody::AnchorBatch(b) => {
            ("anchor_batch", json!({"root": b.root.to_hex(), "size": b.size, "record_kind": b.kind.as_str()}))
        }
        TxBody::AuthorizeKey { key, kinds, expires_ms } => (
            "authorize_key",
            json!({"key": key.to_hex(), "kinds": kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>(), "expires_ms": expires_ms}),
        ),
        TxBody::RevokeKey { key } => ("revoke_key", json!({"key": key.to_hex()})),
        TxBody::Land(op) => ("land", json!({"operation": op.name(), "cadastral": op.cadastral()})),
        TxBody::Withdraw { target, reason } => {
            ("withdraw", json!({"target_sha256": target.record.fingerprint.sha256.to_hex(), "reason": reason}))
        }
        TxBody::Supersede { target, record, reason } => (
            "supersede",
            json!({
                "target_sha256": target.record.fingerprint.sha256.to_hex(),
                "sha256": record.fingerprint.sha256.to_hex(),
                "record_kind": record.kind.as_str(),
                "reason": reason,
            }),
        ),
    };
    json!({"id": t.id().to_hex(), "signer": t.tx.signer.to_hex(), "nonce": t.tx.nonce, "kind": kind, "detail": detail})
}

#[utoipa::path(get, path = "/v1/blocks/{height}", tag = "chain",
    params(("height" = u64, Path, description = "Block height, from 1")),
    responses(
        (status = 200, description = "Header, hash, transactions (summarised), commit certificate and cosigned checkpoint", body = Object),
        (status = 400, body = ErrorBody), (status = 404, description = "No such block", body = ErrorBody)))]
pub(super) async fn block(State(s): State<Arc<Shared>>, Path(height): Path<String>) -> Res {
    let height = parse_height(&height)?;
    let (b, commit) = load_block(&s, height)?;
    let h = &b.header;
    let sigs: Vec<Value> = commit
        .signatures
        .iter()
        .map(|c| {
            json!({
                "validator": s.validator_set.by_key(&c.validator).map(|v| v.name.clone()),
                "key": c.validator.to_hex(),
                "signature": hex::encode(c.signature.0),
                "checkpoint_signature": c.checkpoint.map(|x| hex::encode(x.0)),
            })
        })
        .collect();
    Ok(Json(json!({
        "height": h.height,
        "hash": b.hash().to_hex(),
        "header": {
            "chain_id": h.chain_id,
            "height": h.height,
            "time_ms": h.time_ms,
            "prev_hash": h.prev_hash.to_hex(),
            "tx_root": h.tx_root.to_hex(),
            "tx_count": h.tx_count,
            "log_size": h.log_size,
            "log_root": h.log_root.to_hex(),
            "state_root": h.state_root.to_hex(),
            "validator_set_hash": h.validator_set_hash.to_hex(),
            "proposer": h.proposer.to_hex(),
        },
        "txs": b.txs.iter().map(tx_json).collect::<Vec<_>>(),
        "commit": {"round": commit.round, "signatures": sigs},
        "checkpoint": note_of(&s, &b.header, &commit),
    })))
}

#[utoipa::path(get, path = "/v1/blocks/{height}/raw", tag = "chain",
    params(("height" = u64, Path, description = "Block height, from 1")),
    responses((status = 200, description = "The block and its commit, canonical encodings", body = BlockRaw),
        (status = 400, body = ErrorBody), (status = 404, description = "No such block", body = ErrorBody)))]
pub(super) async fn block_raw(
    State(s): State<Arc<Shared>>,
    Path(height): Path<String>,
) -> Result<Json<BlockRaw>, ApiError> {
    let height = parse_height(&height)?;
    // The stored bytes are the block's canonical encoding: served as they are, read once.
    let block = s.store.block_bytes(height).map_err(ApiError::internal)?.ok_or_else(|| no_such_block(&s, height))?;
    let header = Block::decode_header(&block).map_err(ApiError::internal)?;
    let commit = s.store.commit_at(height).map_err(ApiError::internal)?.ok_or_else(|| no_such_block(&s, height))?;
    Ok(Json(BlockRaw {
        height,
        hash: header.hash().to_hex(),
        block: hex::encode(block),
        commit: hex::encode(codec::encode(&commit)),
    }))
}

#[utoipa::path(get, path = "/v1/checkpoint", tag = "chain",
    responses((status = 200, description = "The latest cosigned checkpoint", body = CheckpointView),
        (status = 404, description = "No block yet", body = ErrorBody)))]
pub(super) async fn checkpoint(State(s): State<Arc<Shared>>) -> Result<Json<CheckpointView>, ApiError> {
    let tip = s.tip();
    if tip.height == 0 {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no_checkpoint", "no block is committed yet"));
    }
    let (header, commit) = load_header(&s, tip.height)?;
    Ok(Json(CheckpointView {
        height: tip.height,
        size: header.log_size,
        root: header.log_root.to_hex(),
        note: note_of(&s, &header, &commit),
    }))
}

/// Most pieces of evidence in one answer.
const MAX_EVIDENCE: usize = 100;

#[utoipa::path(get, path = "/v1/evidence", tag = "chain", params(EvidenceQuery),
    responses((status = 200, description = "Equivocation evidence this node kept, oldest height first", body = EvidenceList),
        (status = 400, description = "A malformed query", body = ErrorBody)))]
pub(super) async fn evidence(
    State(s): State<Arc<Shared>>,
    q: Result<axum::extract::Query<EvidenceQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<EvidenceList>, ApiError> {
    let q = query(q, "from=<height>")?;
    let stored = s.store.evidence(q.from.unwrap_or(0), MAX_EVIDENCE).map_err(ApiError::internal)?;
    let mut items = Vec::with_capacity(stored.len());
    for (height, bytes) in stored {
        let e: sabt_core::evidence::Equivocation = codec::decode(&bytes).map_err(ApiError::internal)?;
        let key = e.validator();
        items.push(EvidenceView {
            height,
            round: e.round(),
            kind: e.kind().to_string(),
            validator: s.validator_set.by_key(&key).map(|v| v.name.clone()).unwrap_or_default(),
            validator_key: key.to_hex(),
            evidence: hex::encode(&bytes),
        });
    }
    Ok(Json(EvidenceList { evidence: items }))
}

#[utoipa::path(get, path = "/v1/genesis", tag = "chain",
    responses((status = 200, description = "The genesis document this node runs (docs/PROOFS.md §1.1)", body = Object)))]
pub(super) async fn genesis(State(s): State<Arc<Shared>>) -> Res {
    serde_json::to_value(&s.genesis).map(Json).map_err(ApiError::internal)
}

#[utoipa::path(get, path = "/v1/consistency", tag = "chain", params(Sizes),
    responses((status = 200, description = "RFC 9162 consistency proof between two committed log sizes", body = ConsistencyView),
        (status = 400, body = ErrorBody)))]
pub(super) async fn consistency(
    State(s): State<Arc<Shared>>,
    q: Result<axum::extract::Query<Sizes>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ConsistencyView>, ApiError> {
    let q = query(q, "?old=N&new=M (log sizes)")?;
    let size = s.tip().log_size;
    if q.old > q.new || q.new > size {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_sizes",
            format!("need old <= new <= {size} (the committed log size); got old={} new={}", q.old, q.new),
        ));
    }
    let ws = s.store.write_set();
    let proof = merkle::consistency_proof::<Blake3, _>(&ws, q.old, q.new).map_err(ApiError::internal)?;
    Ok(Json(ConsistencyView { old: q.old, new: q.new, proof: proof.iter().map(|h| h.to_hex()).collect() }))
}
