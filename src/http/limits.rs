//! Abuse limits: a request timeout, and per-client and per-token rate limits answering 429 with
//! `Retry-After` (token buckets from `governor`; both off unless configured).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::listener::ClientAddr;
use super::path::application_token;
use crate::error::ApiError;

/// The limits of one server, built from the configuration.
pub struct Limits {
    pub timeout: Duration,
    /// How long a connection may stay silent (between requests, or inside one) before it is
    /// closed.
    pub idle: Duration,
    per_client: Option<DefaultKeyedRateLimiter<IpAddr>>,
    per_token: Option<DefaultKeyedRateLimiter<String>>,
}

fn limiter<K: std::hash::Hash + Eq + Clone>(per_second: u32) -> Option<DefaultKeyedRateLimiter<K>> {
    // A burst of one second's worth: short spikes pass, sustained excess does not.
    NonZeroU32::new(per_second)
        .map(|rate| RateLimiter::keyed(Quota::per_second(rate).allow_burst(rate)))
}

impl Limits {
    pub fn new(timeout: Duration, idle: Duration, per_client: u32, per_token: u32) -> Self {
        Self {
            timeout,
            idle,
            per_client: limiter(per_client),
            per_token: limiter(per_token),
        }
    }

    /// Forgets idle clients and tokens, so the limiters' memory stays bounded.
    pub fn forget_idle(&self) {
        if let Some(limiter) = &self.per_client {
            limiter.retain_recent();
        }
        if let Some(limiter) = &self.per_token {
            limiter.retain_recent();
        }
    }
}

fn too_many(wait: Duration) -> Response {
    let mut response = ApiError::TooManyRequests.into_response();
    let seconds = wait.as_secs().max(1).to_string();
    if let Ok(value) = HeaderValue::from_str(&seconds) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

pub async fn limit(State(limits): State<Arc<Limits>>, request: Request, next: Next) -> Response {
    if let Some(limiter) = &limits.per_client {
        let client = request
            .extensions()
            .get::<ConnectInfo<ClientAddr>>()
            .map(|info| info.0 .0.ip());
        if let Some(Err(not_until)) = client.map(|ip| limiter.check_key(&ip)) {
            // The limiter's own clock: building a clock calibrates it (cpuid), far too slow
            // to do per request (it was 40 % of a read's profile).
            return too_many(not_until.wait_time_from(limiter.clock().now()));
        }
    }
    if let Some(limiter) = &limits.per_token {
        if let Some(Err(not_until)) =
            application_token(request.uri().path()).map(|t| limiter.check_key(&t.to_owned()))
        {
            return too_many(not_until.wait_time_from(limiter.clock().now()));
        }
    }
    match tokio::time::timeout(limits.timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout.into_response(),
    }
}
