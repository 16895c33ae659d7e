//! Numbers from Redis, shared by every API process: one script call (one round trip) checks
//! that the parent exists and increments its counter.
//!
//! Keys (under the configured namespace): `app:{token}` holds the application's last chat
//! number, `chat:{token}:{n}` the chat's last message number, `rev:{token}:{n}` its last
//! revision, and `generation` marks a Redis that holds every counter. Deleting a chat or an
//! application deletes its keys, so nothing more is drawn for it. If Redis restarts empty or is flushed, the marker is gone: scripts
//! answer "reset", creations answer 503, and one process rebuilds the counters from the store
//! once nothing acknowledged is still on its way there (see [`Recovery`]), then sets the marker.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::Script;
use tokio::sync::Mutex;

use super::{Backlog, Drawn, Sequencer};
use crate::domain::Token;
use crate::error::BackendError;
use crate::redis_conn::HealingRedis;
use crate::store::Store;

const RESET: i64 = -2;
const UNKNOWN: i64 = -1;

/// KEYS: generation, app. ARGV: chat key prefix, revision key prefix. Increments the app's
/// counter and registers the new chat (its message counter and its revision at 0) in the same
/// step.
const NEXT_CHAT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
local n = redis.call('INCR', KEYS[2])
redis.call('SET', ARGV[1] .. n, 0, 'NX')
redis.call('SET', ARGV[2] .. n, 0, 'NX')
return n";

/// KEYS: generation, chat, revision. The message number and the revision of its creation. A
/// chat without a revision counter (registered before revisions existed) counts as a reset:
/// the recovery derives every counter again.
const NEXT_MESSAGE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {-2, 0} end
if redis.call('EXISTS', KEYS[2]) == 0 then return {-1, 0} end
if redis.call('EXISTS', KEYS[3]) == 0 then return {-2, 0} end
return {redis.call('INCR', KEYS[2]), redis.call('INCR', KEYS[3])}";

/// KEYS: generation, chat, revision. The revision of an edit or a deletion.
const NEXT_REVISION: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
if redis.call('EXISTS', KEYS[3]) == 0 then return -2 end
return redis.call('INCR', KEYS[3])";

/// KEYS: generation, app. ARGV: last chat number. Registers an application.
const REGISTER: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
redis.call('SET', KEYS[2], ARGV[1], 'NX')
return 0";

pub struct RedisSequencer {
    redis: HealingRedis,
    keys: Keys,
    store: Arc<dyn Store>,
    recovery: Arc<Recovery>,
    next_chat: Script,
    next_message: Script,
    next_revision: Script,
    register: Script,
}

#[derive(Clone)]
struct Keys {
    namespace: String,
}

impl Keys {
    fn generation(&self) -> String {
        format!("{}generation", self.namespace)
    }
    fn lock(&self) -> String {
        format!("{}recovery-lock", self.namespace)
    }
    fn app(&self, token: &str) -> String {
        format!("{}app:{token}", self.namespace)
    }
    fn chat_prefix(&self, token: &str) -> String {
        format!("{}chat:{token}:", self.namespace)
    }
    fn chat(&self, token: &str, chat: u64) -> String {
        format!("{}{chat}", self.chat_prefix(token))
    }
    fn revision_prefix(&self, token: &str) -> String {
        format!("{}rev:{token}:", self.namespace)
    }
    fn revision(&self, token: &str, chat: u64) -> String {
        format!("{}{chat}", self.revision_prefix(token))
    }
}

fn unavailable(err: redis::RedisError) -> BackendError {
    BackendError::Unavailable(format!("redis: {err}"))
}

impl RedisSequencer {
    pub async fn connect(
        url: &str,
        namespace: &str,
        store: Arc<dyn Store>,
        backlog: Arc<dyn Backlog>,
        grace: Duration,
    ) -> anyhow::Result<Self> {
        let redis = HealingRedis::connect(url).await?;
        let keys = Keys {
            namespace: namespace.to_owned(),
        };
        let recovery = Arc::new(Recovery {
            redis: redis.clone(),
            keys: keys.clone(),
            store: store.clone(),
            backlog,
            grace,
            running: Mutex::new(()),
        });
        let sequencer = Self {
            redis,
            keys,
            store,
            recovery,
            next_chat: Script::new(NEXT_CHAT),
            next_message: Script::new(NEXT_MESSAGE),
            next_revision: Script::new(NEXT_REVISION),
            register: Script::new(REGISTER),
        };
        // A Redis that lost its counters while no process was running: recover before the
        // first creation has to ask.
        if !sequencer.has_generation().await? {
            sequencer.recovery.clone().start();
        }
        Ok(sequencer)
    }

