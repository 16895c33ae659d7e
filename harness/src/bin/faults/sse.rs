//! Server-Sent Events as a client reads them (the `text/event-stream` format of the HTML
//! standard, as `EventSource` parses it): bytes arrive in chunks cut anywhere, lines end with
//! `\n`, `\r\n` or `\r`, a line `field: value` sets a field (one space after the colon is
//! dropped), a line starting with `:` is a comment (the server's keep-alives), an empty line
//! ends the event. `data:` lines join with `\n`; a block with no `data:` is not an event.
//!
//! What the chat streams send (SPEC.md §7): `id: <revision>` and `data: <Message or tombstone
//! JSON>` per change, `event: chat_deleted` with its `data:` when the chat is deleted.

use serde::Deserialize;

use crate::feed::{Entry, Item};

/// One event as the stream sent it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

/// Reads events out of the chunks of one response, whatever their boundaries.
#[derive(Default)]
pub struct Parser {
    /// Bytes not yet ending a line.
    pending: Vec<u8>,
    /// The block read so far.
    current: Event,
    /// Whether the block had a `data:` line.
    has_data: bool,
    /// The last chunk ended with `\r`: a `\n` opening the next one belongs to it.
    after_cr: bool,
}

impl Parser {
    /// Takes one chunk; returns the events it completed, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        let mut chunk = chunk;
        if self.after_cr && !chunk.is_empty() {
            self.after_cr = false;
            if let Some(rest) = chunk.strip_prefix(b"\n") {
                chunk = rest;
            }
        }
        let mut start = 0;
        let mut i = 0;
        while i < chunk.len() {
            match chunk[i] {
                b'\n' | b'\r' => {
                    self.pending.extend_from_slice(&chunk[start..i]);
                    let line = std::mem::take(&mut self.pending);
                    if let Some(event) = self.line(&line) {
                        events.push(event);
                    }
                    if chunk[i] == b'\r' {
                        match chunk.get(i + 1) {
                            Some(b'\n') => i += 1,
                            Some(_) => {}
                            None => self.after_cr = true,
                        }
                    }
                    start = i + 1;
                }
                _ => {}
            }
            i += 1;
        }
        self.pending.extend_from_slice(&chunk[start..]);
        events
    }

    /// One complete line; the event it ends, if it is an empty line after a `data:`.
    fn line(&mut self, line: &[u8]) -> Option<Event> {
        if line.is_empty() {
            let event = std::mem::take(&mut self.current);
            let had = std::mem::replace(&mut self.has_data, false);
            return had.then_some(event);
        }
        if line[0] == b':' {
            return None;
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "id" => self.current.id = Some(value.to_owned()),
            "event" => self.current.event = Some(value.to_owned()),
            "data" => {
                if self.has_data {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(value);
                self.has_data = true;
            }
            // `retry` and unknown fields: ignored, as `EventSource` does.
            _ => {}
        }
        None
    }
}

/// What one event of a chat stream says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Received {
    /// A change: the message's state at its revision.
    Change(Item),
    /// `event: chat_deleted`: the stream ends.
    ChatDeleted,
    /// Anything else, in words: an event without a numeric id, data that is not a message or a
    /// tombstone, an id that is not the data's revision, an unknown event name.
    Malformed(String),
}

/// The JSON of a change, the fields the checker needs.
#[derive(Deserialize)]
struct Change {
    number: u64,
    revision: u64,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    deleted: bool,
}

