//! The web console in a real browser (issue #15): headless Chromium driven over WebDriver
//! (chromedriver, through `fantoccini`) against the real server on a random port. Sending,
//! live changes from other clients, history loaded by scrolling, edits and deletions made
//! elsewhere, search highlights, hostile bodies, a server restart, the API page offline, and
//! narrow and wide windows.
//!
//! Runs when `CHAT_TEST_CHROMEDRIVER` names chromedriver (the browser is `CHAT_TEST_CHROMIUM`,
//! else /usr/bin/chromium); says `skipped` otherwise, a failure under `CI=true`. Each test
//! starts its own chromedriver on a free port and ends it (and with it the browser), also when
//! the test fails. Every wait polls the page with a deadline. Screenshots go to the test's
//! temporary directory, which a failing test keeps (its path is printed, with `failure.png`);
//! with `UPDATE_SCREENSHOT=1` the wide screenshot of an open chat also goes to docs/console.png.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use chat_harness::service::{free_port, wait_port};
use chat_harness::testing::{missing, var};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use futures::FutureExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::process::{Child, Command};

use crate::helpers::{create_application_at, embedded_only, spawn_app, start_binary, TestApp};

const WHY: &str = "drives a browser against the embedded server; the console is a client of \
                   the public API, which the scaled run tests directly";

/// Longest wait for what the page should show (a loaded machine is slow).
const WAIT: Duration = Duration::from_secs(10);
/// How often a wait looks at the page again.
const POLL: Duration = Duration::from_millis(75);

/// The browser of one test: a WebDriver session, and the temporary directory of its
/// screenshots and chromedriver's log.
struct Page {
    client: Client,
    dir: PathBuf,
}

/// Browser sessions running at once, across the tests of this binary.
static BROWSERS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// Runs `scenario` in a fresh headless Chromium, or says why not. The session and chromedriver
/// end afterwards whatever happened; a failed scenario leaves a screenshot and its directory.
async fn in_browser<F, Fut>(test: &str, scenario: F)
where
    F: FnOnce(Page) -> Fut,
    Fut: Future<Output = ()>,
{
    if embedded_only(test, WHY) {
        return;
    }
    let Some(chromedriver) = var("CHAT_TEST_CHROMEDRIVER") else {
        missing(
            test,
            "CHAT_TEST_CHROMEDRIVER (the path of chromedriver) not set",
        );
        return;
    };
    // Two browsers at a time: nine Chromium sessions starting at once on two cores made
    // session creation fail now and then.
    let _turn = BROWSERS
        .acquire()
        .await
        .expect("the semaphore is never closed");
    let dir = tempfile::tempdir().expect("temporary directory");
    let (mut driver, client) = start_browser(&chromedriver, dir.path()).await;
    let page = Page {
        client: client.clone(),
        dir: dir.path().to_owned(),
    };
    let outcome = AssertUnwindSafe(scenario(page)).catch_unwind().await;
    if outcome.is_err() {
        if let Ok(png) = client.screenshot().await {
            let _ = std::fs::write(dir.path().join("failure.png"), png);
        }
    }
    // Ending the session makes chromedriver quit the browser; then chromedriver itself.
    let _ = client.close().await;
    let _ = chat_harness::kill9(&mut driver).await;
    if let Err(panic) = outcome {
        eprintln!("{test}: screenshots kept in {}", dir.keep().display());
        std::panic::resume_unwind(panic);
    }
}

