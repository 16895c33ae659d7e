//! The sequencer port: who hands out chat and message numbers.
//!
//! - [`memory::MemorySequencer`] (embedded): counters in the process, started from the store.
//!   Correct because exactly one process serves a data directory (see `app::DataLock`).
//! - [`RedisSequencer`] (scaled): one Lua script call per creation, shared by every process,
//!   with detection of and recovery from a Redis that lost its counters.

mod memory;
mod redis;

pub use self::redis::RedisSequencer;
pub use memory::MemorySequencer;

use async_trait::async_trait;

use crate::domain::event::AT_APPLY;
use crate::domain::Token;
use crate::error::BackendError;
pub use crate::events::Backlog;

/// A message number and the chat revision of its creation ([`AT_APPLY`]: the store assigns it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drawn {
    pub number: u64,
    pub revision: u64,
}

#[async_trait]
pub trait Sequencer: Send + Sync {
    /// The next chat number of an application, or `None` if the application does not exist.
    async fn next_chat_number(&self, token: &Token) -> Result<Option<u64>, BackendError>;

    /// The next message number of a chat and the revision of its creation, or `None` if the
    /// chat does not exist.
    async fn next_message(&self, token: &Token, chat: u64) -> Result<Option<Drawn>, BackendError>;

    /// The revision of an edit or a deletion in the chat, or `None` if the chat does not exist.
    /// By default the store assigns it when it applies the change ([`AT_APPLY`]).
    async fn next_revision(&self, _token: &Token, _chat: u64) -> Result<Option<u64>, BackendError> {
        Ok(Some(AT_APPLY))
    }

    /// Called once a chat's deletion is durable: no number or revision is drawn for it again.
    async fn chat_deleted(&self, _token: &Token, _chat: u64) -> Result<(), BackendError> {
        Ok(())
    }

    /// Called once an application's deletion is durable.
    async fn application_deleted(&self, _token: &Token) -> Result<(), BackendError> {
        Ok(())
    }

    /// Called after an application was stored, so that its chats can be numbered.
    async fn application_created(&self, _token: &Token) -> Result<(), BackendError> {
        Ok(())
    }

    /// Whether the sequencer's backend answers.
    async fn ready(&self) -> bool {
        true
    }
}
