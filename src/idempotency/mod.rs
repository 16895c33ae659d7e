//! `Idempotency-Key`: a create or update retried with the same key gets the first response and
//! creates nothing new (SPEC §2). A request *claims* its key before it runs; a racing retry waits
//! for the claim to complete and replays the stored response; a failed request releases its key
//! so that a retry can succeed. Responses are kept for 24 hours.
//!
//! - [`LocalIdempotency`] (`local.rs`): claims in the process (the embedded shape has one
//!   process), responses in a [`ResponseStore`] (the SQL stores implement it, so a response is
//!   kept beside the rows its request created).
//! - [`RedisIdempotency`] (`redis.rs`): claims and responses in Redis (`SET NX`), shared by every
//!   API process.

mod local;
mod redis;

pub use self::local::LocalIdempotency;
pub use self::redis::RedisIdempotency;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::BackendError;

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

/// Where [`LocalIdempotency`] keeps completed responses: a small port of its own, so that the
/// idempotency adapters need no store and the [`crate::store::Store`] trait carries rows only.
#[async_trait]
pub trait ResponseStore: Send + Sync {
    /// The response stored for an `Idempotency-Key` (younger than [`RETENTION`]), if any.
    async fn stored_response(&self, key: &str) -> Result<Option<StoredResponse>, BackendError>;

    /// Stores the response of a request that carried an `Idempotency-Key`, and forgets old ones.
    async fn store_response(
        &self,
        key: &str,
        response: &StoredResponse,
    ) -> Result<(), BackendError>;
}
