//! The checker: reads back every chat through the API and holds it against the ledger.
//!
//! - **lost**: an acknowledged (chat, number) that is not stored, or stored with another body;
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

use crate::load::{Ack, Target};

#[derive(Debug, Default, Serialize)]
pub struct Findings {
    pub acknowledged: usize,
    pub stored: usize,
    pub lost: usize,
    pub wrong_body: usize,
    pub duplicated: usize,
    pub order_violations: usize,
    pub count_mismatches_before_sync: usize,
    pub count_mismatches: usize,
    /// The first few problems, in words.
    pub examples: Vec<String>,
}

impl Findings {
    fn note(&mut self, example: String) {
        if self.examples.len() < 20 {
            self.examples.push(example);
        }
    }
}

async fn get(target: &Target, path: &str) -> anyhow::Result<Value> {
    for _ in 0..20 {
        let api = target.api(0).context("no API process")?;
        if let Ok(response) = target.client.get(format!("{api}{path}")).send().await {
            if response.status() == StatusCode::OK {
                return response.json().await.context("unreadable list");
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!("GET {path} kept failing")
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
/// acknowledged (chat, number) is listed and the listed total stopped changing, or nothing
/// changed for `quiet`, or `bound` passed (then the checker reports what is missing).
pub async fn drain(
    target: &Target,
    acks: &[Ack],
    quiet: Duration,
    bound: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut last = (usize::MAX, Instant::now());
    loop {
        let mut total = 0;
        let mut present = HashSet::new();
        for &chat in &target.chats {
            let rows = list_chat(target, chat).await?;
            total += rows.len();
            present.extend(rows.into_iter().map(|(number, _)| (chat, number)));
        }
        let missing = acks
            .iter()
            .filter(|a| !present.contains(&(a.chat, a.number)))
            .count();
        if missing == 0 && total == last.0 {
            return Ok(started.elapsed());
        }
        if total != last.0 {
            last = (total, Instant::now());
        }
        if last.1.elapsed() > quiet || started.elapsed() > bound {
            eprintln!(
                "drain: {missing} acknowledged not listed, {total} rows, after {:?}",
                started.elapsed()
            );
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Pairs (a, b) of one chat where a's acknowledgement ended before b's request started but
/// a.number >= b.number. Counted once per b (against the largest earlier number).
pub fn order_violations(acks: &[&Ack]) -> Vec<(u64, u64)> {
    let mut by_end: Vec<&Ack> = acks.to_vec();
    by_end.sort_by_key(|a| a.end);
    let mut by_start: Vec<&Ack> = acks.to_vec();
    by_start.sort_by_key(|a| a.start);
    let mut violations = Vec::new();
    let mut done = 0;
    let mut max_before: Option<u64> = None;
    for b in by_start {
        while done < by_end.len() && by_end[done].end < b.start {
            max_before = max_before.max(Some(by_end[done].number));
            done += 1;
        }
        if let Some(max) = max_before.filter(|&max| max >= b.number) {
            violations.push((max, b.number));
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
    let chats = get(
        target,
        &format!("/applications/{}/chats?per_page=1000", target.token),
    )
    .await?;
    let listed = chats.as_array().map_or(0, Vec::len) as u64;
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
pub async fn check<F>(target: &Target, acks: &[Ack], sync_counts: F) -> anyhow::Result<Findings>
where
    F: std::future::Future<Output = anyhow::Result<String>>,
{
    let mut findings = Findings {
        acknowledged: acks.len(),
        ..Findings::default()
    };
    let mut stored: HashMap<u64, HashMap<u64, String>> = HashMap::new();
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
        stored.insert(chat, numbers);
    }
    let mut acked = HashSet::new();
    for ack in acks {
        if !acked.insert((ack.chat, ack.number)) {
            findings.duplicated += 1;
            findings.note(format!(
                "chat {}: number {} acknowledged twice",
                ack.chat, ack.number
            ));
        }
        match stored.get(&ack.chat).and_then(|rows| rows.get(&ack.number)) {
            None => {
                findings.lost += 1;
                findings.note(format!(
                    "chat {}: acknowledged {} missing",
                    ack.chat, ack.number
                ));
            }
            Some(body) if *body != ack.body => {
                findings.lost += 1;
                findings.wrong_body += 1;
                findings.note(format!(
                    "chat {}: {} stored as {body:?}, acknowledged as {:?}",
                    ack.chat, ack.number, ack.body
                ));
            }
            Some(_) => {}
        }
    }
    for &chat in &target.chats {
        let mine: Vec<&Ack> = acks.iter().filter(|a| a.chat == chat).collect();
        let violations = order_violations(&mine);
        findings.order_violations += violations.len();
        for (before, after) in violations.into_iter().take(3) {
            findings.note(format!(
                "chat {chat}: {after} acknowledged after {before} had been"
            ));
        }
    }
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

    fn ack(number: u64, start_ms: u64, end_ms: u64, origin: Instant) -> Ack {
        Ack {
            chat: 1,
            number,
            body: format!("body {number}"),
            start: origin + Duration::from_millis(start_ms),
            end: origin + Duration::from_millis(end_ms),
        }
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
        assert!(order_violations(&fine.iter().collect::<Vec<_>>()).is_empty());
        // 6 was acknowledged before the request that got 5 started.
        let inverted = [ack(6, 0, 10, origin), ack(5, 20, 30, origin)];
        assert_eq!(
            order_violations(&inverted.iter().collect::<Vec<_>>()),
            vec![(6, 5)]
        );
    }
}
