//! Issue #11's scenarios in the embedded shape: history pages and the changes feed on the big
//! chat, deleting messages, and deleting the big chat under a create load in other chats.
//!
//! - **Pages.** The big chat is the search chat: a tenth of the stored messages (100 000 of
//!   1 M), numbered 1..=N, each with its number as revision (only the preload writes it). The
//!   first page (`?per_page=50`, the baseline), the latest (`order=desc`), a deep one
//!   (`order=desc&before=B`, `B` over the middle half) and the feed near the end (`since=R`, `R`
//!   over the last hundredth) are each run closed loop. So that drift of a shared machine does not
//!   land on one of them, each is measured in two halves in mirrored order (first, latest, deep,
//!   feed, then feed, deep, latest, first), after a warm-up of each, and the halves are added.
//!   One answer in 16 is checked in full: 50 messages numbered one by one from the right one.
//! - **Deleting messages.** DELETE of messages of the spread chats (the preloaded ones and those
//!   the run created), shuffled, each once, closed loop; every answer must be `204`, and a few of
//!   the deleted ones must then answer `404`. No warm-up (the write path is warm by then).
//! - **Deleting a chat under load.** Create message in the spread chats, open loop at half the
//!   closed-loop maximum, for the window alone (the baseline), then for the window again with the
//!   big chat's DELETE sent at its first due time; the server answers it at once and erases the
//!   messages in the background, in steps of 1 000, on the writer the creates use. The purge is
//!   done when the chat's row says `purged` (read from the file every 20 ms).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};
use rand::seq::SliceRandom;

use crate::db;
use crate::drive::{Bench, MEASURED_SEED};
use crate::load::{self, Conn, Outcome};
use crate::report::{ChatDeletion, Measurement};
use crate::scenario::{seeded, Doomed, Generator, Kind, Plan, SEARCH_CHAT, SPREAD};

/// The read scenarios, the baseline first.
pub const READS: [Kind; 4] = [
    Kind::HistoryFirst,
    Kind::HistoryLatest,
    Kind::HistoryDeep,
    Kind::HistorySince,
];

/// The seed of the mirrored second half of the reads.
const SECOND_HALF_SEED: u64 = 2;

/// The four pages of the big chat, each closed loop for `bench.duration` in two mirrored
/// halves; in [`READS`] order.
pub async fn reads(
    bench: &Bench,
    addr: SocketAddr,
    plan: &Plan,
    stored: u64,
) -> anyhow::Result<Vec<Measurement>> {
    let warm = bench.warm_up();
    for kind in READS {
        warm.closed(addr, kind, plan, 0).await?;
    }
    let half = bench.duration / 2;
    let mut outcomes: Vec<Outcome> = READS.iter().map(|_| Outcome::empty()).collect();
    let order: Vec<usize> = (0..READS.len()).chain((0..READS.len()).rev()).collect();
    for (step, &i) in order.iter().enumerate() {
        let kind = READS[i];
        let seed = if step < READS.len() {
            MEASURED_SEED
        } else {
            SECOND_HALF_SEED
        };
        eprintln!(
            "bench: {} (closed, {} connections, half {})",
            kind.name(),
            bench.connections,
            1 + step / READS.len()
        );
        let generator = Arc::new(Generator::new(kind, plan.clone(), bench.ledger.clone()));
        let outcome = load::closed(addr, generator, bench.connections, half, seed).await?;
        outcomes[i].append(&outcome);
    }
    Ok(READS
        .iter()
        .zip(&outcomes)
        .map(|(&kind, outcome)| {
            Measurement::new(kind, "closed", bench.connections, None, stored, outcome)
        })
        .collect())
}

/// The messages the delete scenario deletes: messages 1..=readable of every spread chat and
/// those the run created in them, shuffled.
pub fn doomed(bench: &Bench, readable: u64) -> Doomed {
    let mut targets: Vec<(u64, u64)> = (1..=readable)
        .flat_map(|number| (1..=SPREAD).map(move |chat| (chat, number)))
        .collect();
    targets.extend(bench.ledger.created_in(1..=SPREAD, readable));
    targets.shuffle(&mut seeded(11));
    Doomed::new(targets)
}

/// Deleted messages checked to answer `404` afterwards.
const CHECKED_AFTER: usize = 32;

