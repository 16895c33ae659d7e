//! `Store::apply` for SQLite: one transaction per batch, idempotent, counts and revisions kept
//! inside it.
//!
//! Every insert is `ON CONFLICT DO NOTHING` on the natural key (token; application and number;
//! a message's row id, which is its chat and number), so a replayed event finds its row and
//! answers with it. Counts change by what really changed, summed per chat and per application
//! and written once per batch; so do revisions (a change given [`AT_APPLY`] takes the chat's
//! next one, a change that carries one keeps it, and only a change that took effect raises the
//! chat's). Deleting a chat or an application only marks it: [`purge`] erases the messages
//! later, in bounded steps. It runs on the blocking pool with the write connection (`conn.rs`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};

use super::conn::Inner;
use super::rows::{
    application, application_row, chat, chat_row_at, chat_rows, message, message_row,
    message_row_id,
};
use crate::domain::event::{self, Applied, Event, AT_APPLY};
use crate::domain::{Chat, Message, Tombstone};
use crate::error::BackendError;

/// What one batch changes beside its rows, written once at its end.
#[derive(Default)]
struct Deltas {
    /// chats.id -> (messages_count change, latest time)
    chats: HashMap<i64, (i64, i64)>,
    /// applications.id -> (chats_count change, latest time)
    applications: HashMap<i64, (i64, i64)>,
    /// chats.id -> (the chat's revision as stored, or -1 when not read; its revision so far
    /// in this batch)
    revisions: HashMap<i64, (i64, i64)>,
}

fn bump(map: &mut HashMap<i64, (i64, i64)>, id: i64, by: i64, at: i64) {
    let entry = map.entry(id).or_insert((0, at));
    entry.0 += by;
    entry.1 = entry.1.max(at);
}

impl Deltas {
    /// The revision a change of this chat takes: the one it carries, or the chat's next.
    fn revision(&mut self, tx: &Transaction, chat_id: i64, given: u64) -> rusqlite::Result<i64> {
        if given != AT_APPLY {
            return Ok(given.min(i64::MAX as u64) as i64);
        }
        Ok(self.current_revision(tx, chat_id)? + 1)
    }

    fn current_revision(&mut self, tx: &Transaction, chat_id: i64) -> rusqlite::Result<i64> {
        if let Some((_, revision)) = self.revisions.get(&chat_id) {
            return Ok(*revision);
        }
        let stored: i64 = tx
            .prepare_cached("SELECT revision FROM chats WHERE id = ?1")?
            .query_row([chat_id], |row| row.get(0))?;
        self.revisions.insert(chat_id, (stored, stored));
        Ok(stored)
    }

    /// A change took `revision`: the chat's revision is at least that now.
    fn took(&mut self, chat_id: i64, revision: i64) {
        let entry = self.revisions.entry(chat_id).or_insert((-1, revision));
        entry.1 = entry.1.max(revision);
    }
}

/// What a batch leaves to forget in the id cache once it committed.
#[derive(Default)]
struct Forget {
    applications: Vec<String>,
    chats: Vec<(i64, u64)>,
}

