//! The server: the listener with its idle timeout, the router behind trailing-slash
//! normalisation, the rate-limit janitor, and the metrics layer.

use std::future::Future;

use axum::extract::Request;
use tokio::net::TcpListener;
use tower_http::normalize_path::NormalizePath;

use super::listener::{ClientAddr, IdleTimeoutListener};
use super::state::HttpState;

/// How often idle rate-limiter entries are dropped, so their memory stays bounded.
const JANITOR_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Serves HTTP on `listener` until `shutdown` completes, then finishes in-flight requests and
/// flushes the writer before returning.
pub async fn serve(
    listener: TcpListener,
    state: HttpState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = super::router::router(state.clone());
    // Trailing slashes are trimmed before routing: `/applications/` is `/applications`.
    let service = NormalizePath::trim_trailing_slash(router);
    let janitor = {
        let limits = state.limits.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(JANITOR_EVERY);
            loop {
                every.tick().await;
                limits.forget_idle();
            }
        })
    };
    // The client's address is needed by the per-client rate limit.
    let service =
        axum::ServiceExt::<Request>::into_make_service_with_connect_info::<ClientAddr>(service);
    let listener = IdleTimeoutListener::new(listener, state.limits.idle);
    let served = axum::serve(listener, service)
        .with_graceful_shutdown(shutdown)
        .await;
    janitor.abort();
    served?;
    state.service.flush_and_stop().await;
    tracing::info!("stopped");
    Ok(())
}
