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
use crate::domain::event::AT_APPLY;
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

/// KEYS: generation, chat. A message number alone (revisions assigned by the store).
const NEXT_NUMBER: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
return redis.call('INCR', KEYS[2])";

/// KEYS: generation, chat, revision, in flight (by revision), in flight (by time). The message
/// number and the revision of its creation; the revision is noted in flight until a worker
/// stored it. A chat without a revision counter (registered before revisions existed) counts
/// as a reset: the recovery derives every counter again.
const NEXT_MESSAGE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {-2, 0} end
if redis.call('EXISTS', KEYS[2]) == 0 then return {-1, 0} end
if redis.call('EXISTS', KEYS[3]) == 0 then return {-2, 0} end
local n = redis.call('INCR', KEYS[2])
local r = redis.call('INCR', KEYS[3])
local t = redis.call('TIME')
redis.call('ZADD', KEYS[4], r, r)
redis.call('ZADD', KEYS[5], t[1] * 1000 + math.floor(t[2] / 1000), r)
return {n, r}";

/// KEYS as [`NEXT_MESSAGE`]. The revision of an edit or a deletion, noted in flight.
const NEXT_REVISION: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
if redis.call('EXISTS', KEYS[3]) == 0 then return -2 end
local r = redis.call('INCR', KEYS[3])
local t = redis.call('TIME')
redis.call('ZADD', KEYS[4], r, r)
redis.call('ZADD', KEYS[5], t[1] * 1000 + math.floor(t[2] / 1000), r)
return r";

/// KEYS: in flight (by revision), in flight (by time). ARGV: how long (ms) a drawn revision
/// may stay unstored before it counts as abandoned (its API process died before publishing).
/// The lowest revision in flight, or -1.
const IN_FLIGHT: &str = r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[1]))
for _, r in ipairs(stale) do
  redis.call('ZREM', KEYS[1], r)
  redis.call('ZREM', KEYS[2], r)
end
local low = redis.call('ZRANGE', KEYS[1], 0, 0)
if #low == 0 then return -1 end
return tonumber(low[1])";

/// How long a drawn revision may stay in flight: the producer's delivery timeout (5 s) and a
/// worker's batch, with a margin. Past it, its API process is taken to have died between
/// drawing it and publishing the change (readers of that chat wait that long at most); a change
/// that reaches the store later than this after a race is the one case a reader can step over.
const IN_FLIGHT_LIMIT: Duration = Duration::from_secs(10);

