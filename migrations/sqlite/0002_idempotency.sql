-- Responses of requests that carried an Idempotency-Key, replayed to retries for 24 hours.
CREATE TABLE idempotency_keys (
    key        TEXT    NOT NULL PRIMARY KEY,
    request    TEXT    NOT NULL,
    status     INTEGER NOT NULL,
    body       TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
