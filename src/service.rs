//! What each request does, in terms of the ports. Handlers parse and render; this decides.
//!
//! [`Service`] holds the ports (store, sequencer, event sink, search) and nothing else: it never
//! names a backend type, so the same use cases run in both shapes.

use std::sync::Arc;

use crate::domain::event::{
    ApplicationCreated, ApplicationDeleted, ApplicationRenamed, ChatCreated, ChatDeleted,
    MessageCreated, MessageDeleted, MessageEdited, AT_APPLY,
};
use crate::domain::{
    self, Application, Body, Change, Chat, Message, Name, Page, SearchTerms, Token,
};
use crate::error::ApiError;
use crate::events::EventSink;
use crate::search::Search;
use crate::sequencer::Sequencer;
use crate::store::Store;
use crate::streams::follow::{follow, Item, Position};
use crate::streams::Hub;

/// The ports every request is served with.
pub struct Service {
    pub store: Arc<dyn Store>,
    pub sequencer: Arc<dyn Sequencer>,
    pub sink: Arc<dyn EventSink>,
    pub search: Arc<dyn Search>,
    /// Wakes the purge of deleted chats' messages (`store::purge_deleted`).
    pub purge: Arc<tokio::sync::Notify>,
    /// The live streams of this process.
    pub hub: Arc<Hub>,
    /// Streams this process may hold at once (`MAX_STREAMS`).
    pub streams: Arc<tokio::sync::Semaphore>,
    /// Items a stream's client may be behind by.
    pub stream_buffer: usize,
    /// How often an idle stream sends a keep-alive.
    pub stream_keepalive: std::time::Duration,
}

/// A live stream: its items, and its place among the process's streams (released with it).
pub struct Stream {
    pub items: tokio::sync::mpsc::Receiver<Item>,
    pub permit: tokio::sync::OwnedSemaphorePermit,
}

fn application_not_found() -> ApiError {
    ApiError::not_found("application not found")
}

fn chat_not_found() -> ApiError {
    ApiError::not_found("chat not found")
}

fn message_not_found() -> ApiError {
    ApiError::not_found("message not found")
}

impl Service {
    pub async fn create_application(&self, name: Name) -> Result<Application, ApiError> {
        let token = Token::generate();
        let event = ApplicationCreated {
            token: token.clone(),
            name: name.into_inner(),
            at: domain::now(),
        };
        let application = self.sink.create_application(event).await?;
        self.sequencer.application_created(&token).await?;
        Ok(application)
    }

    pub async fn application(&self, token: &Token) -> Result<Application, ApiError> {
        self.store
            .application(token)
            .await?
            .ok_or_else(application_not_found)
    }

    /// Every application, for operators (the HTTP layer checks the key).
    pub async fn applications(&self, page: Page) -> Result<Vec<Application>, ApiError> {
        Ok(self.store.applications(page).await?)
    }

    pub async fn rename_application(
        &self,
        token: &Token,
        name: Name,
    ) -> Result<Application, ApiError> {
        let event = ApplicationRenamed {
            token: token.clone(),
            name: name.into_inner(),
            at: domain::now(),
        };
        self.sink
            .rename_application(event)
            .await?
            .ok_or_else(application_not_found)
    }

    pub async fn create_chat(&self, token: &Token) -> Result<Chat, ApiError> {
        let number = self
            .sequencer
            .next_chat_number(token)
            .await?
            .ok_or_else(application_not_found)?;
        let event = ChatCreated {
            token: token.clone(),
            number,
            at: domain::now(),
        };
        self.sink
            .create_chat(event)
            .await?
            .ok_or_else(application_not_found)
    }

    pub async fn chats(&self, token: &Token, page: Page) -> Result<Vec<Chat>, ApiError> {
        self.store
            .chats(token, page)
            .await?
            .ok_or_else(application_not_found)
    }

    /// The chat, with the revision a client may resume from: never at or above a revision
    /// still in flight (scaled), so that starting the feed or a stream from it misses nothing.
    pub async fn chat(&self, token: &Token, number: u64) -> Result<Chat, ApiError> {
        let in_flight = self.sequencer.in_flight(token, number).await?;
        let mut chat = self
            .store
            .chat(token, number)
            .await?
            .ok_or_else(chat_not_found)?;
        if let Some(in_flight) = in_flight {
            chat.revision = chat.revision.min(in_flight.saturating_sub(1));
        }
        Ok(chat)
    }

    pub async fn create_message(
        &self,
        token: &Token,
        chat: u64,
        body: Body,
    ) -> Result<Message, ApiError> {
        let drawn = self
            .sequencer
            .next_message(token, chat)
            .await?
            .ok_or_else(chat_not_found)?;
        let event = MessageCreated {
            token: token.clone(),
            chat,
            number: drawn.number,
            body: body.into_inner(),
            at: domain::now(),
            revision: drawn.revision,
        };
        let created = self.sink.create_message(event).await;
        self.unless_published(
            token,
            chat,
            drawn.revision,
            created.as_ref().map(Option::is_some),
        )
        .await;
        created?.ok_or_else(chat_not_found)
    }

