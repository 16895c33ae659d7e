//! The web console (`/console`): plain HTML, CSS and JavaScript modules from `console/` in the
//! repository, embedded into the binary at build time (`include_str!`: a handful of small files,
//! no build step and no crate needed). The page is a client of the public API and nothing more.
//!
//! Every response here carries [`CSP`]: scripts, styles and connections from this origin only,
//! no inline script or style, no frames, no plug-ins.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use crate::error::ApiError;

/// What the console's (and the API reference's) pages may load: this origin only.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; \
     base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// (name, content type, content)
const FILES: [(&str, &str, &str); 7] = [
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../../console/index.html"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("../../console/console.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/api.js"),
    ),
    (
        "dom.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/dom.js"),
    ),
    (
        "live.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/live.js"),
    ),
    (
        "messages.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/messages.js"),
    ),
];

/// Adds the headers every console response carries.
pub fn secured(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

fn file(name: &str) -> Response {
    match FILES.iter().find(|(file, _, _)| *file == name) {
        Some((_, content_type, content)) => secured(
            (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, *content_type),
                    (header::CACHE_CONTROL, "no-cache"),
                ],
                *content,
            )
                .into_response(),
        ),
        None => ApiError::not_found("no such console file").into_response(),
    }
}

/// `GET /`: the console.
pub async fn root() -> Redirect {
    Redirect::to("/console")
}

/// `GET /console`
pub async fn index() -> Response {
    file("index.html")
}

/// `GET /console/{file}`
pub async fn asset(Path(name): Path<String>) -> Response {
    file(&name)
}
