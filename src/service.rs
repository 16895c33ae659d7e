//! What each request does, in terms of the ports. Handlers parse and render; this decides.
//!
//! [`Service`] holds the ports (store, sequencer, event sink, search) and nothing else: it never
//! names a backend type, so the same use cases run in both shapes.

use std::sync::Arc;

use crate::domain::event::{
    ApplicationCreated, ApplicationRenamed, ChatCreated, MessageCreated, MessageEdited,
};
use crate::domain::{self, Application, Body, Chat, Message, Name, Page, SearchTerms, Token};
use crate::error::ApiError;
use crate::events::EventSink;
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
        let event = MessageCreated {
            token: token.clone(),
            chat,
            number,
            body: body.into_inner(),
            at: domain::now(),
        };
        self.sink
            .create_message(event)
            .await?
            .ok_or_else(chat_not_found)
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
        let event = MessageEdited {
            token: token.clone(),
            chat,
            number,
            body: body.into_inner(),
            at: domain::now(),
        };
        self.sink
            .edit_message(event)
            .await?
            .ok_or_else(message_not_found)
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
