//! The stored responses of `Idempotency-Key` requests (the idempotency port's `ResponseStore`)
//! in the `idempotency_keys` table, for a scaled deployment without Redis.

use super::conn::Inner;
use crate::domain;
use crate::error::BackendError;
use crate::idempotency::{StoredResponse, RETENTION};

/// The response stored for `key`, if younger than [`RETENTION`].
pub(super) async fn stored(
    inner: &Inner,
    key: &str,
) -> Result<Option<StoredResponse>, BackendError> {
    let since = (domain::now() - RETENTION).naive_utc();
    let row: Option<(String, i64, String)> = sqlx::query_as(
        "SELECT request, CAST(status AS SIGNED), body FROM idempotency_keys WHERE `key` = ? AND created_at > ?",
    )
    .bind(key)
    .bind(since)
    .fetch_optional(&inner.pool)
    .await?;
    Ok(row.map(|(request, status, body)| StoredResponse {
        request,
        status: status as u16,
        body,
    }))
}

/// Stores `response` for `key`, first forgetting (a bounded number of) responses older than
/// [`RETENTION`].
pub(super) async fn store(
    inner: &Inner,
    key: &str,
    response: &StoredResponse,
) -> Result<(), BackendError> {
    let now = domain::now();
    sqlx::query("DELETE FROM idempotency_keys WHERE created_at < ? LIMIT 1000")
        .bind((now - RETENTION).naive_utc())
        .execute(&inner.pool)
        .await?;
    sqlx::query(
        "INSERT INTO idempotency_keys (`key`, request, status, body, created_at) VALUES (?, ?, ?, ?, ?) \
         ON DUPLICATE KEY UPDATE request = VALUES(request), status = VALUES(status), body = VALUES(body), \
         created_at = VALUES(created_at)",
    )
    .bind(key)
    .bind(&response.request)
    .bind(i64::from(response.status))
    .bind(&response.body)
    .bind(now.naive_utc())
    .execute(&inner.pool)
    .await?;
    Ok(())
}
