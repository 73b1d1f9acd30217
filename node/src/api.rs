//! The node's HTTP API (JSON): health, status, blocks, checkpoints and transactions.
//!
//! | method and path | answer |
//! |---|---|
//! | `GET /livez` | 200 while the process serves requests |
//! | `GET /readyz` | 200 once consensus runs and this node decides blocks with the others; 503 before, and while it catches up by sync |
//! | `GET /v1/status` | chain, height, latest block hash, log size and root, validator set, mempool size |
//! | `GET /v1/blocks/{height}` | header, hash, transactions, commit certificate, cosigned checkpoint |
//! | `GET /v1/blocks/{height}/raw` | the canonical block and commit encodings, hex |
//! | `GET /v1/checkpoint` | the latest checkpoint as a cosigned C2SP note |
//! | `POST /v1/txs` | submit `{"tx": hex(encode(SignedTx))}`; 202 with its id, or an error |
//! | `POST /v1/txs/batch` | submit `{"txs": [hex, …]}` (at most 1,000); one result per transaction |
//! | `GET /v1/txs/{id}` | `pending`, `committed` (with height and position) or 404 |
//! | `GET /v1/accounts/{key}` | a signer's next nonce (after its pending transactions), its clerk grant, the agency it administers |
//! | `GET /v1/genesis` | the genesis document the node runs (JSON) |
//! | `GET /v1/batches/{root}` | where a batch root is anchored |
//! | `GET /v1/records/{digest}` | where a document (`sha256:`, `blake3:` or bare SHA-256 hex) is anchored, and whether it is current |
//! | `GET /v1/records/{digest}/status` | a status proof (current, withdrawn or superseded) at the latest block, for offline checking |
//! | `GET /v1/consistency?old=N&new=M` | RFC 9162 consistency proof between two committed log sizes |
//! | `GET /v1/entries/{index}/proof[?height=H]` | the entry, its inclusion path and the cosigned checkpoint of the latest block (or of block H) |
//! | `GET /v1/parcels/{cadastral}[?height=H]` | a parcel's state now (or as of block H, replayed from its history): geometry as GeoJSON (WGS84), right, restrictions, version |
//! | `GET /v1/parcels/at?lon=&lat=` | the live parcels containing a WGS84 point |
//! | `GET /v1/parcels?bbox=minlon,minlat,maxlon,maxlat` | live parcels in a box, GeoJSON FeatureCollection |
//! | `GET /v1/parcels/export` | every live parcel, GeoJSON FeatureCollection (opens in QGIS) |
//! | `GET /v1/parcels/{cadastral}/history` | every entry that changed the parcel, oldest first |
//! | `GET /v1/structures/{id}` | a building or road: kind, parcels, geometry (GeoJSON), retirement |
//! | `GET /v1/parcels/{cadastral}/proof` | a proof of that state (or of absence) at the latest block |
//! | `GET /v1/evidence[?from=H]` | equivocation evidence this node kept (two conflicting messages a validator signed), from height H, at most 100 |
//! | `GET /v1/openapi.json` | this API as an OpenAPI 3.1 document ([`ApiDoc`]) |
//!
//! Errors are `{"code": "...", "message": "..."}` with a stable code; a full mempool answers 429
//! with `Retry-After`. At most `api.max_concurrent` requests are served at once; beyond that, and
//! when the access log's queue is full, the answer is 503 `busy` with `Retry-After`, never a wait.
//! Every `/v1` request is recorded in the hash-chained access log ([`crate::access`]).

use crate::access::{self, AccessLine, AccessLog};
use crate::mempool::AdmitError;
use crate::node::Shared;
use crate::schema::*;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use axum::{Json, Router};
use sabt_core::block::{Block, BlockHeader, Commit};
use sabt_core::checkpoint::{Checkpoint, note_from_cosignatures};
use sabt_core::codec;
use sabt_core::entry::EntryBody;
use sabt_core::fingerprint::DocDigest;
use sabt_core::geo_io;
use sabt_core::hash::Hash32;
use sabt_core::land::{self, ParcelState};
use sabt_core::merkle::{self, Blake3};
use sabt_core::registry::schema::{
    self as layout, BatchByRoot, ParcelOf, SingleByBlake3, SingleBySha256, Slot as _, StatusOf,
};
use sabt_core::registry::{Ledger as _, RecordId};
use sabt_core::sign::PublicKey;
use sabt_core::smt;
use sabt_core::status::{self, StatusProof};
use sabt_core::tx::{SignedTx, TxBody};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use utoipa::OpenApi;

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

/// The error code of an answer, for the access log.
#[derive(Debug, Clone, Copy)]
struct Outcome(&'static str);

/// Keys of the transactions a request submitted, for the access log.
#[derive(Debug, Clone)]
struct Signers(Vec<String>);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(json!({"code": self.code, "message": self.message}))).into_response();
        r.extensions_mut().insert(Outcome(self.code));
        if self.status == StatusCode::TOO_MANY_REQUESTS || self.status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

type Res = Result<Json<Value>, ApiError>;

/// What every request passes through: the concurrency limit and the access log.
#[derive(Debug)]
struct Gate {
    permits: Arc<tokio::sync::Semaphore>,
    max: usize,
    access: AccessLog,
}

/// Records a request's line when the answer is ready, or, if the request is dropped first (the
/// client went away), records it as cancelled.
struct Pending {
    slot: Option<access::Slot>,
    access: AccessLine,
}

impl Pending {
    fn finish(mut self, status: u16, outcome: String, signers: Vec<String>) {
        if let Some(slot) = self.slot.take() {
            let access = AccessLine { status, outcome, signers, ..self.access.clone() };
            slot.send(access);
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.send(AccessLine { status: 499, outcome: "cancelled".into(), ..self.access.clone() });
        }
    }
}