/// The keys of a chat's in-flight revisions (by revision, by time of drawing): the sequencer
/// adds to them, the workers take off what they stored (`streams::redis`).
pub fn in_flight_keys(namespace: &str, token: &str, chat: u64) -> (String, String) {
    (
        format!("{namespace}inflight:{token}:{chat}"),
        format!("{namespace}inflight-at:{token}:{chat}"),
    )
}

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
    next_number: Script,
    next_message: Script,
    next_revision: Script,
    in_flight: Script,
    register: Script,
    /// Whether revisions are drawn here (the scaled shape) or by the store (`AT_APPLY`).
    revisions: bool,
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
    fn in_flight(&self, token: &str, chat: u64) -> (String, String) {
        in_flight_keys(&self.namespace, token, chat)
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
            next_number: Script::new(NEXT_NUMBER),
            next_message: Script::new(NEXT_MESSAGE),
            next_revision: Script::new(NEXT_REVISION),
            in_flight: Script::new(IN_FLIGHT),
            register: Script::new(REGISTER),
            revisions: true,
        };
        // A Redis that lost its counters while no process was running: recover before the
        // first creation has to ask.
        if !sequencer.has_generation().await? {
            sequencer.recovery.clone().start();
        }
        Ok(sequencer)
    }

    /// Whether this sequencer draws revisions (with the Kafka sink) or leaves them to the
    /// store's writer (`AT_APPLY`, with the in-process writer).
    pub fn drawing_revisions(mut self, revisions: bool) -> Self {
        self.revisions = revisions;
        self
    }

    /// Runs a drawing script ([`NEXT_MESSAGE`], [`NEXT_REVISION`]) on the chat's keys.
    async fn draw<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        token: &Token,
        chat: u64,
    ) -> Result<T, BackendError> {
        let mut redis = self.redis.clone();
        let (in_flight, in_flight_at) = self.keys.in_flight(token.as_str(), chat);
        script
            .key(self.keys.generation())
            .key(self.keys.chat(token.as_str(), chat))
            .key(self.keys.revision(token.as_str(), chat))
            .key(in_flight)
            .key(in_flight_at)
            .invoke_async(&mut redis)
            .await
            .map_err(unavailable)
    }

    /// A message number alone; revisions are assigned by the store.
    async fn next_number(&self, token: &Token, chat: u64) -> Result<Option<Drawn>, BackendError> {
        let mut redis = self.redis.clone();
        let answer: i64 = self
            .next_number
            .key(self.keys.generation())
            .key(self.keys.chat(token.as_str(), chat))
            .invoke_async(&mut redis)
            .await
            .map_err(unavailable)?;
        match answer {
            RESET => Err(self.reset_detected()),
            UNKNOWN => Ok(None),
            number => Ok(Some(Drawn {
                number: number as u64,
                revision: AT_APPLY,
            })),
        }
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
        if !self.revisions {
            return self.next_number(token, chat).await;
        }
        let (number, revision): (i64, i64) = self.draw(&self.next_message, token, chat).await?;
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
        if !self.revisions {
            return Ok(Some(AT_APPLY));
        }
        let answer: i64 = self.draw(&self.next_revision, token, chat).await?;
        match answer {
            RESET => Err(self.reset_detected()),
            UNKNOWN => Ok(None),
            revision => Ok(Some(revision as u64)),
        }
    }

    async fn in_flight(&self, token: &Token, chat: u64) -> Result<Option<u64>, BackendError> {
        if !self.revisions {
            return Ok(None);
        }
        let mut redis = self.redis.clone();
        let (in_flight, in_flight_at) = self.keys.in_flight(token.as_str(), chat);
        let lowest: i64 = self
            .in_flight
            .key(in_flight)
            .key(in_flight_at)
            .arg(IN_FLIGHT_LIMIT.as_millis() as u64)
            .invoke_async(&mut redis)
            .await
            .map_err(unavailable)?;
        Ok(u64::try_from(lowest).ok())
    }

    async fn abandon(&self, token: &Token, chat: u64, revision: u64) {
        let mut redis = self.redis.clone();
        let (in_flight, in_flight_at) = self.keys.in_flight(token.as_str(), chat);
        let done = redis::pipe()
            .cmd("ZREM")
            .arg(in_flight)
            .arg(revision)
            .ignore()
            .cmd("ZREM")
            .arg(in_flight_at)
            .arg(revision)
            .ignore()
            .query_async::<()>(&mut redis)
            .await;
        if let Err(err) = done {
            // It ages out after IN_FLIGHT_LIMIT; readers wait that long at most.
            tracing::warn!(error = %err, "could not abandon a drawn revision");
        }
    }

    async fn chat_deleted(&self, token: &Token, chat: u64) -> Result<(), BackendError> {
        let mut redis = self.redis.clone();
        let (in_flight, in_flight_at) = self.keys.in_flight(token.as_str(), chat);
        redis::cmd("DEL")
            .arg(in_flight)
            .arg(in_flight_at)
            .arg(self.keys.chat(token.as_str(), chat))
            .arg(self.keys.revision(token.as_str(), chat))
            .query_async::<()>(&mut redis)
            .await
            .map_err(unavailable)
    }

    async fn application_deleted(&self, token: &Token) -> Result<(), BackendError> {
        let mut redis = self.redis.clone();
        let mut doomed = vec![self.keys.app(token.as_str())];
        let (in_flight, in_flight_at) = self.keys.in_flight(token.as_str(), 0);
        for prefix in [
            self.keys.chat_prefix(token.as_str()),
            self.keys.revision_prefix(token.as_str()),
            in_flight.trim_end_matches('0').to_owned(),
            in_flight_at.trim_end_matches('0').to_owned(),
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
