//! Slipway's HTTP API: the native REST interface under `/api/v1`, its authentication, and
//! the request/response types the CLI shares with it.
//!
//! Handlers validate input completely before changing anything, so a rejected request leaves
//! no trace. They may call the store, the runtime (image resolution, logs) and wake the
//! controller; they never start or stop containers themselves.

mod auth;
mod handlers;
mod ops;
pub mod secrets;
pub mod types;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use slipway_controller::Controller;
use slipway_store::Store;

pub use auth::{TOKEN_META_KEY, hash_token};

/// Shared state of the API handlers.
#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn Store>,
    pub controller: Controller,
}

/// The API router: `/healthz` (open) and `/api/v1/...` (bearer token).
pub fn router(state: ApiState) -> Router {
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
            "/services/{app}/{env}/{name}/restart",
            post(handlers::restart),
        )
        .route("/deployments/{id}", get(handlers::get_deployment))
        .route("/services/{app}/{env}/{name}/exec", post(ops::exec))
        .route("/diff", post(ops::diff))
        .route("/apps/{app}", axum::routing::delete(ops::delete_app))
        .route("/logs", get(ops::app_logs))
        .route("/info", get(handlers::info))
        .route("/secrets", get(secrets::list))
        .route(
            "/secrets/{*name}",
            axum::routing::put(secrets::set).delete(secrets::delete),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .with_state(state);
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .nest("/api/v1", api)
}
