//! Rows as MySQL returns them, turned into domain values, and times turned into columns.
//!
//! MySQL's `DATETIME(6)` has no time zone: every time is stored and read as UTC.

use chrono::{DateTime, NaiveDateTime, Utc};

use crate::domain::{Application, Change, Chat, Message, Tombstone};

/// (token, name, chats_count, created_at, updated_at)
pub(super) type ApplicationRow = (String, String, i64, NaiveDateTime, NaiveDateTime);
/// (number, messages_count, created_at, updated_at, revision)
pub(super) type ChatRow = (i64, i64, NaiveDateTime, NaiveDateTime, i64);
/// (number, body, created_at, updated_at, revision)
pub(super) type MessageRow = (i64, String, NaiveDateTime, NaiveDateTime, i64);
/// A message row, then `deleted_at` (a tombstone when set).
pub(super) type ChangeRow = (
    i64,
    String,
    NaiveDateTime,
    NaiveDateTime,
    i64,
    Option<NaiveDateTime>,
);

/// A time as a column value.
pub(super) fn naive(at: &DateTime<Utc>) -> NaiveDateTime {
    at.naive_utc()
}

pub(super) fn application(row: ApplicationRow) -> Application {
    let (token, name, chats_count, created_at, updated_at) = row;
    Application {
        token,
        name,
        chats_count: chats_count as u64,
        created_at: created_at.and_utc(),
        updated_at: updated_at.and_utc(),
    }
}

pub(super) fn chat(row: ChatRow) -> Chat {
    let (number, messages_count, created_at, updated_at, revision) = row;
    Chat::new(
        number as u64,
        messages_count as u64,
        revision as u64,
        created_at.and_utc(),
        updated_at.and_utc(),
    )
}

pub(super) fn message(chat: u64, row: MessageRow) -> Message {
    let (number, body, created_at, updated_at, revision) = row;
    Message::new(
        chat,
        number as u64,
        body,
        revision as u64,
        created_at.and_utc(),
        updated_at.and_utc(),
    )
}

pub(super) fn change(chat: u64, row: ChangeRow) -> Change {
    let (number, body, created_at, updated_at, revision, deleted_at) = row;
    match deleted_at {
        Some(at) => Change::Deleted(Tombstone::new(
            chat,
            number as u64,
            revision as u64,
            at.and_utc(),
        )),
        None => Change::Message(message(
            chat,
            (number, body, created_at, updated_at, revision),
        )),
    }
}
