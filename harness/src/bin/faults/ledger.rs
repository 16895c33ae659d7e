//! The ledger: what the load was told. Every acknowledged creation (message, chat,
//! application) and every edit attempt, with the instants its request started and ended, so the
//! checker can hold the stored state against it. Attempts that were not acknowledged are only
//! counted, except edits: an edit whose outcome is unknown (cut, timed out, 5xx) may still have
//! taken effect, and the edit rule (`edits.rs`) has to allow for it.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

/// One acknowledged message creation.
#[derive(Clone, Debug)]
pub struct Ack {
    pub chat: u64,
    pub number: u64,
    pub body: String,
    pub start: Instant,
    pub end: Instant,
}

/// One edit attempt of an acknowledged message.
#[derive(Clone, Debug)]
pub struct Edit {
    pub chat: u64,
    pub number: u64,
    pub body: String,
    pub start: Instant,
    /// When its `200` was read; `None`: not acknowledged, outcome unknown (it may or may not
    /// have been applied, and may have been applied late).
    pub end: Option<Instant>,
}

/// One acknowledged chat creation in the application under load.
#[derive(Clone, Debug)]
pub struct ChatAck {
    pub number: u64,
    pub start: Instant,
    pub end: Instant,
}

/// One acknowledged application creation.
#[derive(Clone, Debug)]
pub struct AppAck {
    pub token: String,
    pub name: String,
}

/// Everything the load saw; each list is appended to by the writers.
#[derive(Default)]
pub struct Ledger {
    pub acks: Mutex<Vec<Ack>>,
    pub edits: Mutex<Vec<Edit>>,
    pub chats: Mutex<Vec<ChatAck>>,
    pub apps: Mutex<Vec<AppAck>>,
    /// Failed attempts by operation and kind ("message 503", "edit connection", …).
    pub failures: Mutex<BTreeMap<String, u64>>,
}

/// A copy of the ledger once the load stopped.
#[derive(Clone, Debug, Default)]
pub struct Taken {
    pub acks: Vec<Ack>,
    pub edits: Vec<Edit>,
    pub chats: Vec<ChatAck>,
    pub apps: Vec<AppAck>,
    pub failures: BTreeMap<String, u64>,
}

fn push<T>(list: &Mutex<Vec<T>>, item: T) {
    match list.lock() {
        Ok(mut list) => list.push(item),
        Err(poisoned) => poisoned.into_inner().push(item),
    }
}

fn copy<T: Clone>(list: &Mutex<T>) -> T {
    match list.lock() {
        Ok(list) => list.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

impl Ledger {
    pub fn fail(&self, kind: String) {
        match self.failures.lock() {
            Ok(mut failures) => *failures.entry(kind).or_default() += 1,
            Err(poisoned) => *poisoned.into_inner().entry(kind).or_default() += 1,
        }
    }

    pub fn ack(&self, ack: Ack) {
        push(&self.acks, ack);
    }

    pub fn edit(&self, edit: Edit) {
        push(&self.edits, edit);
    }

    pub fn chat(&self, chat: ChatAck) {
        push(&self.chats, chat);
    }

    pub fn app(&self, app: AppAck) {
        push(&self.apps, app);
    }

    /// An acknowledged message of `chat`, the `pick`-th modulo their count (for an edit).
    pub fn message_of(&self, chat: u64, pick: usize) -> Option<(u64, u64)> {
        let acks = self.acks.lock().ok()?;
        let mine: Vec<&Ack> = acks.iter().filter(|a| a.chat == chat).collect();
        let ack = mine.get(pick % mine.len().max(1))?;
        Some((ack.chat, ack.number))
    }

    pub fn take(&self) -> Taken {
        Taken {
            acks: copy(&self.acks),
            edits: copy(&self.edits),
            chats: copy(&self.chats),
            apps: copy(&self.apps),
            failures: copy(&self.failures),
        }
    }
}
