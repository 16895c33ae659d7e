-- Tokens compare byte for byte (ascii_bin: queries read them back with CAST(token AS CHAR));
-- bodies compare case-insensitively for search.
CREATE TABLE applications (
    id          BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    token       VARCHAR(64)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    name        VARCHAR(255) NOT NULL,
    chats_count BIGINT       NOT NULL DEFAULT 0,
    created_at  DATETIME(6)  NOT NULL,
    updated_at  DATETIME(6)  NOT NULL,
    UNIQUE KEY applications_token (token)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE chats (
    id             BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
    application_id BIGINT      NOT NULL,
    number         BIGINT      NOT NULL,
    messages_count BIGINT      NOT NULL DEFAULT 0,
    created_at     DATETIME(6) NOT NULL,
    updated_at     DATETIME(6) NOT NULL,
    UNIQUE KEY chats_application_number (application_id, number),
    CONSTRAINT chats_application FOREIGN KEY (application_id) REFERENCES applications (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE messages (
    id         BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
    chat_id    BIGINT      NOT NULL,
    number     BIGINT      NOT NULL,
    body       TEXT        NOT NULL,
    created_at DATETIME(6) NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    UNIQUE KEY messages_chat_number (chat_id, number),
    CONSTRAINT messages_chat FOREIGN KEY (chat_id) REFERENCES chats (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
