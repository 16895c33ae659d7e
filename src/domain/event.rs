//! Writes as events: what a request asks for, carrying everything the store needs (numbers and
//! times included), so applying one twice changes nothing. Each kind is a payload struct with
//! the domain's types; [`Event`] is their sum, as it travels through the writer and the topics
//! (the JSON on the topics is `{"type": "message_created", …fields}`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Application, Chat, Message, Token, Tombstone};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplicationCreated {
    pub token: Token,
    pub name: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplicationRenamed {
    pub token: Token,
    pub name: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCreated {
    pub token: Token,
    pub number: u64,
    pub at: DateTime<Utc>,
}

/// A change to a chat's messages carries the chat revision it was given, or [`AT_APPLY`] when
/// the store assigns it while applying (the embedded writer); the scaled shape's sequencer
/// draws it before the event is published, so the answer can carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageCreated {
    pub token: Token,
    pub chat: u64,
    pub number: u64,
    pub body: String,
    pub at: DateTime<Utc>,
    /// Absent on events published before revisions existed: the store assigns one.
    #[serde(default)]
    pub revision: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageEdited {
    pub token: Token,
    pub chat: u64,
    pub number: u64,
    pub body: String,
    pub at: DateTime<Utc>,
    #[serde(default)]
    pub revision: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageDeleted {
    pub token: Token,
    pub chat: u64,
    pub number: u64,
    pub at: DateTime<Utc>,
    #[serde(default)]
    pub revision: u64,
}

/// The chat and its messages go; its row stays as a tombstone so its number is never reused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatDeleted {
    pub token: Token,
    pub number: u64,
    pub at: DateTime<Utc>,
}

/// The application and everything under it go; its token answers 404 from then on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplicationDeleted {
    pub token: Token,
    pub at: DateTime<Utc>,
}

/// The revision of a change that the store assigns when it applies it (revisions start at 1).
pub const AT_APPLY: u64 = 0;

/// One write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    ApplicationCreated(ApplicationCreated),
    ApplicationRenamed(ApplicationRenamed),
    ChatCreated(ChatCreated),
    MessageCreated(MessageCreated),
    MessageEdited(MessageEdited),
    MessageDeleted(MessageDeleted),
    ChatDeleted(ChatDeleted),
    ApplicationDeleted(ApplicationDeleted),
}

macro_rules! event_from {
    ($($kind:ident),*) => {$(
        impl From<$kind> for Event {
            fn from(payload: $kind) -> Self {
                Self::$kind(payload)
            }
        }
    )*};
}
event_from!(
    ApplicationCreated,
    ApplicationRenamed,
    ChatCreated,
    MessageCreated,
    MessageEdited,
    MessageDeleted,
    ChatDeleted,
    ApplicationDeleted
);

impl Event {
    /// The application every event belongs to.
    pub fn token(&self) -> &Token {
        match self {
            Self::ApplicationCreated(e) => &e.token,
            Self::ApplicationRenamed(e) => &e.token,
            Self::ChatCreated(e) => &e.token,
            Self::MessageCreated(e) => &e.token,
            Self::MessageEdited(e) => &e.token,
            Self::MessageDeleted(e) => &e.token,
            Self::ChatDeleted(e) => &e.token,
            Self::ApplicationDeleted(e) => &e.token,
        }
    }
}

/// A new chat as it is answered before any message (the scaled shape answers from the event).
impl From<&ChatCreated> for Chat {
    fn from(event: &ChatCreated) -> Self {
        Chat::new(event.number, 0, 0, event.at, event.at)
    }
}

/// The tombstone a deletion leaves, as answered before it is stored (the scaled shape).
impl From<&MessageDeleted> for Tombstone {
    fn from(event: &MessageDeleted) -> Self {
        Tombstone::new(event.chat, event.number, event.revision, event.at)
    }
}

/// A new message as stored.
impl From<&MessageCreated> for Message {
    fn from(event: &MessageCreated) -> Self {
        Message::new(
            event.chat,
            event.number,
            event.body.clone(),
            event.revision,
            event.at,
            event.at,
        )
    }
}

impl MessageEdited {
    /// `stored` with this edit applied.
    pub fn applied_to(&self, stored: Message) -> Message {
        Message {
            body: self.body.clone(),
            revision: self.revision,
            updated_at: self.at,
            ..stored
        }
    }
}

/// What applying one event produced: the resource as stored, or `NotFound` when its parent
/// (or, for an edit, the resource itself) does not exist.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    Application(Application),
    Chat(Chat),
    Message(Message),
    /// A message's deletion took effect: what is left of it.
    MessageDeleted(Tombstone),
    /// A chat's or an application's deletion took effect.
    Deleted,
    NotFound,
}
