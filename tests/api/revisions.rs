//! SPEC §6 over HTTP: chat and message revisions, the changes feed (`since=`), history backwards
//! (`order=desc`, `before=`), and DELETE of messages, chats and applications (with
//! `Idempotency-Key`, and numbers never reused, also across a restart).

use std::collections::BTreeSet;

use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_keys, embedded_only, error_code, spawn_app, spawn_app_in, TestApp};

const CHAT_KEYS: &[&str] = &[
    "number",
    "chat_number",
    "messages_count",
    "created_at",
    "updated_at",
    "revision",
];
const MESSAGE_KEYS: &[&str] = &[
    "number",
    "message_number",
    "chat_number",
    "body",
    "created_at",
    "updated_at",
    "revision",
];
const TOMBSTONE_KEYS: &[&str] = &[
    "number",
    "message_number",
    "chat_number",
    "revision",
    "deleted",
    "deleted_at",
];

/// The values of the unsigned field `key` of every item, in order.
fn field(items: &[Value], key: &str) -> Vec<u64> {
    items
        .iter()
        .map(|item| {
            item[key]
                .as_u64()
                .unwrap_or_else(|| panic!("{key} in {item}"))
        })
        .collect()
}

fn numbers(items: &[Value]) -> Vec<u64> {
    field(items, "number")
}

/// The value of query parameter `name` in `path`.
fn param(path: &str, name: &str) -> Option<String> {
    let (_, query) = path.split_once('?')?;
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| value.to_owned())
    })
}

/// A GET that must answer 200 with a list: its items and the path of its `rel="next"` link.
async fn page(app: &TestApp, path: &str) -> (Vec<Value>, Option<String>) {
    let response = app.get(path).await;
    assert_eq!(response.status(), StatusCode::OK, "GET {path}");
    let next = response.headers().get("link").map(|link| {
        let link = link.to_str().expect("an ASCII link").to_owned();
        assert!(link.ends_with("; rel=\"next\""), "{link}");
        let target = link
            .trim_start_matches('<')
            .split('>')
            .next()
            .expect("<path>");
        target.to_owned()
    });
    let items: Vec<Value> = response.json().await.expect("a JSON list");
    (items, next)
}

/// The numbers of a list that has no next page.
async fn list(app: &TestApp, path: &str) -> Vec<u64> {
    let (items, next) = page(app, path).await;
    assert_eq!(next, None, "GET {path}: one page only");
    numbers(&items)
}

/// Follows `rel="next"` from `first` until an answer has none: every item, and the links.
async fn walk(app: &TestApp, first: &str) -> (Vec<Value>, Vec<String>) {
    let (mut items, mut links) = (Vec::new(), Vec::new());
    let mut path = first.to_owned();
    loop {
        let (mut found, next) = page(app, &path).await;
        assert!(
            !found.is_empty() || next.is_none(),
            "{path}: an empty page with a next link"
        );
        items.append(&mut found);
        let Some(next) = next else { break };
        assert!(links.len() < 50, "the links never end: {links:?}");
        links.push(next.clone());
        path = next;
    }
    (items, links)
}

async fn delete(app: &TestApp, path: &str) -> Response {
    app.request(Method::DELETE, path, None).await
}

/// Asserts a `204` with an empty body.
async fn assert_no_content(response: Response, what: &str) {
    assert_eq!(response.status(), StatusCode::NO_CONTENT, "{what}");
    assert_eq!(response.text().await.expect("body"), "", "{what}: a body");
}

async fn assert_not_found(response: Response, what: &str) {
    assert_eq!(
        error_code(response, StatusCode::NOT_FOUND).await,
        "not_found",
        "{what}"
    );
}

/// POSTs a message; returns the creation answer.
async fn post_message(app: &TestApp, token: &str, chat: u64, body: &str) -> Value {
    let path = format!("/applications/{token}/chats/{chat}/messages");
    let response = app.post(&path, json!({ "body": body })).await;
    assert_eq!(response.status(), StatusCode::CREATED, "POST {path}");
    response.json().await.expect("JSON body")
}

