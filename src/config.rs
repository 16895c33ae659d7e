//! Configuration: one struct, read once from flags, the environment and a `.env` file (flags win),
//! validated at start-up. Nothing reads the environment after this.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::bail;

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Port the HTTP server listens on (0 picks a free one).
    #[arg(long, env = "PORT", default_value_t = 3000, global = true)]
    pub port: u16,

    /// Address the HTTP server binds.
    #[arg(long, env = "HOST", default_value = "0.0.0.0", global = true)]
    pub host: IpAddr,

    /// Directory of the embedded database (used when DATABASE_URL is unset).
    #[arg(long, env = "DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,

    /// `sqlite://PATH` (embedded, the default: `sqlite://DATA_DIR/chat.db`).
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,

    /// `redis://HOST:PORT`: numbers from Redis (scaled shape). Unset: numbers from the process.
    #[arg(long, env = "REDIS_URL", global = true)]
    pub redis_url: Option<String>,

    /// `HOST:PORT[,HOST:PORT…]`: events through Kafka (scaled shape). Unset: written directly.
    #[arg(long, env = "KAFKA_BROKERS", global = true)]
    pub kafka_brokers: Option<String>,

    /// `http://HOST:9200`: search in Elasticsearch 8 or OpenSearch 2 (index `NAMESPACEchat-messages`,
    /// fed by the workers). Unset: search in the database.
    #[arg(long, env = "ELASTICSEARCH_URL", global = true)]
    pub elasticsearch_url: Option<String>,

    /// Prefix of the Kafka topics, consumer groups and Redis keys (several deployments, or
    /// test runs, can then share one broker and one Redis).
    #[arg(long, env = "NAMESPACE", default_value = "", global = true)]
    pub namespace: String,

    /// The idempotent producer (`enable.idempotence`). Turn it off only for a broker that
    /// mishandles it: tansu 0.6 panics on a producer id from before its restart.
    #[arg(long, env = "KAFKA_IDEMPOTENCE", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub kafka_idempotence: bool,

    /// Partitions of each topic created by `migrate`: the most workers a topic can use.
    #[arg(long, env = "KAFKA_PARTITIONS", default_value_t = 8, global = true)]
    pub kafka_partitions: i32,

    /// Worker `I` of `WORKER_COUNT` takes the partitions `p % WORKER_COUNT == I` itself instead
    /// of letting the consumer group assign them (use with brokers whose group rebalancing is
    /// unreliable; restart a dead worker with the same index). Unset: group assignment.
    #[arg(long, env = "WORKER_INDEX", global = true, requires = "worker_count")]
    pub worker_index: Option<u32>,

    /// How many workers share the partitions when WORKER_INDEX is set.
    #[arg(long, env = "WORKER_COUNT", global = true)]
    pub worker_count: Option<u32>,

    /// Seconds between the workers' runs of `sync-counts`.
    #[arg(long, env = "SYNC_COUNTS_EVERY", default_value_t = 3600, global = true)]
    pub sync_counts_every: u64,

    /// Requests per second allowed to one client address (0: no limit). Beyond it: 429.
    #[arg(
        long,
        env = "RATE_LIMIT_PER_CLIENT",
        default_value_t = 0,
        global = true
    )]
    pub rate_limit_per_client: u32,

    /// Requests per second allowed to one application token (0: no limit). Beyond it: 429.
    #[arg(long, env = "RATE_LIMIT_PER_TOKEN", default_value_t = 0, global = true)]
    pub rate_limit_per_token: u32,

    /// Seconds a request may take, reading its body included, before it is answered 408.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value_t = 30, global = true)]
    pub request_timeout: u64,

    /// Seconds a connection may stay silent before it is closed (idle keep-alive connections,
    /// clients that stop sending).
    #[arg(long, env = "IDLE_TIMEOUT", default_value_t = 60, global = true)]
    pub idle_timeout: u64,

    /// The operators' key: with `Authorization: Bearer <key>`, `GET /applications` lists every
    /// application. Unset: no such access at all.
    #[arg(long, env = "ADMIN_KEY", global = true, hide_env_values = true)]
    pub admin_key: Option<String>,

    /// Live streams (SSE and WebSocket) one process holds at once; past it, 503 with Retry-After.
    #[arg(long, env = "MAX_STREAMS", default_value_t = 10_000, global = true)]
    pub max_streams: usize,

    /// Seconds between keep-alives on an idle stream (an SSE comment, a WebSocket ping).
    #[arg(long, env = "STREAM_KEEPALIVE", default_value_t = 15, global = true)]
    pub stream_keepalive: u64,

    /// Log format: `text` for people, `json` for log pipelines.
    #[arg(long, env = "LOG_FORMAT", default_value = "text", global = true)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where the rows live, decided by the scheme of `DATABASE_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    Sqlite { url: String, file: PathBuf },
    Mysql { url: String },
}

