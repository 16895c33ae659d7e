//! The scaled store: MySQL or MariaDB, shared by any number of API and worker processes.
//!
//! Reads go through a pool; token and chat ids are cached in the process (ids never change and
//! rows are never deleted). Writes are `store.apply` batches from the workers (chats, messages)
//! or from the API itself (applications, created synchronously).

use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use chrono::NaiveDateTime;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};

use super::ids::IdCache;
use super::{Store, SyncReport};
use crate::domain::{self, Application, Chat, Message, Page, Token};
use crate::error::BackendError;
use crate::events::{Applied, Event};
use crate::idempotency::{StoredResponse, RETENTION};

pub struct MysqlStore {
    pub(super) pool: MySqlPool,
    pub(super) ids: IdCache,
}

pub(super) type ApplicationRow = (String, String, i64, NaiveDateTime, NaiveDateTime);
pub(super) type ChatRow = (i64, i64, NaiveDateTime, NaiveDateTime);
pub(super) type MessageRow = (i64, String, NaiveDateTime, NaiveDateTime);

pub(super) fn application(row: ApplicationRow) -> Application {
    let (token, name, chats_count, created_at, updated_at) = row;
    Application {
        token,
        name,
        chats_count: chats_count as u64,
        created_at: created_at.and_utc(),
        updated_at: updated_at.and_utc(),
    }
}

fn chat(row: ChatRow) -> Chat {
    let (number, messages_count, created_at, updated_at) = row;
    Chat::new(
        number as u64,
        messages_count as u64,
        created_at.and_utc(),
        updated_at.and_utc(),
    )
}

pub(super) fn message(chat: u64, row: MessageRow) -> Message {
    let (number, body, created_at, updated_at) = row;
    Message::new(
        chat,
        number as u64,
        body,
        created_at.and_utc(),
        updated_at.and_utc(),
    )
}

impl MysqlStore {
    /// Connects and applies pending migrations (idempotent; safe from many processes, since
    /// sqlx takes a MySQL advisory lock while migrating).
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let options: MySqlConnectOptions = url
            .parse()
            .with_context(|| "DATABASE_URL is not a valid mysql:// URL".to_owned())?;
        let pool = MySqlPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            // A batch waiting on another's row lock fails fast and is retried whole, instead
            // of waiting InnoDB's default 50 s.
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query("SET SESSION innodb_lock_wait_timeout = 5")
                        .execute(conn)
                        .await?;
                    Ok(())
                })
            })
            .connect_with(options.charset("utf8mb4"))
            .await
            .context("cannot connect to MySQL (DATABASE_URL)")?;
        sqlx::migrate!("./migrations/mysql")
            .run(&pool)
            .await
            .context("cannot apply the MySQL migrations")?;
        Ok(Self {
            pool,
            ids: IdCache::default(),
        })
    }

    pub(super) async fn app_id(&self, token: &Token) -> Result<Option<i64>, BackendError> {
        if let Some(id) = self.ids.app(token.as_str()) {
            return Ok(Some(id));
        }
        let id: Option<i64> = sqlx::query_scalar("SELECT id FROM applications WHERE token = ?")
            .bind(token.as_str())
            .fetch_optional(&self.pool)
            .await?;
        if let Some(id) = id {
            self.ids.remember_app(token.as_str(), id);
        }
        Ok(id)
    }

    pub(super) async fn chat_id(
        &self,
        token: &Token,
        number: u64,
    ) -> Result<Option<i64>, BackendError> {
        let Some(app_id) = self.app_id(token).await? else {
            return Ok(None);
        };
        if let Some(id) = self.ids.chat(app_id, number) {
            return Ok(Some(id));
        }
        let id: Option<i64> =
            sqlx::query_scalar("SELECT id FROM chats WHERE application_id = ? AND number = ?")
                .bind(app_id)
                .bind(number as i64)
                .fetch_optional(&self.pool)
                .await?;
        if let Some(id) = id {
            self.ids.remember_chat(app_id, number, id);
        }
        Ok(id)
    }
}

#[async_trait]
impl Store for MysqlStore {
    async fn apply(&self, batch: &[Event]) -> Result<Vec<Applied>, BackendError> {
        super::mysql_apply::apply(self, batch).await
    }

    async fn application(&self, token: &Token) -> Result<Option<Application>, BackendError> {
        let row: Option<ApplicationRow> = sqlx::query_as(
            "SELECT CAST(token AS CHAR), name, chats_count, created_at, updated_at FROM applications WHERE token = ?",
        )
        .bind(token.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(application))
    }

