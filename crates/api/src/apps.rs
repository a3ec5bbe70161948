//! What is deployed, as users look at it: `GET /apps`, `GET /apps/{app}` (environments,
//! services, routes, URLs), `GET /envs[?app=APP]`, and the Scheduled Jobs (`GET /jobs`,
//! `POST /jobs/{app}/{env}/{name}/run`), and an app's push events (`GET /apps/{app}/pushes`).

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use slipway_app::{AppDetail, AppSummary, EnvSummary};

use crate::ApiState;
use crate::types::ApiError;

type ApiResult<T> = Result<Json<T>, ApiError>;

/// `GET /apps`: every app with services.
pub(crate) async fn list(State(state): State<ApiState>) -> ApiResult<Vec<AppSummary>> {
    Ok(Json(state.app.list_apps().await?))
}

/// `GET /apps/{app}`: its environments and services, with routes and URLs.
pub(crate) async fn show(
    State(state): State<ApiState>,
    Path(app): Path<String>,
) -> ApiResult<AppDetail> {
    Ok(Json(
        state
            .app
            .show_app(&app, state.ingress_url.as_deref())
            .await?,
    ))
}

#[derive(Debug, Deserialize)]
pub(crate) struct EnvQuery {
    app: Option<String>,
}

/// `GET /envs[?app=APP]`: the environments of an app (or of every app).
pub(crate) async fn envs(
    State(state): State<ApiState>,
    Query(q): Query<EnvQuery>,
) -> ApiResult<Vec<EnvSummary>> {
    Ok(Json(state.app.list_envs(q.app.as_deref()).await?))
}

#[derive(Debug, Deserialize)]
pub(crate) struct JobsQuery {
    app: String,
    env: String,
}

/// `GET /jobs?app=APP&env=ENV`: the Scheduled Jobs of an app environment with their runs.
pub(crate) async fn jobs(
    State(state): State<ApiState>,
    Query(q): Query<JobsQuery>,
) -> ApiResult<Vec<slipway_app::JobView>> {
    Ok(Json(state.app.list_jobs(&q.app, &q.env).await?))
}

/// `POST /jobs/{app}/{env}/{name}/run`: a run of the job now.
pub(crate) async fn run_job(
    State(state): State<ApiState>,
    Path((app, env, name)): Path<(String, String, String)>,
) -> ApiResult<slipway_core::model::Task> {
    let key = crate::handlers::key_of(app, env, name)?;
    Ok(Json(state.app.run_job(&key).await?))
}

#[derive(Debug, Deserialize)]
pub(crate) struct PushesQuery {
    limit: Option<u32>,
}

/// `GET /apps/{app}/pushes[?limit=N]`: the app's push events (the built-in git remote's
/// and webhooks'), newest first (100 unless `limit` says otherwise, at most 1000).
pub(crate) async fn pushes(
    State(state): State<ApiState>,
    Path(app): Path<String>,
    Query(q): Query<PushesQuery>,
) -> ApiResult<Vec<slipway_store::PushRecord>> {
    Ok(Json(
        state.app.list_pushes(&app, q.limit.unwrap_or(100)).await?,
    ))
}
