//! Pipeline triggers: what starts a pipeline run. Two faces record **push events** through
//! the application layer ([`slipway_app::App::record_pushes`]); the runner (later) starts
//! runs from them. Listed by `GET /api/v1/apps/{app}/pushes`.
//!
//! **The built-in git remote** ([`remote`], routes `/git/{APP}.git/...`): `git push
//! http://SERVER/git/APP.git main`, `git clone`/`fetch` of it, over smart HTTP served by
//! `git http-backend` ([`cgi`]). Credentials are the API's tokens: HTTP Basic with any user
//! name and the token as the password (or the token as the user name and no password), or
//! `Authorization: Bearer TOKEN`. Fetching needs read access (any identity); pushing needs
//! the rule `git push` (deployer or admin) and, for a scoped identity, the app within its
//! scope for every environment (a push may start pipelines that deploy anywhere in the
//! app). A push that changed refs records one event per ref (`source: git`, the pusher's
//! identity, `before`/`after`, the changed paths); it is recorded before git's answer is
//! sent, so when `git push` returns the event is listed. Pushes are audited (face `git`).
//!
//! **Webhooks** ([`webhook`], route `POST /hooks/{APP}`): push events of GitHub,
//! Gitea/Forgejo and GitLab, checked against the app's webhook secret, the secret named
//! `APP/webhook` in the secret store (`slipway secret set APP/webhook`). No secret, a
//! missing or bad signature: `401`, nothing recorded. `ping`: `200`. Other events: `202`,
//! nothing recorded. A push: `200` with `recorded: true`, or `false` when the delivery id
//! was recorded before (deduplicated by the store: across restarts and servers).
//!
//! Weaker today: repositories are on the server's own disk (servers sharing a PostgreSQL
//! database do not share repositories: point the remote at one server); the git face does
//! not take part in the API's per-identity rate limit.

pub mod cgi;
pub mod remote;
mod routes;
pub mod webhook;

pub use routes::{Triggers, router};
