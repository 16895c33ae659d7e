-- Revisions (SPEC §6): every chat counts the changes to its messages; every message carries the
-- chat's revision at its last change. Stored messages get their number (a valid order: numbers
-- grow with creation), their chat the highest of them.
ALTER TABLE chats ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
UPDATE messages SET revision = number;
UPDATE chats SET revision = COALESCE((SELECT MAX(m.number) FROM messages m
    WHERE m.id BETWEEN chats.id * 4294967296 AND chats.id * 4294967296 + 4294967295), 0);
-- The changes feed reads a chat's messages by revision.
CREATE INDEX messages_by_revision ON messages (chat_id, revision);

-- Deletion. A deleted message stays as a tombstone (body erased, `deleted_at` set) so the feed
-- can report it and its number stays taken; a deleted chat or application keeps its row (the
-- numbers above it stay taken, and a late event cannot bring it back), and the messages of a
-- deleted chat are purged in bounded steps (`purged` once none is left).
ALTER TABLE messages ADD COLUMN deleted_at INTEGER;
ALTER TABLE chats ADD COLUMN deleted_at INTEGER;
ALTER TABLE chats ADD COLUMN purged INTEGER NOT NULL DEFAULT 0;
ALTER TABLE applications ADD COLUMN deleted_at INTEGER;
CREATE INDEX chats_to_purge ON chats (id) WHERE deleted_at IS NOT NULL AND purged = 0;

-- A purged message must leave the search index too: its note now tells the indexer to delete
-- its postings (the indexer finds no row and deletes the index entry).
DROP TRIGGER messages_fts_delete;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO fts_pending (id) VALUES (old.id);
END;
