//! The requests of the load, one method each on [`Target`]: create a message, edit one, delete
//! one, create a chat, create an application. Each records its acknowledgement in the ledger
//! and counts its failures; an edit or a deletion is recorded even when its outcome is unknown
//! (`ledger.rs`).

use std::time::Instant;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::ledger::{Ack, AppAck, ChatAck, Delete, Edit, Ledger};
use crate::load::Target;

/// Why a request was not acknowledged.
pub enum Failure {
    /// The server refused it: nothing was applied.
    Refused,
    /// The server refused it as the writer expected (counted apart): nothing was applied.
    Foreseen,
    /// It may or may not have been applied.
    Unknown,
}

/// What became of a deletion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deletion {
    /// `204`.
    Acknowledged,
    /// Cut, timed out, 408, 5xx: it may or may not have taken effect.
    Unknown,
    /// Refused outright (a 4xx other than 408): nothing was deleted.
    Refused,
}

/// The kind under which an edit's `404` of a message a deletion was sent for is counted: the
/// writer expected it, it is not a failure.
pub const EDIT_OF_DELETED: &str = "edit 404 of a deleted message";

impl Target {
    /// One request: its answer's JSON if the status is `expected` (`null` for a `204`); else
    /// the failure is counted under `what`, and told apart: refused outright (a 4xx other than
    /// 408, nothing was applied) or unknown (cut, timed out, 408, 5xx, an unreadable answer).
    pub async fn send(
        &self,
        ledger: &Ledger,
        what: &str,
        request: reqwest::RequestBuilder,
        expected: StatusCode,
    ) -> Result<Value, Failure> {
        self.send_foreseeing(ledger, what, request, expected, |_| None)
            .await
    }

