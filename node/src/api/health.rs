//! Liveness, readiness and the OpenAPI document.

use super::{ApiDoc, ApiError};
use crate::node::Shared;
use crate::schema::*;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use utoipa::OpenApi;

#[utoipa::path(get, path = "/livez", tag = "health", responses((status = 200, description = "The process serves requests", body = Health)))]
pub(super) async fn livez() -> Json<Health> {
    Json(Health { status: "ok".into(), height: None })
}

#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "Consensus runs", body = Health),
    (status = 503, description = "Not yet", body = ErrorBody)))]
pub(super) async fn readyz(State(s): State<Arc<Shared>>) -> Response {
    if let Some(why) = s.not_ready() {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", why).into_response()
    } else {
        Json(Health { status: "ready".into(), height: Some(s.tip().height) }).into_response()
    }
}

#[utoipa::path(get, path = "/v1/openapi.json", tag = "health", responses((status = 200, description = "This document", body = Object)))]
pub(super) async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
