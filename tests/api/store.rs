//! The store contract, run against every SQL backend: SQLite always, MySQL when
//! `CHAT_TEST_MYSQL_URL` points at a server. `apply` is idempotent, and a message that arrives
//! before its chat creates the chat from its coordinates.

use std::sync::Arc;

use chat_system::domain::event::{self, Applied, Event};
use chat_system::domain::{self, Page, Token};
use chat_system::store::{MysqlStore, SqliteStore, Store};
use sqlx::Connection;

/// A fresh MySQL database on `CHAT_TEST_MYSQL_URL`, as a URL; `None` (after saying `skipped`)
/// when the variable is not set. Under `CI=true` a missing server fails the test instead.
async fn mysql_database(what: &str) -> Option<String> {
    let server = chat_harness::testing::mysql_server(what)?;
    let database = format!("chat_store_{:x}", rand::random::<u64>());
    let database = chat_harness::mariadb::Database::fresh(&server, &database)
        .await
        .expect("create");
    Some(database.url())
}

pub async fn stores() -> Vec<(&'static str, Arc<dyn Store>, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("chat.db").display());
    let sqlite: Arc<dyn Store> = Arc::new(SqliteStore::open(&url).await.expect("sqlite opens"));
    let mut stores = vec![("sqlite", sqlite, Some(dir))];
    if let Some(url) = mysql_database("the MySQL store contract").await {
        let mysql = MysqlStore::open(&url).await.expect("mysql opens");
        stores.push(("mysql", Arc::new(mysql), None));
    }
    stores
}

/// A message creation as the scaled shape publishes it: with its revision (here its number).
pub fn message(token: &Token, chat: u64, number: u64, body: &str) -> Event {
    Event::MessageCreated(event::MessageCreated {
        token: token.clone(),
        chat,
        number,
        body: body.into(),
        at: domain::now(),
        revision: number,
    })
}

/// Which resource an outcome is, and when it was created: equal for a replay that created
/// nothing again, whatever state the resource has reached since.
fn identity(outcome: &Applied) -> String {
    match outcome {
        Applied::Application(a) => format!("application {} {}", a.token, a.created_at),
        Applied::Chat(c) => format!("chat {} {}", c.number, c.created_at),
        Applied::Message(m) => format!("message {}/{} {}", m.chat_number, m.number, m.created_at),
        Applied::Deleted => "deleted".to_owned(),
        Applied::MessageDeleted(t) => format!("deleted message {}/{}", t.chat_number, t.number),
        Applied::NotFound => "not found".to_owned(),
    }
}

const FIRST: Page = Page::first(0, 0, 100);

#[tokio::test]
async fn replaying_a_batch_changes_nothing() {
    for (name, store, _dir) in stores().await {
        let token = Token::generate();
        let batch = vec![
            Event::ApplicationCreated(event::ApplicationCreated {
                token: token.clone(),
                name: "replay".into(),
                at: domain::now(),
            }),
            Event::ChatCreated(event::ChatCreated {
                token: token.clone(),
                number: 1,
                at: domain::now(),
            }),
            message(&token, 1, 1, "one"),
            message(&token, 1, 2, "two"),
            Event::MessageEdited(event::MessageEdited {
                token: token.clone(),
                chat: 1,
                number: 1,
                body: "edited".into(),
                at: domain::now(),
                revision: 3,
            }),
        ];
        let first = store.apply(&batch).await.expect("apply");
        assert!(
            first.iter().all(|outcome| *outcome != Applied::NotFound),
            "{name}: {first:?}"
        );
        // A replay names the same resources as the first apply did, created when the first apply
        // created them (nothing is created again) ...
        let replayed = store.apply(&batch).await.expect("replay");
        let identities = |outcomes: &[Applied]| outcomes.iter().map(identity).collect::<Vec<_>>();
        assert_eq!(identities(&replayed), identities(&first), "{name}");
        // ... the edit and the untouched message as the first apply answered them ...
        assert_eq!(replayed[4], first[4], "{name}: the edit's result unchanged");
        assert_eq!(replayed[3], first[3], "{name}: message 2 untouched");
        // ... and a replay of a replay, whole or in part, answers exactly the same.
        let again = store.apply(&batch).await.expect("second replay");
        assert_eq!(again, replayed, "{name}");
        let partial = store.apply(&batch[2..]).await.expect("partial replay");
        assert_eq!(partial, replayed[2..], "{name}: a partial replay");
        let chat = store.chat(&token, 1).await.expect("read").expect("chat");
        assert_eq!(chat.messages_count, 2, "{name}");
        let application = store
            .application(&token)
            .await
            .expect("read")
            .expect("application");
        assert_eq!(application.chats_count, 1, "{name}");
        let messages = store
            .messages(&token, 1, FIRST)
            .await
            .expect("read")
            .expect("chat");
        let bodies: Vec<&str> = messages.iter().map(|m| m.body.as_str()).collect();
        assert_eq!(bodies, vec!["edited", "two"], "{name}");
        let exported = store.export_messages(0, 1).await.expect("export");
        assert_eq!(exported.len(), 1, "{name}: bounded pages");
        let rest = store
            .export_messages(exported[0].id, 100)
            .await
            .expect("export");
        let all: Vec<(String, u64, u64, String)> = exported
            .iter()
            .chain(&rest)
            .filter(|m| m.token == token.as_str())
            .map(|m| (m.token.clone(), m.chat, m.number, m.body.clone()))
            .collect();
        assert_eq!(
            all,
            vec![
                (token.to_string(), 1, 1, "edited".to_owned()),
                (token.to_string(), 1, 2, "two".to_owned())
            ],
            "{name}"
        );
        let report = store.sync_counts().await.expect("sync");
        assert_eq!(
            (report.applications_fixed, report.chats_fixed),
            (0, 0),
            "{name}: counts were exact"
        );
    }
}

