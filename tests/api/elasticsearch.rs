//! The Elasticsearch adapter (the worker's side is in `elasticsearch_worker.rs`). Two kinds of test:
//! - against a fake cluster (an axum server on port 0 that answers what each test scripts): the
//!   retry, give-up and error policy of `index`, `search`, `ensure_index` and `ping`;
//! - against a real cluster, only when `CHAT_TEST_ELASTICSEARCH_URL` is set: the same searches as
//!   `search.rs` runs on SQLite. Otherwise it prints `skipped` and passes, also under `CI=true`,
//!   because no Elasticsearch can run on the machines this suite runs on.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::Router;
use chat_system::domain::event::{self, Event};
use chat_system::domain::{now, Page, SearchTerms, Token};
use chat_system::error::BackendError;
use chat_system::search::elasticsearch::{settings_and_mapping, Elasticsearch, IndexOp};
use chat_system::search::Search;
use chat_system::store::{SqliteStore, Store};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::net::TcpListener;

/// A store holding one application with chats 1 to `chats`, for the adapter's existence check.
pub async fn store_with_chats(chats: u64) -> (TempDir, Token, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&format!("sqlite://{}/chat.db", dir.path().display()))
        .await
        .unwrap();
    let token = Token::generate();
    let mut events = vec![Event::ApplicationCreated(event::ApplicationCreated {
        token: token.clone(),
        name: "a".into(),
        at: now(),
    })];
    for number in 1..=chats {
        events.push(Event::ChatCreated(event::ChatCreated {
            token: token.clone(),
            number,
            at: now(),
        }));
    }
    store.apply(&events).await.unwrap();
    (dir, token, Arc::new(store))
}

/// What the fake cluster received: method and path, content type, body.
type Received = (String, String, String);

#[derive(Clone, Default)]
pub struct Fake {
    /// Scripted answers in order; the last one repeats.
    replies: Arc<Mutex<VecDeque<(u16, String)>>>,
    pub received: Arc<Mutex<Vec<Received>>>,
}

async fn answer(
    axum::extract::State(fake): axum::extract::State<Fake>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, [(header::HeaderName, &'static str); 1], String) {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    fake.received
        .lock()
        .unwrap()
        .push((format!("{method} {}", uri.path()), content_type, body));
    let mut replies = fake.replies.lock().unwrap();
    let (status, text) = if replies.len() > 1 {
        replies.pop_front().unwrap()
    } else {
        replies.front().cloned().unwrap()
    };
    (
        StatusCode::from_u16(status).unwrap(),
        [(header::CONTENT_TYPE, "application/json")],
        text,
    )
}

/// Starts a fake cluster that gives `replies` in order and returns its URL.
pub async fn fake_cluster(replies: Vec<(u16, Value)>) -> (String, Fake) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    fake_cluster_on(listener, replies)
}

/// A fake cluster on `listener` (a test that stops and starts "the cluster" binds its port).
pub fn fake_cluster_on(listener: TcpListener, replies: Vec<(u16, Value)>) -> (String, Fake) {
    let fake = Fake::default();
    *fake.replies.lock().unwrap() = replies
        .into_iter()
        .map(|(status, body)| (status, body.to_string()))
        .collect();
    let app = Router::new().fallback(answer).with_state(fake.clone());
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, fake)
}

fn ops(token: &Token) -> Vec<IndexOp> {
    vec![
        IndexOp::Create {
            token: token.clone(),
            chat: 1,
            number: 1,
            body: "first".into(),
            created_at: now(),
            revision: 1,
        },
        IndexOp::Edit {
            token: token.clone(),
            chat: 1,
            number: 2,
            body: "second".into(),
            updated_at: now(),
            revision: 2,
        },
    ]
}

#[tokio::test]
async fn elasticsearch_bulk_retries_the_cluster_and_then_only_the_refused_items() {
    let (_dir, token, store) = store_with_chats(1).await;
    let partial = json!({ "errors": true, "items": [
        { "index": { "_id": format!("{token}:1:1"), "status": 201 } },
        { "update": { "_id": format!("{token}:1:2"), "status": 429,
                      "error": { "type": "es_rejected_execution_exception" } } }
    ]});
    let done = json!({ "errors": false, "items": [{ "update": { "status": 200 } }] });
    let (url, fake) = fake_cluster(vec![
        (503, json!({ "error": "unavailable" })),
        (200, partial),
        (200, done),
    ])
    .await;
    let es = Elasticsearch::new(&url, "messages", store).unwrap();
    es.index(&ops(&token)).await.unwrap();

    let received = fake.received.lock().unwrap().clone();
    assert_eq!(received.len(), 3, "{received:?}");
    for (path, content_type, body) in &received {
        assert_eq!(path, "POST /messages/_bulk");
        assert_eq!(content_type, "application/x-ndjson");
        assert!(body.ends_with('\n'));
    }
    assert_eq!(received[0].2.lines().count(), 4);
    let retried: Vec<Value> = received[2]
        .2
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(retried.len(), 2, "only the refused update is sent again");
    assert_eq!(retried[0]["update"]["_id"], format!("{token}:1:2"));
}

#[tokio::test]
async fn elasticsearch_bulk_reports_items_rejected_for_good() {
    let (_dir, token, store) = store_with_chats(1).await;
    let reply = json!({ "errors": true, "items": [
        { "index": { "_id": "x", "status": 400, "error": { "type": "mapper_parsing_exception" } } },
        { "update": { "_id": "y", "status": 200 } }
    ]});
    let (url, fake) = fake_cluster(vec![(200, reply)]).await;
    let es = Elasticsearch::new(&url, "messages", store).unwrap();
    let err = es.index(&ops(&token)).await.unwrap_err();
    assert!(matches!(err, BackendError::Other(_)), "{err:?}");
    assert_eq!(fake.received.lock().unwrap().len(), 1, "not retried");
}

