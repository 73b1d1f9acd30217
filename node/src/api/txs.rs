//! Submitting transactions and following them.

use super::gate::Forwarded;
use super::{ApiError, Signers};
use crate::mempool::AdmitError;
use crate::node::Shared;
use crate::schema::*;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sabt_core::codec;
use sabt_core::hash::Hash32;
use sabt_core::tx::SignedTx;
use std::sync::Arc;

/// Most transactions in one batch submission.
const MAX_BATCH: usize = 1000;

pub(super) fn decode_tx(text: &str) -> Result<SignedTx, ApiError> {
    let bytes = hex::decode(text.trim())
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_hex", format!("tx is not hex: {e}")))?;
    codec::decode(&bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_encoding", format!("tx does not decode: {e}")))
}

/// Admits one transaction and, if a client sent it (not a peer), forwards it to the other validators.
pub(super) fn admit(s: &Shared, stx: SignedTx, forwarded: bool) -> Result<Hash32, ApiError> {
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

#[utoipa::path(post, path = "/v1/txs", tag = "transactions", request_body = SubmitBody,
    responses(
        (status = 202, description = "Admitted; follow it at /v1/txs/{id}", body = TxState),
        (status = 400, description = "Not hex, does not decode, or not JSON", body = ErrorBody),
        (status = 409, description = "Already waiting or committed", body = ErrorBody),
        (status = 422, description = "Refused by the registry rules (code: unauthorised, nonce_used, revoked, …)", body = ErrorBody),
        (status = 429, description = "Mempool full; retry after Retry-After", body = ErrorBody),
        (status = 503, description = "Not ready or busy; retry after Retry-After", body = ErrorBody)))]
pub(super) async fn submit(
    State(s): State<Arc<Shared>>,
    forwarded: Option<axum::Extension<Forwarded>>,
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
        admit(&s, stx, forwarded.is_some())
    })();
    let mut resp = match result {
        Ok(id) => (StatusCode::ACCEPTED, Json(pending(id))).into_response(),
        Err(e) => e.into_response(),
    };
    resp.extensions_mut().insert(Signers(signer.into_iter().collect()));
    resp
}

pub(super) fn pending(id: Hash32) -> TxState {
    TxState { id: Some(id.to_hex()), status: Some("pending".into()), ..TxState::default() }
}

#[utoipa::path(post, path = "/v1/txs/batch", tag = "transactions", request_body = SubmitBatchBody,
    responses(
        (status = 200, description = "One result per transaction, in order: admitted, or its refusal", body = BatchResults),
        (status = 400, description = "Not JSON, or more than 1,000 transactions", body = ErrorBody),
        (status = 503, description = "Not ready or busy; retry after Retry-After", body = ErrorBody)))]
pub(super) async fn submit_batch(
    State(s): State<Arc<Shared>>,
    forwarded: Option<axum::Extension<Forwarded>>,
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
    let forwarded = forwarded.is_some();
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
pub(super) async fn tx_status(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Result<Json<TxState>, ApiError> {
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