async fn gate(
    State(g): State<Arc<Gate>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    let Ok(_permit) = g.permits.clone().try_acquire_owned() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!("the node is serving its limit of {} requests at once; retry shortly", g.max),
        )
        .into_response();
    };
    if !req.uri().path().starts_with("/v1/") {
        return next.run(req).await;
    }
    let Some(slot) = g.access.reserve() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "the access log cannot record more requests right now; retry shortly",
        )
        .into_response();
    };
    let target = req.uri().path_and_query().map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string());
    let pending = Pending {
        slot: Some(slot),
        access: AccessLine {
            seq: 0,
            hash: String::new(),
            time_ms: crate::clock::now_ms(),
            client: client.to_string(),
            forwarded_for: req
                .headers()
                .get("x-forwarded-for")
                .map(|v| access::bounded(&String::from_utf8_lossy(v.as_bytes()), 256)),
            signers: Vec::new(),
            method: req.method().to_string(),
            target: access::target(&target),
            status: 0,
            outcome: String::new(),
        },
    };
    let resp = next.run(req).await;
    let status = resp.status();
    let outcome = match resp.extensions().get::<Outcome>() {
        Some(o) => o.0.to_string(),
        None if status.is_client_error() || status.is_server_error() => format!("http_{}", status.as_u16()),
        None => "ok".to_string(),
    };
    let signers = resp.extensions().get::<Signers>().map(|s| s.0.clone()).unwrap_or_default();
    pending.finish(status.as_u16(), outcome, signers);
    resp
}

/// Every route, with its handler: the router is built from this table, and a test checks that the
/// OpenAPI document describes exactly these paths.
fn routes() -> Vec<(&'static str, MethodRouter<Arc<Shared>>)> {
    vec![
        ("/livez", get(livez)),
        ("/readyz", get(readyz)),
        ("/v1/openapi.json", get(openapi)),
        ("/v1/status", get(status)),
        ("/v1/blocks/{height}", get(block)),
        ("/v1/blocks/{height}/raw", get(block_raw)),
        ("/v1/checkpoint", get(checkpoint)),
        ("/v1/evidence", get(evidence)),
        ("/v1/txs", post(submit)),
        ("/v1/txs/batch", post(submit_batch)),
        ("/v1/txs/{id}", get(tx_status)),
        ("/v1/accounts/{key}", get(account)),
        ("/v1/records/{digest}", get(record)),
        ("/v1/records/{digest}/status", get(record_status)),
        ("/v1/batches/{root}", get(batch)),
        ("/v1/genesis", get(genesis)),
        ("/v1/consistency", get(consistency)),
        ("/v1/entries/{index}/proof", get(entry_proof)),
        ("/v1/parcels", get(parcels_in_box)),
        ("/v1/parcels/at", get(parcels_at)),
        ("/v1/parcels/export", get(parcels_export)),
        ("/v1/parcels/{cadastral}/history", get(parcel_history)),
        ("/v1/structures/{id}", get(structure)),
        ("/v1/parcels/{cadastral}", get(parcel)),
        ("/v1/parcels/{cadastral}/proof", get(parcel_proof)),
    ]
}

/// The OpenAPI 3.1 document, served at `/v1/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sabt node API",
        version = "1",
        description = "Submit signed transactions, look up anchored records, fetch proofs, checkpoints and blocks. \
Errors are {\"code\", \"message\"} with a stable code. 429 (mempool full) and 503 (busy, not ready) carry Retry-After. \
Byte formats are specified in docs/PROOFS.md."
    ),
    paths(
        livez,
        readyz,
        openapi,
        status,
        block,
        block_raw,
        checkpoint,
        evidence,
        submit,
        submit_batch,
        tx_status,
        account,
        record,
        record_status,
        batch,
        genesis,
        consistency,
        entry_proof,
        parcel,
        parcels_at,
        parcels_in_box,
        parcels_export,
        parcel_history,
        parcel_proof,
        structure
    ),
    components(schemas(ErrorBody)),
    tags(
        (name = "health", description = "Liveness and readiness"),
        (name = "chain", description = "Status, blocks, checkpoints, consistency"),
        (name = "transactions", description = "Submitting and following transactions"),
        (name = "registry", description = "Anchored records, batches, accounts and their proofs"),
        (name = "land", description = "Parcels: current state and its proof")
    )
)]
#[derive(Debug)]
pub struct ApiDoc;

/// Binds the API on `cfg.listen`; the returned future serves it.
pub async fn serve(
    shared: Arc<Shared>,
    access: AccessLog,
    cfg: crate::config::Api,
) -> anyhow::Result<impl std::future::Future<Output = std::io::Result<()>>> {
    let (addr, max_body) = (cfg.listen, cfg.max_body_bytes);
    let gate_state = Arc::new(Gate {
        permits: Arc::new(tokio::sync::Semaphore::new(cfg.max_concurrent)),
        max: cfg.max_concurrent,
        access,
    });
    let app = routes()
        .into_iter()
        .fold(Router::new(), |r, (path, handler)| r.route(path, handler))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(gate_state, gate))
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for the API on {addr}: {e}"))?;
    Ok(async move { axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await })
}

#[utoipa::path(get, path = "/livez", tag = "health", responses((status = 200, description = "The process serves requests", body = Health)))]
async fn livez() -> Json<Health> {
    Json(Health { status: "ok".into(), height: None })
}

#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "Consensus runs", body = Health),
    (status = 503, description = "Not yet", body = ErrorBody)))]
async fn readyz(State(s): State<Arc<Shared>>) -> Response {
    if let Some(why) = s.not_ready() {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", why).into_response()
    } else {
        Json(Health { status: "ready".into(), height: Some(s.tip().height) }).into_response()
    }
}

