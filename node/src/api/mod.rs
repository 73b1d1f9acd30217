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
//! | `GET /v1/parcels?bbox=minlon,minlat,maxlon,maxlat[&after=C&limit=N]` | live parcels in a box, GeoJSON FeatureCollection, a page at a time (`next`: the cursor of the next page) |
//! | `GET /v1/parcels/export` | every parcel live at one block, GeoJSON FeatureCollection (opens in QGIS), streamed in constant memory |
//! | `GET /v1/parcels/{cadastral}/history[?after=I&limit=N]` | the entries that changed the parcel, oldest first, a page at a time |
//! | `GET /v1/structures/{id}` | a building or road: kind, parcels, geometry (GeoJSON), retirement |
//! | `GET /v1/parcels/{cadastral}/proof` | a proof of that state (or of absence) at the latest block |
//! | `GET /v1/evidence[?from=H]` | equivocation evidence this node kept (two conflicting messages a validator signed), from height H, at most 100 |
//! | `GET /v1/openapi.json` | this API as an OpenAPI 3.1 document ([`ApiDoc`]) |
//!
//! Errors are `{"code": "...", "message": "..."}` with a stable code; a full mempool answers 429
//! with `Retry-After`. Every `/v1` request passes the limits of [`gate`] first (per client
//! address, [`limits`]; timeouts, [`listener`]): beyond them the answer is 429 or 503 with
//! `Retry-After`, never a wait; `/livez` and `/readyz` pass none of them. Handlers run on the
//! blocking pool of the API's own runtime. Every `/v1` request the limits let through is recorded
//! in the hash-chained access log ([`crate::access`]).

mod chain;
mod gate;
mod health;
mod land;
mod limits;
mod listener;
mod registry;
mod txs;

use gate::Gate;

use crate::access::AccessLog;
use crate::node::Shared;
use crate::schema::ErrorBody;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use axum::{Json, Router};
use sabt_core::block::{Block, BlockHeader, Commit};
use sabt_core::checkpoint::{Checkpoint, note_from_cosignatures};
use sabt_core::hash::Hash32;
use sabt_core::registry::Ledger as _;
use sabt_core::smt;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use utoipa::OpenApi;

/// An API error.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<std::time::Duration>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), retry_after: None }
    }

    /// Names the wait before a retry (`Retry-After`, whole seconds, at least 1); 429 and 503
    /// answers say 1 s unless told otherwise.
    fn retry_after(mut self, wait: std::time::Duration) -> Self {
        self.retry_after = Some(wait);
        self
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
            let secs = self.retry_after.map_or(1, |w| w.as_secs() + u64::from(w.subsec_nanos() > 0)).max(1);
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        r
    }
}

type Res = Result<Json<Value>, ApiError>;

