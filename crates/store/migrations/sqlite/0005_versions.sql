-- Slipway state, version 5: versioned records for many writers.
--
-- Every record a writer reads and writes back carries a version: a write is a
-- compare-and-swap on it (`UPDATE ... WHERE version = ?`), so a writer that read an older
-- version learns that it lost a race instead of overwriting what it did not see. The column
-- is authoritative; the JSON body's copy is ignored when read.
ALTER TABLE services ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE deployments ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE task_definitions ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE access_keys ADD COLUMN version INTEGER NOT NULL DEFAULT 1;

-- Tasks: the columns describing a service counts by (so no JSON function is needed, in
-- SQLite or PostgreSQL).
ALTER TABLE tasks ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE tasks ADD COLUMN deployment_id TEXT NOT NULL DEFAULT '';
ALTER TABLE tasks ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN health TEXT NOT NULL DEFAULT 'UNKNOWN';
UPDATE tasks SET deployment_id = json_extract(body, '$.deployment_id'),
                 revision = json_extract(body, '$.revision'),
                 health = json_extract(body, '$.health');

-- Each event remembers the version its service had when it was written, so a writer that
-- lost a race can be told what changed since the version it read.
ALTER TABLE events ADD COLUMN version INTEGER NOT NULL DEFAULT 0;

-- ECS clusters, one row each (they were one JSON list in one meta row).
CREATE TABLE clusters (
    name       TEXT PRIMARY KEY NOT NULL,
    created_at INTEGER NOT NULL,
    version    INTEGER NOT NULL
);
INSERT INTO clusters (name, created_at, version)
    SELECT j.value, 0, 1 FROM meta, json_each(meta.value) AS j WHERE meta.key = 'ecs_clusters';
DELETE FROM meta WHERE key = 'ecs_clusters';

-- The servers sharing this database: what `slipway server ls` shows.
CREATE TABLE servers (
    id         TEXT PRIMARY KEY NOT NULL,
    api_url    TEXT NOT NULL,
    ingress    TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    seen_at    INTEGER NOT NULL
);
