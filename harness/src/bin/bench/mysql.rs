//! Direct MariaDB work for the scaled shape: preloading messages with multi-row INSERTs (the
//! schema of `migrations/mysql`, counts kept consistent), reading what the workers stored, and
//! the persistence baseline (raw multi-row INSERTs, one transaction per batch).

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::NaiveDateTime;
use serde::Serialize;
use sqlx::mysql::MySqlConnectOptions;
use sqlx::{Connection, MySqlConnection, QueryBuilder};

use crate::db::Filled;
use crate::scenario::{
    body, sampled, seeded, Samples, HOT_CHAT, SAMPLE_EVERY, SEARCH_CHAT, SPREAD,
};

/// Rows per multi-row INSERT: the worker's (`ROWS_PER_INSERT` of `src/store/mysql_apply.rs`).
pub const ROWS_PER_INSERT: usize = 1000;
/// Rows per preload transaction.
const PRELOAD_ROWS_PER_TX: usize = 20_000;
/// The first chat number of the baseline's chats (far from any the API hands out).
const BASELINE_FIRST_CHAT: u64 = 1_000_001;

/// A connection as the server opens them: utf8mb4, the same session settings (the server only
/// changes `innodb_lock_wait_timeout`; durability is the server's global setting).
pub async fn connect(url: &str) -> anyhow::Result<MySqlConnection> {
    let options: MySqlConnectOptions = url.parse().context("not a mysql:// URL")?;
    let mut conn = MySqlConnection::connect_with(&options.charset("utf8mb4"))
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    sqlx::query("SET SESSION innodb_lock_wait_timeout = 5")
        .execute(&mut conn)
        .await?;
    Ok(conn)
}

fn now() -> NaiveDateTime {
    chrono::Utc::now().naive_utc()
}

async fn app_id(conn: &mut MySqlConnection, token: &str) -> anyhow::Result<i64> {
    sqlx::query_scalar("SELECT id FROM applications WHERE token = ?")
        .bind(token)
        .fetch_one(&mut *conn)
        .await
        .context("the bench application is not stored")
}

/// Creates chats `numbers` of the application; returns their ids in order.
async fn create_chats(
    conn: &mut MySqlConnection,
    app: i64,
    numbers: std::ops::RangeInclusive<u64>,
) -> anyhow::Result<Vec<i64>> {
    let at = now();
    let mut insert = QueryBuilder::new(
        "INSERT INTO chats (application_id, number, messages_count, created_at, updated_at) ",
    );
    insert.push_values(numbers.clone(), |mut row, number| {
        row.push_bind(app)
            .push_bind(number as i64)
            .push_bind(0i64)
            .push_bind(at)
            .push_bind(at);
    });
    insert.build().execute(&mut *conn).await?;
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM chats WHERE application_id = ? AND number BETWEEN ? AND ? ORDER BY number",
    )
    .bind(app)
    .bind(*numbers.start() as i64)
    .bind(*numbers.end() as i64)
    .fetch_all(&mut *conn)
    .await?;
    Ok(ids)
}

