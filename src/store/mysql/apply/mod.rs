//! `Store::apply` for MySQL.
//!
//! A batch is one transaction of named steps ([`try_apply`] lists them): applications first, then
//! the chats the batch names (ids from the cache of committed chats, else looked up, or created
//! from their coordinates when a message arrives before its chat), then the messages as
//! multi-row `INSERT IGNORE`s of up to 1 000 rows across chats, then edits and deletions in
//! order, then every chat's count in one `UPDATE … WHERE id IN (…)` and its revision. A change
//! carries its revision (drawn by the sequencer) or takes the chat's next one here
//! ([`AT_APPLY`]); an edit older than the stored state changes nothing (the higher revision
//! wins), a deletion always wins, and a deleted chat or application is never brought back by
//! a late event. When an insert reports fewer rows than it sent
//! (a replay after a crash), the batch is rolled back and redone with one insert per chat, whose
//! affected-row count is exactly that chat's growth: replaying a batch inserts nothing and counts
//! nothing. A deadlock between two workers rolls the batch back; it is retried whole.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sqlx::MySqlConnection;

mod messages;

use self::messages::{add_message_counts, insert_per_chat, insert_together, PerChat};
use super::conn::Inner;
use super::rows::{application, message, naive, MessageRow};
use crate::domain::event::{self, Applied, Event, AT_APPLY};
use crate::domain::{Chat, Message, Tombstone};
use crate::error::BackendError;
use crate::store::ids::IdCache;

const DEADLOCK_RETRIES: usize = 5;

/// The outcome of each event of the batch, in order; `None` until a step answers it.
type Outcomes = Vec<Option<Applied>>;
/// The chats the batch names, found or created: (token, number) -> (applications.id, chats.id).
type ChatIds<'a> = HashMap<(&'a str, u64), (i64, i64)>;
/// Per applications.id: how many chats this batch created less those it deleted, latest time.
type NewChats = HashMap<i64, (i64, DateTime<Utc>)>;
/// The revision of each event of the batch (0 for events that are not a message change), and
/// per chats.id the highest one.
struct Revisions {
    of_event: Vec<u64>,
    /// Per chats.id: the highest revision assigned or carried so far (the next [`AT_APPLY`]
    /// change takes one more).
    per_chat: HashMap<i64, u64>,
    /// Per chats.id: what the chat's revision rises to. A carried revision counts only when its
    /// change took effect (an edit of a message deleted meanwhile raises nothing).
    raise: HashMap<i64, u64>,
}

fn raise(raise: &mut HashMap<i64, u64>, chat_id: i64, revision: u64) {
    let entry = raise.entry(chat_id).or_insert(revision);
    *entry = (*entry).max(revision);
}
/// What a committed batch removes from the id cache.
#[derive(Default)]
struct Forget {
    applications: Vec<String>,
    chats: Vec<(i64, u64)>,
}

