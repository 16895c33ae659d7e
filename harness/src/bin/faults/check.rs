//! The checker: reads back every chat through the API and holds it against the ledger.
//!
//! - **lost**: an acknowledged (chat, number) that is not stored though no deletion of it may
//!   have taken effect, or stored with a body the edit rule (`edits.rs`) does not allow
//!   (`wrong_body`, `edits_lost` when it had edits);
//! - **deletions undone** (`deletions.rs`): a message whose deletion was acknowledged still
//!   listed, found by `GET`, or without its tombstone in the changes feed;
//! - **the changes feed** (`feed.rs`): revisions not strictly increasing across its pages, a
//!   message twice in it (`feed_violations`); the feed, the list and `GET` disagreeing about a
//!   message (`view_mismatches`);
//! - **chats and applications** (`entities.rs`): an acknowledged chat not listed, or an
//!   acknowledged application not found with its name;
//! - **duplicated**: a number listed twice in a chat, a number acknowledged twice, or one
//!   writer's body stored under two numbers;
//! - **order violations**: acknowledgement A ended before request B started, in the same chat,
//!   yet A's number is not smaller than B's;
//! - **count mismatches**: `messages_count` of a chat (and `chats_count` of the application)
//!   against the rows listed, before and after `chat-system sync-counts`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use reqwest::StatusCode;
use serde::Serialize;
use serde_json::Value;

use crate::deletions::{self, Fate, Seen, Verdict};
use crate::feed::{self, Entry};
use crate::ledger::{Delete, Edit, Taken};
use crate::load::Target;
use crate::{edits, entities};

#[derive(Debug, Default, Serialize)]
pub struct Findings {
    pub acknowledged: usize,
    pub stored: usize,
    pub lost: usize,
    pub wrong_body: usize,
    /// Edit attempts recorded (acknowledged or of unknown outcome), and those acknowledged.
    pub edits_attempted: usize,
    pub edits_acknowledged: usize,
    /// Messages with acknowledged edits stored with a body the edit rule does not allow.
    pub edits_lost: usize,
    /// Deletion attempts recorded (acknowledged or of unknown outcome), and those acknowledged.
    pub deletes_attempted: usize,
    pub deletes_acknowledged: usize,
    /// Deletions of unknown outcome that took effect (allowed).
    pub deletes_unknown_applied: usize,
    /// Acknowledged deletions undone: the message listed, found by `GET`, or without its
    /// tombstone in the changes feed.
    pub deletes_undone: usize,
    /// Entries of the changes feeds read (`since=0`, every page), and their problems: a
    /// revision not above the one before it, a message twice, a link that would not end.
    pub feed_entries: usize,
    pub feed_violations: usize,
    /// The list, the changes feed and `GET` disagreeing about a message.
    pub view_mismatches: usize,
    pub chats_acknowledged: usize,
    pub chats_lost: usize,
    pub applications_acknowledged: usize,
    pub applications_lost: usize,
    pub duplicated: usize,
    pub order_violations: usize,
    pub count_mismatches_before_sync: usize,
    pub count_mismatches: usize,
    /// The first few problems, in words.
    pub examples: Vec<String>,
}

impl Findings {
    pub fn note(&mut self, example: String) {
        if self.examples.len() < 20 {
            self.examples.push(example);
        }
    }
}

