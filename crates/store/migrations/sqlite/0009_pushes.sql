-- Push events of pipelines: one per updated ref of a `git push` to the built-in remote, or
-- per webhook delivery (GitHub, Gitea/Forgejo, GitLab). A delivery id is recorded once per
-- app: a redelivered webhook (or the same one sent to two servers) adds nothing.
CREATE TABLE pushes (
    id       TEXT PRIMARY KEY NOT NULL,
    app      TEXT NOT NULL,
    delivery TEXT NOT NULL,
    at       INTEGER NOT NULL,
    body     TEXT NOT NULL,
    UNIQUE (app, delivery)
);
CREATE INDEX pushes_by_app ON pushes (app, at);
