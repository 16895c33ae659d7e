//! The composition root: builds the ports from [`Config`], choosing each backend by its URL
//! scheme. Nothing is served or run here: the command line (`crate::cli`) does that with what
//! this returns.

mod lock;

use std::sync::Arc;

use crate::config::{Config, Database};
use crate::events::direct::DirectSink;
use crate::events::{Backlog, EventSink, NoBacklog};
use crate::idempotency::{Idempotency, LocalIdempotency, RedisIdempotency, ResponseStore};
use crate::metrics::Metrics;
use crate::search::elasticsearch::Elasticsearch;
use crate::search::Search;
use crate::sequencer::{MemorySequencer, RedisSequencer, Sequencer};
use crate::service::Service;
use crate::streams::Hub;

/// Changes a stream's client may be behind by before it waits, then is disconnected
/// (`streams::follow::SLOW`).
const STREAM_BUFFER: usize = 64;
use crate::store::{MysqlStore, SqliteStore, Store};

use lock::DataLock;

/// How long after a Redis reset a number drawn before it may still reach the broker: the
/// producer's delivery timeout plus a margin. The recovery waits this out.
const DELIVERY_GRACE: std::time::Duration = std::time::Duration::from_secs(7);

/// What a server process runs on.
pub struct App {
    pub service: Arc<Service>,
    pub idempotency: Arc<dyn Idempotency>,
    pub metrics: Metrics,
    /// Held for the life of the process: numbers come from this process alone.
    _lock: Option<DataLock>,
}

/// A store and its search, from the same backend.
pub struct Backend {
    pub store: Arc<dyn Store>,
    pub search: Arc<dyn Search>,
    responses: Arc<dyn ResponseStore>,
    lock: Option<DataLock>,
}

impl Backend {
    fn of<T: Store + Search + ResponseStore + 'static>(backend: T, lock: Option<DataLock>) -> Self {
        let backend = Arc::new(backend);
        Self {
            store: backend.clone(),
            responses: backend.clone(),
            search: backend,
            lock,
        }
    }

    /// Opens the configured database (applying migrations). `lock`: take the embedded data
    /// directory for this process (the server does; `migrate` and `sync-counts` need not).
    pub async fn open(config: &Config, lock: bool) -> anyhow::Result<Self> {
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
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let metrics = Metrics::new();
        let Backend {
            store,
            mut search,
            responses,
            lock,
        } = Backend::open(config, true).await?;
        if let Some(engine) = search_engine(config, &store)? {
            // The API starts without the cluster: searches answer 503 until it is back.
            if let Err(err) = engine.ensure_index().await {
                tracing::warn!(error = %err, "the search index could not be checked");
            }
            search = engine;
        }
        let hub = Arc::new(Hub::default());
        let (sink, backlog) = sink(config, &store, &metrics, &hub)?;
        // Scaled: changes committed by the workers reach this process's streams through Redis.
        if let (Some(url), Some(_)) = (config.redis(), config.kafka()) {
            tokio::spawn(crate::streams::redis::relay(
                url.to_owned(),
                config.namespace.clone(),
                hub.clone(),
                store.clone(),
            ));
        }
        let idempotency: Arc<dyn Idempotency> = match config.redis() {
            Some(url) => Arc::new(RedisIdempotency::connect(url, &config.namespace).await?),
            None => Arc::new(LocalIdempotency::new(responses)),
        };
        let sequencer: Arc<dyn Sequencer> = match config.redis() {
            Some(url) => Arc::new(redis_sequencer(config, url, store.clone(), backlog).await?),
            None => Arc::new(MemorySequencer::new(store.clone())),
        };
        let purge = Arc::new(tokio::sync::Notify::new());
        tokio::spawn(crate::store::purge_deleted(
            Arc::downgrade(&store),
            purge.clone(),
        ));
        let service = Service {
            store,
            sequencer,
            sink,
            search,
            purge,
            hub,
            streams: Arc::new(tokio::sync::Semaphore::new(config.max_streams)),
            stream_buffer: STREAM_BUFFER,
            stream_keepalive: std::time::Duration::from_secs(config.stream_keepalive.max(1)),
        };
        Ok(Self {
            service: Arc::new(service),
            idempotency,
            metrics,
            _lock: lock,
        })
    }
}

/// The Redis sequencer, whose recovery after a reset waits until `backlog` is drained.
pub async fn redis_sequencer(
    config: &Config,
    url: &str,
    store: Arc<dyn Store>,
    backlog: Arc<dyn Backlog>,
) -> anyhow::Result<RedisSequencer> {
    let sequencer =
        RedisSequencer::connect(url, &config.namespace, store, backlog, DELIVERY_GRACE).await?;
    // Revisions come from Redis only when the workers apply the changes (Kafka); the
    // in-process writer assigns them itself, in commit order.
    Ok(sequencer.drawing_revisions(config.kafka().is_some()))
}

/// Elasticsearch, when configured.
pub fn search_engine(
    config: &Config,
    store: &Arc<dyn Store>,
) -> anyhow::Result<Option<Arc<Elasticsearch>>> {
    config
        .elasticsearch()
        .map(|url| Elasticsearch::new(url, &config.search_index(), store.clone()).map(Arc::new))
        .transpose()
}

/// Where writes go: the group-commit writer (embedded) or the Kafka topics (scaled), and what
/// tells whether every acknowledged write has reached the store.
#[cfg(feature = "kafka")]
pub fn sink(
    config: &Config,
    store: &Arc<dyn Store>,
    metrics: &Metrics,
    hub: &Arc<Hub>,
) -> anyhow::Result<(Arc<dyn EventSink>, Arc<dyn Backlog>)> {
    use crate::events::kafka::{KafkaBacklog, KafkaSink, Topics};
    let Some(brokers) = config.kafka() else {
        return Ok(direct_sink(store, metrics, hub));
    };
    let topics = Topics::new(&config.namespace);
    let sink = KafkaSink::connect(
        brokers,
        topics.clone(),
        store.clone(),
        config.kafka_idempotence,
    )?;
    Ok((Arc::new(sink), Arc::new(KafkaBacklog::new(brokers, topics))))
}

#[cfg(not(feature = "kafka"))]
pub fn sink(
    _config: &Config,
    store: &Arc<dyn Store>,
    metrics: &Metrics,
    hub: &Arc<Hub>,
) -> anyhow::Result<(Arc<dyn EventSink>, Arc<dyn Backlog>)> {
    Ok(direct_sink(store, metrics, hub))
}

/// The group-commit writer, which publishes what it committed to this process's streams.
fn direct_sink(
    store: &Arc<dyn Store>,
    metrics: &Metrics,
    hub: &Arc<Hub>,
) -> (Arc<dyn EventSink>, Arc<dyn Backlog>) {
    (
        Arc::new(DirectSink::start(
            store.clone(),
            metrics.clone(),
            hub.clone(),
        )),
        Arc::new(NoBacklog),
    )
}