#[tokio::test]
async fn a_message_before_its_chat_creates_the_chat_and_the_late_chat_event_changes_nothing() {
    for (name, store, _dir) in stores().await {
        let token = Token::generate();
        let created = Event::ApplicationCreated(event::ApplicationCreated {
            token: token.clone(),
            name: "early".into(),
            at: domain::now(),
        });
        store.apply(&[created]).await.expect("apply");
        store
            .apply(&[message(&token, 3, 1, "early bird")])
            .await
            .expect("apply");
        let chat = store
            .chat(&token, 3)
            .await
            .expect("read")
            .expect("chat created from the message");
        assert_eq!(chat.messages_count, 1, "{name}");
        let late = Event::ChatCreated(event::ChatCreated {
            token: token.clone(),
            number: 3,
            at: domain::now(),
        });
        store.apply(&[late]).await.expect("apply");
        let again = store.chat(&token, 3).await.expect("read").expect("chat");
        assert_eq!(again.messages_count, 1, "{name}");
        assert_eq!(again.created_at, chat.created_at, "{name}");
        assert_eq!(
            store
                .application(&token)
                .await
                .expect("read")
                .expect("app")
                .chats_count,
            1,
            "{name}"
        );
        let counters = store.counters().await.expect("counters");
        assert!(
            counters.chats.contains(&(token.to_string(), 3, 1, 1)),
            "{name}"
        );

        let orphan = store
            .apply(&[message(&Token::generate(), 1, 1, "nobody")])
            .await
            .expect("apply");
        assert_eq!(
            orphan,
            vec![Applied::NotFound],
            "{name}: no application, no chat"
        );
    }
}

#[tokio::test]
async fn a_batch_mixing_stored_and_new_messages_counts_only_the_new() {
    for (name, store, _dir) in stores().await {
        let token = Token::generate();
        let app = Event::ApplicationCreated(event::ApplicationCreated {
            token: token.clone(),
            name: "mixed".into(),
            at: domain::now(),
        });
        store
            .apply(&[
                app,
                message(&token, 1, 1, "one"),
                message(&token, 1, 2, "two"),
            ])
            .await
            .expect("apply");
        // After a crash a worker sees stored events again, mixed with new ones.
        let mixed = [
            message(&token, 1, 2, "two"),
            message(&token, 1, 3, "three"),
            message(&token, 2, 1, "elsewhere"),
        ];
        let outcomes = store.apply(&mixed).await.expect("mixed batch");
        assert!(
            outcomes.iter().all(|o| matches!(o, Applied::Message(_))),
            "{name}: {outcomes:?}"
        );
        let count = |chat| {
            let store = store.clone();
            let token = token.clone();
            async move {
                let chat = store.chat(&token, chat).await.expect("read").expect("chat");
                chat.messages_count
            }
        };
        assert_eq!(count(1).await, 3, "{name}: chat 1");
        assert_eq!(count(2).await, 1, "{name}: chat 2");
        let application = store.application(&token).await.expect("read").expect("app");
        assert_eq!(application.chats_count, 2, "{name}");
        let bodies: Vec<String> = store
            .messages(&token, 1, FIRST)
            .await
            .expect("read")
            .expect("chat")
            .into_iter()
            .map(|m| m.body)
            .collect();
        assert_eq!(bodies, ["one", "two", "three"], "{name}");
    }
}

