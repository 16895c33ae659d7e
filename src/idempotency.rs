//! `Idempotency-Key`: a create or update retried with the same key gets the first response and
//! creates nothing new (SPEC §2). A request *claims* its key before it runs; a racing retry waits
//! for the claim to complete and replays the stored response; a failed request releases its key
//! so that a retry can succeed. Responses are kept for 24 hours.
//!
//! - [`LocalIdempotency`]: claims in the process (the embedded shape has one process), responses
//!   in the store.
//! - [`RedisIdempotency`]: claims and responses in Redis (`SET NX`), shared by every API process.

use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::error::BackendError;
use crate::sequencer::HealingRedis;
use crate::store::Store;

/// How long a key is remembered.
pub const RETENTION: Duration = Duration::from_secs(24 * 60 * 60);
/// How long a retry waits for the original request to finish.
const WAIT: Duration = Duration::from_secs(15);

/// A completed response, and which request produced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    /// `METHOD path`: a key reused for another request is refused, not replayed.
    pub request: String,
    pub status: u16,
    pub body: String,
}

pub enum Claim {
    /// This request runs; it must `complete` or `release` the key.
    Owned,
    Replay(StoredResponse),
}

#[async_trait]
pub trait Idempotency: Send + Sync {
    async fn claim(&self, key: &str) -> Result<Claim, BackendError>;
    async fn complete(&self, key: &str, response: &StoredResponse) -> Result<(), BackendError>;
    async fn release(&self, key: &str);
}

fn gave_up() -> BackendError {
    BackendError::Unavailable(
        "the original request with this Idempotency-Key is still running".into(),
    )
}

pub struct LocalIdempotency {
    store: Arc<dyn Store>,
    in_flight: DashMap<String, ()>,
}

impl LocalIdempotency {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            in_flight: DashMap::new(),
        }
    }
}

#[async_trait]
impl Idempotency for LocalIdempotency {
    async fn claim(&self, key: &str) -> Result<Claim, BackendError> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(stored) = self.store.stored_response(key).await? {
                return Ok(Claim::Replay(stored));
            }
            if self.in_flight.insert(key.to_owned(), ()).is_none() {
                // The owner before us may have completed between the look-up and the insert.
                if let Some(stored) = self.store.stored_response(key).await? {
                    self.in_flight.remove(key);
                    return Ok(Claim::Replay(stored));
                }
                return Ok(Claim::Owned);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(gave_up());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn complete(&self, key: &str, response: &StoredResponse) -> Result<(), BackendError> {
        let saved = self.store.store_response(key, response).await;
        self.in_flight.remove(key);
        saved
    }

    async fn release(&self, key: &str) {
        self.in_flight.remove(key);
    }
}

pub struct RedisIdempotency {
    redis: HealingRedis,
    namespace: String,
}

const PENDING: &str = "pending";

impl RedisIdempotency {
    pub async fn connect(url: &str, namespace: &str) -> anyhow::Result<Self> {
        let redis = HealingRedis::connect(url).await?;
        Ok(Self {
            redis,
            namespace: namespace.to_owned(),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}idempotency:{key}", self.namespace)
    }
}

fn unavailable(err: redis::RedisError) -> BackendError {
    BackendError::Unavailable(format!("redis: {err}"))
}

#[async_trait]
impl Idempotency for RedisIdempotency {
    async fn claim(&self, key: &str) -> Result<Claim, BackendError> {
        let mut redis = self.redis.clone();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let claimed: Option<String> = redis::cmd("SET")
                .arg(self.key(key))
                .arg(PENDING)
                .arg("NX")
                .arg("EX")
                .arg(RETENTION.as_secs())
                .query_async(&mut redis)
                .await
                .map_err(unavailable)?;
            if claimed.is_some() {
                return Ok(Claim::Owned);
            }
            let current: Option<String> = redis::cmd("GET")
                .arg(self.key(key))
                .query_async(&mut redis)
                .await
                .map_err(unavailable)?;
            if let Some(stored) = current.as_deref().filter(|v| *v != PENDING) {
                let stored =
                    serde_json::from_str(stored).map_err(|err| BackendError::Other(err.into()))?;
                return Ok(Claim::Replay(stored));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(gave_up());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn complete(&self, key: &str, response: &StoredResponse) -> Result<(), BackendError> {
        let mut redis = self.redis.clone();
        let value =
            serde_json::to_string(response).map_err(|err| BackendError::Other(err.into()))?;
        redis::cmd("SET")
            .arg(self.key(key))
            .arg(value)
            .arg("EX")
            .arg(RETENTION.as_secs())
            .query_async::<()>(&mut redis)
            .await
            .map_err(unavailable)
    }

    async fn release(&self, key: &str) {
        let mut redis = self.redis.clone();
        let _ = redis::cmd("DEL")
            .arg(self.key(key))
            .query_async::<()>(&mut redis)
            .await;
    }
}
