//! Slipway's HTTP API: the native REST interface under `/api/v1`, its authentication, and
//! the request/response types the CLI shares with it.
//!
//! A face: handlers translate requests into calls of the application layer
//! ([`slipway_app::App`]) for anything that changes state, read the store for queries, and
//! translate results and errors back. No business rule lives here. Writes that name the
//! version they expect (`If-Match`, the `ETag` of `GET /services/...`) get `409
//! VERSION_CONFLICT` with what changed when the record moved on.

mod apps;
mod auth;
mod handlers;
pub mod hosts;
pub mod identities;
pub mod metrics;
mod ops;
pub mod rate;
pub mod ready;
pub mod secrets;
pub mod types;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use slipway_app::App;

pub use auth::{
    Gate, TOKEN_META_KEY, audit, entry as audit_entry, forbidden, hash_token, record, source_of,
    too_many,
};
pub use rate::RateLimiter;

/// Shared state of the API handlers.
#[derive(Clone)]
pub struct ApiState {
    pub app: App,
    /// Where this server's ingress answers.
    pub ingress_url: Option<String>,
    /// This server's id among the servers sharing the database.
    pub server_id: Arc<str>,
    /// The agent connections (the leader's controller calls hosts through them).
    pub hub: slipway_agent::Hub,
    /// Whether this server leads now.
    pub leading: Arc<std::sync::atomic::AtomicBool>,
    /// This server's supervised loops (reported by `/readyz`).
    pub supervisor: slipway_supervise::Supervisor,
    /// This server's own engine, pinged by `/readyz`.
    pub engine: Option<slipway_runtime::DockerRuntime>,
    /// Per-identity request rates (shared with the AWS face).
    pub limiter: Arc<RateLimiter>,
}

impl ApiState {
    pub fn leading(&self) -> bool {
        self.leading.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The API router: `/healthz` and `/readyz` (open; see [`ready`]) and `/api/v1/...` and
/// `/metrics` (bearer token, through the [`auth`] gate), with `native`: the other faces'
/// routes under `/api/v1` (the registry's, the access keys'), behind the same gate. Each
/// request's operation is named for the request metrics ([`metrics::tag`]).
pub fn router(state: ApiState, native: Router) -> Router {
    // Agents authenticate with their own credentials (a join token, then their key).
    let agents = Router::new()
        .route("/api/v1/agent/join", post(hosts::agent_join))
        .route("/api/v1/agent/connect", get(hosts::agent_connect))
        .with_state(state.clone());
    let api = Router::new()
        .route("/deploy", post(handlers::deploy))
        .route("/services", get(handlers::list_services))
        .route("/tasks", get(handlers::standalone_tasks))
        .route(
            "/services/{app}/{env}/{name}",
            get(handlers::get_service).delete(handlers::delete_service),
        )
        .route("/services/{app}/{env}/{name}/events", get(handlers::events))
        .route("/services/{app}/{env}/{name}/logs", get(handlers::logs))
        .route(
            "/services/{app}/{env}/{name}/rollback",
            post(handlers::rollback),
        )
        .route("/services/{app}/{env}/{name}/scale", post(handlers::scale))
        .route(
            "/services/{app}/{env}/{name}/promote",
            post(handlers::promote),
        )
        .route("/services/{app}/{env}/{name}/abort", post(handlers::abort))
        .route(
            "/services/{app}/{env}/{name}/restart",
            post(handlers::restart),
        )
        .route(
            "/services/{app}/{env}/{name}/rebalance",
            post(hosts::rebalance),
        )
        .route("/deployments/{id}", get(handlers::get_deployment))
        .route("/services/{app}/{env}/{name}/exec", post(ops::exec))
        .route("/diff", post(ops::diff))
        .route("/apps", get(apps::list))
        .route("/apps/{app}", get(apps::show).delete(ops::delete_app))
        .route("/apps/{app}/pushes", get(apps::pushes))
        .route("/envs", get(apps::envs))
        .route("/jobs", get(apps::jobs))
        .route("/jobs/{app}/{env}/{name}/run", post(apps::run_job))
        .route("/logs", get(ops::app_logs))
        .route("/info", get(handlers::info))
        .route("/servers", get(handlers::servers))
        .route("/hosts", get(hosts::list))
        .route("/hosts/join-token", post(hosts::join_token))
        .route("/hosts/{id}", axum::routing::delete(hosts::remove))
        .route("/hosts/{id}/drain", post(hosts::drain))
        .route("/hosts/{id}/activate", post(hosts::activate))
        .route("/debug/panic", post(ready::debug_panic))
        .route("/secrets", get(secrets::list))
        .route(
            "/secrets/{*name}",
            axum::routing::put(secrets::set).delete(secrets::delete),
        )
        .route("/tokens", get(identities::list).post(identities::create))
        .route("/tokens/{name}", axum::routing::delete(identities::revoke))
        .route("/audit", get(identities::audit_log))
        .route("/whoami", get(identities::whoami))
        .with_state(state.clone());
    let gate = auth::Gate {
        app: state.app.clone(),
        limiter: state.limiter.clone(),
    };
    let scrape = Router::new()
        .route("/metrics", get(metrics::serve))
        .with_state(state.clone());
    let gated = Router::new()
        .nest("/api/v1", api)
        .merge(native)
        .merge(scrape)
        .route_layer(axum::middleware::from_fn_with_state(gate, auth::authorize));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready::readyz).with_state(state))
        .merge(gated)
        .merge(agents)
        .route_layer(axum::middleware::from_fn(metrics::tag))
}
