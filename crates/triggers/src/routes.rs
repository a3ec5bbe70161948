//! The HTTP routes of the triggers: `/git/{APP}.git/...` (the built-in remote) and
//! `POST /hooks/{APP}` (webhooks). Errors are JSON like the native API's
//! (`{"error": {"code", "message"}}`) except git's own answers, which git prints.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use base64::Engine as _;
use serde_json::json;
use slipway_app::App;
use slipway_core::access::{Face, Identity};
use slipway_metrics::Operation;
use slipway_store::{AuditEntry, PushRecord, now_ms, random_id};

use crate::cgi::{self, CgiRequest};
use crate::remote::{self, ZERO};
use crate::webhook::{self, Event, WebhookError};

/// The largest webhook body accepted (GitHub caps payloads at 25 MB).
pub const MAX_WEBHOOK_BYTES: usize = 25 * 1024 * 1024;

/// The state of the trigger routes.
#[derive(Clone)]
pub struct Triggers {
    app: App,
    /// Where the repositories live (`DATA_DIR/git`).
    root: PathBuf,
    /// One lock per app: a push's refs are read before and after with no other push of
    /// this server in between.
    locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl Triggers {
    /// Triggers of `app` with repositories under `root` (the server's `DATA_DIR/git`).
    pub fn new(app: App, root: PathBuf) -> Self {
        Triggers {
            app,
            root,
            locks: Arc::default(),
        }
    }

    fn lock_of(&self, app: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(app.to_owned()).or_default().clone()
    }
}

/// The routes: `/git/{*path}` (GET and POST) and `POST /hooks/{app}`.
pub fn router(t: Triggers) -> Router {
    Router::new()
        .route("/git/{*path}", any(git))
        .route(
            "/hooks/{app}",
            post(hook).layer(DefaultBodyLimit::max(MAX_WEBHOOK_BYTES)),
        )
        .with_state(t)
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let message = message.into();
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

fn tagged(mut r: Response, op: &'static str) -> Response {
    r.extensions_mut()
        .insert(Operation::new(slipway_metrics::Face::Api, op));
    r
}

fn source_of(req: &Request) -> String {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |c| c.0.to_string())
}

/// The token of a request: `Bearer TOKEN`, or Basic with the token as the password (or as
/// the user name when the password is empty).
pub fn token_of(h: &HeaderMap) -> Option<String> {
    let v = h.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    if let Some(t) = v.strip_prefix("Bearer ") {
        return Some(t.trim().to_owned()).filter(|t| !t.is_empty());
    }
    let b64 = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (user, pass) = raw.split_once(':').unwrap_or((raw.as_str(), ""));
    let t = if pass.is_empty() { user } else { pass };
    Some(t.to_owned()).filter(|t| !t.is_empty())
}

fn challenge(message: &str) -> Response {
    let mut r = error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message);
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Basic realm=\"slipway git\""),
    );
    r
}

/// What a git request asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GitOp {
    Fetch,
    /// The ref advertisement before a push.
    PushRefs,
    /// The push itself (`git-receive-pack`).
    Push,
}

/// `(app, path below the repository, op)` of a git request, or `None` (not a route of the
/// smart protocol).
fn parse_git_path(path: &str, method: &str, query: &str) -> Option<(String, String, GitOp)> {
    let rest = path.strip_prefix("/git/")?;
    let (repo, below) = rest.split_once('/')?;
    let app = repo.strip_suffix(".git").unwrap_or(repo);
    slipway_core::model::validate_name(app).ok()?;
    let service = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("service="))
        .unwrap_or("");
    let op = match (method, below) {
        ("GET", "info/refs") if service == "git-receive-pack" => GitOp::PushRefs,
        ("GET", "info/refs") if service == "git-upload-pack" || service.is_empty() => GitOp::Fetch,
        ("GET", "HEAD") | ("POST", "git-upload-pack") => GitOp::Fetch,
        ("POST", "git-receive-pack") => GitOp::Push,
        _ => return None,
    };
    Some((app.to_owned(), below.to_owned(), op))
}

