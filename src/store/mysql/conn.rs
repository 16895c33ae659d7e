//! The MySQL pool, its session settings, the migrations, and [`Inner`], what every file of the
//! scaled store shares: the pool and the cache of committed ids (ids never change and rows are
//! never deleted, so a cached id saves a look-up on every read and write batch).

use std::time::Duration;

use anyhow::Context;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};

use crate::domain::Token;
use crate::error::BackendError;
use crate::store::ids::IdCache;

pub(super) struct Inner {
    pub(super) pool: MySqlPool,
    pub(super) ids: IdCache,
}

impl Inner {
    /// Connects and applies pending migrations (idempotent; safe from many processes, since
    /// sqlx takes a MySQL advisory lock while migrating).
    pub(super) async fn open(url: &str) -> anyhow::Result<Self> {
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
