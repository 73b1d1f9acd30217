//! Anchored records, batches, accounts, and proofs of log entries and record status.

use super::{ApiError, Res, latest_state_proof, load_header, note_of, query};
use crate::node::Shared;
use crate::schema::*;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use sabt_core::codec;
use sabt_core::entry::EntryBody;
use sabt_core::fingerprint::DocDigest;
use sabt_core::hash::Hash32;
use sabt_core::registry::RecordId;
use sabt_core::registry::schema::{self as layout, BatchByRoot, SingleByBlake3, SingleBySha256, Slot as _, StatusOf};
use sabt_core::sign::PublicKey;
use sabt_core::status::{self, StatusProof};
use std::sync::Arc;

#[utoipa::path(get, path = "/v1/accounts/{key}", tag = "registry",
    params(("key" = String, Path, description = "Ed25519 public key, 64 hex digits")),
    responses((status = 200, description = "Next nonce, clerk grant, administered agency", body = AccountView),
        (status = 400, body = ErrorBody)))]
pub(super) async fn account(
    State(s): State<Arc<Shared>>,
    Path(key): Path<String>,
) -> Result<Json<AccountView>, ApiError> {
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
pub(super) async fn record(
    State(s): State<Arc<Shared>>,
    Path(digest): Path<String>,
) -> Result<Json<RecordView>, ApiError> {
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

#[utoipa::path(get, path = "/v1/records/{digest}/status", tag = "registry",
    params(("digest" = String, Path, description = "sha256:HEX or bare HEX (the status is kept under the SHA-256)"), RecordAt),
    responses((status = 200, description = "A status proof of one record (the document as anchored by one entry) at the latest block (docs/PROOFS.md §6a), for `sabt verify --status`", body = Object),
        (status = 400, body = ErrorBody), (status = 404, description = "No block yet, or no single anchoring of the document when no entry is given", body = ErrorBody)))]
pub(super) async fn record_status(
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

#[utoipa::path(get, path = "/v1/entries/{index}/proof", tag = "registry",
    params(("index" = u64, Path, description = "Log index"), AtHeight),
    responses((status = 200, description = "The entry, its inclusion path and the cosigned checkpoint of the latest (or the given) block", body = EntryProofView),
        (status = 400, body = ErrorBody), (status = 404, description = "Not committed, or not yet at that height", body = ErrorBody)))]
pub(super) async fn entry_proof(
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

#[utoipa::path(get, path = "/v1/batches/{root}", tag = "registry",
    params(("root" = String, Path, description = "Batch root, 64 hex digits")),
    responses((status = 200, description = "Where the batch is anchored", body = BatchView),
        (status = 400, body = ErrorBody), (status = 404, description = "Not anchored", body = ErrorBody)))]
pub(super) async fn batch(State(s): State<Arc<Shared>>, Path(root): Path<String>) -> Result<Json<BatchView>, ApiError> {
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