/// chromedriver on a free port, and a session of headless Chromium at 1280x900.
async fn start_browser(chromedriver: &str, dir: &Path) -> (Child, Client) {
    let port = free_port().expect("a free port");
    let mut driver = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .arg(format!(
            "--log-path={}",
            dir.join("chromedriver.log").display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {chromedriver}: {e}"));
    if let Err(e) = wait_port(port, Duration::from_secs(30)).await {
        let _ = chat_harness::kill9(&mut driver).await;
        panic!("{chromedriver}: {e}");
    }
    let chromium = var("CHAT_TEST_CHROMIUM").unwrap_or_else(|| "/usr/bin/chromium".to_owned());
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("browserName".into(), json!("chrome"));
    // An alert stays open (instead of being dismissed by the next command), so it can be seen.
    capabilities.insert("unhandledPromptBehavior".into(), json!("ignore"));
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--window-size=1280,900",
            ],
        }),
    );
    // chromedriver listens on loopback: plain HTTP, no TLS. A session that could not be
    // created (a browser slow to start) is asked for again, twice at most.
    let mut attempt = 0;
    loop {
        attempt += 1;
        let connected =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await;
        match connected {
            Ok(client) => return (driver, client),
            Err(e) if attempt < 3 => {
                eprintln!("no browser session yet (attempt {attempt}): {e}; asking again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                let _ = chat_harness::kill9(&mut driver).await;
                panic!("no browser session through {chromedriver} ({chromium}): {e}");
            }
        }
    }
}

impl Page {
    async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("goto {url}: {e}"));
    }

    /// Runs `script` in the page (`arguments[i]` are `args`) and returns what it returns.
    async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Polls `script` until it returns something other than null or false, and returns that;
    /// fails naming `what` after `within`.
    async fn wait_js(&self, what: &str, within: Duration, script: &str, args: Vec<Value>) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let value = self.js(script, args.clone()).await;
            if !matches!(value, Value::Null | Value::Bool(false)) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "not within {within:?}: {what} (last: {value})"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(WAIT)
            .every(POLL)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css} within {WAIT:?}: {e}"))
    }

    async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    async fn type_into(&self, css: &str, text: &str) {
        self.find(css)
            .await
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    /// The numbers of the messages shown, top to bottom.
    async fn numbers(&self) -> Vec<u64> {
        let value = self
            .js(
                "return [...document.querySelectorAll('#messages li[data-number]')]\
                 .map((li) => Number(li.dataset.number));",
                vec![],
            )
            .await;
        serde_json::from_value(value).expect("a list of numbers")
    }

    /// Waits until message `n` shows `body`.
    async fn wait_body(&self, n: u64, body: &str, within: Duration) {
        self.wait_js(
            &format!("message {n} showing {body:?}"),
            within,
            "const li = document.querySelector(`#messages li[data-number=\"${arguments[0]}\"]`);\
             return li !== null && li.querySelector('.body').textContent === arguments[1];",
            vec![json!(n), json!(body)],
        )
        .await;
    }

    async fn conn_state(&self) -> String {
        let value = self
            .js(
                "return document.querySelector('#conn-state').textContent;",
                vec![],
            )
            .await;
        value.as_str().unwrap_or_default().to_owned()
    }

    async fn wait_live(&self, within: Duration) {
        self.wait_js(
            "#conn-state says live",
            within,
            "return document.querySelector('#conn-state').textContent === 'live';",
            vec![],
        )
        .await;
    }

    /// Opens application `token` through the token form and clicks chat `n` in the list; the
    /// chat is shown and its stream live.
    async fn open_chat(&self, address: &str, token: &str, n: u64) {
        self.goto(&format!("{address}/console")).await;
        self.type_into("#token-input", token).await;
        self.click("#open-app").await;
        self.click(&format!("#chat-list li[data-chat=\"{n}\"] button"))
            .await;
        self.wait_js(
            &format!("chat {n} open"),
            WAIT,
            "return location.hash === `#chat=${arguments[0]}` \
                 && !document.querySelector('#chat-view').hidden;",
            vec![json!(n)],
        )
        .await;
        self.wait_live(WAIT).await;
    }

    /// Sizes the window so that the page gets `width` x `height` CSS pixels (the window is
    /// taller than its viewport by the browser's own bars, even headless).
    async fn viewport(&self, width: u32, height: u32) {
        let size = |w, h| async move {
            self.client
                .set_window_size(w, h)
                .await
                .unwrap_or_else(|e| panic!("window size {w}x{h}: {e}"));
        };
        size(width, height).await;
        let bars = self
            .js("return window.outerHeight - window.innerHeight;", vec![])
            .await;
        let bars = u32::try_from(bars.as_u64().unwrap_or(0)).unwrap_or(0);
        size(width, height + bars).await;
        self.wait_js(
            &format!("a {width}x{height} viewport"),
            WAIT,
            "return window.innerWidth === arguments[0] && window.innerHeight === arguments[1];",
            vec![json!(width), json!(height)],
        )
        .await;
    }

    /// A PNG of the window, saved in the test's directory; returns it.
    async fn screenshot(&self, name: &str) -> Vec<u8> {
        let png = self.client.screenshot().await.expect("screenshot");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(self.dir.join(name), &png).expect("screenshot saved");
        png
    }
}

