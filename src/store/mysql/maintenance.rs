//! Whole-table work for the one-shot commands and restarts: the highest numbers (a sequencer
//! starting again), an export in row-id order (`reindex`), and `sync-counts`, which runs beside
//! live traffic.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use sqlx::MySqlPool;

use super::conn::Inner;
use crate::error::BackendError;
use crate::store::{Counters, ExportedMessage, SyncReport};

/// Rows per transaction in `sync-counts`, so it never holds many locks for long.
const SYNC_CHUNK: i64 = 1000;

pub(super) async fn counters(inner: &Inner) -> Result<Counters, BackendError> {
    let applications: Vec<(String, i64)> = sqlx::query_as(
        "SELECT CAST(a.token AS CHAR), CAST(COALESCE(MAX(c.number), 0) AS SIGNED) FROM applications a \
         LEFT JOIN chats c ON c.application_id = a.id GROUP BY a.id, a.token",
    )
    .fetch_all(&inner.pool)
    .await?;
    let chats: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT CAST(a.token AS CHAR), c.number, CAST(COALESCE((SELECT MAX(m.number) FROM messages m WHERE m.chat_id = c.id), 0) AS SIGNED) \
         FROM chats c JOIN applications a ON a.id = c.application_id",
    )
    .fetch_all(&inner.pool)
    .await?;
    Ok(Counters::from_rows(applications, chats))
}

pub(super) async fn export_messages(
    inner: &Inner,
    after: i64,
    limit: u32,
) -> Result<Vec<ExportedMessage>, BackendError> {
    type Row = (i64, String, i64, i64, String, NaiveDateTime, NaiveDateTime);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT m.id, CAST(a.token AS CHAR), c.number, m.number, m.body, m.created_at, m.updated_at \
         FROM messages m JOIN chats c ON c.id = m.chat_id JOIN applications a ON a.id = c.application_id \
         WHERE m.id > ? ORDER BY m.id LIMIT ?",
    )
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(&inner.pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, token, chat, number, body, created, updated)| ExportedMessage {
                id,
                token,
                chat: chat as u64,
                number: number as u64,
                body,
                created_at: created.and_utc(),
                updated_at: updated.and_utc(),
            },
        )
        .collect())
}

/// Recomputes the counts in chunks of rows. Each chunk locks its parent rows first, then counts
/// the children: a worker batch that touched those parents either committed before (and is
/// counted) or waits for the chunk and adds its own increment after, so traffic may flow.
pub(super) async fn sync_counts(inner: &Inner) -> Result<SyncReport, BackendError> {
    let pool = &inner.pool;
    let chats_fixed = sync_table(
        pool,
        "SELECT id, messages_count FROM chats WHERE id > ? ORDER BY id LIMIT ? FOR UPDATE",
        "SELECT chat_id, COUNT(*) FROM messages WHERE chat_id BETWEEN ? AND ? GROUP BY chat_id",
        "UPDATE chats SET messages_count = ? WHERE id = ?",
    )
    .await?;
    let applications_fixed = sync_table(
        pool,
        "SELECT id, chats_count FROM applications WHERE id > ? ORDER BY id LIMIT ? FOR UPDATE",
        "SELECT application_id, COUNT(*) FROM chats WHERE application_id BETWEEN ? AND ? GROUP BY application_id",
        "UPDATE applications SET chats_count = ? WHERE id = ?",
    )
    .await?;
    Ok(SyncReport {
        applications_fixed,
        chats_fixed,
    })
}

async fn sync_table(
    pool: &MySqlPool,
    lock: &str,
    count: &str,
    update: &str,
) -> Result<u64, BackendError> {
    let mut fixed = 0;
    let mut after = 0i64;
    loop {
        let mut tx = pool.begin().await?;
        let parents: Vec<(i64, i64)> = sqlx::query_as(lock)
            .bind(after)
            .bind(SYNC_CHUNK)
            .fetch_all(&mut *tx)
            .await?;
        let (Some(first), Some(last)) = (parents.first(), parents.last()) else {
            tx.commit().await?;
            return Ok(fixed);
        };
        let counted: HashMap<i64, i64> = sqlx::query_as(count)
            .bind(first.0)
            .bind(last.0)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
        for (id, stored) in &parents {
            let actual = counted.get(id).copied().unwrap_or(0);
            if actual != *stored {
                sqlx::query(update)
                    .bind(actual)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                fixed += 1;
            }
        }
        after = last.0;
        tx.commit().await?;
    }
}
