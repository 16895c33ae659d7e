//! The scaled store: MySQL or MariaDB, shared by any number of API and worker processes.
//!
//! Reads go through a pool and check that what they read is live (another process may have
//! deleted it); write batches cache token and chat ids. Writes are `store.apply` batches from the workers (chats, messages)
//! or from the API itself (applications, created synchronously).
//!
//! The files, each using only the ones listed before it:
//! - `rows.rs`: row types and their domain values.
//! - `conn.rs`: the pool, migrations, and `Inner`, what the files share (pool, id cache).
//! - `apply.rs`: `Store::apply`, the write path, as named steps.
//! - `search.rs`: the `LIKE` scan that answers searches without a search engine.
//! - `maintenance.rs`: whole-table work (counters, export, `sync-counts`).
//! - `responses.rs`: stored `Idempotency-Key` responses.
//! - this file: [`MysqlStore`] and the port implementations.

mod apply;
mod conn;
mod maintenance;
mod responses;
mod rows;
mod search;

use async_trait::async_trait;

use self::conn::Inner;
use self::rows::{
    application, change, chat, message, ApplicationRow, ChangeRow, ChatRow, MessageRow,
};
use super::{Counters, ExportedMessage, Store, SyncReport};
use crate::domain::event::{Applied, Event};
use crate::domain::{Application, Change, Chat, Message, Page, SearchTerms, Token};
use crate::error::BackendError;
use crate::idempotency::{ResponseStore, StoredResponse};
use crate::search::Search;

pub struct MysqlStore {
    inner: Inner,
}

impl MysqlStore {
    /// Connects and applies pending migrations (idempotent; safe from many processes, since
    /// sqlx takes a MySQL advisory lock while migrating).
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        Ok(Self {
            inner: Inner::open(url).await?,
        })
    }
}

#[async_trait]
impl Store for MysqlStore {
    async fn apply(&self, batch: &[Event]) -> Result<Vec<Applied>, BackendError> {
        apply::apply(&self.inner, batch).await
    }

    async fn application(&self, token: &Token) -> Result<Option<Application>, BackendError> {
        let row: Option<ApplicationRow> = sqlx::query_as(
            "SELECT CAST(token AS CHAR), name, chats_count, created_at, updated_at FROM applications \
             WHERE token = ? AND deleted_at IS NULL",
        )
        .bind(token.as_str())
        .fetch_optional(&self.inner.pool)
        .await?;
        Ok(row.map(application))
    }

    async fn applications(&self, page: Page) -> Result<Vec<Application>, BackendError> {
        let rows: Vec<ApplicationRow> = sqlx::query_as(
            "SELECT CAST(token AS CHAR), name, chats_count, created_at, updated_at FROM applications \
             WHERE deleted_at IS NULL ORDER BY id LIMIT ? OFFSET ?",
        )
        .bind(i64::from(page.limit))
        .bind(page.offset as i64)
        .fetch_all(&self.inner.pool)
        .await?;
        Ok(rows.into_iter().map(application).collect())
    }

    async fn chats(&self, token: &Token, page: Page) -> Result<Option<Vec<Chat>>, BackendError> {
        let Some(app_id) = self.inner.live_app_id(token).await? else {
            return Ok(None);
        };
        let sql = if page.descending {
            "SELECT number, messages_count, created_at, updated_at, revision FROM chats \
             WHERE application_id = ? AND number > ? AND number < ? AND deleted_at IS NULL \
             ORDER BY number DESC LIMIT ? OFFSET ?"
        } else {
            "SELECT number, messages_count, created_at, updated_at, revision FROM chats \
             WHERE application_id = ? AND number > ? AND number < ? AND deleted_at IS NULL \
             ORDER BY number LIMIT ? OFFSET ?"
        };
        let rows: Vec<ChatRow> = sqlx::query_as(sql)
            .bind(app_id)
            .bind(page.after as i64)
            .bind(page.before_i64())
            .bind(i64::from(page.limit))
            .bind(page.offset as i64)
            .fetch_all(&self.inner.pool)
            .await?;
        Ok(Some(rows.into_iter().map(chat).collect()))
    }

    async fn chat(&self, token: &Token, number: u64) -> Result<Option<Chat>, BackendError> {
        let row: Option<ChatRow> = sqlx::query_as(
            "SELECT c.number, c.messages_count, c.created_at, c.updated_at, c.revision \
             FROM chats c JOIN applications a ON a.id = c.application_id \
             WHERE a.token = ? AND c.number = ? AND c.deleted_at IS NULL AND a.deleted_at IS NULL",
        )
        .bind(token.as_str())
        .bind(number as i64)
        .fetch_optional(&self.inner.pool)
        .await?;
        Ok(row.map(chat))
    }

