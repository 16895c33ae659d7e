//! A Redis connection that heals itself.
//!
//! `redis::aio::ConnectionManager` reconnects on its own, but the fault-injection runner found
//! API processes whose manager, after Redis was killed and restarted, never connected again and
//! left every creation waiting (RELIABILITY.md, finding 1). This wrapper bounds every command,
//! and after a connection failure or a timeout builds a fresh manager in the background, so a
//! request answers 503 at worst and the next ones find Redis again.
//!
//! It lives at the top of the crate because every Redis adapter shares it: the sequencer, the
//! idempotency port, and the streams that will follow.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};

/// The longest a command (or a connection attempt) may take.
const DEADLINE: Duration = Duration::from_secs(2);

fn config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(DEADLINE)
        .set_response_timeout(DEADLINE)
        .set_number_of_retries(2)
}

#[derive(Clone)]
pub struct HealingRedis {
    client: redis::Client,
    current: Arc<RwLock<ConnectionManager>>,
    healing: Arc<AtomicBool>,
}

impl HealingRedis {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)
            .map_err(|err| anyhow::anyhow!("REDIS_URL is not valid: {err}"))?;
        let manager = tokio::time::timeout(
            DEADLINE * 5,
            ConnectionManager::new_with_config(client.clone(), config()),
        )
        .await
        .map_err(|_| anyhow::anyhow!("cannot connect to Redis (REDIS_URL): timed out"))?
        .map_err(|err| anyhow::anyhow!("cannot connect to Redis (REDIS_URL): {err}"))?;
        Ok(Self {
            client,
            current: Arc::new(RwLock::new(manager)),
            healing: Arc::new(AtomicBool::new(false)),
        })
    }

    fn manager(&self) -> ConnectionManager {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Replaces the connection in the background (once at a time) until a new one works.
    fn heal(&self) {
        if self.healing.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let fresh = ConnectionManager::new_with_config(this.client.clone(), config());
                if let Ok(Ok(manager)) = tokio::time::timeout(DEADLINE, fresh).await {
                    *this
                        .current
                        .write()
                        .unwrap_or_else(|poisoned| poisoned.into_inner()) = manager;
                    tracing::info!("reconnected to redis");
                    break;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            this.healing.store(false, Ordering::Release);
        });
    }

    /// Awaits a command with the deadline; heals the connection when it failed as a connection.
    async fn bounded<T>(
        &self,
        command: impl std::future::Future<Output = RedisResult<T>>,
    ) -> RedisResult<T> {
        match tokio::time::timeout(DEADLINE, command).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => {
                if err.is_io_error()
                    || err.is_connection_dropped()
                    || err.is_connection_refusal()
                    || err.is_timeout()
                {
                    self.heal();
                }
                Err(err)
            }
            Err(_) => {
                self.heal();
                Err(RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "redis did not answer in time",
                )))
            }
        }
    }
}

impl ConnectionLike for HealingRedis {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut manager = self.manager();
            self.bounded(manager.req_packed_command(cmd)).await
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let mut manager = self.manager();
            self.bounded(manager.req_packed_commands(cmd, offset, count))
                .await
        })
    }

    fn get_db(&self) -> i64 {
        self.manager().get_db()
    }
}
