-- The full-text index leaves the write transaction and the database file: it lives in
-- `search.db` beside this file, kept by a background indexer (src/store/sqlite_index.rs). A write
-- only notes the message's id in `fts_pending`; the indexer indexes the noted messages in large
-- batches and forgets them; a search reads the index and matches the still-pending messages of
-- the chat itself, so nothing acknowledged is ever missing from a search.
DROP TRIGGER messages_fts_insert;
DROP TRIGGER messages_fts_update;
DROP TRIGGER messages_fts_delete;
DROP TABLE messages_fts;

CREATE TABLE fts_pending (id INTEGER PRIMARY KEY);
INSERT INTO fts_pending (id) SELECT id FROM messages;

CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT OR IGNORE INTO fts_pending (id) VALUES (new.id);
END;

CREATE TRIGGER messages_fts_update AFTER UPDATE OF body ON messages BEGIN
    INSERT OR IGNORE INTO fts_pending (id) VALUES (new.id);
END;

CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    DELETE FROM fts_pending WHERE id = old.id;
END;
