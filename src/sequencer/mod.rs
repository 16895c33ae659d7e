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

use crate::domain::Token;
use crate::error::BackendError;
pub use crate::events::Backlog;

#[async_trait]
pub trait Sequencer: Send + Sync {
    /// The next chat number of an application, or `None` if the application does not exist.
    async fn next_chat_number(&self, token: &Token) -> Result<Option<u64>, BackendError>;

    /// The next message number of a chat, or `None` if the chat does not exist.
    async fn next_message_number(
        &self,
        token: &Token,
        chat: u64,
    ) -> Result<Option<u64>, BackendError>;

    /// Called after an application was stored, so that its chats can be numbered.
    async fn application_created(&self, _token: &Token) -> Result<(), BackendError> {
        Ok(())
    }

    /// Whether the sequencer's backend answers.
    async fn ready(&self) -> bool {
        true
    }
}