/// Inserts `rows` (chat id, number, body) as multi-row INSERTs of [`ROWS_PER_INSERT`].
async fn insert_messages(
    conn: &mut MySqlConnection,
    rows: &[(i64, i64, String)],
    at: NaiveDateTime,
) -> anyhow::Result<()> {
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut insert = QueryBuilder::new(
            "INSERT INTO messages (chat_id, number, body, created_at, updated_at) ",
        );
        insert.push_values(chunk, |mut row, (chat_id, number, text)| {
            row.push_bind(chat_id)
                .push_bind(number)
                .push_bind(text.as_str())
                .push_bind(at)
                .push_bind(at);
        });
        insert.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// The stored bodies of the sampled readable messages ([`sampled`]) of the spread chats: what a
/// read of one of them must answer.
pub async fn samples(
    conn: &mut MySqlConnection,
    token: &str,
    readable: u64,
) -> anyhow::Result<Samples> {
    let app = app_id(conn, token).await?;
    let rows: Vec<(i64, i64, String)> = sqlx::query_as(
        "SELECT c.number, m.number, m.body FROM chats c JOIN messages m ON m.chat_id = c.id \
         WHERE c.application_id = ? AND c.number <= ? AND m.number <= ? \
         AND MOD(c.number + m.number, ?) = 0",
    )
    .bind(app)
    .bind(SPREAD as i64)
    .bind(readable as i64)
    .bind(SAMPLE_EVERY as i64)
    .fetch_all(&mut *conn)
    .await?;
    let samples: Samples = rows
        .into_iter()
        .map(|(chat, number, body)| ((chat as u64, number as u64), body))
        .collect();
    debug_assert!(samples.keys().all(|&(chat, number)| sampled(chat, number)));
    Ok(samples)
}

/// Stores chats 1..=HOT_CHAT and `target` messages of the application: every tenth in the
/// search chat, the rest round-robin over the spread chats; then the counts.
pub async fn preload(url: &str, token: &str, target: u64, seed: u64) -> anyhow::Result<Filled> {
    let mut conn = connect(url).await?;
    let app = app_id(&mut conn, token).await?;
    let chat_ids = create_chats(&mut conn, app, 1..=HOT_CHAT).await?;
    anyhow::ensure!(
        chat_ids.len() as u64 == HOT_CHAT,
        "the bench chats are missing"
    );
    let mut next = vec![1i64; chat_ids.len()];
    let search = (SEARCH_CHAT - 1) as usize;
    let mut rng = seeded(seed);
    let at = now();
    let mut done = 0u64;
    let mut cursor = 0usize;
    while done < target {
        let rows = (target - done).min(PRELOAD_ROWS_PER_TX as u64);
        let batch: Vec<(i64, i64, String)> = (done..done + rows)
            .map(|i| {
                let chat = if i % 10 == 9 {
                    search
                } else {
                    cursor = (cursor + 1) % SPREAD as usize;
                    cursor
                };
                let number = next[chat];
                next[chat] += 1;
                (chat_ids[chat], number, body(&mut rng))
            })
            .collect();
        let mut tx = conn.begin().await?;
        insert_messages(&mut tx, &batch, at).await?;
        tx.commit().await?;
        done += rows;
    }
    sqlx::query(
        "UPDATE chats c SET messages_count = (SELECT COUNT(*) FROM messages m WHERE m.chat_id = c.id) \
         WHERE c.application_id = ?",
    )
    .bind(app)
    .execute(&mut conn)
    .await?;
    sqlx::query(
        "UPDATE applications SET chats_count = (SELECT COUNT(*) FROM chats WHERE application_id = ?) WHERE id = ?",
    )
    .bind(app)
    .bind(app)
    .execute(&mut conn)
    .await?;
    let (stored, _) = stored(&mut conn).await?;
    conn.close().await?;
    Ok(Filled {
        stored,
        readable: next[..SPREAD as usize].iter().min().map_or(0, |n| n - 1) as u64,
        search_chat: (next[search] - 1) as u64,
    })
}

/// (messages, chats) stored.
pub async fn stored(conn: &mut MySqlConnection) -> anyhow::Result<(u64, u64)> {
    let messages: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages")
        .fetch_one(&mut *conn)
        .await?;
    let chats: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM chats")
        .fetch_one(&mut *conn)
        .await?;
    Ok((messages as u64, chats as u64))
}

/// Messages stored, from the chats' counts (the worker updates them in the transaction that
/// inserts the rows, so this equals `COUNT(*)` at every commit, and costs 1 000 rows, not all).
pub async fn counted(conn: &mut MySqlConnection) -> anyhow::Result<u64> {
    let sum: i64 =
        sqlx::query_scalar("SELECT CAST(COALESCE(SUM(messages_count), 0) AS SIGNED) FROM chats")
            .fetch_one(&mut *conn)
            .await?;
    Ok(sum as u64)
}

/// Waits until `enough` holds for the stored (messages, chats), polling every 100 ms; the time
/// waited. Fails after `within`.
pub async fn wait_stored(
    conn: &mut MySqlConnection,
    messages: u64,
    chats: u64,
    within: Duration,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        let (have_messages, have_chats) = stored(conn).await?;
        if have_messages >= messages && have_chats >= chats {
            return Ok(start.elapsed());
        }
        if start.elapsed() > within {
            anyhow::bail!(
                "the worker stored {have_messages} of {messages} messages and {have_chats} of \
                 {chats} chats after {within:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The server's durability settings, for the report.
pub async fn durability(conn: &mut MySqlConnection) -> anyhow::Result<Vec<(String, String)>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SHOW VARIABLES WHERE Variable_name IN ('version', 'innodb_flush_log_at_trx_commit', \
         'sync_binlog', 'log_bin', 'innodb_buffer_pool_size', 'innodb_doublewrite')",
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows)
}

/// Statement counters of the whole server (`SHOW GLOBAL STATUS`), to say how many statements
/// a piece of work took (the difference of two readings).
pub async fn statement_counters(conn: &mut MySqlConnection) -> anyhow::Result<Vec<(String, u64)>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SHOW GLOBAL STATUS WHERE Variable_name IN ('Questions', 'Com_select', 'Com_insert', \
         'Com_update', 'Com_commit', 'Com_stmt_prepare', 'Innodb_data_fsyncs')",
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(name, value)| (name, value.parse().unwrap_or(0)))
        .collect())
}

