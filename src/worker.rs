//! Workers: consume a topic, apply each batch through `store.apply` (one transaction), then
//! commit the offsets. At-least-once delivery is harmless because `apply` is idempotent; a
//! batch that fails is retried with backoff, never skipped, and its offsets are not committed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::error::BackendError;
use crate::events::kafka::{client_config, Topics};
use crate::events::{Applied, Event};
use crate::search::{IndexOp, Indexer};
use crate::store::Store;

/// Most events applied in one transaction.
pub const MAX_BATCH: usize = 2000;
/// How long a batch waits for more events after its first one.
const GATHER: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub struct Worker {
    consumer: StreamConsumer,
    store: Arc<dyn Store>,
    topic: String,
    /// Where stored messages are indexed for search, when a search engine is configured.
    engine: Option<Arc<dyn Indexer>>,
    /// Whether the index (with its mapping) is known to exist: checked before the first bulk,
    /// since a bulk into a missing index would create it with a guessed mapping.
    index_ready: AtomicBool,
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// This many events were stored and their offsets committed.
    Applied(usize),
    /// Shutdown was requested before a batch completed; nothing was committed.
    Stopped,
}

impl Worker {
    /// `share`: `Some((index, count))` makes this worker take the partitions `p` with
    /// `p % count == index` itself (a restarted worker with the same index resumes them from
    /// the group's committed offsets); `None` lets the consumer group assign partitions.
    pub fn connect(
        brokers: &str,
        topic: &str,
        store: Arc<dyn Store>,
        share: Option<(u32, u32)>,
    ) -> anyhow::Result<Self> {
        let consumer: StreamConsumer = client_config(brokers)
            .set("group.id", Topics::group(topic))
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
        Ok(Self {
            consumer,
            store,
            topic: topic.to_owned(),
            engine: None,
            index_ready: AtomicBool::new(false),
        })
    }

    /// Indexes the messages of every stored batch in `engine` before committing its offsets.
    pub fn indexing(mut self, engine: Option<Arc<dyn Indexer>>) -> Self {
        self.engine = engine;
        self
    }

    /// Indexes a stored batch; waits out an unavailable cluster (nothing is dropped), gives up
    /// only on documents the cluster rejects for good (logged by the engine).
    async fn index(&self, events: &[Event], shutdown: &mut watch::Receiver<bool>) -> bool {
        let Some(engine) = &self.engine else {
            return true;
        };
        let ops: Vec<IndexOp> = events.iter().filter_map(index_op).collect();
        if ops.is_empty() {
            return true;
        }
        loop {
            let ready = self.index_ready.load(Ordering::Relaxed)
                || engine
                    .ensure_index()
                    .await
                    .map(|()| self.index_ready.store(true, Ordering::Relaxed))
                    .is_ok();
            let indexed = if ready {
                engine.index(&ops).await
            } else {
                Err(BackendError::Unavailable(
                    "cannot create the search index".into(),
                ))
            };
            match indexed {
                Ok(()) => return true,
                Err(BackendError::Unavailable(reason)) => {
                    tracing::warn!(%reason, "search engine unavailable; retrying the batch");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {},
                        _ = shutdown.wait_for(|stop| *stop) => return false,
                    }
                }
                Err(err) => {
                    tracing::error!(error = %err, "documents rejected by the search engine");
                    return true;
                }
            }
        }
    }

    /// Consumes until `shutdown` turns true.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        tracing::info!(topic = %self.topic, "worker consuming");
        loop {
            match self.try_process_batch(&mut shutdown).await? {
                Outcome::Stopped => return Ok(()),
                Outcome::Applied(events) => {
                    tracing::debug!(topic = %self.topic, events, "batch stored")
                }
            }
        }
    }

    /// One step: wait for events, gather a batch, store it, commit its offsets.
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
        let deadline = tokio::time::Instant::now() + GATHER;
        while messages.len() < MAX_BATCH {
            match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Ok(Ok(message)) => messages.push(message),
                Ok(Err(_)) | Err(_) => break,
            }
        }
        let events = decode(&messages);
        let mut backoff = Duration::from_millis(100);
        let outcomes = loop {
            match self.store.apply(&events).await {
                Ok(outcomes) => break outcomes,
                Err(err) => {
                    tracing::warn!(error = %err, events = events.len(), "storing a batch failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {},
                        _ = shutdown.wait_for(|stop| *stop) => return Ok(Outcome::Stopped),
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        };
        // Only what was stored is indexed (an edit of an unknown message is not).
        let stored: Vec<Event> = events
            .iter()
            .zip(&outcomes)
            .filter(|(_, outcome)| matches!(outcome, Applied::Message(_)))
            .map(|(event, _)| event.clone())
            .collect();
        if !self.index(&stored, shutdown).await {
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

/// What a stored event changes in the search index.
fn index_op(event: &Event) -> Option<IndexOp> {
    match event {
        Event::MessageCreated {
            token,
            chat,
            number,
            body,
            at,
        } => Some(IndexOp::Create {
            token: token.clone(),
            chat: *chat,
            number: *number,
            body: body.clone(),
            created_at: *at,
        }),
        Event::MessageEdited {
            token,
            chat,
            number,
            body,
            at,
        } => Some(IndexOp::Edit {
            token: token.clone(),
            chat: *chat,
            number: *number,
            body: body.clone(),
            updated_at: *at,
        }),
        _ => None,
    }
}
