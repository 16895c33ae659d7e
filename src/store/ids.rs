//! The ids of committed applications and chats, cached by both SQL stores so that reads and
//! write batches skip a look-up. Only committed rows may enter (a rolled-back id could be reused
//! by another row); a deletion forgets its entries once committed, before it is acknowledged.
//! With several processes on one MySQL database another process's deletion is not seen here:
//! the reads that must not show deleted rows check `deleted_at` themselves.

use dashmap::DashMap;

/// Cached ids beyond this many are dropped (the caches only save look-ups).
const LIMIT: usize = 1_000_000;

#[derive(Default)]
pub struct IdCache {
    /// token -> applications.id
    apps: DashMap<String, i64>,
    /// (applications.id, chat number) -> chats.id
    chats: DashMap<(i64, u64), i64>,
}

impl IdCache {
    pub fn app(&self, token: &str) -> Option<i64> {
        self.apps.get(token).map(|id| *id)
    }

    pub fn chat(&self, app_id: i64, number: u64) -> Option<i64> {
        self.chats.get(&(app_id, number)).map(|id| *id)
    }

    /// (applications.id, chats.id) of a chat named by its coordinates.
    pub fn committed_chat(&self, token: &str, number: u64) -> Option<(i64, i64)> {
        let app_id = self.app(token)?;
        Some((app_id, self.chat(app_id, number)?))
    }

    pub fn remember_app(&self, token: &str, id: i64) {
        if !self.apps.contains_key(token) {
            remember(&self.apps, token.to_owned(), id);
        }
    }

    pub fn remember_chat(&self, app_id: i64, number: u64, id: i64) {
        remember(&self.chats, (app_id, number), id);
    }

    pub fn forget_app(&self, token: &str) {
        self.apps.remove(token);
    }

    pub fn forget_chat(&self, app_id: i64, number: u64) {
        self.chats.remove(&(app_id, number));
    }
}

fn remember<K: std::hash::Hash + Eq, V>(cache: &DashMap<K, V>, key: K, value: V) {
    if cache.len() >= LIMIT {
        cache.clear();
    }
    cache.insert(key, value);
}
