//! The checker's part for the changes feed (SPEC.md §6): every chat's feed is read from
//! `since=0`, page after page by its `Link: <…>; rel="next"` header, and held
//!
//! - against itself: revisions strictly increasing across the pages (each change has a
//!   revision of its own, and a message appears once, in its latest state), each message number
//!   at most once;
//! - against the list: a listed message appears in the feed with the same body, a message the
//!   feed carries alive is listed with that body, and a tombstone is never that of a listed
//!   message nor of one no deletion was sent for.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use anyhow::{bail, Context};
use reqwest::StatusCode;
use serde_json::Value;

use crate::load::Target;

/// Feed entries per page.
const PER_PAGE: u32 = 1000;

/// What the feed carries for a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Live(String),
    Tombstone,
}

/// One entry of the feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub number: u64,
    pub revision: u64,
    pub entry: Entry,
}

/// One entry of a feed page's JSON.
pub fn item(value: &Value) -> anyhow::Result<Item> {
    let number = value["number"].as_u64().context("number")?;
    let revision = value["revision"].as_u64().context("revision")?;
    let entry = if value["deleted"] == Value::Bool(true) {
        Entry::Tombstone
    } else {
        Entry::Live(value["body"].as_str().context("body")?.to_owned())
    };
    Ok(Item {
        number,
        revision,
        entry,
    })
}

/// The target of the `rel="next"` link of a `Link` header, if any.
pub fn next_link(header: &str) -> Option<&str> {
    header.split(',').find_map(|link| {
        let (target, params) = link.split_once(';')?;
        let next = params
            .split(';')
            .any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"));
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        next.then_some(target)
    })
}