#[utoipa::path(get, path = "/v1/openapi.json", tag = "health", responses((status = 200, description = "This document", body = Object)))]
async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[utoipa::path(get, path = "/v1/status", tag = "chain", responses((status = 200, description = "The node's view of the chain", body = StatusView)))]
async fn status(State(s): State<Arc<Shared>>) -> Json<StatusView> {
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

fn parse_height(text: &str) -> Result<u64, ApiError> {
    text.parse::<u64>().ok().filter(|h| *h >= 1).ok_or_else(|| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_height", format!("{text:?} is not a block height (1 or more)"))
    })
}

fn no_such_block(s: &Shared, height: u64) -> ApiError {
    let tip = s.tip().height;
    ApiError::new(StatusCode::NOT_FOUND, "no_such_block", format!("no block at height {height}; the tip is {tip}"))
}

fn load_block(s: &Shared, height: u64) -> Result<(Block, Commit), ApiError> {
    let block = s.store.block(height).map_err(ApiError::internal)?.ok_or_else(|| no_such_block(s, height))?;
    let commit = s.store.commit_at(height).map_err(ApiError::internal)?.ok_or_else(|| no_such_block(s, height))?;
    Ok((block, commit))
}

/// A committed block's header and commit certificate, without its transactions: what proofs and
/// checkpoints need (a block holds thousands of transactions; decoding them all for each proof
/// would cost more than the proof).
fn load_header(s: &Shared, height: u64) -> Result<(BlockHeader, Commit), ApiError> {
    let header = s.store.header(height).map_err(ApiError::internal)?.ok_or_else(|| no_such_block(s, height))?;
    let commit = s.store.commit_at(height).map_err(ApiError::internal)?.ok_or_else(|| no_such_block(s, height))?;
    Ok((header, commit))
}

fn note_of(s: &Shared, header: &BlockHeader, commit: &Commit) -> String {
    let cp = Checkpoint { origin: s.genesis.chain_id.clone(), size: header.log_size, root: header.log_root };
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
        "checkpoint": note_of(&s, &b.header, &commit),
    })))
}

#[utoipa::path(get, path = "/v1/blocks/{height}/raw", tag = "chain",
    params(("height" = u64, Path, description = "Block height, from 1")),
    responses((status = 200, description = "The block and its commit, canonical encodings", body = BlockRaw),
        (status = 400, body = ErrorBody), (status = 404, description = "No such block", body = ErrorBody)))]
async fn block_raw(State(s): State<Arc<Shared>>, Path(height): Path<String>) -> Result<Json<BlockRaw>, ApiError> {
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
async fn checkpoint(State(s): State<Arc<Shared>>) -> Result<Json<CheckpointView>, ApiError> {
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
async fn evidence(
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

/// A query string's parameters, or a 400 `bad_request` naming the form expected.
fn query<T>(
    q: Result<axum::extract::Query<T>, axum::extract::rejection::QueryRejection>,
    expected: &str,
) -> Result<T, ApiError> {
    q.map(|axum::extract::Query(v)| v)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", format!("expected {expected}: {e}")))
}

/// Most transactions in one batch submission.
const MAX_BATCH: usize = 1000;

fn decode_tx(text: &str) -> Result<SignedTx, ApiError> {
    let bytes = hex::decode(text.trim())
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_hex", format!("tx is not hex: {e}")))?;
    codec::decode(&bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_encoding", format!("tx does not decode: {e}")))
}

/// Admits one transaction and, if a client sent it (not a peer), forwards it to the other validators.
fn admit(s: &Shared, stx: SignedTx, forwarded: bool) -> Result<Hash32, ApiError> {
    let copy = (!forwarded && s.forwarder.is_some()).then(|| stx.clone());
    match s.submit(stx, forwarded) {
        Ok(id) => {
            if let (Some(f), Some(t)) = (&s.forwarder, copy) {
                f.push(&t);
            }
            Ok(id)
        }
        Err(AdmitError::Rejected(e)) => Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.code(), e.to_string())),
        Err(e @ AdmitError::Duplicate(_)) => Err(ApiError::new(StatusCode::CONFLICT, "duplicate", e.to_string())),
        Err(e @ AdmitError::Committed(..)) => Err(ApiError::new(StatusCode::CONFLICT, "committed", e.to_string())),
        Err(e @ AdmitError::Full { .. }) => {
            Err(ApiError::new(StatusCode::TOO_MANY_REQUESTS, "mempool_full", e.to_string()))
        }
        // A failure of this node's storage says nothing about the transaction: never a refusal.
        Err(AdmitError::Store(e)) => {
            tracing::error!(error = %e, "storage failed while checking a submitted transaction");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage",
                "this node cannot read its store; try another node",
            ))
        }
    }
}

fn is_forwarded(headers: &HeaderMap) -> bool {
    headers.contains_key(crate::forward::FORWARDED_HEADER)
}

#[utoipa::path(post, path = "/v1/txs", tag = "transactions", request_body = SubmitBody,
    responses(
        (status = 202, description = "Admitted; follow it at /v1/txs/{id}", body = TxState),
        (status = 400, description = "Not hex, does not decode, or not JSON", body = ErrorBody),
        (status = 409, description = "Already waiting or committed", body = ErrorBody),
        (status = 422, description = "Refused by the registry rules (code: unauthorised, nonce_used, revoked, …)", body = ErrorBody),
        (status = 429, description = "Mempool full; retry after Retry-After", body = ErrorBody),
        (status = 503, description = "Not ready or busy; retry after Retry-After", body = ErrorBody)))]
async fn submit(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Json<SubmitBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let mut signer = None;
    let result = (|| {
        let Json(body) = body.map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_request", format!("expected {{\"tx\": hex}}: {e}"))
        })?;
        let stx = decode_tx(&body.tx)?;
        signer = Some(stx.tx.signer.to_hex());
        if let Some(why) = s.not_ready() {
            return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", why));
        }
        admit(&s, stx, is_forwarded(&headers))
    })();
    let mut resp = match result {
        Ok(id) => (StatusCode::ACCEPTED, Json(pending(id))).into_response(),
        Err(e) => e.into_response(),
    };
    resp.extensions_mut().insert(Signers(signer.into_iter().collect()));
    resp
}

