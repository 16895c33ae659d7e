//! The store port: where applications, chats and messages live.
//!
//! [`Store::apply`] is the only write path for every shape: one transaction per batch,
//! idempotent (replaying a batch changes nothing), counts updated inside it. Reads answer
//! `Ok(None)` when the parent named in the request does not exist, so handlers can say 404.
//!
//! Each backend is a folder (`sqlite/`, `mysql/`) whose `mod.rs` says what its files do; the
//! cache of committed ids both use is `ids.rs`. The stored responses of idempotent requests are
//! not part of this port: the SQL stores also implement [`crate::idempotency::ResponseStore`].

mod ids;
mod mysql;
mod sqlite;

pub use mysql::MysqlStore;
pub use sqlite::SqliteStore;

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::event::{Applied, Event};
use crate::domain::{Application, Change, Chat, Message, Page, Token};
use crate::error::BackendError;

/// What `sync-counts` changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SyncReport {
    pub applications_fixed: u64,
    pub chats_fixed: u64,
}

/// The highest stored numbers, from which a sequencer can start again (after a Redis reset).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counters {
    /// (token, highest chat number)
    pub applications: Vec<(String, u64)>,
    /// (token, chat number, highest message number, revision), of the chats not deleted.
    pub chats: Vec<(String, u64, u64, u64)>,
}

impl Counters {
    pub fn from_rows(
        applications: Vec<(String, i64)>,
        chats: Vec<(String, i64, i64, i64)>,
    ) -> Self {
        Self {
            applications: applications
                .into_iter()
                .map(|(t, n)| (t, n as u64))
                .collect(),
            chats: chats
                .into_iter()
                .map(|(t, c, n, r)| (t, c as u64, n as u64, r as u64))
                .collect(),
        }
    }
}

/// A stored message with its coordinates, for rebuilding a search index.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportedMessage {
    /// The row id: pages of an export continue after the last one.
    pub id: i64,
    pub token: String,
    pub chat: u64,
    pub number: u64,
    pub body: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    pub revision: u64,
}

impl From<ExportedMessage> for crate::search::IndexOp {
    fn from(message: ExportedMessage) -> Self {
        Self::Create {
            token: Token::stored(message.token),
            chat: message.chat,
            number: message.number,
            body: message.body,
            created_at: message.created_at,
            revision: message.revision,
        }
    }
}

#[async_trait]
impl crate::search::ChatDirectory for Arc<dyn Store> {
    async fn chat_exists(&self, token: &Token, chat: u64) -> Result<bool, BackendError> {
        Ok(self.chat(token, chat).await?.is_some())
    }
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Applies a batch in one transaction and returns one outcome per event, in order.
    async fn apply(&self, batch: &[Event]) -> Result<Vec<Applied>, BackendError>;

    async fn application(&self, token: &Token) -> Result<Option<Application>, BackendError>;
    /// Every application not deleted, oldest first (`page.offset`, `page.limit`): for operators.
    async fn applications(&self, page: Page) -> Result<Vec<Application>, BackendError>;
    async fn chats(&self, token: &Token, page: Page) -> Result<Option<Vec<Chat>>, BackendError>;
    async fn chat(&self, token: &Token, number: u64) -> Result<Option<Chat>, BackendError>;
    async fn messages(
        &self,
        token: &Token,
        chat: u64,
        page: Page,
    ) -> Result<Option<Vec<Message>>, BackendError>;
    async fn message(
        &self,
        token: &Token,
        chat: u64,
        number: u64,
    ) -> Result<Option<Message>, BackendError>;

    /// The changes feed (SPEC §6): up to `limit` messages of the chat whose revision is above
    /// `since`, in revision order, deleted ones as tombstones. `None`: no such chat.
    async fn changes(
        &self,
        token: &Token,
        chat: u64,
        since: u64,
        limit: u32,
    ) -> Result<Option<Vec<Change>>, BackendError>;

    /// Erases up to `limit` messages of deleted chats (rows and search entries), in one short
    /// transaction; returns how many. Deleting a chat only marks it, so that a chat of any size
    /// goes in one quick write; [`purge_deleted`] runs this until nothing is left.
    async fn purge(&self, limit: u32) -> Result<u64, BackendError>;

    /// The highest chat number stored for an application (0 if none), or `None` if the
    /// application does not exist. Sequencers start from it.
    async fn last_chat_number(&self, token: &Token) -> Result<Option<u64>, BackendError>;
    /// The highest message number stored in a chat (0 if none), or `None` if the chat does not
    /// exist.
    async fn last_message_number(
        &self,
        token: &Token,
        chat: u64,
    ) -> Result<Option<u64>, BackendError>;

    /// Every application's and chat's highest number.
    async fn counters(&self) -> Result<Counters, BackendError>;

    /// Up to `limit` messages with a row id above `after`, in row-id order.
    async fn export_messages(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<ExportedMessage>, BackendError>;

    /// Recomputes `chats_count` and `messages_count` from the rows.
    async fn sync_counts(&self) -> Result<SyncReport, BackendError>;

    /// Whether the backend answers.
    async fn ping(&self) -> Result<(), BackendError>;
}

/// Messages erased per purge step: small enough that the writer (which waits for a step) and
/// readers never notice one (a step is one short transaction).
pub const PURGE_STEP: u32 = 1000;

/// Erases the messages of deleted chats in bounded steps, for as long as the store is in use:
/// at once when `wake` is notified (a chat or application was just deleted), and every few
/// seconds otherwise (deletions made before a restart, or by another process). It holds the
/// store only during a step, so that the store (and its indexer) goes when its users do.
pub async fn purge_deleted(store: std::sync::Weak<dyn Store>, wake: Arc<tokio::sync::Notify>) {
    loop {
        let Some(store) = store.upgrade() else {
            return;
        };
        let step = store.purge(PURGE_STEP).await;
        drop(store);
        match step {
            Ok(0) => {
                let _ =
                    tokio::time::timeout(std::time::Duration::from_secs(5), wake.notified()).await;
            }
            Ok(_) => tokio::task::yield_now().await,
            Err(err) => {
                tracing::warn!(error = %err, "purging deleted messages failed; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
}
