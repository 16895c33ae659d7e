//! Search for the embedded store: SQLite FTS5 with the trigram tokenizer, in `search.db`.
//!
//! Every word of 3 or more characters becomes a quoted FTS5 string (so nothing the user types is
//! query syntax, `%` and `_` included); FTS5 finds the bodies that contain all of them, ranked by
//! bm25. Words shorter than 3 characters cannot use a trigram index: they are checked in Rust
//! over the candidates (or over the chat's messages when every word is short).
//!
//! When the chat has messages the indexer has not reached yet (`sqlite_index.rs`), a search
//! first waits for the indexer to catch up (a round, milliseconds; at most a second). Whatever is
//! still pending then is matched in Rust and follows the ranked matches. In one read transaction the pending messages are read first and the index
//! second, and a pending message is never taken from the index (its indexed body may be an older
//! one): a message moving from pending to indexed meanwhile is found exactly once.

use std::collections::HashSet;

use async_trait::async_trait;
use rusqlite::{params, Connection};

use super::sqlite::{message, MessageRow, SqliteStore};
use crate::domain::{Message, Page, SearchTerms, Token};
use crate::error::BackendError;
use crate::search::Search;

/// Trigram matching needs at least this many characters in a word.
const TRIGRAM: usize = 3;

/// A chat's messages occupy the row ids `chat_id * 2^32 ..= chat_id * 2^32 + 2^32 - 1`.
const FTS_QUERY: &str = "SELECT m.id, m.number, m.body, m.created_at, m.updated_at \
     FROM search.messages_fts f JOIN messages m ON m.id = f.rowid \
     WHERE f.messages_fts MATCH ?1 \
       AND f.rowid BETWEEN ?2 * 4294967296 AND ?2 * 4294967296 + 4294967295 \
     ORDER BY f.rank, m.number";

const PENDING_QUERY: &str = "SELECT m.id, m.number, m.body, m.created_at, m.updated_at \
     FROM messages m WHERE m.id IN (SELECT id FROM fts_pending \
       WHERE id BETWEEN ?1 * 4294967296 AND ?1 * 4294967296 + 4294967295) \
     ORDER BY m.id";

const CHAT_QUERY: &str = "SELECT m.id, m.number, m.body, m.created_at, m.updated_at \
     FROM messages m WHERE m.id BETWEEN ?1 * 4294967296 AND ?1 * 4294967296 + 4294967295 \
     ORDER BY m.id";

/// An FTS5 expression that matches the words literally: each one a quoted string, all required.
fn fts_expression(words: &[&str]) -> String {
    words
        .iter()
        .map(|word| format!("\"{}\"", word.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" AND ")
}

fn id_and_row(row: &rusqlite::Row) -> rusqlite::Result<(i64, MessageRow)> {
    Ok((
        row.get(0)?,
        (row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?),
    ))
}

fn has_pending(conn: &Connection, chat_id: i64) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM fts_pending \
         WHERE id BETWEEN ?1 * 4294967296 AND ?1 * 4294967296 + 4294967295)",
    )?
    .query_row([chat_id], |row| row.get(0))
}

/// One page of the chat's matches: ranked index matches first, then pending ones by number.
fn search_chat(
    conn: &Connection,
    chat_id: i64,
    terms: &SearchTerms,
    page: Page,
) -> rusqlite::Result<Vec<MessageRow>> {
    let wanted = page.offset as usize + page.limit as usize;
    // Short words (and words holding a NUL) are checked in Rust over the candidates.
    let (indexed, check) = terms.lookups(TRIGRAM);
    let tx = conn.unchecked_transaction()?;
    let mut found: Vec<MessageRow> = Vec::with_capacity(wanted.min(1024));
    if indexed.is_empty() {
        // Every word is short: the chat's messages, pending or not, checked one by one.
        let mut statement = tx.prepare_cached(CHAT_QUERY)?;
        for row in statement.query_map([chat_id], id_and_row)? {
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
            .query_map([chat_id], id_and_row)?
            .collect::<rusqlite::Result<_>>()?;
        let pending_ids: HashSet<i64> = pending.iter().map(|(id, _)| *id).collect();
        let mut statement = tx.prepare_cached(FTS_QUERY)?;
        for row in statement.query_map(params![fts_expression(&indexed), chat_id], id_and_row)? {
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

#[async_trait]
impl Search for SqliteStore {
    async fn search(
        &self,
        token: &Token,
        chat: u64,
        terms: &SearchTerms,
        page: Page,
    ) -> Result<Option<Vec<Message>>, BackendError> {
        let Some(chat_id) = self.inner.chat_id(token.as_str(), chat)? else {
            return Ok(None);
        };
        let terms = terms.clone();
        let rows = self
            .blocking(move |inner| {
                // Fresh messages of this chat not indexed yet: let the indexer catch up first, so
                // they are ranked like the others (it takes a round, milliseconds).
                if inner.read(|conn| has_pending(conn, chat_id))? {
                    inner.progress.wait_caught_up();
                }
                inner.read(|conn| search_chat(conn, chat_id, &terms, page))
            })
            .await?;
        Ok(Some(
            rows.into_iter().map(|row| message(chat, row)).collect(),
        ))
    }
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
