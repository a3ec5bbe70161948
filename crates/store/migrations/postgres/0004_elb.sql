-- ELBv2 objects, with the same meaning as SQLite's migration 8.
CREATE TABLE elb (
    resource   TEXT PRIMARY KEY NOT NULL,
    kind       TEXT NOT NULL,
    name       TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    version    BIGINT NOT NULL DEFAULT 1,
    UNIQUE (kind, name)
);
