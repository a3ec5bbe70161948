//! The gate of the native API (`/api/v1/...`, the registry's and the access keys' routes
//! included): who is calling (a bearer token: the admin token or a named identity's), may
//! they (the permission table, [`slipway_core::access::RULES`], by the route's pattern, and
//! the identity's scope by the route's `{app}`/`{env}`/repository), are they within their
//! rate, and the audit entry of every mutating call, written before the answer leaves.
//!
//! Handlers whose target is in the body (a deploy's services, a repository to create) check
//! the scope themselves with the [`Identity`] this gate puts in the request's extensions.

use std::sync::Arc;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use slipway_app::App;
use slipway_core::access::{Denied, Face, Identity};
use slipway_store::AuditEntry;

use crate::rate::RateLimiter;
use crate::types::ApiError;

pub use slipway_app::{ADMIN_TOKEN_META_KEY as TOKEN_META_KEY, hash_token};

/// What the gate needs.
#[derive(Clone)]
pub struct Gate {
    pub app: App,
    pub limiter: Arc<RateLimiter>,
}

/// Operations whose target is in the body: their handlers check a scoped identity.
const BODY_SCOPED: &[&str] = &[
    "POST /deploy",
    "POST /repositories",
    "POST /registry/password",
];

/// The client's address as the listener saw it.
pub fn source_of(req: &Request) -> String {
    req.extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |c| c.0.to_string())
}

fn unauthorized() -> Response {
    let mut r = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        "missing or invalid API token; set SLIPWAY_TOKEN or run `slipway login --server URL --token-file DATA_DIR/admin.token`",
    )
    .into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    r
}

/// A refusal as the native API says it.
pub fn forbidden(d: &Denied) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "FORBIDDEN", d.to_string())
}

/// `429` with `Retry-After` (whole seconds, at least 1).
pub fn too_many(wait: std::time::Duration) -> Response {
    let mut r = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "RATE_LIMITED",
        "too many requests from this identity; wait as Retry-After says (the server's --rate-limit)",
    )
    .into_response();
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    r.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from(secs.max(1)));
    r
}

/// The `{app}` / `{env}` / repository of a route, from its pattern and the request's path.
fn targets(pattern: &str, path: &str) -> (Option<String>, Option<String>, Option<String>) {
    let (mut app, mut env, mut repo) = (None, None, None);
    let ps: Vec<&str> = pattern.split('/').collect();
    let xs: Vec<&str> = path.split('/').collect();
    for (i, p) in ps.iter().enumerate() {
        match *p {
            "{app}" => app = xs.get(i).map(|s| (*s).to_owned()),
            "{env}" => env = xs.get(i).map(|s| (*s).to_owned()),
            "{*name}" if ps.get(1) == Some(&"repositories") => {
                let rest = xs.get(i..).map(|r| r.join("/")).unwrap_or_default();
                // Sub-resources of a repository (`.../lifecycle-policy`) are not its name.
                let name = rest
                    .split("/lifecycle-policy")
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                repo = Some(name);
            }
            _ => {}
        }
    }
    (app, env, repo)
}

/// The operation of a request: `METHOD /route-pattern` (without `/api/v1`).
fn operation(method: &Method, matched: &str) -> String {
    let pattern = matched.strip_prefix("/api/v1").unwrap_or(matched);
    format!("{method} {pattern}")
}