/// What `event` says about its chat.
pub fn interpret(event: &Event) -> Received {
    match event.event.as_deref() {
        None | Some("message") => {}
        Some("chat_deleted") => return Received::ChatDeleted,
        Some(other) => return Received::Malformed(format!("unknown event {other:?}")),
    }
    let Some(id) = event.id.as_deref().and_then(|id| id.parse::<u64>().ok()) else {
        return Received::Malformed(format!("no numeric id: {event:?}"));
    };
    let change: Change = match serde_json::from_str(&event.data) {
        Ok(change) => change,
        Err(err) => return Received::Malformed(format!("id {id}: {err}: {:?}", event.data)),
    };
    if change.revision != id {
        return Received::Malformed(format!(
            "id {id} but the data's revision is {}",
            change.revision
        ));
    }
    let entry = match (change.deleted, change.body) {
        (true, _) => Entry::Tombstone,
        (false, Some(body)) => Entry::Live(body),
        (false, None) => {
            return Received::Malformed(format!("id {id}: neither a body nor deleted"));
        }
    };
    Received::Change(Item {
        number: change.number,
        revision: change.revision,
        entry,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: Option<&str>, name: Option<&str>, data: &str) -> Event {
        Event {
            id: id.map(str::to_owned),
            event: name.map(str::to_owned),
            data: data.to_owned(),
        }
    }

    #[test]
    fn events_end_at_an_empty_line_and_comments_are_skipped() {
        let mut parser = Parser::default();
        let stream =
            b": keep-alive\n\nid: 3\ndata: {\"a\":1}\n\n:\n\nevent: chat_deleted\ndata: {}\n\n";
        assert_eq!(
            parser.push(stream),
            vec![
                event(Some("3"), None, "{\"a\":1}"),
                event(None, Some("chat_deleted"), "{}")
            ]
        );
        // A block without data (an id alone) is no event; data lines join with a newline; a
        // field without a colon or a space after it is read too.
        assert!(parser.push(b"id: 4\n\n").is_empty());
        assert_eq!(
            parser.push(b"id:5\ndata: a\ndata:b\ndata\nretry: 10\n\n"),
            vec![event(Some("5"), None, "a\nb\n")]
        );
    }

    #[test]
    fn chunks_may_cut_anywhere_and_lines_may_end_with_cr_lf_or_cr() {
        let stream =
            "id: 7\r\ndata: {\"body\":\"é\"}\r\n\r\n: ping\rid: 8\rdata: x\r\r\nid: 9\ndata: y\n\n";
        let expected = vec![
            event(Some("7"), None, "{\"body\":\"é\"}"),
            event(Some("8"), None, "x"),
            event(Some("9"), None, "y"),
        ];
        let bytes = stream.as_bytes();
        for size in 1..=bytes.len() {
            let mut parser = Parser::default();
            let events: Vec<Event> = bytes.chunks(size).flat_map(|c| parser.push(c)).collect();
            assert_eq!(events, expected, "chunks of {size} bytes");
        }
    }

    #[test]
    fn a_change_is_a_message_or_a_tombstone_whose_revision_is_its_id() {
        let message = event(
            Some("5"),
            None,
            r#"{"number":3,"message_number":3,"chat_number":1,"body":"hi","revision":5,"created_at":"","updated_at":""}"#,
        );
        let item = |number, revision, entry| Item {
            number,
            revision,
            entry,
        };
        assert_eq!(
            interpret(&message),
            Received::Change(item(3, 5, Entry::Live("hi".into())))
        );
        let tombstone = event(
            Some("6"),
            None,
            r#"{"number":4,"message_number":4,"chat_number":1,"revision":6,"deleted":true,"deleted_at":""}"#,
        );
        assert_eq!(
            interpret(&tombstone),
            Received::Change(item(4, 6, Entry::Tombstone))
        );
        let deleted = event(
            None,
            Some("chat_deleted"),
            r#"{"chat_number":1,"deleted":true}"#,
        );
        assert_eq!(interpret(&deleted), Received::ChatDeleted);
        for bad in [
            event(Some("7"), None, r#"{"number":4,"revision":6,"body":"x"}"#),
            event(None, None, r#"{"number":4,"revision":6,"body":"x"}"#),
            event(Some("x"), None, r#"{"number":4,"revision":6,"body":"x"}"#),
            event(Some("6"), None, r#"{"number":4,"revision":6}"#),
            event(Some("6"), None, "not JSON"),
            event(Some("6"), Some("other"), r#"{"number":4,"revision":6}"#),
        ] {
            assert!(
                matches!(interpret(&bad), Received::Malformed(_)),
                "{bad:?}: {:?}",
                interpret(&bad)
            );
        }
    }
}
