//! `Store::apply` and `sync-counts` for MySQL.
//!
//! A batch is one transaction: applications first, then the chats the batch names (ids from the
//! cache of committed chats, else looked up, or created from their coordinates when a message
//! arrives before its chat), then the messages as multi-row `INSERT IGNORE`s of up to 1 000 rows
//! across chats, then edits in order, then every chat's count in one `UPDATE … WHERE id IN (…)`. When an
//! insert reports fewer rows than it sent (a replay after a crash), the batch is rolled back and
//! redone with one insert per chat, whose affected-row count is exactly that chat's growth:
//! replaying a batch inserts nothing and counts nothing. A deadlock between two workers rolls
//! the batch back; it is retried whole.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sqlx::{MySqlConnection, MySqlPool, QueryBuilder};

use super::mysql::{application, message, MessageRow, MysqlStore};
use super::SyncReport;
use crate::domain::{Chat, Message};
use crate::error::BackendError;
use crate::events::{Applied, Event};

/// Rows per multi-row INSERT (5 placeholders a row, far below the 65 535 limit).
const ROWS_PER_INSERT: usize = 1000;
/// Rows per transaction in `sync-counts`, so it never holds many locks for long.
const SYNC_CHUNK: i64 = 1000;
const DEADLOCK_RETRIES: usize = 5;

/// A message row to insert: number, body, time.
type NewMessage<'a> = (u64, &'a str, &'a DateTime<Utc>);

fn naive(at: &DateTime<Utc>) -> chrono::NaiveDateTime {
    at.naive_utc()
}

pub(super) async fn apply(
    store: &MysqlStore,
    batch: &[Event],
) -> Result<Vec<Applied>, BackendError> {
    let mut attempt = 0;
    let mut mode = Inserts::Together;
    loop {
        match try_apply(store, batch, mode).await {
            Ok(Some(outcomes)) => return Ok(outcomes),
            // Some rows were already stored (a replay): counts must be told apart per chat.
            Ok(None) => mode = Inserts::PerChat,
            Err(BackendError::Other(err)) if attempt < DEADLOCK_RETRIES && is_transient(&err) => {
                attempt += 1;
                tracing::warn!(
                    attempt,
                    error = %err,
                    "write batch hit a deadlock or lock timeout, retrying"
                );
            }
            Err(err) => return Err(err),
        }
    }
}

/// How a batch's messages are inserted.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Inserts {
    /// Multi-row INSERTs across chats, the common case: when every row goes in, each chat grows
    /// by its own rows. If one was already there, the batch is rolled back and redone `PerChat`.
    Together,
    /// One multi-row INSERT per chat: its affected-row count is the chat's growth.
    PerChat,
}

fn is_transient(err: &anyhow::Error) -> bool {
    err.downcast_ref::<sqlx::Error>()
        .and_then(|err| err.as_database_error())
        .and_then(|db| db.code())
        // Deadlock, or a lock wait that timed out: retrying the whole batch is safe.
        .is_some_and(|code| matches!(code.as_ref(), "40001" | "1213" | "1205" | "HY000"))
}

