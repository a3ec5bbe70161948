-- The secret store: every version of every secret, encrypted by the server (AES-256-GCM with
-- a key kept in the data directory, not in this database). Versions are never reused, so a
-- release that recorded `name@version` always finds the value it was deployed with.
CREATE TABLE secrets (
    name       TEXT NOT NULL,
    version    INTEGER NOT NULL,
    sealed     BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    deleted_at INTEGER,
    PRIMARY KEY (name, version)
);
