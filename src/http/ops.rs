//! Operational endpoints: liveness, readiness, metrics, the OpenAPI document.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;
use utoipa::OpenApi;

use crate::metrics::Metrics;
use crate::service::Service;

/// The API contract, generated from the handlers. `openapi.json` in the repository is a copy of
/// it that a test keeps in step.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "chat-system",
        description = "Applications hold numbered chats; chats hold numbered \
        messages; messages are searchable. Every route is also served under /api/v1."
    ),
    paths(
        super::applications::create,
        super::admin::list,
        super::applications::show,
        super::applications::update,
        super::applications::patch_doc,
        super::applications::delete,
        super::chats::create,
        super::chats::list,
        super::chats::show,
        super::chats::delete,
        super::messages::create,
        super::messages::list,
        super::messages::show,
        super::messages::update,
        super::messages::patch_doc,
        super::messages::delete,
        super::messages::search,
        super::messages::seed_search,
        super::streams::stream,
        health,
        ready,
    ),
    components(schemas(
        crate::error::ErrorBody,
        crate::error::ErrorDetail,
        crate::domain::Tombstone
    ))
)]
pub struct ApiDoc;

#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "the process is alive")))]
pub async fn health() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

#[utoipa::path(get, path = "/ready", tag = "operations",
    responses(
        (status = 200, description = "every backend answers"),
        (status = 503, description = "a backend does not answer"),
    ))]
pub async fn ready(State(service): State<Arc<Service>>) -> impl IntoResponse {
    if service.ready().await {
        (StatusCode::OK, Json(json!({"status": "ready"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable"})),
        )
    }
}

pub async fn metrics(State(metrics): State<Metrics>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.render(),
    )
}

pub async fn openapi() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}
