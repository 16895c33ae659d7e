//! What each command does: `serve` (with its shutdown signal) and the one-shot commands
//! `migrate`, `sync-counts`, `reindex`, and the long-running `worker`.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::app::{self, App, Backend};
use crate::config::Config;
use crate::error::BackendError;
use crate::http::{self, HttpState};
use crate::metrics::Metrics;
use crate::search::{IndexOp, Indexer};
use crate::store::SyncReport;

/// Messages per page of `reindex`.
const REINDEX_PAGE: u32 = 1000;

/// Serves `app` on `listener` until `shutdown` completes; the app (and the data directory's
/// lock) is released only after the writer flushed.
pub fn serve(
    app: App,
    config: &Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> impl Future<Output = std::io::Result<()>> + Send + 'static {
    let state = HttpState::new(
        app.service.clone(),
        app.idempotency.clone(),
        app.metrics.clone(),
        config,
    );
    async move {
        let served = http::serve(listener, state, shutdown).await;
        drop(app);
        served
    }
}

/// Applies the migrations of the configured database, creates the Kafka topics, the search
/// index and the Redis counters.
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    let backend = Backend::open(config, false).await?;
    #[cfg(feature = "kafka")]
    if let Some(brokers) = config.kafka() {
        let topics = crate::events::kafka::Topics::new(&config.namespace);
        crate::events::kafka::create_topics(brokers, &topics, config.kafka_partitions).await?;
    }
    if let Some(engine) = app::search_engine(config, &backend.store)? {
        tolerate_unavailable(engine.ensure_index().await)?;
    }
    if let Some(url) = config.redis() {
        let hub = std::sync::Arc::new(crate::streams::Hub::default());
        let (_, backlog) = app::sink(config, &backend.store, &Metrics::new(), &hub)?;
        let sequencer = app::redis_sequencer(config, url, backend.store, backlog).await?;
        sequencer.ensure_counters().await?;
    }
    Ok(())
}

/// Recomputes the counts. Needs no lock: each store does it safely beside live traffic.
pub async fn sync_counts(config: &Config) -> anyhow::Result<SyncReport> {
    let backend = Backend::open(config, false).await?;
    Ok(backend.store.sync_counts().await?)
}

/// Rebuilds the search index from the database, in pages of `REINDEX_PAGE` messages, while
/// traffic flows (document ids are deterministic: a message indexed twice is one document).
pub async fn reindex(config: &Config) -> anyhow::Result<u64> {
    let backend = Backend::open(config, false).await?;
    let indexer: Arc<dyn Indexer> = app::search_engine(config, &backend.store)?
        .ok_or_else(|| anyhow::anyhow!("reindex rebuilds Elasticsearch: set ELASTICSEARCH_URL"))?;
    indexer.ensure_index().await?;
    let (mut after, mut total) = (0, 0u64);
    loop {
        let page = backend.store.export_messages(after, REINDEX_PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(total);
        };
        after = last.id;
        let ops: Vec<IndexOp> = page.into_iter().map(IndexOp::from).collect();
        indexer.index(&ops).await?;
        total += ops.len() as u64;
        tracing::info!(indexed = total, "reindexing");
    }
}

/// Runs workers for the chats and/or messages topics until SIGTERM/SIGINT, and `sync-counts`
/// on a timer beside them.
#[cfg(feature = "kafka")]
pub async fn work(config: &Config, chats: bool, messages: bool) -> anyhow::Result<()> {
    use crate::events::kafka::Topics;
    use crate::worker::Worker;
    let brokers = config
        .kafka()
        .ok_or_else(|| anyhow::anyhow!("workers consume Kafka: set KAFKA_BROKERS"))?;
    let backend = Backend::open(config, false).await?;
    let topics = Topics::new(&config.namespace);
    let indexer =
        app::search_engine(config, &backend.store)?.map(|engine| engine as Arc<dyn Indexer>);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let share = config.worker_share();
    // Committed changes reach the streams of every API process through Redis pub/sub.
    let publisher: Arc<dyn crate::streams::Publisher> = match config.redis() {
        Some(url) => {
            Arc::new(crate::streams::redis::RedisPublisher::connect(url, &config.namespace).await?)
        }
        None => Arc::new(crate::streams::Hub::default()),
    };
    for (wanted, topic) in [(chats, &topics.chats), (messages, &topics.messages)] {
        if !wanted {
            continue;
        }
        let mut workers = vec![Worker::storing(
            brokers,
            topic,
            backend.store.clone(),
            publisher.clone(),
            share,
        )?];
        // Only messages are searched; their indexing runs in its own consumer group.
        if let Some(indexer) = indexer.clone().filter(|_| *topic == topics.messages) {
            workers.push(Worker::indexing(brokers, topic, indexer, share)?);
        }
        for worker in workers {
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

#[cfg(not(feature = "kafka"))]
pub async fn work(_config: &Config, _chats: bool, _messages: bool) -> anyhow::Result<()> {
    anyhow::bail!("this build has no Kafka support: build with `--features kafka` (the default)")
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

/// Whether the search engine being away may be waited out (`migrate` creates the index when it
/// can; the workers create it when the cluster is back).
fn tolerate_unavailable(result: Result<(), BackendError>) -> Result<(), BackendError> {
    match result {
        Err(BackendError::Unavailable(reason)) => {
            tracing::warn!(%reason, "search engine unavailable: the workers create the index when it is back");
            Ok(())
        }
        other => other,
    }
}
