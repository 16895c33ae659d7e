//! The scaled sink: chat and message events go to Kafka, one topic per model as in the seed.
//!
//! Every event of one chat is keyed `{token}:{chat}`, so it lands in one partition and workers
//! see a chat's creation before its messages and a message's creation before its edits. The
//! API answers once the broker acknowledged (`acks=all`, idempotent producer). Applications are
//! written to the store synchronously: their token must work at once.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::{Backlog, EventSink};
use crate::domain::event::{Applied, Event};
use crate::domain::{Chat, Message, Token};
use crate::error::BackendError;
use crate::store::Store;

/// How long the producer tries to deliver an event before the API answers 503.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an edit waits for its message to be persisted by a worker (SPEC §4 promises a
/// second under normal load; a loaded worker gets more before the edit answers 404).
const EDIT_VISIBILITY: Duration = Duration::from_secs(5);

/// Topic and consumer-group names, under the configured namespace.
#[derive(Debug, Clone)]
pub struct Topics {
    pub chats: String,
    pub messages: String,
}

impl Topics {
    pub fn new(namespace: &str) -> Self {
        Self {
            chats: format!("{namespace}chats"),
            messages: format!("{namespace}messages"),
        }
    }

    /// The consumer group of the workers of a topic.
    pub fn group(topic: &str) -> String {
        format!("{topic}-workers")
    }

    /// The consumer group that indexes a topic for search, apart from the one that stores it.
    pub fn index_group(topic: &str) -> String {
        format!("{topic}-indexers")
    }

    /// The partition key: everything of one chat in one partition, in order.
    pub fn key(token: &Token, chat: u64) -> String {
        format!("{token}:{chat}")
    }
}

pub fn client_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    config
}

/// Creates the topics if they do not exist (run by `chat-system migrate`).
pub async fn create_topics(brokers: &str, topics: &Topics, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(brokers)
        .create()
        .context("cannot create a Kafka admin client")?;
    let wanted = [
        NewTopic::new(&topics.chats, partitions, TopicReplication::Fixed(1)),
        NewTopic::new(&topics.messages, partitions, TopicReplication::Fixed(1)),
    ];
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin
        .create_topics(&wanted, &options)
        .await
        .context("cannot reach Kafka (KAFKA_BROKERS)")?
    {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => anyhow::bail!("cannot create the Kafka topic {topic}: {code}"),
        }
    }
    Ok(())
}

pub struct KafkaSink {
    brokers: String,
    idempotent: bool,
    /// Replaced when the broker rejects the producer's identity (a broker restarted without its
    /// idempotence state answers every send with an error until a new producer id is drawn).
    producer: RwLock<Arc<FutureProducer>>,
    topics: Topics,
    store: Arc<dyn Store>,
}

fn producer(brokers: &str, idempotent: bool) -> anyhow::Result<FutureProducer> {
    client_config(brokers)
        .set("acks", "all")
        .set("enable.idempotence", idempotent.to_string())
        .set("linger.ms", "1")
        .set(
            "message.timeout.ms",
            DELIVERY_TIMEOUT.as_millis().to_string(),
        )
        .create()
        .context("cannot create the Kafka producer (KAFKA_BROKERS)")
}

impl KafkaSink {
    /// `idempotent`: the producer's own de-duplication of its retries. Events carry their
    /// numbers and workers apply them idempotently, so a retried duplicate is harmless either
    /// way; it is on by default and off only for brokers that mishandle it (see the README).
    pub fn connect(
        brokers: &str,
        topics: Topics,
        store: Arc<dyn Store>,
        idempotent: bool,
    ) -> anyhow::Result<Self> {
        let producer = RwLock::new(Arc::new(producer(brokers, idempotent)?));
        Ok(Self {
            brokers: brokers.to_owned(),
            idempotent,
            producer,
            topics,
            store,
        })
    }

    fn current(&self) -> Arc<FutureProducer> {
        self.producer
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    async fn publish(&self, topic: &str, key: &str, event: &Event) -> Result<(), BackendError> {
        let payload = serde_json::to_vec(event).map_err(|err| BackendError::Other(err.into()))?;
        let record = FutureRecord::to(topic).key(key).payload(&payload);
        let producer = self.current();
        let Err((err, _)) = producer.send(record, DELIVERY_TIMEOUT).await else {
            return Ok(());
        };
        let timed_out = matches!(
            err,
            KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageTimedOut | RDKafkaErrorCode::QueueFull
            )
        );
        if !timed_out {
            self.replace(&producer);
        }
        Err(BackendError::Unavailable(format!("kafka: {err}")))
    }