/// `GET path`: the answer of a `200`, `None` for a `404`; retried (20 times at most) on
/// anything else.
pub async fn get_or_missing(target: &Target, path: &str) -> anyhow::Result<Option<Value>> {
    for _ in 0..20 {
        let api = target.api(0).context("no API process")?;
        if let Ok(response) = target.client.get(format!("{api}{path}")).send().await {
            match response.status() {
                StatusCode::OK => return response.json().await.context("unreadable answer"),
                StatusCode::NOT_FOUND => return Ok(None),
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!("GET {path} kept failing")
}

/// `GET path`, which must exist.
pub async fn get(target: &Target, path: &str) -> anyhow::Result<Value> {
    get_or_missing(target, path)
        .await?
        .with_context(|| format!("GET {path}: 404"))
}

/// Every stored message of `chat` as (number, body), in the order listed.
pub async fn list_chat(target: &Target, chat: u64) -> anyhow::Result<Vec<(u64, String)>> {
    let mut rows = Vec::new();
    let mut after = 0u64;
    loop {
        let path = format!(
            "/applications/{}/chats/{chat}/messages?per_page=1000&after={after}",
            target.token
        );
        let page = get(target, &path).await?;
        let items = page.as_array().context("a list")?;
        for item in items {
            let number = item["number"].as_u64().context("number")?;
            let body = item["body"].as_str().context("body")?.to_owned();
            rows.push((number, body));
            after = after.max(number);
        }
        if items.len() < 1000 {
            return Ok(rows);
        }
    }
}

/// Scaled shape: waits until the workers have stored what was acknowledged: every
/// acknowledged message listed with a body the edit rule allows, every acknowledged chat listed
/// and application found, and the listed total stopped changing; or nothing changed for
/// `quiet`, or `bound` passed (then the checker reports what is missing).
pub async fn drain(
    target: &Target,
    taken: &Taken,
    quiet: Duration,
    bound: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut last = (usize::MAX, usize::MAX, Instant::now());
    let edits = edits_by_message(&taken.edits);
    let deletes = deletes_by_message(&taken.deletes);
    loop {
        let mut total = 0;
        let mut stored = HashMap::new();
        for &chat in &target.chats {
            let rows = list_chat(target, chat).await?;
            total += rows.len();
            stored.extend(
                rows.into_iter()
                    .map(|(number, body)| ((chat, number), body)),
            );
        }
        let mut missing = taken
            .acks
            .iter()
            .filter(|a| {
                let key = (a.chat, a.number);
                let mine = edits.get(&key).map_or(&[][..], Vec::as_slice);
                let fate = deletions::fate(deletes.get(&key).map_or(&[][..], Vec::as_slice));
                let seen = Seen {
                    listed: stored.get(&key).map(String::as_str),
                    ..Seen::default()
                };
                !matches!(
                    deletions::judge(fate, &seen, &edits::allowed(a, mine)),
                    Verdict::Stored | Verdict::Gone
                )
            })
            .count();
        let listed = entities::list_chats(target).await?;
        missing += entities::chats_missing(&listed, &taken.chats);
        if missing == 0 {
            missing += entities::apps_missing(target, &taken.apps).await?.len();
        }
        if missing == 0 && total == last.0 {
            return Ok(started.elapsed());
        }
        if total != last.0 || missing != last.1 {
            last = (total, missing, Instant::now());
        }
        if last.2.elapsed() > quiet || started.elapsed() > bound {
            eprintln!(
                "drain: {missing} acknowledged not stored as acknowledged, {total} rows, after {:?}",
                started.elapsed()
            );
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The edits of each message, (chat, number) → its edits.
fn edits_by_message(edits: &[Edit]) -> HashMap<(u64, u64), Vec<&Edit>> {
    let mut by_message: HashMap<(u64, u64), Vec<&Edit>> = HashMap::new();
    for edit in edits {
        by_message
            .entry((edit.chat, edit.number))
            .or_default()
            .push(edit);
    }
    by_message
}

/// The deletions of each message, (chat, number) → its deletions.
fn deletes_by_message(deletes: &[Delete]) -> HashMap<(u64, u64), Vec<&Delete>> {
    let mut by_message: HashMap<(u64, u64), Vec<&Delete>> = HashMap::new();
    for delete in deletes {
        by_message
            .entry((delete.chat, delete.number))
            .or_default()
            .push(delete);
    }
    by_message
}

/// One acknowledged creation of a numbered thing: (number, request start, answer end).
pub type Numbered = (u64, Instant, Instant);

/// Pairs (a, b) of creations in one sequence (the messages of a chat, the chats of an
/// application) where a's acknowledgement ended before b's request started but
/// a.number >= b.number. Counted once per b (against the largest earlier number).
pub fn order_violations(acks: &[Numbered]) -> Vec<(u64, u64)> {
    let mut by_end = acks.to_vec();
    by_end.sort_by_key(|a| a.2);
    let mut by_start = acks.to_vec();
    by_start.sort_by_key(|a| a.1);
    let mut violations = Vec::new();
    let mut done = 0;
    let mut max_before: Option<u64> = None;
    for (number, start, _) in by_start {
        while done < by_end.len() && by_end[done].2 < start {
            max_before = max_before.max(Some(by_end[done].0));
            done += 1;
        }
        if let Some(max) = max_before.filter(|&max| max >= number) {
            violations.push((max, number));
        }
    }
    violations
}

async fn count_mismatches(
    target: &Target,
    stored: &BTreeMap<u64, usize>,
    findings: &mut Findings,
) -> anyhow::Result<usize> {
    let mut mismatches = 0;
    for (&chat, &rows) in stored {
        let path = format!("/applications/{}/chats/{chat}", target.token);
        let counted = get(target, &path).await?["messages_count"]
            .as_u64()
            .unwrap_or(u64::MAX);
        if counted != rows as u64 {
            mismatches += 1;
            findings.note(format!(
                "chat {chat}: messages_count {counted}, rows {rows}"
            ));
        }
    }
    let app = get(target, &format!("/applications/{}", target.token)).await?;
    let listed = entities::list_chats(target).await?.len() as u64;
    if app["chats_count"].as_u64() != Some(listed) {
        mismatches += 1;
        findings.note(format!(
            "chats_count {} but {listed} chats listed",
            app["chats_count"]
        ));
    }
    Ok(mismatches)
}

/// Holds the stored rows against the ledger; `sync_counts` runs `chat-system sync-counts`.
pub async fn check<F>(target: &Target, taken: &Taken, sync_counts: F) -> anyhow::Result<Findings>
where
    F: std::future::Future<Output = anyhow::Result<String>>,
{
    let acks = &taken.acks;
    let edits = edits_by_message(&taken.edits);
    let deletes = deletes_by_message(&taken.deletes);
    let mut findings = Findings {
        acknowledged: acks.len(),
        edits_attempted: taken.edits.len(),
        edits_acknowledged: taken.edits.iter().filter(|e| e.end.is_some()).count(),
        deletes_attempted: taken.deletes.len(),
        deletes_acknowledged: taken.deletes.iter().filter(|d| d.end.is_some()).count(),
        ..Findings::default()
    };
    let mut stored: HashMap<u64, HashMap<u64, String>> = HashMap::new();
    let mut tombstones: HashSet<(u64, u64)> = HashSet::new();
    let mut rows_per_chat = BTreeMap::new();
    for &chat in &target.chats {
        let rows = list_chat(target, chat).await?;
        findings.stored += rows.len();
        rows_per_chat.insert(chat, rows.len());
        let mut numbers = HashMap::new();
        let mut bodies = HashSet::new();
        for (number, body) in rows {
            if !bodies.insert(body.clone()) {
                findings.duplicated += 1;
                findings.note(format!("chat {chat}: body {body:?} stored twice"));
            }
            if numbers.insert(number, body).is_some() {
                findings.duplicated += 1;
                findings.note(format!("chat {chat}: number {number} listed twice"));
            }
        }
        let mut problems = Vec::new();
        let items = feed::read(target, chat, &mut problems).await?;
        findings.feed_entries += items.len();
        problems.extend(feed::order_problems(chat, &items));
        findings.feed_violations += problems.len();
        let deleting: HashSet<u64> = taken
            .deletes
            .iter()
            .filter(|d| d.chat == chat)
            .map(|d| d.number)
            .collect();
        let disagreements = feed::disagreements(chat, &numbers, &items, &deleting);
        findings.view_mismatches += disagreements.len();
        for problem in problems.into_iter().chain(disagreements).take(5) {
            findings.note(problem);
        }
        tombstones.extend(
            items
                .iter()
                .filter(|item| item.entry == Entry::Tombstone)
                .map(|item| (chat, item.number)),
        );
        stored.insert(chat, numbers);
    }
    let mut acked = HashSet::new();
    for ack in acks {
        let key = (ack.chat, ack.number);
        let mine = edits.get(&key).map_or(&[][..], Vec::as_slice);
        let allowed = edits::allowed(ack, mine);
        if !acked.insert(key) {
            findings.duplicated += 1;
            findings.note(format!(
                "chat {}: number {} acknowledged twice",
                ack.chat, ack.number
            ));
        }
        let listed = stored
            .get(&ack.chat)
            .and_then(|rows| rows.get(&ack.number))
            .map(String::as_str);
        let fate = deletions::fate(deletes.get(&key).map_or(&[][..], Vec::as_slice));
        // A message a deletion was sent for is also read by itself: GET must agree.
        let fetched = if fate == Fate::Live {
            None
        } else {
            let path = format!(
                "/applications/{}/chats/{}/messages/{}",
                target.token, ack.chat, ack.number
            );
            let found = get_or_missing(target, &path).await?;
            Some(found.map(|m| m["body"].as_str().unwrap_or_default().to_owned()))
        };
        let seen = Seen {
            listed,
            tombstone: Some(tombstones.contains(&key)),
            fetched: fetched.as_ref().map(Option::as_deref),
        };
        match deletions::judge(fate, &seen, &allowed) {
            Verdict::Stored => {}
            Verdict::Gone => {
                if fate == Fate::Either {
                    findings.deletes_unknown_applied += 1;
                }
            }
            Verdict::Lost => {
                findings.lost += 1;
                findings.note(format!(
                    "chat {}: acknowledged {} missing",
                    ack.chat, ack.number
                ));
            }
            Verdict::WrongBody => {
                let body = listed.unwrap_or_default();
                findings.lost += 1;
                findings.wrong_body += 1;
                if mine.iter().any(|e| e.end.is_some()) {
                    findings.edits_lost += 1;
                }
                findings.note(format!(
                    "chat {}: {} stored as {body:?}, allowed: {allowed:?}",
                    ack.chat, ack.number
                ));
            }
            Verdict::Undone(seen_in) => {
                findings.deletes_undone += 1;
                findings.note(format!(
                    "chat {}: {} deleted (acknowledged) but {}",
                    ack.chat,
                    ack.number,
                    seen_in.join(", ")
                ));
            }
        }
        if fate == Fate::Either && seen.fetched.is_some_and(|fetched| fetched != listed) {
            findings.view_mismatches += 1;
            findings.note(format!(
                "chat {}: {} listed as {listed:?}, GET answers {:?}",
                ack.chat, ack.number, seen.fetched
            ));
        }
    }
    for &chat in &target.chats {
        let mine: Vec<Numbered> = acks
            .iter()
            .filter(|a| a.chat == chat)
            .map(|a| (a.number, a.start, a.end))
            .collect();
        let violations = order_violations(&mine);
        findings.order_violations += violations.len();
        for (before, after) in violations.into_iter().take(3) {
            findings.note(format!(
                "chat {chat}: {after} acknowledged after {before} had been"
            ));
        }
    }
    entities::check_chats(target, &taken.chats, &mut findings).await?;
    entities::check_apps(target, &taken.apps, &mut findings).await?;
    // messages_count counts the live messages: those listed.
    findings.count_mismatches_before_sync =
        count_mismatches(target, &rows_per_chat, &mut Findings::default()).await?;
    let said = sync_counts.await?;
    eprintln!("sync-counts: {}", said.trim());
    findings.count_mismatches = count_mismatches(target, &rows_per_chat, &mut findings).await?;
    Ok(findings)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn ack(number: u64, start_ms: u64, end_ms: u64, origin: Instant) -> Numbered {
        (
            number,
            origin + Duration::from_millis(start_ms),
            origin + Duration::from_millis(end_ms),
        )
    }

    #[test]
    fn order_violations_are_inversions_of_non_overlapping_requests_only() {
        let origin = Instant::now();
        // 1 then 2 one after the other; 4 and 3 overlap (either order is allowed).
        let fine = [
            ack(1, 0, 10, origin),
            ack(2, 20, 30, origin),
            ack(4, 40, 60, origin),
            ack(3, 50, 70, origin),
        ];
        assert!(order_violations(&fine).is_empty());
        // 6 was acknowledged before the request that got 5 started.
        let inverted = [ack(6, 0, 10, origin), ack(5, 20, 30, origin)];
        assert_eq!(order_violations(&inverted), vec![(6, 5)]);
    }
}