fn pending(id: Hash32) -> TxState {
    TxState { id: Some(id.to_hex()), status: Some("pending".into()), ..TxState::default() }
}

#[utoipa::path(post, path = "/v1/txs/batch", tag = "transactions", request_body = SubmitBatchBody,
    responses(
        (status = 200, description = "One result per transaction, in order: admitted, or its refusal", body = BatchResults),
        (status = 400, description = "Not JSON, or more than 1,000 transactions", body = ErrorBody),
        (status = 503, description = "Not ready or busy; retry after Retry-After", body = ErrorBody)))]
async fn submit_batch(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Json<SubmitBatchBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", format!("expected {{\"txs\": [hex, ...]}}: {e}"))
    })?;
    if body.txs.len() > MAX_BATCH {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "batch_too_large",
            format!("{} transactions in one batch; at most {MAX_BATCH}", body.txs.len()),
        ));
    }
    if let Some(why) = s.not_ready() {
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", why));
    }
    let forwarded = is_forwarded(&headers);
    let mut signers = std::collections::BTreeSet::new();
    let results = body
        .txs
        .iter()
        .map(|t| {
            let admitted = decode_tx(t).and_then(|stx| {
                signers.insert(stx.tx.signer.to_hex());
                admit(&s, stx, forwarded)
            });
            match admitted {
                Ok(id) => pending(id),
                Err(e) => TxState { code: Some(e.code.into()), message: Some(e.message), ..TxState::default() },
            }
        })
        .collect();
    let mut resp = Json(BatchResults { results }).into_response();
    resp.extensions_mut().insert(Signers(signers.into_iter().collect()));
    Ok(resp)
}

#[utoipa::path(get, path = "/v1/txs/{id}", tag = "transactions",
    params(("id" = String, Path, description = "Transaction id, 64 hex digits")),
    responses((status = 200, description = "Pending, or committed with its height and position", body = TxState),
        (status = 400, body = ErrorBody), (status = 404, description = "Neither pending nor committed here", body = ErrorBody)))]
async fn tx_status(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Result<Json<TxState>, ApiError> {
    let id = Hash32::from_hex(&id).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_id", format!("transaction id must be 64 hex digits: {e}"))
    })?;
    if let Some(loc) = s.store.tx_location(&id).map_err(ApiError::internal)? {
        return Ok(Json(TxState {
            id: Some(id.to_hex()),
            status: Some("committed".into()),
            height: Some(loc.height),
            position: Some(loc.position),
            ..TxState::default()
        }));
    }
    if s.mempool_contains(&id) {
        return Ok(Json(pending(id)));
    }
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_tx",
        format!("transaction {id} is neither pending nor committed here"),
    ))
}

#[utoipa::path(get, path = "/v1/accounts/{key}", tag = "registry",
    params(("key" = String, Path, description = "Ed25519 public key, 64 hex digits")),
    responses((status = 200, description = "Next nonce, clerk grant, administered agency", body = AccountView),
        (status = 400, body = ErrorBody)))]
async fn account(State(s): State<Arc<Shared>>, Path(key): Path<String>) -> Result<Json<AccountView>, ApiError> {
    let key = PublicKey::from_hex(&key)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_key", format!("not an Ed25519 public key: {e}")))?;
    let ws = s.store.write_set();
    let committed = s.registry.next_nonce(&ws, &key).map_err(ApiError::internal)?;
    let next = s.pending_next_nonce(&key).unwrap_or(committed);
    let grant = s.registry.grant(&ws, &key).map_err(ApiError::internal)?.map(|g| GrantView {
        agency: g.agency,
        kinds: g.kinds.iter().map(|k| k.as_str().to_string()).collect(),
        expires_ms: g.expires_ms,
        granted_height: g.granted_height,
        revoked_height: g.revoked_height,
    });
    let admin_of = s.genesis.agencies.iter().find(|a| a.admin_key == key).map(|a| a.name.clone());
    Ok(Json(AccountView { key: key.to_hex(), next_nonce: next, committed_nonce: committed, grant, admin_of }))
}

#[utoipa::path(get, path = "/v1/records/{digest}", tag = "registry",
    params(("digest" = String, Path, description = "sha256:HEX, blake3:HEX, or bare HEX (either)")),
    responses((status = 200, description = "Where the document is anchored as a single record, by which agency, and whether that record is current", body = RecordView),
        (status = 400, body = ErrorBody), (status = 404, description = "Not anchored as a single record (batched records are found by their batch root)", body = ErrorBody)))]
async fn record(State(s): State<Arc<Shared>>, Path(digest): Path<String>) -> Result<Json<RecordView>, ApiError> {
    let d = DocDigest::parse(&digest).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_digest", e))?;
    let ws = s.store.write_set();
    let found = match d {
        DocDigest::Sha256(h) => layout::get::<SingleBySha256, _>(&ws, &h),
        DocDigest::Blake3(h) => layout::get::<SingleByBlake3, _>(&ws, &h),
        DocDigest::Either(h) => match layout::get::<SingleBySha256, _>(&ws, &h) {
            Ok(None) => layout::get::<SingleByBlake3, _>(&ws, &h),
            other => other,
        },
    }
    .map_err(ApiError::internal)?;
    let Some(loc) = found else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_anchored",
            format!("no record with digest {digest} is anchored as a single entry"),
        ));
    };
    let entry =
        s.store.entry(loc.index).map_err(ApiError::internal)?.ok_or_else(|| ApiError::internal("entry missing"))?;
    let entry: sabt_core::entry::LogEntry = codec::decode(&entry).map_err(ApiError::internal)?;
    let sha = match &entry.body {
        EntryBody::Record(r) | EntryBody::Supersede { record: r, .. } => r.fingerprint.sha256,
        _ => return Err(ApiError::internal(format!("entry {} anchors no record", loc.index))),
    };
    let agency = s.registry.agency_of(&ws, &entry.signer).map_err(ApiError::internal)?.unwrap_or_default();
    let id = RecordId { sha256: sha, entry: loc.index, leaf: 0 };
    let status = s.registry.record_status(&ws, &id).map_err(ApiError::internal)?;
    Ok(Json(RecordView {
        digest,
        sha256: sha.to_hex(),
        index: loc.index,
        height: loc.height,
        signer: entry.signer.to_hex(),
        agency,
        status: status.as_ref().map_or("anchored", |st| st.state.as_str()).to_string(),
        change: status,
    }))
}

