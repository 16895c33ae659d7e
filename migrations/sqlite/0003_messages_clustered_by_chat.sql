-- A message's row id is chat_id * 2^32 + number: the messages of one chat form one contiguous
-- rowid range, so a full-text search scoped to a chat reads only that range of the FTS5 index
-- (its doclists are ordered by rowid) instead of every match in the database.
UPDATE messages SET id = chat_id * 4294967296 + number WHERE id <> chat_id * 4294967296 + number;
INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');
