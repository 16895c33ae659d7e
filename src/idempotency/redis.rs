//! Idempotency for the scaled shape: claims and responses in Redis, shared by every API process.
//! A claim is a `SET NX` of a pending marker; completing it overwrites the marker with the
//! response, both expiring after [`RETENTION`].

use std::time::Duration;

use async_trait::async_trait;

use super::{gave_up, Claim, Idempotency, StoredResponse, RETENTION, WAIT};
use crate::error::BackendError;
use crate::redis_conn::HealingRedis;

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
