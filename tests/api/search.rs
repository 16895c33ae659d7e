//! Search over HTTP: substring semantics, both routes, edits, errors, consistency with writes
//! running at the same time, and (embedded) an index rebuilt when its file is lost.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{embedded_only, error_code, spawn_app, spawn_app_in, TestApp};

async fn numbers(app: &TestApp, path: &str) -> Vec<u64> {
    let found = app.get_json(path).await;
    found
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["number"].as_u64().unwrap())
        .collect()
}

fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test]
async fn search_matches_substrings_case_insensitively_with_every_word() {
    let app = spawn_app().await;
    let token = app.create_application("a").await;
    let chat = app.create_chat(&token).await;
    let other = app.create_chat(&token).await;
    let bodies = [
        "error on all message",             // 1
        "ERROR: disk full",                 // 2
        "all good here",                    // 3
        "100% sure_thing",                  // 4
        "1000 surething",                   // 5
        "Größe und Übermaß 日本語テキスト", // 6
        "say \"quoted\" OR NOT",            // 7
    ];
    for body in bodies {
        app.create_message(&token, chat, body).await;
    }
    app.create_message(&token, other, "error in the other chat")
        .await;
    let search = |q: &str| {
        format!(
            "/applications/{token}/chats/{chat}/messages/search?q={}",
            encode(q)
        )
    };

    assert_eq!(numbers(&app, &search("rror")).await.len(), 2);
    let mut both = numbers(&app, &search("ERROR")).await;
    both.sort_unstable();
    assert_eq!(both, vec![1, 2]);
    assert_eq!(numbers(&app, &search("rror all")).await, vec![1]);
    assert_eq!(numbers(&app, &search("all message error")).await, vec![1]);
    assert_eq!(
        numbers(&app, &search("rror nothing")).await,
        Vec::<u64>::new()
    );
    assert_eq!(numbers(&app, &search("0%")).await, vec![4], "% is literal");
    assert_eq!(numbers(&app, &search("e_t")).await, vec![4], "_ is literal");
    assert_eq!(numbers(&app, &search("größe")).await, vec![6]);
    assert_eq!(numbers(&app, &search("übermaß")).await, vec![6]);
    assert_eq!(
        numbers(&app, &search("本語")).await,
        vec![6],
        "short CJK term"
    );
    assert_eq!(
        numbers(&app, &search("\"quoted\" or")).await,
        vec![7],
        "quotes and OR are literal"
    );
    assert_eq!(numbers(&app, &search("NOT")).await, vec![7]);
    assert_eq!(numbers(&app, &search("*")).await, Vec::<u64>::new());
    let mut short = numbers(&app, &search("er")).await;
    short.sort_unstable();
    assert_eq!(short, vec![1, 2, 3, 6], "a two-letter term still works");
    assert_eq!(numbers(&app, &search("l")).await.len(), 3);
}

#[tokio::test]
async fn both_routes_accept_q_query_and_body_and_rank_then_number() {
    let app = spawn_app().await;
    let token = app.create_application("a").await;
    let chat = app.create_chat(&token).await;
    app.create_message(
        &token,
        chat,
        "a long message that mentions the word error only once among many others",
    )
    .await;
    app.create_message(&token, chat, "error error error").await;
    app.create_message(
        &token,
        chat,
        "a long message that mentions the word error only once among many others",
    )
    .await;
    let expected = vec![2, 1, 3];
    assert_eq!(
        numbers(
            &app,
            &format!("/search?application_token={token}&chat_number={chat}&body=error")
        )
        .await,
        expected
    );
    assert_eq!(
        numbers(
            &app,
            &format!("/search?application_token={token}&chat_number={chat}&q=error")
        )
        .await,
        expected
    );
    assert_eq!(
        numbers(
            &app,
            &format!("/api/v1/applications/{token}/chats/{chat}/messages/search?query=error")
        )
        .await,
        expected
    );

    let response = app
        .get(&format!(
            "/applications/{token}/chats/{chat}/messages/search?q=error&per_page=2"
        ))
        .await;
    let link = response.headers()["link"].to_str().unwrap().to_owned();
    assert!(
        link.contains("page=2") && link.contains("q=error"),
        "{link}"
    );
    let first: Vec<Value> = response.json().await.unwrap();
    assert_eq!(first.len(), 2);
    let next = link.trim_start_matches('<').split('>').next().unwrap();
    assert_eq!(numbers(&app, next).await, vec![3]);
}