pub(super) async fn apply(inner: &Inner, batch: &[Event]) -> Result<Vec<Applied>, BackendError> {
    let mut attempt = 0;
    let mut mode = Inserts::Together;
    loop {
        match try_apply(inner, batch, mode).await {
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

/// One attempt at a batch, step by step in one transaction; `None` when `Together` found a
/// message already stored (the caller redoes the batch `PerChat`).
async fn try_apply(
    inner: &Inner,
    batch: &[Event],
    mode: Inserts,
) -> Result<Option<Vec<Applied>>, BackendError> {
    let mut tx = inner.pool.begin().await?;
    let mut outcomes: Outcomes = vec![None; batch.len()];
    let mut forget = Forget::default();
    write_applications(&mut tx, batch, &mut outcomes, &mut forget).await?;
    let (mut chats, mut new_chats) = find_or_create_chats(&mut tx, &inner.ids, batch).await?;
    let revisions = revisions(&mut tx, batch, &chats).await?;
    let per_chat = answer_chats_and_messages(batch, &chats, &revisions, &mut outcomes);
    let mut grown = match mode {
        Inserts::Together => match insert_together(&mut tx, &per_chat).await? {
            Some(grown) => grown,
            // A row was already stored: dropping `tx` rolls the batch back, to be redone.
            None => return Ok(None),
        },
        Inserts::PerChat => insert_per_chat(&mut tx, &per_chat).await?,
    };
    let mut changes = Changes {
        grown: &mut grown,
        new_chats: &mut new_chats,
        forget: &mut forget,
        raised: HashMap::new(),
    };
    write_changes(
        &mut tx,
        batch,
        &chats,
        &revisions,
        &mut changes,
        &mut outcomes,
    )
    .await?;
    let mut raised = revisions.raise.clone();
    for (chat_id, revision) in std::mem::take(&mut changes.raised) {
        raise(&mut raised, chat_id, revision);
    }
    add_message_counts(&mut tx, grown).await?;
    add_chat_counts(&mut tx, &new_chats).await?;
    raise_revisions(&mut tx, &raised).await?;
    tx.commit().await?;
    for (app_id, number) in &forget.chats {
        inner.ids.forget_chat(*app_id, *number);
        chats.retain(|(_, chat), (app, _)| !(*chat == *number && *app == *app_id));
    }
    for token in &forget.applications {
        inner.ids.forget_app(token);
        chats.retain(|(owner, _), _| owner != token);
    }
    remember_committed(&inner.ids, chats);
    Ok(Some(
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Applied::NotFound))
            .collect(),
    ))
}

/// Step 1: applications, created or renamed in order; each answered with its stored row.
async fn write_applications(
    tx: &mut MySqlConnection,
    batch: &[Event],
    outcomes: &mut Outcomes,
    forget: &mut Forget,
) -> Result<(), BackendError> {
    for (index, event) in batch.iter().enumerate() {
        match event {
            Event::ApplicationCreated(event::ApplicationCreated { token, name, at }) => {
                let token = token.as_str();
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
                outcomes[index] = Some(stored_application(tx, token).await?);
            }
            Event::ApplicationRenamed(event::ApplicationRenamed { token, name, at }) => {
                let token = token.as_str();
                sqlx::query(
                    "UPDATE applications SET name = ?, updated_at = ? \
                     WHERE token = ? AND deleted_at IS NULL",
                )
                .bind(name)
                .bind(naive(at))
                .bind(token)
                .execute(&mut *tx)
                .await?;
                outcomes[index] = Some(stored_application(tx, token).await?);
            }
            Event::ApplicationDeleted(event::ApplicationDeleted { token, at }) => {
                let token = token.as_str();
                let app_id: Option<i64> = sqlx::query_scalar(
                    "SELECT id FROM applications WHERE token = ? AND deleted_at IS NULL FOR UPDATE",
                )
                .bind(token)
                .fetch_optional(&mut *tx)
                .await?;
                outcomes[index] = Some(match app_id {
                    Some(app_id) => {
                        sqlx::query(
                            "UPDATE applications SET deleted_at = ?, updated_at = ? WHERE id = ?",
                        )
                        .bind(naive(at))
                        .bind(naive(at))
                        .bind(app_id)
                        .execute(&mut *tx)
                        .await?;
                        sqlx::query(
                            "UPDATE chats SET deleted_at = ? \
                             WHERE application_id = ? AND deleted_at IS NULL",
                        )
                        .bind(naive(at))
                        .bind(app_id)
                        .execute(&mut *tx)
                        .await?;
                        forget.applications.push(token.to_owned());
                        Applied::Deleted
                    }
                    None => Applied::NotFound,
                });
            }
            _ => {}
        }
    }
    Ok(())
}

/// The chats the batch names, with the earliest time of each (a chat created from a message's
/// coordinates takes it) and whether a creation names it (edits and deletions only look a chat
/// up), sorted so that two workers lock them in the same order.
fn chats_named(batch: &[Event]) -> BTreeMap<(&str, u64), (DateTime<Utc>, bool)> {
    let mut wanted: BTreeMap<(&str, u64), (DateTime<Utc>, bool)> = BTreeMap::new();
    for event in batch {
        let (token, chat, at, creates) = match event {
            Event::ChatCreated(e) => (&e.token, e.number, e.at, true),
            Event::MessageCreated(e) => (&e.token, e.chat, e.at, true),
            Event::MessageEdited(e) => (&e.token, e.chat, e.at, false),
            Event::MessageDeleted(e) => (&e.token, e.chat, e.at, false),
            Event::ChatDeleted(e) => (&e.token, e.number, e.at, false),
            _ => continue,
        };
        let entry = wanted
            .entry((token.as_str(), chat))
            .or_insert((at, creates));
        entry.0 = entry.0.min(at);
        entry.1 |= creates;
    }
    wanted
}

/// Step 2: the ids of the chats the batch names, from the cache of committed chats, else
/// looked up, else created from their coordinates (a message may arrive before its chat's
/// event). A chat whose application does not exist is left out. Also returns, per
/// application, the chats created here, for its count.
async fn find_or_create_chats<'a>(
    tx: &mut MySqlConnection,
    cache: &IdCache,
    batch: &'a [Event],
) -> Result<(ChatIds<'a>, NewChats), BackendError> {
    let mut chats = ChatIds::new();
    let mut new_chats = NewChats::new();
    for (&(token, number), (at, creates)) in &chats_named(batch) {
        if let Some(ids) = cache.committed_chat(token, number) {
            chats.insert((token, number), ids);
            continue;
        }
        match existing_chat(tx, token, number, false).await? {
            Some((app_id, chat_id, true)) => {
                chats.insert((token, number), (app_id, chat_id));
                continue;
            }
            // Deleted: a late event never brings it back.
            Some((_, _, false)) => continue,
            None if !creates => continue,
            None => {}
        }
        let inserted = sqlx::query(
            "INSERT IGNORE INTO chats (application_id, number, messages_count, created_at, updated_at) \
             SELECT id, ?, 0, ?, ? FROM applications WHERE token = ? AND deleted_at IS NULL",
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
        if let Some((app_id, chat_id, true)) = existing_chat(tx, token, number, true).await? {
            if inserted.rows_affected() == 1 {
                let entry = new_chats.entry(app_id).or_insert((0, *at));
                entry.0 += 1;
                entry.1 = entry.1.max(*at);
            }
            chats.insert((token, number), (app_id, chat_id));
        }
    }
    Ok((chats, new_chats))
}

/// Step 3: answers chat creations (the chat was found or created in step 2) and message
/// creations, which are answered with what they carry (an insert that finds its row already
/// there is a replay of the same event), and gathers the messages to insert per chat.
fn answer_chats_and_messages<'a>(
    batch: &'a [Event],
    chats: &ChatIds<'_>,
    revisions: &Revisions,
    outcomes: &mut Outcomes,
) -> PerChat<'a> {
    let mut per_chat = PerChat::new();
    for (index, event) in batch.iter().enumerate() {
        match event {
            Event::ChatCreated(event::ChatCreated { token, number, at }) => {
                let token = token.as_str();
                outcomes[index] = Some(match chats.get(&(token, *number)) {
                    Some(_) => Applied::Chat(Chat::new(*number, 0, 0, *at, *at)),
                    None => Applied::NotFound,
                });
            }
            Event::MessageCreated(event::MessageCreated {
                token,
                chat,
                number,
                body,
                at,
                ..
            }) => {
                let token = token.as_str();
                let revision = revisions.of_event[index];
                outcomes[index] = Some(match chats.get(&(token, *chat)) {
                    Some((_, chat_id)) => {
                        per_chat
                            .entry(*chat_id)
                            .or_default()
                            .push((*number, body, at, revision));
                        Applied::Message(Message::new(
                            *chat,
                            *number,
                            body.clone(),
                            revision,
                            *at,
                            *at,
                        ))
                    }
                    None => Applied::NotFound,
                });
            }
            _ => {}
        }
    }
    per_chat
}