async fn audit(t: &Triggers, who: &Identity, source: &str, app: &str, status: StatusCode) {
    let outcome = if status.is_success() {
        "ok".to_owned()
    } else if status == StatusCode::FORBIDDEN || status == StatusCode::UNAUTHORIZED {
        "refused".to_owned()
    } else {
        format!("failed ({})", status.as_u16())
    };
    let entry = AuditEntry {
        seq: 0,
        at: now_ms(),
        identity: who.name.clone(),
        source: source.to_owned(),
        face: "git".to_owned(),
        operation: "push".to_owned(),
        target: format!("/git/{app}.git"),
        status: status.as_u16(),
        outcome,
    };
    if let Err(e) = t.app.audit(entry).await {
        tracing::error!(error = %e.message, "could not write the audit log");
    }
}

async fn git(State(t): State<Triggers>, req: Request) -> Response {
    let op_name = match (
        req.method().as_str(),
        req.uri().path().ends_with("receive-pack"),
    ) {
        ("POST", true) => "POST /git/{app}.git/git-receive-pack",
        ("POST", false) => "POST /git/{app}.git/git-upload-pack",
        _ => "GET /git/{app}.git/info/refs",
    };
    tagged(serve_git(t, req).await, op_name)
}

async fn serve_git(t: Triggers, req: Request) -> Response {
    let method = req.method().as_str().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let Some((app, below, op)) = parse_git_path(req.uri().path(), &method, &query) else {
        return error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "not a git route: use http(s)://SERVER/git/APP.git with git clone, fetch or push",
        );
    };
    let source = source_of(&req);
    let Some(token) = token_of(req.headers()) else {
        return challenge(
            "the git remote needs an API token: HTTP Basic with the token as the password, or Authorization: Bearer TOKEN",
        );
    };
    let who = match t.app.authenticate_token(&token).await {
        Ok(Some(i)) => i,
        Ok(None) => return challenge("invalid or revoked API token"),
        Err(e) => {
            tracing::error!(error = %e.message, "cannot authenticate a git request");
            return error(StatusCode::INTERNAL_SERVER_ERROR, e.code, e.message);
        }
    };
    let rule = if op == GitOp::Fetch { "fetch" } else { "push" };
    let allowed = who.check(Face::Git, rule).and_then(|_| {
        if op == GitOp::Fetch {
            Ok(())
        } else {
            who.may_change(&app, None)
        }
    });
    if let Err(d) = allowed {
        tracing::info!(identity = %who.name, %app, op = rule, reason = %d, "git request refused");
        if op != GitOp::Fetch {
            audit(&t, &who, &source, &app, StatusCode::FORBIDDEN).await;
        }
        return error(StatusCode::FORBIDDEN, "FORBIDDEN", d.to_string());
    }
    let repo = remote::repo_path(&t.root, &app);
    let lock = t.lock_of(&app);
    let _guard = if op == GitOp::Fetch {
        if !repo.join("HEAD").exists() {
            return error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                format!("app {app} has no git repository yet: push to create it"),
            );
        }
        None
    } else {
        let guard = lock.lock_owned().await;
        if let Err(e) = remote::ensure_repo(&t.root, &app).await {
            tracing::error!(%app, error = %e, "cannot create the app's git repository");
            return error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", e.to_string());
        }
        Some(guard)
    };
    let h = req.headers();
    let hv = |n: &header::HeaderName| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let cgi_req = CgiRequest {
        method,
        path_info: format!("/{app}.git/{below}"),
        query,
        content_type: hv(&header::CONTENT_TYPE),
        content_encoding: hv(&header::CONTENT_ENCODING),
        content_length: hv(&header::CONTENT_LENGTH),
        git_protocol: h
            .get("git-protocol")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        remote_user: who.name.clone(),
        remote_addr: source.split(':').next().unwrap_or("").to_owned(),
    };
    let before = if op == GitOp::Push {
        match remote::refs(&repo).await {
            Ok(r) => Some(r),
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", e.to_string()),
        }
    } else {
        None
    };
    let body = req.into_body();
    let started = match cgi::start(&t.root, &cgi_req, body).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(%app, error = %e, "git http-backend failed");
            return error(StatusCode::BAD_GATEWAY, "GIT_FAILED", e.to_string());
        }
    };
    let cgi::CgiResponse {
        status,
        headers,
        mut body,
        mut child,
        feeder,
    } = started;
    let Some(before) = before else {
        // A fetch (or a push's advertisement): streamed as git writes it.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        let stream = tokio_util::io::ReaderStream::new(body);
        let mut resp = Response::new(Body::from_stream(stream));
        *resp.status_mut() = status;
        *resp.headers_mut() = headers;
        return resp;
    };
    // A push: its report is small; the refs are read once git-receive-pack is done, and
    // the events recorded before git's answer leaves.
    let out = cgi::read_all(&mut body).await;
    let _ = feeder.await;
    let exited = child.wait().await;
    let out = match out {
        Ok(o) => o,
        Err(e) => return error(StatusCode::BAD_GATEWAY, "GIT_FAILED", e.to_string()),
    };
    if !exited.is_ok_and(|s| s.success()) {
        tracing::warn!(%app, "git-receive-pack did not exit cleanly");
    }
    let recorded = record_git_push(&t, &app, &who, &repo, &before).await;
    audit(&t, &who, &source, &app, status).await;
    if let Err(e) = recorded {
        // The objects and refs are in; the events could not be written (logged).
        tracing::error!(%app, error = %e, "a push was received but its events were not recorded");
    }
    let mut resp = Response::new(Body::from(out));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

