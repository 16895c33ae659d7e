//! The server: the listener with its idle timeout, the router behind trailing-slash
//! normalisation, the rate-limit janitor, and the metrics layer.

use std::future::Future;

use tokio::net::TcpListener;
use tower_http::normalize_path::NormalizePath;

use super::listener::IdleTimeoutListener;
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
        let admin = state.admin.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(JANITOR_EVERY);
            loop {
                every.tick().await;
                limits.forget_idle();
                admin.forget_idle();
            }
        })
    };
    let listener = IdleTimeoutListener::new(listener, state.limits.idle);
    // Streams never end by themselves: shutting down ends them first (clients reconnect to
    // another process), so that the connections can drain.
    let hub = state.service.hub.clone();
    let shutdown = async move {
        shutdown.await;
        hub.close();
    };
    let served = super::server_conn::serve_connections(listener, service, shutdown).await;
    janitor.abort();
    served?;
    state.service.flush_and_stop().await;
    tracing::info!("stopped");
    Ok(())
}