/// DELETE of the plan's doomed messages, closed loop, each once; then a few of them must
/// answer `404` (anything else counts as an error).
pub async fn deletes(
    bench: &Bench,
    addr: SocketAddr,
    plan: &Plan,
    stored: u64,
) -> anyhow::Result<Measurement> {
    eprintln!(
        "bench: {} ({} to delete at most)",
        Kind::DeleteMessage.name(),
        plan.doomed.len()
    );
    let mut m = bench
        .closed(addr, Kind::DeleteMessage, plan, stored)
        .await?;
    let mut conn = Conn::connect(addr).await?;
    for &(chat, number) in plan.doomed.first(CHECKED_AFTER) {
        let path = format!(
            "/applications/{}/chats/{chat}/messages/{number}",
            plan.token
        );
        let (status, _) = conn.send(Method::GET, &path, None).await?;
        if status != StatusCode::NOT_FOUND {
            eprintln!("bench: deleted message {chat}/{number} answers {status}");
            m.errors += 1;
        }
    }
    Ok(m)
}

/// How the chat-deletion scenario runs.
pub struct Deletion {
    /// Create-message requests/s offered in other chats (open loop).
    pub rate: f64,
    /// How long each run lasts: the load alone, then from the DELETE.
    pub window: Duration,
    /// How long to wait at most for the purge to finish (from the DELETE).
    pub wait: Duration,
    /// Messages the big chat holds.
    pub messages: u64,
}

/// The big chat deleted under the create load in other chats, beside the same load without it.
pub async fn chat_deletion(
    bench: &Bench,
    addr: SocketAddr,
    plan: &Plan,
    db_path: &Path,
    how: Deletion,
    stored: impl Fn() -> u64,
) -> anyhow::Result<ChatDeletion> {
    let Deletion {
        rate,
        window,
        wait,
        messages,
    } = how;
    let long = Bench {
        duration: window,
        connections: bench.connections,
        ledger: bench.ledger.clone(),
        seed: bench.seed,
    };
    // The delete scenario left notes for the search indexer: start both runs without a backlog.
    db::wait_indexed(db_path).await?;
    let without = long
        .open(addr, Kind::CreateSpread, plan, rate, stored())
        .await?;
    db::wait_indexed(db_path).await?;
    let chat_id = db::chat_row_id(db_path, &plan.token, SEARCH_CHAT).await?;
    let chat_path = format!("/applications/{}/chats/{SEARCH_CHAT}", plan.token);
    let mut conn = Conn::connect(addr).await?;
    eprintln!(
        "bench: {} (open, {rate:.0}/s) with chat {SEARCH_CHAT} ({messages} messages) deleted",
        Kind::CreateSpread.name()
    );
    let load = {
        let (plan, stored) = (plan.clone(), stored());
        let long = Bench {
            seed: long.seed ^ 0xde1,
            ..long
        };
        tokio::spawn(async move {
            long.open(addr, Kind::CreateSpread, &plan, rate, stored)
                .await
        })
    };
    // The open loop's first request is due 20 ms after it starts.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let sent = Instant::now();
    let (status, _) = conn.send(Method::DELETE, &chat_path, None).await?;
    let answer = sent.elapsed();
    let mut check_errors = u64::from(status != StatusCode::NO_CONTENT);
    let purge = {
        let db_path = db_path.to_path_buf();
        tokio::spawn(async move { db::wait_purged(&db_path, chat_id, sent, wait).await })
    };
    let during = load.await??;
    let purge_done = purge.await??;
    // Gone: the chat and one of its messages answer 404.
    for path in [chat_path.clone(), format!("{chat_path}/messages/1")] {
        let (status, _) = conn.send(Method::GET, &path, None).await?;
        if status != StatusCode::NOT_FOUND {
            eprintln!("bench: {path} answers {status} after the chat's deletion");
            check_errors += 1;
        }
    }
    Ok(ChatDeletion {
        chat_messages: messages,
        window_s: window.as_secs_f64(),
        offered: rate,
        without,
        during,
        delete_answer_ms: answer.as_secs_f64() * 1000.0,
        purge_done_s: purge_done.map(|d| d.as_secs_f64()),
        check_errors,
    })
}