/// An application with one chat, made over HTTP: (token, chat number).
async fn chat_over_http(app: &TestApp, name: &str) -> (String, u64) {
    let token = app.create_application(name).await;
    let chat = app.create_chat(&token).await;
    (token, chat)
}

fn messages_path(token: &str, chat: u64) -> String {
    format!("/applications/{token}/chats/{chat}/messages")
}

#[tokio::test]
async fn a_message_sent_with_enter_in_the_page_appears_in_the_list() {
    let test = "a_message_sent_with_enter_in_the_page_appears_in_the_list";
    in_browser(test, |page| async move {
        let app = spawn_app().await;
        page.goto(&format!("{}/console", app.address)).await;
        page.type_into("#app-name", "made in the browser").await;
        page.click("#create-app").await;
        let token = page
            .wait_js(
                "the new application shown",
                WAIT,
                "const s = document.querySelector('#app-section');\
                 return !s.hidden && document.querySelector('#app-token').textContent || null;",
                vec![],
            )
            .await;
        let token = token.as_str().expect("token").to_owned();
        page.click("#create-chat").await;
        page.wait_live(WAIT).await;
        let chat = page
            .wait_js(
                "the new chat open",
                WAIT,
                "return document.querySelector('#chat-list button[aria-current=\"true\"]')\
                 ?.closest('li').dataset.chat ?? null;",
                vec![],
            )
            .await;
        let chat: u64 = chat.as_str().expect("data-chat").parse().expect("a number");

        let body = "hello from the page";
        page.type_into("#composer", &format!("{body}{}", &*Key::Enter))
            .await;
        page.wait_body(1, body, WAIT).await;
        assert_eq!(page.numbers().await, [1]);
        // The message may arrive through the stream before the POST's answer, which is what
        // empties the composer: wait for that answer.
        page.wait_js(
            "the composer emptied after sending",
            WAIT,
            "return document.querySelector('#composer').value === '';",
            vec![],
        )
        .await;
        // It was really sent, once, as typed (Enter sends, it is not part of the body).
        let stored = app.get_json(&messages_path(&token, chat)).await;
        let bodies: Vec<&str> = stored
            .as_array()
            .expect("a list")
            .iter()
            .map(|m| m["body"].as_str().expect("body"))
            .collect();
        assert_eq!(bodies, [body]);
        page.screenshot("sent.png").await;
    })
    .await;
}

#[tokio::test]
async fn a_message_posted_by_another_client_appears_within_2_s() {
    let test = "a_message_posted_by_another_client_appears_within_2_s";
    in_browser(test, |page| async move {
        let app = spawn_app().await;
        let (token, chat) = chat_over_http(&app, "live").await;
        app.create_message(&token, chat, "already there").await;
        page.open_chat(&app.address, &token, chat).await;
        page.wait_body(1, "already there", WAIT).await;

        for (n, body) in [(2, "from another client"), (3, "and another one")] {
            let number = app.create_message(&token, chat, body).await;
            assert_eq!(number, n);
            // The bound, from the moment the server acknowledged the message.
            page.wait_body(n, body, Duration::from_secs(2)).await;
        }
        assert_eq!(page.numbers().await, [1, 2, 3]);
    })
    .await;
}

