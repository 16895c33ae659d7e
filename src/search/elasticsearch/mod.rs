//! The search port on Elasticsearch (scaled shape): workers index messages through `_bulk`, the
//! API searches one chat with a query built in [`bodies`]
//! (how substring matching works is explained there).
//!
//! Failure policy: anything that says "the cluster cannot take this now" (no connection, a
//! timeout, 429, 5xx, or a bulk item rejected with 429/5xx) is [`BackendError::Unavailable`]. A
//! search answers 503 at once; indexing retries with backoff for up to `max_wait` and then gives
//! up with `Unavailable`, so the worker does not commit its offsets and the events come back.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde::Deserialize;

mod bodies;

use crate::domain::{Message, Page, SearchTerms, Token};
use crate::error::BackendError;
pub use crate::search::IndexOp;
use crate::search::{ChatDirectory, Indexer, Search};
pub use bodies::{added_fields, bulk_body, delete_all_body, query_body, settings_and_mapping};

/// First pause between bulk attempts; doubled after each failed attempt.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause between bulk attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long `index` keeps retrying by default before handing the batch back.
const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(60);
/// Elasticsearch refuses `from + size` beyond `index.max_result_window` (default 10 000).
const MAX_RESULT_WINDOW: u64 = 10_000;
/// Longest error text from the cluster kept in a log line or an error.
const ERROR_TEXT_LIMIT: usize = 500;

pub struct Elasticsearch {
    client: reqwest::Client,
    /// Without a trailing slash.
    base_url: String,
    index: String,
    /// Only used to tell "no such chat" (404) from "no match" (empty list).
    chats: Box<dyn ChatDirectory>,
    /// How long [`Elasticsearch::index`] retries an unavailable cluster before giving up.
    pub max_wait: Duration,
}

