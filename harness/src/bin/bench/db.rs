//! Direct SQLite work: preloading the server's database in bulk (while the server is stopped),
//! and the persistence ceiling (raw batched inserts at the server's durability).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::Rng;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection};

use crate::scenario::{
    body, sampled, seeded, Samples, HOT_CHAT, SAMPLE_EVERY, SEARCH_CHAT, SPREAD,
};

/// One message row, with the row id the server gives it (chat id * 2^32 + number: the
/// messages of a chat form one rowid range, which scoped search relies on), and the chat's
/// next revision (SPEC §6: each creation raises it by one).
const MESSAGE_ROW: &str = "(? * 4294967296 + ?, ?, ?, ?, ?, ?, ?)";
/// The columns of [`MESSAGE_ROW`].
const INSERT_MESSAGES: &str =
    "INSERT INTO messages (id, chat_id, number, body, created_at, updated_at, revision) VALUES";

/// The server's schema (every migration, in order), applied as is to the ceiling's database.
const SCHEMA: [&str; 5] = [
    include_str!("../../../../migrations/sqlite/0001_init.sql"),
    include_str!("../../../../migrations/sqlite/0002_idempotency.sql"),
    include_str!("../../../../migrations/sqlite/0003_messages_clustered_by_chat.sql"),
    include_str!("../../../../migrations/sqlite/0004_search_index_apart.sql"),
    include_str!("../../../../migrations/sqlite/0005_revisions_and_deletion.sql"),
];
/// Rows per multi-row INSERT while preloading.
const ROWS_PER_INSERT: usize = 100;
/// Rows per preload transaction.
const ROWS_PER_TX: u64 = 50_000;

async fn open(path: &Path, sync: SqliteSynchronous) -> anyhow::Result<SqliteConnection> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(sync)
        .pragma("cache_size", "-65536");
    SqliteConnection::connect_with(&options)
        .await
        .with_context(|| format!("cannot open {}", path.display()))
}

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

async fn app_id(conn: &mut SqliteConnection, token: &str) -> anyhow::Result<i64> {
    sqlx::query_scalar("SELECT id FROM applications WHERE token = ?1")
        .bind(token)
        .fetch_one(&mut *conn)
        .await
        .context("the bench application is not stored")
}