#[tokio::test]
async fn scrolling_up_loads_older_messages_in_order_without_duplicates() {
    let test = "scrolling_up_loads_older_messages_in_order_without_duplicates";
    in_browser(test, |page| async move {
        let app = spawn_app().await;
        let (token, chat) = chat_over_http(&app, "history").await;
        for i in 1..=80 {
            app.create_message(&token, chat, &format!("message {i}"))
                .await;
        }
        page.open_chat(&app.address, &token, chat).await;
        page.wait_body(80, "message 80", WAIT).await;
        let first = page.numbers().await;
        assert!(
            first.len() < 80 && first.last() == Some(&80),
            "the latest page first, not everything: {first:?}"
        );
        assert_eq!(first, (81 - first.len() as u64..=80).collect::<Vec<_>>());

        // Scroll to the top again and again: each time the next older page comes in above.
        let deadline = Instant::now() + WAIT;
        loop {
            let count = page
                .js(
                    "const list = document.querySelector('#messages');\
                     list.scrollTop = 0;\
                     return list.querySelectorAll('li[data-number]').length;",
                    vec![],
                )
                .await;
            if count == 80 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "not all 80 messages after scrolling up for {WAIT:?}: {count} shown"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            page.numbers().await,
            (1..=80).collect::<Vec<u64>>(),
            "every message once, in order"
        );
        for n in [1, 30, 50, 51, 80] {
            page.wait_body(n, &format!("message {n}"), WAIT).await;
        }
        let older = page
            .js(
                "return document.querySelector('#load-older').hidden;",
                vec![],
            )
            .await;
        assert_eq!(older, true, "nothing older left to load");
    })
    .await;
}

#[tokio::test]
async fn an_edit_and_a_delete_made_elsewhere_show_up_in_the_page() {
    let test = "an_edit_and_a_delete_made_elsewhere_show_up_in_the_page";
    in_browser(test, |page| async move {
        let app = spawn_app().await;
        let (token, chat) = chat_over_http(&app, "changes").await;
        for body in ["first", "second", "third"] {
            app.create_message(&token, chat, body).await;
        }
        page.open_chat(&app.address, &token, chat).await;
        page.wait_body(3, "third", WAIT).await;

        let path = messages_path(&token, chat);
        let edited = app
            .request(
                reqwest::Method::PUT,
                &format!("{path}/2"),
                Some(json!({ "body": "second, edited elsewhere" })),
            )
            .await;
        assert_eq!(edited.status(), StatusCode::OK);
        let deleted = app
            .request(reqwest::Method::DELETE, &format!("{path}/3"), None)
            .await;
        assert_eq!(deleted.status(), StatusCode::NO_CONTENT);

        page.wait_body(2, "second, edited elsewhere", WAIT).await;
        page.wait_js(
            "message 3 removed",
            WAIT,
            "return document.querySelector('#messages li[data-number=\"3\"]') === null;",
            vec![],
        )
        .await;
        assert_eq!(page.numbers().await, [1, 2]);
        let marked = page
            .js(
                "return document.querySelector('#messages li[data-number=\"2\"] .edited') !== null;",
                vec![],
            )
            .await;
        assert_eq!(marked, true, "an edited message says so");
        page.wait_body(1, "first", WAIT).await;
    })
    .await;
}

