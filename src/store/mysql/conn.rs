//! The MySQL pool, its session settings, the migrations, and [`Inner`], what every file of the
//! scaled store shares: the pool and the cache of committed ids, which saves write batches a
//! look-up. Reads ask the database whether a chat is live (`live_chat_id`): a deletion may have
//! been applied by another process, whose cache this one cannot see.

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

    /// The id of an application that exists now, read from the database (not the cache):
    /// another process may have deleted it.
    pub(super) async fn live_app_id(&self, token: &Token) -> Result<Option<i64>, BackendError> {
        Ok(
            sqlx::query_scalar(
                "SELECT id FROM applications WHERE token = ? AND deleted_at IS NULL",
            )
            .bind(token.as_str())
            .fetch_optional(&self.pool)
            .await?,
        )
    }

    /// The id of a chat that exists now (neither it nor its application deleted), read from
    /// the database: reads must not show what another process deleted.
    pub(super) async fn live_chat_id(
        &self,
        token: &Token,
        number: u64,
    ) -> Result<Option<i64>, BackendError> {
        Ok(sqlx::query_scalar(
            "SELECT c.id FROM chats c JOIN applications a ON a.id = c.application_id \
             WHERE a.token = ? AND c.number = ? AND c.deleted_at IS NULL AND a.deleted_at IS NULL",
        )
        .bind(token.as_str())
        .bind(number as i64)
        .fetch_optional(&self.pool)
        .await?)
    }
}
