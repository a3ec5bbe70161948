-- The registry's metadata. Blob and manifest bytes live in files (blobs/<alg>/<hex>); a row
-- here is written only after its file is in place, so every row points at durable bytes.

CREATE TABLE repositories (
    name        TEXT PRIMARY KEY,
    immutable   INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL
);

-- Content-addressed blobs (layers, configs and manifests), one file per digest.
CREATE TABLE blobs (
    digest      TEXT PRIMARY KEY,
    size        INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);

-- Which blobs a repository may serve (pushed there or mounted into it).
CREATE TABLE repo_blobs (
    repo        TEXT NOT NULL REFERENCES repositories (name) ON DELETE CASCADE,
    digest      TEXT NOT NULL REFERENCES blobs (digest),
    linked_at   INTEGER NOT NULL,
    PRIMARY KEY (repo, digest)
);

CREATE TABLE manifests (
    repo          TEXT NOT NULL REFERENCES repositories (name) ON DELETE CASCADE,
    digest        TEXT NOT NULL REFERENCES blobs (digest),
    media_type    TEXT NOT NULL,
    size          INTEGER NOT NULL,
    artifact_type TEXT,
    subject       TEXT,
    annotations   TEXT,
    pushed_at     INTEGER NOT NULL,
    PRIMARY KEY (repo, digest)
);
CREATE INDEX manifests_subject ON manifests (repo, subject);

-- What a manifest refers to: blobs (config, layers) and child manifests (index entries).
CREATE TABLE manifest_refs (
    repo      TEXT NOT NULL,
    manifest  TEXT NOT NULL,
    child     TEXT NOT NULL,
    kind      TEXT NOT NULL CHECK (kind IN ('blob', 'manifest')),
    PRIMARY KEY (repo, manifest, child),
    FOREIGN KEY (repo, manifest) REFERENCES manifests (repo, digest) ON DELETE CASCADE
);

CREATE TABLE tags (
    repo        TEXT NOT NULL,
    tag         TEXT NOT NULL,
    digest      TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (repo, tag),
    FOREIGN KEY (repo, digest) REFERENCES manifests (repo, digest) ON DELETE CASCADE
);

-- Upload sessions; the bytes received so far are in uploads/<uuid>. `received` is the durable
-- length of that file (fsynced before the row is updated).
CREATE TABLE uploads (
    uuid        TEXT PRIMARY KEY,
    repo        TEXT NOT NULL REFERENCES repositories (name) ON DELETE CASCADE,
    received    INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
