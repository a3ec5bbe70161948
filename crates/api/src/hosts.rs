//! `/api/v1/hosts` (admin token): join tokens, the list of hosts, drain, activate, remove;
//! and `/api/v1/agent/*` (the agents' own credentials): join, and the agent connection the
//! leader's controller talks to hosts over.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use slipway_agent::agent::{CLUSTER_HEADER, JoinRequest};
use slipway_agent::proto::{Hello, UPGRADE};
use slipway_app::{HostHello, HostStatus, Joined};
use tokio::io::AsyncBufReadExt;

use crate::ApiState;
use crate::types::ApiError;

/// `POST /hosts/join-token` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JoinTokenRequest {
    /// How long the token works, in seconds (default one hour).
    #[serde(default)]
    pub ttl_secs: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinTokenResponse {
    pub token: String,
    pub expires_in_secs: u64,
}

pub(crate) async fn join_token(
    State(state): State<ApiState>,
    body: Option<Json<JoinTokenRequest>>,
) -> Result<Json<JoinTokenResponse>, ApiError> {
    let ttl = body
        .and_then(|b| b.0.ttl_secs)
        .map(|s| s.saturating_mul(1000) as i64);
    let token = state.app.create_join_token(ttl).await?;
    Ok(Json(JoinTokenResponse {
        token,
        expires_in_secs: ttl.unwrap_or(slipway_app::JOIN_TOKEN_TTL_MS) as u64 / 1000,
    }))
}

pub(crate) async fn list(State(state): State<ApiState>) -> Result<Json<Vec<HostStatus>>, ApiError> {
    Ok(Json(state.app.host_statuses().await?))
}

async fn one(state: &ApiState, id: &str) -> Result<Json<HostStatus>, ApiError> {
    state
        .app
        .host_statuses()
        .await?
        .into_iter()
        .find(|h| h.id == id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("host {id}")))
}

pub(crate) async fn drain(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<HostStatus>, ApiError> {
    state.app.drain_host(&id).await?;
    one(&state, &id).await
}

pub(crate) async fn activate(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<HostStatus>, ApiError> {
    state.app.activate_host(&id).await?;
    one(&state, &id).await
}

/// `DELETE /api/v1/hosts/{id}[?force=true]`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RemoveQuery {
    #[serde(default)]
    force: bool,
}

pub(crate) async fn remove(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Query<RemoveQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let h = state.app.remove_host(&id, q.force).await?;
    Ok(Json(serde_json::json!({ "id": h.id, "removed": true })))
}

/// `POST /api/v1/services/{app}/{env}/{name}/rebalance`: moves tasks to restore the spread.
pub(crate) async fn rebalance(
    State(state): State<ApiState>,
    Path((app, env, name)): Path<(String, String, String)>,
) -> Result<Json<slipway_app::Rebalance>, ApiError> {
    let key = crate::handlers::key_of(app, env, name)?;
    Ok(Json(state.app.rebalance(&key).await?))
}

/// `POST /api/v1/agent/join`: a join token buys a host id and key (shown once).
pub(crate) async fn agent_join(
    State(state): State<ApiState>,
    Json(req): Json<JoinRequest>,
) -> Result<Json<Joined>, ApiError> {
    Ok(Json(
        state
            .app
            .join_host(&req.token, &req.engine, &req.name)
            .await
            .map_err(unauthorized)?,
    ))
}

fn unauthorized(e: slipway_app::AppError) -> ApiError {
    let mut a = ApiError::from(e.clone());
    if e.code == "UNAUTHORIZED" {
        a.status = StatusCode::UNAUTHORIZED;
    }
    a
}

/// `GET /api/v1/agent/connect` (upgrade): an agent's connection. Only the leader serves
/// them (its controller makes the calls); another server names the leader.
pub(crate) async fn agent_connect(State(state): State<ApiState>, mut req: Request) -> Response {
    let credential = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_owned();
    let cluster = req
        .headers()
        .get(CLUSTER_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let host = match state.app.authenticate_agent(&credential, &cluster).await {
        Ok(h) => h,
        Err(e) => return unauthorized(e).into_response(),
    };
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(UPGRADE));
    if !upgrade {
        return ApiError::bad_request(format!("an agent connection upgrades to {UPGRADE}"))
            .into_response();
    }
    if !state.leading() {
        // Send the agent to the leader (its controller is the one that calls hosts).
        return match state.app.store().list_servers().await {
            Ok(list) => match list.into_iter().find(|s| s.leader) {
                Some(leader) => {
                    let mut r = StatusCode::TEMPORARY_REDIRECT.into_response();
                    if let Ok(v) =
                        HeaderValue::from_str(&format!("{}/api/v1/agent/connect", leader.api_url))
                    {
                        r.headers_mut().insert(header::LOCATION, v);
                    }
                    r
                }
                None => ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "NO_LEADER",
                    "no server leads the cluster right now; try again",
                )
                .into_response(),
            },
            Err(e) => ApiError::from(e).into_response(),
        };
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    let app = state.app.clone();
    let hub = state.hub.clone();
    let host_id = host.id.clone();
    tokio::spawn(async move {
        let io = match on_upgrade.await {
            Ok(io) => hyper_util::rt::TokioIo::new(io),
            Err(e) => {
                tracing::warn!(host = %host_id, error = %e, "agent upgrade failed");
                return;
            }
        };
        let (reader, writer) = tokio::io::split(io);
        let mut reader = tokio::io::BufReader::new(reader);
        let mut line = String::new();
        let hello = match tokio::time::timeout(
            std::time::Duration::from_secs(10),
            reader.read_line(&mut line),
        )
        .await
        {
            Ok(Ok(n)) if n > 0 => serde_json::from_str::<Hello>(&line).ok(),
            _ => None,
        };
        let Some(mut hello) = hello else {
            tracing::warn!(host = %host_id, "agent sent no hello");
            return;
        };
        // The credential says which host this is, whatever the hello claims.
        hello.host.clone_from(&host_id);
        let seen = HostHello {
            host: hello.host.clone(),
            engine: hello.engine.clone(),
            name: hello.name.clone(),
            cpu: hello.cpu,
            memory: hello.memory,
            platform: hello.platform.clone(),
            attributes: hello.attributes.clone(),
            address: hello.address.clone(),
        };
        if let Err(e) = app.host_seen(&seen).await {
            tracing::warn!(host = %host_id, error = %e, "agent refused");
            return;
        }
        hub.serve(hello, reader, writer).await;
    });
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    r.headers_mut()
        .insert(header::UPGRADE, HeaderValue::from_static(UPGRADE));
    r
}