/// PUTs a new body; returns the answer.
async fn put_message(app: &TestApp, path: &str, body: &str) -> Value {
    let response = app
        .request(Method::PUT, path, Some(json!({ "body": body })))
        .await;
    assert_eq!(response.status(), StatusCode::OK, "PUT {path}");
    response.json().await.expect("JSON body")
}

#[tokio::test]
async fn every_creation_edit_and_deletion_raises_the_chat_revision_by_one() {
    let app = spawn_app().await;
    let token = app.create_application("revisions").await;
    let response = app
        .post(&format!("/applications/{token}/chats"), json!({}))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.expect("JSON body");
    assert_keys(&created, CHAT_KEYS);
    assert_eq!(created["revision"], 0);
    let chat = created["number"].as_u64().expect("number");
    let chat_path = format!("/applications/{token}/chats/{chat}");
    assert_eq!(app.get_json(&chat_path).await["revision"], 0);

    for i in 1..=3u64 {
        let message = post_message(&app, &token, chat, &format!("body {i}")).await;
        assert_keys(&message, MESSAGE_KEYS);
        assert_eq!(message["number"], i);
        assert_eq!(message["revision"], i, "creation answer of message {i}");
    }
    for i in 1..=3u64 {
        let stored = app.get_json(&format!("{chat_path}/messages/{i}")).await;
        assert_keys(&stored, MESSAGE_KEYS);
        assert_eq!(stored["revision"], i, "GET of message {i}");
    }
    let stored = app.get_json(&chat_path).await;
    assert_keys(&stored, CHAT_KEYS);
    assert_eq!(stored["revision"], 3);

    let edited = put_message(&app, &format!("{chat_path}/messages/2"), "edited").await;
    assert_eq!(edited["revision"], 4);
    assert_eq!(
        app.get_json(&format!("{chat_path}/messages/2")).await["revision"],
        4
    );
    assert_eq!(app.get_json(&chat_path).await["revision"], 4);
    let (listed, _) = page(&app, &format!("{chat_path}/messages")).await;
    assert_eq!(
        field(&listed, "revision"),
        vec![1, 4, 3],
        "the others keep theirs"
    );

    let response = delete(&app, &format!("{chat_path}/messages/1")).await;
    assert_no_content(response, "DELETE message 1").await;
    let stored = app.get_json(&chat_path).await;
    assert_eq!(stored["revision"], 5);
    assert_eq!(stored["messages_count"], 2);
    let chats = app.get_json(&format!("/applications/{token}/chats")).await;
    assert_eq!(
        chats[0]["revision"], 5,
        "the chat list carries the revision too"
    );
}

