//! Handlers of the everyday verbs: `exec` in a task, `diff` before a deploy, deleting a whole
//! app (or one of its environments) and the logs of every service of an app.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use slipway_controller::now_ms;
use slipway_core::diff::{Current, DiffStatus, diff_service};
use slipway_core::model::{RolloutState, TaskHealth, TaskStatus, validate_name};

use crate::ApiState;
use crate::handlers::{LogsQuery, key_of, log_response, log_streams, service_or_404};
use crate::types::{
    ApiError, DeleteAppResponse, DeployRequest, DiffResponse, DiffResult, ExecRequest, ExecResponse,
};

/// How long `exec` waits for a command.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(60);
/// The most output `exec` returns.
pub const EXEC_MAX_OUTPUT: usize = 1024 * 1024;

type ApiResult<T> = Result<Json<T>, ApiError>;

/// `POST /services/{app}/{env}/{name}/exec`: runs a command in one running task.
pub(crate) async fn exec(
    State(state): State<ApiState>,
    Path((app, env, name)): Path<(String, String, String)>,
    Json(req): Json<ExecRequest>,
) -> ApiResult<ExecResponse> {
    let key = key_of(app, env, name)?;
    if req.cmd.first().is_none_or(|c| c.trim().is_empty()) {
        return Err(ApiError::bad_request(
            "no command given: pass it after --, e.g. slipway exec web -- /hello check",
        ));
    }
    service_or_404(&state, &key).await?;
    let mut tasks = state.store.list_tasks(&key, false).await?;
    tasks.sort_by_key(|t| (t.created_at, t.id.clone()));
    let running = |t: &&slipway_core::model::Task| {
        t.container_id.is_some() && t.last_status == TaskStatus::Running
    };
    let task = match &req.task {
        Some(id) => {
            let Some(t) = tasks.iter().find(|t| &t.id == id) else {
                return Err(ApiError::not_found(format!(
                    "task {id} of service {key} (list them with slipway ps)"
                )));
            };
            if !running(&t) {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "TASK_NOT_RUNNING",
                    format!(
                        "task {id} of service {key} is {}, not running; pick another with slipway ps",
                        t.last_status.as_str()
                    ),
                ));
            }
            t
        }
        None => tasks
            .iter()
            .filter(running)
            .find(|t| t.desired_running && t.health == TaskHealth::Healthy)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::CONFLICT,
                    "NO_HEALTHY_TASK",
                    format!(
                        "service {key} has no healthy running task; name one with --task (slipway ps lists them)"
                    ),
                )
            })?,
    };
    let cid = task.container_id.clone().unwrap_or_default();
    let rt = state.controller.runtime();
    let out = match tokio::time::timeout(
        EXEC_TIMEOUT,
        rt.exec(&cid, req.cmd.clone(), EXEC_MAX_OUTPUT),
    )
    .await
    {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => {
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "EXEC_FAILED",
                format!("cannot run {:?} in task {}: {e}", req.cmd[0], task.id),
            ));
        }
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "EXEC_TIMEOUT",
                format!(
                    "{:?} did not finish within {}s in task {}; it may still be running there",
                    req.cmd[0],
                    EXEC_TIMEOUT.as_secs(),
                    task.id
                ),
            ));
        }
    };
    Ok(Json(ExecResponse {
        task: task.id.clone(),
        exit_code: out.exit_code,
        output: String::from_utf8_lossy(&out.output).into_owned(),
        truncated: out.truncated,
    }))
}

/// `POST /diff`: what `POST /deploy` with the same body would change. Validates and resolves
/// images exactly as a deploy does, and writes nothing.
pub(crate) async fn diff(
    State(state): State<ApiState>,
    Json(req): Json<DeployRequest>,
) -> ApiResult<DiffResponse> {
    let specs = crate::handlers::checked_specs(&state, &req.services).await?;
    let mut results = Vec::new();
    for spec in specs {
        let current = state
            .store
            .get_service(&spec.key)
            .await?
            .filter(|s| !s.deleting);
        let td = match &current {
            Some(svc) => {
                state
                    .store
                    .get_task_definition(&spec.key.family(), svc.revision)
                    .await?
            }
            None => None,
        };
        let mut d = match (&current, &td) {
            (Some(svc), Some(td)) => diff_service(
                Some(Current {
                    kind: svc.kind,
                    desired_count: svc.desired_count,
                    config: &svc.config,
                    container: &td.container,
                }),
                &spec,
            ),
            _ => diff_service(None, &spec),
        };
        let mut note = None;
        if d.status != DiffStatus::New && !d.new_deployment {
            let latest = state.store.list_deployments(&spec.key, 1).await?;
            if let Some(l) = latest.first().filter(|l| l.state == RolloutState::Failed) {
                d.new_deployment = true;
                d.status = DiffStatus::Changed;
                note = Some(format!(
                    "the last deployment ({}) failed, so a deploy starts a new one",
                    l.id
                ));
            }
        }
        results.push(DiffResult { diff: d, note });
    }
    Ok(Json(DiffResponse { results }))
}

