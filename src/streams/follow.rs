//! One subscriber's stream of a chat: every change after its start position, in revision order,
//! each once (SPEC §7).
//!
//! It subscribes to the hub *first*, then reads the changes feed from the store, then follows
//! the live channel: a live change at or below the last revision sent was in the feed already
//! and is skipped; the next revision is sent; anything else (a gap, a lagged receiver, a relay
//! that reconnected) is filled from the store again. A lag twice within [`LAG_WINDOW`] ends the
//! stream instead (the client keeps up with neither the channel nor the store), as does a
//! client whose bounded buffer stays full for [`SLOW`]: it reconnects with its last id and
//! loses nothing.
//!
//! Where revisions are drawn before the changes reach the store (scaled), a lower revision may
//! still be on its way when a higher one is stored: the store's changes are only sent below the
//! lowest revision in flight (`Sequencer::in_flight`, `domain::settled`), and the follower
//! looks again shortly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use super::{Hub, Signal};
use crate::domain::Token;
use crate::sequencer::Sequencer;
use crate::store::Store;

/// Changes read from the store per catch-up query.
const PAGE: u32 = 1000;
/// How long a client's full buffer is waited on before it is disconnected.
pub const SLOW: Duration = Duration::from_secs(5);
/// How soon a stream whose catch-up stopped below a revision in flight looks again.
const RECHECK: Duration = Duration::from_millis(100);
/// Two lags within this long end the stream.
const LAG_WINDOW: Duration = Duration::from_secs(10);

/// What a stream sends its client.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Change { revision: u64, json: Arc<str> },
    ChatDeleted { chat: u64 },
}

/// Starts following the chat after revision `since`; the items arrive on the returned
/// receiver, which holds at most `buffer` of them. It ends when the chat is deleted, the
/// process shuts down, the client falls behind, or the receiver is dropped.
pub fn follow(
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    start: Position,
    buffer: usize,
    sequencer: Arc<dyn Sequencer>,
) -> mpsc::Receiver<Item> {
    let (out, items) = mpsc::channel(buffer.max(1));
    let subscription = hub.subscribe(&start.token, start.chat);
    let follower = Follower {
        store,
        token: start.token,
        chat: start.chat,
        last: start.since,
        out,
        sequencer,
        unsettled: None,
    };
    let closing = hub.closing();
    tokio::spawn(follower.run(subscription, closing));
    items
}

/// Where a stream starts: the chat, and the revision after which it sends.
pub struct Position {
    pub token: Token,
    pub chat: u64,
    pub since: u64,
}

struct Follower {
    store: Arc<dyn Store>,
    token: Token,
    chat: u64,
    /// The last revision sent (or the start position).
    last: u64,
    out: mpsc::Sender<Item>,
    /// What tells which revisions are still on their way to the store (`domain::settled`).
    sequencer: Arc<dyn Sequencer>,
    /// When the store's changes stopped before a revision that may still arrive: look again
    /// then.
    unsettled: Option<tokio::time::Instant>,
}

impl Follower {
    async fn run(
        mut self,
        mut subscription: super::Subscription,
        mut closing: tokio::sync::watch::Receiver<bool>,
    ) {
        if *closing.borrow() || !self.catch_up().await {
            return;
        }
        let mut lagged_at: Option<Instant> = None;
        loop {
            let recheck = self.unsettled;
            let signal = tokio::select! {
                signal = subscription.receiver.recv() => signal,
                _ = closing.changed() => return,
                () = self.out.closed() => return,
                () = async { tokio::time::sleep_until(recheck.unwrap_or_else(tokio::time::Instant::now)).await }, if recheck.is_some() => {
                    if !self.catch_up().await {
                        return;
                    }
                    continue;
                }
            };
            let more = match signal {
                Ok(Signal::Change { revision, .. }) if revision <= self.last => true,
                Ok(Signal::Change { revision, json }) if revision == self.last + 1 => {
                    self.send(Item::Change { revision, json }).await
                }
                // A revision skipped, while the store is known not to have settled it yet: the
                // recheck will look again.
                Ok(Signal::Change { .. }) if self.unsettled.is_some() => true,
                // A revision skipped: it may have been lost on the way; the store has it.
                Ok(Signal::Change { .. }) | Ok(Signal::Resync) => self.catch_up().await,
                Ok(Signal::ChatDeleted) => {
                    let _ = self.send(Item::ChatDeleted { chat: self.chat }).await;
                    false
                }
                Err(RecvError::Lagged(_)) => {
                    let again = lagged_at.is_some_and(|at| at.elapsed() < LAG_WINDOW);
                    lagged_at = Some(Instant::now());
                    !again && self.catch_up().await
                }
                Err(RecvError::Closed) => false,
            };
            if !more {
                return;
            }
        }
    }

    /// Sends what the store has after `last`; `false` when the stream must end (the chat is
    /// gone, the store failed, or the client is gone or too slow).
    async fn catch_up(&mut self) -> bool {
        loop {
            // In flight first, the store second: a revision off the in-flight set is stored.
            let in_flight = match self.sequencer.in_flight(&self.token, self.chat).await {
                Ok(in_flight) => in_flight,
                Err(err) => {
                    tracing::warn!(error = %err, "a stream could not learn what is in flight; it ends");
                    return false;
                }
            };
            let page = match self
                .store
                .changes(&self.token, self.chat, self.last, PAGE)
                .await
            {
                Ok(Some(page)) => page,
                Ok(None) => {
                    let _ = self.send(Item::ChatDeleted { chat: self.chat }).await;
                    return false;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "a stream could not read the changes feed; it ends");
                    return false;
                }
            };
            let full = page.len() == PAGE as usize;
            let (page, cut) = crate::domain::settled(page, in_flight);
            self.unsettled = cut.then(|| tokio::time::Instant::now() + RECHECK);
            for change in page {
                let Signal::Change { revision, json } = Signal::change(&change) else {
                    continue;
                };
                if !self.send(Item::Change { revision, json }).await {
                    return false;
                }
            }
            if !full || cut {
                return true;
            }
        }
    }

    async fn send(&mut self, item: Item) -> bool {
        if let Item::Change { revision, .. } = &item {
            self.last = *revision;
        }
        self.out.send_timeout(item, SLOW).await.is_ok()
    }
}
