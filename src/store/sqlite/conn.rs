//! SQLite connections: their settings, the migrations, and [`Inner`], what every file of the
//! embedded store shares (one write connection, a few read connections, the id cache).
//!
//! One connection writes (the group-commit writer, the idempotency table and the indexer's
//! deletions are its only users, so there is never write-lock contention inside the process); a
//! few connections read beside it, which WAL allows without blocking. `synchronous = FULL`: a
//! commit returns after its fsync, so an acknowledged write survives `kill -9` and power loss.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::Duration;

use anyhow::Context;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection as _};

use crate::error::BackendError;
use crate::store::ids::IdCache;

/// Read connections: more than the runtime's threads, so a reader rarely waits for one.
const READERS: usize = 8;

/// Every connection's settings. `mmap_size`: reads map the file instead of copying each page
/// into the page cache (a search walks thousands of rows; the copies dominated its profile).
const PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
     PRAGMA foreign_keys = ON; PRAGMA cache_size = -65536; PRAGMA temp_store = memory; \
     PRAGMA mmap_size = 1073741824;";

/// The connections and the id cache, shared by the store, its writes and its indexer.
pub(super) struct Inner {
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    pub(super) ids: IdCache,
}

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

/// The search index's file, `search.db` beside the database file: the indexer writes it and
/// every read connection attaches it as `search`.
pub(super) fn index_path(database: &Path) -> PathBuf {
    database.with_file_name("search.db")
}

/// Creates the database file and its directory if needed, applies pending migrations, and
/// returns the file's path. Migrations run through sqlx's migrator, which data directories
/// already record.
pub(super) async fn migrate(url: &str) -> anyhow::Result<PathBuf> {
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
    Ok(path)
}

impl Inner {
    /// Opens the read connections of the database at `path` (named `url` in errors), each with
    /// the search index attached, beside the given write connection.
    pub(super) fn open(path: &Path, url: &str, writer: Connection) -> anyhow::Result<Self> {
        let index_path = index_path(path);
        let reader = || -> anyhow::Result<Connection> {
            let conn =
                connect(path, true).with_context(|| format!("cannot open the database {url}"))?;
            conn.execute(
                "ATTACH DATABASE ?1 AS search",
                [index_path.to_string_lossy()],
            )?;
            Ok(conn)
        };
        let readers = (0..READERS)
            .map(|_| reader().map(Mutex::new))
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            writer: Mutex::new(writer),
            readers,
            next_reader: AtomicUsize::new(0),
            ids: IdCache::default(),
        })
    }

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
            conn.prepare_cached(
                "SELECT id FROM applications WHERE token = ?1 AND deleted_at IS NULL",
            )?
            .query_row([token], |row| row.get(0))
            .optional()
        })?;
        if let Some(id) = id {
            self.ids.remember_app(token, id);
        }
        Ok(id)
    }

    /// The row id of a chat that exists (not deleted); the id cache first (a deletion forgets
    /// what it deleted before it is acknowledged).
    pub(super) fn chat_id(&self, token: &str, number: u64) -> Result<Option<i64>, BackendError> {
        let Some(app_id) = self.app_id(token)? else {
            return Ok(None);
        };
        if let Some(id) = self.ids.chat(app_id, number) {
            return Ok(Some(id));
        }
        let id = self.read(|conn| {
            conn.prepare_cached(
                "SELECT id FROM chats WHERE application_id = ?1 AND number = ?2 AND deleted_at IS NULL",
            )?
                .query_row(params![app_id, number as i64], |row| row.get(0))
                .optional()
        })?;
        if let Some(id) = id {
            self.ids.remember_chat(app_id, number, id);
        }
        Ok(id)
    }
}
