//! Readiness: `GET /readyz` (open, like `/healthz`) and the test-only fault hook
//! `POST /api/v1/debug/panic`.
//!
//! `/healthz` answers `ok` whenever the process serves HTTP (alive). `/readyz` answers
//! `200` when this server can do its work, `503` otherwise, with the same JSON body
//! ([`ReadyReport`]) naming what is not ready: every supervised loop up and not stuck, the
//! database answering a trivial query, and the Docker engine answering a ping, each check
//! within [`CHECK_TIMEOUT`]. A standby server (another one leads) runs no controller: it
//! is ready when its own loops (leadership, heartbeat, ingress), the database and the
//! engine are.
//!
//! `POST /api/v1/debug/panic {"loop": NAME}` (admin token) makes that loop panic, to test
//! its restart. It answers 404 unless the server was started with `SLIPWAY_FAULT_INJECT=1`;
//! it is for tests only.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use slipway_supervise::{FaultError, LoopReport};

use crate::ApiState;
use crate::types::ApiError;

/// How long each check of `/readyz` may take.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// One dependency's check.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Check {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The body of `GET /readyz`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReadyReport {
    pub ready: bool,
    /// Whether this server leads (runs the controller's loops).
    pub leading: bool,
    /// What is not ready, one line each (empty when ready).
    pub not_ready: Vec<String>,
    pub database: Check,
    /// `None`: this server has no engine of its own to check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<Check>,
    pub loops: Vec<LoopReport>,
}

async fn check<E: std::fmt::Display>(f: impl Future<Output = Result<(), E>>) -> Check {
    match tokio::time::timeout(CHECK_TIMEOUT, f).await {
        Ok(Ok(())) => Check {
            ok: true,
            error: None,
        },
        Ok(Err(e)) => Check {
            ok: false,
            error: Some(e.to_string()),
        },
        Err(_) => Check {
            ok: false,
            error: Some(format!("no answer within {CHECK_TIMEOUT:?}")),
        },
    }
}

/// Checks this server's parts.
pub async fn report(state: &ApiState) -> ReadyReport {
    let store = state.app.store();
    let (database, engine) = tokio::join!(check(store.ping()), async {
        match &state.engine {
            Some(rt) => Some(check(rt.ping()).await),
            None => None,
        }
    });
    let loops = state.supervisor.report();
    let mut not_ready = Vec::new();
    if let Some(e) = &database.error {
        not_ready.push(format!("database: {e}"));
    }
    if let Some(e) = engine.as_ref().and_then(|c| c.error.as_ref()) {
        not_ready.push(format!("engine: {e}"));
    }
    for l in loops.iter().filter(|l| !l.ready()) {
        let why = if l.up {
            format!("stuck (no progress for {} ms)", l.last_progress_ms)
        } else {
            format!("down (restarts: {})", l.restarts)
        };
        not_ready.push(format!("loop {}: {why}", l.name));
    }
    ReadyReport {
        ready: not_ready.is_empty(),
        leading: state.leading(),
        not_ready,
        database,
        engine,
        loops,
    }
}

pub(crate) async fn readyz(State(state): State<ApiState>) -> Response {
    let r = report(&state).await;
    let status = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(r)).into_response()
}

/// `POST /api/v1/debug/panic`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PanicRequest {
    /// The supervised loop to panic (a name `/readyz` lists).
    #[serde(rename = "loop")]
    pub name: String,
}

pub(crate) async fn debug_panic(
    State(state): State<ApiState>,
    Json(req): Json<PanicRequest>,
) -> Result<StatusCode, ApiError> {
    match state.supervisor.inject_panic(&req.name) {
        Ok(()) => Ok(StatusCode::ACCEPTED),
        Err(FaultError::Disabled) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "no such route",
        )),
        Err(e @ FaultError::UnknownLoop(_)) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            e.to_string(),
        )),
    }
}