#[tokio::test]
async fn an_edited_message_is_found_by_its_new_body_only() {
    let app = spawn_app().await;
    let token = app.create_application("a").await;
    let chat = app.create_chat(&token).await;
    app.create_message(&token, chat, "original wording").await;
    let path = format!("/applications/{token}/chats/{chat}/messages/1");
    let response = app
        .request(
            reqwest::Method::PUT,
            &path,
            Some(serde_json::json!({ "body": "replacement text" })),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let search = format!("/applications/{token}/chats/{chat}/messages/search?q=");
    assert_eq!(
        numbers(&app, &format!("{search}original")).await,
        Vec::<u64>::new()
    );
    assert_eq!(
        numbers(&app, &format!("{search}or")).await,
        Vec::<u64>::new()
    );
    assert_eq!(numbers(&app, &format!("{search}placement")).await, vec![1]);
}

#[tokio::test]
async fn search_errors() {
    let app = spawn_app().await;
    let token = app.create_application("a").await;
    let chat = app.create_chat(&token).await;
    let cases = [
        (
            format!("/applications/{token}/chats/{chat}/messages/search"),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/applications/{token}/chats/{chat}/messages/search?q=%20%20"),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/search?application_token={token}&body=x"),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/search?application_token={token}&chat_number=x&body=x"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/search?chat_number=1&body=x".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/search?application_token={token}&chat_number=2&body=x"),
            StatusCode::NOT_FOUND,
        ),
        (
            "/search?application_token=nope&chat_number=1&body=x".to_owned(),
            StatusCode::NOT_FOUND,
        ),
        (
            format!("/applications/{token}/chats/5/messages/search?q=x"),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (path, status) in cases {
        let response = app.get(&path).await;
        error_code(response, status).await;
    }
}

#[tokio::test]
async fn every_acknowledged_message_is_found_at_once_even_under_concurrent_writes() {
    let app = spawn_app().await;
    let token = app.create_application("a").await;
    let chat = app.create_chat(&token).await;
    let total = 200usize;
    let acknowledged = Mutex::new(BTreeSet::<u64>::new());
    let writing = AtomicBool::new(true);
    let search =
        format!("/applications/{token}/chats/{chat}/messages/search?q=needle&per_page=1000");
    // 8 writers at a time; both futures run in this task, so the searcher's first search starts
    // before the first write is answered, and it keeps searching until the last one is.
    let writers = async {
        futures::stream::iter(0..total)
            .for_each_concurrent(8, |i| {
                let (app, token, acknowledged) = (&app, &token, &acknowledged);
                async move {
                    let number = app
                        .create_message(token, chat, &format!("needle {i}"))
                        .await;
                    let fresh = acknowledged.lock().expect("lock").insert(number);
                    assert!(fresh, "number {number} acknowledged twice");
                }
            })
            .await;
        writing.store(false, Ordering::SeqCst);
    };
    let searcher = async {
        let mut during = 0usize;
        loop {
            let still_writing = writing.load(Ordering::SeqCst);
            let before: BTreeSet<u64> = acknowledged.lock().expect("lock").clone();
            let found = numbers(&app, &search).await;
            let unique: BTreeSet<u64> = found.iter().copied().collect();
            assert_eq!(
                unique.len(),
                found.len(),
                "a message found twice: {found:?}"
            );
            let missing: Vec<&u64> = before.difference(&unique).collect();
            assert!(missing.is_empty(), "acknowledged, not found: {missing:?}");
            if !still_writing {
                return (during, unique);
            }
            during += 1;
        }
    };
    let ((), (during, found)) = futures::join!(writers, searcher);
    assert!(during >= 1, "no search ran while the writes did");
    let created = acknowledged.into_inner().expect("lock");
    assert_eq!(created.len(), total);
    assert_eq!(found, created, "each created message once");
}

#[tokio::test]
async fn a_lost_search_index_is_rebuilt_from_the_messages() {
    let test = "a_lost_search_index_is_rebuilt_from_the_messages";
    let why = "deletes the embedded search index (search.db) of a data directory; the scaled \
               index is Elasticsearch's (elasticsearch_worker::elasticsearch_down_messages_are_stored_and_indexed_when_it_returns)";
    if embedded_only(test, why) {
        return;
    }
    let app = spawn_app().await;
    let token = app.create_application("a").await;
    let chat = app.create_chat(&token).await;
    app.create_message(&token, chat, "one error here").await;
    app.create_message(&token, chat, "error error error").await;
    app.create_message(&token, chat, "nothing to see").await;
    let dir = app.stop().await;
    // The index lives in its own file: it must exist, or deleting it would prove nothing.
    let index = dir.path().join("search.db");
    assert!(
        index.is_file(),
        "{} missing before the delete",
        index.display()
    );
    std::fs::remove_file(&index).expect("delete search.db");
    for file in ["search.db-wal", "search.db-shm"] {
        let _ = std::fs::remove_file(dir.path().join(file)); // present only if not checkpointed
    }
    assert!(!index.exists());
    let app = spawn_app_in(dir).await;
    let search = format!("/applications/{token}/chats/{chat}/messages/search?q=error");
    assert_eq!(numbers(&app, &search).await, vec![2, 1], "ranked again");
}

#[tokio::test]
async fn a_nul_in_a_search_term_is_matched_literally() {
    let app = spawn_app().await;
    let token = app.create_application("a").await;
    let chat = app.create_chat(&token).await;
    app.create_message(&token, chat, "a\u{0}b and hello\u{0}world")
        .await;
    app.create_message(&token, chat, "a b and hello world")
        .await;
    let routes = [
        format!("/applications/{token}/chats/{chat}/messages/search?q="),
        format!("/search?application_token={token}&chat_number={chat}&body="),
    ];
    for route in routes {
        // Once answered 500 (SQLite FTS5: "unterminated string").
        assert_eq!(numbers(&app, &format!("{route}a%00b")).await, vec![1]);
        assert_eq!(
            numbers(&app, &format!("{route}hello%00world")).await,
            vec![1],
            "a long word holding a NUL"
        );
        assert_eq!(numbers(&app, &format!("{route}%00")).await, vec![1]);
        assert_eq!(
            numbers(&app, &format!("{route}HELLO%00W%20and")).await,
            vec![1]
        );
        assert_eq!(
            numbers(&app, &format!("{route}x%00y")).await,
            Vec::<u64>::new()
        );
    }
}
