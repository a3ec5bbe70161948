//! A service's actions from the console: scale, rollback, restart. `GET` shows what the
//! action will do and asks for confirmation (a form, so it works without script); `POST`
//! does it, with the session's CSRF token, under the native API's permission rule for the
//! same operation, the identity's rate limit, and an audit entry (face `console`).

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use slipway_core::access::{Denied, Face, Identity, Rule};
use slipway_core::model::ServiceKey;

use crate::Console;
use crate::pages::{self, error_page, layout, service_href};
use crate::session::{Viewer, posted};

/// An action of the service page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Scale,
    Rollback,
    Restart,
}

impl Action {
    pub const ALL: [Action; 3] = [Action::Scale, Action::Rollback, Action::Restart];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Scale => "scale",
            Action::Rollback => "rollback",
            Action::Restart => "restart",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Action::Scale => "Scale…",
            Action::Rollback => "Roll back…",
            Action::Restart => "Restart…",
        }
    }

    fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// The native API operation it is (its permission rule and audit name).
    fn operation(self) -> String {
        format!("POST /services/{{app}}/{{env}}/{{name}}/{}", self.as_str())
    }
}

/// Whether `who` may do `action` on `key`: the native operation's rule, and the identity's
/// scope. The service page shows only the actions this allows.
pub(crate) fn permitted(
    who: &Identity,
    action: Action,
    key: &ServiceKey,
) -> Result<&'static Rule, Denied> {
    let rule = who.check(Face::Native, &action.operation())?;
    if rule.mutates && who.scoped() {
        who.may_change(&key.app, Some(&key.env))?;
    }
    Ok(rule)
}

