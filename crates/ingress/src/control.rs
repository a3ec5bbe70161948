//! The control API, served on a Unix socket in the data directory (only the server, running
//! as the same user, can reach it): the routing configuration, drains, metrics and the
//! measurements per version.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::proxy::Shared;
use crate::table::{RoutingConfig, Table};

#[derive(Clone)]
pub(crate) struct ControlState {
    pub shared: Arc<Shared>,
    pub config: Arc<tokio::sync::Mutex<RoutingConfig>>,
    pub persist: PathBuf,
}

/// `POST /drain`: wait until a target has no request in flight.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrainRequest {
    pub target: String,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrainResponse {
    /// True when no request was in flight before the timeout.
    pub drained: bool,
    pub in_flight: usize,
    pub waited_ms: u64,
}

pub(crate) fn router(state: ControlState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/config", get(get_config).put(put_config))
        .route("/drain", post(drain))
        .route("/metrics", get(metrics))
        .route("/versions", get(versions))
        .with_state(state)
}

async fn get_config(State(s): State<ControlState>) -> Json<RoutingConfig> {
    Json(s.config.lock().await.clone())
}

async fn put_config(
    State(s): State<ControlState>,
    Json(cfg): Json<RoutingConfig>,
) -> Result<StatusCode, (StatusCode, String)> {
    cfg.validate()
        .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    let mut current = s.config.lock().await;
    if *current == cfg {
        return Ok(StatusCode::NO_CONTENT);
    }
    let table = Table::compile(&cfg, &s.shared.table());
    s.shared.set_table(table);
    crate::persist(&s.persist, &cfg).map_err(|e| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot persist routes: {e}"),
        )
    })?;
    *current = cfg;
    Ok(StatusCode::NO_CONTENT)
}

async fn drain(
    State(s): State<ControlState>,
    Json(req): Json<DrainRequest>,
) -> Json<DrainResponse> {
    let started = Instant::now();
    let deadline = started + Duration::from_millis(req.timeout_ms);
    s.shared.global.drains.fetch_add(1, Ordering::Relaxed);
    loop {
        let table = s.shared.table();
        let target = table.all_targets().find(|t| t.id == req.target).cloned();
        let in_flight = match &target {
            // Only a target that no longer takes new requests can be drained.
            Some(t) if t.draining.load(Ordering::SeqCst) => t.in_flight.load(Ordering::SeqCst),
            Some(t) => t.in_flight.load(Ordering::SeqCst).max(1),
            None => 0,
        };
        if in_flight == 0 || Instant::now() >= deadline {
            return Json(DrainResponse {
                drained: in_flight == 0,
                in_flight,
                waited_ms: started.elapsed().as_millis() as u64,
            });
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `GET /versions`: every measured version of every service (see [`crate::versions`]).
async fn versions(State(s): State<ControlState>) -> Json<Vec<crate::versions::VersionReport>> {
    Json(crate::versions::report(&s.shared.table()))
}

async fn metrics(State(s): State<ControlState>) -> String {
    crate::metrics::render(&s.shared.table(), &s.shared.global)
}
