-- Push events of pipelines, with the same meaning as SQLite's migration 9.
CREATE TABLE pushes (
    id       TEXT PRIMARY KEY NOT NULL,
    app      TEXT NOT NULL,
    delivery TEXT NOT NULL,
    at       BIGINT NOT NULL,
    body     TEXT NOT NULL,
    UNIQUE (app, delivery)
);
CREATE INDEX pushes_by_app ON pushes (app, at);
