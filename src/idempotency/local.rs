//! Idempotency for the embedded shape: claims in a map of the process (one process serves a data
//! directory), completed responses in a [`ResponseStore`] so that they survive a restart.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;

use super::{gave_up, Claim, Idempotency, ResponseStore, StoredResponse, WAIT};
use crate::error::BackendError;

pub struct LocalIdempotency {
    responses: Arc<dyn ResponseStore>,
    in_flight: DashMap<String, ()>,
}

impl LocalIdempotency {
    pub fn new(responses: Arc<dyn ResponseStore>) -> Self {
        Self {
            responses,
            in_flight: DashMap::new(),
        }
    }
}

#[async_trait]
impl Idempotency for LocalIdempotency {
    async fn claim(&self, key: &str) -> Result<Claim, BackendError> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(stored) = self.responses.stored_response(key).await? {
                return Ok(Claim::Replay(stored));
            }
            if self.in_flight.insert(key.to_owned(), ()).is_none() {
                // The owner before us may have completed between the look-up and the insert.
                if let Some(stored) = self.responses.stored_response(key).await? {
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
        let saved = self.responses.store_response(key, response).await;
        self.in_flight.remove(key);
        saved
    }

    async fn release(&self, key: &str) {
        self.in_flight.remove(key);
    }
}