    pub async fn messages(
        &self,
        token: &Token,
        chat: u64,
        page: Page,
    ) -> Result<Vec<Message>, ApiError> {
        self.store
            .messages(token, chat, page)
            .await?
            .ok_or_else(chat_not_found)
    }

    pub async fn message(
        &self,
        token: &Token,
        chat: u64,
        number: u64,
    ) -> Result<Message, ApiError> {
        self.store
            .message(token, chat, number)
            .await?
            .ok_or_else(message_not_found)
    }

    pub async fn edit_message(
        &self,
        token: &Token,
        chat: u64,
        number: u64,
        body: Body,
    ) -> Result<Message, ApiError> {
        let revision = self
            .sequencer
            .next_revision(token, chat)
            .await?
            .ok_or_else(message_not_found)?;
        let event = MessageEdited {
            token: token.clone(),
            chat,
            number,
            body: body.into_inner(),
            at: domain::now(),
            revision,
        };
        let edited = self.sink.edit_message(event).await;
        self.unless_published(token, chat, revision, edited.as_ref().map(Option::is_some))
            .await;
        edited?.ok_or_else(message_not_found)
    }

    /// A revision drawn for a change that was certainly not published (nothing to change) is
    /// no longer in flight: readers of the chat must not wait for it. After an error the change
    /// may still have reached the broker (a produce that timed out on our side), so its revision
    /// stays in flight until it is stored or counts as abandoned (`IN_FLIGHT_LIMIT`).
    async fn unless_published<E>(
        &self,
        token: &Token,
        chat: u64,
        revision: u64,
        published: Result<bool, E>,
    ) {
        if revision != AT_APPLY && matches!(published, Ok(false)) {
            self.sequencer.abandon(token, chat, revision).await;
        }
    }

    /// The changes feed: up to `limit` changes after revision `since`.
    pub async fn changes(
        &self,
        token: &Token,
        chat: u64,
        since: u64,
        limit: u32,
    ) -> Result<Vec<Change>, ApiError> {
        // In flight first, the store second: a revision off the in-flight set is stored.
        let in_flight = self.sequencer.in_flight(token, chat).await?;
        let changes = self
            .store
            .changes(token, chat, since, limit)
            .await?
            .ok_or_else(chat_not_found)?;
        Ok(domain::settled(changes, in_flight).0)
    }

    pub async fn delete_message(
        &self,
        token: &Token,
        chat: u64,
        number: u64,
    ) -> Result<(), ApiError> {
        let revision = self
            .sequencer
            .next_revision(token, chat)
            .await?
            .ok_or_else(message_not_found)?;
        let event = MessageDeleted {
            token: token.clone(),
            chat,
            number,
            at: domain::now(),
            revision,
        };
        let deleted = self.sink.delete_message(event).await;
        self.unless_published(token, chat, revision, deleted.as_ref().map(|d| *d))
            .await;
        if deleted? {
            Ok(())
        } else {
            Err(message_not_found())
        }
    }

    /// Marks the chat deleted (one quick write, whatever its size) and wakes the purge that
    /// erases its messages in bounded steps.
    pub async fn delete_chat(&self, token: &Token, chat: u64) -> Result<(), ApiError> {
        let event = ChatDeleted {
            token: token.clone(),
            number: chat,
            at: domain::now(),
        };
        if !self.sink.delete_chat(event).await? {
            return Err(chat_not_found());
        }
        self.sequencer.chat_deleted(token, chat).await?;
        self.purge.notify_one();
        Ok(())
    }

    pub async fn delete_application(&self, token: &Token) -> Result<(), ApiError> {
        let event = ApplicationDeleted {
            token: token.clone(),
            at: domain::now(),
        };
        if !self.sink.delete_application(event).await? {
            return Err(application_not_found());
        }
        self.sequencer.application_deleted(token).await?;
        self.purge.notify_one();
        Ok(())
    }

    pub async fn search(
        &self,
        token: &Token,
        chat: u64,
        terms: &SearchTerms,
        page: Page,
    ) -> Result<Vec<Message>, ApiError> {
        self.search
            .search(token, chat, terms, page)
            .await?
            .ok_or_else(chat_not_found)
    }

    /// A live stream of the chat's changes after `since` (`None`: from now). `Unavailable`
    /// when the process holds its most streams already.
    pub async fn stream(
        &self,
        token: &Token,
        chat: u64,
        since: Option<u64>,
    ) -> Result<Stream, ApiError> {
        let permit = self.streams.clone().try_acquire_owned().map_err(|_| {
            ApiError::from(crate::error::BackendError::Unavailable(
                "this process holds its most streams; try another or later".into(),
            ))
        })?;
        let current = self.chat(token, chat).await?;
        let since = since.unwrap_or(current.revision);
        let items = follow(
            self.store.clone(),
            self.hub.clone(),
            Position {
                token: token.clone(),
                chat,
                since,
            },
            self.stream_buffer,
            self.sequencer.clone(),
        );
        Ok(Stream { items, permit })
    }

    /// Whether every backend answers.
    pub async fn ready(&self) -> bool {
        self.store.ping().await.is_ok() && self.sequencer.ready().await && self.search.ready().await
    }

    /// Stops accepting writes and returns once every accepted one is durable.
    pub async fn flush_and_stop(&self) {
        self.sink.flush_and_stop().await;
    }
}
