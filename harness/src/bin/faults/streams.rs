//! The checker's part for the live streams (SPEC.md §7): what each subscriber (`subscribers.rs`)
//! received over the whole run, reconnections included, is held against itself, the store and
//! the ledger.
//!
//! - **violations**: an id not above every id before it on that subscriber (a revision twice:
//!   a duplicate; a lower one: out of order), an event that is not a message or a tombstone
//!   whose revision is its id, an `event: chat_deleted` (the runner never deletes a chat). Only
//!   strictly increasing is required, not contiguous: a stream resumed from `Last-Event-ID`
//!   sends the changes feed, which holds each message once in its latest state, so the older
//!   revisions of a message changed meanwhile are never sent;
//! - after the load stopped (and the scaled drain), each subscriber is given until
//!   [`CATCH_UP`] to reach the last revision of its chat's changes feed; one that does not is
//!   **behind**;
//! - **mismatches**: the state built from the subscriber's events (the last event of each
//!   number wins), up to that revision, against the changes feed `since=0`: the same numbers,
//!   each at the same revision with the same body, or the same tombstone;
//! - **missing**: an acknowledged creation of the chat (the ledger) never received, neither as
//!   a message nor as a tombstone; an acknowledged deletion never received as a tombstone.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::feed::{self, Entry, Item};
use crate::ledger::Taken;
use crate::load::Target;
use crate::subscribers::{Log, Subscribers};

/// How long the subscribers may take to catch up with the store once the load stopped.
pub const CATCH_UP: Duration = Duration::from_secs(60);

#[derive(Debug, Default, Serialize)]
pub struct StreamFindings {
    pub subscribers: usize,
    /// The chats followed.
    pub chats: Vec<u64>,
    /// Changes received, over every subscriber.
    pub events: usize,
    /// Connections opened after each subscriber's first.
    pub reconnects: usize,
    /// Connection attempts that failed and connections that ended, by kind.
    pub disconnects: BTreeMap<String, u64>,
    /// Ids not strictly increasing (duplicates and reorders), malformed events, `chat_deleted`.
    pub violations: usize,
    pub duplicates: usize,
    pub reorders: usize,
    /// Acknowledged creations never received, acknowledged deletions never received as a
    /// tombstone.
    pub missing: usize,
    /// Messages whose received state is not the store's (numbers, revisions, bodies,
    /// tombstones), over every subscriber.
    pub mismatches: usize,
    /// Subscribers that had not reached their chat's last revision within [`CATCH_UP`].
    pub behind: usize,
    /// How long the catch-up took.
    pub catch_up_s: f64,
    /// Subscriber tasks that panicked or did not stop.
    pub subscriber_failures: Vec<String>,
    /// The first few problems, in words.
    pub examples: Vec<String>,
}

impl StreamFindings {
    pub fn note(&mut self, example: String) {
        if self.examples.len() < 20 {
            self.examples.push(example);
        }
    }

    /// Every subscriber got every change of its chat once, in order, and ended with the store's
    /// state.
    pub fn passed(&self) -> bool {
        self.violations == 0
            && self.missing == 0
            && self.mismatches == 0
            && self.behind == 0
            && self.subscriber_failures.is_empty()
    }
}

/// A problem with the order of the ids one subscriber received.
#[derive(Debug, PartialEq, Eq)]
pub enum Disorder {
    /// This revision was received before.
    Duplicate(u64),
    /// This revision came after a higher one: (it, the highest before it).
    Reordered(u64, u64),
}

/// The events whose revision is not above every revision before them.
pub fn disorders(events: &[Item]) -> Vec<Disorder> {
    let mut seen = HashSet::new();
    let mut highest = 0;
    let mut found = Vec::new();
    for event in events {
        if !seen.insert(event.revision) {
            found.push(Disorder::Duplicate(event.revision));
        } else if event.revision <= highest {
            found.push(Disorder::Reordered(event.revision, highest));
        }
        highest = highest.max(event.revision);
    }
    found
}