/// Records one push event per ref the push changed.
async fn record_git_push(
    t: &Triggers,
    app: &str,
    who: &Identity,
    repo: &std::path::Path,
    before: &std::collections::BTreeMap<String, String>,
) -> Result<usize, String> {
    let after = remote::refs(repo).await.map_err(|e| e.to_string())?;
    let changes = remote::changes(before, &after);
    if changes.is_empty() {
        return Ok(0);
    }
    let push_id = random_id(8);
    let tips: Vec<String> = {
        let mut v: Vec<String> = before.values().cloned().collect();
        v.sort();
        v.dedup();
        v
    };
    let at = now_ms();
    let mut events = Vec::with_capacity(changes.len());
    for c in &changes {
        let (paths, truncated) = match remote::changed_paths(repo, c, &tips).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(%app, git_ref = %c.git_ref, error = %e, "cannot list a push's changed paths");
                (Vec::new(), true)
            }
        };
        events.push(PushRecord {
            id: random_id(12),
            app: app.to_owned(),
            source: "git".to_owned(),
            delivery: format!("git:{push_id}:{}", c.git_ref),
            git_ref: c.git_ref.clone(),
            before: c.before.clone(),
            after: c.after.clone(),
            pusher: who.name.clone(),
            repository: None,
            paths,
            paths_truncated: truncated,
            at,
        });
    }
    let n = events.len();
    t.app.record_pushes(events).await.map_err(|e| e.message)?;
    if changes.iter().any(|c| c.after == ZERO) {
        tracing::info!(%app, "a push deleted refs");
    }
    Ok(n)
}

async fn hook(
    State(t): State<Triggers>,
    Path(app): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    tagged(
        webhook_delivery(&t, &app, &headers, &body).await,
        "POST /hooks/{app}",
    )
}

