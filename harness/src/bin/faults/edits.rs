//! The edit rule: which bodies a message may be stored with, given its acknowledged creation and
//! every edit attempted on it, concurrent ones included.
//!
//! Each edit is a write of the whole body, taking effect at one instant inside its request
//! (linearizable, as SPEC.md's "the change with the higher revision wins" and a synchronous
//! store give). An acknowledged edit took effect between its request's start and the end of
//! its answer; an edit whose outcome is unknown (cut, timed out, 5xx) either never took effect
//! or took effect at some instant after its start, with no upper bound (the server may have
//! been working on it when the client gave up). The stored body is the body of the edit that
//! took effect last, or the creation's if none did. So it must be one of:
//!
//! - the body of an acknowledged edit E that no other acknowledged edit F *follows* (F's request
//!   started after E's answer ended: F took effect after E, whatever the interleaving);
//!   concurrent acknowledged edits (overlapping requests) are all allowed, since either may
//!   have taken effect last;
//! - the body of any edit of unknown outcome (it may have taken effect after everything else);
//! - the creation's body, only when no edit was acknowledged.
//!
//! Anything else is a lost (or resurrected) edit.

use std::time::Instant;

use crate::ledger::{Ack, Edit};

/// The bodies `message` may be stored with, given `edits` (all of them of this message).
pub fn allowed<'a>(message: &'a Ack, edits: &[&'a Edit]) -> Vec<&'a str> {
    let acknowledged: Vec<(&Edit, Instant)> = edits
        .iter()
        .filter_map(|e| e.end.map(|end| (*e, end)))
        .collect();
    let mut bodies: Vec<&str> = acknowledged
        .iter()
        .filter(|(_, end)| !acknowledged.iter().any(|(f, _)| f.start > *end))
        .map(|(e, _)| e.body.as_str())
        .collect();
    bodies.extend(
        edits
            .iter()
            .filter(|e| e.end.is_none())
            .map(|e| e.body.as_str()),
    );
    if acknowledged.is_empty() {
        bodies.push(message.body.as_str());
    }
    bodies
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn at(origin: Instant, ms: u64) -> Instant {
        origin + Duration::from_millis(ms)
    }

    fn edit(origin: Instant, body: &str, start: u64, end: Option<u64>) -> Edit {
        Edit {
            chat: 1,
            number: 1,
            body: body.to_owned(),
            start: at(origin, start),
            end: end.map(|end| at(origin, end)),
        }
    }

    #[test]
    fn the_last_acknowledged_edits_and_every_unknown_one_are_allowed() {
        let origin = Instant::now();
        let message = Ack {
            chat: 1,
            number: 1,
            body: "created".into(),
            start: origin,
            end: at(origin, 5),
        };
        assert_eq!(allowed(&message, &[]), vec!["created"]);
        // a, then b and c concurrently (both started after a ended), d unknown.
        let (a, b, c) = (
            edit(origin, "a", 10, Some(20)),
            edit(origin, "b", 30, Some(50)),
            edit(origin, "c", 40, Some(60)),
        );
        let d = edit(origin, "d", 15, None);
        let mut bodies = allowed(&message, &[&a, &b, &c, &d]);
        bodies.sort_unstable();
        assert_eq!(bodies, vec!["b", "c", "d"]);
        // Only unknown edits: the creation's body stands unless one of them took effect.
        let mut bodies = allowed(&message, &[&d]);
        bodies.sort_unstable();
        assert_eq!(bodies, vec!["created", "d"]);
    }
}
