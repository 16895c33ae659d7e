//! The stored responses of `Idempotency-Key` requests (the idempotency port's `ResponseStore`)
//! in the `idempotency_keys` table: the embedded shape keeps them beside the rows they created.

use rusqlite::{params, OptionalExtension};

use super::conn::Inner;
use crate::domain;
use crate::error::BackendError;
use crate::idempotency::{StoredResponse, RETENTION};

/// The response stored for `key`, if younger than [`RETENTION`].
pub(super) fn stored(inner: &Inner, key: &str) -> Result<Option<StoredResponse>, BackendError> {
    let since = (domain::now() - RETENTION).timestamp_micros();
    inner.read(|conn| {
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
    })
}

/// Stores `response` for `key` and forgets responses older than [`RETENTION`], in one
/// transaction on the write connection (call from the blocking pool).
pub(super) fn store(
    inner: &Inner,
    key: &str,
    response: &StoredResponse,
) -> Result<(), BackendError> {
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
}