/// `GET /ui/services/{app}/{env}/{name}/{action}`: the confirmation form.
pub(crate) async fn confirm(
    State(c): State<Console>,
    headers: HeaderMap,
    Path((app, env, name, action)): Path<(String, String, String, String)>,
) -> Response {
    let (v, key) = match pages::service_viewer(&c, &headers, (app, env, name)).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(action) = Action::parse(&action) else {
        return error_page(Some(&v), StatusCode::NOT_FOUND, "No such action.");
    };
    if let Err(d) = permitted(&v.identity, action, &key) {
        return error_page(Some(&v), StatusCode::FORBIDDEN, &d.to_string());
    }
    let svc = match c.app.store().get_service(&key).await {
        Ok(Some(s)) => s,
        Ok(None) => return error_page(Some(&v), StatusCode::NOT_FOUND, "No such service."),
        Err(e) => return error_page(Some(&v), StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let back = service_href(&key);
    let what = match action {
        Action::Scale => format!("Scale {key} from {} tasks to:", svc.desired_count),
        Action::Rollback => format!(
            "Roll {key} back from revision {} to its previous successful revision: a new deployment replaces its tasks with the rolling rules.",
            svc.revision
        ),
        Action::Restart => format!(
            "Restart {key}: a new deployment of revision {} replaces every task, with the rolling rules.",
            svc.revision
        ),
    };
    let body = html! {
        p.crumbs { a href="/ui/" { "Overview" } " › " a href=(back) { (key.to_string()) } }
        h1 { (action.title().trim_end_matches('…')) " " (key.name) "?" }
        form.confirm method="post" action=(format!("{back}/{}", action.as_str())) {
            input type="hidden" name="csrf" value=(v.csrf);
            input type="hidden" name="version" value=(svc.version);
            p { label for="count" { (what) } }
            @if action == Action::Scale {
                input #count type="number" name="count" min="0" max=(slipway_app::MAX_COUNT) value=(svc.desired_count) required;
            }
            p {
                button type="submit" name="confirm" value="yes" { "Yes, " (action.as_str()) }
                " "
                a href=(back) { "Cancel" }
            }
        }
    };
    layout(&format!("{} {key}", action.as_str()), Some(&v), body).into_response()
}

/// `POST /ui/services/{app}/{env}/{name}/{action}`: does it (`csrf`, `version` the service
/// version the confirmation showed, `count` for scale).
pub(crate) async fn act(
    State(c): State<Console>,
    addr: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Path((app, env, name, action)): Path<(String, String, String, String)>,
    body: Bytes,
) -> Response {
    let (v, f) = match posted(&c, &headers, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(key) = pages::key_of((app, env, name)) else {
        return error_page(Some(&v), StatusCode::NOT_FOUND, "No such service.");
    };
    let Some(action) = Action::parse(&action) else {
        return error_page(Some(&v), StatusCode::NOT_FOUND, "No such action.");
    };
    let source = addr.map_or_else(|| "unknown".to_owned(), |a| a.0.0.to_string());
    // The version the confirmation page showed: a change made since is not overridden
    // blindly (the user sees the conflict and confirms again).
    let expect = f.get("version").and_then(|s| s.parse::<u64>().ok());
    let count = f.get("count").map(|s| s.trim().parse::<u32>());
    let app = c.app.clone();
    let run = async {
        match action {
            Action::Scale => match count {
                Some(Ok(n)) => app.scale(&key, n, expect).await.map(|_| ()),
                _ => Err(slipway_app::AppError::invalid(
                    "count: a whole number of tasks is needed",
                )),
            },
            Action::Rollback => app.rollback(&key, None, expect).await.map(|_| ()),
            Action::Restart => app.restart(&key, expect).await.map(|_| ()),
        }
    };
    let call = Call {
        viewer: &v,
        source,
        op: action.operation(),
        target: format!(
            "/api/v1/services/{}/{}/{}/{}",
            key.app,
            key.env,
            key.name,
            action.as_str()
        ),
    };
    let allowed = permitted(&v.identity, action, &key).map(|_| ());
    perform(&c, call, allowed, run, &service_href(&key)).await
}

/// A console action as the native operation it is.
pub(crate) struct Call<'a> {
    pub viewer: &'a Viewer,
    /// The client's address.
    pub source: String,
    /// The native operation (`POST /services/{app}/{env}/{name}/scale`).
    pub op: String,
    /// The native path it acts on (the audit entry's target).
    pub target: String,
}

/// Runs an action the viewer may (`allowed`) take: within the identity's rate, with its
/// audit entry (riding with the action's first change, or written with the refusal or the
/// error), then back to `done` (or an error page).
pub(crate) async fn perform(
    c: &Console,
    call: Call<'_>,
    allowed: Result<(), Denied>,
    run: impl std::future::Future<Output = slipway_app::Result<()>>,
    done: &str,
) -> Response {
    let v = call.viewer;
    let record = |status| {
        slipway_api::record(
            &c.app,
            &v.identity,
            &call.source,
            "console",
            &call.op,
            &call.target,
            status,
        )
    };
    if let Err(d) = allowed {
        tracing::info!(identity = %v.identity.name, op = %call.op, reason = %d, "console action refused");
        record(StatusCode::FORBIDDEN).await;
        return error_page(Some(v), StatusCode::FORBIDDEN, &d.to_string());
    }
    if let Err(wait) = c.limiter.take(&v.identity.name) {
        return slipway_api::too_many(wait);
    }
    let pending = slipway_api::audit_entry(
        &v.identity,
        &call.source,
        "console",
        &call.op,
        &call.target,
        None,
    );
    let (result, recorded) = slipway_store::with_pending_audit(pending, run).await;
    let status = match &result {
        Ok(()) => StatusCode::SEE_OTHER,
        Err(e) => status_of(e),
    };
    if !recorded || result.is_err() {
        record(status).await;
    }
    match result {
        Ok(()) => Redirect::to(done).into_response(),
        Err(e) => error_page(Some(v), status, &e.message),
    }
}

fn status_of(e: &slipway_app::AppError) -> StatusCode {
    use slipway_app::ErrorKind;
    match e.kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        ErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Upstream => StatusCode::BAD_GATEWAY,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}