    async fn chats(&self, token: &Token, page: Page) -> Result<Option<Vec<Chat>>, BackendError> {
        let Some(app_id) = self.app_id(token).await? else {
            return Ok(None);
        };
        let rows: Vec<ChatRow> = sqlx::query_as(
            "SELECT number, messages_count, created_at, updated_at FROM chats \
             WHERE application_id = ? AND number > ? ORDER BY number LIMIT ? OFFSET ?",
        )
        .bind(app_id)
        .bind(page.after as i64)
        .bind(i64::from(page.limit))
        .bind(page.offset as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(Some(rows.into_iter().map(chat).collect()))
    }

    async fn chat(&self, token: &Token, number: u64) -> Result<Option<Chat>, BackendError> {
        let Some(chat_id) = self.chat_id(token, number).await? else {
            return Ok(None);
        };
        let row: Option<ChatRow> = sqlx::query_as(
            "SELECT number, messages_count, created_at, updated_at FROM chats WHERE id = ?",
        )
        .bind(chat_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(chat))
    }

    async fn messages(
        &self,
        token: &Token,
        chat: u64,
        page: Page,
    ) -> Result<Option<Vec<Message>>, BackendError> {
        let Some(chat_id) = self.chat_id(token, chat).await? else {
            return Ok(None);
        };
        let rows: Vec<MessageRow> = sqlx::query_as(
            "SELECT number, body, created_at, updated_at FROM messages \
             WHERE chat_id = ? AND number > ? ORDER BY number LIMIT ? OFFSET ?",
        )
        .bind(chat_id)
        .bind(page.after as i64)
        .bind(i64::from(page.limit))
        .bind(page.offset as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(Some(
            rows.into_iter().map(|row| message(chat, row)).collect(),
        ))
    }

    async fn message(
        &self,
        token: &Token,
        chat: u64,
        number: u64,
    ) -> Result<Option<Message>, BackendError> {
        let Some(chat_id) = self.chat_id(token, chat).await? else {
            return Ok(None);
        };
        let row: Option<MessageRow> = sqlx::query_as(
            "SELECT number, body, created_at, updated_at FROM messages WHERE chat_id = ? AND number = ?",
        )
        .bind(chat_id)
        .bind(number as i64)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| message(chat, row)))
    }

    async fn last_chat_number(&self, token: &Token) -> Result<Option<u64>, BackendError> {
        let Some(app_id) = self.app_id(token).await? else {
            return Ok(None);
        };
        let last: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(MAX(number), 0) AS SIGNED) FROM chats WHERE application_id = ?",
        )
        .bind(app_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(Some(last as u64))
    }

    async fn last_message_number(
        &self,
        token: &Token,
        chat: u64,
    ) -> Result<Option<u64>, BackendError> {
        let Some(chat_id) = self.chat_id(token, chat).await? else {
            return Ok(None);
        };
        let last: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(MAX(number), 0) AS SIGNED) FROM messages WHERE chat_id = ?",
        )
        .bind(chat_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(Some(last as u64))
    }

    async fn counters(&self) -> Result<super::Counters, BackendError> {
        let applications: Vec<(String, i64)> = sqlx::query_as(
            "SELECT CAST(a.token AS CHAR), CAST(COALESCE(MAX(c.number), 0) AS SIGNED) FROM applications a \
             LEFT JOIN chats c ON c.application_id = a.id GROUP BY a.id, a.token",
        )
        .fetch_all(&self.pool)
        .await?;
        let chats: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT CAST(a.token AS CHAR), c.number, CAST(COALESCE((SELECT MAX(m.number) FROM messages m WHERE m.chat_id = c.id), 0) AS SIGNED) \
             FROM chats c JOIN applications a ON a.id = c.application_id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(super::Counters::from_rows(applications, chats))
    }

    async fn export_messages(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<super::ExportedMessage>, BackendError> {
        type Row = (i64, String, i64, i64, String, NaiveDateTime, NaiveDateTime);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT m.id, CAST(a.token AS CHAR), c.number, m.number, m.body, m.created_at, m.updated_at \
             FROM messages m JOIN chats c ON c.id = m.chat_id JOIN applications a ON a.id = c.application_id \
             WHERE m.id > ? ORDER BY m.id LIMIT ?",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(id, token, chat, number, body, created, updated)| super::ExportedMessage {
                    id,
                    token,
                    chat: chat as u64,
                    number: number as u64,
                    body,
                    created_at: created.and_utc(),
                    updated_at: updated.and_utc(),
                },
            )
            .collect())
    }

    async fn sync_counts(&self) -> Result<SyncReport, BackendError> {
        super::mysql_apply::sync_counts(&self.pool).await
    }

    async fn stored_response(&self, key: &str) -> Result<Option<StoredResponse>, BackendError> {
        let since = (domain::now() - RETENTION).naive_utc();
        let row: Option<(String, i64, String)> = sqlx::query_as(
            "SELECT request, CAST(status AS SIGNED), body FROM idempotency_keys WHERE `key` = ? AND created_at > ?",
        )
        .bind(key)
        .bind(since)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(request, status, body)| StoredResponse {
            request,
            status: status as u16,
            body,
        }))
    }

    async fn store_response(
        &self,
        key: &str,
        response: &StoredResponse,
    ) -> Result<(), BackendError> {
        let now = domain::now();
        sqlx::query("DELETE FROM idempotency_keys WHERE created_at < ? LIMIT 1000")
            .bind((now - RETENTION).naive_utc())
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO idempotency_keys (`key`, request, status, body, created_at) VALUES (?, ?, ?, ?, ?) \
             ON DUPLICATE KEY UPDATE request = VALUES(request), status = VALUES(status), body = VALUES(body), \
             created_at = VALUES(created_at)",
        )
        .bind(key)
        .bind(&response.request)
        .bind(i64::from(response.status))
        .bind(&response.body)
        .bind(now.naive_utc())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), BackendError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
