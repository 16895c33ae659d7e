//! Workers: consume a topic in batches and commit the offsets only after the batch took effect.
//! Two roles, each its own consumer group, so neither waits for the other:
//!
//! - **store** (group `<topic>-workers`): apply each batch through `store.apply` (one
//!   transaction). At-least-once delivery is harmless because `apply` is idempotent.
//! - **index** (group `<topic>-indexers`, only with a search engine): send each batch's message
//!   changes to the [`Indexer`]. A cluster that is down stalls this group alone: messages are
//!   still stored and readable, and once the cluster is back the group's backlog is indexed.
//!
//! A batch that fails is retried with backoff, never skipped, and its offsets are not committed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::domain::event::Event;
use crate::error::BackendError;
use crate::events::kafka::{client_config, Topics};
use crate::search::{IndexOp, Indexer};
use crate::store::Store;
use crate::streams::Publisher;

/// Most events one worker step takes from the topic (one transaction, or one bulk request).
pub const WORKER_MAX_EVENTS: usize = 2000;
/// How long a worker step waits for more events after its first one.
const WORKER_GATHER: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What a worker does with a batch.
enum Role {
    /// Stores batches, then tells the streams of every API process what changed.
    Store(Arc<dyn Store>, Arc<dyn Publisher>),
    Index {
        indexer: Arc<dyn Indexer>,
        /// Whether the index (with its mapping) is known to exist: checked before the first
        /// bulk, since a bulk into a missing index would create it with a guessed mapping.
        ready: AtomicBool,
    },
}

pub struct Worker {
    consumer: StreamConsumer,
    topic: String,
    role: Role,
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// This many events took effect and their offsets were committed.
    Applied(usize),
    /// Shutdown was requested before a batch completed; nothing was committed.
    Stopped,
}

impl Worker {
    /// A worker that stores the topic's events. `share`: `Some((index, count))` makes this
    /// worker take the partitions `p` with `p % count == index` itself (a restarted worker
    /// with the same index resumes them from the group's committed offsets); `None` lets the
    /// consumer group assign partitions.
    pub fn storing(
        brokers: &str,
        topic: &str,
        store: Arc<dyn Store>,
        publisher: Arc<dyn Publisher>,
        share: Option<(u32, u32)>,
    ) -> anyhow::Result<Self> {
        let consumer = consumer(brokers, topic, &Topics::group(topic), share)?;
        Ok(Self {
            consumer,
            topic: topic.to_owned(),
            role: Role::Store(store, publisher),
        })
    }

    /// A worker that indexes the topic's message changes in `indexer`, in a consumer group of
    /// its own.
    pub fn indexing(
        brokers: &str,
        topic: &str,
        indexer: Arc<dyn Indexer>,
        share: Option<(u32, u32)>,
    ) -> anyhow::Result<Self> {
        let consumer = consumer(brokers, topic, &Topics::index_group(topic), share)?;
        Ok(Self {
            consumer,
            topic: topic.to_owned(),
            role: Role::Index {
                indexer,
                ready: AtomicBool::new(false),
            },
        })
    }

    /// Consumes until `shutdown` turns true.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        tracing::info!(topic = %self.topic, role = self.role.name(), "worker consuming");
        loop {
            match self.try_process_batch(&mut shutdown).await? {
                Outcome::Stopped => return Ok(()),
                Outcome::Applied(events) => {
                    tracing::debug!(topic = %self.topic, events, "batch done")
                }
            }
        }
    }

    /// One step: wait for events, gather a batch, apply it (store or index), commit its
    /// offsets.
    pub async fn try_process_batch(
        &self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<Outcome> {
        let first = tokio::select! {
            message = self.consumer.recv() => message,
            _ = shutdown.wait_for(|stop| *stop) => return Ok(Outcome::Stopped),
        };
        let first = match first {
            Ok(message) => message,
            Err(err) => {
                // The broker is away or the group rebalances: librdkafka reconnects by itself.
                tracing::warn!(topic = %self.topic, error = %err, "consume failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                return Ok(Outcome::Applied(0));
            }
        };
        let mut messages = vec![first];
        let deadline = tokio::time::Instant::now() + WORKER_GATHER;
        while messages.len() < WORKER_MAX_EVENTS {
            match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Ok(Ok(message)) => messages.push(message),
                Ok(Err(_)) | Err(_) => break,
            }
        }
        let events = decode(&messages);
        if !self.role.apply(&events, shutdown).await {
            return Ok(Outcome::Stopped);
        }
        // A failed commit only means these events are delivered again, which changes nothing.
        if let Err(err) = self
            .consumer
            .commit(&next_offsets(&messages)?, CommitMode::Sync)
        {
            tracing::warn!(topic = %self.topic, error = %err, "committing offsets failed; the batch will be redelivered");
        }
        Ok(Outcome::Applied(events.len()))
    }
}

