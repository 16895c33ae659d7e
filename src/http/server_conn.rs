//! The accept loop: every connection served by hyper's HTTP/1.1 server with `half_close` on.
//!
//! `axum::serve` does not expose hyper's settings, and with hyper's default (`half_close` off) a
//! client that sends a complete request and then shuts down its write side (RFC 9112 §9.6 allows
//! it; `nc -N`, some proxies and HTTP/1.0 tools do it) got no answer at all: hyper saw the EOF
//! and closed the connection, dropping the handler mid-flight (a POST sent that way was not
//! stored). This loop keeps what `axum::serve` gave: the idle-timeout stream, the client's
//! address as `ConnectInfo<ClientAddr>`, keep-alive, upgrades, and a graceful shutdown that lets
//! in-flight requests finish.
//!
//! Errors the HTTP stack answers itself: hyper writes a bare status line with an empty body, with
//! no hook, when it cannot parse the request head (400: bad request line, method, version or
//! header syntax), when the URI exceeds 65 534 bytes (414), or when the head exceeds its read
//! buffer (~400 KB) or holds more than 100 headers (431). Those stay bare. Below hyper's limits,
//! this module answers in the API's JSON error shape: a URI over [`MAX_URI_BYTES`] is 414 and a
//! header section over [`MAX_HEADER_BYTES`] is 431, before the router runs.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use tower::{Service, ServiceExt};

use super::listener::{ClientAddr, IdleTimeoutListener};
use crate::error::{ErrorBody, ErrorDetail};

/// Longest request target (path and query) answered by the router; longer is 414 in the JSON
/// shape. Well above any URL the API produces (a search term is at most 1 KiB, encoded ≤ 3 KiB).
pub const MAX_URI_BYTES: usize = 16 * 1024;

/// Largest header section (names, values and separators) answered by the router; larger is 431
/// in the JSON shape.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Serves `service` on every connection `listener` accepts until `shutdown` completes; then
/// stops accepting, lets every connection finish its in-flight request, and returns.
pub async fn serve_connections<S>(
    mut listener: IdleTimeoutListener,
    service: S,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    // Dropping `stop_rx` tells every connection to shut down gracefully.
    let (stop_tx, stop_rx) = watch::channel(());
    tokio::spawn(async move {
        shutdown.await;
        drop(stop_rx);
    });
    // Each connection holds a `done_rx`: when all are dropped, every connection has ended.
    let (done_tx, done_rx) = watch::channel(());
    loop {
        let (io, address) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop_tx.closed() => break,
        };
        let connection = serve_one(io, address, service.clone(), stop_tx.clone());
        let done = done_rx.clone();
        tokio::spawn(async move {
            connection.await;
            drop(done);
        });
    }
    drop(listener);
    drop(done_rx);
    done_tx.closed().await;
    Ok(())
}

/// One connection, until the client closes it, it idles out, or the shutdown has let its
/// in-flight request finish.
async fn serve_one<S>(
    io: <IdleTimeoutListener as Listener>::Io,
    address: SocketAddr,
    service: S,
    stop: watch::Sender<()>,
) where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    let per_request = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let service = service.clone();
        async move {
            if let Some(refusal) = refuse_oversized(&request) {
                return Ok::<_, Infallible>(refusal);
            }
            let mut request = request.map(Body::new);
            // The per-client rate limit reads the peer's address from here.
            request
                .extensions_mut()
                .insert(ConnectInfo(ClientAddr(address)));
            service.oneshot(request).await
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // Answer a request whose client shut down its write side after sending it.
    builder.half_close(true);
    let mut connection = pin!(builder
        .serve_connection(TokioIo::new(io), per_request)
        .with_upgrades());
    let mut stopping = pin!(stop.closed());
    let mut draining = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::trace!(error = %err, "connection ended with an error");
                }
                return;
            }
            () = &mut stopping, if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// 414 or 431 in the JSON error shape for a request head under hyper's own limits but over ours.
fn refuse_oversized<B>(request: &hyper::Request<B>) -> Option<Response> {
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |target| target.as_str().len());
    if target > MAX_URI_BYTES {
        return Some(refusal(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("the request target must be at most {MAX_URI_BYTES} bytes"),
        ));
    }
    let headers: usize = request
        .headers()
        .iter()
        // `name: value\r\n`
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if headers > MAX_HEADER_BYTES {
        return Some(refusal(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!("the request headers must be at most {MAX_HEADER_BYTES} bytes"),
        ));
    }
    None
}

fn refusal(status: StatusCode, code: &str, message: String) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.to_owned(),
            message,
        },
    };
    let mut response = (status, axum::Json(body)).into_response();
    // The rest of the connection may hold the remainder of an unread body: do not reuse it.
    response.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    response
}