impl Elasticsearch {
    pub fn new(
        base_url: &str,
        index: &str,
        chats: impl ChatDirectory + 'static,
    ) -> anyhow::Result<Self> {
        let url = url::Url::parse(base_url)
            .with_context(|| format!("ELASTICSEARCH_URL {base_url:?} is not a URL"))?;
        match url.scheme() {
            "http" => {}
            // reqwest is built without a TLS backend (no OpenSSL, no rustls in the tree).
            "https" => anyhow::bail!(
                "ELASTICSEARCH_URL {base_url:?}: this build has no TLS support; use an http:// \
                 URL (or a TLS-terminating proxy), or enable a TLS feature of reqwest"
            ),
            other => anyhow::bail!(
                "ELASTICSEARCH_URL {base_url:?} has scheme {other:?}; expected http://host:9200"
            ),
        }
        let valid_index = !index.is_empty()
            && index.len() <= 255
            && !index.starts_with(['-', '_', '+', '.'])
            && index
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
        anyhow::ensure!(
            valid_index,
            "index name {index:?} must be lowercase letters, digits, '-', '_' or '.'"
        );
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .context("cannot build the HTTP client for Elasticsearch")?;
        Ok(Self {
            client,
            base_url: base_url.trim_end_matches('/').to_owned(),
            index: index.to_owned(),
            chats: Box::new(chats),
            max_wait: DEFAULT_MAX_WAIT,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{}{path}", self.base_url, self.index)
    }

    /// Creates the index with its settings and mapping unless it exists. An existing index is
    /// left as it is (its mapping is not compared).
    pub async fn ensure_index(&self) -> Result<(), BackendError> {
        let response = send(self.client.put(self.url("")).json(&settings_and_mapping())).await?;
        if response.status().is_success() {
            tracing::info!(index = %self.index, "created the search index");
            return Ok(());
        }
        let status = response.status();
        let text = error_text(response).await;
        // Another worker may have created it first; that is the state we wanted, once the
        // fields added since (an index of an earlier version) are in its mapping.
        if status == StatusCode::BAD_REQUEST && text.contains("resource_already_exists_exception") {
            let response =
                send(self.client.put(self.url("/_mapping")).json(&added_fields())).await?;
            check(response).await?;
            return Ok(());
        }
        Err(anyhow!("creating index {} failed with {status}: {text}", self.index).into())
    }

    /// Indexes a batch through `_bulk`, retrying what the cluster could not take (with backoff
    /// from 100 ms to 5 s) until it is all in or `max_wait` is spent (then `Unavailable`).
    /// Operations rejected for good (a 4xx other than 429) are logged and reported as `Other`
    /// once everything else is in.
    pub async fn index(&self, docs: &[IndexOp]) -> Result<(), BackendError> {
        match self.index_counting_refused(docs).await? {
            0 => Ok(()),
            rejected => {
                Err(anyhow!("elasticsearch rejected {rejected} operations (logged)").into())
            }
        }
    }

    /// [`Self::index`], answering how many operations were rejected for good instead of
    /// failing on them.
    async fn index_counting_refused(&self, docs: &[IndexOp]) -> Result<usize, BackendError> {
        // In order: the bulk operations before a `DeleteAll`, then it, then the rest.
        let mut rejected = 0;
        let mut rest = docs;
        while let Some(at) = rest
            .iter()
            .position(|op| matches!(op, IndexOp::DeleteAll { .. }))
        {
            rejected += self.bulk_with_retries(&rest[..at]).await?;
            if let IndexOp::DeleteAll { token, chat } = &rest[at] {
                self.delete_all(token, *chat).await?;
            }
            rest = &rest[at + 1..];
        }
        Ok(rejected + self.bulk_with_retries(rest).await?)
    }

    /// Deletes every document of an application or a chat, retrying like a bulk request.
    async fn delete_all(&self, token: &Token, chat: Option<u64>) -> Result<(), BackendError> {
        let started = Instant::now();
        let mut delay = MIN_BACKOFF;
        loop {
            let sent = send(
                self.client
                    .post(self.url("/_delete_by_query?conflicts=proceed&refresh=true"))
                    .json(&delete_all_body(token, chat)),
            )
            .await;
            let reason = match sent {
                Ok(response) => match check(response).await {
                    Ok(_) => return Ok(()),
                    Err(BackendError::Unavailable(reason)) => reason,
                    Err(other) => return Err(other),
                },
                Err(BackendError::Unavailable(reason)) => reason,
                Err(other) => return Err(other),
            };
            if started.elapsed() + delay > self.max_wait {
                return Err(BackendError::Unavailable(format!(
                    "elasticsearch did not delete the documents of {token}:{chat:?} within {:?}: {reason}",
                    self.max_wait
                )));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_BACKOFF);
        }
    }

    /// Sends bulk operations until the cluster took them all (or refused some for good).
    async fn bulk_with_retries(&self, docs: &[IndexOp]) -> Result<usize, BackendError> {
        if docs.is_empty() {
            return Ok(0);
        }
        let started = Instant::now();
        let mut delay = MIN_BACKOFF;
        let mut pending: Vec<IndexOp> = docs.to_vec();
        let mut rejected = 0usize;
        while !pending.is_empty() {
            let reason = match self.bulk_once(&pending).await {
                Ok(outcome) => {
                    rejected += outcome.rejected;
                    pending = outcome
                        .retry
                        .into_iter()
                        .filter_map(|i| pending.get(i).cloned())
                        .collect();
                    if pending.is_empty() {
                        break;
                    }
                    format!("{} operations were refused for now", pending.len())
                }
                Err(BackendError::Unavailable(reason)) => reason,
                Err(other) => return Err(other),
            };
            if started.elapsed() + delay > self.max_wait {
                return Err(BackendError::Unavailable(format!(
                    "elasticsearch did not take {} operations within {:?}: {reason}",
                    pending.len(),
                    self.max_wait
                )));
            }
            tracing::warn!(reason = %reason, retry_in = ?delay, "indexing retries");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_BACKOFF);
        }
        Ok(rejected)
    }

    /// One `_bulk` request: which operations to send again, and how many failed for good.
    async fn bulk_once(&self, ops: &[IndexOp]) -> Result<BulkOutcome, BackendError> {
        let response = send(
            self.client
                .post(self.url("/_bulk"))
                .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
                .body(bulk_body(ops)),
        )
        .await?;
        let response = check(response).await?;
        let reply: BulkReply = response.json().await.context("unreadable _bulk response")?;
        let mut outcome = BulkOutcome::default();
        if !reply.errors {
            return Ok(outcome);
        }
        // Items come back in request order, one single-key object (the action) per operation.
        for (i, item) in reply.items.iter().enumerate() {
            let Some((action, result)) = item.iter().next() else {
                continue;
            };
            let status = result.status;
            // Deleting what is not there (deleted before, or never indexed) leaves what we want.
            if (200..300).contains(&status) || (action == "delete" && status == 404) {
                continue;
            }
            if retryable(status) {
                outcome.retry.push(i);
                continue;
            }
            tracing::error!(
                id = result.id.as_deref().unwrap_or(""),
                status,
                error = %result.error.as_ref().map(ToString::to_string).unwrap_or_default(),
                "elasticsearch rejected an operation"
            );
            outcome.rejected += 1;
        }
        Ok(outcome)
    }

    /// Whether the cluster answers at all.
    pub async fn ping(&self) -> bool {
        let request = self
            .client
            .get(format!("{}/", self.base_url))
            .timeout(Duration::from_secs(2));
        matches!(request.send().await, Ok(response) if response.status().is_success())
    }
}

#[async_trait]
impl Indexer for Elasticsearch {
    async fn ensure_index(&self) -> Result<(), BackendError> {
        Elasticsearch::ensure_index(self).await
    }