#[tokio::test]
async fn search_results_highlight_the_term() {
    let test = "search_results_highlight_the_term";
    in_browser(test, |page| async move {
        let app = spawn_app().await;
        let (token, chat) = chat_over_http(&app, "search").await;
        for body in ["The quick brown fox", "a lazy dog", "QUICK thinking"] {
            app.create_message(&token, chat, body).await;
        }
        page.open_chat(&app.address, &token, chat).await;
        page.wait_body(3, "QUICK thinking", WAIT).await;

        page.type_into("#search-input", &format!("quick{}", &*Key::Enter))
            .await;
        let results = page
            .wait_js(
                "two search results",
                WAIT,
                "const items = [...document.querySelectorAll('#search-results li')];\
                 if (items.length !== 2) return null;\
                 return items.map((li) => ({\
                   number: Number(li.dataset.number),\
                   text: li.querySelector('.body').textContent,\
                   marks: [...li.querySelectorAll('mark')].map((m) => m.textContent),\
                 }));",
                vec![],
            )
            .await;
        let mut results: Vec<(u64, String, Vec<String>)> = results
            .as_array()
            .expect("a list")
            .iter()
            .map(|r| {
                (
                    r["number"].as_u64().expect("number"),
                    r["text"].as_str().expect("text").to_owned(),
                    serde_json::from_value(r["marks"].clone()).expect("marks"),
                )
            })
            .collect();
        results.sort();
        assert_eq!(
            results,
            [
                (
                    1,
                    "The quick brown fox".to_owned(),
                    vec!["quick".to_owned()]
                ),
                (3, "QUICK thinking".to_owned(), vec!["QUICK".to_owned()]),
            ],
            "the matches, the term marked as it is written in each"
        );
        page.screenshot("search.png").await;
    })
    .await;
}

#[tokio::test]
async fn hostile_bodies_render_as_inert_text() {
    let test = "hostile_bodies_render_as_inert_text";
    in_browser(test, |page| async move {
        let app = spawn_app().await;
        let (token, chat) = chat_over_http(&app, "hostile").await;
        let image = "<img src=x onerror=alert(1)>";
        let script = "<script>alert(2)</script>";
        // One from the history page, one from the live stream, then both in search results.
        app.create_message(&token, chat, image).await;
        page.open_chat(&app.address, &token, chat).await;
        app.create_message(&token, chat, script).await;
        page.wait_body(1, image, WAIT).await;
        page.wait_body(2, script, WAIT).await;
        page.type_into("#search-input", &format!("alert{}", &*Key::Enter))
            .await;
        page.wait_js(
            "both in the search results",
            WAIT,
            "return document.querySelectorAll('#search-results li').length === 2;",
            vec![],
        )
        .await;

        let elements = page
            .js(
                "return document.querySelectorAll(\
                 '#messages img, #messages script, #search-results img, #search-results script'\
                 ).length;",
                vec![],
            )
            .await;
        assert_eq!(elements, 0, "no element made from a body");
        match page.client.get_alert_text().await {
            Err(e) if e.is_no_such_alert() => {}
            Err(e) => panic!("asking for an alert: {e}"),
            Ok(text) => panic!("an alert is open: {text:?}"),
        }
        page.wait_body(1, image, WAIT).await;
        page.wait_body(2, script, WAIT).await;
        page.screenshot("hostile.png").await;
    })
    .await;
}

