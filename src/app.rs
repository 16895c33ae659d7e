//! The application: its ports, built from the configuration, and the server that exposes them.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::Request;
use tokio::net::TcpListener;
use tower_http::normalize_path::NormalizePath;

use crate::config::{Config, Database};
use crate::events::direct::DirectSink;
use crate::events::EventSink;
use crate::metrics::Metrics;
use crate::search::Search;
use crate::sequencer::{MemorySequencer, Sequencer};
use crate::store::{SqliteStore, Store, SyncReport};

/// Everything a request needs. Handlers only see these traits, never a backend type.
pub struct App {
    pub store: Arc<dyn Store>,
    pub sequencer: Arc<dyn Sequencer>,
    pub sink: Arc<dyn EventSink>,
    pub search: Arc<dyn Search>,
    pub metrics: Metrics,
    /// Held for the life of the process: numbers come from this process alone.
    _lock: Option<DataLock>,
}

impl App {
    /// Opens the backends the configuration names and starts the writer.
    pub async fn build(config: &Config) -> anyhow::Result<Arc<Self>> {
        let metrics = Metrics::new();
        match config.database()? {
            Database::Sqlite { url, file } => {
                let lock = DataLock::acquire(&file)?;
                let store = Arc::new(SqliteStore::open(&url).await?);
                let sink = Arc::new(DirectSink::start(store.clone(), metrics.clone()));
                Ok(Arc::new(Self {
                    sequencer: Arc::new(MemorySequencer::new(store.clone())),
                    search: store.clone(),
                    store,
                    sink,
                    metrics,
                    _lock: Some(lock),
                }))
            }
        }
    }

    /// Applies the migrations of the configured database.
    pub async fn migrate(config: &Config) -> anyhow::Result<()> {
        match config.database()? {
            // Opening applies the migrations.
            Database::Sqlite { url, .. } => SqliteStore::open(&url).await.map(drop),
        }
    }

    /// Recomputes the counts. Needs no lock: each statement counts and writes atomically.
    pub async fn sync_counts(config: &Config) -> anyhow::Result<SyncReport> {
        let store: Arc<dyn Store> = match config.database()? {
            Database::Sqlite { url, .. } => Arc::new(SqliteStore::open(&url).await?),
        };
        Ok(store.sync_counts().await?)
    }

    /// Serves HTTP on `listener` until `shutdown` completes, then finishes in-flight requests and
    /// flushes the writer before returning.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let router = crate::http::router(self.clone());
        // Trailing slashes are trimmed before routing: `/applications/` is `/applications`.
        let service = NormalizePath::trim_trailing_slash(router);
        axum::serve(
            listener,
            axum::ServiceExt::<Request>::into_make_service(service),
        )
        .with_graceful_shutdown(shutdown)
        .await?;
        self.sink.flush_and_stop().await;
        tracing::info!("stopped");
        Ok(())
    }

    /// Whether every backend answers.
    pub async fn ready(&self) -> bool {
        self.store.ping().await.is_ok()
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

/// An exclusive advisory lock on `<database>.lock`. The operating system releases it when the
/// process dies, however it dies, so a crash never blocks a restart.
struct DataLock(#[allow(dead_code)] File);

impl DataLock {
    fn acquire(database: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = database.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
        }
        let path = database.with_extension("lock");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open the lock file {}", path.display()))?;
        if file.try_lock().is_err() {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            anyhow::bail!(
                "another chat-system process (pid {}) is serving {}; the embedded shape allows one \
                 process per data directory: stop it, or give this one another DATA_DIR",
                holder.trim(),
                database.display()
            );
        }
        file.set_len(0)?;
        write!(file, "{}", std::process::id())?;
        Ok(Self(file))
    }
}
