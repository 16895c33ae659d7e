//! Search for the embedded store: SQLite FTS5 with the trigram tokenizer, in `search.db`.
//!
//! Every word of 3 or more characters becomes a quoted FTS5 string (so nothing the user types is
//! query syntax, `%` and `_` included); FTS5 finds the bodies that contain all of them, ranked by
//! bm25. Words shorter than 3 characters cannot use a trigram index: they are checked in Rust
//! over the candidates (or over the chat's messages when every word is short).
//!
//! When the chat has messages the indexer has not reached yet (`index.rs`), a search
//! first waits for the indexer to catch up (a round, milliseconds; at most a second). Whatever is
//! still pending then is matched in Rust and follows the ranked matches. In one read transaction the pending messages are read first and the index
//! second, and a pending message is never taken from the index (its indexed body may be an older
//! one): a message moving from pending to indexed meanwhile is found exactly once.

use std::collections::HashSet;

use rusqlite::{params, Connection};

use super::conn::Inner;
use super::index::Progress;
use super::rows::{chat_rows, message_row_at, MessageRow};
use crate::domain::{Page, SearchTerms};
use crate::error::BackendError;

/// Trigram matching needs at least this many characters in a word.
const TRIGRAM: usize = 3;

// A chat's messages are the row ids `?1 ..= ?2` (`rows::chat_rows`); the FTS query's
// expression is `?3`.
const FTS_QUERY: &str = "SELECT m.id, m.number, m.body, m.created_at, m.updated_at, m.revision \
     FROM search.messages_fts f JOIN messages m ON m.id = f.rowid \
     WHERE f.messages_fts MATCH ?3 AND f.rowid BETWEEN ?1 AND ?2 AND m.deleted_at IS NULL \
     ORDER BY f.rank, m.number";

const PENDING_QUERY: &str =
    "SELECT m.id, m.number, m.body, m.created_at, m.updated_at, m.revision \
     FROM messages m WHERE m.id IN (SELECT id FROM fts_pending \
       WHERE id BETWEEN ?1 AND ?2) AND m.deleted_at IS NULL ORDER BY m.id";

const CHAT_QUERY: &str = "SELECT m.id, m.number, m.body, m.created_at, m.updated_at, m.revision \
     FROM messages m WHERE m.id BETWEEN ?1 AND ?2 AND m.deleted_at IS NULL ORDER BY m.id";

/// An FTS5 expression that matches the words literally: each one a quoted string, all required.
fn fts_expression(words: &[&str]) -> String {
    words
        .iter()
        .map(|word| format!("\"{}\"", word.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" AND ")
}

fn id_and_row(row: &rusqlite::Row) -> rusqlite::Result<(i64, MessageRow)> {
    Ok((row.get(0)?, message_row_at(row, 1)?))
}

fn has_pending(conn: &Connection, chat_id: i64) -> rusqlite::Result<bool> {
    let (first, last) = chat_rows(chat_id);
    conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM fts_pending WHERE id BETWEEN ?1 AND ?2)")?
        .query_row([first, last], |row| row.get(0))
}

/// One page of the chat's matches: ranked index matches first, then pending ones by number.
fn search_chat(
    conn: &Connection,
    chat_id: i64,
    terms: &SearchTerms,
    page: Page,
) -> rusqlite::Result<Vec<MessageRow>> {
    let wanted = page.offset as usize + page.limit as usize;
    let (first, last) = chat_rows(chat_id);
    // Short words (and words holding a NUL) are checked in Rust over the candidates.
    let (indexed, check) = terms.lookups(TRIGRAM);
    let tx = conn.unchecked_transaction()?;
    let mut found: Vec<MessageRow> = Vec::with_capacity(wanted.min(1024));
    if indexed.is_empty() {
        // Every word is short: the chat's messages, pending or not, checked one by one.
        let mut statement = tx.prepare_cached(CHAT_QUERY)?;
        for row in statement.query_map([first, last], id_and_row)? {
            let (_, row) = row?;
            if terms.matches(&row.1) {
                found.push(row);
                if found.len() >= wanted {
                    break;
                }
            }
        }
    } else {
        let pending: Vec<(i64, MessageRow)> = tx
            .prepare_cached(PENDING_QUERY)?
            .query_map([first, last], id_and_row)?
            .collect::<rusqlite::Result<_>>()?;
        let pending_ids: HashSet<i64> = pending.iter().map(|(id, _)| *id).collect();
        let mut statement = tx.prepare_cached(FTS_QUERY)?;
        for row in
            statement.query_map(params![first, last, fts_expression(&indexed)], id_and_row)?
        {
            let (id, row) = row?;
            if pending_ids.contains(&id) || (check && !terms.matches(&row.1)) {
                continue;
            }
            found.push(row);
            if found.len() >= wanted {
                break;
            }
        }
        found.extend(
            pending
                .into_iter()
                .map(|(_, row)| row)
                .filter(|row| terms.matches(&row.1))
                .take(wanted.saturating_sub(found.len())),
        );
    }
    tx.commit()?;
    Ok(found.into_iter().skip(page.offset as usize).collect())
}

/// One page of a chat's matches. When the chat has messages not indexed yet, it lets the
/// indexer catch up first, so that they are ranked like the others (a round, milliseconds).
/// Call from the blocking pool: it may wait for the indexer.
pub(super) fn search(
    inner: &Inner,
    progress: &Progress,
    chat_id: i64,
    terms: &SearchTerms,
    page: Page,
) -> Result<Vec<MessageRow>, BackendError> {
    if inner.read(|conn| has_pending(conn, chat_id))? {
        progress.wait_caught_up();
    }
    inner.read(|conn| search_chat(conn, chat_id, terms, page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_every_word_and_doubles_inner_quotes() {
        let words = ["a\"b", "OR", "x*"];
        assert_eq!(fts_expression(&words), r#""a""b" AND "OR" AND "x*""#);
    }
}