/// How often a status proof is rebuilt when a block commits while it is read.
const PROOF_ATTEMPTS: usize = 5;

#[utoipa::path(get, path = "/v1/records/{digest}/status", tag = "registry",
    params(("digest" = String, Path, description = "sha256:HEX or bare HEX (the status is kept under the SHA-256)"), RecordAt),
    responses((status = 200, description = "A status proof of one record (the document as anchored by one entry) at the latest block (docs/PROOFS.md §6a), for `sabt verify --status`", body = Object),
        (status = 400, body = ErrorBody), (status = 404, description = "No block yet, or no single anchoring of the document when no entry is given", body = ErrorBody),
        (status = 503, description = "A block committed while the proof was built; retry", body = ErrorBody)))]
async fn record_status(
    State(s): State<Arc<Shared>>,
    Path(digest): Path<String>,
    q: Result<axum::extract::Query<RecordAt>, axum::extract::rejection::QueryRejection>,
) -> Res {
    let q = query(q, "?entry=N&leaf=M (the record's anchoring entry and its leaf in that entry's batch)")?;
    let sha = match DocDigest::parse(&digest).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_digest", e))? {
        DocDigest::Sha256(h) | DocDigest::Either(h) => h,
        DocDigest::Blake3(_) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_digest",
                "a record's status is kept under its SHA-256 digest: give sha256:HEX",
            ));
        }
    };
    let entry =
        match q.entry {
            Some(e) => e,
            None => layout::get::<SingleBySha256, _>(&s.store.write_set(), &sha)
                .map_err(ApiError::internal)?
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::NOT_FOUND,
                        "not_anchored",
                        format!(
                            "sha256:{sha} is not anchored as a single record: give ?entry=N&leaf=M from its proof file"
                        ),
                    )
                })?
                .index,
        };
    let id = RecordId { sha256: sha, entry, leaf: q.leaf.unwrap_or(0) };
    let (state_proof, value, header, commit) = latest_state_proof(&s, StatusOf::key(&id))?;
    let proof = StatusProof {
        format: status::STATUS_FORMAT.to_string(),
        version: status::STATUS_VERSION,
        chain_id: s.genesis.chain_id.clone(),
        genesis_hash: s.genesis_hash,
        record: id,
        status: value.map(|v| StatusOf::decode(&v)).transpose().map_err(ApiError::internal)?,
        state_proof,
        header,
        commit,
    };
    serde_json::to_value(&proof).map(Json).map_err(ApiError::internal)
}

/// A state-map proof for `key` at the latest block, with the value's bytes, the block's header and
/// its commit certificate. The state is read without a snapshot: a block committed meanwhile makes
/// the proof disagree with the header, which is checked here, and the proof is built again.
/// A state-map proof, the value's bytes, and the committed block it is proven at.
type ProvenValue = (smt::SmtProof, Option<Vec<u8>>, BlockHeader, Commit);

fn latest_state_proof(s: &Shared, key: Hash32) -> Result<ProvenValue, ApiError> {
    for _ in 0..PROOF_ATTEMPTS {
        let tip = s.tip();
        if tip.height == 0 {
            return Err(ApiError::new(StatusCode::NOT_FOUND, "no_checkpoint", "no block is committed yet"));
        }
        let (header, commit) = load_header(s, tip.height)?;
        let ws = s.store.write_set();
        let proof = smt::prove(&ws, &key).map_err(ApiError::internal)?;
        let value = ws.state_get(&key).map_err(ApiError::internal)?;
        if proof.verify(&header.state_root, &key).ok() == Some(value.as_deref().map(smt::value_hash)) {
            return Ok((proof, value, header, commit));
        }
    }
    Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", "the state changed while the proof was built; retry"))
}

fn parcel_state(s: &Shared, cadastral: &str) -> Result<ParcelState, ApiError> {
    land::check_cadastral(cadastral)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_cadastral", e.to_string()))?;
    s.registry.parcel(&s.store.write_set(), cadastral).map_err(ApiError::internal)?.ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "no_such_parcel", format!("parcel {cadastral} is not registered"))
    })
}

#[utoipa::path(get, path = "/v1/parcels/{cadastral}", tag = "land",
    params(("cadastral" = String, Path, description = "Cadastral number"), AtHeight),
    responses((status = 200, description = "The parcel's state, now or as of block H: geometry (GeoJSON, WGS84), right, restrictions, version", body = Object),
        (status = 400, body = ErrorBody), (status = 404, description = "Not registered (then)", body = ErrorBody)))]