#[derive(Debug, Deserialize)]
pub(crate) struct AppQuery {
    env: Option<String>,
}

/// `DELETE /apps/{app}[?env=ENV]`: deletes every service of an app (or of one environment);
/// the controller stops their tasks and forgets them. Networks of environments with no
/// service left are removed at once. Deleting what does not exist is not an error.
pub(crate) async fn delete_app(
    State(state): State<ApiState>,
    Path(app): Path<String>,
    Query(q): Query<AppQuery>,
) -> ApiResult<DeleteAppResponse> {
    validate_name(&app).map_err(|e| ApiError::bad_request(format!("app: {e}")))?;
    if let Some(e) = &q.env {
        validate_name(e).map_err(|e| ApiError::bad_request(format!("environment: {e}")))?;
    }
    let services: Vec<_> = state
        .store
        .list_services(Some(&app))
        .await?
        .into_iter()
        .filter(|s| q.env.as_ref().is_none_or(|e| e == &s.key.env))
        .collect();
    let now = now_ms();
    let mut keys = Vec::new();
    for mut svc in services {
        if !svc.deleting {
            svc.deleting = true;
            svc.updated_at = now;
            state.store.put_service(&svc).await?;
            state
                .store
                .add_event(
                    &svc.key,
                    now,
                    &format!("(service {}) is being deleted.", svc.key.name),
                )
                .await?;
        }
        state.controller.wake(&svc.key);
        keys.push(svc.key);
    }
    // Standalone tasks (ECS RunTask) of the app are stopped too.
    for t in state.store.live_standalone_tasks().await? {
        if t.service.app == app && q.env.as_ref().is_none_or(|e| e == &t.service.env) {
            state
                .controller
                .stop_task(&t.id, "The app was deleted")
                .await
                .map_err(ApiError::internal)?;
        }
    }
    let mut networks = Vec::new();
    if keys.is_empty() {
        // Nothing left to stop: remove the environment's network(s) if any remain.
        networks = state
            .controller
            .runtime()
            .remove_app_networks(state.controller.cluster(), &app, q.env.as_deref())
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::CONFLICT,
                    "NETWORK_IN_USE",
                    format!("cannot remove the networks of app {app}: {e}; stop what still uses them (docker network inspect)"),
                )
            })?;
    }
    let message = if keys.is_empty() && networks.is_empty() {
        "nothing to delete".to_owned()
    } else if keys.is_empty() {
        format!("removed {} network(s)", networks.len())
    } else {
        format!("deleting {} service(s)", keys.len())
    };
    Ok(Json(DeleteAppResponse {
        app,
        env: q.env,
        services: keys,
        networks,
        message,
    }))
}

#[derive(Debug, Deserialize)]
pub(crate) struct AppLogsQuery {
    app: String,
    env: Option<String>,
    #[serde(default)]
    follow: bool,
    since: Option<i64>,
    tail: Option<u32>,
}

/// `GET /logs?app=APP[&env=ENV]`: the logs of every task of every service of an app, each
/// line prefixed with `service/task | `.
pub(crate) async fn app_logs(
    State(state): State<ApiState>,
    Query(q): Query<AppLogsQuery>,
) -> Result<Response, ApiError> {
    validate_name(&q.app).map_err(|e| ApiError::bad_request(format!("app: {e}")))?;
    let services: Vec<_> = state
        .store
        .list_services(Some(&q.app))
        .await?
        .into_iter()
        .filter(|s| q.env.as_ref().is_none_or(|e| e == &s.key.env))
        .collect();
    if services.is_empty() {
        return Err(ApiError::not_found(match &q.env {
            Some(e) => format!("services of app {} in environment {e}", q.app),
            None => format!("services of app {}", q.app),
        }));
    }
    let lq = LogsQuery {
        follow: q.follow,
        since: q.since,
        tail: q.tail,
    };
    let several_envs = services.iter().any(|s| s.key.env != services[0].key.env);
    let mut streams = Vec::new();
    for svc in services {
        let tasks = state.store.list_tasks(&svc.key, true).await?;
        let key = svc.key.clone();
        streams.extend(log_streams(&state, tasks, &lq, move |t| {
            if several_envs {
                format!("{}/{}/{}", key.env, key.name, t.id)
            } else {
                format!("{}/{}", key.name, t.id)
            }
        }));
    }
    Ok(log_response(streams))
}
