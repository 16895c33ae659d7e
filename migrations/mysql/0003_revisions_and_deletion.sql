-- Revisions (SPEC §6): every chat counts the changes to its messages; every message carries the
-- chat's revision at its last change. Stored messages get their number, their chat the highest.
ALTER TABLE chats
    ADD COLUMN revision   BIGINT      NOT NULL DEFAULT 0,
    ADD COLUMN deleted_at DATETIME(6) NULL,
    ADD COLUMN purged     TINYINT     NOT NULL DEFAULT 0,
    ADD KEY chats_to_purge (purged, deleted_at);
ALTER TABLE messages
    ADD COLUMN revision   BIGINT      NOT NULL DEFAULT 0,
    ADD COLUMN deleted_at DATETIME(6) NULL,
    ADD KEY messages_by_revision (chat_id, revision);
ALTER TABLE applications
    ADD COLUMN deleted_at DATETIME(6) NULL;
UPDATE messages SET revision = number;
UPDATE chats c SET revision = COALESCE((SELECT MAX(m.number) FROM messages m WHERE m.chat_id = c.id), 0);
