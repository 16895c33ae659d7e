//! The Elasticsearch adapter against a real cluster, only when `CHAT_TEST_ELASTICSEARCH_URL` is
//! set: the same searches as `search.rs` makes of the SQL backends.

use chat_system::domain::{now, Page, SearchTerms, Token};
use chat_system::search::elasticsearch::{Elasticsearch, IndexOp};
use chat_system::search::Search;

use crate::elasticsearch::{page, store_with_chats};

async fn numbers(es: &Elasticsearch, token: &Token, chat: u64, q: &str) -> Vec<u64> {
    let terms = SearchTerms::parse(q).unwrap();
    numbers_page(es, token, chat, &terms, page(0, 100)).await
}

async fn numbers_page(
    es: &Elasticsearch,
    token: &Token,
    chat: u64,
    terms: &SearchTerms,
    page: Page,
) -> Vec<u64> {
    let found = es.search(token, chat, terms, page).await.unwrap().unwrap();
    found.iter().map(|m| m.number).collect()
}

fn create(token: &Token, chat: u64, number: u64, body: &str) -> IndexOp {
    IndexOp::Create {
        token: token.clone(),
        chat,
        number,
        body: body.to_owned(),
        created_at: now(),
        revision: number,
    }
}

/// The expectations of `search.rs`, on a real cluster.
#[tokio::test]
async fn elasticsearch_matches_like_the_sql_backends_on_a_real_cluster() {
    // Deliberately no CI check: a real cluster is optional everywhere, CI included.
    let Some(url) = chat_harness::testing::var("CHAT_TEST_ELASTICSEARCH_URL") else {
        let reason = "CHAT_TEST_ELASTICSEARCH_URL not set (optional, also under CI=true)";
        let test = "elasticsearch_matches_like_the_sql_backends_on_a_real_cluster";
        chat_harness::testing::skip(test, reason);
        return;
    };
    let (_dir, token, store) = store_with_chats(4).await;
    let index = format!(
        "chat-test-{}-{}",
        std::process::id(),
        now().timestamp_micros()
    );
    let es = Elasticsearch::new(&url, &index, store).unwrap();
    es.ensure_index().await.unwrap();

    let bodies = [
        "error on all message",
        "ERROR: disk full",
        "all good here",
        "100% sure_thing",
        "1000 surething",
        "Größe und Übermaß 日本語テキスト",
        "say \"quoted\" OR NOT",
    ];
    let long = "a long message that mentions the word error only once among many others";
    let mut batch: Vec<IndexOp> = (1..)
        .zip(bodies)
        .map(|(number, body)| create(&token, 1, number, body))
        .collect();
    batch.push(create(&token, 2, 1, "error in the other chat"));
    batch.push(create(&token, 3, 1, long));
    batch.push(create(&token, 3, 2, "error error error"));
    batch.push(create(&token, 3, 3, long));
    batch.push(create(&token, 4, 1, "original wording"));
    es.index(&batch).await.unwrap();
    // Redelivery is harmless, then the edit replaces the body.
    es.index(&batch[batch.len() - 1..]).await.unwrap();
    es.index(&[IndexOp::Edit {
        token: token.clone(),
        chat: 4,
        number: 1,
        body: "replacement text".into(),
        updated_at: now(),
        revision: 2,
    }])
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let refreshed = client
        .post(format!("{}/{index}/_refresh", url.trim_end_matches('/')))
        .send()
        .await
        .unwrap();
    assert!(refreshed.status().is_success());

    let sorted = |mut v: Vec<u64>| {
        v.sort_unstable();
        v
    };
    assert_eq!(numbers(&es, &token, 1, "rror").await.len(), 2);
    assert_eq!(sorted(numbers(&es, &token, 1, "ERROR").await), vec![1, 2]);
    assert_eq!(numbers(&es, &token, 1, "rror all").await, vec![1]);
    assert_eq!(numbers(&es, &token, 1, "all message error").await, vec![1]);
    assert!(numbers(&es, &token, 1, "rror nothing").await.is_empty());
    assert_eq!(numbers(&es, &token, 1, "0%").await, vec![4], "% is literal");
    assert_eq!(
        numbers(&es, &token, 1, "e_t").await,
        vec![4],
        "_ is literal"
    );
    assert_eq!(numbers(&es, &token, 1, "größe").await, vec![6]);
    assert_eq!(numbers(&es, &token, 1, "übermaß").await, vec![6]);
    assert_eq!(numbers(&es, &token, 1, "本語").await, vec![6], "short CJK");
    assert_eq!(numbers(&es, &token, 1, "\"quoted\" or").await, vec![7]);
    assert_eq!(numbers(&es, &token, 1, "NOT").await, vec![7]);
    assert!(numbers(&es, &token, 1, "*").await.is_empty());
    assert_eq!(
        sorted(numbers(&es, &token, 1, "er").await),
        vec![1, 2, 3, 6]
    );
    assert_eq!(numbers(&es, &token, 1, "l").await.len(), 3);

    assert_eq!(numbers(&es, &token, 3, "error").await, vec![2, 1, 3]);
    let terms = SearchTerms::parse("error").unwrap();
    assert_eq!(
        numbers_page(&es, &token, 3, &terms, page(2, 2)).await,
        vec![3]
    );

    assert!(numbers(&es, &token, 4, "original").await.is_empty());
    assert!(numbers(&es, &token, 4, "or").await.is_empty());
    assert_eq!(numbers(&es, &token, 4, "placement").await, vec![1]);
    assert_eq!(
        es.search(&token, 5, &terms, page(0, 10)).await.unwrap(),
        None
    );

    let deleted = client
        .delete(format!("{}/{index}", url.trim_end_matches('/')))
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success());
}
