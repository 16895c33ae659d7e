//! Streams across processes (scaled shape): Redis pub/sub carries committed changes from the
//! workers to every API process.
//!
//! Why Redis pub/sub and not each API process consuming the topics: the worker is the one that
//! knows a change committed (and with which revision and stored state); the topics hold
//! requests, some of which change nothing. Redis is already a dependency of the scaled shape,
//! and pub/sub adds no state to it. What it does not do is keep anything: a message published
//! while an API process is disconnected is lost to it. The store stays the source of truth:
//! - [`RedisPublisher`] (workers): after each committed batch, one `PUBLISH` per change on
//!   `NAMESPACEstream:{token}:{chat}` (chat 0: every chat of the application), pipelined, and
//!   the batch's revisions taken off the chats' in-flight sets (`sequencer::redis`).
//! - [`relay`] (API processes): one connection `PSUBSCRIBE`s `NAMESPACEstream:*` and hands each
//!   change to the process's [`Hub`]. When that connection drops (or Redis restarts) every
//!   stream of the process is told to catch up from the store ([`Signal::Resync`]); and every
//!   [`AUDIT_EVERY`] the relay compares each watched chat's stored revision with the last it
//!   relayed, once per chat (not per subscriber), so a change whose publication was lost (a
//!   worker killed between its commit and its `PUBLISH`) still reaches the subscribers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;

use super::{carried_revisions, signals, Hub, Publisher, Signal};
use crate::domain::event::{Applied, Event};
use crate::domain::Token;
use crate::redis_conn::HealingRedis;
use crate::sequencer::in_flight_keys;
use crate::store::Store;

/// How often the relay checks the watched chats' revisions against the store.
pub const AUDIT_EVERY: Duration = Duration::from_secs(2);
/// The payload of a chat's deletion.
const DELETED: &str = "deleted";

fn channel(namespace: &str, token: &str, chat: u64) -> String {
    format!("{namespace}stream:{token}:{chat}")
}

/// `revision json`, or [`DELETED`].
fn payload(signal: &Signal) -> Option<String> {
    match signal {
        Signal::Change { revision, json } => Some(format!("{revision} {json}")),
        Signal::ChatDeleted => Some(DELETED.to_owned()),
        Signal::Resync => None,
    }
}

/// A message of the relay's subscription: (token, chat or `None` for all, signal).
fn parse(namespace: &str, channel: &str, payload: &str) -> Option<(Token, Option<u64>, Signal)> {
    let rest = channel.strip_prefix(namespace)?.strip_prefix("stream:")?;
    let (token, chat) = rest.rsplit_once(':')?;
    let token = Token::parse(token)?;
    let chat = chat.parse::<u64>().ok()?;
    let signal = if payload == DELETED {
        Signal::ChatDeleted
    } else {
        let (revision, json) = payload.split_once(' ')?;
        Signal::Change {
            revision: revision.parse().ok()?,
            json: json.into(),
        }
    };
    Some((token, (chat != 0).then_some(chat), signal))
}

/// The workers' side: publishes committed changes.
pub struct RedisPublisher {
    redis: HealingRedis,
    namespace: String,
}

impl RedisPublisher {
    pub async fn connect(url: &str, namespace: &str) -> anyhow::Result<Self> {
        Ok(Self {
            redis: HealingRedis::connect(url).await?,
            namespace: namespace.to_owned(),
        })
    }
}

#[async_trait]
impl Publisher for RedisPublisher {
    async fn publish(&self, events: &[Event], outcomes: &[Applied]) {
        let mut pipe = redis::pipe();
        // These revisions are stored now (in effect or not): no reader waits for them any more.
        for (token, chat, revision) in carried_revisions(events) {
            let keys = in_flight_keys(&self.namespace, token.as_str(), chat);
            pipe.cmd("ZREM").arg(&keys.0).arg(revision).ignore();
            pipe.cmd("ZREM").arg(&keys.1).arg(revision).ignore();
        }
        for (token, chat, signal) in &signals(events, outcomes) {
            if let Some(payload) = payload(signal) {
                let channel = channel(&self.namespace, token.as_str(), chat.unwrap_or(0));
                pipe.cmd("PUBLISH").arg(channel).arg(payload).ignore();
            }
        }
        let mut redis = self.redis.clone();
        // A lost publication is found by the relays' audit of the stored revisions.
        if let Err(err) = pipe.query_async::<()>(&mut redis).await {
            tracing::warn!(error = %err, "publishing changes to Redis failed; streams catch up from the store");
        }
    }
}

