//! The embedded store: one SQLite file in WAL mode, through rusqlite.
//!
//! Where the work runs: a point read or one page is a few microseconds of SQLite, so it runs on
//! the request's own thread (`Inner::read`); writes, searches and whole-table reads go to
//! tokio's blocking pool ([`SqliteStore::blocking`]). This is why the store uses rusqlite and not
//! sqlx's SQLite driver, which hands every statement and every row to a thread of its own: those
//! hand-offs were most of a read's profile and most of a write batch's time (BENCHMARKS.md).
//!
//! The files, each using only the ones listed before it:
//! - `rows.rs`: row types and their domain values; the row-id encoding of messages.
//! - `conn.rs`: connections, settings, migrations, and `Inner`, what the files share.
//! - `index.rs`: the background thread that keeps the full-text index (`search.db`).
//! - `apply.rs`: `Store::apply`, the write path.
//! - `search.rs`: full-text search over the index and what it has not reached yet.
//! - `maintenance.rs`: whole-table work (counters, export, `sync-counts`).
//! - `responses.rs`: stored `Idempotency-Key` responses.
//! - this file: [`SqliteStore`], opening it, and the port implementations.

mod apply;
mod conn;
mod index;
mod maintenance;
mod responses;
mod rows;
mod search;

use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};

use self::conn::Inner;
use self::index::Progress;
use self::rows::{
    application, application_row, change, change_row, chat, chat_row, chat_rows, message,
    message_row, message_row_id,
};
use super::{Counters, ExportedMessage, Store, SyncReport};
use crate::domain::event::{Applied, Event};
use crate::domain::{Application, Change, Chat, Message, Page, SearchTerms, Token};
use crate::error::BackendError;
use crate::idempotency::{ResponseStore, StoredResponse};
use crate::search::Search;

