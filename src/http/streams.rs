//! `GET /applications/{token}/chats/{chat_number}/stream`: a chat's changes, live (SPEC §7), as
//! Server-Sent Events, or as WebSocket text frames when the request asks for an upgrade.
//!
//! Where it starts: the `Last-Event-ID` header (what a reconnecting `EventSource` sends), else
//! `since=`, else now. What it sends and in which order is `streams::follow`'s job; this file
//! only renders it: SSE `id: <revision>` + `data: <JSON>` and a comment every
//! `STREAM_KEEPALIVE` seconds; WebSocket: one text frame per change and a ping as keep-alive;
//! a deleted chat ends the stream (`event: chat_deleted`, or close code 1000).

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{header, HeaderMap};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};

use super::extract::{number, token, ApiPath, ApiQuery};
use crate::domain::Change;
use crate::error::{ApiError, ErrorBody};
use crate::service::{Service, Stream};
use crate::streams::follow::Item;

/// The `Last-Event-ID` header, else `since`; `None`: from now.
fn start(headers: &HeaderMap, query: &ApiQuery) -> Result<Option<u64>, ApiError> {
    let raw = match headers.get("last-event-id") {
        // A header that is not UTF-8 becomes text that does not parse: a 400 like any bad value.
        Some(value) => Some(String::from_utf8_lossy(value.as_bytes())),
        None => query.get("since").map(std::borrow::Cow::Borrowed),
    };
    raw.map(|raw| {
        raw.trim().parse::<u64>().map_err(|_| {
            ApiError::bad_request("Last-Event-ID and since must be a revision (an integer from 0)")
        })
    })
    .transpose()
}

fn wants_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("websocket"))
}

fn chat_deleted(chat: u64) -> String {
    serde_json::json!({ "chat_number": chat, "deleted": true }).to_string()
}

#[utoipa::path(get, path = "/applications/{token}/chats/{chat_number}/stream", tag = "streams",
    description = "The chat's changes, live: Server-Sent Events (`text/event-stream`), or a \
                   WebSocket when the request asks for an upgrade. Each event is `id: <revision>` \
                   and `data: <Message or tombstone JSON>` (a WebSocket text frame carries the \
                   same JSON); first every change after the start position (`Last-Event-ID`, \
                   else `since`, else now), then live, in revision order, each once. A comment \
                   (or ping) at least every 15 s; `event: chat_deleted` (WebSocket: close code \
                   1000) when the chat is deleted. A slow client is disconnected and resumes \
                   with its last id. 503 with `Retry-After` when the process holds `MAX_STREAMS`.",
    params(
        ("token" = String, Path), ("chat_number" = u64, Path),
        ("since" = Option<i64>, Query, minimum = 0, description = "start after this revision"),
        ("Last-Event-ID" = Option<i64>, Header, description = "start after this revision (wins over `since`)"),
    ),
    responses(
        (status = 200, description = "the stream: one event per change", content_type = "text/event-stream", body = Change),
        (status = 101, description = "switched to WebSocket"),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn stream(
    State(service): State<Arc<Service>>,
    ApiPath((raw, chat)): ApiPath<(String, String)>,
    query: ApiQuery,
    request: Request,
) -> Result<Response, ApiError> {
    let (token, chat) = (token(&raw)?, number(&chat, "chat")?);
    let (mut parts, _) = request.into_parts();
    let since = start(&parts.headers, &query)?;
    let keepalive = service.stream_keepalive;
    if wants_websocket(&parts.headers) {
        let upgrade = WebSocketUpgrade::from_request_parts(&mut parts, &())
            .await
            .map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
        let stream = service.stream(&token, chat, since).await?;
        return Ok(upgrade
            .on_upgrade(move |socket| websocket(socket, stream, keepalive))
            .into_response());
    }
    let stream = service.stream(&token, chat, since).await?;
    let events = futures::stream::unfold(stream, |mut stream| async move {
        let event = match stream.items.recv().await? {
            Item::Change { revision, json } => {
                Event::default().id(revision.to_string()).data(&*json)
            }
            Item::ChatDeleted { chat } => Event::default()
                .event("chat_deleted")
                .data(chat_deleted(chat)),
        };
        Some((Ok::<_, Infallible>(event), stream))
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(keepalive))
        .into_response())
}

/// Sends the stream's items as text frames and pings while idle, until the chat is deleted
/// (close 1000), the stream ends (close 1001: shutdown or a slow client, which reconnects with
/// `since=` its last revision), or the client leaves.
async fn websocket(mut socket: WebSocket, mut stream: Stream, keepalive: std::time::Duration) {
    let mut ping = tokio::time::interval(keepalive);
    ping.tick().await;
    loop {
        tokio::select! {
            item = stream.items.recv() => {
                let sent = match item {
                    Some(Item::Change { json, .. }) => socket.send(Message::Text(json.to_string().into())).await,
                    Some(Item::ChatDeleted { chat }) => {
                        let _ = socket.send(Message::Text(chat_deleted(chat).into())).await;
                        let _ = socket.send(close(1000, "chat deleted")).await;
                        return;
                    }
                    None => {
                        let _ = socket.send(close(1001, "stream ended; reconnect with since=")).await;
                        return;
                    }
                };
                if sent.is_err() {
                    return;
                }
            }
            _ = ping.tick() => {
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}