async fn parcel(
    State(s): State<Arc<Shared>>,
    Path(cadastral): Path<String>,
    q: Result<axum::extract::Query<AtHeight>, axum::extract::rejection::QueryRejection>,
) -> Res {
    let q = query(q, "?height=H (a block height)")?;
    let st = match q.height {
        None => parcel_state(&s, &cadastral)?,
        Some(h) => {
            let read = |i: u64| s.store.entry(i).ok().flatten().and_then(|b| codec::decode(&b).ok());
            let ix = s.parcels.read().unwrap_or_else(|p| p.into_inner());
            crate::parcels::state_as_of(&ix, &cadastral, h, u64::MAX, &read, 0).ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "no_such_parcel",
                    format!("parcel {cadastral} was not registered at height {h}"),
                )
            })?
        }
    };
    let crs = geo_io::Crs::from_epsg(s.genesis.params.land_crs_epsg).map_err(ApiError::internal)?;
    let geometry = geo_io::polygon_to_geojson(&crs, &st.parcel.geometry).map_err(ApiError::internal)?;
    Ok(Json(json!({
        "cadastral_number": st.parcel.cadastral,
        "category": st.parcel.category,
        "permitted_use": st.parcel.permitted_use,
        "area_m2": st.parcel.geometry.area_m2(),
        "geometry": geometry,
        "wkt": geo_io::polygon_to_wkt(&crs, &st.parcel.geometry).map_err(ApiError::internal)?,
        "right": st.right,
        "restrictions": st.restrictions,
        "version": st.version,
        "index": st.index,
        "height": st.height,
        "retired_height": st.retired_height,
        "crs": format!("EPSG:{}", crs.epsg),
    })))
}

#[utoipa::path(get, path = "/v1/parcels/at", tag = "land", params(LonLat),
    responses((status = 200, description = "The live parcels containing the point (inside or on the boundary), by cadastral number", body = Object),
        (status = 400, description = "Not a position the chain's CRS covers", body = ErrorBody)))]
async fn parcels_at(
    State(s): State<Arc<Shared>>,
    q: Result<axum::extract::Query<LonLat>, axum::extract::rejection::QueryRejection>,
) -> Res {
    let q = query(q, "?lon=DEG&lat=DEG (WGS84)")?;
    let crs = geo_io::Crs::from_epsg(s.genesis.params.land_crs_epsg).map_err(ApiError::internal)?;
    let point = crs.project(q.lon, q.lat).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_position", e))?;
    // The grid index in the state names every live parcel whose bounding box touches the cell.
    let cell = (point.x.div_euclid(land::CELL_MM), point.y.div_euclid(land::CELL_MM));
    let ws = s.store.write_set();
    let mut found = Vec::new();
    for cadastral in s.registry.cell_members(&ws, cell).map_err(ApiError::internal)? {
        let Some(st) = s.registry.parcel(&ws, &cadastral).map_err(ApiError::internal)? else { continue };
        let at = st.parcel.geometry.locate(point);
        if at != sabt_core::geometry::Location::Outside {
            let on = if at == sabt_core::geometry::Location::Boundary { "boundary" } else { "inside" };
            found.push(json!({"cadastral_number": cadastral, "where": on, "version": st.version}));
        }
    }
    Ok(Json(json!({"lon": q.lon, "lat": q.lat, "height": s.tip().height, "parcels": found})))
}

/// Most parcels in one box query.
const MAX_BOX_PARCELS: usize = 5000;

/// A live parcel as a GeoJSON Feature (WGS84).
fn parcel_feature(crs: &geo_io::Crs, st: &ParcelState) -> Result<Value, ApiError> {
    let geometry = geo_io::polygon_to_geojson(crs, &st.parcel.geometry).map_err(ApiError::internal)?;
    Ok(json!({
        "type": "Feature",
        "properties": {
            "cadastral_number": st.parcel.cadastral,
            "category": st.parcel.category,
            "permitted_use": st.parcel.permitted_use,
            "area_m2": st.parcel.geometry.area_m2(),
            "right": st.right.kind,
            "holders": st.right.holders.len(),
            "restrictions": st.restrictions.iter().map(|r| r.kind).collect::<Vec<_>>(),
            "version": st.version,
        },
        "geometry": geometry,
    }))
}

/// The named live parcels as a FeatureCollection.
fn feature_collection(s: &Shared, names: &[String]) -> Res {
    let crs = geo_io::Crs::from_epsg(s.genesis.params.land_crs_epsg).map_err(ApiError::internal)?;
    let ws = s.store.write_set();
    let mut features = Vec::with_capacity(names.len());
    for c in names {
        if let Some(st) = s.registry.parcel(&ws, c).map_err(ApiError::internal)?
            && st.retired_height.is_none()
        {
            features.push(parcel_feature(&crs, &st)?);
        }
    }
    Ok(Json(json!({"type": "FeatureCollection", "features": features})))
}

#[utoipa::path(get, path = "/v1/parcels", tag = "land", params(BoxQuery),
    responses((status = 200, description = "The live parcels whose bounding box meets the box, as a GeoJSON FeatureCollection (at most 5,000)", body = Object),
        (status = 400, body = ErrorBody)))]
async fn parcels_in_box(
    State(s): State<Arc<Shared>>,
    q: Result<axum::extract::Query<BoxQuery>, axum::extract::rejection::QueryRejection>,
) -> Res {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_bbox", m);
    let axum::extract::Query(q) = q.map_err(|e| bad(format!("expected ?bbox=minlon,minlat,maxlon,maxlat: {e}")))?;
    let v: Vec<f64> = q
        .bbox
        .split(',')
        .map(|x| x.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad(format!("{:?} is not minlon,minlat,maxlon,maxlat", q.bbox)))?;
    let [x0, y0, x1, y1] = v[..] else { return Err(bad("bbox needs four numbers".into())) };
    let crs = geo_io::Crs::from_epsg(s.genesis.params.land_crs_epsg).map_err(ApiError::internal)?;
    let corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
        .iter()
        .map(|&(lon, lat)| crs.project(lon, lat))
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?;
    let min = sabt_core::geometry::Point::new(
        corners.iter().map(|p| p.x).min().unwrap_or_default(),
        corners.iter().map(|p| p.y).min().unwrap_or_default(),
    );
    let max = sabt_core::geometry::Point::new(
        corners.iter().map(|p| p.x).max().unwrap_or_default(),
        corners.iter().map(|p| p.y).max().unwrap_or_default(),
    );
    let names = s
        .parcels
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .in_box(&sabt_core::geometry::BBox { min, max }, MAX_BOX_PARCELS);
    feature_collection(&s, &names)
}

