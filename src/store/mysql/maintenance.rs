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
         LEFT JOIN chats c ON c.application_id = a.id WHERE a.deleted_at IS NULL GROUP BY a.id, a.token",
    )
    .fetch_all(&inner.pool)
    .await?;
    let chats: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT CAST(a.token AS CHAR), c.number, CAST(COALESCE((SELECT MAX(m.number) FROM messages m WHERE m.chat_id = c.id), 0) AS SIGNED), c.revision \
         FROM chats c JOIN applications a ON a.id = c.application_id \
         WHERE c.deleted_at IS NULL AND a.deleted_at IS NULL",
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
    type Row = (
        i64,
        String,
        i64,
        i64,
        String,
        NaiveDateTime,
        NaiveDateTime,
        i64,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT m.id, CAST(a.token AS CHAR), c.number, m.number, m.body, m.created_at, m.updated_at, m.revision \
         FROM messages m JOIN chats c ON c.id = m.chat_id JOIN applications a ON a.id = c.application_id \
         WHERE m.id > ? AND m.deleted_at IS NULL AND c.deleted_at IS NULL ORDER BY m.id LIMIT ?",
    )
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(&inner.pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, token, chat, number, body, created, updated, revision)| ExportedMessage {
                id,
                token,
                chat: chat as u64,
                number: number as u64,
                body,
                created_at: created.and_utc(),
                updated_at: updated.and_utc(),
                revision: revision as u64,
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
        "SELECT chat_id, COUNT(*) FROM messages WHERE chat_id BETWEEN ? AND ? AND deleted_at IS NULL GROUP BY chat_id",
        "UPDATE chats SET messages_count = ? WHERE id = ?",
    )
    .await?;
    let applications_fixed = sync_table(
        pool,
        "SELECT id, chats_count FROM applications WHERE id > ? ORDER BY id LIMIT ? FOR UPDATE",
        "SELECT application_id, COUNT(*) FROM chats WHERE application_id BETWEEN ? AND ? AND deleted_at IS NULL GROUP BY application_id",
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

/// Erases up to `limit` messages of one deleted chat in one short transaction (see
/// `Store::purge`); marks the chat purged once none is left. Returns how much was done.
pub(super) async fn purge(inner: &Inner, limit: u32) -> Result<u64, BackendError> {
    let mut tx = inner.pool.begin().await?;
    let chat_id: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM chats WHERE purged = 0 AND deleted_at IS NOT NULL LIMIT 1 FOR UPDATE SKIP LOCKED",
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(chat_id) = chat_id else {
        tx.commit().await?;
        return Ok(0);
    };
    let erased = sqlx::query("DELETE FROM messages WHERE chat_id = ? ORDER BY number LIMIT ?")
        .bind(chat_id)
        .bind(i64::from(limit))
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if erased < u64::from(limit) {
        sqlx::query("UPDATE chats SET purged = 1, messages_count = 0 WHERE id = ?")
            .bind(chat_id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(erased.max(1))
}
