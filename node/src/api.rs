//! The node's HTTP API (JSON): health, status, blocks, checkpoints and transactions.
//!
//! | method and path | answer |
//! |---|---|
//! | `GET /livez` | 200 while the process serves requests |
//! | `GET /readyz` | 200 once consensus runs, 503 before |
//! | `GET /v1/status` | chain, height, latest block hash, log size and root, validator set, mempool size |
//! | `GET /v1/blocks/{height}` | header, hash, transactions, commit certificate, cosigned checkpoint |
//! | `GET /v1/blocks/{height}/raw` | the canonical block and commit encodings, hex |
//! | `GET /v1/checkpoint` | the latest checkpoint as a cosigned C2SP note |
//! | `POST /v1/txs` | submit `{"tx": hex(encode(SignedTx))}`; 202 with its id, or an error |
//! | `GET /v1/txs/{id}` | `pending`, `committed` (with height and position) or 404 |
//!
//! Errors are `{"code": "...", "message": "..."}` with a stable code; a full mempool answers 429
//! with `Retry-After`.

use crate::mempool::AdmitError;
use crate::node::Shared;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use sabt_core::block::Block;
use sabt_core::checkpoint::{Checkpoint, note_from_cosignatures};
use sabt_core::codec;
use sabt_core::hash::Hash32;
use sabt_core::tx::{SignedTx, TxBody};
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;

/// An API error.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
    }

    fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "API request failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("the node could not answer: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(json!({"code": self.code, "message": self.message}))).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS || self.status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

type Res = Result<Json<Value>, ApiError>;

/// Binds the API on `addr`; the returned future serves it.
pub async fn serve(
    shared: Arc<Shared>,
    addr: SocketAddr,
    max_body: usize,
) -> anyhow::Result<impl std::future::Future<Output = std::io::Result<()>>> {
    let app = Router::new()
        .route("/livez", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/v1/status", get(status))
        .route("/v1/blocks/{height}", get(block))
        .route("/v1/blocks/{height}/raw", get(block_raw))
        .route("/v1/checkpoint", get(checkpoint))
        .route("/v1/txs", post(submit))
        .route("/v1/txs/{id}", get(tx_status))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for the API on {addr}: {e}"))?;
    Ok(async move { axum::serve(listener, app).await })
}

async fn readyz(State(s): State<Arc<Shared>>) -> Response {
    if s.is_ready() {
        Json(json!({"status": "ready", "height": s.tip().height})).into_response()
    } else {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "consensus has not started yet").into_response()
    }
}

async fn status(State(s): State<Arc<Shared>>) -> Res {
    let tip = s.tip();
    let validators: Vec<Value> = s
        .validator_set
        .validators()
        .iter()
        .map(|v| json!({"name": v.name, "key": v.key.to_hex(), "power": v.power}))
        .collect();
    Ok(Json(json!({
        "node": s.name,
        "chain_id": s.genesis.chain_id,
        "genesis_hash": s.genesis_hash.to_hex(),
        "height": tip.height,
        "block_hash": tip.block_hash.to_hex(),
        "time_ms": tip.time_ms,
        "log_size": tip.log_size,
        "log_root": tip.log_root.to_hex(),
        "state_root": tip.state_root.to_hex(),
        "validator_set_hash": s.validator_set.hash().to_hex(),
        "validators": validators,
        "mempool_size": s.mempool_len(),
        "ready": s.is_ready(),
    })))
}

fn parse_height(text: &str) -> Result<u64, ApiError> {
    text.parse::<u64>().ok().filter(|h| *h >= 1).ok_or_else(|| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_height", format!("{text:?} is not a block height (1 or more)"))
    })
}

fn load_block(s: &Shared, height: u64) -> Result<(Block, sabt_core::block::Commit), ApiError> {
    let tip = s.tip().height;
    let not_found = || {
        ApiError::new(StatusCode::NOT_FOUND, "no_such_block", format!("no block at height {height}; the tip is {tip}"))
    };
    let block = s.store.block(height).map_err(ApiError::internal)?.ok_or_else(not_found)?;
    let commit = s.store.commit_at(height).map_err(ApiError::internal)?.ok_or_else(not_found)?;
    Ok((block, commit))
}

