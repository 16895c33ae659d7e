-- The full-text index leaves the write transaction and the database file: it lives in
-- `search.db` beside this file, kept by a background indexer (src/store/sqlite_index.rs). A write
-- only appends the message's id to `fts_pending`; the indexer indexes the noted messages in large
-- batches and forgets them; a search reads the index and matches the still-pending messages of
-- the chat itself, so nothing acknowledged is ever missing from a search.
DROP TRIGGER messages_fts_insert;
DROP TRIGGER messages_fts_update;
DROP TRIGGER messages_fts_delete;
DROP TABLE messages_fts;

-- Messages without the UNIQUE (chat_id, number) index: the row id (chat_id * 2^32 + number,
-- migration 0003) is already unique per chat and number, and a chat's messages are one row-id
-- range. A message written into one of many chats then dirties one B-tree page, not two.
CREATE TABLE messages_by_id (
    id         INTEGER PRIMARY KEY,
    chat_id    INTEGER NOT NULL REFERENCES chats (id),
    number     INTEGER NOT NULL,
    body       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
INSERT INTO messages_by_id (id, chat_id, number, body, created_at, updated_at)
    SELECT id, chat_id, number, body, created_at, updated_at FROM messages;
DROP TABLE messages;
ALTER TABLE messages_by_id RENAME TO messages;

-- Appended to in order (`seq`), so a write dirties its last page only; read and cut by `seq`.
CREATE TABLE fts_pending (seq INTEGER PRIMARY KEY, id INTEGER NOT NULL);
INSERT INTO fts_pending (id) SELECT id FROM messages;

CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO fts_pending (id) VALUES (new.id);
END;

CREATE TRIGGER messages_fts_update AFTER UPDATE OF body ON messages BEGIN
    INSERT INTO fts_pending (id) VALUES (new.id);
END;

CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    DELETE FROM fts_pending WHERE id = old.id;
END;