#[utoipa::path(get, path = "/v1/parcels/export", tag = "land",
    responses((status = 200, description = "Every live parcel, as a GeoJSON FeatureCollection (WGS84) that opens in QGIS", body = Object)))]
async fn parcels_export(State(s): State<Arc<Shared>>) -> Res {
    let names: Vec<String> = s.parcels.read().unwrap_or_else(|p| p.into_inner()).live().cloned().collect();
    feature_collection(&s, &names)
}

#[utoipa::path(get, path = "/v1/parcels/{cadastral}/history", tag = "land",
    params(("cadastral" = String, Path, description = "Cadastral number")),
    responses((status = 200, description = "Every log entry that changed the parcel, oldest first: operation, version, height, time, signer", body = Object),
        (status = 404, description = "Never registered", body = ErrorBody)))]
async fn parcel_history(State(s): State<Arc<Shared>>, Path(cadastral): Path<String>) -> Res {
    let indices = s.parcels.read().unwrap_or_else(|p| p.into_inner()).history(&cadastral).to_vec();
    if indices.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_parcel",
            format!("parcel {cadastral} was never registered"),
        ));
    }
    let mut entries = Vec::new();
    for i in indices {
        let bytes = s.store.entry(i).map_err(ApiError::internal)?.ok_or_else(|| ApiError::internal("entry missing"))?;
        let e: sabt_core::entry::LogEntry = codec::decode(&bytes).map_err(ApiError::internal)?;
        if let EntryBody::Land(l) = &e.body {
            entries.push(json!({
                "index": i,
                "height": e.height,
                "time_ms": e.time_ms,
                "signer": e.signer.to_hex(),
                "tx": e.tx.to_hex(),
                "operation": l.op.name(),
                "version": if l.op.cadastral() == cadastral { Some(l.version) } else { None },
                "detail": l.op,
            }));
        }
    }
    Ok(Json(json!({"cadastral_number": cadastral, "entries": entries})))
}

#[utoipa::path(get, path = "/v1/structures/{id}", tag = "land",
    params(("id" = String, Path, description = "The building's or road's registry number")),
    responses((status = 200, description = "The structure: kind, parcels, description, geometry (GeoJSON, WGS84), retirement", body = Object),
        (status = 400, body = ErrorBody), (status = 404, description = "Not registered", body = ErrorBody)))]
async fn structure(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Res {
    land::check_cadastral(&id).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_id", e.to_string()))?;
    let st = s.registry.structure(&s.store.write_set(), &id).map_err(ApiError::internal)?.ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "no_such_structure", format!("structure {id} is not registered"))
    })?;
    let crs = geo_io::Crs::from_epsg(s.genesis.params.land_crs_epsg).map_err(ApiError::internal)?;
    let geometry = match (&st.structure.footprint, &st.structure.line) {
        (Some(f), _) => geo_io::polygon_to_geojson(&crs, f),
        (None, Some(l)) => geo_io::line_to_geojson(&crs, l),
        (None, None) => Ok(Value::Null),
    }
    .map_err(ApiError::internal)?;
    Ok(Json(json!({
        "id": st.structure.id,
        "kind": st.structure.kind,
        "parcels": st.structure.parcels,
        "description": st.structure.description,
        "geometry": geometry,
        "index": st.index,
        "height": st.height,
        "retired_height": st.retired_height,
    })))
}

#[utoipa::path(get, path = "/v1/parcels/{cadastral}/proof", tag = "land",
    params(("cadastral" = String, Path, description = "Cadastral number")),
    responses((status = 200, description = "A proof of the parcel's state (or absence) at the latest block, for `sabt parcel verify`", body = Object),
        (status = 400, body = ErrorBody), (status = 503, description = "A block committed while the proof was built; retry", body = ErrorBody)))]
async fn parcel_proof(State(s): State<Arc<Shared>>, Path(cadastral): Path<String>) -> Res {
    land::check_cadastral(&cadastral)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_cadastral", e.to_string()))?;
    let (state_proof, value, header, commit) = latest_state_proof(&s, ParcelOf::key(&cadastral))?;
    let proof = status::ParcelProof {
        format: status::PARCEL_FORMAT.to_string(),
        version: status::PARCEL_VERSION,
        chain_id: s.genesis.chain_id.clone(),
        genesis_hash: s.genesis_hash,
        cadastral,
        state: value.map(|v| ParcelOf::decode(&v)).transpose().map_err(ApiError::internal)?,
        state_proof,
        header,
        commit,
    };
    serde_json::to_value(&proof).map(Json).map_err(ApiError::internal)
}

#[utoipa::path(get, path = "/v1/entries/{index}/proof", tag = "registry",
    params(("index" = u64, Path, description = "Log index"), AtHeight),
    responses((status = 200, description = "The entry, its inclusion path and the cosigned checkpoint of the latest (or the given) block", body = EntryProofView),
        (status = 400, body = ErrorBody), (status = 404, description = "Not committed, or not yet at that height", body = ErrorBody)))]
