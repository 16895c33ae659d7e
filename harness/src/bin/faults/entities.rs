//! The checker's part for chats and applications: every acknowledged chat creation is listed
//! with its number, no number is handed out or listed twice, non-overlapping creations got
//! increasing numbers; every acknowledged application exists with its name.

use std::collections::HashSet;

use anyhow::Context;
use serde_json::Value;

use crate::check::{get, get_or_missing, order_violations, Findings};
use crate::ledger::{AppAck, ChatAck};
use crate::load::Target;

/// Every chat of the application under load, as listed (page after page).
pub async fn list_chats(target: &Target) -> anyhow::Result<Vec<u64>> {
    let mut numbers = Vec::new();
    let mut after = 0u64;
    loop {
        let path = format!(
            "/applications/{}/chats?per_page=1000&after={after}",
            target.token
        );
        let page = get(target, &path).await?;
        let items = page.as_array().context("a list")?;
        for item in items {
            let number = item["number"].as_u64().context("number")?;
            numbers.push(number);
            after = after.max(number);
        }
        if items.len() < 1000 {
            return Ok(numbers);
        }
    }
}

/// Acknowledged chats not listed (for the scaled shape's drain).
pub fn chats_missing(listed: &[u64], chats: &[ChatAck]) -> usize {
    let listed: HashSet<u64> = listed.iter().copied().collect();
    chats.iter().filter(|c| !listed.contains(&c.number)).count()
}

pub async fn check_chats(
    target: &Target,
    chats: &[ChatAck],
    findings: &mut Findings,
) -> anyhow::Result<()> {
    findings.chats_acknowledged = chats.len();
    let listed = list_chats(target).await?;
    let mut seen = HashSet::new();
    for &number in &listed {
        if !seen.insert(number) {
            findings.duplicated += 1;
            findings.note(format!("chat number {number} listed twice"));
        }
    }
    let mut acked = HashSet::new();
    for chat in chats {
        if !acked.insert(chat.number) {
            findings.duplicated += 1;
            findings.note(format!("chat number {} acknowledged twice", chat.number));
        }
        if !seen.contains(&chat.number) {
            findings.chats_lost += 1;
            findings.note(format!("acknowledged chat {} missing", chat.number));
        }
    }
    let intervals: Vec<_> = chats.iter().map(|c| (c.number, c.start, c.end)).collect();
    let violations = order_violations(&intervals);
    findings.order_violations += violations.len();
    for (before, after) in violations.into_iter().take(3) {
        findings.note(format!(
            "chat {after} acknowledged after chat {before} had been"
        ));
    }
    Ok(())
}

/// Whether the application exists with its name (an error when the service kept failing).
async fn app_stored(target: &Target, app: &AppAck) -> anyhow::Result<bool> {
    let path = format!("/applications/{}", app.token);
    let found: Option<Value> = get_or_missing(target, &path).await?;
    Ok(found.is_some_and(|found| found["name"].as_str() == Some(app.name.as_str())))
}

/// Acknowledged applications not (yet) stored.
pub async fn apps_missing(target: &Target, apps: &[AppAck]) -> anyhow::Result<Vec<String>> {
    let mut missing = Vec::new();
    for app in apps {
        if !app_stored(target, app).await? {
            missing.push(app.token.clone());
        }
    }
    Ok(missing)
}

pub async fn check_apps(
    target: &Target,
    apps: &[AppAck],
    findings: &mut Findings,
) -> anyhow::Result<()> {
    findings.applications_acknowledged = apps.len();
    let mut tokens = HashSet::new();
    for app in apps {
        if !tokens.insert(app.token.as_str()) {
            findings.duplicated += 1;
            findings.note(format!(
                "application token {} acknowledged twice",
                app.token
            ));
        }
    }
    for token in apps_missing(target, apps).await? {
        findings.applications_lost += 1;
        findings.note(format!("acknowledged application {token} missing"));
    }
    Ok(())
}