/// `GET path` (retried, 20 times at most, on anything but a `200`): the page and the path of
/// the next one.
async fn page(target: &Target, path: &str) -> anyhow::Result<(Value, Option<String>)> {
    for _ in 0..20 {
        let api = target.api(0).context("no API process")?;
        if let Ok(response) = target.client.get(format!("{api}{path}")).send().await {
            if response.status() == StatusCode::OK {
                let next = response
                    .headers()
                    .get(reqwest::header::LINK)
                    .and_then(|link| link.to_str().ok())
                    .and_then(next_link)
                    .map(str::to_owned);
                let page = response.json().await.context("unreadable answer")?;
                return Ok((page, next));
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!("GET {path} kept failing")
}

/// The whole feed of `chat` (`since=0`), as served page after page; `problems` gets the links
/// that would not have ended (a page without entries, or linking to itself).
pub async fn read(
    target: &Target,
    chat: u64,
    problems: &mut Vec<String>,
) -> anyhow::Result<Vec<Item>> {
    let mut items = Vec::new();
    let mut path = format!(
        "/applications/{}/chats/{chat}/messages?since=0&per_page={PER_PAGE}",
        target.token
    );
    loop {
        let (page, next) = page(target, &path).await?;
        let entries = page.as_array().context("a list")?;
        for entry in entries {
            items.push(item(entry)?);
        }
        match next {
            None => return Ok(items),
            Some(next) if entries.is_empty() || next == path => {
                problems.push(format!(
                    "chat {chat}: the feed's page {path} links on to {next}"
                ));
                return Ok(items);
            }
            Some(next) => path = next,
        }
    }
}

/// The feed's problems with itself: a revision not above the one before it, a number twice.
pub fn order_problems(chat: u64, items: &[Item]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut last = 0;
    let mut numbers = HashSet::new();
    for item in items {
        if item.revision <= last {
            problems.push(format!(
                "chat {chat}: feed revision {} (message {}) after revision {last}",
                item.revision, item.number
            ));
        }
        last = last.max(item.revision);
        if !numbers.insert(item.number) {
            problems.push(format!(
                "chat {chat}: message {} twice in the feed",
                item.number
            ));
        }
    }
    problems
}

/// Where the feed and the list disagree: `listed` is number → body of the messages listed,
/// `deleting` the numbers a deletion was sent for (acknowledged or not).
pub fn disagreements(
    chat: u64,
    listed: &HashMap<u64, String>,
    items: &[Item],
    deleting: &HashSet<u64>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut in_feed = HashSet::new();
    for item in items {
        in_feed.insert(item.number);
        let number = item.number;
        match (&item.entry, listed.get(&number)) {
            (Entry::Live(body), Some(stored)) if body == stored => {}
            (Entry::Live(body), Some(stored)) => problems.push(format!(
                "chat {chat}: {number} listed as {stored:?}, in the feed as {body:?}"
            )),
            (Entry::Live(_), None) => problems.push(format!(
                "chat {chat}: {number} alive in the feed but not listed"
            )),
            (Entry::Tombstone, Some(_)) => problems.push(format!(
                "chat {chat}: {number} listed but a tombstone in the feed"
            )),
            (Entry::Tombstone, None) if !deleting.contains(&number) => problems.push(format!(
                "chat {chat}: tombstone of {number}, which no deletion was sent for"
            )),
            (Entry::Tombstone, None) => {}
        }
    }
    let mut missing: Vec<u64> = listed
        .keys()
        .filter(|n| !in_feed.contains(n))
        .copied()
        .collect();
    missing.sort_unstable();
    problems.extend(
        missing
            .into_iter()
            .map(|n| format!("chat {chat}: {n} listed but not in the feed")),
    );
    problems
}

#[cfg(test)]
mod tests {
    use serde_json::json;

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
    fn the_next_page_is_the_link_marked_next() {
        let header = "</applications/t/chats/1/messages?per_page=2&since=7>; rel=\"next\"";
        assert_eq!(
            next_link(header),
            Some("/applications/t/chats/1/messages?per_page=2&since=7")
        );
        let two = "</a?before=3>; rel=\"prev\", </a?since=9>; rel=\"next\"";
        assert_eq!(next_link(two), Some("/a?since=9"));
        assert_eq!(next_link("</a?before=3>; rel=\"prev\""), None);
    }

    #[test]
    fn feed_entries_are_messages_or_tombstones() {
        let message = json!({"number": 3, "message_number": 3, "chat_number": 1, "body": "hi",
                             "revision": 5, "created_at": "", "updated_at": ""});
        assert_eq!(item(&message).expect("an entry"), live(3, 5, "hi"));
        let deleted = json!({"number": 4, "message_number": 4, "chat_number": 1, "revision": 6,
                             "deleted": true, "deleted_at": ""});
        assert_eq!(item(&deleted).expect("an entry"), tombstone(4, 6));
        assert!(item(&json!({"number": 4, "revision": 6})).is_err());
    }

    #[test]
    fn revisions_rise_strictly_and_a_number_comes_once() {
        let fine = [live(1, 1, "a"), tombstone(3, 4), live(2, 6, "b")];
        assert!(order_problems(1, &fine).is_empty());
        // Revision 4 twice (two changes cannot share one), then 3 after 4, then 1 twice.
        let bad = [
            live(1, 2, "a"),
            tombstone(3, 4),
            live(2, 4, "b"),
            live(4, 3, "c"),
            live(1, 9, "a"),
        ];
        assert_eq!(
            order_problems(1, &bad).len(),
            3,
            "{:?}",
            order_problems(1, &bad)
        );
    }

    #[test]
    fn the_feed_agrees_with_the_list() {
        let listed: HashMap<u64, String> = [(1, "a".to_owned()), (2, "b".to_owned())].into();
        let deleting: HashSet<u64> = [3].into();
        let fine = [live(1, 1, "a"), tombstone(3, 4), live(2, 6, "b")];
        assert!(disagreements(1, &listed, &fine, &deleting).is_empty());
        // 1 with another body, 2 missing, 3 alive but not listed, a tombstone of 5 nobody
        // deleted.
        let bad = [live(1, 1, "x"), live(3, 4, "c"), tombstone(5, 7)];
        assert_eq!(disagreements(1, &listed, &bad, &deleting).len(), 4);
        // A listed message must not be a tombstone.
        let dead = [live(1, 1, "a"), tombstone(2, 3)];
        assert_eq!(
            disagreements(1, &listed, &dead, &[2].into()),
            vec!["chat 1: 2 listed but a tombstone in the feed".to_owned()]
        );
    }
}
