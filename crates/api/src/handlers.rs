//! Handlers of the native API: translations of requests onto the application layer (writes)
//! and the store (reads), and of their results back.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use slipway_app::{LogStream, LogsQuery};
use slipway_core::model::{ServiceKey, TaskHealth, TaskStatus, validate_name};
use slipway_store::ServiceRecord;

use crate::ApiState;
use crate::types::{
    ActionResponse, ApiError, DeployRequest, DeployResponse, RollbackRequest, ScaleRequest,
    ServiceDetail, ServiceSummary,
};

type ApiResult<T> = Result<Json<T>, ApiError>;

pub(crate) fn key_of(app: String, env: String, name: String) -> Result<ServiceKey, ApiError> {
    for (what, v) in [("app", &app), ("environment", &env), ("service", &name)] {
        validate_name(v).map_err(|e| ApiError::bad_request(format!("{what}: {e}")))?;
    }
    Ok(ServiceKey::new(app, env, name))
}

/// The version a request expects (`If-Match: "7"` or `If-Match: 7`), if it names one.
pub(crate) fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .map(|s| s.trim().trim_start_matches("W/").trim_matches('"'))
        .and_then(|s| s.parse().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::bad_request(
                "If-Match must be a service version (a number, as the ETag of GET /services/...)",
            )
        })
}

pub(crate) async fn service_or_404(
    state: &ApiState,
    key: &ServiceKey,
) -> Result<ServiceRecord, ApiError> {
    state
        .app
        .store()
        .get_service(key)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("service {key}")))
}

pub(crate) async fn deploy(
    State(state): State<ApiState>,
    axum::Extension(who): axum::Extension<slipway_core::access::Identity>,
    Json(req): Json<DeployRequest>,
) -> ApiResult<DeployResponse> {
    for s in &req.services {
        who.may_change(&s.key.app, Some(&s.key.env))
            .map_err(|d| crate::auth::forbidden(&d))?;
    }
    let results = state
        .app
        .deploy(&req.services, req.force, &req.expect)
        .await?;
    Ok(Json(DeployResponse { results }))
}

async fn summary(state: &ApiState, svc: &ServiceRecord) -> Result<ServiceSummary, ApiError> {
    let store = state.app.store();
    let tasks = store.list_tasks(&svc.key, false).await?;
    let running = tasks
        .iter()
        .filter(|t| t.desired_running && t.last_status == TaskStatus::Running)
        .count() as u32;
    let healthy = tasks
        .iter()
        .filter(|t| t.desired_running && t.health == TaskHealth::Healthy)
        .count() as u32;
    let td = store
        .get_task_definition(&svc.key.family(), svc.revision)
        .await?;
    let last = store
        .list_deployments(&svc.key, 1)
        .await?
        .into_iter()
        .next();
    Ok(ServiceSummary {
        service: svc.key.clone(),
        kind: svc.kind,
        desired: svc.desired_count,
        running,
        healthy,
        revision: svc.revision,
        image: td.as_ref().map(|t| t.container.image.clone()),
        image_digest: td.and_then(|t| t.container.image_digest),
        deleting: svc.deleting,
        last_deployment: last,
        version: svc.version,
    })
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    app: Option<String>,
    env: Option<String>,
}

