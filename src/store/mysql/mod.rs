//! The scaled store: MySQL or MariaDB, shared by any number of API and worker processes.
//!
//! Reads go through a pool; token and chat ids are cached in the process (ids never change and
//! rows are never deleted). Writes are `store.apply` batches from the workers (chats, messages)
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
use self::rows::{application, chat, message, ApplicationRow, ChatRow, MessageRow};
use super::{Counters, ExportedMessage, Store, SyncReport};
use crate::domain::event::{Applied, Event};
use crate::domain::{Application, Chat, Message, Page, SearchTerms, Token};
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
            "SELECT CAST(token AS CHAR), name, chats_count, created_at, updated_at FROM applications WHERE token = ?",
        )
        .bind(token.as_str())
        .fetch_optional(&self.inner.pool)
        .await?;
        Ok(row.map(application))
    }

    async fn chats(&self, token: &Token, page: Page) -> Result<Option<Vec<Chat>>, BackendError> {
        let Some(app_id) = self.inner.app_id(token).await? else {
            return Ok(None);
        };
        let rows: Vec<ChatRow> = sqlx::query_as(
            "SELECT number, messages_count, created_at, updated_at FROM chats \
             WHERE application_id = ? AND number > ? ORDER BY number LIMIT ? OFFSET ?",
        )
        .bind(app_id)
        .bind(page.after as i64)
        .bind(i64::from(page.limit))
        .bind(page.offset as i64)
        .fetch_all(&self.inner.pool)
        .await?;
        Ok(Some(rows.into_iter().map(chat).collect()))
    }

    async fn chat(&self, token: &Token, number: u64) -> Result<Option<Chat>, BackendError> {
        let Some(chat_id) = self.inner.chat_id(token, number).await? else {
            return Ok(None);
        };
        let row: Option<ChatRow> = sqlx::query_as(
            "SELECT number, messages_count, created_at, updated_at FROM chats WHERE id = ?",
        )
        .bind(chat_id)
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
        let Some(chat_id) = self.inner.chat_id(token, chat).await? else {
            return Ok(None);
        };
        let rows: Vec<MessageRow> = sqlx::query_as(
            "SELECT number, body, created_at, updated_at FROM messages \
             WHERE chat_id = ? AND number > ? ORDER BY number LIMIT ? OFFSET ?",
        )
        .bind(chat_id)
        .bind(page.after as i64)
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
        let Some(chat_id) = self.inner.chat_id(token, chat).await? else {
            return Ok(None);
        };
        let row: Option<MessageRow> = sqlx::query_as(
            "SELECT number, body, created_at, updated_at FROM messages WHERE chat_id = ? AND number = ?",
        )
        .bind(chat_id)
        .bind(number as i64)
        .fetch_optional(&self.inner.pool)
        .await?;
        Ok(row.map(|row| message(chat, row)))
    }

    async fn last_chat_number(&self, token: &Token) -> Result<Option<u64>, BackendError> {
        let Some(app_id) = self.inner.app_id(token).await? else {
            return Ok(None);
        };
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
        let Some(chat_id) = self.inner.chat_id(token, chat).await? else {
            return Ok(None);
        };
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
        let Some(chat_id) = self.inner.chat_id(token, chat).await? else {
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