    /// Makes sure Redis holds every counter, recovering them now if it does not (run by
    /// `migrate`, so that a fresh deployment starts ready).
    pub async fn ensure_counters(&self) -> Result<(), BackendError> {
        if self.has_generation().await? {
            return Ok(());
        }
        // Recovers here, or waits for the process that holds the recovery lock.
        self.recovery.run().await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while !self.has_generation().await? {
            if tokio::time::Instant::now() >= deadline {
                return Err(BackendError::Unavailable(
                    "the counters were not recovered in time".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    async fn has_generation(&self) -> Result<bool, BackendError> {
        let mut redis = self.redis.clone();
        redis::cmd("EXISTS")
            .arg(self.keys.generation())
            .query_async(&mut redis)
            .await
            .map_err(unavailable)
    }

    fn reset_detected(&self) -> BackendError {
        self.recovery.clone().start();
        BackendError::Unavailable("numbering is being recovered after a Redis reset".into())
    }

    async fn register_from_store(&self, token: &Token) -> Result<bool, BackendError> {
        let Some(last) = self.store.last_chat_number(token).await? else {
            return Ok(false);
        };
        let mut redis = self.redis.clone();
        let answer: i64 = self
            .register
            .key(self.keys.generation())
            .key(self.keys.app(token.as_str()))
            .arg(last)
            .invoke_async(&mut redis)
            .await
            .map_err(unavailable)?;
        if answer == RESET {
            return Err(self.reset_detected());
        }
        Ok(true)
    }
}

#[async_trait]
impl Sequencer for RedisSequencer {
    async fn next_chat_number(&self, token: &Token) -> Result<Option<u64>, BackendError> {
        for _ in 0..2 {
            let mut redis = self.redis.clone();
            let answer: i64 = self
                .next_chat
                .key(self.keys.generation())
                .key(self.keys.app(token.as_str()))
                .arg(self.keys.chat_prefix(token.as_str()))
                .arg(self.keys.revision_prefix(token.as_str()))
                .invoke_async(&mut redis)
                .await
                .map_err(unavailable)?;
            match answer {
                RESET => return Err(self.reset_detected()),
                // Stored but not registered (its registration failed after the insert): no chat
                // of it can exist, so the store's highest number is exact.
                UNKNOWN if self.register_from_store(token).await? => continue,
                UNKNOWN => return Ok(None),
                number => return Ok(Some(number as u64)),
            }
        }
        Ok(None)
    }

    async fn next_message(&self, token: &Token, chat: u64) -> Result<Option<Drawn>, BackendError> {
        let mut redis = self.redis.clone();
        let (number, revision): (i64, i64) = self
            .next_message
            .key(self.keys.generation())
            .key(self.keys.chat(token.as_str(), chat))
            .key(self.keys.revision(token.as_str(), chat))
            .invoke_async(&mut redis)
            .await
            .map_err(unavailable)?;
        match number {
            RESET => Err(self.reset_detected()),
            UNKNOWN => Ok(None),
            number => Ok(Some(Drawn {
                number: number as u64,
                revision: revision as u64,
            })),
        }
    }

    /// Drawn here, before the event is published, so that the answer carries it and every
    /// consumer (store, search index, streams) keeps the change with the higher revision.
    async fn next_revision(&self, token: &Token, chat: u64) -> Result<Option<u64>, BackendError> {
        let mut redis = self.redis.clone();
        let answer: i64 = self
            .next_revision
            .key(self.keys.generation())
            .key(self.keys.chat(token.as_str(), chat))
            .key(self.keys.revision(token.as_str(), chat))
            .invoke_async(&mut redis)
            .await
            .map_err(unavailable)?;
        match answer {
            RESET => Err(self.reset_detected()),
            UNKNOWN => Ok(None),
            revision => Ok(Some(revision as u64)),
        }
    }

    async fn chat_deleted(&self, token: &Token, chat: u64) -> Result<(), BackendError> {
        let mut redis = self.redis.clone();
        redis::cmd("DEL")
            .arg(self.keys.chat(token.as_str(), chat))
            .arg(self.keys.revision(token.as_str(), chat))
            .query_async::<()>(&mut redis)
            .await
            .map_err(unavailable)
    }

    async fn application_deleted(&self, token: &Token) -> Result<(), BackendError> {
        let mut redis = self.redis.clone();
        let mut doomed = vec![self.keys.app(token.as_str())];
        for prefix in [
            self.keys.chat_prefix(token.as_str()),
            self.keys.revision_prefix(token.as_str()),
        ] {
            // Tokens are URL-safe base64: no glob character can occur in the pattern.
            let mut cursor: u64 = 0;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(format!("{prefix}*"))
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut redis)
                    .await
                    .map_err(unavailable)?;
                doomed.extend(keys);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        let mut redis = self.redis.clone();
        redis::cmd("DEL")
            .arg(doomed)
            .query_async::<()>(&mut redis)
            .await
            .map_err(unavailable)
    }

    async fn application_created(&self, token: &Token) -> Result<(), BackendError> {
        let mut redis = self.redis.clone();
        let answer: i64 = self
            .register
            .key(self.keys.generation())
            .key(self.keys.app(token.as_str()))
            .arg(0)
            .invoke_async(&mut redis)
            .await
            .map_err(unavailable)?;
        if answer == RESET {
            // The recovery reads the store after this application was stored, or the first chat
            // creation registers it from the store: either way it is not lost.
            self.recovery.clone().start();
        }
        Ok(())
    }

    async fn ready(&self) -> bool {
        let mut redis = self.redis.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut redis)
            .await
            .is_ok()
    }
}

/// Rebuilds the counters after a reset. One process at a time (a Redis lock across processes,
/// a mutex within one).
pub struct Recovery {
    redis: HealingRedis,
    keys: Keys,
    store: Arc<dyn Store>,
    backlog: Arc<dyn Backlog>,
    /// How long a number drawn before the reset may still be on its way to the broker (the
    /// producer's delivery timeout plus a margin): waited out before the backlog is checked.
    grace: Duration,
    running: Mutex<()>,
}

impl Recovery {
    fn start(self: Arc<Self>) {
        tokio::spawn(async move {
            let Ok(_guard) = self.running.try_lock() else {
                return;
            };
            if let Err(err) = self.run().await {
                tracing::warn!(error = %err, "counter recovery failed; the next creation retries it");
            }
        });
    }

    async fn run(&self) -> Result<(), BackendError> {
        let mut redis = self.redis.clone();
        let locked: Option<String> = redis::cmd("SET")
            .arg(self.keys.lock())
            .arg(std::process::id())
            .arg("NX")
            .arg("PX")
            .arg(120_000)
            .query_async(&mut redis)
            .await
            .map_err(unavailable)?;
        if locked.is_none() {
            return Ok(());
        }
        tracing::warn!("redis holds no counters (new or reset): deriving them from the store");
        let mut counters = self.store.counters().await?;
        // With no application stored, no number can have been drawn: nothing to wait for.
        if !counters.applications.is_empty() {
            tokio::time::sleep(self.grace).await;
            while !self.backlog.drained().await? {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            counters = self.store.counters().await?;
        }
        let mut pipe = redis::pipe();
        for (token, last) in &counters.applications {
            pipe.cmd("SET").arg(self.keys.app(token)).arg(last).ignore();
        }
        for (token, chat, last, revision) in &counters.chats {
            pipe.cmd("SET")
                .arg(self.keys.chat(token, *chat))
                .arg(last)
                .ignore();
            pipe.cmd("SET")
                .arg(self.keys.revision(token, *chat))
                .arg(revision)
                .ignore();
        }
        pipe.cmd("SET")
            .arg(self.keys.generation())
            .arg(chrono::Utc::now().to_rfc3339())
            .ignore();
        pipe.cmd("DEL").arg(self.keys.lock()).ignore();
        pipe.query_async::<()>(&mut redis)
            .await
            .map_err(unavailable)?;
        tracing::info!(
            applications = counters.applications.len(),
            chats = counters.chats.len(),
            "counters recovered"
        );
        Ok(())
    }
}
