//! The HTTP surface: every route of SPEC §2, at `/` and under `/api/v1`, plus the operational
//! endpoints. Handlers are thin: parse, call a [`crate::service`] method, render.

mod applications;
mod chats;
mod extract;
mod idempotency;
pub mod limits;
pub mod listener;
mod messages;
mod ops;
pub mod server_conn;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_scalar::{Scalar, Servable};

use crate::app::App;
use crate::error::ApiError;

pub use ops::ApiDoc;

/// The API routes, mounted twice (at the root and at `/api/v1`).
fn api() -> Router<Arc<App>> {
    Router::new()
        .route("/applications", axum::routing::post(applications::create))
        .route(
            "/applications/{token}",
            get(applications::show)
                .put(applications::update)
                .patch(applications::update),
        )
        .route(
            "/applications/{token}/chats",
            get(chats::list).post(chats::create),
        )
        .route(
            "/applications/{token}/chats/{chat_number}",
            get(chats::show),
        )
        .route(
            "/applications/{token}/chats/{chat_number}/messages",
            get(messages::list).post(messages::create),
        )
        .route(
            "/applications/{token}/chats/{chat_number}/messages/search",
            get(messages::search),
        )
        .route(
            "/applications/{token}/chats/{chat_number}/messages/{number}",
            get(messages::show)
                .put(messages::update)
                .patch(messages::update),
        )
        .route("/search", get(messages::seed_search))
}

pub fn router(app: Arc<App>) -> Router {
    let openapi = ApiDoc::openapi();
    Router::new()
        .merge(api())
        .nest("/api/v1", api())
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .merge(Scalar::with_url("/docs", openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(middleware::from_fn_with_state(
            app.clone(),
            idempotency::idempotent,
        ))
        .route_layer(middleware::from_fn_with_state(app.clone(), limits::limit))
        .route_layer(middleware::from_fn_with_state(app.clone(), observe))
        .layer(DefaultBodyLimit::max(extract::BODY_LIMIT))
        .layer(TraceLayer::new_for_http())
        .with_state(app)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Counts every routed request by route template (never by raw path: tokens would explode the
/// label set) and records its latency.
async fn observe(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    app.metrics.observe_request(
        &route,
        &method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response.into_response()
}
