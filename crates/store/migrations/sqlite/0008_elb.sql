-- ELBv2 objects (load balancers, target groups, listeners, listener rules), keyed by the
-- resource part of their ARN; names are unique per kind.
CREATE TABLE elb (
    resource   TEXT PRIMARY KEY NOT NULL,
    kind       TEXT NOT NULL,
    name       TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    version    INTEGER NOT NULL DEFAULT 1,
    UNIQUE (kind, name)
);