/// The chats topic's worker and the messages topic's worker may create the same chat at once:
/// a message whose chat another transaction inserts (uncommitted) while the message's batch
/// runs must still be stored, not dropped as "chat not found".
#[tokio::test]
async fn a_message_whose_chat_another_worker_is_creating_is_stored() {
    let Some(url) =
        mysql_database("a_message_whose_chat_another_worker_is_creating_is_stored").await
    else {
        return;
    };
    let store = Arc::new(MysqlStore::open(&url).await.expect("mysql opens"));
    let token = Token::generate();
    let app = Event::ApplicationCreated(event::ApplicationCreated {
        token: token.clone(),
        name: "race".into(),
        at: domain::now(),
    });
    store.apply(&[app]).await.expect("application");

    // The other worker: its chat row inserted, not yet committed.
    let mut other = sqlx::MySqlConnection::connect(&url).await.expect("connect");
    let mut creating = other.begin().await.expect("begin");
    sqlx::query(
        "INSERT INTO chats (application_id, number, messages_count, created_at, updated_at) \
         SELECT id, 1, 0, NOW(6), NOW(6) FROM applications WHERE token = ?",
    )
    .bind(token.as_str())
    .execute(&mut *creating)
    .await
    .expect("insert the chat");
    let storing = {
        let (store, event) = (store.clone(), message(&token, 1, 1, "first"));
        tokio::spawn(async move { store.apply(&[event]).await })
    };
    // Commit the chat only once the batch is seen blocked in its `INSERT IGNORE INTO chats` on
    // the chat's key (it took its snapshot in the look-up before): the order the race needs,
    // observed rather than hoped for after a sleep.
    let database = url.rsplit('/').next().expect("database name").to_owned();
    wait_for_the_chat_insert(&url, &database, &storing).await;
    creating.commit().await.expect("commit the chat");
    let outcomes = tokio::time::timeout(std::time::Duration::from_secs(30), storing)
        .await
        .expect("the batch ends once the chat is committed")
        .expect("task")
        .expect("apply");
    assert!(
        matches!(outcomes.as_slice(), [Applied::Message(_)]),
        "{outcomes:?}"
    );
    let stored = store.message(&token, 1, 1).await.expect("read");
    assert_eq!(stored.map(|m| m.body), Some("first".to_owned()));
}

/// Returns once a connection to `database` is executing the batch's `INSERT IGNORE INTO chats`
/// (blocked on the uncommitted chat row: nothing else can hold it), as `processlist` shows it;
/// fails the test when none is within 30 s. (InnoDB's `innodb_trx` does not always list such a
/// waiting `INSERT … SELECT` as `LOCK WAIT`: an ordering on that was flaky.)
async fn wait_for_the_chat_insert<T>(
    url: &str,
    database: &str,
    storing: &tokio::task::JoinHandle<T>,
) {
    let mut watcher = sqlx::MySqlConnection::connect(url).await.expect("connect");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let inserting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.processlist \
             WHERE db = ? AND command IN ('Query', 'Execute') \
             AND info LIKE 'INSERT IGNORE INTO chats%'",
        )
        .bind(database)
        .fetch_one(&mut watcher)
        .await
        .expect("read processlist");
        if inserting > 0 {
            return;
        }
        let seen: Vec<String> = if tokio::time::Instant::now() >= deadline {
            sqlx::query_scalar(
                "SELECT CONCAT_WS(' | ', command, state, LEFT(info, 120)) \
                 FROM information_schema.processlist WHERE db = ?",
            )
            .bind(database)
            .fetch_all(&mut watcher)
            .await
            .expect("read processlist")
        } else {
            Vec::new()
        };
        assert!(
            seen.is_empty(),
            "the batch never blocked in its chat insert (it ended: {}): {seen:?}",
            storing.is_finished()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
