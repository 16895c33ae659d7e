//! The ledger: what the load was told. Every acknowledged creation (message, chat,
//! application) and every edit attempt, with the instants its request started and ended, and
//! every deletion attempt with whether it was acknowledged, so the checker can hold the stored
//! state against it. Attempts that were not
//! acknowledged are only counted, except edits and deletions: one whose outcome is unknown (cut,
//! timed out, 5xx) may still have taken effect, and the edit rule (`edits.rs`) and the deletion
//! rule (`deletions.rs`) have to allow for it.

use std::collections::{BTreeMap, HashSet};
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

/// One deletion attempt of an acknowledged message (never one the server refused outright).
#[derive(Clone, Debug)]
pub struct Delete {
    pub chat: u64,
    pub number: u64,
    /// When its `204` was read; `None`: not acknowledged, outcome unknown (the message may or
    /// may not have been deleted).
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
    pub deletes: Mutex<Vec<Delete>>,
    /// Messages a deletion was sent for (from before its request until it was refused, if it
    /// was): an edit of one of them may be answered `404`.
    pub deleting: Mutex<HashSet<(u64, u64)>>,
    /// Failed attempts by operation and kind ("message 503", "edit connection", …).
    pub failures: Mutex<BTreeMap<String, u64>>,
    /// Refusals the writer expected, by kind ("edit 404 of a deleted message"): not failures.
    pub expected: Mutex<BTreeMap<String, u64>>,
}

/// A copy of the ledger once the load stopped.
#[derive(Clone, Debug, Default)]
pub struct Taken {
    pub acks: Vec<Ack>,
    pub edits: Vec<Edit>,
    pub chats: Vec<ChatAck>,
    pub apps: Vec<AppAck>,
    pub deletes: Vec<Delete>,
    pub failures: BTreeMap<String, u64>,
    pub expected: BTreeMap<String, u64>,
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

fn count(counts: &Mutex<BTreeMap<String, u64>>, kind: String) {
    match counts.lock() {
        Ok(mut counts) => *counts.entry(kind).or_default() += 1,
        Err(poisoned) => *poisoned.into_inner().entry(kind).or_default() += 1,
    }
}

impl Ledger {
    pub fn fail(&self, kind: String) {
        count(&self.failures, kind);
    }

    /// A refusal the writer expected (not a failure).
    pub fn expect(&self, kind: String) {
        count(&self.expected, kind);
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

    /// A deletion of `message` is about to be sent.
    pub fn deleting(&self, message: (u64, u64)) {
        match self.deleting.lock() {
            Ok(mut deleting) => deleting.insert(message),
            Err(poisoned) => poisoned.into_inner().insert(message),
        };
    }

    /// The deletion of `message` was refused outright: nothing was deleted.
    pub fn not_deleting(&self, message: (u64, u64)) {
        match self.deleting.lock() {
            Ok(mut deleting) => deleting.remove(&message),
            Err(poisoned) => poisoned.into_inner().remove(&message),
        };
    }

    /// Whether a deletion of `message` was sent (and not refused).
    pub fn is_deleting(&self, message: (u64, u64)) -> bool {
        match self.deleting.lock() {
            Ok(deleting) => deleting.contains(&message),
            Err(poisoned) => poisoned.into_inner().contains(&message),
        }
    }

    /// A deletion sent, acknowledged or of unknown outcome.
    pub fn delete(&self, delete: Delete) {
        push(&self.deletes, delete);
    }

    /// An acknowledged message of `chat` no deletion was sent for, the `pick`-th modulo their
    /// count (for an edit).
    pub fn message_of(&self, chat: u64, pick: usize) -> Option<(u64, u64)> {
        let acks = self.acks.lock().ok()?;
        let deleting = self.deleting.lock().ok()?;
        let mine: Vec<&Ack> = acks
            .iter()
            .filter(|a| a.chat == chat && !deleting.contains(&(a.chat, a.number)))
            .collect();
        let ack = mine.get(pick % mine.len().max(1))?;
        Some((ack.chat, ack.number))
    }

    pub fn take(&self) -> Taken {
        Taken {
            acks: copy(&self.acks),
            edits: copy(&self.edits),
            chats: copy(&self.chats),
            apps: copy(&self.apps),
            deletes: copy(&self.deletes),
            failures: copy(&self.failures),
            expected: copy(&self.expected),
        }
    }
}
