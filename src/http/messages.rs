//! `/applications/{token}/chats/{chat_number}/messages`: create, list (and the changes feed),
//! read, edit, delete, search;
//! and the seed's `/search`.

use std::sync::Arc;

use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::{number, token, ApiPath, ApiQuery, Continue, JsonObject, Pagination};
use crate::domain::{Body, Change, Message, SearchTerms, Token};
use crate::error::{ApiError, ErrorBody};
use crate::service::Service;

/// `{"body": …}`, or wrapped as `{"message": {"body": …}}`. Unknown fields are ignored.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct MessageInput {
    /// 1 to 65 535 bytes, not only white space.
    #[schema(min_length = 1, pattern = "\\S")]
    body: String,
}

fn body(input: &JsonObject) -> Result<Body, ApiError> {
    Body::parse(input.string("message", "body")?)
}

#[utoipa::path(post, path = "/applications/{token}/chats/{chat_number}/messages", tag = "messages",
    params(("token" = String, Path), ("chat_number" = u64, Path)),
    request_body = MessageInput,
    responses(
        (status = 201, body = Message),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
pub async fn create(
    State(service): State<Arc<Service>>,
    ApiPath((raw, chat)): ApiPath<(String, String)>,
    input: JsonObject,
) -> Result<(StatusCode, Json<Message>), ApiError> {
    let (token, chat) = (token(&raw)?, number(&chat, "chat")?);
    let message = service.create_message(&token, chat, body(&input)?).await?;
    Ok((StatusCode::CREATED, Json(message)))
}

#[utoipa::path(get, path = "/applications/{token}/chats/{chat_number}/messages", tag = "messages",
    description = "Messages by number, between `after` and `before`, in `order`; `order=desc` \
                   without `before` is the latest page. With `since`, the changes feed instead: \
                   the messages changed after that revision, in revision order, each once in its \
                   latest state, deleted ones as tombstones (`Change`). A `Link: <…>; rel=\"next\"` \
                   header gives the next page (`after`/`before` in the page's order, or `since`).",
    params(
        ("token" = String, Path), ("chat_number" = u64, Path),
        ("per_page" = Option<i32>, Query, minimum = 1, maximum = 2147483647, description = "default 50; more than 1000 is served as 1000"),
        ("after" = Option<i64>, Query, minimum = 0, description = "only numbers above this (keyset)"),
        ("before" = Option<i64>, Query, minimum = 0, description = "only numbers below this (keyset)"),
        ("order" = Option<String>, Query, pattern = "^(asc|desc)$", description = "`asc` (default) or `desc`"),
        ("page" = Option<i64>, Query, minimum = 1, description = "page number from 1 (when neither `after` nor `before` is given)"),
        ("since" = Option<i64>, Query, minimum = 0, description = "the changes feed: changes after this revision (0: the whole chat)"),
    ),
    responses(
        (status = 200, description = "messages; with `since`, messages and tombstones", body = Vec<Change>),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ))]
pub async fn list(
    State(service): State<Arc<Service>>,
    OriginalUri(uri): OriginalUri,
    ApiPath((raw, chat)): ApiPath<(String, String)>,
    query: ApiQuery,
) -> Result<Response, ApiError> {
    let pagination = Pagination::from_query(&query)?;
    let (token, chat) = (token(&raw)?, number(&chat, "chat")?);
    if let Some(since) = pagination.since {
        let changes = service
            .changes(&token, chat, since, pagination.feed_limit())
            .await?;
        return Ok(pagination.respond(
            changes,
            uri.path(),
            &query,
            Change::revision,
            Continue::Since,
        ));
    }
    let messages = service.messages(&token, chat, pagination.page()).await?;
    Ok(pagination.respond(
        messages,
        uri.path(),
        &query,
        |message| message.number,
        Continue::Keyset,
    ))
}

#[utoipa::path(get, path = "/applications/{token}/chats/{chat_number}/messages/{number}", tag = "messages",
    params(("token" = String, Path), ("chat_number" = u64, Path), ("number" = u64, Path)),
    responses(
        (status = 200, body = Message),
        (status = 404, body = ErrorBody),
    ))]
pub async fn show(
    State(service): State<Arc<Service>>,
    ApiPath((raw, chat, message)): ApiPath<(String, String, String)>,
) -> Result<Json<Message>, ApiError> {
    let (token, chat) = (token(&raw)?, number(&chat, "chat")?);
    Ok(Json(
        service
            .message(&token, chat, number(&message, "message")?)
            .await?,
    ))
}

