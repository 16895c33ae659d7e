//! The application: its ports, built from the configuration, and the server that exposes them.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tower_http::normalize_path::NormalizePath;

use crate::config::{Config, Database};
use crate::error::BackendError;
use crate::events::direct::DirectSink;
use crate::events::{Backlog, EventSink, NoBacklog};
use crate::http::limits::Limits;
use crate::http::listener::IdleTimeoutListener;
use crate::idempotency::{Idempotency, LocalIdempotency, RedisIdempotency};
use crate::metrics::Metrics;
use crate::search::elasticsearch::{Elasticsearch, IndexOp};
use crate::search::Search;
use crate::sequencer::{MemorySequencer, RedisSequencer, Sequencer};
use crate::store::{MysqlStore, SqliteStore, Store, SyncReport};

/// Messages per page of `reindex`.
const REINDEX_PAGE: u32 = 1000;

/// How long after a Redis reset a number drawn before it may still reach the broker: the
/// producer's delivery timeout plus a margin. The recovery waits this out.
const DELIVERY_GRACE: std::time::Duration = std::time::Duration::from_secs(7);

/// Everything a request needs. Handlers only see these traits, never a backend type.
pub struct App {
    pub store: Arc<dyn Store>,
    pub sequencer: Arc<dyn Sequencer>,
    pub sink: Arc<dyn EventSink>,
    pub search: Arc<dyn Search>,
    pub idempotency: Arc<dyn Idempotency>,
    pub limits: Limits,
    pub metrics: Metrics,
    /// Held for the life of the process: numbers come from this process alone.
    _lock: Option<DataLock>,
}

/// A store and its search, from the same backend.
struct Backend {
    store: Arc<dyn Store>,
    search: Arc<dyn Search>,
    lock: Option<DataLock>,
}

impl Backend {
    fn of<T: Store + Search + 'static>(backend: T, lock: Option<DataLock>) -> Self {
        let backend = Arc::new(backend);
        Self {
            store: backend.clone(),
            search: backend,
            lock,
        }
    }

    /// Opens the configured database (applying migrations). `lock`: take the embedded data
    /// directory for this process (the server does; `migrate` and `sync-counts` need not).
    async fn open(config: &Config, lock: bool) -> anyhow::Result<Self> {
        Ok(match config.database()? {
            Database::Sqlite { url, file } => {
                let lock = if lock {
                    Some(DataLock::acquire(&file)?)
                } else {
                    None
                };
                Self::of(SqliteStore::open(&url).await?, lock)
            }
            Database::Mysql { url } => Self::of(MysqlStore::open(&url).await?, None),
        })
    }
}

impl App {
    /// Opens the backends the configuration names and starts the writer.
    pub async fn build(config: &Config) -> anyhow::Result<Arc<Self>> {
        let metrics = Metrics::new();
        let Backend {
            store,
            mut search,
            lock,
        } = Backend::open(config, true).await?;
        if let Some(engine) = Self::search_engine(config, &store)? {
            // The API starts without the cluster: searches answer 503 until it is back.
            if let Err(err) = engine.ensure_index().await {
                tracing::warn!(error = %err, "the search index could not be checked");
            }
            search = engine;
        }
        let (sink, backlog) = Self::sink(config, &store, &metrics)?;
        let idempotency: Arc<dyn Idempotency> = match config.redis() {
            Some(url) => Arc::new(RedisIdempotency::connect(url, &config.namespace).await?),
            None => Arc::new(LocalIdempotency::new(store.clone())),
        };
        let sequencer: Arc<dyn Sequencer> = match config.redis() {
            Some(url) => {
                let grace = DELIVERY_GRACE;
                Arc::new(
                    RedisSequencer::connect(url, &config.namespace, store.clone(), backlog, grace)
                        .await?,
                )
            }
            None => Arc::new(MemorySequencer::new(store.clone())),
        };
        Ok(Arc::new(Self {
            store,
            sequencer,
            sink,
            search,
            idempotency,
            limits: Limits::new(
                std::time::Duration::from_secs(config.request_timeout.max(1)),
                std::time::Duration::from_secs(config.idle_timeout.max(1)),
                config.rate_limit_per_client,
                config.rate_limit_per_token,
            ),
            metrics,
            _lock: lock,
        }))
    }

    /// Elasticsearch, when configured.
    fn search_engine(
        config: &Config,
        store: &Arc<dyn Store>,
    ) -> anyhow::Result<Option<Arc<Elasticsearch>>> {
        config
            .elasticsearch()
            .map(|url| Elasticsearch::new(url, &config.search_index(), store.clone()).map(Arc::new))
            .transpose()
    }

    /// Rebuilds the search index from the database, in pages of `REINDEX_PAGE` messages, while
    /// traffic flows (document ids are deterministic: a message indexed twice is one document).
    pub async fn reindex(config: &Config) -> anyhow::Result<u64> {
        let backend = Backend::open(config, false).await?;
        let engine = Self::search_engine(config, &backend.store)?.ok_or_else(|| {
            anyhow::anyhow!("reindex rebuilds Elasticsearch: set ELASTICSEARCH_URL")
        })?;
        engine.ensure_index().await?;
        let (mut after, mut total) = (0, 0u64);
        loop {
            let page = backend.store.export_messages(after, REINDEX_PAGE).await?;
            let Some(last) = page.last() else {
                return Ok(total);
            };
            after = last.id;
            let ops: Vec<IndexOp> = page
                .into_iter()
                .map(|m| IndexOp::Create {
                    token: m.token,
                    chat: m.chat,
                    number: m.number,
                    body: m.body,
                    created_at: m.created_at,
                })
                .collect();
            engine.index(&ops).await?;
            total += ops.len() as u64;
            tracing::info!(indexed = total, "reindexing");
        }
    }