#[tokio::test]
async fn the_changes_feed_lists_each_changed_message_once_in_revision_order_with_tombstones() {
    let app = spawn_app().await;
    let token = app.create_application("feed").await;
    let chat = app.create_chat(&token).await;
    let base = format!("/applications/{token}/chats/{chat}/messages");
    for body in ["one", "two", "three"] {
        app.create_message(&token, chat, body).await;
    }
    let (all, next) = page(&app, &format!("{base}?since=0")).await;
    assert_eq!(next, None);
    assert_eq!(numbers(&all), vec![1, 2, 3]);
    assert_eq!(field(&all, "revision"), vec![1, 2, 3]);

    put_message(&app, &format!("{base}/1"), "uno").await; // revision 4
    let (changed, _) = page(&app, &format!("{base}?since=3")).await;
    assert_eq!(numbers(&changed), vec![1]);
    assert_eq!(changed[0]["revision"], 4);
    assert_eq!(changed[0]["body"], "uno");
    // Created and edited since 0: once, in its latest state, at its latest revision.
    let (all, _) = page(&app, &format!("{base}?since=0")).await;
    assert_eq!(numbers(&all), vec![2, 3, 1]);
    assert_eq!(field(&all, "revision"), vec![2, 3, 4]);
    assert_eq!(all[2]["body"], "uno");

    put_message(&app, &format!("{base}/1"), "eins").await; // revision 5
    let (changed, _) = page(&app, &format!("{base}?since=3")).await;
    assert_eq!(
        numbers(&changed),
        vec![1],
        "changed twice since 3, listed once"
    );
    assert_eq!(changed[0]["revision"], 5);
    assert_eq!(changed[0]["body"], "eins");

    let response = delete(&app, &format!("{base}/2")).await; // revision 6
    assert_no_content(response, "DELETE message 2").await;
    let (changed, next) = page(&app, &format!("{base}?since=5")).await;
    assert_eq!(next, None);
    assert_eq!(changed.len(), 1, "{changed:?}");
    let tombstone = &changed[0];
    assert_keys(tombstone, TOMBSTONE_KEYS);
    assert_eq!(tombstone["number"], 2);
    assert_eq!(tombstone["message_number"], 2);
    assert_eq!(tombstone["chat_number"], chat);
    assert_eq!(tombstone["revision"], 6);
    assert_eq!(tombstone["deleted"], true);
    assert!(tombstone["deleted_at"].is_string(), "{tombstone}");
    assert_eq!(
        list(&app, &format!("{base}?since=6")).await,
        Vec::<u64>::new()
    );

    // Revisions 7..=10; then the whole feed two at a time.
    for body in ["four", "five", "six", "seven"] {
        app.create_message(&token, chat, body).await;
    }
    let (changes, links) = walk(&app, &format!("{base}?since=0&per_page=2")).await;
    assert_eq!(numbers(&changes), vec![3, 1, 2, 4, 5, 6, 7]);
    assert_eq!(field(&changes, "revision"), vec![3, 5, 6, 7, 8, 9, 10]);
    let distinct: BTreeSet<u64> = numbers(&changes).into_iter().collect();
    assert_eq!(distinct.len(), changes.len(), "each change exactly once");
    for change in &changes {
        if change["number"] == 2 {
            assert_keys(change, TOMBSTONE_KEYS);
        } else {
            assert!(change["body"].is_string(), "{change}");
            assert_ne!(change["deleted"], true, "{change}");
        }
    }
    let sinces: Vec<Option<String>> = links.iter().map(|link| param(link, "since")).collect();
    let expected = ["5", "7", "9"].map(|since| Some(since.to_owned()));
    assert_eq!(
        sinces, expected,
        "since= the last revision of each page: {links:?}"
    );
    for link in &links {
        assert_eq!(param(link, "per_page").as_deref(), Some("2"), "{link}");
    }
}

