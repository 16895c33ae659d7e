//! `/applications/{token}/chats`: create, list, read, delete.

use std::sync::Arc;

use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;

use super::extract::{number, token, ApiPath, ApiQuery, Continue, JsonObject, Pagination};
use crate::domain::Chat;
use crate::error::{ApiError, ErrorBody};
use crate::service::Service;

#[utoipa::path(post, path = "/applications/{token}/chats", tag = "chats",
    description = "Creates the application's next chat. The body may be empty or `{}`.",
    params(("token" = String, Path)),
    responses(
        (status = 201, body = Chat),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ))]
pub async fn create(
    State(service): State<Arc<Service>>,
    ApiPath(raw): ApiPath<String>,
    _body: JsonObject,
) -> Result<(StatusCode, Json<Chat>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(service.create_chat(&token(&raw)?).await?),
    ))
}

#[utoipa::path(get, path = "/applications/{token}/chats", tag = "chats",
    description = "Chats by number, between `after` and `before`, in `order` (`desc` without \
                   `before`: the latest). A `Link: <…>; rel=\"next\"` header gives the next page.",
    params(
        ("token" = String, Path),
        ("per_page" = Option<i32>, Query, minimum = 1, maximum = 2147483647, description = "default 50; more than 1000 is served as 1000"),
        ("after" = Option<i64>, Query, minimum = 0, description = "only numbers above this (keyset)"),
        ("before" = Option<i64>, Query, minimum = 0, description = "only numbers below this (keyset)"),
        ("order" = Option<String>, Query, pattern = "^(asc|desc)$", description = "`asc` (default) or `desc`"),
        ("page" = Option<i64>, Query, minimum = 1, description = "page number from 1 (when neither `after` nor `before` is given)"),
    ),
    responses(
        (status = 200, body = Vec<Chat>),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ))]
pub async fn list(
    State(service): State<Arc<Service>>,
    OriginalUri(uri): OriginalUri,
    ApiPath(raw): ApiPath<String>,
    query: ApiQuery,
) -> Result<Response, ApiError> {
    let pagination = Pagination::from_query(&query)?;
    let chats = service.chats(&token(&raw)?, pagination.page()).await?;
    Ok(pagination.respond(
        chats,
        uri.path(),
        &query,
        |chat| chat.number,
        Continue::Keyset,
    ))
}

#[utoipa::path(get, path = "/applications/{token}/chats/{chat_number}", tag = "chats",
    params(("token" = String, Path), ("chat_number" = u64, Path)),
    responses(
        (status = 200, body = Chat),
        (status = 404, body = ErrorBody),
    ))]
pub async fn show(
    State(service): State<Arc<Service>>,
    ApiPath((raw, chat)): ApiPath<(String, String)>,
) -> Result<Json<Chat>, ApiError> {
    Ok(Json(
        service.chat(&token(&raw)?, number(&chat, "chat")?).await?,
    ))
}

#[utoipa::path(delete, path = "/applications/{token}/chats/{chat_number}", tag = "chats",
    description = "Deletes the chat and its messages (erased in the background, in bounded steps; \
                   they are gone from reads at once). The application's `chats_count` goes down; \
                   the number is never reused; the chat's streams end.",
    params(("token" = String, Path), ("chat_number" = u64, Path)),
    responses(
        (status = 204, description = "deleted"),
        (status = 404, body = ErrorBody),
    ))]
pub async fn delete(
    State(service): State<Arc<Service>>,
    ApiPath((raw, chat)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    service
        .delete_chat(&token(&raw)?, number(&chat, "chat")?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
