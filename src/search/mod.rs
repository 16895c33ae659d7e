//! The search ports.
//!
//! - [`Search`]: the messages of one chat matching some terms. The SQL stores implement it
//!   themselves (SQLite FTS5 in `store/sqlite/`, a `LIKE` scan in `store/mysql/`); a search
//!   engine gets its own adapter here ([`elasticsearch`]).
//! - [`Indexer`]: what the scaled worker and `reindex` feed a search engine with, as
//!   [`IndexOp`]s. The SQL stores need none: their index is kept in their own transaction or by
//!   their own background indexer.

pub mod elasticsearch;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::event::{Event, MessageCreated, MessageEdited};
use crate::domain::{Message, Page, SearchTerms, Token};
use crate::error::BackendError;

/// The search port: the messages of one chat that contain every word of the terms,
/// most relevant first, then by number. `Ok(None)` when the chat does not exist.
#[async_trait]
pub trait Search: Send + Sync {
    async fn search(
        &self,
        token: &Token,
        chat: u64,
        terms: &SearchTerms,
        page: Page,
    ) -> Result<Option<Vec<Message>>, BackendError>;

    /// Whether the search backend answers (the SQL stores are checked as stores).
    async fn ready(&self) -> bool {
        true
    }
}

/// Whether a chat exists: a search engine asks this before searching, so an unknown chat is a
/// 404 without a round trip to the cluster. The store implements it.
#[async_trait]
pub trait ChatDirectory: Send + Sync {
    async fn chat_exists(&self, token: &Token, chat: u64) -> Result<bool, BackendError>;
}

/// The indexing port: a search engine kept from the events the workers store.
#[async_trait]
pub trait Indexer: Send + Sync {
    /// Creates the index (with its mapping) unless it exists.
    async fn ensure_index(&self) -> Result<(), BackendError>;
    /// Applies a batch of changes and answers how many the engine refused for good (logged by
    /// the adapter: e.g. an edit of a message that was never stored); an error when the batch
    /// did not take effect (`Unavailable` when the engine cannot take it now): try it again.
    async fn index(&self, ops: &[IndexOp]) -> Result<usize, BackendError>;
}

/// One message change for the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexOp {
    Create {
        token: Token,
        chat: u64,
        number: u64,
        body: String,
        created_at: DateTime<Utc>,
        revision: u64,
    },
    /// Applied only over an older revision: of two concurrent edits the higher revision wins.
    Edit {
        token: Token,
        chat: u64,
        number: u64,
        body: String,
        updated_at: DateTime<Utc>,
        revision: u64,
    },
    Delete {
        token: Token,
        chat: u64,
        number: u64,
    },
    /// Every document of an application (`chat: None`) or of one of its chats.
    DeleteAll { token: Token, chat: Option<u64> },
}

impl IndexOp {
    /// The document id. Deterministic, so a redelivered event overwrites instead of duplicating.
    pub fn id(&self) -> String {
        match self {
            Self::Create {
                token,
                chat,
                number,
                ..
            }
            | Self::Edit {
                token,
                chat,
                number,
                ..
            }
            | Self::Delete {
                token,
                chat,
                number,
            } => format!("{token}:{chat}:{number}"),
            Self::DeleteAll { token, chat: None } => format!("{token}"),
            Self::DeleteAll {
                token,
                chat: Some(chat),
            } => format!("{token}:{chat}"),
        }
    }
}

impl IndexOp {
    /// What an event changes in the index, if anything (only messages are searched).
    pub fn of(event: &Event) -> Option<Self> {
        match event {
            Event::MessageCreated(created) => Some(created.into()),
            Event::MessageEdited(edit) => Some(edit.into()),
            Event::MessageDeleted(deleted) => Some(Self::Delete {
                token: deleted.token.clone(),
                chat: deleted.chat,
                number: deleted.number,
            }),
            Event::ChatDeleted(deleted) => Some(Self::DeleteAll {
                token: deleted.token.clone(),
                chat: Some(deleted.number),
            }),
            Event::ApplicationDeleted(deleted) => Some(Self::DeleteAll {
                token: deleted.token.clone(),
                chat: None,
            }),
            _ => None,
        }
    }
}

impl From<&MessageCreated> for IndexOp {
    fn from(event: &MessageCreated) -> Self {
        Self::Create {
            token: event.token.clone(),
            chat: event.chat,
            number: event.number,
            body: event.body.clone(),
            created_at: event.at,
            revision: event.revision,
        }
    }
}

impl From<&MessageEdited> for IndexOp {
    fn from(event: &MessageEdited) -> Self {
        Self::Edit {
            token: event.token.clone(),
            chat: event.chat,
            number: event.number,
            body: event.body.clone(),
            updated_at: event.at,
            revision: event.revision,
        }
    }
}