#[tokio::test]
async fn history_reads_backwards_and_between_bounds_for_messages_and_chats() {
    let app = spawn_app().await;
    let token = app.create_application("history").await;
    let chat = app.create_chat(&token).await;
    for i in 1..=10 {
        app.create_message(&token, chat, &format!("m{i}")).await;
    }
    let base = format!("/applications/{token}/chats/{chat}/messages");
    let (latest, next) = page(&app, &format!("{base}?order=desc&per_page=3")).await;
    assert_eq!(numbers(&latest), vec![10, 9, 8], "the latest page");
    let next = next.expect("a next link");
    assert_eq!(param(&next, "before").as_deref(), Some("8"), "{next}");
    assert_eq!(param(&next, "order").as_deref(), Some("desc"), "{next}");
    assert_eq!(param(&next, "per_page").as_deref(), Some("3"), "{next}");
    let (all, links) = walk(&app, &format!("{base}?order=desc&per_page=3")).await;
    assert_eq!(numbers(&all), (1..=10).rev().collect::<Vec<u64>>());
    assert_eq!(links.len(), 3, "{links:?}");

    let (first, next) = page(&app, &format!("{base}?order=asc&per_page=4")).await;
    assert_eq!(numbers(&first), vec![1, 2, 3, 4]);
    assert_eq!(
        param(&next.expect("a next link"), "after").as_deref(),
        Some("4")
    );
    assert_eq!(
        list(&app, &format!("{base}?before=5")).await,
        vec![1, 2, 3, 4]
    );
    assert_eq!(
        list(&app, &format!("{base}?after=2&before=6")).await,
        vec![3, 4, 5]
    );
    assert_eq!(
        list(&app, &format!("{base}?order=desc&after=2&before=6")).await,
        vec![5, 4, 3]
    );
    assert_eq!(
        list(&app, &format!("{base}?order=desc&before=1")).await,
        Vec::<u64>::new()
    );
    // The link keeps the other bound.
    let (bounded, links) = walk(
        &app,
        &format!("{base}?order=desc&after=2&before=6&per_page=2"),
    )
    .await;
    assert_eq!(numbers(&bounded), vec![5, 4, 3]);
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(param(&links[0], "after").as_deref(), Some("2"), "{links:?}");
    assert_eq!(
        param(&links[0], "before").as_deref(),
        Some("4"),
        "{links:?}"
    );

    for _ in 1..5 {
        app.create_chat(&token).await;
    }
    let chats = format!("/applications/{token}/chats");
    let (latest, next) = page(&app, &format!("{chats}?order=desc&per_page=2")).await;
    assert_eq!(numbers(&latest), vec![5, 4]);
    let next = next.expect("a next link");
    assert_eq!(param(&next, "before").as_deref(), Some("4"), "{next}");
    assert_eq!(param(&next, "order").as_deref(), Some("desc"), "{next}");
    let (all, _) = walk(&app, &format!("{chats}?order=desc&per_page=2")).await;
    assert_eq!(numbers(&all), vec![5, 4, 3, 2, 1]);
    assert_eq!(list(&app, &format!("{chats}?before=3")).await, vec![1, 2]);
    assert_eq!(
        list(&app, &format!("{chats}?after=1&before=5")).await,
        vec![2, 3, 4]
    );
    assert_eq!(
        list(&app, &format!("{chats}?order=desc&after=1&before=5")).await,
        vec![4, 3, 2]
    );
}

#[tokio::test]
async fn bad_order_before_since_and_after_values_are_400() {
    let app = spawn_app().await;
    let token = app.create_application("bad").await;
    let chat = app.create_chat(&token).await;
    app.create_message(&token, chat, "x").await;
    let chats = format!("/applications/{token}/chats");
    let messages = format!("{chats}/{chat}/messages");
    let cases = [
        (&messages, "order=x"),
        (&messages, "before=abc"),
        (&messages, "since=-1"),
        (&messages, "after=-1"),
        (&chats, "order=x"),
        (&chats, "before=abc"),
    ];
    for (path, query) in cases {
        let response = app.get(&format!("{path}?{query}")).await;
        assert_eq!(
            error_code(response, StatusCode::BAD_REQUEST).await,
            "bad_request",
            "{path}?{query}"
        );
    }
}

#[tokio::test]
async fn a_deleted_message_is_gone_from_reads_lists_search_and_counts_and_its_number_stays_used() {
    let app = spawn_app().await;
    let token = app.create_application("delete message").await;
    let chat = app.create_chat(&token).await;
    for body in ["alpha one", "alpha two", "alpha three"] {
        app.create_message(&token, chat, body).await;
    }
    let base = format!("/applications/{token}/chats/{chat}/messages");
    let search = |q: &str| format!("{base}/search?q={q}");
    let seed = |q: &str| format!("/search?application_token={token}&chat_number={chat}&body={q}");
    assert_eq!(list(&app, &search("two")).await, vec![2], "indexed before");
    assert_eq!(
        app.get_json(&format!("{base}/2")).await["body"],
        "alpha two"
    );

    let response = delete(&app, &format!("{base}/2")).await;
    assert_no_content(response, "DELETE message 2").await;
    assert_not_found(app.get(&format!("{base}/2")).await, "GET").await;
    let response = app
        .request(
            Method::PUT,
            &format!("{base}/2"),
            Some(json!({ "body": "back" })),
        )
        .await;
    assert_not_found(response, "PUT").await;
    assert_not_found(delete(&app, &format!("{base}/2")).await, "second DELETE").await;

    assert_eq!(list(&app, &base).await, vec![1, 3]);
    assert_eq!(list(&app, &search("two")).await, Vec::<u64>::new());
    assert_eq!(list(&app, &seed("two")).await, Vec::<u64>::new());
    let mut found = list(&app, &search("alpha")).await;
    found.sort_unstable();
    assert_eq!(found, vec![1, 3]);
    let mut found = list(&app, &seed("alpha")).await;
    found.sort_unstable();
    assert_eq!(found, vec![1, 3]);
    let stored = app
        .get_json(&format!("/applications/{token}/chats/{chat}"))
        .await;
    assert_eq!(stored["messages_count"], 2);
    // The last one deleted, too: the next number is still a new one.
    assert_no_content(delete(&app, &format!("{base}/3")).await, "DELETE message 3").await;
    assert_eq!(
        app.get_json(&format!("/applications/{token}/chats/{chat}"))
            .await["messages_count"],
        1
    );
    assert_eq!(
        app.create_message(&token, chat, "next").await,
        4,
        "never reused"
    );
    assert_eq!(list(&app, &base).await, vec![1, 4]);
}