impl Role {
    fn name(&self) -> &'static str {
        match self {
            Self::Store(..) => "store",
            Self::Index { .. } => "index",
        }
    }

    /// Makes the batch take effect, retrying with backoff until it does; `false` when shutdown
    /// came first.
    async fn apply(&self, events: &[Event], shutdown: &mut watch::Receiver<bool>) -> bool {
        let ops: Vec<IndexOp> = match self {
            Self::Store(..) => Vec::new(),
            Self::Index { .. } => events.iter().filter_map(IndexOp::of).collect(),
        };
        if matches!(self, Self::Index { .. }) && ops.is_empty() {
            return true;
        }
        let mut backoff = Duration::from_millis(100);
        loop {
            let result = match self {
                Self::Store(store, publisher) => match store.apply(events).await {
                    // Published after the commit, so a subscriber never sees a change the store
                    // could still lose; a lost publication is caught by the relays' audit.
                    Ok(outcomes) => {
                        publisher.publish(events, &outcomes).await;
                        Ok(())
                    }
                    Err(err) => Err(err),
                },
                Self::Index { indexer, ready } => index(indexer.as_ref(), ready, &ops).await,
            };
            let err = match result {
                Ok(()) => return true,
                Err(err) => err,
            };
            tracing::warn!(role = self.name(), error = %err, events = events.len(), "a batch failed; retrying");
            tokio::select! {
                () = tokio::time::sleep(backoff) => {},
                _ = shutdown.wait_for(|stop| *stop) => return false,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// One indexing attempt: the index is created first if it is not known to exist. Documents the
/// engine refuses for good (an edit of a message that was never stored) are logged by the
/// engine and not retried; anything else is an error, and the batch is tried again.
async fn index(
    indexer: &dyn Indexer,
    ready: &AtomicBool,
    ops: &[IndexOp],
) -> Result<(), BackendError> {
    if !ready.load(Ordering::Relaxed) {
        indexer.ensure_index().await?;
        ready.store(true, Ordering::Relaxed);
    }
    let refused = indexer.index(ops).await?;
    if refused > 0 {
        tracing::warn!(refused, "the search engine refused documents for good");
    }
    Ok(())
}

fn consumer(
    brokers: &str,
    topic: &str,
    group: &str,
    share: Option<(u32, u32)>,
) -> anyhow::Result<StreamConsumer> {
    let consumer: StreamConsumer = client_config(brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "10")
        // A worker killed with -9 never says goodbye: its partitions move to the others
        // once its session expires (librdkafka's default is 45 s), and a rebalance waits at
        // most the poll interval for members that do not rejoin (default 300 s).
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        .set("max.poll.interval.ms", "15000")
        .create()
        .context("cannot create the Kafka consumer (KAFKA_BROKERS)")?;
    match share {
        None => consumer
            .subscribe(&[topic])
            .with_context(|| format!("cannot subscribe to {topic}"))?,
        Some((index, count)) => {
            let metadata = consumer
                .fetch_metadata(Some(topic), Duration::from_secs(10))
                .with_context(|| format!("cannot read the partitions of {topic}"))?;
            let partitions = metadata
                .topics()
                .first()
                .map_or(0, |t| t.partitions().len());
            let mut mine = TopicPartitionList::new();
            for partition in (0..partitions as u32).filter(|p| p % count == index) {
                mine.add_partition_offset(topic, partition as i32, Offset::Stored)?;
            }
            consumer
                .assign(&mine)
                .with_context(|| format!("cannot assign partitions of {topic}"))?;
        }
    }
    Ok(consumer)
}

fn decode(messages: &[BorrowedMessage<'_>]) -> Vec<Event> {
    messages
        .iter()
        .filter_map(|message| {
            let payload = message.payload().unwrap_or_default();
            match serde_json::from_slice(payload) {
                Ok(event) => Some(event),
                Err(err) => {
                    // Nothing can ever apply it; keeping it would stop the partition forever.
                    tracing::error!(
                        topic = message.topic(),
                        partition = message.partition(),
                        offset = message.offset(),
                        error = %err,
                        "skipping an undecodable event"
                    );
                    None
                }
            }
        })
        .collect()
}

/// For each partition, the offset after the last message of the batch.
fn next_offsets(messages: &[BorrowedMessage<'_>]) -> anyhow::Result<TopicPartitionList> {
    let mut next: HashMap<(&str, i32), i64> = HashMap::new();
    for message in messages {
        let entry = next
            .entry((message.topic(), message.partition()))
            .or_insert(0);
        *entry = (*entry).max(message.offset() + 1);
    }
    let mut list = TopicPartitionList::new();
    for ((topic, partition), offset) in next {
        list.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    }
    Ok(list)
}

/// Runs `sync-counts` every `every`, so counts never drift for longer.
pub async fn sync_counts_periodically(
    store: Arc<dyn Store>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = ticker.tick() => {},
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        match store.sync_counts().await {
            Ok(report) => tracing::info!(
                applications = report.applications_fixed,
                chats = report.chats_fixed,
                "counts synchronised"
            ),
            Err(err) => tracing::warn!(error = %err, "sync-counts failed"),
        }
    }
}
