//! The embedded full-text index, kept apart from the write path.
//!
//! Indexing a message with the trigram tokenizer writes ~40 postings, and FTS5 merges its
//! segments as they grow: inside the group-commit transaction that was three quarters of a
//! message's cost (BENCHMARKS.md). So the index lives in its own file, `search.db` beside the
//! database, and a background thread keeps it:
//!
//! 1. a write appends the message's id to `fts_pending` (a trigger, same transaction: durable);
//! 2. the indexer reads up to [`CHUNK`] notes in order with the messages' current bodies, writes
//!    them to `search.db` in one transaction (`INSERT OR REPLACE`: an edit replaces the old
//!    postings), commits it;
//! 3. then deletes the notes it read (by `seq`); an edit in between added a later note.
//!
//! A crash between 2 and 3 only indexes those messages again. Searches (`search.rs`) read
//! the pending messages of the chat first and the index second, so a message is found whichever
//! side of the hand-over it is on. A missing `search.db` is rebuilt from every message.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection};

use super::conn::{connect, index_path, Inner};

/// Most messages indexed in one transaction of `search.db`.
const CHUNK: usize = 4096;
/// How long the indexer lets notes gather after a round that caught up (a search that needs a
/// round wakes it at once). FTS5 writes a segment per transaction and merges segments as they
/// pile up: a round of ~2 000 messages costs about half per message what a round of ~50 does
/// (measured: 15.5 µs at 32 rows per transaction, 7.1 µs at 2 048).
const INDEXER_GATHER: Duration = Duration::from_millis(100);
/// Longest a search waits for the indexer before matching pending messages itself.
const CATCH_UP: Duration = Duration::from_secs(1);

/// Where the indexer is, so that a search can wait for the writes acknowledged before it.
#[derive(Default)]
pub(super) struct Progress {
    state: Mutex<Rounds>,
    changed: Condvar,
}

#[derive(Default)]
struct Rounds {
    /// Rounds begun; a round reads what is pending when it begins.
    begun: u64,
    /// The last round that left nothing of what it read pending.
    caught_up: u64,
    /// A search is waiting: do not sleep.
    wanted: bool,
}

impl Progress {
    fn begin(&self) -> u64 {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.wanted = false;
        state.begun += 1;
        state.begun
    }

    fn finish(&self, round: u64, complete: bool) {
        if complete {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.caught_up = state.caught_up.max(round);
            self.changed.notify_all();
        }
    }

    /// Sleeps up to [`INDEXER_GATHER`], or less when a search wants a round.
    fn gather(&self) {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = self
            .changed
            .wait_timeout_while(state, INDEXER_GATHER, |state| !state.wanted)
            .unwrap_or_else(PoisonError::into_inner);
    }

    /// Waits (up to [`CATCH_UP`]) until a round begun after this call has caught up: every
    /// message acknowledged before the call is then in the index (unless edited since).
    /// Returns whether it did.
    pub(super) fn wait_caught_up(&self) -> bool {
        let deadline = Instant::now() + CATCH_UP;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let target = state.begun + 1;
        state.wanted = true;
        self.changed.notify_all();
        while state.caught_up < target {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }
}

const CREATE_INDEX: &str = "CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5 (\
     body, content = '', contentless_delete = 1, tokenize = 'trigram')";

/// Opens (creating) the index file. Returns the connection and whether the file is new, in
/// which case every stored message must be indexed again.
pub(super) fn open_index(database: &Path) -> rusqlite::Result<(Connection, bool)> {
    let path = index_path(database);
    let fresh = !path.exists();
    let conn = connect(&path, false)?;
    conn.execute_batch(CREATE_INDEX)?;
    Ok((conn, fresh))
}

/// Starts the indexer thread; it ends when the store is dropped.
pub(super) fn start(
    inner: &Arc<Inner>,
    progress: Arc<Progress>,
    index: Connection,
    reader: Connection,
) {
    let inner = Arc::downgrade(inner);
    let spawned = std::thread::Builder::new()
        .name("search-indexer".into())
        .spawn(move || {
            lower_priority();
            run(&inner, &progress, &index, &reader);
        });
    if let Err(err) = spawned {
        tracing::error!(error = %err, "cannot start the search indexer");
    }
}

/// Indexing yields the CPU to requests: under a load that fills both cores the index falls
/// behind and catches up when the load eases (a search never misses a message meanwhile; it
/// matches what is still pending itself).
fn lower_priority() {
    // SAFETY: setpriority has no memory effects; on Linux, PRIO_PROCESS with a thread id sets
    // that thread's nice value. A failure only leaves the priority as it was.
    #[cfg(target_os = "linux")]
    unsafe {
        let thread = libc::gettid() as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, thread, 10);
    }
}

/// Holds the store only during a round, so that dropping it stops the thread.
fn run(inner: &Weak<Inner>, progress: &Progress, index: &Connection, reader: &Connection) {
    loop {
        let Some(store) = inner.upgrade() else {
            return;
        };
        let round = progress.begin();
        let result = index_some(&store, index, reader);
        drop(store);
        // Copy the WAL back into the database here, passively (a writer is never blocked), so
        // that the writer's own checkpoint, when the WAL reaches its limit, has little to do.
        if let Err(err) = reader.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %err, "checkpoint failed");
        }
        match result {
            Ok(done) => {
                progress.finish(round, done < CHUNK);
                if done < CHUNK {
                    progress.gather();
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "search indexing failed; retrying");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// One round: index up to [`CHUNK`] pending messages, then forget them. Returns how many.
fn index_some(inner: &Inner, index: &Connection, reader: &Connection) -> rusqlite::Result<usize> {
    // (seq, id, current body); no body: the message was purged, its postings are deleted
    // (a deleted message's tombstone has an empty body, which indexes to nothing).
    let pending: Vec<(i64, i64, Option<String>)> = reader
        .prepare_cached(
            "SELECT p.seq, p.id, m.body FROM fts_pending p LEFT JOIN messages m ON m.id = p.id \
             ORDER BY p.seq LIMIT ?1",
        )?
        .query_map([CHUNK as i64], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let Some(&(last, _, _)) = pending.last() else {
        return Ok(0);
    };
    let tx = index.unchecked_transaction()?;
    {
        let mut insert =
            tx.prepare_cached("INSERT OR REPLACE INTO messages_fts (rowid, body) VALUES (?1, ?2)")?;
        let mut delete = tx.prepare_cached("DELETE FROM messages_fts WHERE rowid = ?1")?;
        for (_, id, body) in &pending {
            if body.is_none() {
                delete.execute([id])?;
            }
            if let Some(body) = body {
                // FTS5 tokenizes a text only up to its first NUL: index a NUL as a space, so
                // the words after it are found too (the contentless index keeps no text, and
                // a search word holding a NUL is checked against the stored body).
                let body = if body.contains('\0') {
                    std::borrow::Cow::Owned(body.replace('\0', " "))
                } else {
                    std::borrow::Cow::Borrowed(body.as_str())
                };
                insert.execute(params![id, body.as_ref()])?;
            }
        }
    }
    tx.commit()?;
    // Notes are only appended (`seq` grows; only this thread deletes): an edit made after the
    // read above has a later `seq` and stays, to be indexed next round.
    inner
        .writer()
        .prepare_cached("DELETE FROM fts_pending WHERE seq <= ?1")?
        .execute([last])?;
    Ok(pending.len())
}
