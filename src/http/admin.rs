//! The operators' key (`ADMIN_KEY`): `GET /applications` lists every application to a request
//! carrying `Authorization: Bearer <key>`. Unset, nobody can list them. The comparison takes the
//! same time whatever the key sent (`subtle`), and every attempt counts against a small
//! per-client budget ([`ATTEMPTS_PER_SECOND`], bursts of [`ATTEMPTS_BURST`]), so a key cannot be
//! guessed at speed.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{ConnectInfo, OriginalUri, Request, State};
use axum::http::{header, HeaderMap};
use axum::response::Response;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use subtle::ConstantTimeEq;

use super::extract::{ApiQuery, Continue, Pagination};
use super::listener::ClientAddr;
use crate::domain::Application;
use crate::error::{ApiError, ErrorBody};
use crate::service::Service;

const ATTEMPTS_PER_SECOND: u32 = 2;
const ATTEMPTS_BURST: u32 = 10;

pub struct Admin {
    key: Option<String>,
    attempts: DefaultKeyedRateLimiter<IpAddr>,
}

impl Admin {
    pub fn new(key: Option<String>) -> Self {
        let quota = Quota::per_second(NonZeroU32::MIN.saturating_add(ATTEMPTS_PER_SECOND - 1))
            .allow_burst(NonZeroU32::MIN.saturating_add(ATTEMPTS_BURST - 1));
        Self {
            key: key.filter(|key| !key.is_empty()),
            attempts: RateLimiter::keyed(quota),
        }
    }

    /// Whether the request carries the key (after counting the attempt).
    fn check(&self, client: Option<IpAddr>, headers: &HeaderMap) -> Result<(), ApiError> {
        if let Some(client) = client {
            if self.attempts.check_key(&client).is_err() {
                return Err(ApiError::TooManyRequests);
            }
        }
        let Some(key) = &self.key else {
            return Err(ApiError::Unauthorized);
        };
        let sent = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or("");
        if bool::from(sent.as_bytes().ct_eq(key.as_bytes())) {
            Ok(())
        } else {
            Err(ApiError::Unauthorized)
        }
    }

    pub fn forget_idle(&self) {
        self.attempts.retain_recent();
    }
}

#[utoipa::path(get, path = "/applications", tag = "applications",
    description = "Every application, oldest first, for operators: needs `Authorization: Bearer \
                   <ADMIN_KEY>` (401 without it, or when no key is configured). Paged with \
                   `per_page` and `page`; a `Link: <…>; rel=\"next\"` header gives the next page.",
    params(
        ("per_page" = Option<i32>, Query, minimum = 1, maximum = 2147483647, description = "default 50; more than 1000 is served as 1000"),
        ("page" = Option<i64>, Query, minimum = 1),
    ),
    responses(
        (status = 200, body = Vec<Application>),
        (status = 401, body = ErrorBody),
        (status = 429, body = ErrorBody),
    ))]
pub async fn list(
    State(service): State<Arc<Service>>,
    State(admin): State<Arc<Admin>>,
    OriginalUri(uri): OriginalUri,
    query: ApiQuery,
    request: Request,
) -> Result<Response, ApiError> {
    let client = request
        .extensions()
        .get::<ConnectInfo<ClientAddr>>()
        .map(|info| info.0 .0.ip());
    admin.check(client, request.headers())?;
    let pagination = Pagination::from_query(&query)?;
    let applications = service.applications(pagination.page()).await?;
    Ok(pagination.respond(applications, uri.path(), &query, |_| 0, Continue::Page))
}
