//! `GET /apps`, `GET /apps/{app}` and `GET /envs[?app=APP]`: the apps, one app's
//! environments, services, routes and URLs, and the environments.

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