/// The state of each message the events say, up to revision `upto` (later events are changes
/// the store was read before): number → its last event.
pub fn state(events: &[Item], upto: u64) -> BTreeMap<u64, &Item> {
    let mut state = BTreeMap::new();
    for event in events.iter().filter(|e| e.revision <= upto) {
        state.insert(event.number, event);
    }
    state
}

/// Where the state the events say (up to revision `upto`, [`state`]) differs from the changes
/// feed read from the store. A change not received is told with the revisions received around
/// it: a gap in a stream that went on is a change the stream stepped over.
pub fn mismatches(chat: u64, events: &[Item], upto: u64, feed: &[Item]) -> Vec<String> {
    let received = state(events, upto);
    let mut revisions: Vec<u64> = events.iter().map(|e| e.revision).collect();
    revisions.sort_unstable();
    let mut problems = Vec::new();
    let mut in_feed = HashSet::new();
    for item in feed {
        in_feed.insert(item.number);
        match received.get(&item.number) {
            Some(got) if *got == item => {}
            Some(got) => problems.push(format!(
                "chat {chat}: {} received as {:?} at revision {}, stored as {:?} at {} ({})",
                item.number,
                got.entry,
                got.revision,
                item.entry,
                item.revision,
                around(&revisions, item.revision)
            )),
            None => problems.push(format!(
                "chat {chat}: {} stored ({:?} at revision {}) but never received ({})",
                item.number,
                item.entry,
                item.revision,
                around(&revisions, item.revision)
            )),
        }
    }
    problems.extend(
        received
            .keys()
            .filter(|n| !in_feed.contains(n))
            .map(|n| format!("chat {chat}: {n} received but not in the changes feed")),
    );
    problems
}

/// The revisions received just before and just after `revision` (`revisions`: every one
/// received, sorted), in words.
fn around(revisions: &[u64], revision: u64) -> String {
    let below = revisions.partition_point(|&r| r < revision);
    let above = revisions.partition_point(|&r| r <= revision);
    let show = |r: Option<&u64>| r.map_or_else(|| "none".to_owned(), u64::to_string);
    format!(
        "received {} then {}",
        show(below.checked_sub(1).and_then(|i| revisions.get(i))),
        show(revisions.get(above))
    )
}

/// Acknowledged changes of the chat the events lack: creations (`created`) whose number never
/// came, deletions (`deleted`) whose tombstone never came.
pub fn missing(chat: u64, events: &[Item], created: &[u64], deleted: &[u64]) -> Vec<String> {
    let numbers: HashSet<u64> = events.iter().map(|e| e.number).collect();
    let tombstones: HashSet<u64> = events
        .iter()
        .filter(|e| e.entry == Entry::Tombstone)
        .map(|e| e.number)
        .collect();
    let mut problems: Vec<String> = created
        .iter()
        .filter(|n| !numbers.contains(n))
        .map(|n| format!("chat {chat}: acknowledged {n} never received"))
        .collect();
    problems.extend(
        deleted
            .iter()
            .filter(|n| !tombstones.contains(n))
            .map(|n| format!("chat {chat}: deletion of {n} acknowledged, no tombstone received")),
    );
    problems
}

/// One subscriber's log held against its chat's feed and the ledger.
pub fn judge(
    log: &Log,
    feed: &[Item],
    (created, deleted): (&[u64], &[u64]),
    findings: &mut StreamFindings,
) {
    let chat = log.chat;
    findings.events += log.events.len();
    findings.reconnects += log.connections.saturating_sub(1);
    for (kind, n) in &log.disconnects {
        *findings.disconnects.entry(kind.clone()).or_default() += n;
    }
    findings.violations += log.problems.len();
    for problem in log.problems.iter().take(3) {
        findings.note(problem.clone());
    }
    let disorders = disorders(&log.events);
    findings.violations += disorders.len();
    for disorder in &disorders {
        match disorder {
            Disorder::Duplicate(_) => findings.duplicates += 1,
            Disorder::Reordered(..) => findings.reorders += 1,
        }
    }
    for disorder in disorders.iter().take(3) {
        findings.note(format!("chat {chat}: {disorder:?} on one subscriber"));
    }
    let upto = feed.iter().map(|item| item.revision).max().unwrap_or(0);
    let wrong = mismatches(chat, &log.events, upto, feed);
    findings.mismatches += wrong.len();
    let lacking = missing(chat, &log.events, created, deleted);
    findings.missing += lacking.len();
    for problem in lacking.into_iter().take(3).chain(wrong.into_iter().take(3)) {
        findings.note(problem);
    }
}