    async fn index(&self, ops: &[IndexOp]) -> Result<usize, BackendError> {
        self.index_counting_refused(ops).await
    }
}

#[async_trait]
impl Search for Elasticsearch {
    async fn ready(&self) -> bool {
        self.ping().await
    }

    async fn search(
        &self,
        token: &Token,
        chat: u64,
        terms: &SearchTerms,
        page: Page,
    ) -> Result<Option<Vec<Message>>, BackendError> {
        if !self.chats.chat_exists(token, chat).await? {
            return Ok(None);
        }
        // Past the result window Elasticsearch answers 400; such a page is answered empty.
        if page.offset.saturating_add(u64::from(page.limit)) > MAX_RESULT_WINDOW {
            return Ok(Some(Vec::new()));
        }
        let response = send(
            self.client
                .post(self.url("/_search"))
                .json(&query_body(token, chat, terms, page)),
        )
        .await?;
        let reply: SearchReply = check(response)
            .await?
            .json()
            .await
            .context("unreadable _search response")?;
        Ok(Some(
            reply
                .hits
                .hits
                .into_iter()
                .map(|hit| hit.source.into_message(chat))
                .collect(),
        ))
    }
}

/// 429 (too many requests, a full write queue) and 5xx pass; everything else will not.
fn retryable(status: u16) -> bool {
    status == 429 || status >= 500
}

/// Sends a request; not reaching the cluster at all is `Unavailable`.
async fn send(request: RequestBuilder) -> Result<Response, BackendError> {
    request
        .send()
        .await
        .map_err(|err| BackendError::Unavailable(format!("elasticsearch: {err}")))
}

/// Turns a non-2xx answer into an error: `Unavailable` when retrying can help, `Other` if not.
async fn check(response: Response) -> Result<Response, BackendError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let text = error_text(response).await;
    if retryable(status.as_u16()) {
        return Err(BackendError::Unavailable(format!(
            "elasticsearch answered {status}: {text}"
        )));
    }
    Err(anyhow!("elasticsearch answered {status}: {text}").into())
}

async fn error_text(response: Response) -> String {
    let mut text = response.text().await.unwrap_or_default();
    if let Some((cut, _)) = text.char_indices().nth(ERROR_TEXT_LIMIT) {
        text.truncate(cut);
    }
    text
}

#[derive(Debug, Default)]
struct BulkOutcome {
    /// Positions in the request of the operations to send again.
    retry: Vec<usize>,
    rejected: usize,
}

#[derive(Deserialize)]
struct BulkReply {
    errors: bool,
    #[serde(default)]
    items: Vec<std::collections::HashMap<String, BulkItem>>,
}

#[derive(Deserialize)]
struct BulkItem {
    #[serde(rename = "_id")]
    id: Option<String>,
    status: u16,
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct SearchReply {
    hits: Hits,
}

#[derive(Deserialize)]
struct Hits {
    hits: Vec<Hit>,
}

#[derive(Deserialize)]
struct Hit {
    #[serde(rename = "_source")]
    source: Source,
}

#[derive(Deserialize)]
struct Source {
    number: u64,
    body: String,
    /// Missing only on a document upserted by an edit before its creation arrived.
    created_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
    /// Missing on documents indexed before revisions existed.
    #[serde(default)]
    revision: u64,
}

impl Source {
    fn into_message(self, chat: u64) -> Message {
        let created_at = self.created_at.unwrap_or(self.updated_at);
        Message::new(
            chat,
            self.number,
            self.body,
            self.revision,
            created_at,
            self.updated_at,
        )
    }
}