pub(super) fn apply(inner: &Inner, batch: &[Event]) -> Result<Vec<Applied>, BackendError> {
    let mut conn = inner.writer();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut deltas = Deltas::default();
    let mut forget = Forget::default();
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
                        "UPDATE applications SET name = ?1, updated_at = ?2 \
                         WHERE token = ?3 AND deleted_at IS NULL \
                         RETURNING token, name, chats_count, created_at, updated_at",
                    )?
                    .query_row(params![name, at.timestamp_micros(), token], application_row)
                    .optional()?;
                row.map_or(Applied::NotFound, |row| {
                    Applied::Application(application(row))
                })
            }
            Event::ApplicationDeleted(event::ApplicationDeleted { token, at }) => {
                let token = token.as_str();
                let micros = at.timestamp_micros();
                let deleted: Option<i64> = tx
                    .prepare_cached(
                        "UPDATE applications SET deleted_at = ?1, updated_at = ?1 \
                         WHERE token = ?2 AND deleted_at IS NULL RETURNING id",
                    )?
                    .query_row(params![micros, token], |row| row.get(0))
                    .optional()?;
                match deleted {
                    Some(app_id) => {
                        tx.prepare_cached(
                            "UPDATE chats SET deleted_at = ?1 \
                             WHERE application_id = ?2 AND deleted_at IS NULL",
                        )?
                        .execute(params![micros, app_id])?;
                        chats_seen.retain(|(seen, _), _| *seen != token);
                        forget.applications.push(token.to_owned());
                        Applied::Deleted
                    }
                    None => Applied::NotFound,
                }
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
            Event::ChatDeleted(event::ChatDeleted { token, number, at }) => {
                let token = token.as_str();
                let micros = at.timestamp_micros();
                let deleted: Option<i64> = tx
                    .prepare_cached(
                        "UPDATE chats SET deleted_at = ?1, updated_at = ?1 \
                         WHERE deleted_at IS NULL AND number = ?2 AND application_id = \
                           (SELECT id FROM applications WHERE token = ?3 AND deleted_at IS NULL) \
                         RETURNING application_id",
                    )?
                    .query_row(params![micros, *number as i64, token], |row| row.get(0))
                    .optional()?;
                match deleted {
                    Some(app_id) => {
                        bump(&mut deltas.applications, app_id, -1, micros);
                        chats_seen.remove(&(token, *number));
                        forget.chats.push((app_id, *number));
                        Applied::Deleted
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
                revision,
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
                        let created = NewMessage {
                            chat_id,
                            chat_number: *chat,
                            number: *number,
                            body,
                            at: *at,
                            revision: *revision,
                        };
                        Applied::Message(insert_message(&tx, &mut deltas, &created)?)
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
                revision,
            }) => {
                let id = message_id(&tx, &chats_seen, token.as_str(), *chat, *number)?;
                match id {
                    Some((chat_id, id)) => {
                        let revision = deltas.revision(&tx, chat_id, *revision)?;
                        // The higher revision wins: an edit older than the stored state (it
                        // reached the store late) changes nothing.
                        let row = tx
                            .prepare_cached(
                                "UPDATE messages SET body = ?1, updated_at = ?2, revision = ?3 \
                                 WHERE id = ?4 AND deleted_at IS NULL AND revision < ?3 \
                                 RETURNING number, body, created_at, updated_at, revision",
                            )?
                            .query_row(
                                params![body, at.timestamp_micros(), revision, id],
                                message_row,
                            )
                            .optional()?;
                        if row.is_some() {
                            deltas.took(chat_id, revision);
                        }
                        match row.map_or_else(|| live_message(&tx, id), |row| Ok(Some(row)))? {
                            Some(row) => Applied::Message(message(*chat, row)),
                            None => Applied::NotFound,
                        }
                    }
                    None => Applied::NotFound,
                }
            }
            Event::MessageDeleted(event::MessageDeleted {
                token,
                chat,
                number,
                at,
                revision,
            }) => {
                let id = message_id(&tx, &chats_seen, token.as_str(), *chat, *number)?;
                match id {
                    Some((chat_id, id)) => {
                        let revision = deltas.revision(&tx, chat_id, *revision)?;
                        let micros = at.timestamp_micros();
                        // A deletion always wins (an acknowledged delete is never undone); its
                        // tombstone keeps the higher of its revision and the stored one.
                        let deleted: Option<i64> = tx
                            .prepare_cached(
                                "UPDATE messages SET body = '', deleted_at = ?1, updated_at = ?1, \
                                   revision = MAX(revision, ?2) \
                                 WHERE id = ?3 AND deleted_at IS NULL RETURNING revision",
                            )?
                            .query_row(params![micros, revision, id], |row| row.get(0))
                            .optional()?;
                        match deleted {
                            Some(stored) => {
                                deltas.took(chat_id, revision);
                                bump(&mut deltas.chats, chat_id, -1, micros);
                                Applied::MessageDeleted(Tombstone::new(
                                    *chat,
                                    *number,
                                    stored as u64,
                                    *at,
                                ))
                            }
                            None => Applied::NotFound,
                        }
                    }
                    None => Applied::NotFound,
                }
            }
        };
        outcomes.push(outcome);
    }
    write_deltas(&tx, &deltas)?;
    tx.commit()?;
    // Only now are these ids certain to exist: a rolled-back id could be reused by another row.
    for ((_, number), (app_id, chat_id)) in chats_seen {
        inner.ids.remember_chat(app_id, number, chat_id);
    }
    for token in &forget.applications {
        inner.ids.forget_app(token);
    }
    for (app_id, number) in forget.chats {
        inner.ids.forget_chat(app_id, number);
    }
    Ok(outcomes)
}