async fn webhook_delivery(t: &Triggers, app: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    if slipway_core::model::validate_name(app).is_err() {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such app");
    }
    let delivery = match webhook::identify(headers, body) {
        Ok(d) => d,
        Err(e) => return error(StatusCode::BAD_REQUEST, "INVALID_INPUT", e.to_string()),
    };
    let secret = match t.app.webhook_secret(app).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            tracing::info!(%app, provider = delivery.provider.as_str(), "webhook refused: the app has no webhook secret");
            return error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                format!(
                    "app {app} has no webhook secret: set one with `slipway secret set {}`",
                    slipway_app::webhook_secret_name(app)
                ),
            );
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.code, e.message),
    };
    if let Err(e) = webhook::verify(&delivery, &secret, body) {
        tracing::info!(%app, provider = delivery.provider.as_str(), delivery = %delivery.id, reason = %e, "webhook refused");
        return error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", e.to_string());
    }
    match &delivery.event {
        Event::Ping => {
            return (
                StatusCode::OK,
                axum::Json(json!({"event": "ping", "ok": true})),
            )
                .into_response();
        }
        Event::Other(ev) => {
            return (
                StatusCode::ACCEPTED,
                axum::Json(json!({"event": ev, "ignored": true})),
            )
                .into_response();
        }
        Event::Push => {}
    }
    let push = match webhook::parse_push(body) {
        Ok(p) => p,
        Err(e @ WebhookError::Malformed(_)) => {
            return error(StatusCode::BAD_REQUEST, "INVALID_INPUT", e.to_string());
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, "INVALID_INPUT", e.to_string()),
    };
    let record = PushRecord {
        id: random_id(12),
        app: app.to_owned(),
        source: delivery.provider.as_str().to_owned(),
        delivery: delivery.id.clone(),
        git_ref: push.git_ref.clone(),
        before: push.before,
        after: push.after.clone(),
        pusher: push.pusher,
        repository: push.repository,
        paths: push.paths,
        paths_truncated: push.truncated,
        at: now_ms(),
    };
    match t.app.record_pushes(vec![record]).await {
        Ok(r) => (
            StatusCode::OK,
            axum::Json(json!({
                "event": "push",
                "recorded": r.first().copied().unwrap_or(false),
                "delivery": delivery.id,
                "ref": push.git_ref,
                "after": push.after,
            })),
        )
            .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.code, e.message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_paths() {
        assert_eq!(
            parse_git_path("/git/shop.git/info/refs", "GET", "service=git-receive-pack"),
            Some(("shop".into(), "info/refs".into(), GitOp::PushRefs))
        );
        assert_eq!(
            parse_git_path("/git/shop/info/refs", "GET", "service=git-upload-pack"),
            Some(("shop".into(), "info/refs".into(), GitOp::Fetch))
        );
        assert_eq!(
            parse_git_path("/git/shop.git/git-receive-pack", "POST", "").map(|p| p.2),
            Some(GitOp::Push)
        );
        assert_eq!(
            parse_git_path("/git/shop.git/git-upload-pack", "POST", "").map(|p| p.2),
            Some(GitOp::Fetch)
        );
        for (p, m) in [
            ("/git/../x.git/info/refs", "GET"),
            ("/git/Shop.git/info/refs", "GET"),
            ("/git/shop.git/objects/info/packs", "GET"),
            ("/git/shop.git/git-receive-pack", "GET"),
            ("/git/shop.git", "GET"),
        ] {
            assert_eq!(parse_git_path(p, m, ""), None, "{p}");
        }
    }

    #[test]
    fn tokens_from_basic_and_bearer() {
        let mut h = HeaderMap::new();
        assert_eq!(token_of(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer slw_abc".parse().unwrap());
        assert_eq!(token_of(&h).as_deref(), Some("slw_abc"));
        let b = base64::engine::general_purpose::STANDARD.encode("anyone:slw_x");
        h.insert(header::AUTHORIZATION, format!("Basic {b}").parse().unwrap());
        assert_eq!(token_of(&h).as_deref(), Some("slw_x"));
        let b = base64::engine::general_purpose::STANDARD.encode("slw_y:");
        h.insert(header::AUTHORIZATION, format!("Basic {b}").parse().unwrap());
        assert_eq!(token_of(&h).as_deref(), Some("slw_y"));
        h.insert(header::AUTHORIZATION, "Basic !!!".parse().unwrap());
        assert_eq!(token_of(&h), None);
    }
}
