//! Search for the MySQL store, until a search engine takes over: a scan of one chat's messages
//! through its `(chat_id, number)` index, every word a `LIKE '%…%'` with `%`, `_` and `\` escaped
//! (the body's `_ci` collation makes it case-insensitive), ranked in Rust.

use super::conn::Inner;
use super::rows::{message, MessageRow};
use crate::domain::{Message, Page, SearchTerms};
use crate::error::BackendError;

/// A LIKE pattern that matches `word` literally anywhere.
fn contains_pattern(word: &str) -> String {
    let mut pattern = String::with_capacity(word.len() + 2);
    pattern.push('%');
    for c in word.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// One page of the matches among the messages of the chat whose id is `chat_id` (its number
/// is `chat`), best first.
pub(super) async fn search(
    inner: &Inner,
    chat_id: i64,
    chat: u64,
    terms: &SearchTerms,
    page: Page,
) -> Result<Vec<Message>, BackendError> {
    let mut query = sqlx::QueryBuilder::new(
        "SELECT number, body, created_at, updated_at, revision FROM messages \
         WHERE deleted_at IS NULL AND chat_id = ",
    );
    query.push_bind(chat_id);
    for word in terms.words() {
        query
            .push(" AND body LIKE ")
            .push_bind(contains_pattern(word))
            .push(" ESCAPE '\\\\'");
    }
    let rows: Vec<MessageRow> = query.build_query_as().fetch_all(&inner.pool).await?;
    // The collation's notion of case may differ from Unicode's; Rust has the last word.
    let mut found: Vec<(f64, Message)> = rows
        .into_iter()
        .filter(|(_, body, _, _, _)| terms.matches(body))
        .map(|row| (terms.score(&row.1), message(chat, row)))
        .collect();
    found.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.number.cmp(&b.1.number)));
    Ok(found
        .into_iter()
        .skip(page.offset as usize)
        .take(page.limit as usize)
        .map(|(_, message)| message)
        .collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(super::contains_pattern(r"50%_a\b"), r"%50\%\_a\\b%");
    }
}