pub struct SqliteStore {
    inner: Arc<Inner>,
    /// The search indexer's rounds, which a search waits on (`index.rs`).
    progress: Arc<Progress>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies pending migrations.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let path = conn::migrate(url).await?;
        let open = |read_only| {
            conn::connect(&path, read_only)
                .with_context(|| format!("cannot open the database {url}"))
        };
        let writer = open(false)?;
        // The indexer's thread checkpoints the WAL in the background after each round
        // (`index.rs`); the writer's own automatic checkpoint is left as the backstop that
        // rewinds the WAL, and then finds little left to copy.
        // `secure_delete`: an erased body (a deleted message, a purged chat) is overwritten with
        // zeros in the file, not left in a free page.
        writer.execute_batch("PRAGMA wal_autocheckpoint = 4000; PRAGMA secure_delete = ON")?;
        let (index, fresh) = index::open_index(&path)
            .with_context(|| format!("cannot open the search index beside {url}"))?;
        if fresh {
            writer.execute("INSERT INTO fts_pending (id) SELECT id FROM messages", [])?;
        }
        let inner = Arc::new(Inner::open(&path, url, writer)?);
        let progress = Arc::<Progress>::default();
        index::start(&inner, progress.clone(), index, open(false)?);
        Ok(Self { inner, progress })
    }

    /// Runs `work` on tokio's blocking pool: writes (fsync) and reads of unbounded length.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner) -> Result<T, BackendError> + Send + 'static,
    ) -> Result<T, BackendError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || work(&inner))
            .await
            .map_err(|err| BackendError::Other(anyhow::anyhow!("store task failed: {err}")))?
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn apply(&self, batch: &[Event]) -> Result<Vec<Applied>, BackendError> {
        let batch = batch.to_vec();
        self.blocking(move |inner| apply::apply(inner, &batch))
            .await
    }

    async fn application(&self, token: &Token) -> Result<Option<Application>, BackendError> {
        let row = self.inner.read(|conn| {
            conn.prepare_cached(
                "SELECT token, name, chats_count, created_at, updated_at FROM applications \
                 WHERE token = ?1 AND deleted_at IS NULL",
            )?
            .query_row([token.as_str()], application_row)
            .optional()
        })?;
        Ok(row.map(application))
    }

    async fn applications(&self, page: Page) -> Result<Vec<Application>, BackendError> {
        let rows = self.inner.read(|conn| {
            conn.prepare_cached(
                "SELECT token, name, chats_count, created_at, updated_at FROM applications \
                 WHERE deleted_at IS NULL ORDER BY id LIMIT ?1 OFFSET ?2",
            )?
            .query_map(
                params![i64::from(page.limit), page.offset as i64],
                application_row,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()
        })?;
        Ok(rows.into_iter().map(application).collect())
    }

    async fn chats(&self, token: &Token, page: Page) -> Result<Option<Vec<Chat>>, BackendError> {
        let Some(app_id) = self.inner.app_id(token.as_str())? else {
            return Ok(None);
        };
        let sql = if page.descending {
            "SELECT number, messages_count, created_at, updated_at, revision FROM chats \
             WHERE application_id = ?1 AND number > ?2 AND number < ?3 AND deleted_at IS NULL \
             ORDER BY number DESC LIMIT ?4 OFFSET ?5"
        } else {
            "SELECT number, messages_count, created_at, updated_at, revision FROM chats \
             WHERE application_id = ?1 AND number > ?2 AND number < ?3 AND deleted_at IS NULL \
             ORDER BY number LIMIT ?4 OFFSET ?5"
        };
        let rows = self.inner.read(|conn| {
            conn.prepare_cached(sql)?
                .query_map(
                    params![
                        app_id,
                        page.after as i64,
                        page.before_i64(),
                        i64::from(page.limit),
                        page.offset as i64
                    ],
                    chat_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()
        })?;
        Ok(Some(rows.into_iter().map(chat).collect()))
    }

    async fn chat(&self, token: &Token, number: u64) -> Result<Option<Chat>, BackendError> {
        let Some(chat_id) = self.inner.chat_id(token.as_str(), number)? else {
            return Ok(None);
        };
        let row = self.inner.read(|conn| {
            conn.prepare_cached(
                "SELECT number, messages_count, created_at, updated_at, revision FROM chats \
                 WHERE id = ?1 AND deleted_at IS NULL",
            )?
            .query_row([chat_id], chat_row)
            .optional()
        })?;
        Ok(row.map(chat))
    }

    async fn messages(
        &self,
        token: &Token,
        chat: u64,
        page: Page,
    ) -> Result<Option<Vec<Message>>, BackendError> {
        let Some(chat_id) = self.inner.chat_id(token.as_str(), chat)? else {
            return Ok(None);
        };
        // A chat's messages are one row-id range (see `chat_rows`), in number order; the
        // page's bounds are row ids of that range.
        let (first, last) = chat_rows(chat_id);
        let low = first.saturating_add(page.after.min(u32::MAX.into()) as i64);
        let high = first
            .saturating_add(page.before.min(u64::from(u32::MAX) + 1) as i64)
            .min(last + 1);
        let sql = if page.descending {
            "SELECT number, body, created_at, updated_at, revision FROM messages \
             WHERE id > ?1 AND id < ?2 AND deleted_at IS NULL ORDER BY id DESC LIMIT ?3 OFFSET ?4"
        } else {
            "SELECT number, body, created_at, updated_at, revision FROM messages \
             WHERE id > ?1 AND id < ?2 AND deleted_at IS NULL ORDER BY id LIMIT ?3 OFFSET ?4"
        };
        let rows = self.inner.read(|conn| {
            conn.prepare_cached(sql)?
                .query_map(
                    params![low, high, i64::from(page.limit), page.offset as i64],
                    message_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()
        })?;
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
        let Some(chat_id) = self.inner.chat_id(token.as_str(), chat)? else {
            return Ok(None);
        };
        let Ok(id) = message_row_id(chat_id, number) else {
            return Ok(None);
        };
        let row = self.inner.read(|conn| {
            conn.prepare_cached(
                "SELECT number, body, created_at, updated_at, revision FROM messages \
                 WHERE id = ?1 AND deleted_at IS NULL",
            )?
            .query_row([id], message_row)
            .optional()
        })?;
        Ok(row.map(|row| message(chat, row)))
    }

    async fn changes(
        &self,
        token: &Token,
        chat: u64,
        since: u64,
        limit: u32,
    ) -> Result<Option<Vec<Change>>, BackendError> {
        let Some(chat_id) = self.inner.chat_id(token.as_str(), chat)? else {
            return Ok(None);
        };
        let rows = self.inner.read(|conn| {
            conn.prepare_cached(
                "SELECT number, body, created_at, updated_at, revision, deleted_at FROM messages \
                 WHERE chat_id = ?1 AND revision > ?2 ORDER BY revision LIMIT ?3",
            )?
            .query_map(
                params![chat_id, since.min(i64::MAX as u64) as i64, i64::from(limit)],
                change_row,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()
        })?;
        Ok(Some(
            rows.into_iter().map(|row| change(chat, row)).collect(),
        ))
    }

    async fn purge(&self, limit: u32) -> Result<u64, BackendError> {
        self.blocking(move |inner| apply::purge(inner, limit)).await
    }

    async fn last_chat_number(&self, token: &Token) -> Result<Option<u64>, BackendError> {
        let Some(app_id) = self.inner.app_id(token.as_str())? else {
            return Ok(None);
        };
        let last: i64 = self.inner.read(|conn| {
            conn.prepare_cached(
                "SELECT COALESCE(MAX(number), 0) FROM chats WHERE application_id = ?1",
            )?
            .query_row([app_id], |row| row.get(0))
        })?;
        Ok(Some(last as u64))
    }

    async fn last_message_number(
        &self,
        token: &Token,
        chat: u64,
    ) -> Result<Option<u64>, BackendError> {
        let Some(chat_id) = self.inner.chat_id(token.as_str(), chat)? else {
            return Ok(None);
        };
        let last: i64 = self.inner.read(|conn| {
            let (first, last) = chat_rows(chat_id);
            conn.prepare_cached(
                "SELECT COALESCE(MAX(number), 0) FROM messages WHERE id BETWEEN ?1 AND ?2",
            )?
            .query_row([first, last], |row| row.get(0))
        })?;
        Ok(Some(last as u64))
    }

    async fn counters(&self) -> Result<Counters, BackendError> {
        self.blocking(maintenance::counters).await
    }

    async fn export_messages(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<ExportedMessage>, BackendError> {
        self.blocking(move |inner| maintenance::export_messages(inner, after, limit))
            .await
    }

    async fn sync_counts(&self) -> Result<SyncReport, BackendError> {
        self.blocking(maintenance::sync_counts).await
    }

    async fn ping(&self) -> Result<(), BackendError> {
        self.inner
            .read(|conn| conn.query_row("SELECT 1", [], |row| row.get::<_, i64>(0)))?;
        Ok(())
    }
}

#[async_trait]
impl Search for SqliteStore {
    async fn search(
        &self,
        token: &Token,
        chat: u64,
        terms: &SearchTerms,
        page: Page,
    ) -> Result<Option<Vec<Message>>, BackendError> {
        let Some(chat_id) = self.inner.chat_id(token.as_str(), chat)? else {
            return Ok(None);
        };
        let terms = terms.clone();
        let progress = self.progress.clone();
        let rows = self
            .blocking(move |inner| search::search(inner, &progress, chat_id, &terms, page))
            .await?;
        Ok(Some(
            rows.into_iter().map(|row| message(chat, row)).collect(),
        ))
    }
}

#[async_trait]
impl ResponseStore for SqliteStore {
    async fn stored_response(&self, key: &str) -> Result<Option<StoredResponse>, BackendError> {
        responses::stored(&self.inner, key)
    }

    async fn store_response(
        &self,
        key: &str,
        response: &StoredResponse,
    ) -> Result<(), BackendError> {
        let key = key.to_owned();
        let response = response.clone();
        self.blocking(move |inner| responses::store(inner, &key, &response))
            .await
    }
}