/// Waits until every subscriber reached the last revision of its chat's changes feed (or
/// [`CATCH_UP`] passed), stops them, and judges what each received.
pub async fn check(
    target: &Target,
    subscribers: Subscribers,
    taken: &Taken,
) -> anyhow::Result<StreamFindings> {
    let mut findings = StreamFindings {
        subscribers: subscribers.len(),
        chats: subscribers.chats(),
        ..StreamFindings::default()
    };
    let started = Instant::now();
    // Each chat's feed as read when its subscribers were found caught up with it (or last).
    let mut feeds: HashMap<u64, (Vec<Item>, bool)> = HashMap::new();
    loop {
        for &chat in &findings.chats {
            if feeds.get(&chat).is_some_and(|(_, caught_up)| *caught_up) {
                continue;
            }
            let mut problems = Vec::new();
            let items = feed::read(target, chat, &mut problems).await?;
            let last = items.iter().map(|item| item.revision).max().unwrap_or(0);
            let caught_up = subscribers
                .lasts(chat)
                .iter()
                .all(|got| got.unwrap_or(0) >= last);
            feeds.insert(chat, (items, caught_up));
        }
        if feeds.values().all(|(_, caught_up)| *caught_up) || started.elapsed() > CATCH_UP {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    findings.catch_up_s = started.elapsed().as_secs_f64();
    for &chat in &findings.chats {
        let (items, _) = &feeds[&chat];
        let last = items.iter().map(|item| item.revision).max().unwrap_or(0);
        let path = format!("/applications/{}/chats/{chat}", target.token);
        let revision = crate::check::get(target, &path).await?["revision"]
            .as_u64()
            .unwrap_or(0);
        if revision != last {
            // The scaled store raises a chat's revision for an edit that found its message
            // deleted by a later revision: a revision no message carries.
            eprintln!(
                "streams: chat {chat} is at revision {revision}, its feed's last change at {last}"
            );
        }
    }
    let (logs, failures) = subscribers.finish().await;
    for failure in &failures {
        findings.note(failure.clone());
    }
    findings.subscriber_failures = failures;
    for log in &logs {
        let (items, _) = &feeds[&log.chat];
        let last = items.iter().map(|item| item.revision).max().unwrap_or(0);
        if log.last.unwrap_or(0) < last {
            findings.behind += 1;
            findings.note(format!(
                "chat {}: a subscriber at revision {:?} after {CATCH_UP:?}, the feed at {last}",
                log.chat, log.last
            ));
        }
        let created: Vec<u64> = taken
            .acks
            .iter()
            .filter(|a| a.chat == log.chat)
            .map(|a| a.number)
            .collect();
        let deleted: Vec<u64> = taken
            .deletes
            .iter()
            .filter(|d| d.chat == log.chat && d.end.is_some())
            .map(|d| d.number)
            .collect();
        judge(log, items, (&created, &deleted), &mut findings);
    }
    Ok(findings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(number: u64, revision: u64, body: &str) -> Item {
        Item {
            number,
            revision,
            entry: Entry::Live(body.to_owned()),
        }
    }

    fn tombstone(number: u64, revision: u64) -> Item {
        Item {
            number,
            revision,
            entry: Entry::Tombstone,
        }
    }

    #[test]
    fn ids_must_rise_strictly_across_reconnections_but_may_skip() {
        // 1, 2, then a reconnection resumed from the feed: 3 was edited at 5, so 3 and 4 are
        // never sent on their own. Skipping is fine.
        let fine = [
            live(1, 1, "a"),
            live(2, 2, "b"),
            live(3, 5, "c'"),
            live(4, 6, "d"),
        ];
        assert!(disorders(&fine).is_empty());
        // A reconnection that sent 2 again, then 4 after 5.
        let bad = [
            live(1, 1, "a"),
            live(2, 2, "b"),
            live(3, 5, "c"),
            live(2, 2, "b"),
            live(4, 4, "d"),
        ];
        assert_eq!(
            disorders(&bad),
            vec![Disorder::Duplicate(2), Disorder::Reordered(4, 5)]
        );
    }

    #[test]
    fn the_last_event_of_a_number_is_its_state_and_must_be_the_stores() {
        let events = [
            live(1, 1, "a"),
            live(2, 2, "b"),
            live(1, 3, "a'"),
            tombstone(2, 4),
            live(3, 5, "c"),
            // After the store was read: not held against it.
            live(4, 6, "d"),
        ];
        let received = state(&events, 5);
        assert_eq!(received.len(), 3);
        assert_eq!(received[&1], &live(1, 3, "a'"));
        let feed = [live(1, 3, "a'"), tombstone(2, 4), live(3, 5, "c")];
        assert!(mismatches(1, &events, 5, &feed).is_empty());
        // The store has 1 at a later edit, 2 alive, 5 the subscriber never got, and neither 3
        // nor 4.
        let other = [live(1, 7, "a''"), live(2, 2, "b"), live(5, 8, "e")];
        let problems = mismatches(1, &events, 8, &other);
        assert_eq!(problems.len(), 5, "{problems:?}");
        assert_eq!(
            problems[2],
            "chat 1: 5 stored (Live(\"e\") at revision 8) but never received (received 6 then none)"
        );
        assert!(problems[3].contains("3 received but not"), "{problems:?}");
        assert!(problems[4].contains("4 received but not"), "{problems:?}");
    }

    #[test]
    fn every_acknowledged_creation_and_deletion_must_have_been_received() {
        // 2 came only as its tombstone (resumed after its deletion): received.
        let events = [live(1, 1, "a"), tombstone(2, 4), live(3, 5, "c")];
        assert!(missing(1, &events, &[1, 2, 3], &[2]).is_empty());
        // 4 never came; the deletion of 3 never came as a tombstone.
        assert_eq!(
            missing(1, &events, &[1, 4], &[2, 3]),
            vec![
                "chat 1: acknowledged 4 never received".to_owned(),
                "chat 1: deletion of 3 acknowledged, no tombstone received".to_owned()
            ]
        );
    }

    #[test]
    fn a_subscribers_log_is_judged_on_every_rule() {
        let log = Log {
            chat: 1,
            events: vec![live(1, 1, "a"), live(2, 2, "b"), live(2, 2, "b")],
            last: Some(2),
            connections: 3,
            disconnects: [("cut".to_owned(), 2)].into(),
            problems: vec!["chat 1: chat_deleted, but it never was".to_owned()],
        };
        let feed = [live(1, 1, "a"), live(2, 2, "b"), live(3, 3, "c")];
        let mut findings = StreamFindings::default();
        judge(&log, &feed, (&[1, 2, 3], &[]), &mut findings);
        assert_eq!(findings.events, 3);
        assert_eq!(findings.reconnects, 2);
        assert_eq!(findings.disconnects["cut"], 2);
        // chat_deleted, and 2 twice.
        assert_eq!((findings.violations, findings.duplicates), (2, 1));
        // 3 is acknowledged and stored but never received.
        assert_eq!((findings.missing, findings.mismatches), (1, 1));
        assert!(!findings.passed());
        let fine = Log {
            events: vec![live(1, 1, "a"), live(2, 2, "b"), live(3, 3, "c")],
            problems: Vec::new(),
            ..log
        };
        let mut findings = StreamFindings::default();
        judge(&fine, &feed, (&[1, 2, 3], &[]), &mut findings);
        assert!(findings.passed(), "{findings:?}");
    }
}
