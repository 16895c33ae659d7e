//! The requests of the load, one method each on [`Target`]: create a message, edit one, create a
//! chat, create an application. Each records its acknowledgement in the ledger and counts its
//! failures; an edit is recorded even when its outcome is unknown (`ledger.rs`).

use std::time::Instant;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::ledger::{Ack, AppAck, ChatAck, Edit, Ledger};
use crate::load::Target;

/// Why a request was not acknowledged.
pub enum Failure {
    /// The server refused it: nothing was applied.
    Refused,
    /// It may or may not have been applied.
    Unknown,
}

impl Target {
    /// One request: its answer's JSON if the status is `expected`; else the failure is
    /// counted under `what`, and told apart: refused outright (a 4xx other than 408, nothing
    /// was applied) or unknown (cut, timed out, 408, 5xx, an unreadable answer).
    pub async fn send(
        &self,
        ledger: &Ledger,
        what: &str,
        request: reqwest::RequestBuilder,
        expected: StatusCode,
    ) -> Result<Value, Failure> {
        let response = match request.send().await {
            Ok(response) => response,
            Err(err) => {
                let kind = if err.is_timeout() {
                    "timeout"
                } else {
                    "connection"
                };
                ledger.fail(format!("{what} {kind}"));
                return Err(Failure::Unknown);
            }
        };
        let status = response.status();
        if status != expected {
            ledger.fail(format!("{what} {}", status.as_u16()));
            let refused = status.is_client_error() && status != StatusCode::REQUEST_TIMEOUT;
            return Err(if refused {
                Failure::Refused
            } else {
                Failure::Unknown
            });
        }
        // The answer is complete once its body is read: that is the acknowledgement.
        response.json::<Value>().await.map_err(|_| {
            ledger.fail(format!(
                "{what} {} without a readable body",
                status.as_u16()
            ));
            Failure::Unknown
        })
    }

    /// One message creation through `api`; a `201` goes into the ledger. True if acknowledged.
    pub async fn create_message(
        &self,
        ledger: &Ledger,
        api: &str,
        chat: u64,
        body: String,
    ) -> bool {
        let url = format!("{api}/applications/{}/chats/{chat}/messages", self.token);
        let start = Instant::now();
        let request = self.client.post(url).json(&json!({ "body": body }));
        let Ok(message) = self
            .send(ledger, "message", request, StatusCode::CREATED)
            .await
        else {
            return false;
        };
        let end = Instant::now();
        let Some(number) = message["number"].as_u64() else {
            ledger.fail("message 201 without a number".to_owned());
            return false;
        };
        ledger.ack(Ack {
            chat,
            number,
            body,
            start,
            end,
        });
        true
    }

    /// One edit of an acknowledged message. Recorded whatever happens, acknowledged or not,
    /// except when the server refused it outright (a 4xx other than 408: nothing applied).
    pub async fn edit_message(
        &self,
        ledger: &Ledger,
        api: &str,
        (chat, number): (u64, u64),
        body: String,
    ) -> bool {
        let url = format!(
            "{api}/applications/{}/chats/{chat}/messages/{number}",
            self.token
        );
        let start = Instant::now();
        let request = self.client.patch(url).json(&json!({ "body": body }));
        let answer = self.send(ledger, "edit", request, StatusCode::OK).await;
        let acknowledged = answer
            .as_ref()
            .is_ok_and(|m| m["body"].as_str() == Some(body.as_str()));
        if answer.is_ok() && !acknowledged {
            // Counted, and kept as an edit of unknown outcome: the checker decides.
            ledger.fail("edit 200 with another body".to_owned());
        }
        if !matches!(answer, Err(Failure::Refused)) {
            ledger.edit(Edit {
                chat,
                number,
                body,
                start,
                end: acknowledged.then(Instant::now),
            });
        }
        acknowledged
    }

    /// One chat creation in the application under load.
    pub async fn create_chat(&self, ledger: &Ledger, api: &str) -> bool {
        let url = format!("{api}/applications/{}/chats", self.token);
        let start = Instant::now();
        let request = self.client.post(url).json(&json!({}));
        let Ok(chat) = self
            .send(ledger, "chat", request, StatusCode::CREATED)
            .await
        else {
            return false;
        };
        let end = Instant::now();
        let Some(number) = chat["number"].as_u64() else {
            ledger.fail("chat 201 without a number".to_owned());
            return false;
        };
        ledger.chat(ChatAck { number, start, end });
        true
    }

    /// One application creation, named `name`.
    pub async fn create_app(&self, ledger: &Ledger, api: &str, name: String) -> bool {
        let request = self
            .client
            .post(format!("{api}/applications"))
            .json(&json!({ "name": name }));
        let Ok(app) = self
            .send(ledger, "application", request, StatusCode::CREATED)
            .await
        else {
            return false;
        };
        let Some(token) = app["token"].as_str() else {
            ledger.fail("application 201 without a token".to_owned());
            return false;
        };
        ledger.app(AppAck {
            token: token.to_owned(),
            name,
        });
        true
    }
}