/// One `UPDATE` per chat the batch changed (its count, time and revision together), one per
/// application.
fn write_deltas(tx: &Transaction, deltas: &Deltas) -> Result<(), BackendError> {
    let touched = deltas.chats.keys().chain(
        deltas
            .revisions
            .keys()
            .filter(|id| !deltas.chats.contains_key(id)),
    );
    for id in touched {
        let (count, at) = deltas.chats.get(id).copied().unwrap_or((0, i64::MIN));
        let (stored, revision) = deltas.revisions.get(id).copied().unwrap_or((0, 0));
        if count == 0 && revision <= stored {
            continue; // only read: nothing to write
        }
        tx.prepare_cached(
            "UPDATE chats SET messages_count = messages_count + ?1, \
               updated_at = MAX(updated_at, ?2), revision = MAX(revision, ?3) WHERE id = ?4",
        )?
        .execute(params![count, at, revision, id])?;
    }
    for (id, (count, at)) in &deltas.applications {
        tx.prepare_cached(
            "UPDATE applications SET chats_count = chats_count + ?1, updated_at = MAX(updated_at, ?2) WHERE id = ?3",
        )?
        .execute(params![count, at, id])?;
    }
    Ok(())
}

/// Erases up to `limit` messages of one deleted chat in one transaction (see `Store::purge`);
/// the chat is marked purged once none is left. Returns how much was done (0: nothing to do).
pub(super) fn purge(inner: &Inner, limit: u32) -> Result<u64, BackendError> {
    let mut conn = inner.writer();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let chat_id: Option<i64> = tx
        .prepare_cached("SELECT id FROM chats WHERE deleted_at IS NOT NULL AND purged = 0 LIMIT 1")?
        .query_row([], |row| row.get(0))
        .optional()?;
    let Some(chat_id) = chat_id else {
        return Ok(0);
    };
    let (first, last) = chat_rows(chat_id);
    // Each erased row leaves a note for the search indexer, which deletes its postings.
    let erased = tx
        .prepare_cached(
            "DELETE FROM messages WHERE id IN \
             (SELECT id FROM messages WHERE id BETWEEN ?1 AND ?2 LIMIT ?3)",
        )?
        .execute(params![first, last, i64::from(limit)])?;
    if erased < limit as usize {
        tx.prepare_cached("UPDATE chats SET purged = 1, messages_count = 0 WHERE id = ?1")?
            .execute([chat_id])?;
    }
    tx.commit()?;
    Ok(erased.max(1) as u64)
}

fn stored_application(tx: &Transaction, token: &str) -> Result<Applied, BackendError> {
    let row = tx
        .prepare_cached(
            "SELECT token, name, chats_count, created_at, updated_at FROM applications \
             WHERE token = ?1 AND deleted_at IS NULL",
        )?
        .query_row([token], application_row)
        .optional()?;
    Ok(row.map_or(Applied::NotFound, |row| {
        Applied::Application(application(row))
    }))
}

