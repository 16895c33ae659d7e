//! Search for the embedded store: SQLite FTS5 with the trigram tokenizer.
//!
//! Every word of 3 or more characters becomes a quoted FTS5 string (so nothing the user types is
//! query syntax, `%` and `_` included); FTS5 finds the bodies that contain all of them, ranked by
//! bm25. Words shorter than 3 characters cannot use a trigram index: they are checked in Rust
//! over the candidates (or over the chat's messages when every word is short).

use async_trait::async_trait;

use super::sqlite::{message, message_row, MessageRow, SqliteStore};
use crate::domain::{Message, Page, SearchTerms, Token};
use crate::error::BackendError;
use crate::search::Search;

/// Trigram matching needs at least this many characters in a word.
const TRIGRAM: usize = 3;

const FTS_QUERY: &str = "SELECT m.number, m.body, m.created_at, m.updated_at \
     FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid \
     WHERE messages_fts MATCH ?1 AND messages_fts.rowid BETWEEN ?2 * 4294967296 AND ?2 * 4294967296 + 4294967295 \
       AND m.chat_id = ?2 \
     ORDER BY messages_fts.rank, m.number";

/// An FTS5 expression that matches the words literally: each one a quoted string, all required.
fn fts_expression(words: &[&String]) -> String {
    words
        .iter()
        .map(|word| format!("\"{}\"", word.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" AND ")
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
                inner.read(|conn| {
                    let (indexed, short): (Vec<&String>, Vec<&String>) = terms
                        .words()
                        .iter()
                        .partition(|word| word.chars().count() >= TRIGRAM);
                    let expression = fts_expression(&indexed);
                    if short.is_empty() {
                        return conn
                            .prepare_cached(&format!("{FTS_QUERY} LIMIT ?3 OFFSET ?4"))?
                            .query_map(
                                rusqlite::params![
                                    expression,
                                    chat_id,
                                    i64::from(page.limit),
                                    page.offset as i64
                                ],
                                message_row,
                            )?
                            .collect::<rusqlite::Result<Vec<MessageRow>>>();
                    }
                    // Short words: every candidate is checked in Rust, and pages are counted
                    // over the rows that match.
                    let mut statement = if indexed.is_empty() {
                        conn.prepare_cached(
                            "SELECT number, body, created_at, updated_at FROM messages \
                             WHERE chat_id = ?1 ORDER BY number",
                        )?
                    } else {
                        conn.prepare_cached(FTS_QUERY)?
                    };
                    let rows = if indexed.is_empty() {
                        statement.query_map([chat_id], message_row)?
                    } else {
                        statement.query_map(rusqlite::params![expression, chat_id], message_row)?
                    };
                    let mut found = Vec::new();
                    for row in rows {
                        let row = row?;
                        if terms.matches(&row.1) {
                            found.push(row);
                        }
                        if found.len() >= (page.offset + u64::from(page.limit)) as usize {
                            break;
                        }
                    }
                    Ok(found.into_iter().skip(page.offset as usize).collect())
                })
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
        let words = ["a\"b".to_owned(), "OR".to_owned(), "x*".to_owned()];
        let refs: Vec<&String> = words.iter().collect();
        assert_eq!(fts_expression(&refs), r#""a""b" AND "OR" AND "x*""#);
    }
}