fn note_of(s: &Shared, block: &Block, commit: &sabt_core::block::Commit) -> String {
    let cp =
        Checkpoint { origin: s.genesis.chain_id.clone(), size: block.header.log_size, root: block.header.log_root };
    note_from_cosignatures(
        &cp,
        &s.validator_set,
        commit.signatures.iter().filter_map(|c| c.checkpoint.as_ref().map(|sig| (&c.validator, sig))),
    )
}

fn tx_json(t: &SignedTx) -> Value {
    let (kind, detail) = match &t.tx.body {
        TxBody::Anchor(r) => {
            ("anchor", json!({"sha256": r.fingerprint.sha256.to_hex(), "record_kind": r.kind.as_str()}))
        }
        TxBody::AnchorBatch(b) => ("anchor_batch", json!({"root": b.root.to_hex(), "size": b.size})),
    };
    json!({"id": t.id().to_hex(), "signer": t.tx.signer.to_hex(), "nonce": t.tx.nonce, "kind": kind, "detail": detail})
}

async fn block(State(s): State<Arc<Shared>>, Path(height): Path<String>) -> Res {
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
        "checkpoint": note_of(&s, &b, &commit),
    })))
}

async fn block_raw(State(s): State<Arc<Shared>>, Path(height): Path<String>) -> Res {
    let height = parse_height(&height)?;
    let (b, commit) = load_block(&s, height)?;
    Ok(Json(json!({
        "height": height,
        "hash": b.hash().to_hex(),
        "block": hex::encode(codec::encode(&b)),
        "commit": hex::encode(codec::encode(&commit)),
    })))
}

async fn checkpoint(State(s): State<Arc<Shared>>) -> Res {
    let tip = s.tip();
    if tip.height == 0 {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no_checkpoint", "no block is committed yet"));
    }
    let (b, commit) = load_block(&s, tip.height)?;
    Ok(Json(json!({
        "height": tip.height,
        "size": b.header.log_size,
        "root": b.header.log_root.to_hex(),
        "note": note_of(&s, &b, &commit),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Submit {
    tx: String,
}

async fn submit(
    State(s): State<Arc<Shared>>,
    body: Result<Json<Submit>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => {
            return ApiError::new(StatusCode::BAD_REQUEST, "bad_request", format!("expected {{\"tx\": hex}}: {e}"))
                .into_response();
        }
    };
    let bytes = match hex::decode(body.tx.trim()) {
        Ok(b) => b,
        Err(e) => {
            return ApiError::new(StatusCode::BAD_REQUEST, "bad_hex", format!("tx is not hex: {e}")).into_response();
        }
    };
    let stx: SignedTx = match codec::decode(&bytes) {
        Ok(t) => t,
        Err(e) => {
            return ApiError::new(StatusCode::BAD_REQUEST, "bad_encoding", format!("tx does not decode: {e}"))
                .into_response();
        }
    };
    if !s.is_ready() {
        return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "consensus has not started yet")
            .into_response();
    }
    match s.submit(stx) {
        Ok(id) => (StatusCode::ACCEPTED, Json(json!({"id": id.to_hex(), "status": "pending"}))).into_response(),
        Err(AdmitError::Rejected(e)) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.code(), e.to_string()).into_response()
        }
        Err(e @ AdmitError::Duplicate(_)) => {
            ApiError::new(StatusCode::CONFLICT, "duplicate", e.to_string()).into_response()
        }
        Err(e @ AdmitError::Committed(..)) => {
            ApiError::new(StatusCode::CONFLICT, "committed", e.to_string()).into_response()
        }
        Err(e @ AdmitError::Full { .. }) => {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "mempool_full", e.to_string()).into_response()
        }
    }
}

async fn tx_status(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Res {
    let id = Hash32::from_hex(&id).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_id", format!("transaction id must be 64 hex digits: {e}"))
    })?;
    if let Some(loc) = s.store.tx_location(&id).map_err(ApiError::internal)? {
        return Ok(Json(
            json!({"id": id.to_hex(), "status": "committed", "height": loc.height, "position": loc.position}),
        ));
    }
    if s.mempool_contains(&id) {
        return Ok(Json(json!({"id": id.to_hex(), "status": "pending"})));
    }
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_tx",
        format!("transaction {id} is neither pending nor committed here"),
    ))
}
