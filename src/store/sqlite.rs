//! The embedded store: one SQLite file in WAL mode.
//!
//! One connection writes (the group-commit writer is its only user, so there is never write-lock
//! contention inside the process); a pool of connections reads beside it, which WAL allows
//! without blocking. `synchronous = FULL`: a commit returns after its fsync, so an acknowledged
//! write survives `kill -9` and power loss.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use dashmap::DashMap;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::{Store, SyncReport};
use crate::domain::{self, Application, Chat, Message, Page, Token};
use crate::error::BackendError;
use crate::events::{Applied, Event};
use crate::idempotency::{StoredResponse, RETENTION};

/// Cached ids beyond this many are dropped (the caches only save look-ups).
const CACHE_LIMIT: usize = 1_000_000;

pub struct SqliteStore {
    pub(super) writer: SqlitePool,
    pub(super) readers: SqlitePool,
    /// token -> applications.id; tokens are never deleted, so entries never go stale.
    pub(super) app_ids: DashMap<String, i64>,
    /// (applications.id, chat number) -> chats.id; only committed rows are cached.
    pub(super) chat_ids: DashMap<(i64, u64), i64>,
}

type ApplicationRow = (String, String, i64, i64, i64);
type ChatRow = (i64, i64, i64, i64);
type MessageRow = (i64, String, i64, i64);

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies pending migrations.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .with_context(|| format!("DATABASE_URL {url:?} is not a valid sqlite:// URL"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            .pragma("cache_size", "-65536")
            .pragma("temp_store", "memory")
            // Reads map the file instead of copying each page into the page cache: a search walks
            // thousands of rows by id, and the copies dominated its profile at 1 M messages.
            .pragma("mmap_size", "1073741824");
        if let Some(dir) = Path::new(options.get_filename()).parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
        }
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .with_context(|| format!("cannot open the database {url}"))?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&writer)
            .await
            .context("cannot apply the SQLite migrations")?;
        let readers = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            .connect_with(options.read_only(true))
            .await
            .with_context(|| format!("cannot open the database {url} for reading"))?;
        Ok(Self {
            writer,
            readers,
            app_ids: DashMap::new(),
            chat_ids: DashMap::new(),
        })
    }

    pub(super) async fn app_id(&self, token: &Token) -> Result<Option<i64>, BackendError> {
        if let Some(id) = self.app_ids.get(token.as_str()) {
            return Ok(Some(*id));
        }
        let id: Option<i64> = sqlx::query_scalar("SELECT id FROM applications WHERE token = ?1")
            .bind(token.as_str())
            .fetch_optional(&self.readers)
            .await?;
        if let Some(id) = id {
            remember(&self.app_ids, token.as_str().to_owned(), id);
        }
        Ok(id)
    }

    pub(super) async fn chat_id(
        &self,
        token: &Token,
        number: u64,
    ) -> Result<Option<i64>, BackendError> {
        let Some(app_id) = self.app_id(token).await? else {
            return Ok(None);
        };
        if let Some(id) = self.chat_ids.get(&(app_id, number)) {
            return Ok(Some(*id));
        }
        let id: Option<i64> =
            sqlx::query_scalar("SELECT id FROM chats WHERE application_id = ?1 AND number = ?2")
                .bind(app_id)
                .bind(number as i64)
                .fetch_optional(&self.readers)
                .await?;
        if let Some(id) = id {
            remember(&self.chat_ids, (app_id, number), id);
        }
        Ok(id)
    }
}

pub(super) fn remember<K: std::hash::Hash + Eq, V>(cache: &DashMap<K, V>, key: K, value: V) {
    if cache.len() >= CACHE_LIMIT {
        cache.clear();
    }
    cache.insert(key, value);
}