fn routes() -> Vec<(&'static str, MethodRouter<Arc<Shared>>)> {
    vec![
        ("/livez", get(health::livez)),
        ("/readyz", get(health::readyz)),
        ("/v1/openapi.json", get(health::openapi)),
        ("/v1/status", get(chain::status)),
        ("/v1/blocks/{height}", get(chain::block)),
        ("/v1/blocks/{height}/raw", get(chain::block_raw)),
        ("/v1/checkpoint", get(chain::checkpoint)),
        ("/v1/evidence", get(chain::evidence)),
        ("/v1/txs", post(txs::submit)),
        ("/v1/txs/batch", post(txs::submit_batch)),
        ("/v1/txs/{id}", get(txs::tx_status)),
        ("/v1/accounts/{key}", get(registry::account)),
        ("/v1/records/{digest}", get(registry::record)),
        ("/v1/records/{digest}/status", get(registry::record_status)),
        ("/v1/batches/{root}", get(registry::batch)),
        ("/v1/genesis", get(chain::genesis)),
        ("/v1/consistency", get(chain::consistency)),
        ("/v1/entries/{index}/proof", get(registry::entry_proof)),
        ("/v1/parcels", get(land::parcels_in_box)),
        ("/v1/parcels/at", get(land::parcels_at)),
        ("/v1/parcels/export", get(land::parcels_export)),
        ("/v1/parcels/{cadastral}/history", get(land::parcel_history)),
        ("/v1/structures/{id}", get(land::structure)),
        ("/v1/parcels/{cadastral}", get(land::parcel)),
        ("/v1/parcels/{cadastral}/proof", get(land::parcel_proof)),
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
        health::livez,
        health::readyz,
        health::openapi,
        chain::status,
        chain::block,
        chain::block_raw,
        chain::checkpoint,
        chain::evidence,
        txs::submit,
        txs::submit_batch,
        txs::tx_status,
        registry::account,
        registry::record,
        registry::record_status,
        registry::batch,
        chain::genesis,
        chain::consistency,
        registry::entry_proof,
        land::parcel,
        land::parcels_at,
        land::parcels_in_box,
        land::parcels_export,
        land::parcel_history,
        land::parcel_proof,
        land::structure
    ),
    components(schemas(ErrorBody)),
    modifiers(&Limited),
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

/// A piece of a streamed answer: data, or the mark that the answer is whole.
#[derive(Debug)]
enum Piece {
    Data(bytes::Bytes),
    End,
}

/// A streamed answer's body: the pieces a producer sends through a bounded channel, in order. An
/// answer whose producer stops before sending [`Piece::End`] (an error, its time up, a panic)
/// ends in an error, so the client sees it cut off, never as whole.
#[derive(Debug)]
struct Chunks {
    rx: tokio::sync::mpsc::Receiver<Piece>,
    ended: bool,
}

impl http_body::Body for Chunks {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>> {
        if self.ended {
            return std::task::Poll::Ready(None);
        }
        self.rx.poll_recv(cx).map(|piece| match piece {
            Some(Piece::Data(b)) => Some(Ok(http_body::Frame::data(b))),
            Some(Piece::End) => {
                self.ended = true;
                None
            }
            None => {
                self.ended = true;
                Some(Err(std::io::Error::other("the answer was cut off before its end")))
            }
        })
    }
}

/// Adds to every `/v1` operation the answers of the limits every request passes ([`gate`]):
/// 408 and 413 for a body, 429 and 503 with `Retry-After`, and 403 for a forged forwarding mark.
#[derive(Debug)]
struct Limited;

impl utoipa::Modify for Limited {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, ResponseBuilder, schema};
        let answer = |description: &str, retry: bool| {
            let mut r = ResponseBuilder::new().description(description).content(
                "application/json",
                ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
            );
            if retry {
                r = r.header(
                    "Retry-After",
                    HeaderBuilder::new()
                        .schema(schema::ObjectBuilder::new().schema_type(schema::Type::Integer).minimum(Some(1)))
                        .description(Some("Seconds to wait before the request is made again"))
                        .build(),
                );
            }
            r.build()
        };
        for (path, item) in doc.paths.paths.iter_mut().filter(|(p, _)| p.starts_with("/v1/")) {
            let post = item.post.is_some();
            for op in [item.get.as_mut(), item.post.as_mut()].into_iter().flatten() {
                // An answer the handler declares already keeps its description, with the
                // limits' added (a 429 for a full mempool, a 503 before the node is ready).
                let mut add = |code: &str, description: &str, retry: bool| {
                    let declared = match op.responses.responses.get(code) {
                        Some(utoipa::openapi::RefOr::T(r)) => Some(r.description.clone()),
                        _ => None,
                    };
                    let description = declared.map_or(description.to_string(), |d| format!("{d}; or: {description}"));
                    op.responses.responses.insert(code.to_string(), answer(&description, retry).into());
                };
                add(
                    "429",
                    "Over this client address's limits (code: too_many_connections, too_many_requests, rate_limited) or, for a submission, mempool_full",
                    true,
                );
                add("503", "Busy (its limit of requests at once), timeout, or not ready", true);
                if post {
                    add("408", "The body did not arrive within api.body_timeout_ms", false);
                    add("413", "The body is larger than api.max_body_bytes", false);
                }
                if path.starts_with("/v1/txs") && post {
                    add(
                        "403",
                        "The forwarding mark (x-sabt-forwarded) is not a validator's signature over this body (forged_forward)",
                        false,
                    );
                }
            }
        }
    }
}

