-- Responses of requests that carried an Idempotency-Key, replayed to retries for 24 hours.
CREATE TABLE idempotency_keys (
    `key`      VARCHAR(400) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    request    VARCHAR(400) NOT NULL,
    status     SMALLINT     NOT NULL,
    body       MEDIUMTEXT   NOT NULL,
    created_at DATETIME(6)  NOT NULL,
    KEY idempotency_keys_created_at (created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
