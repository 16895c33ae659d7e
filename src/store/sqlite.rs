//! The embedded store: one SQLite file in WAL mode, through rusqlite.
//!
//! One connection writes (the group-commit writer and the idempotency table are its only users,
//! so there is never write-lock contention inside the process); a few connections read beside
//! it, which WAL allows without blocking. `synchronous = FULL`: a commit returns after its
//! fsync, so an acknowledged write survives `kill -9` and power loss.
//!
//! Where the work runs: a point read or one page is a few microseconds of SQLite, so it runs on
//! the request's own thread ([`Inner::read`]); writes, searches and whole-table reads go to
//! tokio's blocking pool ([`SqliteStore::blocking`]). This is why the store uses rusqlite and not
//! sqlx's SQLite driver, which hands every statement and every row to a thread of its own: those
//! hand-offs were most of a read's profile and most of a write batch's time (BENCHMARKS.md).
//! Migrations still run through sqlx's migrator, which data directories already record. The
//! full-text index is a second file kept by a background thread (`sqlite_index.rs`).

use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection as _};

use super::ids::IdCache;
use super::{sqlite_index, Store, SyncReport};
use crate::domain::{self, Application, Chat, Message, Page, Token};
use crate::error::BackendError;
use crate::events::{Applied, Event};
use crate::idempotency::{StoredResponse, RETENTION};

/// Read connections: more than the runtime's threads, so a reader rarely waits for one.
const READERS: usize = 8;

/// Every connection's settings. `mmap_size`: reads map the file instead of copying each page
/// into the page cache (a search walks thousands of rows; the copies dominated its profile).
const PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
     PRAGMA foreign_keys = ON; PRAGMA cache_size = -65536; PRAGMA temp_store = memory; \
     PRAGMA mmap_size = 1073741824;";

pub struct SqliteStore {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    pub(super) ids: IdCache,
    /// The search indexer's rounds (`sqlite_index.rs`).
    pub(super) progress: Arc<sqlite_index::Progress>,
}

pub(super) type MessageRow = (i64, String, i64, i64);
type ApplicationRow = (String, String, i64, i64, i64);
type ChatRow = (i64, i64, i64, i64);

/// A poisoned lock only means a panic happened while it was held; SQLite's state is intact
/// (statements are reset when dropped), so the connection is used as it is.
fn lock(mutex: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(super) fn connect(path: &Path, read_only: bool) -> rusqlite::Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.execute_batch(PRAGMAS)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

impl Inner {
    /// Runs a short read on the caller's thread, on a free read connection.
    pub(super) fn read<T>(
        &self,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, BackendError> {
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        let count = self.readers.len();
        for i in 0..count {
            match self.readers[(start + i) % count].try_lock() {
                Ok(conn) => return Ok(query(&conn)?),
                Err(TryLockError::Poisoned(poisoned)) => return Ok(query(&poisoned.into_inner())?),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        Ok(query(&lock(&self.readers[start % count]))?)
    }

    /// The write connection (call from the blocking pool: commits wait for fsync).
    pub(super) fn writer(&self) -> MutexGuard<'_, Connection> {
        lock(&self.writer)
    }

    pub(super) fn app_id(&self, token: &str) -> Result<Option<i64>, BackendError> {
        if let Some(id) = self.ids.app(token) {
            return Ok(Some(id));
        }
        let id = self.read(|conn| {
            conn.prepare_cached("SELECT id FROM applications WHERE token = ?1")?
                .query_row([token], |row| row.get(0))
                .optional()
        })?;
        if let Some(id) = id {
            self.ids.remember_app(token, id);
        }
        Ok(id)
    }

    pub(super) fn chat_id(&self, token: &str, number: u64) -> Result<Option<i64>, BackendError> {
        let Some(app_id) = self.app_id(token)? else {
            return Ok(None);
        };
        if let Some(id) = self.ids.chat(app_id, number) {
            return Ok(Some(id));
        }
        let id = self.read(|conn| {
            conn.prepare_cached("SELECT id FROM chats WHERE application_id = ?1 AND number = ?2")?
                .query_row(params![app_id, number as i64], |row| row.get(0))
                .optional()
        })?;
        if let Some(id) = id {
            self.ids.remember_chat(app_id, number, id);
        }
        Ok(id)
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies pending migrations.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .with_context(|| format!("DATABASE_URL {url:?} is not a valid sqlite:// URL"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let path = options.get_filename().to_owned();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
        }
        let mut migrator = options
            .connect()
            .await
            .with_context(|| format!("cannot open the database {url}"))?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&mut migrator)
            .await
            .context("cannot apply the SQLite migrations")?;
        migrator.close().await?;
        let open = |read_only| {
            connect(&path, read_only).with_context(|| format!("cannot open the database {url}"))
        };
        let writer = open(false)?;
        // The indexer's thread checkpoints the WAL in the background after each round
        // (`sqlite_index.rs`); the writer's own automatic checkpoint is left as the backstop
        // that rewinds the WAL, and then finds little left to copy.
        writer.execute_batch("PRAGMA wal_autocheckpoint = 4000")?;
        let (index, fresh) = sqlite_index::open_index(&path)
            .with_context(|| format!("cannot open the search index beside {url}"))?;
        if fresh {
            writer.execute("INSERT INTO fts_pending (id) SELECT id FROM messages", [])?;
        }
        let index_path = sqlite_index::index_path(&path);
        let reader = || -> anyhow::Result<Connection> {
            let conn = open(true)?;
            conn.execute(
                "ATTACH DATABASE ?1 AS search",
                [index_path.to_string_lossy()],
            )?;
            Ok(conn)
        };
        let readers = (0..READERS)
            .map(|_| reader().map(Mutex::new))
            .collect::<anyhow::Result<_>>()?;
        let inner = Arc::new(Inner {
            writer: Mutex::new(writer),
            readers,
            next_reader: AtomicUsize::new(0),
            ids: IdCache::default(),
            progress: Arc::default(),
        });
        sqlite_index::start(&inner, index, open(false)?);
        Ok(Self { inner })
    }

    /// Runs `work` on tokio's blocking pool: writes (fsync) and reads of unbounded length.
    pub(super) async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner) -> Result<T, BackendError> + Send + 'static,
    ) -> Result<T, BackendError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || work(&inner))
            .await
            .map_err(|err| BackendError::Other(anyhow::anyhow!("store task failed: {err}")))?
    }
}

