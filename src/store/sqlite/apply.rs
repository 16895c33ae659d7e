//! `Store::apply` for SQLite: one transaction per batch, idempotent, counts kept inside it.
//!
//! Every insert is `ON CONFLICT DO NOTHING` on the natural key (token; application and number;
//! a message's row id, which is its chat and number), so a replayed event finds its row and answers with it. Counts grow by what
//! was really inserted, summed per chat and per application and written once per batch. It runs
//! on the blocking pool with the write connection (see `conn.rs`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};

use super::conn::Inner;
use super::rows::{
    application, application_row, chat, chat_row_at, message, message_row, message_row_id,
};
use crate::domain::event::{self, Applied, Event};
use crate::domain::{Chat, Message};
use crate::error::BackendError;

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

pub(super) fn apply(inner: &Inner, batch: &[Event]) -> Result<Vec<Applied>, BackendError> {
    let mut conn = inner.writer();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut deltas = Deltas::default();
    // (token, chat number) -> (applications.id, chats.id) of the chats this batch touched.
    let mut chats_seen: HashMap<(&str, u64), (i64, i64)> = HashMap::new();
    let mut outcomes = Vec::with_capacity(batch.len());
    for event in batch {
        let outcome = match event {
            Event::ApplicationCreated(event::ApplicationCreated { token, name, at }) => {
                let token = token.as_str();
                tx.prepare_cached(
                    "INSERT INTO applications (token, name, chats_count, created_at, updated_at) \
                     VALUES (?1, ?2, 0, ?3, ?3) ON CONFLICT (token) DO NOTHING",
                )?
                .execute(params![token, name, at.timestamp_micros()])?;
                stored_application(&tx, token)?
            }
            Event::ApplicationRenamed(event::ApplicationRenamed { token, name, at }) => {
                let token = token.as_str();
                let row = tx
                    .prepare_cached(
                        "UPDATE applications SET name = ?1, updated_at = ?2 WHERE token = ?3 \
                         RETURNING token, name, chats_count, created_at, updated_at",
                    )?
                    .query_row(params![name, at.timestamp_micros(), token], application_row)
                    .optional()?;
                row.map_or(Applied::NotFound, |row| {
                    Applied::Application(application(row))
                })
            }
            Event::ChatCreated(event::ChatCreated { token, number, at }) => {
                let token = token.as_str();
                match ensure_chat(&tx, &mut deltas, token, *number, *at)? {
                    Some((app_id, chat_id, chat)) => {
                        chats_seen.insert((token, *number), (app_id, chat_id));
                        Applied::Chat(chat)
                    }
                    None => Applied::NotFound,
                }
            }
            Event::MessageCreated(event::MessageCreated {
                token,
                chat,
                number,
                body,
                at,
            }) => {
                let token = token.as_str();
                let key = (token, *chat);
                let ids = match chats_seen
                    .get(&key)
                    .copied()
                    .or_else(|| inner.ids.committed_chat(token, *chat))
                {
                    Some(ids) => Some(ids),
                    None => ensure_chat(&tx, &mut deltas, token, *chat, *at)?
                        .map(|(app_id, chat_id, _)| (app_id, chat_id)),
                };
                match ids {
                    Some((app_id, chat_id)) => {
                        chats_seen.insert(key, (app_id, chat_id));
                        let message =
                            insert_message(&tx, &mut deltas, chat_id, *chat, *number, body, *at)?;
                        Applied::Message(message)
                    }
                    None => Applied::NotFound,
                }
            }
            Event::MessageEdited(event::MessageEdited {
                token,
                chat,
                number,
                body,
                at,
            }) => {
                let token = token.as_str();
                let chat_id = match chats_seen.get(&(token, *chat)).copied() {
                    Some((_, chat_id)) => Some(chat_id),
                    None => stored_chat_id(&tx, token, *chat)?,
                };
                let id = chat_id.and_then(|chat_id| message_row_id(chat_id, *number).ok());
                let row = match id {
                    Some(id) => tx
                        .prepare_cached(
                            "UPDATE messages SET body = ?1, updated_at = ?2 WHERE id = ?3 \
                             RETURNING number, body, created_at, updated_at",
                        )?
                        .query_row(params![body, at.timestamp_micros(), id], message_row)
                        .optional()?,
                    None => None,
                };
                row.map_or(Applied::NotFound, |row| {
                    Applied::Message(message(*chat, row))
                })
            }
        };
        outcomes.push(outcome);
    }
    for (id, (count, at)) in &deltas.chats {
        tx.prepare_cached(
            "UPDATE chats SET messages_count = messages_count + ?1, updated_at = MAX(updated_at, ?2) WHERE id = ?3",
        )?
        .execute(params![count, at, id])?;
    }
    for (id, (count, at)) in &deltas.applications {
        tx.prepare_cached(
            "UPDATE applications SET chats_count = chats_count + ?1, updated_at = MAX(updated_at, ?2) WHERE id = ?3",
        )?
        .execute(params![count, at, id])?;
    }
    tx.commit()?;
    // Only now are these ids certain to exist: a rolled-back id could be reused by another row.
    for ((_, number), (app_id, chat_id)) in chats_seen {
        inner.ids.remember_chat(app_id, number, chat_id);
    }
    Ok(outcomes)
}