    #[cfg(feature = "kafka")]
    fn sink(
        config: &Config,
        store: &Arc<dyn Store>,
        metrics: &Metrics,
    ) -> anyhow::Result<(Arc<dyn EventSink>, Arc<dyn Backlog>)> {
        use crate::events::kafka::{KafkaBacklog, KafkaSink, Topics};
        Ok(match config.kafka() {
            Some(brokers) => {
                let topics = Topics::new(&config.namespace);
                (
                    Arc::new(KafkaSink::connect(
                        brokers,
                        topics.clone(),
                        store.clone(),
                        config.kafka_idempotence,
                    )?),
                    Arc::new(KafkaBacklog::new(brokers, topics)),
                )
            }
            None => (
                Arc::new(DirectSink::start(store.clone(), metrics.clone())),
                Arc::new(NoBacklog),
            ),
        })
    }

    #[cfg(not(feature = "kafka"))]
    fn sink(
        _config: &Config,
        store: &Arc<dyn Store>,
        metrics: &Metrics,
    ) -> anyhow::Result<(Arc<dyn EventSink>, Arc<dyn Backlog>)> {
        Ok((
            Arc::new(DirectSink::start(store.clone(), metrics.clone())),
            Arc::new(NoBacklog),
        ))
    }

    /// Applies the migrations of the configured database, and creates the Kafka topics.
    pub async fn migrate(config: &Config) -> anyhow::Result<()> {
        let backend = Backend::open(config, false).await?;
        #[cfg(feature = "kafka")]
        if let Some(brokers) = config.kafka() {
            let topics = crate::events::kafka::Topics::new(&config.namespace);
            crate::events::kafka::create_topics(brokers, &topics, config.kafka_partitions).await?;
        }
        if let Some(engine) = Self::search_engine(config, &backend.store)? {
            match engine.ensure_index().await {
                Err(BackendError::Unavailable(reason)) => {
                    tracing::warn!(%reason, "search engine unavailable: the workers create the index when it is back")
                }
                other => other?,
            }
        }
        if let Some(url) = config.redis() {
            let (_, backlog) = Self::sink(config, &backend.store, &Metrics::new())?;
            let sequencer = RedisSequencer::connect(
                url,
                &config.namespace,
                backend.store,
                backlog,
                DELIVERY_GRACE,
            )
            .await?;
            sequencer.ensure_counters().await?;
        }
        Ok(())
    }

    /// Recomputes the counts. Needs no lock: each store does it safely beside live traffic.
    pub async fn sync_counts(config: &Config) -> anyhow::Result<SyncReport> {
        let backend = Backend::open(config, false).await?;
        Ok(backend.store.sync_counts().await?)
    }

    /// Runs workers for `topics` (chats, messages or both) until SIGTERM/SIGINT, and
    /// `sync-counts` on a timer beside them.
    #[cfg(feature = "kafka")]
    pub async fn work(config: &Config, chats: bool, messages: bool) -> anyhow::Result<()> {
        use crate::events::kafka::Topics;
        use crate::worker::Worker;
        let brokers = config
            .kafka()
            .ok_or_else(|| anyhow::anyhow!("workers consume Kafka: set KAFKA_BROKERS"))?;
        let backend = Backend::open(config, false).await?;
        let topics = Topics::new(&config.namespace);
        let engine = Self::search_engine(config, &backend.store)?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        for (wanted, topic) in [(chats, &topics.chats), (messages, &topics.messages)] {
            if wanted {
                let worker =
                    Worker::connect(brokers, topic, backend.store.clone(), config.worker_share())?
                        .indexing(engine.clone());
                let stopped = stopped.clone();
                tasks.spawn(async move { worker.run(stopped).await });
            }
        }
        let every = std::time::Duration::from_secs(config.sync_counts_every.max(1));
        let store = backend.store.clone();
        let sync_stopped = stopped.clone();
        tasks.spawn(async move {
            crate::worker::sync_counts_periodically(store, every, sync_stopped).await;
            Ok(())
        });
        tokio::select! {
            () = shutdown_signal() => {},
            Some(result) = tasks.join_next() => result??,
        }
        let _ = stop.send(true);
        while let Some(result) = tasks.join_next().await {
            result??;
        }
        Ok(())
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
        // Idle rate-limiter entries are dropped every minute, so their memory stays bounded.
        let janitor = {
            let app = self.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
                loop {
                    every.tick().await;
                    app.limits.forget_idle();
                }
            })
        };
        let listener = IdleTimeoutListener::new(listener, self.limits.idle);
        let served = crate::http::server_conn::serve_connections(listener, service, shutdown).await;
        janitor.abort();
        served?;
        self.sink.flush_and_stop().await;
        tracing::info!("stopped");
        Ok(())
    }

    /// Whether every backend answers.
    pub async fn ready(&self) -> bool {
        self.store.ping().await.is_ok() && self.sequencer.ready().await && self.search.ready().await
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
