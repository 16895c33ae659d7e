//! Live streams (SPEC §7): every committed change of a chat, pushed to the clients that watch it.
//!
//! - [`Hub`]: the fan-out inside one process. One `tokio::sync::broadcast` channel per chat that
//!   has subscribers, created by the first and dropped with the last; each change is serialised
//!   once and shared by every subscriber (`Arc<str>`). A subscriber that falls more than
//!   [`CHANNEL`] changes behind gets `Lagged`, never a silent skip (see `follow.rs`).
//! - [`Publisher`]: the port the write path tells of committed changes. Embedded: the
//!   group-commit writer publishes into the hub itself. Scaled: workers publish to Redis after
//!   their commit (`redis.rs`), and every API process relays Redis into its own hub.
//! - `follow.rs`: one subscriber's stream: subscribe first, then the changes feed from the
//!   store, then live changes merged by revision (no gap, no repeat); gaps, lag and a lost relay
//!   are filled from the store, which stays the source of truth.

pub mod follow;
pub mod redis;

use std::sync::Arc;

use async_trait::async_trait;
use dashmap::DashMap;
use tokio::sync::{broadcast, watch};

use crate::domain::event::{self, Applied, Event};
use crate::domain::{Change, Token};

/// Changes a chat's channel keeps for subscribers that are behind. Its slots are allocated when
/// the chat's first subscriber comes: at 1 024 they were about 64 KB per watched chat, most of
/// an idle stream's cost with 10 subscribers a chat (BENCHMARKS.md); a subscriber further
/// behind than this catches up from the store.
pub const CHANNEL: usize = 128;

/// What a chat's subscribers are told.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// A change, serialised once (the REST shape: a message or a tombstone).
    Change { revision: u64, json: Arc<str> },
    /// The chat was deleted (or its application): streams end.
    ChatDeleted,
    /// Changes may have been lost on the way (a relay reconnected): catch up from the store.
    Resync,
}

impl Signal {
    pub fn change(change: &Change) -> Self {
        Self::Change {
            revision: change.revision(),
            json: serde_json::to_string(change)
                .unwrap_or_else(|_| String::from("{}"))
                .into(),
        }
    }
}

/// What a batch of events committed with `outcomes` tells subscribers: (token, chat or `None`
/// for every chat of the application, signal), in batch order.
pub fn signals(events: &[Event], outcomes: &[Applied]) -> Vec<(Token, Option<u64>, Signal)> {
    let mut out = Vec::new();
    for (event, outcome) in events.iter().zip(outcomes) {
        let signal = match (event, outcome) {
            (Event::MessageCreated(event::MessageCreated { token, .. }), Applied::Message(m))
            | (Event::MessageEdited(event::MessageEdited { token, .. }), Applied::Message(m)) => (
                token.clone(),
                Some(m.chat_number),
                Signal::change(&Change::Message(m.clone())),
            ),
            (Event::MessageDeleted(e), Applied::MessageDeleted(t)) => (
                e.token.clone(),
                Some(e.chat),
                Signal::change(&Change::Deleted(t.clone())),
            ),
            (Event::ChatDeleted(e), Applied::Deleted) => {
                (e.token.clone(), Some(e.number), Signal::ChatDeleted)
            }
            (Event::ApplicationDeleted(e), Applied::Deleted) => {
                (e.token.clone(), None, Signal::ChatDeleted)
            }
            _ => continue,
        };
        out.push(signal);
    }
    out
}

/// The port the write path reports committed batches to (defined with the write path).
pub use crate::events::Publisher;

/// The revisions carried by a batch's events, (token, chat, revision): what has now reached
/// the store, taken effect or not (see `sequencer::Sequencer::in_flight`).
pub fn carried_revisions(events: &[Event]) -> Vec<(Token, u64, u64)> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::MessageCreated(e) => Some((e.token.clone(), e.chat, e.revision)),
            Event::MessageEdited(e) => Some((e.token.clone(), e.chat, e.revision)),
            Event::MessageDeleted(e) => Some((e.token.clone(), e.chat, e.revision)),
            _ => None,
        })
        .filter(|(_, _, revision)| *revision != event::AT_APPLY)
        .collect()
}

/// The fan-out of one process.
pub struct Hub {
    chats: DashMap<(String, u64), broadcast::Sender<Signal>>,
    /// Set when the process shuts down: every stream ends, so clients reconnect elsewhere.
    closing: watch::Sender<bool>,
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            chats: DashMap::new(),
            closing: watch::channel(false).0,
        }
    }
}

/// A subscriber's end of a chat's channel; dropping the last one drops the channel.
pub struct Subscription {
    pub receiver: broadcast::Receiver<Signal>,
    hub: Arc<Hub>,
    key: (String, u64),
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // This receiver still counts until it is dropped, after this function.
        self.hub
            .chats
            .remove_if(&self.key, |_, sender| sender.receiver_count() <= 1);
    }
}

impl Hub {
    pub fn subscribe(self: &Arc<Self>, token: &Token, chat: u64) -> Subscription {
        let key = (token.as_str().to_owned(), chat);
        let receiver = self
            .chats
            .entry(key.clone())
            .or_insert_with(|| broadcast::channel(CHANNEL).0)
            .subscribe();
        Subscription {
            receiver,
            hub: self.clone(),
            key,
        }
    }

    /// Tells the chat's subscribers (or, with `chat: None`, those of every chat of the
    /// application). A chat nobody watches costs one map look-up.
    pub fn send(&self, token: &Token, chat: Option<u64>, signal: Signal) {
        match chat {
            Some(chat) => {
                if let Some(sender) = self.chats.get(&(token.as_str().to_owned(), chat)) {
                    let _ = sender.send(signal);
                }
            }
            None => {
                for entry in self.chats.iter().filter(|e| e.key().0 == token.as_str()) {
                    let _ = entry.value().send(signal.clone());
                }
            }
        }
    }

    /// Tells every subscriber to catch up from the store (the relay lost its connection).
    pub fn resync_all(&self) {
        for entry in self.chats.iter() {
            let _ = entry.value().send(Signal::Resync);
        }
    }

    /// The chats with subscribers in this process.
    pub fn watched(&self) -> Vec<(String, u64)> {
        self.chats.iter().map(|e| e.key().clone()).collect()
    }

    /// Ends every stream (graceful shutdown).
    pub fn close(&self) {
        let _ = self.closing.send(true);
    }

    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }
}

#[async_trait]
impl Publisher for Hub {
    async fn publish(&self, events: &[Event], outcomes: &[Applied]) {
        for (token, chat, signal) in signals(events, outcomes) {
            self.send(&token, chat, signal);
        }
    }
}