impl Config {
    /// The database this configuration names, or a sentence saying what to change.
    pub fn database(&self) -> anyhow::Result<Database> {
        let Some(url) = self.database_url.as_deref().filter(|url| !url.is_empty()) else {
            let file = self.data_dir.join("chat.db");
            return Ok(Database::Sqlite {
                url: format!("sqlite://{}", file.display()),
                file,
            });
        };
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            let file = PathBuf::from(path.split('?').next().unwrap_or(path));
            return Ok(Database::Sqlite {
                url: url.to_owned(),
                file,
            });
        }
        if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            let url = url.replacen("mariadb://", "mysql://", 1);
            return Ok(Database::Mysql { url });
        }
        let scheme = url.split("://").next().unwrap_or(url);
        bail!(
            "DATABASE_URL uses the scheme {scheme:?}, which this build does not support; \
             use sqlite://PATH or mysql://USER:PASSWORD@HOST/DATABASE, or unset DATABASE_URL \
             for the embedded database in DATA_DIR"
        )
    }

    /// `REDIS_URL`, if set.
    pub fn redis(&self) -> Option<&str> {
        self.redis_url.as_deref().filter(|v| !v.is_empty())
    }

    /// `ELASTICSEARCH_URL`, if set.
    pub fn elasticsearch(&self) -> Option<&str> {
        self.elasticsearch_url.as_deref().filter(|v| !v.is_empty())
    }

    /// The search index of this deployment.
    pub fn search_index(&self) -> String {
        format!("{}chat-messages", self.namespace.to_lowercase())
    }

    /// `KAFKA_BROKERS`, if set.
    pub fn kafka(&self) -> Option<&str> {
        self.kafka_brokers.as_deref().filter(|v| !v.is_empty())
    }

    /// Fails on settings that name a backend this build cannot use, instead of ignoring them.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.database()?;
        if self.kafka().is_some() && !cfg!(feature = "kafka") {
            bail!(
                "KAFKA_BROKERS is set, but this build has no Kafka support; \
                 build with `--features kafka` (the default) or unset KAFKA_BROKERS"
            );
        }
        if let (Some(index), Some(count)) = (self.worker_index, self.worker_count) {
            if index >= count {
                bail!("WORKER_INDEX ({index}) must be below WORKER_COUNT ({count})");
            }
        }
        if let Some(url) = self.redis() {
            if !url.starts_with("redis://") && !url.starts_with("rediss://") {
                bail!("REDIS_URL must start with redis:// (got {url:?})");
            }
        }
        if self.elasticsearch().is_some() && self.kafka().is_none() {
            bail!(
                "ELASTICSEARCH_URL needs KAFKA_BROKERS: the workers feed the search index; \
                 unset ELASTICSEARCH_URL to search in the database"
            );
        }
        if let Some(url) = self.elasticsearch() {
            if !url.starts_with("http://") {
                bail!("ELASTICSEARCH_URL must start with http:// (got {url:?}); this build speaks no TLS");
            }
        }
        Ok(())
    }
}

impl Config {
    /// This worker's share of the partitions, when static assignment is configured.
    pub fn worker_share(&self) -> Option<(u32, u32)> {
        self.worker_index.zip(self.worker_count)
    }
}
