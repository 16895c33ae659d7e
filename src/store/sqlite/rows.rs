//! Rows as SQLite returns them, turned into domain values, and the row-id encoding of messages.
//!
//! The encoding lives here and only here (migration 0003): a message's row id is its chat's id
//! in the high 32 bits and its number in the low 32, so one chat's messages are one contiguous
//! row-id range, read in number order without an index of their own. Rust code asks
//! [`message_row_id`] and [`chat_rows`]; SQL that needs the range per row (whole-table work)
//! gets it from [`chat_rows_sql`], built from [`ROWS_PER_CHAT`].

use chrono::{DateTime, Utc};
use rusqlite::Row;

use crate::domain::{Application, Change, Chat, Message, Tombstone};
use crate::error::BackendError;

/// Row ids per chat: 2^32, one per possible message number.
const ROWS_PER_CHAT: i64 = 4294967296;
const _: () = assert!(ROWS_PER_CHAT == 1 << 32);

/// (number, body, created_at, updated_at, revision)
pub(super) type MessageRow = (i64, String, i64, i64, i64);
/// (token, name, chats_count, created_at, updated_at)
pub(super) type ApplicationRow = (String, String, i64, i64, i64);
/// (number, messages_count, created_at, updated_at, revision)
pub(super) type ChatRow = (i64, i64, i64, i64, i64);

/// The row id of message `number` of the chat whose row id is `chat_id`; an error beyond the
/// encoding's limits (a chat id above 2^31, a number above 2^32).
pub(super) fn message_row_id(chat_id: i64, number: u64) -> Result<i64, BackendError> {
    if number >= 1 << 32 || chat_id >= 1 << 31 {
        return Err(BackendError::Other(anyhow::anyhow!(
            "chat {chat_id} or message number {number} is beyond the embedded store's limits"
        )));
    }
    Ok((chat_id << 32) | number as i64)
}

/// The row ids a chat's messages can have: first and last, inclusive.
pub(super) fn chat_rows(chat_id: i64) -> (i64, i64) {
    (chat_id << 32, (chat_id << 32) | (ROWS_PER_CHAT - 1))
}

/// SQL that is true when the message row id `row` belongs to the chat whose id is `chat` (two
/// column names or expressions): `chat_rows` for SQL that compares row by row.
pub(super) fn chat_rows_sql(row: &str, chat: &str) -> String {
    format!(
        "{row} BETWEEN {chat} * {ROWS_PER_CHAT} AND {chat} * {ROWS_PER_CHAT} + {}",
        ROWS_PER_CHAT - 1
    )
}

pub(super) fn time(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

pub(super) fn application_row(row: &Row) -> rusqlite::Result<ApplicationRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

pub(super) fn chat_row(row: &Row) -> rusqlite::Result<ChatRow> {
    chat_row_at(row, 0)
}

/// A chat's columns (number, count, created, updated, revision) starting at column `first`.
pub(super) fn chat_row_at(row: &Row, first: usize) -> rusqlite::Result<ChatRow> {
    Ok((
        row.get(first)?,
        row.get(first + 1)?,
        row.get(first + 2)?,
        row.get(first + 3)?,
        row.get(first + 4)?,
    ))
}

pub(super) fn message_row(row: &Row) -> rusqlite::Result<MessageRow> {
    message_row_at(row, 0)
}

/// A message's columns (as [`MessageRow`]) starting at column `first`.
pub(super) fn message_row_at(row: &Row, first: usize) -> rusqlite::Result<MessageRow> {
    Ok((
        row.get(first)?,
        row.get(first + 1)?,
        row.get(first + 2)?,
        row.get(first + 3)?,
        row.get(first + 4)?,
    ))
}

/// A message or its tombstone: the columns of [`MessageRow`], then `deleted_at`.
pub(super) fn change_row(row: &Row) -> rusqlite::Result<(MessageRow, Option<i64>)> {
    Ok((message_row(row)?, row.get(5)?))
}

pub(super) fn change(chat: u64, (row, deleted_at): (MessageRow, Option<i64>)) -> Change {
    match deleted_at {
        Some(at) => Change::Deleted(Tombstone::new(chat, row.0 as u64, row.4 as u64, time(at))),
        None => Change::Message(message(chat, row)),
    }
}

pub(super) fn application(row: ApplicationRow) -> Application {
    let (token, name, chats_count, created_at, updated_at) = row;
    Application {
        token,
        name,
        chats_count: chats_count as u64,
        created_at: time(created_at),
        updated_at: time(updated_at),
    }
}

pub(super) fn chat(row: ChatRow) -> Chat {
    let (number, messages_count, created_at, updated_at, revision) = row;
    Chat::new(
        number as u64,
        messages_count as u64,
        revision as u64,
        time(created_at),
        time(updated_at),
    )
}

pub(super) fn message(chat: u64, row: MessageRow) -> Message {
    let (number, body, created_at, updated_at, revision) = row;
    Message::new(
        chat,
        number as u64,
        body,
        revision as u64,
        time(created_at),
        time(updated_at),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chats_messages_are_one_row_id_range() {
        let (first, last) = chat_rows(3);
        assert_eq!(message_row_id(3, 0).ok(), Some(first));
        assert_eq!(message_row_id(3, u32::MAX.into()).ok(), Some(last));
        assert_eq!(chat_rows(4).0, last + 1);
        assert!(message_row_id(3, 1 << 32).is_err());
    }
}