#[tokio::test]
async fn elasticsearch_bulk_gives_up_as_unavailable_after_max_wait() {
    let (_dir, token, store) = store_with_chats(1).await;
    let (url, fake) = fake_cluster(vec![(429, json!({ "error": "busy" }))]).await;
    let mut es = Elasticsearch::new(&url, "messages", store).unwrap();
    es.max_wait = Duration::from_secs(1);
    let err = es.index(&ops(&token)).await.unwrap_err();
    assert!(matches!(err, BackendError::Unavailable(_)), "{err:?}");
    // How many attempts fit in 1 s depends on the machine's speed; what does not: the pauses
    // alone (100, 200, 400 ms, then 800 ms past the budget) allow at most four, and the local
    // fake answers the first one far within the 900 ms that leaves room for a retry.
    let attempts = fake.received.lock().unwrap().len();
    assert!(
        attempts >= 2,
        "retried before giving up: {attempts} attempt(s)"
    );
    assert!(
        attempts <= 4,
        "gave up within its budget: {attempts} attempts"
    );
}

#[tokio::test]
async fn elasticsearch_unreachable_is_unavailable() {
    let (_dir, token, store) = store_with_chats(1).await;
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut es = Elasticsearch::new(&url, "messages", store).unwrap();
    es.max_wait = Duration::from_millis(150);
    assert!(!es.ping().await);
    let err = es.index(&ops(&token)).await.unwrap_err();
    assert!(matches!(err, BackendError::Unavailable(_)), "{err:?}");
    let terms = SearchTerms::parse("x").unwrap();
    let err = es.search(&token, 1, &terms, page(0, 10)).await.unwrap_err();
    assert!(matches!(err, BackendError::Unavailable(_)), "{err:?}");
    assert!(matches!(
        es.ensure_index().await,
        Err(BackendError::Unavailable(_))
    ));
}

#[tokio::test]
async fn elasticsearch_search_reads_sources_and_checks_the_chat_first() {
    let (_dir, token, store) = store_with_chats(1).await;
    let reply = json!({ "hits": { "hits": [
        { "_id": "a", "_score": 2.0, "_source": { "number": 4, "chat_number": 1, "body": "b\"4\"",
          "created_at": "2026-01-02T03:04:05.123456Z", "updated_at": "2026-01-02T03:04:06Z" } },
        { "_id": "b", "_score": 1.0, "_source": { "number": 2, "chat_number": 1, "body": "two",
          "created_at": "2026-01-02T03:04:05Z", "updated_at": "2026-01-02T03:04:05Z" } }
    ]}});
    let (url, fake) = fake_cluster(vec![(200, reply)]).await;
    let es = Elasticsearch::new(&format!("{url}/"), "messages", store).unwrap();
    let terms = SearchTerms::parse("b\" 4").unwrap();
    let found = es
        .search(&token, 1, &terms, page(0, 10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        found.iter().map(|m| m.number).collect::<Vec<_>>(),
        vec![4, 2]
    );
    assert_eq!(found[0].body, "b\"4\"");
    assert_eq!(found[0].chat_number, 1);
    assert_eq!(
        found[0].created_at.to_rfc3339(),
        "2026-01-02T03:04:05.123456+00:00"
    );
    let (path, _, body) = fake.received.lock().unwrap()[0].clone();
    assert_eq!(path, "POST /messages/_search");
    let sent: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(sent["query"]["bool"]["filter"][1]["term"]["chat_number"], 1);

    assert_eq!(
        es.search(&token, 2, &terms, page(0, 10)).await.unwrap(),
        None
    );
    let other = Token::generate();
    assert_eq!(
        es.search(&other, 1, &terms, page(0, 10)).await.unwrap(),
        None
    );
    assert_eq!(
        fake.received.lock().unwrap().len(),
        1,
        "unknown chats ask no cluster"
    );
}

#[tokio::test]
async fn elasticsearch_ensure_index_sends_the_mapping_and_accepts_an_existing_index() {
    let (_dir, _token, store) = store_with_chats(0).await;
    let exists = json!({ "error": { "type": "resource_already_exists_exception" }, "status": 400 });
    let (url, fake) = fake_cluster(vec![
        (200, json!({ "acknowledged": true })),
        (400, exists),
        (200, json!({ "tagline": "You Know, for Search" })),
    ])
    .await;
    let es = Elasticsearch::new(&url, "messages", store).unwrap();
    es.ensure_index().await.unwrap();
    es.ensure_index().await.unwrap();
    let received = fake.received.lock().unwrap().clone();
    assert_eq!(received[0].0, "PUT /messages");
    assert_eq!(
        serde_json::from_str::<Value>(&received[0].2).unwrap(),
        settings_and_mapping()
    );
    assert!(es.ping().await);
}

#[tokio::test]
async fn elasticsearch_new_validates_url_and_index() {
    let (_dir, _token, store) = store_with_chats(0).await;
    for (url, index) in [
        ("localhost:9200", "messages"),
        ("ftp://host", "messages"),
        ("https://host:9200", "messages"),
        ("http://host:9200", "Messages"),
        ("http://host:9200", "_messages"),
        ("http://host:9200", ""),
        ("http://host:9200", "a/b"),
    ] {
        assert!(
            Elasticsearch::new(url, index, store.clone()).is_err(),
            "{url} {index}"
        );
    }
    assert!(Elasticsearch::new("http://host:9200/", "chat-messages.v1", store).is_ok());
}

pub fn page(offset: u64, limit: u32) -> Page {
    Page::first(0, offset, limit)
}