pub(crate) async fn authorize(State(gate): State<Gate>, mut req: Request, next: Next) -> Response {
    let Some(matched) = req.extensions().get::<MatchedPath>().cloned() else {
        return next.run(req).await;
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let identity = match presented {
        Some(t) => match gate.app.authenticate_token(&t).await {
            Ok(Some(i)) => i,
            Ok(None) => return unauthorized(),
            Err(e) => return ApiError::from(e).into_response(),
        },
        None => return unauthorized(),
    };
    let op = operation(req.method(), matched.as_str());
    let source = source_of(&req);
    let path = req.uri().path().to_owned();
    let pattern = matched
        .as_str()
        .strip_prefix("/api/v1")
        .unwrap_or(matched.as_str())
        .to_owned();
    let audit_native = |status: StatusCode| {
        let (app, identity, source, op, path) = (
            gate.app.clone(),
            identity.clone(),
            source.clone(),
            op.clone(),
            path.clone(),
        );
        async move { record(&app, &identity, &source, "native", &op, &path, status).await }
    };
    let checked = identity.check(Face::Native, &op).and_then(|rule| {
        if rule.mutates && identity.scoped() && !BODY_SCOPED.contains(&op.as_str()) {
            let local = path.strip_prefix("/api/v1").unwrap_or(&path);
            match targets(&pattern, local) {
                (Some(app), env, _) => identity.may_change(&app, env.as_deref())?,
                (None, _, Some(repo)) => identity.may_change_repo(&repo)?,
                // No app in sight: a platform-wide change, never within a scope.
                (None, _, None) => identity.may_change("(the whole platform)", None)?,
            }
        }
        Ok(rule)
    });
    let rule = match checked {
        Ok(r) => r,
        Err(d) => {
            tracing::info!(identity = %identity.name, %op, reason = %d, "refused");
            let resp = forbidden(&d).into_response();
            // A refused change is audited too: someone tried.
            if !matches!(d, Denied::NoRule { .. })
                && slipway_core::access::rule(Face::Native, &op).is_some_and(|r| r.mutates)
            {
                audit_native(resp.status()).await;
            }
            return resp;
        }
    };
    if let Err(wait) = gate.limiter.take(&identity.name) {
        return too_many(wait);
    }
    req.extensions_mut().insert(identity.clone());
    if !rule.mutates {
        return next.run(req).await;
    }
    // The entry rides with the call's first change (one transaction); a call that changed
    // nothing, or failed after its change, is recorded here with its status.
    let pending = entry(&identity, &source, "native", &op, &path, None);
    let (resp, recorded) = slipway_store::with_pending_audit(pending, next.run(req)).await;
    if !recorded || !answered_ok(resp.status()) {
        audit_native(resp.status()).await;
    }
    resp
}

fn answered_ok(status: StatusCode) -> bool {
    status.is_success() || status.is_redirection()
}

/// The audit entry of a call: answered with `status`, or (`None`) to be recorded with the
/// call's first change (`ok`, status 0: see [`slipway_store::audit`]).
pub fn entry(
    identity: &Identity,
    source: &str,
    face: &str,
    op: &str,
    target: &str,
    status: Option<StatusCode>,
) -> AuditEntry {
    let outcome = match status {
        None => "ok".to_owned(),
        Some(s) if answered_ok(s) => "ok".to_owned(),
        Some(s) if s == StatusCode::FORBIDDEN || s == StatusCode::UNAUTHORIZED => {
            "refused".to_owned()
        }
        Some(s) => format!("failed ({})", s.as_u16()),
    };
    AuditEntry {
        seq: 0,
        at: slipway_store::now_ms(),
        identity: identity.name.clone(),
        source: source.to_owned(),
        face: face.to_owned(),
        operation: op.to_owned(),
        target: target.to_owned(),
        status: status.map_or(0, |s| s.as_u16()),
        outcome,
    }
}

/// Writes the audit entry of a call answered with `status` (before the answer is sent).
pub async fn record(
    app: &App,
    identity: &Identity,
    source: &str,
    face: &str,
    op: &str,
    target: &str,
    status: StatusCode,
) {
    audit(app, entry(identity, source, face, op, target, Some(status))).await;
}

/// Appends an entry; a failure is logged (the call already happened).
pub async fn audit(app: &App, entry: AuditEntry) {
    if let Err(e) = app.audit(entry).await {
        tracing::error!(error = %e.message, "could not write the audit log");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_come_from_the_route_pattern() {
        assert_eq!(
            targets(
                "/services/{app}/{env}/{name}/scale",
                "/services/shop/prod/web/scale"
            ),
            (Some("shop".into()), Some("prod".into()), None)
        );
        assert_eq!(
            targets("/repositories/{*name}", "/repositories/shop/web"),
            (None, None, Some("shop/web".into()))
        );
        assert_eq!(
            targets(
                "/repositories/{*name}",
                "/repositories/shop/web/lifecycle-policy"
            ),
            (None, None, Some("shop/web".into()))
        );
        assert_eq!(
            targets("/secrets/{*name}", "/secrets/a/b"),
            (None, None, None)
        );
        assert_eq!(
            operation(&Method::POST, "/api/v1/deploy"),
            "POST /deploy".to_owned()
        );
    }
}
