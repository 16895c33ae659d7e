//! Whole-table work for the one-shot commands and restarts: the highest numbers (a sequencer
//! starting again), an export in row-id order (`reindex`), and `sync-counts`. Each runs on the
//! blocking pool (see `SqliteStore::blocking`): it reads or rewrites every row.

use rusqlite::params;

use super::conn::Inner;
use super::rows::{chat_rows_sql, time};
use crate::error::BackendError;
use crate::store::{Counters, ExportedMessage, SyncReport};

pub(super) fn counters(inner: &Inner) -> Result<Counters, BackendError> {
    inner.read(|conn| {
        let applications = conn
            .prepare(
                "SELECT a.token, COALESCE(MAX(c.number), 0) FROM applications a \
                 LEFT JOIN chats c ON c.application_id = a.id WHERE a.deleted_at IS NULL GROUP BY a.id",
            )?
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let chats = conn
            .prepare(&format!(
                "SELECT a.token, c.number, \
                   COALESCE((SELECT MAX(m.number) FROM messages m WHERE {}), 0), c.revision \
                 FROM chats c JOIN applications a ON a.id = c.application_id \
                 WHERE c.deleted_at IS NULL AND a.deleted_at IS NULL",
                chat_rows_sql("m.id", "c.id")
            ))?
            .query_map([], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(Counters::from_rows(applications, chats))
    })
}

pub(super) fn export_messages(
    inner: &Inner,
    after: i64,
    limit: u32,
) -> Result<Vec<ExportedMessage>, BackendError> {
    inner.read(|conn| {
        conn.prepare_cached(
            "SELECT m.id, a.token, c.number, m.number, m.body, m.created_at, m.updated_at, m.revision \
             FROM messages m JOIN chats c ON c.id = m.chat_id \
             JOIN applications a ON a.id = c.application_id \
             WHERE m.id > ?1 AND m.deleted_at IS NULL AND c.deleted_at IS NULL ORDER BY m.id LIMIT ?2",
        )?
        .query_map(params![after, i64::from(limit)], |row| {
            Ok(ExportedMessage {
                id: row.get(0)?,
                token: row.get(1)?,
                chat: row.get::<_, i64>(2)? as u64,
                number: row.get::<_, i64>(3)? as u64,
                body: row.get(4)?,
                created_at: time(row.get(5)?),
                updated_at: time(row.get(6)?),
                revision: row.get::<_, i64>(7)? as u64,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()
    })
}

/// Recomputes both counts from the rows, in one write transaction.
pub(super) fn sync_counts(inner: &Inner) -> Result<SyncReport, BackendError> {
    let mut conn = inner.writer();
    let tx = conn.transaction()?;
    let count = format!(
        "(SELECT COUNT(*) FROM messages m WHERE {} AND m.deleted_at IS NULL)",
        chat_rows_sql("m.id", "chats.id")
    );
    let chats = tx.execute(
        &format!(
            "UPDATE chats SET messages_count = {count} \
             WHERE deleted_at IS NULL AND messages_count != {count}"
        ),
        [],
    )?;
    let applications = tx.execute(
        "UPDATE applications SET chats_count = (SELECT COUNT(*) FROM chats c \
           WHERE c.application_id = applications.id AND c.deleted_at IS NULL) \
         WHERE chats_count != (SELECT COUNT(*) FROM chats c \
           WHERE c.application_id = applications.id AND c.deleted_at IS NULL)",
        [],
    )?;
    tx.commit()?;
    Ok(SyncReport {
        applications_fixed: applications as u64,
        chats_fixed: chats as u64,
    })
}