async fn entry_proof(
    State(s): State<Arc<Shared>>,
    Path(index): Path<String>,
    q: Result<axum::extract::Query<AtHeight>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<EntryProofView>, ApiError> {
    let index: u64 = index
        .parse()
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "bad_index", format!("{index:?} is not a log index")))?;
    let q = query(q, "?height=H (a block height)")?;
    let height = q.height.unwrap_or_else(|| s.tip().height);
    if height == 0 {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no_checkpoint", "no block is committed yet"));
    }
    let (header, commit) = load_header(&s, height)?;
    if index >= header.log_size {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_entry",
            format!("log index {index} is not in the log at height {height}, which holds {} entries", header.log_size),
        ));
    }
    let path = s.store.inclusion_path(index, header.log_size).map_err(ApiError::internal)?;
    let encoded =
        s.store.entry(index).map_err(ApiError::internal)?.ok_or_else(|| ApiError::internal("entry missing"))?;
    Ok(Json(EntryProofView {
        index,
        encoded: hex::encode(encoded),
        size: header.log_size,
        path: path.iter().map(|h| h.to_hex()).collect(),
        height,
        checkpoint: note_of(&s, &header, &commit),
    }))
}

#[utoipa::path(get, path = "/v1/genesis", tag = "chain",
    responses((status = 200, description = "The genesis document this node runs (docs/PROOFS.md §1.1)", body = Object)))]
async fn genesis(State(s): State<Arc<Shared>>) -> Res {
    serde_json::to_value(&s.genesis).map(Json).map_err(ApiError::internal)
}

#[utoipa::path(get, path = "/v1/batches/{root}", tag = "registry",
    params(("root" = String, Path, description = "Batch root, 64 hex digits")),
    responses((status = 200, description = "Where the batch is anchored", body = BatchView),
        (status = 400, body = ErrorBody), (status = 404, description = "Not anchored", body = ErrorBody)))]
async fn batch(State(s): State<Arc<Shared>>, Path(root): Path<String>) -> Result<Json<BatchView>, ApiError> {
    let root = Hash32::from_hex(&root).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_root", format!("batch root must be 64 hex digits: {e}"))
    })?;
    let ws = s.store.write_set();
    match layout::get::<BatchByRoot, _>(&ws, &root).map_err(ApiError::internal)? {
        Some(loc) => {
            let entry = s
                .store
                .entry(loc.index)
                .map_err(ApiError::internal)?
                .ok_or_else(|| ApiError::internal("entry missing"))?;
            let signer = codec::decode::<sabt_core::entry::LogEntry>(&entry).map_err(ApiError::internal)?.signer;
            let agency = s.registry.agency_of(&ws, &signer).map_err(ApiError::internal)?.unwrap_or_default();
            Ok(Json(BatchView {
                root: root.to_hex(),
                index: loc.index,
                height: loc.height,
                signer: signer.to_hex(),
                agency,
                status: "anchored".into(),
            }))
        }
        None => {
            Err(ApiError::new(StatusCode::NOT_FOUND, "not_anchored", format!("no batch with root {root} is anchored")))
        }
    }
}

#[utoipa::path(get, path = "/v1/consistency", tag = "chain", params(Sizes),
    responses((status = 200, description = "RFC 9162 consistency proof between two committed log sizes", body = ConsistencyView),
        (status = 400, body = ErrorBody)))]
async fn consistency(
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt as _;

    fn request(path: &str) -> Request {
        axum::http::Request::builder()
            .uri(path)
            .extension(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 9))))
            .body(Body::empty())
            .unwrap()
    }

    #[test]
    fn the_openapi_document_describes_every_route_and_nothing_else() {
        let doc = ApiDoc::openapi();
        let documented: std::collections::BTreeSet<(String, &str)> = doc
            .paths
            .paths
            .iter()
            .flat_map(|(p, item)| {
                [("GET", item.get.is_some()), ("POST", item.post.is_some())]
                    .into_iter()
                    .filter(|m| m.1)
                    .map(move |m| (p.clone(), m.0))
            })
            .collect();
        let served: std::collections::BTreeSet<(String, &str)> = routes()
            .into_iter()
            .map(|(p, _)| (p.to_string(), if p == "/v1/txs" || p == "/v1/txs/batch" { "POST" } else { "GET" }))
            .collect();
        assert_eq!(documented, served);
        let json: Value = serde_json::from_str(&doc.to_json().unwrap()).unwrap();
        assert_eq!(json["openapi"], "3.1.0");
        let submit = &json["paths"]["/v1/txs"]["post"];
        assert!(submit["responses"]["429"].is_object() && submit["responses"]["503"].is_object());
        assert!(json["components"]["schemas"]["RecordView"]["properties"]["sha256"].is_object());
    }

    #[tokio::test]
    async fn over_the_limit_is_503_with_retry_after_and_served_requests_are_logged() {
        let dir = tempfile::tempdir().unwrap();
        let (access, _failed) = access::open(&dir.path().join("access.log")).unwrap();
        let permits = Arc::new(tokio::sync::Semaphore::new(1));
        let g = Arc::new(Gate { permits: permits.clone(), max: 1, access: access.clone() });
        let release = Arc::new(tokio::sync::Notify::new());
        let r = release.clone();
        let app: Router = Router::new()
            .route(
                "/v1/slow",
                get(move || {
                    let r = r.clone();
                    async move {
                        r.notified().await;
                        "done"
                    }
                }),
            )
            .layer(axum::middleware::from_fn_with_state(g, gate));
        let first = tokio::spawn(app.clone().oneshot(request("/v1/slow?x=1")));
        while permits.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let second = app.clone().oneshot(request("/v1/slow")).await.unwrap();
        assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(second.headers().get(header::RETRY_AFTER).unwrap(), "1");
        release.notify_one();
        assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
        for _ in 0..200 {
            if access.head_seq() >= 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let text = std::fs::read_to_string(dir.path().join("access.log")).unwrap();
        assert_eq!(access::verify(text.as_bytes()).unwrap().seq, 1);
        let line: access::AccessLine = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!((line.target.as_str(), line.status, line.outcome.as_str()), ("/v1/slow?x=1", 200, "ok"));
    }
}
