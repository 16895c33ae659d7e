//! The sequencer port: who hands out chat and message numbers.
//!
//! - [`memory::MemorySequencer`] (embedded): counters in the process, started from the store.
//!   Correct because exactly one process serves a data directory (see `app::DataLock`).
//! - [`RedisSequencer`] (scaled): one Lua script call per creation, shared by every process,
//!   with detection of and recovery from a Redis that lost its counters.

mod memory;
mod redis;

pub use self::redis::{in_flight_keys, RedisSequencer};
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

    /// The lowest revision of the chat drawn for a change that has not reached the store yet, if
    /// any. Readers of the changes feed stop below it: where revisions are drawn before the
    /// changes are published (Redis), two changes made at once through two API processes can
    /// be stored in the opposite order of their revisions. `None` by default: the store assigns
    /// revisions in commit order.
    async fn in_flight(&self, _token: &Token, _chat: u64) -> Result<Option<u64>, BackendError> {
        Ok(None)
    }

    /// A drawn revision whose change will never be published (the broker refused it).
    async fn abandon(&self, _token: &Token, _chat: u64, _revision: u64) {}

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
