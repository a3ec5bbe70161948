-- Hosts, with the same meaning as SQLite's migration 6.
CREATE TABLE hosts (
    id         TEXT PRIMARY KEY NOT NULL,
    body       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    version    BIGINT NOT NULL
);
CREATE TABLE join_tokens (
    hash       TEXT PRIMARY KEY NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_by    TEXT
);
ALTER TABLE tasks ADD COLUMN host TEXT NOT NULL DEFAULT '';
CREATE INDEX tasks_by_host ON tasks (host, last_status);