async fn try_apply(
    store: &MysqlStore,
    batch: &[Event],
    mode: Inserts,
) -> Result<Option<Vec<Applied>>, BackendError> {
    let mut tx = store.pool.begin().await?;
    let mut outcomes: Vec<Option<Applied>> = vec![None; batch.len()];

    // 1. Applications, in order.
    for (index, event) in batch.iter().enumerate() {
        match event {
            Event::ApplicationCreated { token, name, at } => {
                sqlx::query(
                    "INSERT IGNORE INTO applications (token, name, chats_count, created_at, updated_at) \
                     VALUES (?, ?, 0, ?, ?)",
                )
                .bind(token)
                .bind(name)
                .bind(naive(at))
                .bind(naive(at))
                .execute(&mut *tx)
                .await?;
                outcomes[index] = Some(stored_application(&mut tx, token).await?);
            }
            Event::ApplicationRenamed { token, name, at } => {
                sqlx::query("UPDATE applications SET name = ?, updated_at = ? WHERE token = ?")
                    .bind(name)
                    .bind(naive(at))
                    .bind(token)
                    .execute(&mut *tx)
                    .await?;
                outcomes[index] = Some(stored_application(&mut tx, token).await?);
            }
            _ => {}
        }
    }

    // 2. The chats this batch names, sorted so that two workers lock them in the same order.
    let mut wanted: BTreeMap<(&str, u64), DateTime<Utc>> = BTreeMap::new();
    for event in batch {
        if let Event::ChatCreated {
            token,
            number: chat,
            at,
        }
        | Event::MessageCreated {
            token, chat, at, ..
        }
        | Event::MessageEdited {
            token, chat, at, ..
        } = event
        {
            let first = wanted.entry((token.as_str(), *chat)).or_insert(*at);
            *first = (*first).min(*at);
        }
    }
    let mut chats: HashMap<(&str, u64), (i64, i64)> = HashMap::new();
    let mut new_chats: HashMap<i64, (i64, DateTime<Utc>)> = HashMap::new();
    for (&(token, number), at) in &wanted {
        if let Some(ids) = store.ids.committed_chat(token, number) {
            chats.insert((token, number), ids);
            continue;
        }
        if let Some(ids) = existing_chat(&mut tx, token, number, false).await? {
            chats.insert((token, number), ids);
            continue;
        }
        let inserted = sqlx::query(
            "INSERT IGNORE INTO chats (application_id, number, messages_count, created_at, updated_at) \
             SELECT id, ?, 0, ?, ? FROM applications WHERE token = ?",
        )
        .bind(number as i64)
        .bind(naive(at))
        .bind(naive(at))
        .bind(token)
        .execute(&mut *tx)
        .await?;
        // A locking read: if another transaction (the chats topic's worker) created the chat
        // after this one's snapshot, the insert above was ignored and a plain read would not
        // see the row either; the messages would then be dropped as "chat not found".
        if let Some((app_id, chat_id)) = existing_chat(&mut tx, token, number, true).await? {
            if inserted.rows_affected() == 1 {
                let entry = new_chats.entry(app_id).or_insert((0, *at));
                entry.0 += 1;
                entry.1 = entry.1.max(*at);
            }
            chats.insert((token, number), (app_id, chat_id));
        }
    }

    // 3. Messages: one multi-row INSERT IGNORE per chat.
    let mut per_chat: BTreeMap<i64, Vec<NewMessage<'_>>> = BTreeMap::new();
    for (index, event) in batch.iter().enumerate() {
        match event {
            Event::ChatCreated { token, number, at } => {
                outcomes[index] = Some(match chats.get(&(token.as_str(), *number)) {
                    Some(_) => Applied::Chat(Chat::new(*number, 0, *at, *at)),
                    None => Applied::NotFound,
                });
            }
            Event::MessageCreated {
                token,
                chat,
                number,
                body,
                at,
            } => {
                outcomes[index] = Some(match chats.get(&(token.as_str(), *chat)) {
                    Some((_, chat_id)) => {
                        per_chat
                            .entry(*chat_id)
                            .or_default()
                            .push((*number, body, at));
                        Applied::Message(Message::new(*chat, *number, body.clone(), *at, *at))
                    }
                    None => Applied::NotFound,
                });
            }
            _ => {}
        }
    }
    let mut grown: HashMap<i64, (u64, DateTime<Utc>)> = HashMap::new();
    if mode == Inserts::Together {
        let rows: Vec<(i64, NewMessage<'_>)> = per_chat
            .iter()
            .flat_map(|(chat_id, rows)| rows.iter().map(|row| (*chat_id, *row)))
            .collect();
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let done = insert_messages(&mut tx, chunk).await?;
            if done != chunk.len() as u64 {
                return Ok(None);
            }
            for (chat_id, (_, _, at)) in chunk {
                let entry = grown.entry(*chat_id).or_insert((0, **at));
                entry.0 += 1;
                entry.1 = entry.1.max(**at);
            }
        }
    } else {
        for (chat_id, rows) in &per_chat {
            for chunk in rows.chunks(ROWS_PER_INSERT) {
                let chunk: Vec<(i64, NewMessage<'_>)> =
                    chunk.iter().map(|row| (*chat_id, *row)).collect();
                let done = insert_messages(&mut tx, &chunk).await?;
                let latest = chunk
                    .iter()
                    .map(|(_, (_, _, at))| **at)
                    .max()
                    .unwrap_or_default();
                let entry = grown.entry(*chat_id).or_insert((0, latest));
                entry.0 += done;
                entry.1 = entry.1.max(latest);
            }
        }
    }

    // 4. Edits, in order (after the creations they follow).
    for (index, event) in batch.iter().enumerate() {
        if let Event::MessageEdited {
            token,
            chat,
            number,
            body,
            at,
        } = event
        {
            let Some((_, chat_id)) = chats.get(&(token.as_str(), *chat)) else {
                outcomes[index] = Some(Applied::NotFound);
                continue;
            };
            sqlx::query(
                "UPDATE messages SET body = ?, updated_at = ? WHERE chat_id = ? AND number = ?",
            )
            .bind(body)
            .bind(naive(at))
            .bind(chat_id)
            .bind(*number as i64)
            .execute(&mut *tx)
            .await?;
            let row: Option<MessageRow> = sqlx::query_as(
                "SELECT number, body, created_at, updated_at FROM messages WHERE chat_id = ? AND number = ?",
            )
            .bind(chat_id)
            .bind(*number as i64)
            .fetch_optional(&mut *tx)
            .await?;
            outcomes[index] = Some(row.map_or(Applied::NotFound, |row| {
                Applied::Message(message(*chat, row))
            }));
        }
    }

    // 5. Counts: what was really inserted, once per row; one statement for all the chats.
    let grown: Vec<(i64, u64, DateTime<Utc>)> = grown
        .into_iter()
        .filter(|(_, (count, _))| *count > 0)
        .map(|(id, (count, at))| (id, count, at))
        .collect();
    for chunk in grown.chunks(ROWS_PER_INSERT) {
        // `WHERE id IN (…)`: found by primary key, so only these chats' rows are locked (a join
        // could scan the table and lock rows other workers' chats live in).
        let mut update =
            QueryBuilder::new("UPDATE chats SET messages_count = messages_count + CASE id");
        for (id, count, _) in chunk {
            update.push(" WHEN ").push_bind(id);
            update.push(" THEN ").push_bind(*count as i64);
        }
        update.push(" END, updated_at = GREATEST(updated_at, CASE id");
        for (id, _, at) in chunk {
            update.push(" WHEN ").push_bind(id);
            update.push(" THEN ").push_bind(naive(at));
        }
        update.push(" END) WHERE id IN (");
        let mut ids = update.separated(", ");
        for (id, _, _) in chunk {
            ids.push_bind(id);
        }
        update.push(")");
        update.build().execute(&mut *tx).await?;
    }
    for (app_id, (count, at)) in &new_chats {
        sqlx::query("UPDATE applications SET chats_count = chats_count + ?, updated_at = GREATEST(updated_at, ?) WHERE id = ?")
            .bind(count)
            .bind(naive(at))
            .bind(app_id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    // Only now are these ids certain to exist: a rolled-back id could be reused by another row.
    for ((token, number), (app_id, chat_id)) in chats {
        store.ids.remember_app(token, app_id);
        store.ids.remember_chat(app_id, number, chat_id);
    }
    Ok(Some(
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Applied::NotFound))
            .collect(),
    ))
}

/// One multi-row `INSERT IGNORE`; returns how many rows went in.
async fn insert_messages(
    tx: &mut MySqlConnection,
    rows: &[(i64, NewMessage<'_>)],
) -> Result<u64, BackendError> {
    let mut insert = QueryBuilder::new(
        "INSERT IGNORE INTO messages (chat_id, number, body, created_at, updated_at) ",
    );
    insert.push_values(rows, |mut row, (chat_id, (number, body, at))| {
        row.push_bind(*chat_id)
            .push_bind(*number as i64)
            .push_bind(*body)
            .push_bind(naive(at))
            .push_bind(naive(at));
    });
    Ok(insert.build().execute(&mut *tx).await?.rows_affected())
}

async fn stored_application(
    tx: &mut MySqlConnection,
    token: &str,
) -> Result<Applied, BackendError> {
    let row = sqlx::query_as(
        "SELECT CAST(token AS CHAR), name, chats_count, created_at, updated_at FROM applications WHERE token = ?",
    )
    .bind(token)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(row.map_or(Applied::NotFound, |row| {
        Applied::Application(application(row))
    }))
}

/// The chat's (application id, chat id). `current`: a locking read (`LOCK IN SHARE MODE`),
/// which sees the latest committed row whatever this transaction's snapshot.
async fn existing_chat(
    tx: &mut MySqlConnection,
    token: &str,
    number: u64,
    current: bool,
) -> Result<Option<(i64, i64)>, BackendError> {
    const FIND: &str = "SELECT c.application_id, c.id FROM chats c \
         JOIN applications a ON a.id = c.application_id WHERE a.token = ? AND c.number = ?";
    const FIND_LOCKED: &str = "SELECT c.application_id, c.id FROM chats c \
         JOIN applications a ON a.id = c.application_id WHERE a.token = ? AND c.number = ? \
         LOCK IN SHARE MODE";
    Ok(sqlx::query_as(if current { FIND_LOCKED } else { FIND })
        .bind(token)
        .bind(number as i64)
        .fetch_optional(&mut *tx)
        .await?)
}

/// Recomputes the counts in chunks of rows. Each chunk locks its parent rows first, then counts
/// the children: a worker batch that touched those parents either committed before (and is
/// counted) or waits for the chunk and adds its own increment after, so traffic may flow.
pub(super) async fn sync_counts(pool: &MySqlPool) -> Result<SyncReport, BackendError> {
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
