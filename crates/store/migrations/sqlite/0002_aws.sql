-- AWS-compatible front door: SigV4 access keys. The secret is kept as is (SigV4 needs it
-- to re-sign a request); the database lives in the 0700 data directory.
CREATE TABLE access_keys (
    id         TEXT PRIMARY KEY NOT NULL,
    body       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