#[tokio::test]
async fn after_a_server_restart_the_page_reconnects_and_shows_what_was_posted_once() {
    let test = "after_a_server_restart_the_page_reconnects_and_shows_what_was_posted_once";
    in_browser(test, |page| async move {
        let data = tempfile::tempdir().expect("temporary directory");
        let port = free_port().expect("a free port");
        // The same port and data directory both times: the page reconnects to the same origin.
        let env: Vec<(String, String)> = [
            ("PORT", port.to_string()),
            ("HOST", "127.0.0.1".to_owned()),
            (
                "DATA_DIR",
                data.path().to_str().expect("UTF-8 path").to_owned(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let mut server = start_binary(&["serve"], &env).await;
        let address = server.address.clone();
        let client = reqwest::Client::new();
        let token = create_application_at(&client, &address, "restart").await;
        let post = |path: String, body: Value| {
            let request = client.post(format!("{address}{path}")).json(&body);
            async move {
                let response = request.send().await.expect("request sent");
                assert_eq!(response.status(), StatusCode::CREATED, "POST {path}");
                response.json::<Value>().await.expect("JSON body")
            }
        };
        let chat = post(format!("/applications/{token}/chats"), json!({})).await["number"]
            .as_u64()
            .expect("chat number");
        let messages = messages_path(&token, chat);
        post(messages.clone(), json!({ "body": "before the restart" })).await;
        page.open_chat(&address, &token, chat).await;
        page.wait_body(1, "before the restart", WAIT).await;

        chat_harness::terminate(&mut server.child)
            .await
            .expect("the server exits cleanly on SIGTERM");
        page.wait_js(
            "the page notices the server is gone",
            WAIT,
            "return document.querySelector('#conn-state').textContent !== 'live';",
            vec![],
        )
        .await;
        let mut server = start_binary(&["serve"], &env).await;
        assert_eq!(server.address, address, "the same port");
        let message = post(messages.clone(), json!({ "body": "while reconnecting" })).await;
        assert_eq!(message["number"], 2);

        // The browser's reconnection waits a few seconds: a longer deadline than the others.
        let reconnect = Duration::from_secs(20);
        page.wait_body(2, "while reconnecting", reconnect).await;
        page.wait_live(reconnect).await;
        // A later change arrives after any replay of the earlier ones would have.
        post(messages.clone(), json!({ "body": "after reconnecting" })).await;
        page.wait_body(3, "after reconnecting", reconnect).await;
        let copies = page
            .js(
                "return document.querySelectorAll('#messages li[data-number=\"2\"]').length;",
                vec![],
            )
            .await;
        assert_eq!(copies, 1, "message 2 shown once");
        assert_eq!(page.numbers().await, [1, 2, 3]);
        assert_eq!(page.conn_state().await, "live");
        chat_harness::terminate(&mut server.child)
            .await
            .expect("the server exits cleanly on SIGTERM");
    })
    .await;
}

#[tokio::test]
async fn the_api_page_works_offline() {
    let test = "the_api_page_works_offline";
    in_browser(test, |page| async move {
        // This machine reaches no CDN: whatever /docs needs must come from the server.
        let app = spawn_app().await;
        page.goto(&format!("{}/docs", app.address)).await;
        page.wait_js(
            "the API page lists the routes",
            Duration::from_secs(10),
            "return document.body !== null && document.body.innerText\
             .replace(/\\u200b/g, '').includes('/applications/{token}/chats');",
            vec![],
        )
        .await;
        page.screenshot("docs.png").await;
    })
    .await;
}

#[tokio::test]
async fn composer_and_messages_show_on_narrow_and_wide_windows() {
    let test = "composer_and_messages_show_on_narrow_and_wide_windows";
    in_browser(test, |page| async move {
        let app = spawn_app().await;
        let (token, chat) = chat_over_http(&app, "Support desk").await;
        let conversation = [
            "Hi! My order #1042 still shows as pending.",
            "Thanks for reaching out. Let me look it up.",
            "It was held by the payment check; I released it just now.",
            "Great, I can see it as shipped. Thank you!",
            "You're welcome. Anything else?",
        ];
        for body in conversation {
            app.create_message(&token, chat, body).await;
        }
        page.open_chat(&app.address, &token, chat).await;
        page.wait_body(5, conversation[4], WAIT).await;

        for (width, height) in [(375, 800), (1280, 900)] {
            page.viewport(width, height).await;
            for css in ["#composer", "#messages"] {
                let shown = page.find(css).await.is_displayed().await.expect(css);
                assert!(shown, "{css} displayed at {width}x{height}");
            }
            let overflow = page
                .js(
                    "return document.documentElement.scrollWidth - window.innerWidth;",
                    vec![],
                )
                .await;
            assert!(
                overflow.as_i64() <= Some(0),
                "no sideways scrolling at {width}x{height}: {overflow} px too wide"
            );
            // The latest message and the composer in view, as a person would look at them.
            page.js(
                "const list = document.querySelector('#messages');\
                 list.scrollTop = list.scrollHeight;\
                 document.querySelector('#composer-form').scrollIntoView({ block: 'end' });",
                vec![],
            )
            .await;
            let png = page
                .screenshot(&format!("console-{width}x{height}.png"))
                .await;
            if width == 1280 && var("UPDATE_SCREENSHOT").as_deref() == Some("1") {
                let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
                std::fs::create_dir_all(&docs).expect("docs/");
                std::fs::write(docs.join("console.png"), png).expect("docs/console.png");
            }
        }
    })
    .await;
}
