//! Writes are events. A handler draws a number, builds an [`Event`] and hands it to an
//! [`EventSink`]; the sink answers once the event is durable.
//!
//! - [`direct::DirectSink`] (embedded): a writer task gathers concurrent events into one
//!   `store.apply` transaction (group commit) and answers each with its [`Applied`] outcome.
//! - `kafka::KafkaSink` (scaled): publishes chat and message events to their topics and answers
//!   once the broker acknowledged; workers (`crate::worker`) apply them.

pub mod direct;
#[cfg(feature = "kafka")]
pub mod kafka;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{Application, Chat, Message};
use crate::error::BackendError;

/// One write. Events carry everything the store needs (numbers and times included), so applying
/// one twice changes nothing: the store is idempotent by construction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    ApplicationCreated {
        token: String,
        name: String,
        at: DateTime<Utc>,
    },
    ApplicationRenamed {
        token: String,
        name: String,
        at: DateTime<Utc>,
    },
    ChatCreated {
        token: String,
        number: u64,
        at: DateTime<Utc>,
    },
    MessageCreated {
        token: String,
        chat: u64,
        number: u64,
        body: String,
        at: DateTime<Utc>,
    },
    MessageEdited {
        token: String,
        chat: u64,
        number: u64,
        body: String,
        at: DateTime<Utc>,
    },
}

/// What applying one event produced: the resource as stored, or `NotFound` when its parent
/// (or, for an edit, the resource itself) does not exist.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    Application(Application),
    Chat(Chat),
    Message(Message),
    NotFound,
}

/// Where handlers send writes. `send` returns once the event is durable.
#[async_trait]
pub trait EventSink: Send + Sync {
    async fn send(&self, event: Event) -> Result<Applied, BackendError>;

    /// Stops accepting events and returns once everything accepted before is durable.
    async fn flush_and_stop(&self);
}

/// Whether every acknowledged event has reached the store (nothing is still queued).
#[async_trait]
pub trait Backlog: Send + Sync {
    async fn drained(&self) -> Result<bool, BackendError>;
}

/// The direct sink acknowledges after the store committed: there is never a backlog.
pub struct NoBacklog;

#[async_trait]
impl Backlog for NoBacklog {
    async fn drained(&self) -> Result<bool, BackendError> {
        Ok(true)
    }
}