pub(crate) async fn list_services(
    State(state): State<ApiState>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Vec<ServiceSummary>> {
    let mut out = Vec::new();
    for svc in state.app.store().list_services(q.app.as_deref()).await? {
        if q.env.as_deref().is_some_and(|e| e != svc.key.env) {
            continue;
        }
        out.push(summary(&state, &svc).await?);
    }
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
pub(crate) struct TasksQuery {
    app: String,
    env: String,
    /// Include stopped tasks.
    #[serde(default)]
    all: bool,
}

/// `GET /tasks?app=A&env=E[&all=true]`: the standalone tasks (ECS `RunTask`) of an app
/// environment, newest first.
pub(crate) async fn standalone_tasks(
    State(state): State<ApiState>,
    Query(q): Query<TasksQuery>,
) -> ApiResult<Vec<slipway_core::model::Task>> {
    let key = ServiceKey::standalone(&q.app, &q.env);
    Ok(Json(state.app.store().list_tasks(&key, q.all).await?))
}

/// `GET /services/{app}/{env}/{name}`, with the record's version as its `ETag`.
pub(crate) async fn get_service(
    State(state): State<ApiState>,
    Path((app, env, name)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let key = key_of(app, env, name)?;
    let svc = service_or_404(&state, &key).await?;
    let store = state.app.store();
    let container = store
        .get_task_definition(&key.family(), svc.revision)
        .await?
        .map(|t| t.container);
    let detail = ServiceDetail {
        summary: summary(&state, &svc).await?,
        config: svc.config,
        container,
        deployments: store.list_deployments(&key, 10).await?,
        tasks: store.list_tasks(&key, true).await?,
        events: store.list_events(&key, 20).await?,
    };
    let mut r = Json(detail).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", svc.version)) {
        r.headers_mut().insert(header::ETAG, v);
    }
    Ok(r)
}

#[derive(Debug, Deserialize)]
pub(crate) struct EventsQuery {
    limit: Option<u32>,
}

pub(crate) async fn events(
    State(state): State<ApiState>,
    Path((app, env, name)): Path<(String, String, String)>,
    Query(q): Query<EventsQuery>,
) -> ApiResult<Vec<slipway_core::model::ServiceEvent>> {
    let key = key_of(app, env, name)?;
    service_or_404(&state, &key).await?;
    Ok(Json(
        state
            .app
            .store()
            .list_events(&key, q.limit.unwrap_or(100).min(100))
            .await?,
    ))
}

pub(crate) async fn get_deployment(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<slipway_core::model::Deployment> {
    state
        .app
        .store()
        .get_deployment(&id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("deployment {id}")))
}

pub(crate) async fn scale(
    State(state): State<ApiState>,
    Path((app, env, name)): Path<(String, String, String)>,
    headers: HeaderMap,
    Json(req): Json<ScaleRequest>,
) -> ApiResult<ActionResponse> {
    let key = key_of(app, env, name)?;
    let expect = if_match(&headers)?;
    Ok(Json(state.app.scale(&key, req.count, expect).await?))
}

pub(crate) async fn rollback(
    State(state): State<ApiState>,
    Path((app, env, name)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Option<Json<RollbackRequest>>,
) -> ApiResult<ActionResponse> {
    let key = key_of(app, env, name)?;
    let expect = if_match(&headers)?;
    let req = body.map(|b| b.0).unwrap_or_default();
    Ok(Json(state.app.rollback(&key, req.revision, expect).await?))
}

pub(crate) async fn promote(
    state: State<ApiState>,
    path: Path<(String, String, String)>,
) -> ApiResult<ActionResponse> {
    control_rollout(state, path, slipway_app::RolloutControl::Promote).await
}

pub(crate) async fn abort(
    state: State<ApiState>,
    path: Path<(String, String, String)>,
) -> ApiResult<ActionResponse> {
    control_rollout(state, path, slipway_app::RolloutControl::Abort).await
}

async fn control_rollout(
    State(state): State<ApiState>,
    Path((app, env, name)): Path<(String, String, String)>,
    what: slipway_app::RolloutControl,
) -> ApiResult<ActionResponse> {
    let key = key_of(app, env, name)?;
    Ok(Json(state.app.control_rollout(&key, what, "a user").await?))
}

pub(crate) async fn restart(
    State(state): State<ApiState>,
    Path((app, env, name)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> ApiResult<ActionResponse> {
    let key = key_of(app, env, name)?;
    let expect = if_match(&headers)?;
    Ok(Json(state.app.restart(&key, expect).await?))
}

pub(crate) async fn delete_service(
    State(state): State<ApiState>,
    Path((app, env, name)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<ActionResponse>), ApiError> {
    let key = key_of(app, env, name)?;
    let expect = if_match(&headers)?;
    let (done, _) = state.app.delete_service(&key, expect, false, true).await?;
    Ok((StatusCode::ACCEPTED, Json(done)))
}

pub(crate) async fn logs(
    State(state): State<ApiState>,
    Path((app, env, name)): Path<(String, String, String)>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    let key = key_of(app, env, name)?;
    Ok(log_response(state.app.service_logs(&key, &q).await?))
}

/// The merged streams as a `text/plain` response.
pub(crate) fn log_response(streams: Vec<LogStream>) -> Response {
    use futures_util::StreamExt;
    let merged = futures_util::stream::select_all(streams)
        .map(|r| r.map_err(|e| std::io::Error::other(e.to_string())));
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(merged),
    )
        .into_response()
}

/// `GET /api/v1/info`: what this server is.
pub(crate) async fn info(State(state): State<ApiState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "cluster": state.app.cluster(),
        "ingress_url": state.ingress_url,
        "platform": state.app.engine().host_platform(),
        "server": state.server_id,
        "database": state.app.store().backend().as_str(),
    }))
}

/// `GET /api/v1/servers`: the servers sharing this cluster's database, the leader marked.
pub(crate) async fn servers(
    State(state): State<ApiState>,
) -> ApiResult<Vec<slipway_store::ServerInfo>> {
    Ok(Json(state.app.store().list_servers().await?))
}
