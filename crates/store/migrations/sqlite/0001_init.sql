-- Slipway state, version 1. Rows keep their full domain object as JSON in `body`; the other
-- columns exist to be queried on.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

CREATE TABLE services (
    app        TEXT NOT NULL,
    env        TEXT NOT NULL,
    name       TEXT NOT NULL,
    body       TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (app, env, name)
);

CREATE TABLE task_definitions (
    family     TEXT NOT NULL,
    revision   INTEGER NOT NULL,
    body       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (family, revision)
);

CREATE TABLE deployments (
    id         TEXT PRIMARY KEY NOT NULL,
    app        TEXT NOT NULL,
    env        TEXT NOT NULL,
    name       TEXT NOT NULL,
    state      TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX deployments_by_service ON deployments (app, env, name, created_at);

CREATE TABLE tasks (
    id              TEXT PRIMARY KEY NOT NULL,
    app             TEXT NOT NULL,
    env             TEXT NOT NULL,
    name            TEXT NOT NULL,
    desired_running INTEGER NOT NULL,
    last_status     TEXT NOT NULL,
    body            TEXT NOT NULL,
    created_at      INTEGER NOT NULL
);
CREATE INDEX tasks_by_service ON tasks (app, env, name, created_at);

CREATE TABLE events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    app        TEXT NOT NULL,
    env        TEXT NOT NULL,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    message    TEXT NOT NULL
);
CREATE INDEX events_by_service ON events (app, env, name, id);
