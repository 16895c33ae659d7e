//! The deletion rule: what may be stored of an acknowledged message, given the deletions sent
//! for it (writers only delete messages whose creation was acknowledged, each at most once).
//!
//! A deletion takes effect at one instant inside its request, like an edit (`edits.rs`); one
//! whose outcome is unknown (cut, timed out, 408, 5xx) either never took effect or took effect
//! at some instant after its start. Once a message is deleted nothing brings it back: not a
//! fault, not a restart, not an edit (acknowledged or not) that landed after the deletion.
//! So, after the run:
//!
//! - a message whose deletion was **acknowledged** (`204`) is gone from every view: not listed,
//!   `GET` answers `404`, and the changes feed carries its tombstone (`"deleted": true`);
//!   anything else is an acknowledged deletion undone;
//! - a message whose deletion's outcome is **unknown** may be gone, or stored with a body the
//!   edit rule allows (the deletion never took effect);
//! - a message no deletion was sent for is stored with a body the edit rule allows, as before
//!   deletions existed; not stored, it is lost.
//!
//! Edits of a message that ended deleted are not held against the edit rule: there is no body
//! left to hold them against.

use crate::ledger::Delete;

/// What the deletions sent for a message allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// No deletion was sent (or every one was refused): it must be stored.
    Live,
    /// A deletion was acknowledged: it must be gone.
    Deleted,
    /// A deletion's outcome is unknown: gone, or stored.
    Either,
}

/// The fate of a message, given the deletions sent for it.
pub fn fate(deletes: &[&Delete]) -> Fate {
    if deletes.iter().any(|d| d.end.is_some()) {
        Fate::Deleted
    } else if deletes.is_empty() {
        Fate::Live
    } else {
        Fate::Either
    }
}

/// What the checker saw of one acknowledged message; `None` where it did not look.
#[derive(Clone, Copy, Debug, Default)]
pub struct Seen<'a> {
    /// Its body if it is listed.
    pub listed: Option<&'a str>,
    /// Whether the changes feed carries its tombstone.
    pub tombstone: Option<bool>,
    /// What `GET` of it answered: its body, or `None` for a `404`.
    pub fetched: Option<Option<&'a str>>,
}

/// The judgement of one acknowledged message.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Stored, with a body the edit rule allows.
    Stored,
    /// Gone, as its deletion allows.
    Gone,
    /// Never (successfully) deleted, yet not listed.
    Lost,
    /// Stored with a body the edit rule does not allow.
    WrongBody,
    /// Its deletion was acknowledged, yet it is still there: where it was seen.
    Undone(Vec<&'static str>),
}

/// Judges `seen` against `fate` and the bodies the edit rule allows.
pub fn judge(fate: Fate, seen: &Seen, allowed: &[&str]) -> Verdict {
    if fate == Fate::Deleted {
        let mut seen_in = Vec::new();
        if seen.listed.is_some() {
            seen_in.push("listed");
        }
        if matches!(seen.fetched, Some(Some(_))) {
            seen_in.push("found by GET");
        }
        if seen.tombstone == Some(false) {
            seen_in.push("no tombstone in the changes feed");
        }
        return if seen_in.is_empty() {
            Verdict::Gone
        } else {
            Verdict::Undone(seen_in)
        };
    }
    match seen.listed {
        Some(body) if allowed.contains(&body) => Verdict::Stored,
        Some(_) => Verdict::WrongBody,
        None if fate == Fate::Either => Verdict::Gone,
        None => Verdict::Lost,
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn delete(origin: Instant, acknowledged: bool) -> Delete {
        Delete {
            chat: 1,
            number: 1,
            end: acknowledged.then(|| origin + Duration::from_millis(10)),
        }
    }

    #[test]
    fn an_acknowledged_deletion_decides_whatever_else_was_sent() {
        let origin = Instant::now();
        let (acked, unknown) = (delete(origin, true), delete(origin, false));
        assert_eq!(fate(&[]), Fate::Live);
        assert_eq!(fate(&[&unknown]), Fate::Either);
        assert_eq!(fate(&[&unknown, &acked]), Fate::Deleted);
    }

    #[test]
    fn an_acknowledged_deletion_must_stay_deleted_in_every_view() {
        let gone = Seen {
            listed: None,
            tombstone: Some(true),
            fetched: Some(None),
        };
        // Edits of it do not matter: no body is left to hold them against.
        assert_eq!(judge(Fate::Deleted, &gone, &[]), Verdict::Gone);
        let back = Seen {
            listed: Some("edited after the deletion"),
            tombstone: Some(false),
            fetched: Some(Some("edited after the deletion")),
        };
        assert_eq!(
            judge(Fate::Deleted, &back, &["edited after the deletion"]),
            Verdict::Undone(vec![
                "listed",
                "found by GET",
                "no tombstone in the changes feed"
            ])
        );
        // Found by GET alone, or missing its tombstone alone, is undone too.
        let fetched = Seen {
            fetched: Some(Some("created")),
            ..gone
        };
        assert_eq!(
            judge(Fate::Deleted, &fetched, &[]),
            Verdict::Undone(vec!["found by GET"])
        );
        let no_tombstone = Seen {
            tombstone: Some(false),
            ..gone
        };
        assert_eq!(
            judge(Fate::Deleted, &no_tombstone, &[]),
            Verdict::Undone(vec!["no tombstone in the changes feed"])
        );
        // Where the checker did not look (the scaled drain), only the list counts.
        assert_eq!(judge(Fate::Deleted, &Seen::default(), &[]), Verdict::Gone);
    }

    #[test]
    fn a_deletion_of_unknown_outcome_allows_gone_or_stored_by_the_edit_rule() {
        let allowed = ["created", "edited"];
        assert_eq!(
            judge(Fate::Either, &Seen::default(), &allowed),
            Verdict::Gone
        );
        let stored = Seen {
            listed: Some("edited"),
            ..Seen::default()
        };
        assert_eq!(judge(Fate::Either, &stored, &allowed), Verdict::Stored);
        let wrong = Seen {
            listed: Some("an edit that was followed by another"),
            ..Seen::default()
        };
        assert_eq!(judge(Fate::Either, &wrong, &allowed), Verdict::WrongBody);
    }

    #[test]
    fn a_message_never_deleted_must_be_stored_as_before() {
        let allowed = ["created"];
        assert_eq!(judge(Fate::Live, &Seen::default(), &allowed), Verdict::Lost);
        let stored = Seen {
            listed: Some("created"),
            ..Seen::default()
        };
        assert_eq!(judge(Fate::Live, &stored, &allowed), Verdict::Stored);
        let wrong = Seen {
            listed: Some("something else"),
            ..Seen::default()
        };
        assert_eq!(judge(Fate::Live, &wrong, &allowed), Verdict::WrongBody);
    }
}
