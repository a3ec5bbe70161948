-- Identities and the audit log, with the same meaning as SQLite's migration 7.
CREATE TABLE identities (
    name       TEXT PRIMARY KEY NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    body       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    version    BIGINT NOT NULL DEFAULT 1
);
CREATE TABLE audit (
    seq      BIGSERIAL PRIMARY KEY,
    at       BIGINT NOT NULL,
    identity TEXT NOT NULL,
    body     TEXT NOT NULL
);
CREATE INDEX audit_by_identity ON audit (identity, seq);