/// Step 2b: the revision of every message change of the batch, in batch order: the one it
/// carries, or the chat's next ([`AT_APPLY`], read from the chat's row once per batch). A change
/// to take the chat's next revision must take effect, so an edit or deletion of a message that
/// is not there (nor created earlier in the batch) takes none (0: it will change nothing).
async fn revisions(
    tx: &mut MySqlConnection,
    batch: &[Event],
    chats: &ChatIds<'_>,
) -> Result<Revisions, BackendError> {
    let mut revisions = Revisions {
        of_event: vec![0; batch.len()],
        per_chat: HashMap::new(),
        raise: HashMap::new(),
    };
    // (chats.id, number) -> live, for the messages this batch created or deleted so far.
    let mut batch_state: HashMap<(i64, u64), bool> = HashMap::new();
    for (index, event) in batch.iter().enumerate() {
        let (token, chat, number, given, creates) = match event {
            Event::MessageCreated(e) => (&e.token, e.chat, e.number, e.revision, Some(true)),
            Event::MessageEdited(e) => (&e.token, e.chat, e.number, e.revision, None),
            Event::MessageDeleted(e) => (&e.token, e.chat, e.number, e.revision, Some(false)),
            _ => continue,
        };
        let Some((_, chat_id)) = chats.get(&(token.as_str(), chat)) else {
            continue;
        };
        if given == AT_APPLY && creates != Some(true) {
            let live = match batch_state.get(&(*chat_id, number)) {
                Some(live) => *live,
                None => sqlx::query_scalar::<_, i64>(
                    "SELECT COUNT(*) FROM messages WHERE chat_id = ? AND number = ? AND deleted_at IS NULL",
                )
                .bind(chat_id)
                .bind(number as i64)
                .fetch_one(&mut *tx)
                .await?
                    > 0,
            };
            if !live {
                continue;
            }
        }
        if let Some(live) = creates {
            batch_state.insert((*chat_id, number), live);
        }
        let current = match revisions.per_chat.get(chat_id) {
            Some(current) => *current,
            None if given != AT_APPLY => 0,
            None => {
                let stored: i64 = sqlx::query_scalar("SELECT revision FROM chats WHERE id = ?")
                    .bind(chat_id)
                    .fetch_one(&mut *tx)
                    .await?;
                stored as u64
            }
        };
        let revision = if given == AT_APPLY {
            current + 1
        } else {
            given
        };
        revisions.of_event[index] = revision;
        revisions.per_chat.insert(*chat_id, current.max(revision));
        if given == AT_APPLY || creates == Some(true) {
            raise(&mut revisions.raise, *chat_id, revision);
        }
    }
    Ok(revisions)
}

