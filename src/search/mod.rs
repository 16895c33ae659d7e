//! The search port. SQL stores implement it themselves (SQLite with FTS5 in
//! `store::sqlite_search`); search engines get their own adapter here.

pub mod elasticsearch;
mod elasticsearch_bodies;

use async_trait::async_trait;

use crate::domain::{Message, Page, SearchTerms, Token};
use crate::error::BackendError;

/// The search port: the messages of one chat that contain every word of the terms,
/// most relevant first, then by number. `Ok(None)` when the chat does not exist.
#[async_trait]
pub trait Search: Send + Sync {
    async fn search(
        &self,
        token: &Token,
        chat: u64,
        terms: &SearchTerms,
        page: Page,
    ) -> Result<Option<Vec<Message>>, BackendError>;

    /// Whether the search backend answers (the SQL stores are checked as stores).
    async fn ready(&self) -> bool {
        true
    }
}