    async fn messages(
        &self,
        token: &Token,
        chat: u64,
        page: Page,
    ) -> Result<Option<Vec<Message>>, BackendError> {
        let Some(chat_id) = self.inner.live_chat_id(token, chat).await? else {
            return Ok(None);
        };
        let sql = if page.descending {
            "SELECT number, body, created_at, updated_at, revision FROM messages \
             WHERE chat_id = ? AND number > ? AND number < ? AND deleted_at IS NULL \
             ORDER BY number DESC LIMIT ? OFFSET ?"
        } else {
            "SELECT number, body, created_at, updated_at, revision FROM messages \
             WHERE chat_id = ? AND number > ? AND number < ? AND deleted_at IS NULL \
             ORDER BY number LIMIT ? OFFSET ?"
        };
        let rows: Vec<MessageRow> = sqlx::query_as(sql)
            .bind(chat_id)
            .bind(page.after as i64)
            .bind(page.before_i64())
            .bind(i64::from(page.limit))
            .bind(page.offset as i64)
            .fetch_all(&self.inner.pool)
            .await?;
        Ok(Some(
            rows.into_iter().map(|row| message(chat, row)).collect(),
        ))
    }

    async fn message(
        &self,
        token: &Token,
        chat: u64,
        number: u64,
    ) -> Result<Option<Message>, BackendError> {
        // One round trip: the message, if it and its chat and application are all live.
        let row: Option<MessageRow> = sqlx::query_as(
            "SELECT m.number, m.body, m.created_at, m.updated_at, m.revision FROM messages m \
             JOIN chats c ON c.id = m.chat_id JOIN applications a ON a.id = c.application_id \
             WHERE a.token = ? AND c.number = ? AND m.number = ? \
               AND m.deleted_at IS NULL AND c.deleted_at IS NULL AND a.deleted_at IS NULL",
        )
        .bind(token.as_str())
        .bind(chat as i64)
        .bind(number as i64)
        .fetch_optional(&self.inner.pool)
        .await?;
        Ok(row.map(|row| message(chat, row)))
    }

    async fn changes(
        &self,
        token: &Token,
        chat: u64,
        since: u64,
        limit: u32,
    ) -> Result<Option<Vec<Change>>, BackendError> {
        let Some(chat_id) = self.inner.live_chat_id(token, chat).await? else {
            return Ok(None);
        };
        let rows: Vec<ChangeRow> = sqlx::query_as(
            "SELECT number, body, created_at, updated_at, revision, deleted_at FROM messages \
             WHERE chat_id = ? AND revision > ? ORDER BY revision LIMIT ?",
        )
        .bind(chat_id)
        .bind(since.min(i64::MAX as u64) as i64)
        .bind(i64::from(limit))
        .fetch_all(&self.inner.pool)
        .await?;
        Ok(Some(
            rows.into_iter().map(|row| change(chat, row)).collect(),
        ))
    }

    async fn purge(&self, limit: u32) -> Result<u64, BackendError> {
        maintenance::purge(&self.inner, limit).await
    }

    async fn last_chat_number(&self, token: &Token) -> Result<Option<u64>, BackendError> {
        let Some(app_id) = self.inner.live_app_id(token).await? else {
            return Ok(None);
        };
        // Deleted chats count: their numbers stay taken.
        let last: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(MAX(number), 0) AS SIGNED) FROM chats WHERE application_id = ?",
        )
        .bind(app_id)
        .fetch_one(&self.inner.pool)
        .await?;
        Ok(Some(last as u64))
    }

    async fn last_message_number(
        &self,
        token: &Token,
        chat: u64,
    ) -> Result<Option<u64>, BackendError> {
        let Some(chat_id) = self.inner.live_chat_id(token, chat).await? else {
            return Ok(None);
        };
        // Tombstones count: a deleted message's number stays taken.
        let last: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(MAX(number), 0) AS SIGNED) FROM messages WHERE chat_id = ?",
        )
        .bind(chat_id)
        .fetch_one(&self.inner.pool)
        .await?;
        Ok(Some(last as u64))
    }

    async fn counters(&self) -> Result<Counters, BackendError> {
        maintenance::counters(&self.inner).await
    }

    async fn export_messages(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<ExportedMessage>, BackendError> {
        maintenance::export_messages(&self.inner, after, limit).await
    }

    async fn sync_counts(&self) -> Result<SyncReport, BackendError> {
        maintenance::sync_counts(&self.inner).await
    }

    async fn ping(&self) -> Result<(), BackendError> {
        sqlx::query("SELECT 1").execute(&self.inner.pool).await?;
        Ok(())
    }
}

#[async_trait]
impl Search for MysqlStore {
    async fn search(
        &self,
        token: &Token,
        chat: u64,
        terms: &SearchTerms,
        page: Page,
    ) -> Result<Option<Vec<Message>>, BackendError> {
        let Some(chat_id) = self.inner.live_chat_id(token, chat).await? else {
            return Ok(None);
        };
        Ok(Some(
            search::search(&self.inner, chat_id, chat, terms, page).await?,
        ))
    }
}

#[async_trait]
impl ResponseStore for MysqlStore {
    async fn stored_response(&self, key: &str) -> Result<Option<StoredResponse>, BackendError> {
        responses::stored(&self.inner, key).await
    }

    async fn store_response(
        &self,
        key: &str,
        response: &StoredResponse,
    ) -> Result<(), BackendError> {
        responses::store(&self.inner, key, response).await
    }
}
