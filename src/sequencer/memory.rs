//! Numbers from the process itself: one atomic counter per application and per chat.
//!
//! A counter starts from the highest number stored the first time it is needed. That is exact:
//! before that moment this process drew no number for it, and every number an earlier process
//! acknowledged is stored (writes are acknowledged after commit). Numbers drawn by a creation
//! that then failed are gaps, as SPEC §1 allows. Deleted messages and chats keep their rows
//! (tombstones), so the highest stored number counts them too: a number is never reused.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use dashmap::DashMap;
use tokio::sync::OnceCell;

use super::{Drawn, Sequencer};
use crate::domain::event::AT_APPLY;
use crate::domain::Token;
use crate::error::BackendError;
use crate::store::Store;

type Counter = Arc<OnceCell<AtomicU64>>;

pub struct MemorySequencer {
    store: Arc<dyn Store>,
    chats: DashMap<String, Counter>,
    messages: DashMap<(String, u64), Counter>,
}

impl MemorySequencer {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            chats: DashMap::new(),
            messages: DashMap::new(),
        }
    }
}

/// Draws the next number from a counter, initialising it once from `load` (concurrent first
/// callers wait for the same load). `None` when `load` says the parent does not exist; that
/// answer is not cached, since the parent may be created later.
async fn draw<F, Fut>(counter: Counter, load: F) -> Result<Option<u64>, BackendError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Option<u64>, BackendError>>,
{
    let initialised = counter
        .get_or_try_init(|| async {
            match load().await {
                Ok(Some(last)) => Ok(AtomicU64::new(last)),
                Ok(None) => Err(None),
                Err(err) => Err(Some(err)),
            }
        })
        .await;
    match initialised {
        Ok(last) => Ok(Some(last.fetch_add(1, Ordering::Relaxed) + 1)),
        Err(None) => Ok(None),
        Err(Some(err)) => Err(err),
    }
}

fn counter<K: std::hash::Hash + Eq + Clone>(map: &DashMap<K, Counter>, key: &K) -> Counter {
    if let Some(counter) = map.get(key) {
        return counter.clone();
    }
    map.entry(key.clone()).or_default().clone()
}

/// Unknown parents leave no entry behind, so requests for made-up tokens cost no memory.
fn forget_unknown<K: std::hash::Hash + Eq>(map: &DashMap<K, Counter>, key: &K) {
    map.remove_if(key, |_, counter| counter.get().is_none());
}

#[async_trait]
impl Sequencer for MemorySequencer {
    async fn next_chat_number(&self, token: &Token) -> Result<Option<u64>, BackendError> {
        let key = token.as_str().to_owned();
        let counter = counter(&self.chats, &key);
        let number = draw(counter, || self.store.last_chat_number(token)).await;
        if matches!(number, Ok(None)) {
            forget_unknown(&self.chats, &key);
        }
        number
    }

    async fn next_message(&self, token: &Token, chat: u64) -> Result<Option<Drawn>, BackendError> {
        let key = (token.as_str().to_owned(), chat);
        let counter = counter(&self.messages, &key);
        let number = draw(counter, || self.store.last_message_number(token, chat)).await;
        if matches!(number, Ok(None)) {
            forget_unknown(&self.messages, &key);
        }
        // The group-commit writer gives each change its revision, in the order it applies them.
        Ok(number?.map(|number| Drawn {
            number,
            revision: AT_APPLY,
        }))
    }

    async fn chat_deleted(&self, token: &Token, chat: u64) -> Result<(), BackendError> {
        self.messages.remove(&(token.as_str().to_owned(), chat));
        Ok(())
    }

    async fn application_deleted(&self, token: &Token) -> Result<(), BackendError> {
        self.chats.remove(token.as_str());
        self.messages
            .retain(|(owner, _), _| owner != token.as_str());
        Ok(())
    }
}
