//! `/applications`: create, read, rename, delete.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::{token, ApiPath, JsonObject};
use crate::domain::{Application, Name};
use crate::error::{ApiError, ErrorBody};
use crate::service::Service;

/// `{"name": …}`, or wrapped as `{"application": {"name": …}}`. Unknown fields are ignored.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct ApplicationInput {
    /// 1 to 255 characters, not only white space.
    #[schema(min_length = 1, max_length = 255, pattern = "\\S")]
    name: String,
}

#[utoipa::path(post, path = "/applications", tag = "applications",
    request_body = ApplicationInput,
    responses(
        (status = 201, description = "created; the token identifies it from now on", body = Application),
        (status = 400, description = "malformed JSON", body = ErrorBody),
        (status = 422, description = "invalid name", body = ErrorBody),
    ))]
pub async fn create(
    State(service): State<Arc<Service>>,
    body: JsonObject,
) -> Result<(StatusCode, Json<Application>), ApiError> {
    let name = Name::parse(body.string("application", "name")?)?;
    Ok((
        StatusCode::CREATED,
        Json(service.create_application(name).await?),
    ))
}

#[utoipa::path(get, path = "/applications/{token}", tag = "applications",
    params(("token" = String, Path, description = "the application's token")),
    responses(
        (status = 200, body = Application),
        (status = 404, body = ErrorBody),
    ))]
pub async fn show(
    State(service): State<Arc<Service>>,
    ApiPath(raw): ApiPath<String>,
) -> Result<Json<Application>, ApiError> {
    Ok(Json(service.application(&token(&raw)?).await?))
}

#[utoipa::path(put, path = "/applications/{token}", tag = "applications",
    description = "Renames the application. PATCH does the same.",
    params(("token" = String, Path, description = "the application's token")),
    request_body = ApplicationInput,
    responses(
        (status = 200, body = Application),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
pub async fn update(
    State(service): State<Arc<Service>>,
    ApiPath(raw): ApiPath<String>,
    body: JsonObject,
) -> Result<Json<Application>, ApiError> {
    let token = token(&raw)?;
    let name = Name::parse(body.string("application", "name")?)?;
    Ok(Json(service.rename_application(&token, name).await?))
}

/// PATCH is routed to [`update`]; this only documents it (utoipa describes one method per
/// annotated function, and an operation id must be unique).
#[utoipa::path(patch, path = "/applications/{token}", tag = "applications",
    operation_id = "patch_application",
    description = "Renames the application, as PUT does.",
    params(("token" = String, Path, description = "the application's token")),
    request_body = ApplicationInput,
    responses(
        (status = 200, body = Application),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
#[allow(dead_code)]
pub fn patch_doc() {}

#[utoipa::path(delete, path = "/applications/{token}", tag = "applications",
    description = "Deletes the application and everything under it; the token answers 404 from then on.",
    params(("token" = String, Path)),
    responses(
        (status = 204, description = "deleted"),
        (status = 404, body = ErrorBody),
    ))]
pub async fn delete(
    State(service): State<Arc<Service>>,
    ApiPath(raw): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    service.delete_application(&token(&raw)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
