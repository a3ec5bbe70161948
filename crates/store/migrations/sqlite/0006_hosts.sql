-- Slipway state, version 6: hosts (a cluster of several Docker engines).
-- A host record: its identity, resources, attributes, state (ACTIVE, DRAINING, LOST) and
-- the hash of its agent's key. Versioned like every record.
CREATE TABLE hosts (
    id         TEXT PRIMARY KEY NOT NULL,
    body       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    version    INTEGER NOT NULL
);
-- Join tokens: one use each, until they expire. Only their hash is kept.
CREATE TABLE join_tokens (
    hash       TEXT PRIMARY KEY NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_by    TEXT
);
-- The host a task runs on ('' before it is placed).
ALTER TABLE tasks ADD COLUMN host TEXT NOT NULL DEFAULT '';
CREATE INDEX tasks_by_host ON tasks (host, last_status);