/// (chats.id, messages.id) of a message of a chat that exists, named by its coordinates.
fn message_id(
    tx: &Transaction,
    chats_seen: &HashMap<(&str, u64), (i64, i64)>,
    token: &str,
    chat: u64,
    number: u64,
) -> Result<Option<(i64, i64)>, BackendError> {
    let chat_id = match chats_seen.get(&(token, chat)).copied() {
        Some((_, chat_id)) => Some(chat_id),
        None => tx
            .prepare_cached(
                "SELECT c.id FROM chats c JOIN applications a ON a.id = c.application_id \
                 WHERE a.token = ?1 AND c.number = ?2 AND c.deleted_at IS NULL",
            )?
            .query_row(params![token, chat as i64], |row| row.get(0))
            .optional()?,
    };
    Ok(chat_id.and_then(|chat_id| Some((chat_id, message_row_id(chat_id, number).ok()?))))
}

fn live_message(tx: &Transaction, id: i64) -> rusqlite::Result<Option<super::rows::MessageRow>> {
    tx.prepare_cached(
        "SELECT number, body, created_at, updated_at, revision FROM messages \
         WHERE id = ?1 AND deleted_at IS NULL",
    )?
    .query_row([id], message_row)
    .optional()
}

/// Finds the chat, creating it from its coordinates when it is not stored yet (a message may
/// arrive before its chat's event). `None` when the application does not exist, or when the
/// chat or the application was deleted (a late event never brings either back).
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
            "SELECT c.application_id, c.id, c.number, c.messages_count, c.created_at, c.updated_at, \
               c.revision, c.deleted_at IS NULL AND a.deleted_at IS NULL \
             FROM chats c JOIN applications a ON a.id = c.application_id WHERE a.token = ?1 AND c.number = ?2",
        )?
        .query_row(params![token, number as i64], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                chat_row_at(row, 2)?,
                row.get::<_, bool>(7)?,
            ))
        })
        .optional()?;
    if let Some((app_id, chat_id, row, live)) = existing {
        return Ok(live.then(|| (app_id, chat_id, chat(row))));
    }
    let inserted: Option<(i64, i64)> = tx
        .prepare_cached(
            "INSERT INTO chats (application_id, number, messages_count, created_at, updated_at) \
             SELECT id, ?1, 0, ?2, ?2 FROM applications WHERE token = ?3 AND deleted_at IS NULL \
             ON CONFLICT (application_id, number) DO NOTHING RETURNING application_id, id",
        )?
        .query_row(params![number as i64, micros, token], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?;
    let Some((app_id, chat_id)) = inserted else {
        return Ok(None);
    };
    bump(&mut deltas.applications, app_id, 1, micros);
    Ok(Some((app_id, chat_id, Chat::new(number, 0, 0, at, at))))
}

/// A message creation, as `insert_message` needs it.
struct NewMessage<'a> {
    chat_id: i64,
    chat_number: u64,
    number: u64,
    body: &'a str,
    at: DateTime<Utc>,
    revision: u64,
}

fn insert_message(
    tx: &Transaction,
    deltas: &mut Deltas,
    created: &NewMessage,
) -> Result<Message, BackendError> {
    let micros = created.at.timestamp_micros();
    let id = message_row_id(created.chat_id, created.number)?;
    let revision = deltas.revision(tx, created.chat_id, created.revision)?;
    let inserted = tx
        .prepare_cached(
            "INSERT INTO messages (id, chat_id, number, body, created_at, updated_at, revision) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6) ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            id,
            created.chat_id,
            created.number as i64,
            created.body,
            micros,
            revision
        ])?;
    if inserted == 1 {
        deltas.took(created.chat_id, revision);
        bump(&mut deltas.chats, created.chat_id, 1, micros);
        return Ok(Message::new(
            created.chat_number,
            created.number,
            created.body.to_owned(),
            revision as u64,
            created.at,
            created.at,
        ));
    }
    // A replay: answer with what is stored.
    let row = tx
        .prepare_cached(
            "SELECT number, body, created_at, updated_at, revision FROM messages WHERE id = ?1",
        )?
        .query_row([id], message_row)?;
    Ok(message(created.chat_number, row))
}