#[tokio::test]
async fn a_deleted_chat_and_its_messages_are_404_and_its_number_stays_used() {
    let app = spawn_app().await;
    let token = app.create_application("delete chat").await;
    for _ in 0..3 {
        app.create_chat(&token).await;
    }
    app.create_message(&token, 2, "inside").await;
    app.create_message(&token, 3, "elsewhere").await;
    let chats = format!("/applications/{token}/chats");
    let chat = format!("{chats}/2");
    assert_eq!(
        app.get_json(&format!("{chat}/messages/1")).await["body"],
        "inside"
    );

    assert_no_content(delete(&app, &chat).await, "DELETE chat 2").await;
    assert_not_found(app.get(&chat).await, "GET chat").await;
    assert_not_found(app.get(&format!("{chat}/messages")).await, "list messages").await;
    assert_not_found(app.get(&format!("{chat}/messages/1")).await, "GET message").await;
    assert_not_found(
        app.get(&format!("{chat}/messages/search?q=inside")).await,
        "search",
    )
    .await;
    let seed = format!("/search?application_token={token}&chat_number=2&body=inside");
    assert_not_found(app.get(&seed).await, "seed search").await;
    let response = app
        .post(&format!("{chat}/messages"), json!({ "body": "late" }))
        .await;
    assert_not_found(response, "POST message").await;

    assert_eq!(
        app.get_json(&format!("/applications/{token}")).await["chats_count"],
        2
    );
    assert_eq!(list(&app, &chats).await, vec![1, 3]);
    assert_eq!(
        app.get_json(&format!("{chats}/3/messages/1")).await["body"],
        "elsewhere",
        "the other chats keep their messages"
    );
    assert_no_content(delete(&app, &format!("{chats}/3")).await, "DELETE chat 3").await;
    assert_eq!(app.create_chat(&token).await, 4, "never reused");
    assert_not_found(delete(&app, &chat).await, "second DELETE").await;
    assert_eq!(list(&app, &chats).await, vec![1, 4]);
}

#[tokio::test]
async fn a_deleted_application_answers_404_everywhere() {
    let app = spawn_app().await;
    let token = app.create_application("doomed").await;
    let other = app.create_application("kept").await;
    let chat = app.create_chat(&token).await;
    app.create_message(&token, chat, "x").await;
    let other_chat = app.create_chat(&other).await;
    let application = format!("/applications/{token}");
    assert_eq!(app.get_json(&application).await["chats_count"], 1);

    assert_no_content(delete(&app, &application).await, "DELETE application").await;
    assert_not_found(app.get(&application).await, "GET application").await;
    assert_not_found(app.get(&format!("{application}/chats")).await, "list chats").await;
    assert_not_found(
        app.get(&format!("{application}/chats/{chat}")).await,
        "GET chat",
    )
    .await;
    let messages = format!("{application}/chats/{chat}/messages");
    assert_not_found(app.get(&messages).await, "list messages").await;
    let response = app
        .request(Method::PUT, &application, Some(json!({ "name": "back" })))
        .await;
    assert_not_found(response, "PUT application").await;
    let response = app.post(&format!("{application}/chats"), json!({})).await;
    assert_not_found(response, "POST chat").await;
    assert_not_found(delete(&app, &application).await, "second DELETE").await;

    assert_eq!(
        app.get_json(&format!("/applications/{other}")).await["name"],
        "kept"
    );
    assert_eq!(
        list(&app, &format!("/applications/{other}/chats")).await,
        vec![other_chat]
    );
}

