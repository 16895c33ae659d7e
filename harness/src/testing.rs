//! What the test suites (`tests/api`, and this crate's `tests/runners`) read from the
//! environment: the shape of the run and the services of the scaled shape.

/// Whether this run drives the scaled shape (`CHAT_TEST_SHAPE=scaled`): then every test of the
/// HTTP suite runs against API processes and workers on MariaDB, Redis and the broker, and a
/// test that only makes sense in the embedded shape says `skipped`.
pub fn scaled() -> bool {
    std::env::var("CHAT_TEST_SHAPE").as_deref() == Ok("scaled")
}

/// For embedded-only tests: true (after saying so) when this run is the scaled one.
pub fn embedded_only(test: &str) -> bool {
    if scaled() {
        eprintln!("skipped {test}: embedded shape only");
    }
    scaled()
}

/// The services a scaled test needs: MariaDB's server URL (no database), Redis, the broker.
pub struct Services {
    pub mysql: String,
    pub redis: String,
    pub kafka: String,
}

/// The services named by `CHAT_TEST_MYSQL_URL`, `CHAT_TEST_REDIS_URL` and
/// `CHAT_TEST_KAFKA_BROKERS`, or `None` (after saying `skipped`) when they are not all set.
/// Under `CI=true` a missing service fails the test instead.
pub fn services(test: &str) -> Option<Services> {
    let get = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let found = (
        get("CHAT_TEST_MYSQL_URL"),
        get("CHAT_TEST_REDIS_URL"),
        get("CHAT_TEST_KAFKA_BROKERS"),
    );
    if let (Some(mysql), Some(redis), Some(kafka)) = found {
        return Some(Services {
            mysql: mysql.trim_end_matches('/').to_owned(),
            redis,
            kafka,
        });
    }
    let missing =
        "CHAT_TEST_MYSQL_URL, CHAT_TEST_REDIS_URL and CHAT_TEST_KAFKA_BROKERS must all be set";
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: {missing} when CI=true"
    );
    eprintln!("skipped {test}: {missing}");
    None
}