pub(super) fn time(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

pub(super) fn application(row: ApplicationRow) -> Application {
    let (token, name, chats_count, created_at, updated_at) = row;
    Application {
        token,
        name,
        chats_count: chats_count as u64,
        created_at: time(created_at),
        updated_at: time(updated_at),
    }
}

pub(super) fn chat(row: ChatRow) -> Chat {
    let (number, messages_count, created_at, updated_at) = row;
    Chat::new(
        number as u64,
        messages_count as u64,
        time(created_at),
        time(updated_at),
    )
}

pub(super) fn message(chat: u64, row: MessageRow) -> Message {
    let (number, body, created_at, updated_at) = row;
    Message::new(
        chat,
        number as u64,
        body,
        time(created_at),
        time(updated_at),
    )
}

#[async_trait]
impl Store for SqliteStore {
    async fn apply(&self, batch: &[Event]) -> Result<Vec<Applied>, BackendError> {
        super::sqlite_apply::apply(self, batch).await
    }

    async fn application(&self, token: &Token) -> Result<Option<Application>, BackendError> {
        let row: Option<ApplicationRow> = sqlx::query_as(
            "SELECT token, name, chats_count, created_at, updated_at FROM applications WHERE token = ?1",
        )
        .bind(token.as_str())
        .fetch_optional(&self.readers)
        .await?;
        Ok(row.map(application))
    }

    async fn chats(&self, token: &Token, page: Page) -> Result<Option<Vec<Chat>>, BackendError> {
        let Some(app_id) = self.app_id(token).await? else {
            return Ok(None);
        };
        let rows: Vec<ChatRow> = sqlx::query_as(
            "SELECT number, messages_count, created_at, updated_at FROM chats \
             WHERE application_id = ?1 AND number > ?2 ORDER BY number LIMIT ?3 OFFSET ?4",
        )
        .bind(app_id)
        .bind(page.after as i64)
        .bind(i64::from(page.limit))
        .bind(page.offset as i64)
        .fetch_all(&self.readers)
        .await?;
        Ok(Some(rows.into_iter().map(chat).collect()))
    }

    async fn chat(&self, token: &Token, number: u64) -> Result<Option<Chat>, BackendError> {
        let Some(chat_id) = self.chat_id(token, number).await? else {
            return Ok(None);
        };
        let row: Option<ChatRow> = sqlx::query_as(
            "SELECT number, messages_count, created_at, updated_at FROM chats WHERE id = ?1",
        )
        .bind(chat_id)
        .fetch_optional(&self.readers)
        .await?;
        Ok(row.map(chat))
    }

    async fn messages(
        &self,
        token: &Token,
        chat: u64,
        page: Page,
    ) -> Result<Option<Vec<Message>>, BackendError> {
        let Some(chat_id) = self.chat_id(token, chat).await? else {
            return Ok(None);
        };
        let rows: Vec<MessageRow> = sqlx::query_as(
            "SELECT number, body, created_at, updated_at FROM messages \
             WHERE chat_id = ?1 AND number > ?2 ORDER BY number LIMIT ?3 OFFSET ?4",
        )
        .bind(chat_id)
        .bind(page.after as i64)
        .bind(i64::from(page.limit))
        .bind(page.offset as i64)
        .fetch_all(&self.readers)
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
        let Some(chat_id) = self.chat_id(token, chat).await? else {
            return Ok(None);
        };
        let row: Option<MessageRow> = sqlx::query_as(
            "SELECT number, body, created_at, updated_at FROM messages WHERE chat_id = ?1 AND number = ?2",
        )
        .bind(chat_id)
        .bind(number as i64)
        .fetch_optional(&self.readers)
        .await?;
        Ok(row.map(|row| message(chat, row)))
    }

    async fn last_chat_number(&self, token: &Token) -> Result<Option<u64>, BackendError> {
        let Some(app_id) = self.app_id(token).await? else {
            return Ok(None);
        };
        let last: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(number), 0) FROM chats WHERE application_id = ?1",
        )
        .bind(app_id)
        .fetch_one(&self.readers)
        .await?;
        Ok(Some(last as u64))
    }

    async fn last_message_number(
        &self,
        token: &Token,
        chat: u64,
    ) -> Result<Option<u64>, BackendError> {
        let Some(chat_id) = self.chat_id(token, chat).await? else {
            return Ok(None);
        };
        let last: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(number), 0) FROM messages WHERE chat_id = ?1")
                .bind(chat_id)
                .fetch_one(&self.readers)
                .await?;
        Ok(Some(last as u64))
    }

    async fn counters(&self) -> Result<super::Counters, BackendError> {
        let applications: Vec<(String, i64)> = sqlx::query_as(
            "SELECT a.token, COALESCE(MAX(c.number), 0) FROM applications a \
             LEFT JOIN chats c ON c.application_id = a.id GROUP BY a.id",
        )
        .fetch_all(&self.readers)
        .await?;
        let chats: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT a.token, c.number, COALESCE((SELECT MAX(m.number) FROM messages m WHERE m.chat_id = c.id), 0) \
             FROM chats c JOIN applications a ON a.id = c.application_id",
        )
        .fetch_all(&self.readers)
        .await?;
        Ok(super::Counters::from_rows(applications, chats))
    }

    async fn export_messages(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<super::ExportedMessage>, BackendError> {
        let rows: Vec<(i64, String, i64, i64, String, i64, i64)> = sqlx::query_as(
            "SELECT m.id, a.token, c.number, m.number, m.body, m.created_at, m.updated_at FROM messages m \
             JOIN chats c ON c.id = m.chat_id JOIN applications a ON a.id = c.application_id \
             WHERE m.id > ?1 ORDER BY m.id LIMIT ?2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(id, token, chat, number, body, created, updated)| super::ExportedMessage {
                    id,
                    token,
                    chat: chat as u64,
                    number: number as u64,
                    body,
                    created_at: time(created),
                    updated_at: time(updated),
                },
            )
            .collect())
    }

    async fn sync_counts(&self) -> Result<SyncReport, BackendError> {
        let mut tx = self.writer.begin().await?;
        let chats = sqlx::query(
            "UPDATE chats SET messages_count = (SELECT COUNT(*) FROM messages m WHERE m.chat_id = chats.id) \
             WHERE messages_count != (SELECT COUNT(*) FROM messages m WHERE m.chat_id = chats.id)",
        )
        .execute(&mut *tx)
        .await?;
        let applications = sqlx::query(
            "UPDATE applications SET chats_count = (SELECT COUNT(*) FROM chats c WHERE c.application_id = applications.id) \
             WHERE chats_count != (SELECT COUNT(*) FROM chats c WHERE c.application_id = applications.id)",
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(SyncReport {
            applications_fixed: applications.rows_affected(),
            chats_fixed: chats.rows_affected(),
        })
    }

    async fn stored_response(&self, key: &str) -> Result<Option<StoredResponse>, BackendError> {
        let since = (domain::now() - RETENTION).timestamp_micros();
        let row: Option<(String, i64, String)> = sqlx::query_as(
            "SELECT request, status, body FROM idempotency_keys WHERE key = ?1 AND created_at > ?2",
        )
        .bind(key)
        .bind(since)
        .fetch_optional(&self.readers)
        .await?;
        Ok(row.map(|(request, status, body)| StoredResponse {
            request,
            status: status as u16,
            body,
        }))
    }

    async fn store_response(
        &self,
        key: &str,
        response: &StoredResponse,
    ) -> Result<(), BackendError> {
        let now = domain::now();
        let mut tx = self.writer.begin().await?;
        sqlx::query("DELETE FROM idempotency_keys WHERE created_at < ?1")
            .bind((now - RETENTION).timestamp_micros())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO idempotency_keys (key, request, status, body, created_at) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (key) DO UPDATE SET request = excluded.request, status = excluded.status, \
             body = excluded.body, created_at = excluded.created_at",
        )
        .bind(key)
        .bind(&response.request)
        .bind(i64::from(response.status))
        .bind(&response.body)
        .bind(now.timestamp_micros())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), BackendError> {
        sqlx::query("SELECT 1").execute(&self.readers).await?;
        Ok(())
    }
}
