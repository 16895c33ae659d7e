//! Steps 4 and 6 of a MySQL batch: inserting its messages and growing each chat's count by what
//! was really inserted (see the steps' list in `apply/mod.rs`).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sqlx::{MySqlConnection, QueryBuilder};

use crate::error::BackendError;
use crate::store::mysql::rows::naive;

/// Rows per multi-row INSERT (6 placeholders a row, far below the 65 535 limit).
const ROWS_PER_INSERT: usize = 1000;

/// A message row to insert: number, body, time, revision.
pub(super) type NewMessage<'a> = (u64, &'a str, &'a DateTime<Utc>, u64);
/// Per chats.id: the messages to insert, in batch order.
pub(super) type PerChat<'a> = BTreeMap<i64, Vec<NewMessage<'a>>>;
/// Per chats.id: how the message count changed (inserted, less deleted), latest time.
pub(super) type Grown = HashMap<i64, (i64, DateTime<Utc>)>;

/// Step 4, the common case: multi-row INSERTs across chats. `None` as soon as one reports fewer
/// rows than it sent: some were already stored, so a chat's growth cannot be told from it.
pub(super) async fn insert_together(
    tx: &mut MySqlConnection,
    per_chat: &PerChat<'_>,
) -> Result<Option<Grown>, BackendError> {
    let mut grown = Grown::new();
    let rows: Vec<(i64, NewMessage<'_>)> = per_chat
        .iter()
        .flat_map(|(chat_id, rows)| rows.iter().map(|row| (*chat_id, *row)))
        .collect();
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let done = insert_messages(tx, chunk).await?;
        if done != chunk.len() as u64 {
            return Ok(None);
        }
        for (chat_id, (_, _, at, _)) in chunk {
            let entry = grown.entry(*chat_id).or_insert((0, **at));
            entry.0 += 1;
            entry.1 = entry.1.max(**at);
        }
    }
    Ok(Some(grown))
}

/// Step 4 after a replay: one multi-row INSERT per chat, whose affected-row count is the
/// chat's growth.
pub(super) async fn insert_per_chat(
    tx: &mut MySqlConnection,
    per_chat: &PerChat<'_>,
) -> Result<Grown, BackendError> {
    let mut grown = Grown::new();
    for (chat_id, rows) in per_chat {
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let chunk: Vec<(i64, NewMessage<'_>)> =
                chunk.iter().map(|row| (*chat_id, *row)).collect();
            let done = insert_messages(tx, &chunk).await?;
            let latest = chunk
                .iter()
                .map(|(_, (_, _, at, _))| **at)
                .max()
                .unwrap_or_default();
            let entry = grown.entry(*chat_id).or_insert((0, latest));
            entry.0 += done as i64;
            entry.1 = entry.1.max(latest);
        }
    }
    Ok(grown)
}

/// Step 6: each chat's count grows by what was really inserted, once per row; one statement
/// for all the chats.
pub(super) async fn add_message_counts(
    tx: &mut MySqlConnection,
    grown: Grown,
) -> Result<(), BackendError> {
    let grown: Vec<(i64, i64, DateTime<Utc>)> = grown
        .into_iter()
        .filter(|(_, (count, _))| *count != 0)
        .map(|(id, (count, at))| (id, count, at))
        .collect();
    for chunk in grown.chunks(ROWS_PER_INSERT) {
        // `WHERE id IN (…)`: found by primary key, so only these chats' rows are locked (a join
        // could scan the table and lock rows other workers' chats live in).
        let mut update =
            QueryBuilder::new("UPDATE chats SET messages_count = messages_count + CASE id");
        for (id, count, _) in chunk {
            update.push(" WHEN ").push_bind(id);
            update.push(" THEN ").push_bind(*count);
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
    Ok(())
}

/// One multi-row `INSERT IGNORE`; returns how many rows went in.
async fn insert_messages(
    tx: &mut MySqlConnection,
    rows: &[(i64, NewMessage<'_>)],
) -> Result<u64, BackendError> {
    let mut insert = QueryBuilder::new(
        "INSERT IGNORE INTO messages (chat_id, number, body, created_at, updated_at, revision) ",
    );
    insert.push_values(rows, |mut row, (chat_id, (number, body, at, revision))| {
        row.push_bind(*chat_id)
            .push_bind(*number as i64)
            .push_bind(*body)
            .push_bind(naive(at))
            .push_bind(naive(at))
            .push_bind(*revision as i64);
    });
    Ok(insert.build().execute(&mut *tx).await?.rows_affected())
}
