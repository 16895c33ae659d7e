//! What the test suites (`tests/api`, and this crate's `tests/runners`) read from the
//! environment: the shape of the run and the services of the scaled shape, and the one way a
//! test says it did not run.
//!
//! Why a helper for skips: libtest captures what `eprintln!` prints and shows only `ok` for a
//! test that returned early, so a skipped test looked exactly like a passing one. [`skip`] writes
//! to the process's stderr handle, which libtest does not capture, so every skip shows in the
//! output of `cargo test` as `skipped <test>: <reason>`. And a skip must not hide a broken CI:
//! under `CI=true` a missing service or tool fails the test instead ([`missing`]); only the
//! skips that no machine of CI can avoid (the other shape's tests, a real Elasticsearch) remain.
//!
//! The summary: when `CHAT_TEST_SKIP_LOG` names a file, each skip also appends its line there,
//! and `.ci/run` prints the count and the lines at the end of its run (test binaries run as
//! several processes, so no one of them could print a total).

use std::io::Write;

/// Whether this run drives the scaled shape (`CHAT_TEST_SHAPE=scaled`): then every test of the
/// HTTP suite runs against API processes and workers on MariaDB, Redis and the broker, and a
/// test that only makes sense in the embedded shape says `skipped`.
pub fn scaled() -> bool {
    std::env::var("CHAT_TEST_SHAPE").as_deref() == Ok("scaled")
}

/// Whether this is a CI run (`CI=true`, which `.ci/run` exports): every service must be there.
pub fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// For embedded-only tests (or checks): true, after saying `skipped <test>: scaled shape —
/// <why>`, when this run is the scaled one. `why` names what is left out and why, and where
/// the scaled shape's equivalent is, if it has one.
pub fn embedded_only(test: &str, why: &str) -> bool {
    if scaled() {
        skip(test, &format!("scaled shape — {why}"));
    }
    scaled()
}

/// A test (or a check of one) that cannot run because `reason` (a service or tool is missing):
/// a failure under `CI=true`, else a visible [`skip`]. The caller returns after it.
#[track_caller]
pub fn missing(test: &str, reason: &str) {
    assert!(
        !ci(),
        "{}: {reason} (CI=true: .ci/run provides every service and tool)",
        name(test)
    );
    skip(test, reason);
}

/// Says `skipped <test>: <reason>` where the output of `cargo test` shows it: on the process's
/// stderr, which libtest does not capture (it captures only the `print!` family), in one write
/// so that tests running in parallel do not interleave their lines. Appends the same line to
/// `CHAT_TEST_SKIP_LOG` when that is set, for the run's summary.
pub fn skip(test: &str, reason: &str) {
    let line = format!("skipped {}: {reason}\n", name(test));
    // Neither write may fail the test: the skip is a report, and stderr may be closed.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
    if let Some(log) = std::env::var_os("CHAT_TEST_SKIP_LOG").filter(|v| !v.is_empty()) {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log);
        // O_APPEND and one short write: lines of parallel test processes do not mix.
        if let Ok(mut file) = file {
            let _ = file.write_all(line.as_bytes());
        }
    }
}

/// The test's full name as libtest gives it (`crash::kill_9_…`, the name of the thread it runs
/// the test on), so that the line says which test to look at; `test` (what the caller calls
/// it) is added when it says something else, and stands alone off a test thread.
fn name(test: &str) -> String {
    match std::thread::current().name() {
        Some(thread) if thread != "main" && !thread.starts_with("tokio-") => {
            if thread == test || thread.ends_with(&format!("::{test}")) {
                thread.to_owned()
            } else {
                format!("{thread} ({test})")
            }
        }
        _ => test.to_owned(),
    }
}

/// The services a scaled test needs: MariaDB's server URL (no database), Redis, the broker.
pub struct Services {
    pub mysql: String,
    pub redis: String,
    pub kafka: String,
}

/// The services named by `CHAT_TEST_MYSQL_URL`, `CHAT_TEST_REDIS_URL` and
/// `CHAT_TEST_KAFKA_BROKERS`, or `None` (after saying `skipped`) when they are not all set.
/// Under `CI=true` a missing service fails the test instead ([`missing`]).
#[track_caller]
pub fn services(test: &str) -> Option<Services> {
    // A match, not `map_err`: `#[track_caller]` does not reach through a closure.
    match configured_services() {
        Ok(services) => Some(services),
        Err(unset) => {
            missing(test, &unset);
            None
        }
    }
}

/// The services of the `CHAT_TEST_*` variables, or which of them are not set: for a caller
/// that cannot skip (the scaled run itself needs them).
pub fn configured_services() -> Result<Services, String> {
    let names = [
        "CHAT_TEST_MYSQL_URL",
        "CHAT_TEST_REDIS_URL",
        "CHAT_TEST_KAFKA_BROKERS",
    ];
    let [mysql, redis, kafka] = names.map(var);
    if let (Some(mysql), Some(redis), Some(kafka)) = (mysql, redis, kafka) {
        return Ok(Services {
            mysql: mysql.trim_end_matches('/').to_owned(),
            redis,
            kafka,
        });
    }
    let unset: Vec<&str> = names.into_iter().filter(|n| var(n).is_none()).collect();
    Err(format!("{} not set", unset.join(", ")))
}

/// The value of a `CHAT_TEST_*` variable, or `None` when it is unset or empty.
pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The MariaDB server of `CHAT_TEST_MYSQL_URL` (the store contract's second backend), or
/// `None` after [`missing`] says so.
#[track_caller]
pub fn mysql_server(test: &str) -> Option<String> {
    let server = var("CHAT_TEST_MYSQL_URL");
    if server.is_none() {
        missing(test, "CHAT_TEST_MYSQL_URL not set");
    }
    server
}

#[cfg(test)]
mod tests {
    use super::name;

    #[test]
    fn the_name_is_the_test_threads_with_what_the_caller_said_when_it_differs() {
        let thread = std::thread::current().name().map(str::to_owned);
        assert_eq!(
            thread.as_deref(),
            Some("testing::tests::the_name_is_the_test_threads_with_what_the_caller_said_when_it_differs")
        );
        let full = thread.unwrap_or_default();
        assert_eq!(name(&full), full);
        assert_eq!(
            name("the_name_is_the_test_threads_with_what_the_caller_said_when_it_differs"),
            full
        );
        assert_eq!(name("the store"), format!("{full} (the store)"));
    }
}