    /// Starts a new producer (a new idempotence identity) unless another request already did.
    fn replace(&self, failed: &Arc<FutureProducer>) {
        let mut current = self
            .producer
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !Arc::ptr_eq(&current, failed) {
            return;
        }
        match producer(&self.brokers, self.idempotent) {
            Ok(fresh) => {
                tracing::warn!("the broker rejected the producer: starting a new one");
                let old = std::mem::replace(&mut *current, Arc::new(fresh));
                // Destroying a librdkafka producer blocks until its outstanding requests end
                // (seconds while the broker is away). That must never happen on a runtime
                // thread: the last reference is dropped on a blocking thread, once in-flight
                // sends have let go of theirs.
                tokio::task::spawn_blocking(move || {
                    while Arc::strong_count(&old) > 1 {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    drop(old);
                });
            }
            Err(err) => tracing::warn!(error = %err, "cannot start a new producer"),
        }
    }

    /// The stored message, waiting up to the visibility bound for a worker to persist it.
    async fn persisted(
        &self,
        token: &Token,
        chat: u64,
        number: u64,
    ) -> Result<Option<Message>, BackendError> {
        let deadline = tokio::time::Instant::now() + EDIT_VISIBILITY;
        loop {
            if let Some(message) = self.store.message(token, chat, number).await? {
                return Ok(Some(message));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl KafkaSink {
    /// Whether the chat is stored, waiting up to the visibility bound for a worker to store it.
    async fn chat_persisted(&self, token: &Token, chat: u64) -> Result<bool, BackendError> {
        let deadline = tokio::time::Instant::now() + EDIT_VISIBILITY;
        loop {
            if self.store.chat(token, chat).await?.is_some() {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[async_trait]
impl EventSink for KafkaSink {
    async fn send(&self, event: Event) -> Result<Applied, BackendError> {
        match &event {
            // Applications are created synchronously: the token must be usable at once.
            Event::ApplicationCreated(_) | Event::ApplicationRenamed(_) => {
                let mut outcomes = self.store.apply(std::slice::from_ref(&event)).await?;
                Ok(outcomes.pop().unwrap_or(Applied::NotFound))
            }
            Event::ChatCreated(chat) => {
                let key = Topics::key(&chat.token, chat.number);
                self.publish(&self.topics.chats, &key, &event).await?;
                Ok(Applied::Chat(Chat::from(chat)))
            }
            Event::MessageCreated(message) => {
                let key = Topics::key(&message.token, message.chat);
                self.publish(&self.topics.messages, &key, &event).await?;
                Ok(Applied::Message(Message::from(message)))
            }
            Event::MessageEdited(edit) => {
                let Some(stored) = self.persisted(&edit.token, edit.chat, edit.number).await?
                else {
                    return Ok(Applied::NotFound);
                };
                let key = Topics::key(&edit.token, edit.chat);
                self.publish(&self.topics.messages, &key, &event).await?;
                Ok(Applied::Message(edit.applied_to(stored)))
            }
            // Deletions travel with the chat's messages (same topic, same key, so in order
            // after them); like an edit, a deletion first waits for what it deletes to be stored.
            Event::MessageDeleted(deleted) => {
                if self
                    .persisted(&deleted.token, deleted.chat, deleted.number)
                    .await?
                    .is_none()
                {
                    return Ok(Applied::NotFound);
                }
                let key = Topics::key(&deleted.token, deleted.chat);
                self.publish(&self.topics.messages, &key, &event).await?;
                Ok(Applied::MessageDeleted(deleted.into()))
            }
            Event::ChatDeleted(deleted) => {
                if !self.chat_persisted(&deleted.token, deleted.number).await? {
                    return Ok(Applied::NotFound);
                }
                let key = Topics::key(&deleted.token, deleted.number);
                self.publish(&self.topics.messages, &key, &event).await?;
                Ok(Applied::Deleted)
            }
            // Synchronous like the creation (the token answers 404 at once); then published
            // too, so that the search indexer drops the application's documents.
            Event::ApplicationDeleted(deleted) => {
                let mut outcomes = self.store.apply(std::slice::from_ref(&event)).await?;
                let outcome = outcomes.pop().unwrap_or(Applied::NotFound);
                if outcome == Applied::Deleted {
                    let key = Topics::key(&deleted.token, 0);
                    self.publish(&self.topics.messages, &key, &event).await?;
                }
                Ok(outcome)
            }
        }
    }

    async fn flush_and_stop(&self) {
        // Every send already waited for its acknowledgement; nothing is buffered here.
    }
}

/// Whether the workers have stored everything the broker holds: committed offsets of each
/// worker group equal the high watermarks of its topic.
pub struct KafkaBacklog {
    brokers: String,
    topics: Topics,
}

impl KafkaBacklog {
    pub fn new(brokers: &str, topics: Topics) -> Self {
        Self {
            brokers: brokers.to_owned(),
            topics,
        }
    }
}

fn lag(brokers: &str, topic: &str) -> anyhow::Result<i64> {
    let timeout = Duration::from_secs(5);
    let consumer: BaseConsumer = client_config(brokers)
        .set("group.id", Topics::group(topic))
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions = metadata
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len());
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition(topic, partition as i32);
    }
    let committed = consumer.committed_offsets(list, timeout)?;
    let mut lag = 0;
    for element in committed.elements() {
        let (low, high) = consumer.fetch_watermarks(topic, element.partition(), timeout)?;
        let position = match element.offset() {
            Offset::Offset(offset) => offset,
            _ => low,
        };
        lag += (high - position).max(0);
    }
    Ok(lag)
}

#[async_trait]
impl Backlog for KafkaBacklog {
    async fn drained(&self) -> Result<bool, BackendError> {
        let (brokers, topics) = (self.brokers.clone(), self.topics.clone());
        let total = tokio::task::spawn_blocking(move || -> anyhow::Result<i64> {
            Ok(lag(&brokers, &topics.chats)? + lag(&brokers, &topics.messages)?)
        })
        .await
        .map_err(|err| BackendError::Other(err.into()))?
        .map_err(|err| BackendError::Unavailable(format!("kafka: {err:#}")))?;
        if total > 0 {
            tracing::info!(lag = total, "waiting for the workers to store the backlog");
        }
        Ok(total == 0)
    }
}
