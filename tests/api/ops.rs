use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn health_ready_metrics_and_docs_answer() {
    let app = spawn_app().await;
    assert_eq!(app.get_json("/health").await["status"], "ok");
    assert_eq!(app.get_json("/ready").await["status"], "ready");
    // Metrics are per process: create and read on the same one.
    let created = app
        .client
        .post(format!("{}/applications", app.address))
        .json(&serde_json::json!({ "name": "a" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let metrics = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            r#"chat_http_requests_total{route="/applications",method="POST",status="201"} 1"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains("chat_http_request_duration_seconds_bucket"));
    assert!(metrics.contains("chat_write_batch_size_count"));
    // The API reference: Swagger UI from the binary (no CDN), on this API's document.
    let docs = app.get("/docs").await;
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(docs.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("script-src 'self'"));
    let page = docs.text().await.unwrap();
    assert!(
        page.contains("<html") && page.contains("swagger-ui-bundle.js"),
        "{page}"
    );
    assert!(
        !page.contains("https://"),
        "nothing from another origin: {page}"
    );
    let document: Value = app.get_json("/docs/ui/openapi.json").await;
    assert_eq!(document["info"]["title"], "chat-system");
}

#[tokio::test]
async fn the_committed_openapi_document_matches_the_code() {
    let app = spawn_app().await;
    let served: Value = app.get_json("/openapi.json").await;
    for path in [
        "/applications",
        "/applications/{token}",
        "/applications/{token}/chats",
        "/applications/{token}/chats/{chat_number}",
        "/applications/{token}/chats/{chat_number}/messages",
        "/applications/{token}/chats/{chat_number}/messages/{number}",
        "/applications/{token}/chats/{chat_number}/messages/search",
        "/search",
    ] {
        assert!(served["paths"][path].is_object(), "{path} documented");
    }
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    let pretty = serde_json::to_string_pretty(&served).unwrap() + "\n";
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&file, &pretty).unwrap();
    }
    let committed = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        committed == pretty,
        "openapi.json is out of date: run `UPDATE_OPENAPI=1 cargo test openapi`"
    );
}
