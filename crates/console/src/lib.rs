//! Slipway's web console, under `/ui/` on the API's listener: server-rendered HTML (maud
//! templates, checked at compile time, escaping every value) of the overview (apps ×
//! environments, current state first), a service (tasks, deployments, events, and its
//! actions: scale, rollback, restart, each behind a confirmation page), and a deployment with
//! its timeline drawn as SVG (old and new healthy counts, the marks, the window in which both
//! versions answered).
//!
//! A face: pages read the store's views; actions call the application layer, under the same
//! permission rules as the native API's operations ([`slipway_core::access::RULES`]: the
//! console's scale is `POST /services/{app}/{env}/{name}/scale`) and with the same audit
//! entries (face `console`). No business rule lives here.
//!
//! Safety: a session starts by presenting an API token ([`session`]); its cookie is
//! `HttpOnly`, `SameSite=Strict`, `Secure` when the listener is TLS; the token's identity is
//! checked again on every request (a revoked token ends its sessions); every form carries
//! the session's CSRF token; every answer carries a strict Content-Security-Policy (the
//! console's own script file only, no inline script or style) and `X-Frame-Options: DENY`.
//!
//! Registry: repositories, their images, the services that run them, and what the
//! lifecycle policy would expire ([`registry`]).
//!
//! Hosts: every host's state and use, drain and activate ([`hosts`]).
//!
//! Logs: a service's last lines, by task, searched on the server, followed live ([`logs`]).
//!
//! Live: pages that show a service follow it over server-sent events ([`live`]); without
//! script every page still reads, and a reload shows the present.
//!
//! May call: the application layer, the store's reads, the API crate's audit and rate
//! limiter.

mod actions;
#[cfg(feature = "fixture")]
pub mod fixture;
mod hosts;
mod live;
mod logs;
mod pages;
mod registry;
mod session;
mod svg;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use slipway_app::App;

pub use session::{SessionLimits, Sessions};

/// The console's state.
#[derive(Clone)]
pub struct Console {
    pub app: App,
    pub sessions: Arc<Sessions>,
    /// The listener is TLS: cookies are `Secure`.
    pub tls: bool,
    /// Per-identity request rates (the API's, shared).
    pub limiter: Arc<slipway_api::RateLimiter>,
    /// The built-in registry, for its pages.
    pub registry: Option<slipway_registry::Registry>,
}

impl Console {
    pub fn new(app: App, tls: bool, limiter: Arc<slipway_api::RateLimiter>) -> Self {
        Console {
            app,
            sessions: Arc::new(Sessions::new(SessionLimits::default())),
            tls,
            limiter,
            registry: None,
        }
    }

    /// With the registry's pages.
    pub fn with_registry(mut self, registry: slipway_registry::Registry) -> Self {
        self.registry = Some(registry);
        self
    }
}

/// The policy of every console answer: nothing but the console's own stylesheet, script
/// (a file: no inline script, no `eval`) and connections (its live stream and its pages), no
/// frames, forms only to itself.
pub const CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const STYLE: &str = include_str!("../static/console.css");
const SCRIPT: &str = include_str!("../static/console.js");

/// The console's routes, all under `/ui`.
pub fn router(console: Console) -> Router {
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(pages::overview))
        .route("/ui/login", get(session::login_page).post(session::login))
        .route("/ui/logout", axum::routing::post(session::logout))
        .route("/ui/services/{app}/{env}/{name}", get(pages::service))
        .route("/ui/deployments/{id}", get(pages::deployment))
        .route("/ui/services/{app}/{env}/{name}/logs", get(logs::page))
        .route("/ui/live/logs", get(logs::follow))
        .route(
            "/ui/services/{app}/{env}/{name}/{action}",
            get(actions::confirm).post(actions::act),
        )
        .route("/ui/hosts", get(hosts::page))
        .route(
            "/ui/hosts/{id}/{action}",
            get(hosts::confirm).post(hosts::act),
        )
        .route("/ui/registry", get(registry::page))
        .route("/ui/registry/{*name}", get(registry::repository))
        .route("/ui/live", get(live::live))
        .route("/ui/static/console.css", get(style))
        .route("/ui/static/console.js", get(script))
        // Requests counted by their route's template (`/metrics`).
        .route_layer(axum::middleware::from_fn(slipway_api::metrics::tag))
        .layer(axum::middleware::from_fn(headers))
        .with_state(console)
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        STYLE,
    )
        .into_response()
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        SCRIPT,
    )
        .into_response()
}

/// The security headers of every console answer.
async fn headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name: HeaderName, v: &'static str| {
        h.insert(name, HeaderValue::from_static(v));
    };
    set(h, header::CONTENT_SECURITY_POLICY, CSP);
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    resp
}

#[cfg(test)]
mod tests;