#[utoipa::path(put, path = "/applications/{token}/chats/{chat_number}/messages/{number}", tag = "messages",
    description = "Replaces the body. PATCH does the same.",
    params(("token" = String, Path), ("chat_number" = u64, Path), ("number" = u64, Path)),
    request_body = MessageInput,
    responses(
        (status = 200, body = Message),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
pub async fn update(
    State(service): State<Arc<Service>>,
    ApiPath((raw, chat, message)): ApiPath<(String, String, String)>,
    input: JsonObject,
) -> Result<Json<Message>, ApiError> {
    let (token, chat) = (token(&raw)?, number(&chat, "chat")?);
    let number = number(&message, "message")?;
    Ok(Json(
        service
            .edit_message(&token, chat, number, body(&input)?)
            .await?,
    ))
}

#[utoipa::path(delete, path = "/applications/{token}/chats/{chat_number}/messages/{number}", tag = "messages",
    description = "Deletes the message: its body is erased, it leaves lists and search, the chat's \
                   `messages_count` goes down, the changes feed and streams carry its tombstone. \
                   Its number is never reused. A second DELETE is 404.",
    params(("token" = String, Path), ("chat_number" = u64, Path), ("number" = u64, Path)),
    responses(
        (status = 204, description = "deleted"),
        (status = 404, body = ErrorBody),
    ))]
pub async fn delete(
    State(service): State<Arc<Service>>,
    ApiPath((raw, chat, message)): ApiPath<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let (token, chat) = (token(&raw)?, number(&chat, "chat")?);
    service
        .delete_message(&token, chat, number(&message, "message")?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// PATCH is routed to [`update`]; this only documents it (utoipa describes one method per
/// annotated function, and an operation id must be unique).
#[utoipa::path(patch, path = "/applications/{token}/chats/{chat_number}/messages/{number}", tag = "messages",
    operation_id = "patch_message",
    description = "Replaces the body, as PUT does.",
    params(("token" = String, Path), ("chat_number" = u64, Path), ("number" = u64, Path)),
    request_body = MessageInput,
    responses(
        (status = 200, body = Message),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
#[allow(dead_code)]
pub fn patch_doc() {}

const SEARCH_TERM: [&str; 3] = ["q", "query", "body"];

async fn search_in(
    service: &Service,
    uri: &axum::http::Uri,
    token: Token,
    chat: u64,
    query: &ApiQuery,
) -> Result<Response, ApiError> {
    let pagination = Pagination::from_query(query)?;
    let raw = query.get_any(&SEARCH_TERM).ok_or_else(|| {
        ApiError::bad_request("the search term is missing: pass q, query or body")
    })?;
    let terms = SearchTerms::parse(raw)?;
    let found = service
        .search(&token, chat, &terms, pagination.page())
        .await?;
    Ok(pagination.respond(
        found,
        uri.path(),
        query,
        |message| message.number,
        Continue::Page,
    ))
}

#[utoipa::path(get, path = "/applications/{token}/chats/{chat_number}/messages/search", tag = "search",
    description = "Messages of one chat whose body contains every word of the term, case-insensitively \
                   (substring match: `rror` finds `error`). Most relevant first, then by number. \
                   The term may be named `q`, `query` or `body`. Pages continue with `page`.",
    params(
        ("token" = String, Path), ("chat_number" = u64, Path),
        ("q" = String, Query, min_length = 1, pattern = "\\S", description = "the search term (or `query`, or `body`)"),
        ("per_page" = Option<i32>, Query, minimum = 1, maximum = 2147483647, description = "default 50; more than 1000 is served as 1000"), ("page" = Option<i64>, Query, minimum = 1),
    ),
    responses(
        (status = 200, body = Vec<Message>),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ))]
pub async fn search(
    State(service): State<Arc<Service>>,
    OriginalUri(uri): OriginalUri,
    ApiPath((raw, chat)): ApiPath<(String, String)>,
    query: ApiQuery,
) -> Result<Response, ApiError> {
    let (token, chat) = (token(&raw)?, number(&chat, "chat")?);
    search_in(&service, &uri, token, chat, &query).await
}

#[utoipa::path(get, path = "/search", tag = "search",
    description = "The seed's search: the same as `/applications/{token}/chats/{chat_number}/messages/search`.",
    params(
        ("application_token" = String, Query), ("chat_number" = u64, Query),
        ("body" = String, Query, min_length = 1, pattern = "\\S", description = "the search term (or `q`, or `query`)"),
        ("per_page" = Option<i32>, Query, minimum = 1, maximum = 2147483647, description = "default 50; more than 1000 is served as 1000"), ("page" = Option<i64>, Query, minimum = 1),
    ),
    responses(
        (status = 200, body = Vec<Message>),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ))]
pub async fn seed_search(
    State(service): State<Arc<Service>>,
    OriginalUri(uri): OriginalUri,
    query: ApiQuery,
) -> Result<Response, ApiError> {
    let raw_token = query
        .get("application_token")
        .ok_or_else(|| ApiError::bad_request("application_token is missing"))?;
    let raw_chat = query
        .get("chat_number")
        .ok_or_else(|| ApiError::bad_request("chat_number is missing"))?;
    let chat = raw_chat
        .trim()
        .parse::<u64>()
        .map_err(|_| ApiError::bad_request("chat_number must be a positive integer"))?;
    let chat = number(&chat.to_string(), "chat")?;
    search_in(&service, &uri, token(raw_token)?, chat, &query).await
}
