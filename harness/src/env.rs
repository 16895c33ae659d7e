//! The environment of a child `chat-system`.

/// Every variable the server's configuration reads (`src/config.rs`): any of them set in the
/// parent would point a child at other backends or change how it runs, so each child starts
/// with all of them removed and gets exactly the ones its shape names. This is the only list;
/// `tests/api` checks it against the server's configuration.
pub const BACKEND_VARIABLES: [&str; 21] = [
    "PORT",
    "HOST",
    "DATA_DIR",
    "DATABASE_URL",
    "REDIS_URL",
    "KAFKA_BROKERS",
    "ELASTICSEARCH_URL",
    "NAMESPACE",
    "KAFKA_IDEMPOTENCE",
    "KAFKA_PARTITIONS",
    "WORKER_INDEX",
    "WORKER_COUNT",
    "SYNC_COUNTS_EVERY",
    "RATE_LIMIT_PER_CLIENT",
    "RATE_LIMIT_PER_TOKEN",
    "REQUEST_TIMEOUT",
    "IDLE_TIMEOUT",
    "ADMIN_KEY",
    "MAX_STREAMS",
    "STREAM_KEEPALIVE",
    "LOG_FORMAT",
];

/// The scaled shape: a MariaDB database, Redis, a Kafka-compatible broker, and the namespace of
/// the topics, consumer groups and Redis keys. Callers add what else their run needs.
pub fn scaled(
    database_url: &str,
    redis_url: &str,
    brokers: &str,
    namespace: &str,
) -> Vec<(String, String)> {
    [
        ("DATABASE_URL", database_url),
        ("REDIS_URL", redis_url),
        ("KAFKA_BROKERS", brokers),
        ("NAMESPACE", namespace),
    ]
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .to_vec()
}
