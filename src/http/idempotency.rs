//! The `Idempotency-Key` middleware: wraps every create and update, so handlers know nothing of
//! it. The key is scoped to the application named in the path (or, for `POST /applications`,
//! to that route) and bound to the request's method and path.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::path::application_token;
use crate::error::ApiError;
use crate::idempotency::{Claim, Idempotency, StoredResponse};

const HEADER: &str = "idempotency-key";
const REPLAYED: &str = "idempotent-replayed";
/// Longest key accepted (UUIDs are 36).
const KEY_MAX: usize = 255;
/// Largest response kept for replay (a message is at most 64 KiB of body).
const STORED_MAX: usize = 1024 * 1024;

/// Keys are scoped to the application, or to `POST /applications` for creations.
fn scope(path: &str) -> &str {
    application_token(path).unwrap_or("applications")
}

pub async fn idempotent(
    State(idempotency): State<Arc<dyn Idempotency>>,
    request: Request,
    next: Next,
) -> Response {
    let writes = matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    let Some(raw) = request.headers().get(HEADER).filter(|_| writes) else {
        return next.run(request).await;
    };
    let key = match raw.to_str() {
        Ok(key) if !key.is_empty() && key.len() <= KEY_MAX => key.to_owned(),
        _ => {
            return ApiError::bad_request(format!(
                "Idempotency-Key must be 1 to {KEY_MAX} visible ASCII characters"
            ))
            .into_response()
        }
    };
    let path = request.uri().path().trim_end_matches('/');
    let fingerprint = format!(
        "{} {}",
        request.method(),
        path.strip_prefix("/api/v1").unwrap_or(path)
    );
    let key = format!("{}:{key}", scope(path));
    match idempotency.claim(&key).await {
        Err(err) => ApiError::from(err).into_response(),
        Ok(Claim::Replay(stored)) if stored.request != fingerprint => {
            ApiError::validation("this Idempotency-Key was used for another request")
                .into_response()
        }
        Ok(Claim::Replay(stored)) => replay(stored),
        Ok(Claim::Owned) => {
            let response = next.run(request).await;
            if !response.status().is_success() {
                idempotency.release(&key).await;
                return response;
            }
            let (parts, body) = response.into_parts();
            let Ok(bytes) = axum::body::to_bytes(body, STORED_MAX).await else {
                idempotency.release(&key).await;
                return ApiError::Internal(anyhow::anyhow!("response too large to keep"))
                    .into_response();
            };
            let stored = StoredResponse {
                request: fingerprint,
                status: parts.status.as_u16(),
                body: String::from_utf8_lossy(&bytes).into_owned(),
            };
            if let Err(err) = idempotency.complete(&key, &stored).await {
                // The write itself succeeded: answer it, and say that a retry may not replay.
                tracing::warn!(error = %err, "could not keep the idempotent response");
            }
            Response::from_parts(parts, Body::from(bytes))
        }
    }
}

fn replay(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = if status == StatusCode::NO_CONTENT {
        status.into_response()
    } else {
        (status, [("content-type", "application/json")], stored.body).into_response()
    };
    response
        .headers_mut()
        .insert(REPLAYED, HeaderValue::from_static("true"));
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_scoped_to_the_application_or_the_route() {
        assert_eq!(super::scope("/applications/abc/chats"), "abc");
        assert_eq!(super::scope("/api/v1/applications/abc"), "abc");
        assert_eq!(super::scope("/applications"), "applications");
    }
}
