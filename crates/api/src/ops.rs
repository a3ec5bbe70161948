//! Handlers of the everyday verbs: `exec` in a task, `diff` before a deploy, deleting a whole
//! app (or one of its environments) and the logs of every service of an app.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;
use slipway_app::LogsQuery;

use crate::ApiState;
use crate::handlers::{key_of, log_response};
use crate::types::{
    ApiError, DeleteAppResponse, DeployRequest, DiffResponse, ExecRequest, ExecResponse,
};

type ApiResult<T> = Result<Json<T>, ApiError>;

/// `POST /services/{app}/{env}/{name}/exec`: runs a command in one running task.
pub(crate) async fn exec(
    State(state): State<ApiState>,
    Path((app, env, name)): Path<(String, String, String)>,
    Json(req): Json<ExecRequest>,
) -> ApiResult<ExecResponse> {
    let key = key_of(app, env, name)?;
    Ok(Json(
        state.app.exec(&key, req.task.as_deref(), req.cmd).await?,
    ))
}

/// `POST /diff`: what `POST /deploy` with the same body would change; writes nothing.
pub(crate) async fn diff(
    State(state): State<ApiState>,
    Json(req): Json<DeployRequest>,
) -> ApiResult<DiffResponse> {
    Ok(Json(DiffResponse {
        results: state.app.diff(&req.services).await?,
    }))
}

#[derive(Debug, Deserialize)]
pub(crate) struct AppQuery {
    env: Option<String>,
}

/// `DELETE /apps/{app}[?env=ENV]`: deletes every service of an app (or of one environment).
pub(crate) async fn delete_app(
    State(state): State<ApiState>,
    Path(app): Path<String>,
    Query(q): Query<AppQuery>,
) -> ApiResult<DeleteAppResponse> {
    Ok(Json(state.app.delete_app(&app, q.env.as_deref()).await?))
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
    let lq = LogsQuery {
        follow: q.follow,
        since: q.since,
        tail: q.tail,
        ..Default::default()
    };
    Ok(log_response(
        state.app.app_logs(&q.app, q.env.as_deref(), &lq).await?,
    ))
}