fn stored_application(tx: &Transaction, token: &str) -> Result<Applied, BackendError> {
    let row = tx
        .prepare_cached(
            "SELECT token, name, chats_count, created_at, updated_at FROM applications WHERE token = ?1",
        )?
        .query_row([token], application_row)
        .optional()?;
    Ok(row.map_or(Applied::NotFound, |row| {
        Applied::Application(application(row))
    }))
}

fn stored_chat_id(tx: &Transaction, token: &str, chat: u64) -> Result<Option<i64>, BackendError> {
    Ok(tx
        .prepare_cached(
            "SELECT c.id FROM chats c JOIN applications a ON a.id = c.application_id \
             WHERE a.token = ?1 AND c.number = ?2",
        )?
        .query_row(params![token, chat as i64], |row| row.get(0))
        .optional()?)
}

/// Finds the chat, creating it from its coordinates when it is not stored yet (a message may
/// arrive before its chat's event). `None` when the application does not exist.
fn ensure_chat(
    tx: &Transaction,
    deltas: &mut Deltas,
    token: &str,
    number: u64,
    at: DateTime<Utc>,
) -> Result<Option<(i64, i64, Chat)>, BackendError> {
    let micros = at.timestamp_micros();
    let existing = tx
        .prepare_cached(
            "SELECT c.application_id, c.id, c.number, c.messages_count, c.created_at, c.updated_at \
             FROM chats c JOIN applications a ON a.id = c.application_id WHERE a.token = ?1 AND c.number = ?2",
        )?
        .query_row(params![token, number as i64], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?, chat_row_at(row, 2)?))
        })
        .optional()?;
    if let Some((app_id, chat_id, row)) = existing {
        return Ok(Some((app_id, chat_id, chat(row))));
    }
    let inserted: Option<(i64, i64)> = tx
        .prepare_cached(
            "INSERT INTO chats (application_id, number, messages_count, created_at, updated_at) \
             SELECT id, ?1, 0, ?2, ?2 FROM applications WHERE token = ?3 \
             ON CONFLICT (application_id, number) DO NOTHING RETURNING application_id, id",
        )?
        .query_row(params![number as i64, micros, token], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?;
    let Some((app_id, chat_id)) = inserted else {
        return Ok(None);
    };
    bump(&mut deltas.applications, app_id, micros);
    Ok(Some((app_id, chat_id, Chat::new(number, 0, at, at))))
}

fn insert_message(
    tx: &Transaction,
    deltas: &mut Deltas,
    chat_id: i64,
    chat_number: u64,
    number: u64,
    body: &str,
    at: DateTime<Utc>,
) -> Result<Message, BackendError> {
    let micros = at.timestamp_micros();
    let inserted = tx
        .prepare_cached(
            "INSERT INTO messages (id, chat_id, number, body, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            message_row_id(chat_id, number)?,
            chat_id,
            number as i64,
            body,
            micros
        ])?;
    if inserted == 1 {
        bump(&mut deltas.chats, chat_id, micros);
        return Ok(Message::new(chat_number, number, body.to_owned(), at, at));
    }
    // A replay: answer with what is stored.
    let row = tx
        .prepare_cached("SELECT number, body, created_at, updated_at FROM messages WHERE id = ?1")?
        .query_row([message_row_id(chat_id, number)?], message_row)?;
    Ok(message(chat_number, row))
}
