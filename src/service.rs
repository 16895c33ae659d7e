//! What each request does, in terms of the ports. Handlers parse and render; this decides.
//!
//! [`Service`] holds the ports (store, sequencer, event sink, search) and nothing else: it never
//! names a backend type, so the same use cases run in both shapes.

use std::sync::Arc;

use anyhow::anyhow;

use crate::domain::{self, Application, Body, Chat, Message, Name, Page, SearchTerms, Token};
use crate::error::ApiError;
use crate::events::{Applied, Event, EventSink};
use crate::search::Search;
use crate::sequencer::Sequencer;
use crate::store::Store;

/// The ports every request is served with.
pub struct Service {
    pub store: Arc<dyn Store>,
    pub sequencer: Arc<dyn Sequencer>,
    pub sink: Arc<dyn EventSink>,
    pub search: Arc<dyn Search>,
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

fn unexpected(applied: Applied) -> ApiError {
    ApiError::Internal(anyhow!("unexpected outcome from the store: {applied:?}"))
}

impl Service {
    pub async fn create_application(&self, name: Name) -> Result<Application, ApiError> {
        let event = Event::ApplicationCreated {
            token: Token::generate().to_string(),
            name: name.into_inner(),
            at: domain::now(),
        };
        let application = match self.sink.send(event).await? {
            Applied::Application(application) => application,
            other => return Err(unexpected(other)),
        };
        let token =
            Token::parse(&application.token).ok_or_else(|| unexpected(Applied::NotFound))?;
        self.sequencer.application_created(&token).await?;
        Ok(application)
    }

    pub async fn application(&self, token: &Token) -> Result<Application, ApiError> {
        self.store
            .application(token)
            .await?
            .ok_or_else(application_not_found)
    }

    pub async fn rename_application(
        &self,
        token: &Token,
        name: Name,
    ) -> Result<Application, ApiError> {
        let event = Event::ApplicationRenamed {
            token: token.to_string(),
            name: name.into_inner(),
            at: domain::now(),
        };
        match self.sink.send(event).await? {
            Applied::Application(application) => Ok(application),
            Applied::NotFound => Err(application_not_found()),
            other => Err(unexpected(other)),
        }
    }

    pub async fn create_chat(&self, token: &Token) -> Result<Chat, ApiError> {
        let number = self
            .sequencer
            .next_chat_number(token)
            .await?
            .ok_or_else(application_not_found)?;
        let event = Event::ChatCreated {
            token: token.to_string(),
            number,
            at: domain::now(),
        };
        match self.sink.send(event).await? {
            Applied::Chat(chat) => Ok(chat),
            Applied::NotFound => Err(application_not_found()),
            other => Err(unexpected(other)),
        }
    }

    pub async fn chats(&self, token: &Token, page: Page) -> Result<Vec<Chat>, ApiError> {
        self.store
            .chats(token, page)
            .await?
            .ok_or_else(application_not_found)
    }

    pub async fn chat(&self, token: &Token, number: u64) -> Result<Chat, ApiError> {
        self.store
            .chat(token, number)
            .await?
            .ok_or_else(chat_not_found)
    }

    pub async fn create_message(
        &self,
        token: &Token,
        chat: u64,
        body: Body,
    ) -> Result<Message, ApiError> {
        let number = self
            .sequencer
            .next_message_number(token, chat)
            .await?
            .ok_or_else(chat_not_found)?;
        let event = Event::MessageCreated {
            token: token.to_string(),
            chat,
            number,
            body: body.into_inner(),
            at: domain::now(),
        };
        match self.sink.send(event).await? {
            Applied::Message(message) => Ok(message),
            Applied::NotFound => Err(chat_not_found()),
            other => Err(unexpected(other)),
        }
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
        let event = Event::MessageEdited {
            token: token.to_string(),
            chat,
            number,
            body: body.into_inner(),
            at: domain::now(),
        };
        match self.sink.send(event).await? {
            Applied::Message(message) => Ok(message),
            Applied::NotFound => Err(message_not_found()),
            other => Err(unexpected(other)),
        }
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

    /// Whether every backend answers.
    pub async fn ready(&self) -> bool {
        self.store.ping().await.is_ok() && self.sequencer.ready().await && self.search.ready().await
    }

    /// Stops accepting writes and returns once every accepted one is durable.
    pub async fn flush_and_stop(&self) {
        self.sink.flush_and_stop().await;
    }
}