/// Creates chats 1..=HOT_CHAT of the application (the server is stopped).
pub async fn ensure_chats(db: &Path, token: &str) -> anyhow::Result<()> {
    let mut conn = open(db, SqliteSynchronous::Full).await?;
    let app = app_id(&mut conn, token).await?;
    let now = now_micros();
    let mut tx = conn.begin().await?;
    for number in 1..=HOT_CHAT {
        sqlx::query(
            "INSERT INTO chats (application_id, number, messages_count, created_at, updated_at) \
             VALUES (?1, ?2, 0, ?3, ?3) ON CONFLICT DO NOTHING",
        )
        .bind(app)
        .bind(number as i64)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "UPDATE applications SET chats_count = (SELECT COUNT(*) FROM chats WHERE application_id = ?1) WHERE id = ?1",
    )
    .bind(app)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// What the database holds after a fill.
pub struct Filled {
    /// All messages stored.
    pub stored: u64,
    /// Every spread chat holds messages 1..=readable.
    pub readable: u64,
    /// Messages in the search chat.
    pub search_chat: u64,
}

/// Adds messages until `target` are stored: a tenth in the search chat, the rest round-robin
/// over the spread chats. Bulk transactions with `synchronous = OFF` (a preload, not a measure);
/// the FTS index is filled by the schema's own triggers, counts are recomputed at the end. Each
/// message takes its chat's next revision, as a creation through the API would; the search
/// chat is written by nothing else, so its messages' revisions are their numbers.
pub async fn fill(db: &Path, token: &str, target: u64, seed: u64) -> anyhow::Result<Filled> {
    let mut conn = open(db, SqliteSynchronous::Off).await?;
    let app = app_id(&mut conn, token).await?;
    let chats: Vec<(i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT c.id, c.number, COALESCE((SELECT MAX(number) FROM messages m \
         WHERE m.id BETWEEN c.id * 4294967296 AND c.id * 4294967296 + 4294967295), 0), \
         c.revision FROM chats c WHERE c.application_id = ?1 AND c.number <= ?2 ORDER BY c.number",
    )
    .bind(app)
    .bind(SEARCH_CHAT as i64)
    .fetch_all(&mut conn)
    .await?;
    anyhow::ensure!(
        chats.len() as u64 == SEARCH_CHAT,
        "the bench chats are missing"
    );
    // Per chat: (id, next number, next revision).
    let mut next: Vec<(i64, i64, i64)> = chats
        .iter()
        .map(|&(id, _, max, revision)| (id, max + 1, revision + 1))
        .collect();
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages")
        .fetch_one(&mut conn)
        .await?;
    let search_index = (SEARCH_CHAT - 1) as usize;
    let need = target.saturating_sub(stored as u64);
    let search_have = (next[search_index].1 - 1) as u64;
    let mut search_left = need.min((target / 10).saturating_sub(search_have));
    let mut rng = seeded(seed);
    let sql = format!(
        "{INSERT_MESSAGES} {}",
        vec![MESSAGE_ROW; ROWS_PER_INSERT].join(", ")
    );
    let now = now_micros();
    let mut cursor = 0usize;
    let mut done = 0u64;
    while done < need {
        let mut tx = conn.begin().await?;
        let mut in_tx = 0u64;
        while in_tx < ROWS_PER_TX && done < need {
            let rows = (need - done).min(ROWS_PER_INSERT as u64) as usize;
            let mut picks = Vec::with_capacity(rows);
            for i in 0..rows as u64 {
                let left = need - done - i;
                let chat = if search_left > 0 && rng.random_range(0..left) < search_left {
                    search_left -= 1;
                    search_index
                } else {
                    cursor = (cursor + 1) % SPREAD as usize;
                    cursor
                };
                let (id, number, revision) = next[chat];
                next[chat].1 += 1;
                next[chat].2 += 1;
                picks.push((id, number, revision, body(&mut rng)));
            }
            let statement = if rows == ROWS_PER_INSERT {
                sql.clone()
            } else {
                format!("{INSERT_MESSAGES} {}", vec![MESSAGE_ROW; rows].join(", "))
            };
            let mut query = sqlx::query(&statement);
            for (chat_id, number, revision, text) in picks {
                query = query
                    .bind(chat_id)
                    .bind(number)
                    .bind(chat_id)
                    .bind(number)
                    .bind(text)
                    .bind(now)
                    .bind(now)
                    .bind(revision);
            }
            query.execute(&mut *tx).await?;
            done += rows as u64;
            in_tx += rows as u64;
        }
        tx.commit().await?;
    }
    sqlx::query(
        "UPDATE chats SET messages_count = (SELECT COUNT(*) FROM messages m \
         WHERE m.id BETWEEN chats.id * 4294967296 AND chats.id * 4294967296 + 4294967295), \
         revision = MAX(revision, COALESCE((SELECT MAX(m.revision) FROM messages m \
         WHERE m.chat_id = chats.id), 0)) \
         WHERE application_id = ?1",
    )
    .bind(app)
    .execute(&mut conn)
    .await?;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await?;
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages")
        .fetch_one(&mut conn)
        .await?;
    let readable = next[..SPREAD as usize]
        .iter()
        .map(|&(_, n, _)| n - 1)
        .min()
        .unwrap_or(0);
    conn.close().await?;
    Ok(Filled {
        stored: stored as u64,
        readable: readable as u64,
        search_chat: (next[search_index].1 - 1) as u64,
    })
}

/// The stored bodies of the sampled readable messages ([`sampled`]) of the spread chats: what a
/// read of one of them must answer. Read straight from the file (the server may be running:
/// WAL readers do not block it).
pub async fn samples(db: &Path, token: &str, readable: u64) -> anyhow::Result<Samples> {
    let mut conn = open(db, SqliteSynchronous::Full).await?;
    let app = app_id(&mut conn, token).await?;
    let rows: Vec<(i64, i64, String)> = sqlx::query_as(
        "SELECT c.number, m.number, m.body FROM chats c JOIN messages m \
         ON m.id BETWEEN c.id * 4294967296 + 1 AND c.id * 4294967296 + ?3 \
         WHERE c.application_id = ?1 AND c.number <= ?2 AND (c.number + m.number) % ?4 = 0",
    )
    .bind(app)
    .bind(SPREAD as i64)
    .bind(readable as i64)
    .bind(SAMPLE_EVERY as i64)
    .fetch_all(&mut conn)
    .await?;
    conn.close().await?;
    let samples: Samples = rows
        .into_iter()
        .map(|(chat, number, body)| ((chat as u64, number as u64), body))
        .collect();
    debug_assert!(samples.keys().all(|&(chat, number)| sampled(chat, number)));
    Ok(samples)
}

/// The persistence ceiling: single-row inserts into the server's schema (its triggers
/// included), `batch` per transaction, WAL and `synchronous = FULL` like the server, through
/// rusqlite on one thread like the server's writer. Rows/s.
pub async fn ceiling(dir: &Path, batch: usize, duration: Duration) -> anyhow::Result<f64> {
    let path = dir.join(format!("ceiling-{batch}.db"));
    let rate = tokio::task::spawn_blocking(move || raw_inserts(&path, batch, duration)).await??;
    Ok(rate)
}

fn raw_inserts(path: &Path, batch: usize, duration: Duration) -> anyhow::Result<f64> {
    let remove = || {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    };
    remove();
    let mut conn = rusqlite::Connection::open(path)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA cache_size = -65536;",
    )?;
    for migration in SCHEMA {
        conn.execute_batch(migration)?;
    }
    let now = now_micros();
    conn.execute(
        "INSERT INTO applications (token, name, created_at, updated_at) VALUES ('t', 'n', ?1, ?1)",
        [now],
    )?;
    conn.execute(
        "INSERT INTO chats (application_id, number, created_at, updated_at) VALUES (1, 1, ?1, ?1)",
        [now],
    )?;
    let mut rng = seeded(batch as u64);
    let mut number = 0i64;
    let start = Instant::now();
    while start.elapsed() < duration {
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO messages (id, chat_id, number, body, created_at, updated_at, \
                 revision) VALUES (4294967296 + ?1, 1, ?1, ?2, ?3, ?3, ?1)",
            )?;
            for _ in 0..batch {
                number += 1;
                insert.execute(rusqlite::params![number, body(&mut rng), now])?;
            }
        }
        tx.commit()?;
    }
    let rate = number as f64 / start.elapsed().as_secs_f64();
    drop(conn);
    remove();
    Ok(rate)
}

