-- Named identities (tokens with a role; only the token's SHA-256 is kept) and the audit log.
CREATE TABLE identities (
    name       TEXT PRIMARY KEY NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    body       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    version    INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE audit (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    at       INTEGER NOT NULL,
    identity TEXT NOT NULL,
    body     TEXT NOT NULL
);
CREATE INDEX audit_by_identity ON audit (identity, seq);