#[tokio::test]
async fn a_repeated_delete_with_the_same_idempotency_key_is_replayed_and_applied_once() {
    let app = spawn_app().await;
    let token = app.create_application("idempotent delete").await;
    let chat = app.create_chat(&token).await;
    app.create_message(&token, chat, "first").await;
    app.create_message(&token, chat, "second").await;
    let chat_path = format!("/applications/{token}/chats/{chat}");
    let message = format!("{chat_path}/messages/1");
    assert_eq!(app.get_json(&message).await["body"], "first");
    assert_eq!(app.get_json(&chat_path).await["revision"], 2);

    let send = || {
        app.client
            .delete(app.url(&message))
            .header("Idempotency-Key", "delete-1")
            .send()
    };
    let first = send().await.expect("sent");
    assert_eq!(first.headers().get("idempotent-replayed"), None);
    assert_no_content(first, "first DELETE").await;
    let again = send().await.expect("sent");
    let replayed = again
        .headers()
        .get("idempotent-replayed")
        .map(|value| value.to_str().unwrap_or("").to_owned());
    assert_eq!(replayed.as_deref(), Some("true"));
    assert_no_content(again, "repeated DELETE").await;

    assert_not_found(app.get(&message).await, "GET").await;
    let stored = app.get_json(&chat_path).await;
    assert_eq!(stored["revision"], 3, "raised once only");
    assert_eq!(stored["messages_count"], 1);
    assert_eq!(list(&app, &format!("{chat_path}/messages")).await, vec![2]);
    // Without the key it is a new request, and the message is gone.
    assert_not_found(delete(&app, &message).await, "DELETE without the key").await;
}

#[tokio::test]
async fn deleted_numbers_are_not_reused_after_a_restart() {
    let test = "deleted_numbers_are_not_reused_after_a_restart";
    let why = "restarts an in-process server on its data directory (spawn_app_in); the scaled \
               shape's numbers come from Redis, re-derived after a reset by scaled.rs";
    if embedded_only(test, why) {
        return;
    }
    let app = spawn_app().await;
    let token = app.create_application("restart").await;
    assert_eq!(app.create_chat(&token).await, 1);
    assert_eq!(app.create_chat(&token).await, 2);
    for i in 1..=3 {
        assert_eq!(app.create_message(&token, 1, &format!("m{i}")).await, i);
    }
    let chats = format!("/applications/{token}/chats");
    assert_no_content(
        delete(&app, &format!("{chats}/1/messages/3")).await,
        "DELETE message",
    )
    .await;
    assert_no_content(delete(&app, &format!("{chats}/2")).await, "DELETE chat").await;

    let dir = app.stop().await;
    let app = spawn_app_in(dir).await;
    assert_not_found(
        app.get(&format!("{chats}/1/messages/3")).await,
        "deleted message",
    )
    .await;
    assert_not_found(app.get(&format!("{chats}/2")).await, "deleted chat").await;
    let stored = app.get_json(&format!("{chats}/1")).await;
    assert_eq!(stored["revision"], 4);
    assert_eq!(stored["messages_count"], 2);
    assert_eq!(
        app.create_message(&token, 1, "after").await,
        4,
        "message 3 not reused"
    );
    assert_eq!(
        app.get_json(&format!("{chats}/1/messages/4")).await["revision"],
        5
    );
    assert_eq!(app.create_chat(&token).await, 3, "chat 2 not reused");
    assert_eq!(list(&app, &chats).await, vec![1, 3]);
}