/// `after - before`, counter by counter.
pub fn delta(before: &[(String, u64)], after: &[(String, u64)]) -> Vec<(String, u64)> {
    after
        .iter()
        .map(|(name, value)| {
            let old = before
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0, |(_, v)| *v);
            (name.clone(), value.saturating_sub(old))
        })
        .collect()
}

#[derive(Serialize, Clone)]
pub struct RawInsert {
    /// Rows per transaction.
    pub batch: usize,
    pub rows: u64,
    pub seconds: f64,
    pub rows_per_s: f64,
    /// What MariaDB counted meanwhile.
    pub statements: Vec<(String, u64)>,
}

/// The baseline: `rows` message rows into the server's `messages` table (same schema, same
/// database, the rows it already holds), spread over 1 000 chats of their own, as multi-row
/// INSERTs of [`ROWS_PER_INSERT`], `batch` rows per committed transaction.
pub async fn raw_insert(
    url: &str,
    token: &str,
    rows: u64,
    batch: usize,
    round: u64,
) -> anyhow::Result<RawInsert> {
    let mut conn = connect(url).await?;
    let app = app_id(&mut conn, token).await?;
    let first = BASELINE_FIRST_CHAT + round * SPREAD;
    let chat_ids = create_chats(&mut conn, app, first..=first + SPREAD - 1).await?;
    let mut rng = seeded(0xba5e + round);
    let all: Vec<(i64, i64, String)> = (0..rows)
        .map(|i| {
            let chat = (i % SPREAD) as usize;
            (chat_ids[chat], (i / SPREAD + 1) as i64, body(&mut rng))
        })
        .collect();
    let at = now();
    let before = statement_counters(&mut conn).await?;
    let start = Instant::now();
    for transaction in all.chunks(batch.max(1)) {
        let mut tx = conn.begin().await?;
        insert_messages(&mut tx, transaction, at).await?;
        tx.commit().await?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let statements = delta(&before, &statement_counters(&mut conn).await?);
    conn.close().await?;
    Ok(RawInsert {
        batch,
        rows,
        seconds,
        rows_per_s: rows as f64 / seconds.max(1e-9),
        statements,
    })
}