/// The API process's side: relays published changes into `hub` until the process ends,
/// reconnecting (and telling every stream to catch up) whenever the subscription drops.
pub async fn relay(url: String, namespace: String, hub: Arc<Hub>, store: Arc<dyn Store>) {
    let relayed: Arc<std::sync::Mutex<HashMap<(String, u64), u64>>> = Arc::default();
    tokio::spawn(audit(hub.clone(), store, relayed.clone()));
    let mut delay = Duration::from_millis(100);
    loop {
        match subscribe(&url, &namespace).await {
            Ok(mut pubsub) => {
                delay = Duration::from_millis(100);
                // Whatever was published while we were not subscribed is in the store.
                hub.resync_all();
                let mut messages = pubsub.on_message();
                while let Some(message) = messages.next().await {
                    let payload: String = message.get_payload().unwrap_or_default();
                    let Some((token, chat, signal)) =
                        parse(&namespace, message.get_channel_name(), &payload)
                    else {
                        continue;
                    };
                    if let (Some(chat), Signal::Change { revision, .. }) = (chat, &signal) {
                        let mut relayed = relayed.lock().unwrap_or_else(|p| p.into_inner());
                        let last = relayed
                            .entry((token.as_str().to_owned(), chat))
                            .or_default();
                        *last = (*last).max(*revision);
                    }
                    hub.send(&token, chat, signal);
                }
                tracing::warn!("the stream relay lost its Redis subscription; reconnecting");
            }
            Err(err) => {
                tracing::warn!(error = %err, retry_in = ?delay, "the stream relay cannot subscribe to Redis");
            }
        }
        hub.resync_all();
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

async fn subscribe(url: &str, namespace: &str) -> redis::RedisResult<redis::aio::PubSub> {
    let client = redis::Client::open(url)?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.psubscribe(format!("{namespace}stream:*")).await?;
    Ok(pubsub)
}

/// Every [`AUDIT_EVERY`]: a watched chat whose stored revision is above the last one relayed
/// missed a publication; its subscribers catch up from the store.
async fn audit(
    hub: Arc<Hub>,
    store: Arc<dyn Store>,
    relayed: Arc<std::sync::Mutex<HashMap<(String, u64), u64>>>,
) {
    let mut every = tokio::time::interval(AUDIT_EVERY);
    loop {
        every.tick().await;
        let watched = hub.watched();
        {
            let mut relayed = relayed.lock().unwrap_or_else(|p| p.into_inner());
            relayed.retain(|key, _| watched.contains(key));
        }
        for (token, chat) in watched {
            let token = Token::stored(token);
            let stored = match store.chat(&token, chat).await {
                Ok(Some(stored)) => stored.revision,
                // Deleted meanwhile: its subscribers learn it from the store.
                Ok(None) => u64::MAX,
                Err(_) => continue,
            };
            let last = {
                let mut relayed = relayed.lock().unwrap_or_else(|p| p.into_inner());
                let last = relayed
                    .entry((token.as_str().to_owned(), chat))
                    .or_insert(stored);
                let seen = *last;
                *last = (*last).max(stored);
                seen
            };
            if stored > last {
                hub.send(&token, Some(chat), Signal::Resync);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_through_a_channel() {
        let change = Signal::Change {
            revision: 7,
            json: r#"{"number":3,"body":"a b"}"#.into(),
        };
        let text = payload(&change).unwrap();
        let parsed = parse("ns-", &channel("ns-", "tok_1", 4), &text).unwrap();
        assert_eq!(parsed, (Token::parse("tok_1").unwrap(), Some(4), change));
        let deleted = parse("ns-", &channel("ns-", "tok", 0), DELETED).unwrap();
        assert_eq!(
            deleted,
            (Token::parse("tok").unwrap(), None, Signal::ChatDeleted)
        );
        assert!(parse("other-", &channel("ns-", "tok", 1), DELETED).is_none());
        assert!(payload(&Signal::Resync).is_none());
    }
}
