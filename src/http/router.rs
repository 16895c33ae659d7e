//! The routes of SPEC §2, at `/` and under `/api/v1`, the operational endpoints, and the
//! middleware around them (outermost last): idempotency, limits, metrics.

use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::get;
use axum::Router;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use super::state::HttpState;
use super::{
    admin, applications, chats, console, extract, idempotency, limits, messages, metrics_layer,
    ops, streams,
};
use crate::error::ApiError;

/// The API routes, mounted twice (at the root and at `/api/v1`).
fn api() -> Router<HttpState> {
    Router::new()
        .route("/applications", get(admin::list).post(applications::create))
        .route(
            "/applications/{token}",
            get(applications::show)
                .put(applications::update)
                .patch(applications::update)
                .delete(applications::delete),
        )
        .route(
            "/applications/{token}/chats",
            get(chats::list).post(chats::create),
        )
        .route(
            "/applications/{token}/chats/{chat_number}",
            get(chats::show).delete(chats::delete),
        )
        .route(
            "/applications/{token}/chats/{chat_number}/messages",
            get(messages::list).post(messages::create),
        )
        .route(
            "/applications/{token}/chats/{chat_number}/stream",
            get(streams::stream),
        )
        .route(
            "/applications/{token}/chats/{chat_number}/messages/search",
            get(messages::search),
        )
        .route(
            "/applications/{token}/chats/{chat_number}/messages/{number}",
            get(messages::show)
                .put(messages::update)
                .patch(messages::update)
                .delete(messages::delete),
        )
        .route("/search", get(messages::seed_search))
}

pub fn router(state: HttpState) -> Router {
    let openapi = ops::ApiDoc::openapi();
    Router::new()
        .merge(api())
        .nest("/api/v1", api())
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .route("/", get(console::root))
        .route("/console", get(console::index))
        .route("/console/{file}", get(console::asset))
        .merge(docs(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            idempotency::idempotent,
        ))
        .route_layer(middleware::from_fn_with_state(state.clone(), limits::limit))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            metrics_layer::observe,
        ))
        .layer(DefaultBodyLimit::max(extract::BODY_LIMIT))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// The API reference at `/docs`: Swagger UI from the vendored bundle, serving the document the
/// router serves at `/openapi.json`, under the console's Content-Security-Policy.
fn docs(openapi: utoipa::openapi::OpenApi) -> Router<HttpState> {
    // Under `/docs/ui/`: trailing slashes are trimmed before routing, so Swagger UI's own
    // `/docs` -> `/docs/` redirect would loop; `/docs` points at its page instead.
    let ui: Router<HttpState> = SwaggerUi::new("/docs/ui")
        .url("/docs/ui/openapi.json", openapi)
        .into();
    ui.route(
        "/docs",
        get(|| async { axum::response::Redirect::to("/docs/ui/index.html") }),
    )
    .layer(middleware::map_response(|response| async {
        console::secured(response)
    }))
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