    /// As [`Target::send`], except that a refusal `foreseen` names (with the kind to count it
    /// under) is one the writer expected: counted apart ([`Ledger::expect`]), not as a failure.
    pub async fn send_foreseeing(
        &self,
        ledger: &Ledger,
        what: &str,
        request: reqwest::RequestBuilder,
        expected: StatusCode,
        foreseen: impl FnOnce(StatusCode) -> Option<&'static str>,
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
            let refused = status.is_client_error() && status != StatusCode::REQUEST_TIMEOUT;
            if !refused {
                ledger.fail(format!("{what} {}", status.as_u16()));
                return Err(Failure::Unknown);
            }
            return Err(match foreseen(status) {
                Some(kind) => {
                    ledger.expect(kind.to_owned());
                    Failure::Foreseen
                }
                None => {
                    ledger.fail(format!("{what} {}", status.as_u16()));
                    Failure::Refused
                }
            });
        }
        // The answer is complete once its body is read: that is the acknowledgement.
        let unreadable = |_| {
            ledger.fail(format!(
                "{what} {} without a readable body",
                status.as_u16()
            ));
            Failure::Unknown
        };
        if status == StatusCode::NO_CONTENT {
            return response
                .bytes()
                .await
                .map(|_| Value::Null)
                .map_err(unreadable);
        }
        response.json::<Value>().await.map_err(unreadable)
    }

    /// One message creation through `api`; a `201` goes into the ledger. Its number if
    /// acknowledged.
    pub async fn create_message(
        &self,
        ledger: &Ledger,
        api: &str,
        chat: u64,
        body: String,
    ) -> Option<u64> {
        let url = format!("{api}/applications/{}/chats/{chat}/messages", self.token);
        let start = Instant::now();
        let request = self.client.post(url).json(&json!({ "body": body }));
        let Ok(message) = self
            .send(ledger, "message", request, StatusCode::CREATED)
            .await
        else {
            return None;
        };
        let end = Instant::now();
        let Some(number) = message["number"].as_u64() else {
            ledger.fail("message 201 without a number".to_owned());
            return None;
        };
        ledger.ack(Ack {
            chat,
            number,
            body,
            start,
            end,
        });
        Some(number)
    }

    /// One edit of an acknowledged message. Recorded whatever happens, acknowledged or not,
    /// except when the server refused it outright (a 4xx other than 408: nothing applied). A
    /// `404` of a message a deletion was sent for is expected ([`EDIT_OF_DELETED`]). True if
    /// acknowledged or refused as expected.
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
        let deleted = |status| {
            let expected = status == StatusCode::NOT_FOUND && ledger.is_deleting((chat, number));
            expected.then_some(EDIT_OF_DELETED)
        };
        let answer = self
            .send_foreseeing(ledger, "edit", request, StatusCode::OK, deleted)
            .await;
        let acknowledged = answer
            .as_ref()
            .is_ok_and(|m| m["body"].as_str() == Some(body.as_str()));
        if answer.is_ok() && !acknowledged {
            // Counted, and kept as an edit of unknown outcome: the checker decides.
            ledger.fail("edit 200 with another body".to_owned());
        }
        let refused = matches!(answer, Err(Failure::Refused | Failure::Foreseen));
        if !refused {
            ledger.edit(Edit {
                chat,
                number,
                body,
                start,
                end: acknowledged.then(Instant::now),
            });
        }
        acknowledged || matches!(answer, Err(Failure::Foreseen))
    }

    /// One deletion of an acknowledged message. Marked in the ledger before it is sent (so
    /// an edit's `404` of it is expected), and recorded acknowledged or of unknown outcome;
    /// unmarked if the server refused it outright (nothing deleted).
    pub async fn delete_message(
        &self,
        ledger: &Ledger,
        api: &str,
        (chat, number): (u64, u64),
    ) -> Deletion {
        let url = format!(
            "{api}/applications/{}/chats/{chat}/messages/{number}",
            self.token
        );
        ledger.deleting((chat, number));
        let request = self.client.delete(url);
        let answer = self
            .send(ledger, "delete", request, StatusCode::NO_CONTENT)
            .await;
        let (end, deletion) = match answer {
            Ok(_) => (Some(Instant::now()), Deletion::Acknowledged),
            Err(Failure::Unknown) => (None, Deletion::Unknown),
            Err(Failure::Refused | Failure::Foreseen) => {
                ledger.not_deleting((chat, number));
                return Deletion::Refused;
            }
        };
        ledger.delete(Delete { chat, number, end });
        deletion
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

#[cfg(test)]
mod tests {
    use axum::http::StatusCode as Status;
    use axum::routing::patch;
    use axum::Router;

    use super::*;
    use crate::load::client;

    /// A server where every message can be deleted (`204`) but none edited (`404`), except
    /// message 3, whose deletion fails (`503`).
    async fn server() -> String {
        let app = Router::new().route(
            "/applications/t/chats/1/messages/{number}",
            patch(|| async { Status::NOT_FOUND }).delete(
                |axum::extract::Path(number): axum::extract::Path<u64>| async move {
                    if number == 3 {
                        Status::SERVICE_UNAVAILABLE
                    } else {
                        Status::NO_CONTENT
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    #[tokio::test]
    async fn an_edit_404_of_a_deleted_message_is_expected_and_any_other_is_a_failure() {
        let api = server().await;
        let target = Target::new(client(), vec![api.clone()], "t".into(), vec![1]);
        let ledger = Ledger::default();
        let deleted = target.delete_message(&ledger, &api, (1, 1)).await;
        assert_eq!(deleted, Deletion::Acknowledged);
        let unknown = target.delete_message(&ledger, &api, (1, 3)).await;
        assert_eq!(unknown, Deletion::Unknown);
        // Edits of messages a deletion was sent for, acknowledged or not: 404 expected.
        assert!(target.edit_message(&ledger, &api, (1, 1), "a".into()).await);
        assert!(target.edit_message(&ledger, &api, (1, 3), "b".into()).await);
        // An edit's 404 of a message no deletion was sent for: a failure, as before.
        assert!(!target.edit_message(&ledger, &api, (1, 2), "c".into()).await);
        let taken = ledger.take();
        assert_eq!(taken.expected, [(EDIT_OF_DELETED.to_owned(), 2)].into());
        assert_eq!(
            taken.failures,
            [("delete 503".to_owned(), 1), ("edit 404".to_owned(), 1)].into()
        );
        // Refused edits are not recorded; both deletions are, one acknowledged.
        assert!(taken.edits.is_empty());
        let deletes: Vec<_> = taken
            .deletes
            .iter()
            .map(|d| (d.number, d.end.is_some()))
            .collect();
        assert_eq!(deletes, vec![(1, true), (3, false)]);
        // Neither message is offered for an edit any more.
        ledger.ack(crate::ledger::Ack {
            chat: 1,
            number: 1,
            body: "created".into(),
            start: Instant::now(),
            end: Instant::now(),
        });
        assert_eq!(ledger.message_of(1, 0), None);
    }
}