/// Binds the API on `cfg.listen`; the returned future serves it, and is meant to run on a
/// runtime of its own, apart from consensus ([`crate::node::run`]).
pub fn serve(
    shared: Arc<Shared>,
    access: AccessLog,
    cfg: crate::config::Api,
) -> anyhow::Result<impl std::future::Future<Output = std::io::Result<()>>> {
    let addr = cfg.listen;
    let metrics = shared.metrics.clone();
    let clients = limits::Clients::new(limits::Limits::from_config(&cfg), metrics.api_connections.clone());
    let gate_state = Arc::new(Gate {
        permits: Arc::new(tokio::sync::Semaphore::new(cfg.max_concurrent)),
        max: cfg.max_concurrent,
        workers: Arc::new(tokio::sync::Semaphore::new(cfg.workers)),
        // Each peer's forwarder sends one batch at a time: four each is room to spare.
        forwarded: Arc::new(tokio::sync::Semaphore::new(4 * shared.validator_set.validators().len())),
        access,
        clients: clients.clone(),
        max_body: cfg.max_body_bytes,
        body_timeout: Duration::from_millis(cfg.body_timeout_ms),
        request_timeout: Duration::from_millis(cfg.request_timeout_ms),
        validators: shared.validator_set.clone(),
        genesis_hash: shared.genesis_hash,
        metrics: metrics.clone(),
    });
    let app = routes()
        .into_iter()
        .fold(Router::new(), |r, (path, handler)| r.route(path, handler))
        .layer(DefaultBodyLimit::max(cfg.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(gate_state, gate::gate))
        .with_state(shared);
    // Bound here, so that a taken address stops the start; listening begins on the API's runtime.
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr).map_err(|e| anyhow::anyhow!("cannot listen for the API on {addr}: {e}"))?;
    let header_timeout = Duration::from_millis(cfg.header_timeout_ms);
    Ok(async move {
        // A deep accept queue: hundreds of clients connecting at once (as slow attackers do)
        // would otherwise overflow the default of 128, and a health probe's connection would
        // wait for the kernel's one-second retry.
        let listener = socket.listen(listener::BACKLOG)?;
        listener::run(listener, app, clients, header_timeout, metrics).await
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

/// A query string's parameters, or a 400 `bad_request` naming the form expected.
fn query<T>(
    q: Result<axum::extract::Query<T>, axum::extract::rejection::QueryRejection>,
    expected: &str,
) -> Result<T, ApiError> {
    q.map(|axum::extract::Query(v)| v)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", format!("expected {expected}: {e}")))
}

/// A state-map proof, the value's bytes, and the committed block it is proven at.
type ProvenValue = (smt::SmtProof, Option<Vec<u8>>, BlockHeader, Commit);

/// A state-map proof for `key` at the latest block, with the value's bytes, the block's header and
/// its commit certificate, all read from one snapshot of the store: a block that commits
/// meanwhile is not seen by any of them.
fn latest_state_proof(s: &Shared, key: Hash32) -> Result<ProvenValue, ApiError> {
    let snap = s.store.snapshot();
    let tip = snap.tip().map_err(ApiError::internal)?.map_or(0, |t| t.height);
    if tip == 0 {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no_checkpoint", "no block is committed yet"));
    }
    let missing = || ApiError::internal(format!("block {tip} is the tip but is not stored whole"));
    let header = snap.header(tip).map_err(ApiError::internal)?.ok_or_else(missing)?;
    let commit = snap.commit_at(tip).map_err(ApiError::internal)?.ok_or_else(missing)?;
    let proof = smt::prove(&snap, &key).map_err(ApiError::internal)?;
    let value = snap.state_get(&key).map_err(ApiError::internal)?;
    if proof.verify(&header.state_root, &key).ok() != Some(value.as_deref().map(smt::value_hash)) {
        return Err(ApiError::internal(format!("the state proof read at height {tip} does not match its header")));
    }
    Ok((proof, value, header, commit))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

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
        for (path, item) in json["paths"].as_object().unwrap().iter().filter(|(p, _)| p.starts_with("/v1/")) {
            for op in item.as_object().unwrap().values() {
                let limited = &op["responses"]["429"];
                assert!(limited["headers"]["Retry-After"].is_object(), "{path}: 429 declares Retry-After");
            }
        }
        assert!(json["paths"]["/v1/txs/batch"]["post"]["responses"]["403"].is_object());
        assert!(json["paths"]["/livez"]["get"]["responses"]["429"].is_null(), "health probes are never limited");
        assert!(json["components"]["schemas"]["RecordView"]["properties"]["sha256"].is_object());
    }
}