/// The row ids a chat's messages can have (migration 0003: chat id in the high 32 bits, number
/// in the low 32): first and last, inclusive.
pub(super) fn chat_rows(chat_id: i64) -> (i64, i64) {
    (chat_id << 32, (chat_id << 32) | 0xFFFF_FFFF)
}

pub(super) fn time(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

pub(super) fn application_row(row: &Row) -> rusqlite::Result<ApplicationRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

pub(super) fn chat_row(row: &Row) -> rusqlite::Result<ChatRow> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

pub(super) fn message_row(row: &Row) -> rusqlite::Result<MessageRow> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
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
        let batch = batch.to_vec();
        self.blocking(move |inner| super::sqlite_apply::apply(inner, &batch))
            .await
    }

    async fn application(&self, token: &Token) -> Result<Option<Application>, BackendError> {
        let row = self.inner.read(|conn| {
            conn.prepare_cached(
                "SELECT token, name, chats_count, created_at, updated_at FROM applications WHERE token = ?1",
            )?
            .query_row([token.as_str()], application_row)
            .optional()
        })?;
        Ok(row.map(application))
    }

    async fn chats(&self, token: &Token, page: Page) -> Result<Option<Vec<Chat>>, BackendError> {
        let Some(app_id) = self.inner.app_id(token.as_str())? else {
            return Ok(None);
        };
        let rows = self.inner.read(|conn| {
            conn.prepare_cached(
                "SELECT number, messages_count, created_at, updated_at FROM chats \
                 WHERE application_id = ?1 AND number > ?2 ORDER BY number LIMIT ?3 OFFSET ?4",
            )?
            .query_map(
                params![
                    app_id,
                    page.after as i64,
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
                "SELECT number, messages_count, created_at, updated_at FROM chats WHERE id = ?1",
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
        let rows = self.inner.read(|conn| {
            // A chat's messages are one row-id range (see `chat_rows`), in number order.
            conn.prepare_cached(
                "SELECT number, body, created_at, updated_at FROM messages \
                 WHERE id > ?1 AND id <= ?2 ORDER BY id LIMIT ?3 OFFSET ?4",
            )?
            .query_map(
                params![
                    chat_rows(chat_id)
                        .0
                        .saturating_add(page.after.min(u32::MAX.into()) as i64),
                    chat_rows(chat_id).1,
                    i64::from(page.limit),
                    page.offset as i64
                ],
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
        let Ok(id) = super::sqlite_apply::message_row_id(chat_id, number) else {
            return Ok(None);
        };
        let row = self.inner.read(|conn| {
            conn.prepare_cached(
                "SELECT number, body, created_at, updated_at FROM messages WHERE id = ?1",
            )?
            .query_row([id], message_row)
            .optional()
        })?;
        Ok(row.map(|row| message(chat, row)))
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

    async fn counters(&self) -> Result<super::Counters, BackendError> {
        self.blocking(|inner| {
            inner.read(|conn| {
                let applications = conn
                    .prepare(
                        "SELECT a.token, COALESCE(MAX(c.number), 0) FROM applications a \
                         LEFT JOIN chats c ON c.application_id = a.id GROUP BY a.id",
                    )?
                    .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                let chats = conn
                    .prepare(
                        "SELECT a.token, c.number, \
                           COALESCE((SELECT MAX(m.number) FROM messages m \
                           WHERE m.id BETWEEN c.id * 4294967296 AND c.id * 4294967296 + 4294967295), 0) \
                         FROM chats c JOIN applications a ON a.id = c.application_id",
                    )?
                    .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(super::Counters::from_rows(applications, chats))
            })
        })
        .await
    }

    async fn export_messages(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<super::ExportedMessage>, BackendError> {
        self.blocking(move |inner| {
            inner.read(|conn| {
                conn.prepare_cached(
                    "SELECT m.id, a.token, c.number, m.number, m.body, m.created_at, m.updated_at \
                     FROM messages m JOIN chats c ON c.id = m.chat_id \
                     JOIN applications a ON a.id = c.application_id \
                     WHERE m.id > ?1 ORDER BY m.id LIMIT ?2",
                )?
                .query_map(params![after, i64::from(limit)], |row| {
                    Ok(super::ExportedMessage {
                        id: row.get(0)?,
                        token: row.get(1)?,
                        chat: row.get::<_, i64>(2)? as u64,
                        number: row.get::<_, i64>(3)? as u64,
                        body: row.get(4)?,
                        created_at: time(row.get(5)?),
                        updated_at: time(row.get(6)?),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
        })
        .await
    }

    async fn sync_counts(&self) -> Result<SyncReport, BackendError> {
        self.blocking(|inner| {
            let mut conn = inner.writer();
            let tx = conn.transaction()?;
            let chats = tx.execute(
                "UPDATE chats SET messages_count = (SELECT COUNT(*) FROM messages m \
                   WHERE m.id BETWEEN chats.id * 4294967296 AND chats.id * 4294967296 + 4294967295) \
                 WHERE messages_count != (SELECT COUNT(*) FROM messages m \
                   WHERE m.id BETWEEN chats.id * 4294967296 AND chats.id * 4294967296 + 4294967295)",
                [],
            )?;
            let applications = tx.execute(
                "UPDATE applications SET chats_count = (SELECT COUNT(*) FROM chats c WHERE c.application_id = applications.id) \
                 WHERE chats_count != (SELECT COUNT(*) FROM chats c WHERE c.application_id = applications.id)",
                [],
            )?;
            tx.commit()?;
            Ok(SyncReport {
                applications_fixed: applications as u64,
                chats_fixed: chats as u64,
            })
        })
        .await
    }

    async fn stored_response(&self, key: &str) -> Result<Option<StoredResponse>, BackendError> {
        let since = (domain::now() - RETENTION).timestamp_micros();
        let row = self.inner.read(|conn| {
            conn.prepare_cached(
                "SELECT request, status, body FROM idempotency_keys WHERE key = ?1 AND created_at > ?2",
            )?
            .query_row(params![key, since], |row| {
                Ok(StoredResponse {
                    request: row.get(0)?,
                    status: row.get::<_, i64>(1)? as u16,
                    body: row.get(2)?,
                })
            })
            .optional()
        })?;
        Ok(row)
    }

    async fn store_response(
        &self,
        key: &str,
        response: &StoredResponse,
    ) -> Result<(), BackendError> {
        let key = key.to_owned();
        let response = response.clone();
        self.blocking(move |inner| {
            let now = domain::now();
            let mut conn = inner.writer();
            let tx = conn.transaction()?;
            tx.prepare_cached("DELETE FROM idempotency_keys WHERE created_at < ?1")?
                .execute([(now - RETENTION).timestamp_micros()])?;
            tx.prepare_cached(
                "INSERT INTO idempotency_keys (key, request, status, body, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (key) DO UPDATE SET request = excluded.request, status = excluded.status, \
                 body = excluded.body, created_at = excluded.created_at",
            )?
            .execute(params![
                key,
                response.request,
                i64::from(response.status),
                response.body,
                now.timestamp_micros()
            ])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn ping(&self) -> Result<(), BackendError> {
        self.inner
            .read(|conn| conn.query_row("SELECT 1", [], |row| row.get::<_, i64>(0)))?;
        Ok(())
    }
}
