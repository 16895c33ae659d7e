//! `Store::apply` for SQLite: one transaction per batch, idempotent, counts kept inside it.
//!
//! Every insert is `ON CONFLICT DO NOTHING` on the natural key (token; application and number;
//! chat and number), so a replayed event finds its row and answers with it. Counts grow by what
//! was really inserted, summed per chat and per application and written once per batch.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;

use super::sqlite::{application, chat, message, remember, SqliteStore};
use crate::domain::{Chat, Message};
use crate::error::BackendError;
use crate::events::{Applied, Event};

/// Count increments of one batch: row id -> (how many were inserted, latest time).
#[derive(Default)]
struct Deltas {
    chats: HashMap<i64, (i64, i64)>,
    applications: HashMap<i64, (i64, i64)>,
}

fn bump(map: &mut HashMap<i64, (i64, i64)>, id: i64, at: i64) {
    let entry = map.entry(id).or_insert((0, at));
    entry.0 += 1;
    entry.1 = entry.1.max(at);
}

pub(super) async fn apply(
    store: &SqliteStore,
    batch: &[Event],
) -> Result<Vec<Applied>, BackendError> {
    let mut tx = store.writer.begin().await?;
    let mut deltas = Deltas::default();
    // (token, chat number) -> (applications.id, chats.id) of the chats this batch touched.
    let mut chats_seen: HashMap<(&str, u64), (i64, i64)> = HashMap::new();
    let mut outcomes = Vec::with_capacity(batch.len());
    for event in batch {
        let outcome = match event {
            Event::ApplicationCreated { token, name, at } => {
                sqlx::query(
                    "INSERT INTO applications (token, name, chats_count, created_at, updated_at) \
                     VALUES (?1, ?2, 0, ?3, ?3) ON CONFLICT (token) DO NOTHING",
                )
                .bind(token)
                .bind(name)
                .bind(at.timestamp_micros())
                .execute(&mut *tx)
                .await?;
                stored_application(&mut tx, token).await?
            }
            Event::ApplicationRenamed { token, name, at } => {
                let row = sqlx::query_as(
                    "UPDATE applications SET name = ?1, updated_at = ?2 WHERE token = ?3 \
                     RETURNING token, name, chats_count, created_at, updated_at",
                )
                .bind(name)
                .bind(at.timestamp_micros())
                .bind(token)
                .fetch_optional(&mut *tx)
                .await?;
                row.map_or(Applied::NotFound, |row| {
                    Applied::Application(application(row))
                })
            }
            Event::ChatCreated { token, number, at } => {
                match ensure_chat(&mut tx, &mut deltas, token, *number, *at).await? {
                    Some((app_id, chat_id, chat)) => {
                        chats_seen.insert((token.as_str(), *number), (app_id, chat_id));
                        Applied::Chat(chat)
                    }
                    None => Applied::NotFound,
                }
            }
            Event::MessageCreated {
                token,
                chat,
                number,
                body,
                at,
            } => {
                let key = (token.as_str(), *chat);
                let ids = match chats_seen
                    .get(&key)
                    .copied()
                    .or_else(|| committed_chat(store, token, *chat))
                {
                    Some(ids) => Some(ids),
                    None => ensure_chat(&mut tx, &mut deltas, token, *chat, *at)
                        .await?
                        .map(|(app_id, chat_id, _)| (app_id, chat_id)),
                };
                match ids {
                    Some((app_id, chat_id)) => {
                        chats_seen.insert(key, (app_id, chat_id));
                        let message = insert_message(
                            &mut tx,
                            &mut deltas,
                            chat_id,
                            *chat,
                            *number,
                            body,
                            *at,
                        )
                        .await?;
                        Applied::Message(message)
                    }
                    None => Applied::NotFound,
                }
            }
            Event::MessageEdited {
                token,
                chat,
                number,
                body,
                at,
            } => {
                let row = sqlx::query_as(
                    "UPDATE messages SET body = ?1, updated_at = ?2 \
                     WHERE number = ?3 AND chat_id = (SELECT c.id FROM chats c \
                       JOIN applications a ON a.id = c.application_id WHERE a.token = ?4 AND c.number = ?5) \
                     RETURNING number, body, created_at, updated_at",
                )
                .bind(body)
                .bind(at.timestamp_micros())
                .bind(*number as i64)
                .bind(token)
                .bind(*chat as i64)
                .fetch_optional(&mut *tx)
                .await?;
                row.map_or(Applied::NotFound, |row| {
                    Applied::Message(message(*chat, row))
                })
            }
        };
        outcomes.push(outcome);
    }
    for (id, (count, at)) in &deltas.chats {
        sqlx::query(
            "UPDATE chats SET messages_count = messages_count + ?1, updated_at = MAX(updated_at, ?2) WHERE id = ?3",
        )
        .bind(count)
        .bind(at)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    }
    for (id, (count, at)) in &deltas.applications {
        sqlx::query(
            "UPDATE applications SET chats_count = chats_count + ?1, updated_at = MAX(updated_at, ?2) WHERE id = ?3",
        )
        .bind(count)
        .bind(at)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    // Only now are these ids certain to exist: a rolled-back id could be reused by another row.
    for ((_, number), (app_id, chat_id)) in chats_seen {
        remember(&store.chat_ids, (app_id, number), chat_id);
    }
    Ok(outcomes)
}

/// The ids of a chat already committed, from the store's caches: no query on the hot path.
fn committed_chat(store: &SqliteStore, token: &str, chat: u64) -> Option<(i64, i64)> {
    let app_id = *store.app_ids.get(token)?;
    let chat_id = *store.chat_ids.get(&(app_id, chat))?;
    Some((app_id, chat_id))
}

async fn stored_application(
    tx: &mut SqliteConnection,
    token: &str,
) -> Result<Applied, BackendError> {
    let row = sqlx::query_as(
        "SELECT token, name, chats_count, created_at, updated_at FROM applications WHERE token = ?1",
    )
    .bind(token)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(row.map_or(Applied::NotFound, |row| {
        Applied::Application(application(row))
    }))
}

/// Finds the chat, creating it from its coordinates when it is not stored yet (a message may
/// arrive before its chat's event). `None` when the application does not exist.
async fn ensure_chat(
    tx: &mut SqliteConnection,
    deltas: &mut Deltas,
    token: &str,
    number: u64,
    at: DateTime<Utc>,
) -> Result<Option<(i64, i64, Chat)>, BackendError> {
    let micros = at.timestamp_micros();
    let existing: Option<(i64, i64, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT c.application_id, c.id, c.number, c.messages_count, c.created_at, c.updated_at \
         FROM chats c JOIN applications a ON a.id = c.application_id WHERE a.token = ?1 AND c.number = ?2",
    )
    .bind(token)
    .bind(number as i64)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some((app_id, chat_id, n, count, created, updated)) = existing {
        return Ok(Some((app_id, chat_id, chat((n, count, created, updated)))));
    }
    let inserted: Option<(i64, i64)> = sqlx::query_as(
        "INSERT INTO chats (application_id, number, messages_count, created_at, updated_at) \
         SELECT id, ?1, 0, ?2, ?2 FROM applications WHERE token = ?3 \
         ON CONFLICT (application_id, number) DO NOTHING RETURNING application_id, id",
    )
    .bind(number as i64)
    .bind(micros)
    .bind(token)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((app_id, chat_id)) = inserted else {
        return Ok(None);
    };
    bump(&mut deltas.applications, app_id, micros);
    Ok(Some((app_id, chat_id, Chat::new(number, 0, at, at))))
}

/// Messages of one chat occupy one rowid range (migration 0003): chat id in the high 32 bits,
/// number in the low 32.
pub(super) fn message_row_id(chat_id: i64, number: u64) -> Result<i64, BackendError> {
    if number >= 1 << 32 || chat_id >= 1 << 31 {
        return Err(BackendError::Other(anyhow::anyhow!(
            "chat {chat_id} or message number {number} is beyond the embedded store's limits"
        )));
    }
    Ok((chat_id << 32) | number as i64)
}

async fn insert_message(
    tx: &mut SqliteConnection,
    deltas: &mut Deltas,
    chat_id: i64,
    chat_number: u64,
    number: u64,
    body: &str,
    at: DateTime<Utc>,
) -> Result<Message, BackendError> {
    let micros = at.timestamp_micros();
    let inserted = sqlx::query(
        "INSERT INTO messages (id, chat_id, number, body, created_at, updated_at) VALUES (?5, ?1, ?2, ?3, ?4, ?4) \
         ON CONFLICT (chat_id, number) DO NOTHING",
    )
    .bind(chat_id)
    .bind(number as i64)
    .bind(body)
    .bind(micros)
    .bind(message_row_id(chat_id, number)?)
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 1 {
        bump(&mut deltas.chats, chat_id, micros);
        return Ok(Message::new(chat_number, number, body.to_owned(), at, at));
    }
    // A replay: answer with what is stored.
    let row = sqlx::query_as(
        "SELECT number, body, created_at, updated_at FROM messages WHERE chat_id = ?1 AND number = ?2",
    )
    .bind(chat_id)
    .bind(number as i64)
    .fetch_one(&mut *tx)
    .await?;
    Ok(message(chat_number, row))
}
