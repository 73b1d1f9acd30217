//! Parcels and structures: state now or as of a block, spatial queries, history, proofs.

use super::{ApiError, Piece, Res, latest_state_proof, query};
use crate::node::Shared;
use crate::schema::*;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use sabt_core::codec;
use sabt_core::entry::EntryBody;
use sabt_core::geo_io;
use sabt_core::land::{self, ParcelState};
use sabt_core::registry::schema::{ParcelOf, Slot as _};
use sabt_core::status::{self};
use serde_json::{Value, json};
use std::sync::Arc;

pub(super) fn parcel_state(s: &Shared, cadastral: &str) -> Result<ParcelState, ApiError> {
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
pub(super) async fn parcel(
    State(s): State<Arc<Shared>>,
    Path(cadastral): Path<String>,
    q: Result<axum::extract::Query<AtHeight>, axum::extract::rejection::QueryRejection>,
) -> Res {
    let q = query(q, "?height=H (a block height)")?;
    let st = match q.height {
        None => parcel_state(&s, &cadastral)?,
        Some(h) => {
            let read = |i: u64| s.store.entry(i).ok().flatten().and_then(|b| codec::decode(&b).ok());
            // The index's lock is taken for each parcel's list of entries only, never while
            // entries are read: a commit extends the index under that lock.
            let history = |c: &str| s.parcels.read().unwrap_or_else(|p| p.into_inner()).history(c).to_vec();
            crate::parcels::state_as_of(&history, &cadastral, h, u64::MAX, &read, 0).ok_or_else(|| {
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
pub(super) async fn parcels_at(
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
pub(super) fn parcel_feature(crs: &geo_io::Crs, st: &ParcelState) -> Result<Value, ApiError> {
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

/// The named parcels live in one snapshot of the state, as a FeatureCollection, with the height
/// it is read at and the cursor of the next page (`next`, GeoJSON foreign members).
pub(super) fn feature_collection(s: &Shared, names: &[String], next: Option<String>) -> Res {
    let crs = geo_io::Crs::from_epsg(s.genesis.params.land_crs_epsg).map_err(ApiError::internal)?;
    let snap = s.store.snapshot();
    let height = snap.tip().map_err(ApiError::internal)?.map_or(0, |t| t.height);
    let mut features = Vec::with_capacity(names.len());
    for c in names {
        if let Some(st) = s.registry.parcel(&snap, c).map_err(ApiError::internal)?
            && st.retired_height.is_none()
        {
            features.push(parcel_feature(&crs, &st)?);
        }
    }
    Ok(Json(json!({"type": "FeatureCollection", "height": height, "features": features, "next": next})))
}

#[utoipa::path(get, path = "/v1/parcels", tag = "land", params(BoxQuery),
    responses((status = 200, description = "The live parcels whose bounding box meets the box, as a GeoJSON FeatureCollection in cadastral order, a page at a time (at most 5,000; next: the cursor of the next page, or null; height: the block read at)", body = Object),
        (status = 400, body = ErrorBody)))]
pub(super) async fn parcels_in_box(
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
    let limit = q.limit.unwrap_or(MAX_BOX_PARCELS).clamp(1, MAX_BOX_PARCELS);
    if let Some(a) = &q.after {
        land::check_cadastral(a).map_err(|e| bad(format!("after: {e}")))?;
    }
    let (names, more) = s.parcels.read().unwrap_or_else(|p| p.into_inner()).in_box(
        &sabt_core::geometry::BBox { min, max },
        q.after.as_deref(),
        limit,
    );
    let next = if more { names.last().cloned() } else { None };
    feature_collection(&s, &names, next)
}

/// Exports streamed at once; beyond, 503 `busy`.
static EXPORTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
/// Parcels read (and sent) at a time by an export.
const EXPORT_PAGE: usize = 500;
/// The longest an export may take: a client that reads it slower than that is cut off, so that a
/// stranger reading a byte at a time cannot hold the exports' places for ever.
const EXPORT_TIME: std::time::Duration = std::time::Duration::from_secs(600);

#[utoipa::path(get, path = "/v1/parcels/export", tag = "land",
    responses((status = 200, description = "Every parcel live at one block, as a GeoJSON FeatureCollection (WGS84) that opens in QGIS, with that block's height; streamed in constant memory, cut off (an incomplete answer) if not read within 10 minutes", content_type = "application/geo+json", body = Object),
        (status = 503, description = "Two exports are being streamed already; retry after Retry-After", body = ErrorBody)))]
pub(super) async fn parcels_export(State(s): State<Arc<Shared>>) -> Result<Response, ApiError> {
    let permit = EXPORTS.try_acquire().map_err(|_| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", "two exports are being streamed already; retry shortly")
    })?;
    let crs = geo_io::Crs::from_epsg(s.genesis.params.land_crs_epsg).map_err(ApiError::internal)?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let deadline = tokio::time::Instant::now() + EXPORT_TIME;
    // Read page by page on a thread of its own, each page sent before the next is read: the
    // channel's four pieces and one page are all the export ever holds.
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let handle = tokio::runtime::Handle::current();
        let send =
            |piece: Piece| handle.block_on(tokio::time::timeout_at(deadline, tx.send(piece))).is_ok_and(|r| r.is_ok());
        match export(&s, &crs, &send) {
            Ok(true) => {
                send(Piece::End);
            }
            Ok(false) => {
                tracing::info!("a parcel export was not read to its end within its time, or its client went away")
            }
            Err(e) => tracing::error!(error = %e, "the parcel export failed part way; the client gets a cut answer"),
        }
    });
    Ok(([(header::CONTENT_TYPE, "application/geo+json")], axum::body::Body::new(super::Chunks { rx, ended: false }))
        .into_response())
}

/// Sends every parcel live in one snapshot of the state through `send`, page by page: true once
/// all is sent, false as soon as `send` fails (the client gone, or its time up).
fn export(s: &Shared, crs: &geo_io::Crs, send: &dyn Fn(Piece) -> bool) -> Result<bool, String> {
    let snap = s.store.snapshot();
    let height = snap.tip().map_err(|e| e.to_string())?.map_or(0, |t| t.height);
    let text = |t: String| Piece::Data(bytes::Bytes::from(t));
    if !send(text(format!(r#"{{"type":"FeatureCollection","height":{height},"features":["#))) {
        return Ok(false);
    }
    // Every parcel ever registered is named in the map's histories, which only grow: those live in
    // the snapshot are exactly the parcels live at its height, whatever commits meanwhile.
    let (mut after, mut first) = (None::<String>, true);
    loop {
        let names = s.parcels.read().unwrap_or_else(|p| p.into_inner()).known_after(after.as_deref(), EXPORT_PAGE);
        let Some(last) = names.last().cloned() else { break };
        let mut chunk = String::new();
        for c in &names {
            if let Some(st) = s.registry.parcel(&snap, c).map_err(|e| e.to_string())?
                && st.retired_height.is_none()
            {
                if !first {
                    chunk.push(',');
                }
                first = false;
                chunk.push_str(&parcel_feature(crs, &st).map_err(|e| e.message)?.to_string());
            }
        }
        if !chunk.is_empty() && !send(text(chunk)) {
            return Ok(false);
        }
        after = Some(last);
    }
    Ok(send(text("]}".into())))
}

/// Most entries in one page of a parcel's history.
const MAX_HISTORY: usize = 1000;

#[utoipa::path(get, path = "/v1/parcels/{cadastral}/history", tag = "land",
    params(("cadastral" = String, Path, description = "Cadastral number"), Page),
    responses((status = 200, description = "The log entries that changed the parcel, oldest first, a page at a time (next: the cursor of the next page, or null): operation, version, height, time, signer", body = Object),
        (status = 404, description = "Never registered", body = ErrorBody)))]
pub(super) async fn parcel_history(
    State(s): State<Arc<Shared>>,
    Path(cadastral): Path<String>,
    q: Result<axum::extract::Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Res {
    let q = query(q, "?after=INDEX&limit=N (a log index from the previous page's next, and at most 1000)")?;
    let limit = q.limit.unwrap_or(MAX_HISTORY).clamp(1, MAX_HISTORY);
    let all = s.parcels.read().unwrap_or_else(|p| p.into_inner()).history(&cadastral).to_vec();
    if all.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_parcel",
            format!("parcel {cadastral} was never registered"),
        ));
    }
    let mut page = all.into_iter().filter(|i| q.after.is_none_or(|a| *i > a)).take(limit + 1).collect::<Vec<_>>();
    let more = page.len() > limit;
    page.truncate(limit);
    let next = if more { page.last().copied() } else { None };
    let mut entries = Vec::new();
    for i in page {
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
    Ok(Json(json!({"cadastral_number": cadastral, "entries": entries, "next": next})))
}

#[utoipa::path(get, path = "/v1/structures/{id}", tag = "land",
    params(("id" = String, Path, description = "The building's or road's registry number")),
    responses((status = 200, description = "The structure: kind, parcels, description, geometry (GeoJSON, WGS84), retirement", body = Object),
        (status = 400, body = ErrorBody), (status = 404, description = "Not registered", body = ErrorBody)))]
pub(super) async fn structure(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Res {
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
        (status = 400, body = ErrorBody)))]
pub(super) async fn parcel_proof(State(s): State<Arc<Shared>>, Path(cadastral): Path<String>) -> Res {
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