/// Waits until the server's background indexer has indexed every message (`fts_pending` empty).
pub async fn wait_indexed(db: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut said = Instant::now();
    loop {
        let path = db.to_path_buf();
        let pending: i64 = tokio::task::spawn_blocking(move || {
            let conn = rusqlite::Connection::open_with_flags(
                &path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )?;
            conn.query_row("SELECT COUNT(*) FROM fts_pending", [], |row| row.get(0))
        })
        .await??;
        if pending == 0 {
            eprintln!(
                "bench: search index complete after {:.1} s",
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if said.elapsed() > Duration::from_secs(5) {
            eprintln!("bench: {pending} messages still to index for search");
            said = Instant::now();
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(900),
            "the search index did not catch up in 15 minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The row id of chat `number` of the application (read-only; the server may be running).
pub async fn chat_row_id(db: &Path, token: &str, number: u64) -> anyhow::Result<i64> {
    let (path, token) = (db.to_path_buf(), token.to_owned());
    let id = tokio::task::spawn_blocking(move || {
        let conn = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?;
        conn.query_row(
            "SELECT c.id FROM chats c JOIN applications a ON a.id = c.application_id \
             WHERE a.token = ?1 AND c.number = ?2",
            rusqlite::params![token, number as i64],
            |row| row.get(0),
        )
    })
    .await?
    .with_context(|| format!("chat {number} is not stored"))?;
    Ok(id)
}

/// Polls (every 20 ms, one primary-key read) until the server marks the deleted chat `chat_id`
/// purged, i.e. its background purge erased the last of its messages: the time from `since`,
/// or `None` if that did not happen within `limit`.
pub async fn wait_purged(
    db: &Path,
    chat_id: i64,
    since: Instant,
    limit: Duration,
) -> anyhow::Result<Option<Duration>> {
    let path = db.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let conn = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let mut query = conn.prepare("SELECT purged FROM chats WHERE id = ?1")?;
        loop {
            let purged: i64 = query.query_row([chat_id], |row| row.get(0))?;
            if purged != 0 {
                return Ok(Some(since.elapsed()));
            }
            if since.elapsed() > limit {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await?
}