/// What step 5 changes beside the rows it writes.
struct Changes<'a> {
    grown: &'a mut messages::Grown,
    new_chats: &'a mut NewChats,
    forget: &'a mut Forget,
    /// Revisions carried by edits and deletions that took effect.
    raised: HashMap<i64, u64>,
}

/// Step 5 (step 4 is in `messages.rs`): edits and deletions, in order (after the creations
/// they follow). An edit is answered with the stored row; an edit older than the stored state
/// changes nothing (the higher revision wins). A deletion erases the body and always wins; its
/// tombstone keeps the higher revision.
async fn write_changes(
    tx: &mut MySqlConnection,
    batch: &[Event],
    chats: &ChatIds<'_>,
    revisions: &Revisions,
    changes: &mut Changes<'_>,
    outcomes: &mut Outcomes,
) -> Result<(), BackendError> {
    for (index, event) in batch.iter().enumerate() {
        let revision = revisions.of_event[index] as i64;
        match event {
            Event::MessageEdited(event::MessageEdited {
                token,
                chat,
                number,
                body,
                at,
                ..
            }) => {
                let Some((_, chat_id)) = chats.get(&(token.as_str(), *chat)) else {
                    outcomes[index] = Some(Applied::NotFound);
                    continue;
                };
                let updated = sqlx::query(
                    "UPDATE messages SET body = ?, updated_at = ?, revision = ? \
                     WHERE chat_id = ? AND number = ? AND deleted_at IS NULL AND revision < ?",
                )
                .bind(body)
                .bind(naive(at))
                .bind(revision)
                .bind(chat_id)
                .bind(*number as i64)
                .bind(revision)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if updated == 1 {
                    raise(&mut changes.raised, *chat_id, revision as u64);
                }
                let row: Option<MessageRow> = sqlx::query_as(
                    "SELECT number, body, created_at, updated_at, revision FROM messages \
                     WHERE chat_id = ? AND number = ? AND deleted_at IS NULL",
                )
                .bind(chat_id)
                .bind(*number as i64)
                .fetch_optional(&mut *tx)
                .await?;
                outcomes[index] = Some(row.map_or(Applied::NotFound, |row| {
                    Applied::Message(message(*chat, row))
                }));
            }
            Event::MessageDeleted(event::MessageDeleted {
                token,
                chat,
                number,
                at,
                ..
            }) => {
                let Some((_, chat_id)) =
                    chats.get(&(token.as_str(), *chat)).filter(|_| revision > 0)
                else {
                    outcomes[index] = Some(Applied::NotFound);
                    continue;
                };
                let deleted = sqlx::query(
                    "UPDATE messages SET body = '', deleted_at = ?, updated_at = ?, \
                       revision = GREATEST(revision, ?) \
                     WHERE chat_id = ? AND number = ? AND deleted_at IS NULL",
                )
                .bind(naive(at))
                .bind(naive(at))
                .bind(revision)
                .bind(chat_id)
                .bind(*number as i64)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                outcomes[index] = Some(if deleted == 1 {
                    raise(&mut changes.raised, *chat_id, revision as u64);
                    let entry = changes.grown.entry(*chat_id).or_insert((0, *at));
                    entry.0 -= 1;
                    entry.1 = entry.1.max(*at);
                    let stored: i64 = sqlx::query_scalar(
                        "SELECT revision FROM messages WHERE chat_id = ? AND number = ?",
                    )
                    .bind(chat_id)
                    .bind(*number as i64)
                    .fetch_one(&mut *tx)
                    .await?;
                    Applied::MessageDeleted(Tombstone::new(*chat, *number, stored as u64, *at))
                } else {
                    Applied::NotFound
                });
            }
            Event::ChatDeleted(event::ChatDeleted { token, number, at }) => {
                let Some((app_id, chat_id)) = chats.get(&(token.as_str(), *number)) else {
                    outcomes[index] = Some(Applied::NotFound);
                    continue;
                };
                let deleted = sqlx::query(
                    "UPDATE chats SET deleted_at = ?, updated_at = ? WHERE id = ? AND deleted_at IS NULL",
                )
                .bind(naive(at))
                .bind(naive(at))
                .bind(chat_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                outcomes[index] = Some(if deleted == 1 {
                    let entry = changes.new_chats.entry(*app_id).or_insert((0, *at));
                    entry.0 -= 1;
                    entry.1 = entry.1.max(*at);
                    changes.forget.chats.push((*app_id, *number));
                    Applied::Deleted
                } else {
                    Applied::NotFound
                });
            }
            _ => {}
        }
    }
    Ok(())
}

/// Step 8: each chat's revision rises to the highest its changes took.
async fn raise_revisions(
    tx: &mut MySqlConnection,
    raised: &HashMap<i64, u64>,
) -> Result<(), BackendError> {
    for (chat_id, revision) in raised {
        sqlx::query("UPDATE chats SET revision = GREATEST(revision, ?) WHERE id = ?")
            .bind(*revision as i64)
            .bind(chat_id)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// Step 7 (step 6 is in `messages.rs`): each application's count grows by the chats this
/// batch created.
async fn add_chat_counts(
    tx: &mut MySqlConnection,
    new_chats: &NewChats,
) -> Result<(), BackendError> {
    for (app_id, (count, at)) in new_chats {
        sqlx::query("UPDATE applications SET chats_count = chats_count + ?, updated_at = GREATEST(updated_at, ?) WHERE id = ?")
            .bind(count)
            .bind(naive(at))
            .bind(app_id)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// After the commit, and only then, are these ids certain to exist: a rolled-back id could be
/// reused by another row.
fn remember_committed(ids: &IdCache, chats: ChatIds<'_>) {
    for ((token, number), (app_id, chat_id)) in chats {
        ids.remember_app(token, app_id);
        ids.remember_chat(app_id, number, chat_id);
    }
}

async fn stored_application(
    tx: &mut MySqlConnection,
    token: &str,
) -> Result<Applied, BackendError> {
    let row = sqlx::query_as(
        "SELECT CAST(token AS CHAR), name, chats_count, created_at, updated_at FROM applications \
         WHERE token = ? AND deleted_at IS NULL",
    )
    .bind(token)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(row.map_or(Applied::NotFound, |row| {
        Applied::Application(application(row))
    }))
}

/// The chat's (application id, chat id, whether it and its application are live).
/// `current`: a locking read (`LOCK IN SHARE MODE`), which sees the latest committed row
/// whatever this transaction's snapshot.
async fn existing_chat(
    tx: &mut MySqlConnection,
    token: &str,
    number: u64,
    current: bool,
) -> Result<Option<(i64, i64, bool)>, BackendError> {
    const FIND: &str = "SELECT c.application_id, c.id, \
           CAST(c.deleted_at IS NULL AND a.deleted_at IS NULL AS SIGNED) FROM chats c \
         JOIN applications a ON a.id = c.application_id WHERE a.token = ? AND c.number = ?";
    const FIND_LOCKED: &str = "SELECT c.application_id, c.id, \
           CAST(c.deleted_at IS NULL AND a.deleted_at IS NULL AS SIGNED) FROM chats c \
         JOIN applications a ON a.id = c.application_id WHERE a.token = ? AND c.number = ? \
         LOCK IN SHARE MODE";
    let row: Option<(i64, i64, i64)> = sqlx::query_as(if current { FIND_LOCKED } else { FIND })
        .bind(token)
        .bind(number as i64)
        .fetch_optional(&mut *tx)
        .await?;
    Ok(row.map(|(app_id, chat_id, live)| (app_id, chat_id, live != 0)))
}
