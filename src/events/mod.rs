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

use anyhow::anyhow;
use async_trait::async_trait;

use crate::domain::event::{
    ApplicationCreated, ApplicationDeleted, ApplicationRenamed, Applied, ChatCreated, ChatDeleted,
    Event, MessageCreated, MessageDeleted, MessageEdited,
};
use crate::domain::{Application, Chat, Message};
use crate::error::BackendError;

/// Where handlers send writes. `send` returns once the event is durable; the service calls the
/// typed methods of `dyn EventSink` below, one per kind of write.
#[async_trait]
pub trait EventSink: Send + Sync {
    async fn send(&self, event: Event) -> Result<Applied, BackendError>;

    /// Stops accepting events and returns once everything accepted before is durable.
    async fn flush_and_stop(&self);
}

/// Where the write path reports each committed batch (its events and what each produced): the
/// live streams (`crate::streams`). Called after the commit, so nothing reported can be lost.
#[async_trait]
pub trait Publisher: Send + Sync {
    async fn publish(&self, events: &[Event], outcomes: &[Applied]);
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

/// The typed face of a sink: each kind of write answers its own kind of outcome (`None`: the
/// parent, or for an edit the message, does not exist). The one place where an outcome of the
/// wrong kind could surface is [`outcome`], as an internal error.
impl dyn EventSink + '_ {
    pub async fn create_application(
        &self,
        event: ApplicationCreated,
    ) -> Result<Application, BackendError> {
        match self.send(event.into()).await? {
            Applied::Application(application) => Ok(application),
            other => Err(outcome("an application creation", &other)),
        }
    }

    pub async fn rename_application(
        &self,
        event: ApplicationRenamed,
    ) -> Result<Option<Application>, BackendError> {
        match self.send(event.into()).await? {
            Applied::Application(application) => Ok(Some(application)),
            Applied::NotFound => Ok(None),
            other => Err(outcome("a rename", &other)),
        }
    }

    pub async fn create_chat(&self, event: ChatCreated) -> Result<Option<Chat>, BackendError> {
        match self.send(event.into()).await? {
            Applied::Chat(chat) => Ok(Some(chat)),
            Applied::NotFound => Ok(None),
            other => Err(outcome("a chat creation", &other)),
        }
    }

    pub async fn create_message(
        &self,
        event: MessageCreated,
    ) -> Result<Option<Message>, BackendError> {
        self.message(event.into()).await
    }

    pub async fn edit_message(
        &self,
        event: MessageEdited,
    ) -> Result<Option<Message>, BackendError> {
        self.message(event.into()).await
    }

    /// `false`: there was nothing to delete.
    pub async fn delete_message(&self, event: MessageDeleted) -> Result<bool, BackendError> {
        self.delete(event.into()).await
    }

    pub async fn delete_chat(&self, event: ChatDeleted) -> Result<bool, BackendError> {
        self.delete(event.into()).await
    }

    pub async fn delete_application(
        &self,
        event: ApplicationDeleted,
    ) -> Result<bool, BackendError> {
        self.delete(event.into()).await
    }

    async fn delete(&self, event: Event) -> Result<bool, BackendError> {
        match self.send(event).await? {
            Applied::Deleted | Applied::MessageDeleted(_) => Ok(true),
            Applied::NotFound => Ok(false),
            other => Err(outcome("a deletion", &other)),
        }
    }

    async fn message(&self, event: Event) -> Result<Option<Message>, BackendError> {
        match self.send(event).await? {
            Applied::Message(message) => Ok(Some(message)),
            Applied::NotFound => Ok(None),
            other => Err(outcome("a message write", &other)),
        }
    }
}

/// A store answered an event with an outcome of another kind: a bug, reported once.
fn outcome(what: &str, applied: &Applied) -> BackendError {
    BackendError::Other(anyhow!("the store answered {what} with {applied:?}"))
}
