//! Handlers of the native API.

use std::collections::HashMap;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Deserialize;
use slipway_controller::{now_ms, random_id};
use slipway_core::model::{RolloutState, ServiceKey, TaskHealth, TaskStatus, validate_name};
use slipway_store::{NewDeployment, RevisionChoice, ServiceRecord};

use crate::ApiState;
use crate::types::{
    ActionResponse, ApiError, DeployOutcome, DeployRequest, DeployResponse, DeployResult,
    RollbackRequest, ScaleRequest, ServiceDetail, ServiceSummary,
};

type ApiResult<T> = Result<Json<T>, ApiError>;

pub(crate) fn key_of(app: String, env: String, name: String) -> Result<ServiceKey, ApiError> {
    for (what, v) in [("app", &app), ("environment", &env), ("service", &name)] {
        validate_name(v).map_err(|e| ApiError::bad_request(format!("{what}: {e}")))?;
    }
    Ok(ServiceKey::new(app, env, name))
}

pub(crate) async fn service_or_404(
    state: &ApiState,
    key: &ServiceKey,
) -> Result<ServiceRecord, ApiError> {
    state
        .store
        .get_service(key)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("service {key}")))
}

pub(crate) async fn deploy(
    State(state): State<ApiState>,
    Json(req): Json<DeployRequest>,
) -> ApiResult<DeployResponse> {
    let specs = checked_specs(&state, &req.services).await?;
    let now = now_ms();
    let mut results = Vec::new();
    for spec in specs {
        let current = state.store.get_service(&spec.key).await?;
        let current_def = match &current {
            Some(svc) => {
                state
                    .store
                    .get_task_definition(&spec.key.family(), svc.revision)
                    .await?
            }
            None => None,
        };
        let same_container = current_def
            .as_ref()
            .is_some_and(|td| td.container == spec.container);
        let latest = state
            .store
            .list_deployments(&spec.key, 1)
            .await?
            .into_iter()
            .next();
        let healthy_history = latest
            .as_ref()
            .is_some_and(|d| d.state != RolloutState::Failed);
        if let Some(svc) = current
            .as_ref()
            .filter(|s| same_container && !s.deleting && !req.force && healthy_history)
        {
            let outcome = if svc.desired_count == spec.desired_count
                && svc.config == spec.deployment
                && svc.kind == spec.kind
            {
                DeployOutcome::Unchanged
            } else {
                let mut updated = svc.clone();
                updated.desired_count = spec.desired_count;
                updated.config = spec.deployment;
                updated.kind = spec.kind;
                updated.updated_at = now;
                state.store.put_service(&updated).await?;
                if svc.desired_count != spec.desired_count {
                    state
                        .store
                        .add_event(
                            &spec.key,
                            now,
                            &format!(
                                "(service {}) desired count changed from {} to {}.",
                                spec.key.name, svc.desired_count, spec.desired_count
                            ),
                        )
                        .await?;
                }
                DeployOutcome::Scaled
            };
            state.controller.wake(&spec.key);
            results.push(DeployResult {
                service: spec.key.clone(),
                outcome,
                deployment_id: latest.map(|d| d.id),
                revision: svc.revision,
                image_digest: spec.container.image_digest.clone(),
            });
            continue;
        }
        let revision = match &current_def {
            Some(td) if same_container => RevisionChoice::Existing(td.revision),
            _ => RevisionChoice::Register(Box::new(spec.container.clone())),
        };
        let d = start_deployment(
            &state,
            &spec.key,
            spec.kind,
            spec.desired_count,
            spec.deployment,
            revision,
            |d| {
                format!(
                    "(service {}) deployment {} started: revision {}.",
                    spec.key.name, d.id, d.revision
                )
            },
        )
        .await?;
        results.push(DeployResult {
            service: spec.key.clone(),
            outcome: DeployOutcome::Deploying,
            deployment_id: Some(d.id),
            revision: d.revision,
            image_digest: spec.container.image_digest.clone(),
        });
    }
    Ok(Json(DeployResponse { results }))
}

/// Checks the specs of a deploy (or diff) request completely and resolves them: validation,
/// route conflicts, images and secrets. Nothing is changed, so bad input changes nothing.
pub(crate) async fn checked_specs(
    state: &ApiState,
    services: &[slipway_core::model::ServiceSpec],
) -> Result<Vec<slipway_core::model::ServiceSpec>, ApiError> {
    if services.is_empty() {
        return Err(ApiError::bad_request("no service in the request"));
    }
    for s in services {
        s.validate().map_err(ApiError::bad_request)?;
    }
    check_routes(state, services).await?;
    let mut specs = services.to_vec();
    for s in &mut specs {
        resolve_spec(state, s).await?;
    }
    Ok(specs)
}

/// Pins what a spec names to what it will run: the image to a digest (refusing one built for
/// another platform) and each secret to a version. Shared by deploy and diff.
pub(crate) async fn resolve_spec(
    state: &ApiState,
    s: &mut slipway_core::model::ServiceSpec,
) -> Result<(), ApiError> {
    let rt = state.controller.runtime();
    // A client that pushed the image names its digest: deploy exactly that.
    let wanted = match s.container.image_digest.take() {
        Some(d) if d.starts_with("sha256:") && !s.container.image.contains('@') => {
            format!("{}@{d}", slipway_runtime::split_tag(&s.container.image).0)
        }
        _ => s.container.image.clone(),
    };
    let info = rt
        .resolve_image(&wanted, s.container.pull)
        .await
        .map_err(|e| match e {
            slipway_runtime::RuntimeError::PlatformMismatch { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "PLATFORM_MISMATCH",
                format!("service {}: {e}", s.key.name),
            ),
            e => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "IMAGE_UNAVAILABLE",
                format!(
                    "service {}: {e}; build or load the image on this host, or check its name and tag",
                    s.key.name
                ),
            ),
        })?;
    s.container.image_digest = Some(info.pinned());
    pin_secrets(state, &s.key.name, &mut s.container.secrets).await
}

/// Pins each secret reference to a version: the current one unless the request names one.
/// A missing secret refuses the deploy.
pub(crate) async fn pin_secrets(
    state: &ApiState,
    service: &str,
    secrets: &mut std::collections::BTreeMap<String, slipway_core::model::SecretRef>,
) -> Result<(), ApiError> {
    for (var, r) in secrets.iter_mut() {
        slipway_core::manifest::check_secret_name(&r.name)
            .map_err(|m| ApiError::bad_request(format!("service {service}: secrets.{var}: {m}")))?;
        let found = match r.version {
            Some(v) => state
                .store
                .get_secret(&r.name, Some(v))
                .await?
                .map(|(v, _)| v),
            None => state.store.current_secret_version(&r.name).await?,
        };
        let Some(version) = found else {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "SECRET_NOT_FOUND",
                format!(
                    "service {service}: secret {:?} (variable {var}) does not exist; set it with `slipway secret set {}`",
                    r.name, r.name
                ),
            ));
        };
        r.version = Some(version);
    }
    Ok(())
}

async fn summary(state: &ApiState, svc: &ServiceRecord) -> Result<ServiceSummary, ApiError> {
    let tasks = state.store.list_tasks(&svc.key, false).await?;
    let running = tasks
        .iter()
        .filter(|t| t.desired_running && t.last_status == TaskStatus::Running)
        .count() as u32;
    let healthy = tasks
        .iter()
        .filter(|t| t.desired_running && t.health == TaskHealth::Healthy)
        .count() as u32;
    let td = state
        .store
        .get_task_definition(&svc.key.family(), svc.revision)
        .await?;
    let last = state
        .store
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
    for svc in state.store.list_services(q.app.as_deref()).await? {
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
    Ok(Json(state.store.list_tasks(&key, q.all).await?))
}

pub(crate) async fn get_service(
    State(state): State<ApiState>,
    Path((app, env, name)): Path<(String, String, String)>,
) -> ApiResult<ServiceDetail> {
    let key = key_of(app, env, name)?;
    let svc = service_or_404(&state, &key).await?;
    let container = state
        .store
        .get_task_definition(&key.family(), svc.revision)
        .await?
        .map(|t| t.container);
    Ok(Json(ServiceDetail {
        summary: summary(&state, &svc).await?,
        config: svc.config,
        container,
        deployments: state.store.list_deployments(&key, 10).await?,
        tasks: state.store.list_tasks(&key, true).await?,
        events: state.store.list_events(&key, 20).await?,
    }))
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
            .store
            .list_events(&key, q.limit.unwrap_or(100).min(100))
            .await?,
    ))
}

pub(crate) async fn get_deployment(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<slipway_core::model::Deployment> {
    state
        .store
        .get_deployment(&id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("deployment {id}")))
}

pub(crate) async fn scale(
    State(state): State<ApiState>,
    Path((app, env, name)): Path<(String, String, String)>,
    Json(req): Json<ScaleRequest>,
) -> ApiResult<ActionResponse> {
    let key = key_of(app, env, name)?;
    if req.count > 1000 {
        return Err(ApiError::bad_request(format!(
            "count must be between 0 and 1000, got {}",
            req.count
        )));
    }
    let mut svc = service_or_404(&state, &key).await?;
    let before = svc.desired_count;
    svc.desired_count = req.count;
    svc.updated_at = now_ms();
    state.store.put_service(&svc).await?;
    state
        .store
        .add_event(
            &key,
            svc.updated_at,
            &format!(
                "(service {}) desired count changed from {before} to {}.",
                key.name, req.count
            ),
        )
        .await?;
    state.controller.wake(&key);
    Ok(Json(ActionResponse {
        service: key,
        deployment_id: None,
        message: format!("desired count {before} → {}", req.count),
    }))
}

pub(crate) async fn rollback(
    State(state): State<ApiState>,
    Path((app, env, name)): Path<(String, String, String)>,
    body: Option<Json<RollbackRequest>>,
) -> ApiResult<ActionResponse> {
    let key = key_of(app, env, name)?;
    let svc = service_or_404(&state, &key).await?;
    let req = body.map(|b| b.0).unwrap_or_default();
    let revision = match req.revision {
        Some(r) => {
            if state
                .store
                .get_task_definition(&key.family(), r)
                .await?
                .is_none()
            {
                return Err(ApiError::not_found(format!(
                    "revision {}:{r}",
                    key.family()
                )));
            }
            r
        }
        None => {
            let deps = state.store.list_deployments(&key, 50).await?;
            deps.iter()
                .find(|d| d.state == RolloutState::Succeeded && d.revision != svc.revision)
                .map(|d| d.revision)
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::CONFLICT,
                        "NO_PREVIOUS_REVISION",
                        format!("service {key} has no earlier successful revision to roll back to; name one with --to"),
                    )
                })?
        }
    };
    let d = start_deployment(
        &state,
        &key,
        svc.kind,
        svc.desired_count,
        svc.config,
        RevisionChoice::Existing(revision),
        |d| {
            format!(
                "(service {}) rollback to revision {revision} started: deployment {}.",
                key.name, d.id
            )
        },
    )
    .await?;
    Ok(Json(ActionResponse {
        service: key,
        deployment_id: Some(d.id),
        message: format!("rolling back to revision {revision}"),
    }))
}

pub(crate) async fn restart(
    State(state): State<ApiState>,
    Path((app, env, name)): Path<(String, String, String)>,
) -> ApiResult<ActionResponse> {
    let key = key_of(app, env, name)?;
    let svc = service_or_404(&state, &key).await?;
    let td = state
        .store
        .get_task_definition(&key.family(), svc.revision)
        .await?
        .ok_or_else(|| ApiError::internal("task definition of the current revision is missing"))?;
    // Re-resolve the tag: a moved tag gives a new revision pinned to the new image.
    let info = state
        .controller
        .runtime()
        .resolve_image(&td.container.image, td.container.pull)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "IMAGE_UNAVAILABLE",
                e.to_string(),
            )
        })?;
    let pinned = info.pinned();
    // Like ECS, a forced new deployment reads secrets anew: their current versions.
    let mut secrets = td.container.secrets.clone();
    for r in secrets.values_mut() {
        r.version = None;
    }
    pin_secrets(&state, &key.name, &mut secrets).await?;
    let revision = if td.container.image_digest.as_deref() == Some(pinned.as_str())
        && td.container.secrets == secrets
    {
        RevisionChoice::Existing(td.revision)
    } else {
        let mut c = td.container.clone();
        c.image_digest = Some(pinned);
        c.secrets = secrets;
        RevisionChoice::Register(Box::new(c))
    };
    let d = start_deployment(
        &state,
        &key,
        svc.kind,
        svc.desired_count,
        svc.config,
        revision,
        |d| {
            format!(
                "(service {}) forced new deployment {} (revision {}).",
                key.name, d.id, d.revision
            )
        },
    )
    .await?;
    Ok(Json(ActionResponse {
        service: key,
        deployment_id: Some(d.id),
        message: format!("restarting with revision {}", d.revision),
    }))
}

pub(crate) async fn delete_service(
    State(state): State<ApiState>,
    Path((app, env, name)): Path<(String, String, String)>,
) -> Result<(StatusCode, Json<ActionResponse>), ApiError> {
    let key = key_of(app, env, name)?;
    let mut svc = service_or_404(&state, &key).await?;
    if !svc.deleting {
        svc.deleting = true;
        svc.updated_at = now_ms();
        state.store.put_service(&svc).await?;
        state
            .store
            .add_event(
                &key,
                svc.updated_at,
                &format!("(service {}) is being deleted.", key.name),
            )
            .await?;
    }
    state.controller.wake(&key);
    Ok((
        StatusCode::ACCEPTED,
        Json(ActionResponse {
            service: key,
            deployment_id: None,
            message: "deleting".into(),
        }),
    ))
}

#[derive(Debug, Deserialize)]
pub(crate) struct LogsQuery {
    #[serde(default)]
    pub(crate) follow: bool,
    /// Only lines newer than this many seconds.
    pub(crate) since: Option<i64>,
    pub(crate) tail: Option<u32>,
}

pub(crate) async fn logs(
    State(state): State<ApiState>,
    Path((app, env, name)): Path<(String, String, String)>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    let key = key_of(app, env, name)?;
    service_or_404(&state, &key).await?;
    let tasks = state.store.list_tasks(&key, true).await?;
    let streams = log_streams(&state, tasks, &q, |t| t.id.clone());
    Ok(log_response(streams))
}

pub(crate) type LogStream =
    futures_util::stream::BoxStream<'static, Result<String, std::io::Error>>;

/// One stream of log lines per task container, each line prefixed with `label(task) | `.
pub(crate) fn log_streams(
    state: &ApiState,
    tasks: Vec<slipway_core::model::Task>,
    q: &LogsQuery,
    label: impl Fn(&slipway_core::model::Task) -> String,
) -> Vec<LogStream> {
    let since = q.since.map(|s| now_ms() / 1000 - s);
    let rt = state.controller.runtime().clone();
    let mut streams = Vec::new();
    let mut seen: HashMap<String, ()> = HashMap::new();
    for t in tasks {
        let Some(cid) = t.container_id.clone() else {
            continue;
        };
        if seen.insert(cid.clone(), ()).is_some() {
            continue;
        }
        if !q.follow || t.last_status != TaskStatus::Stopped {
            let prefix = format!("{} | ", label(&t));
            let s = rt
                .logs(
                    &cid,
                    q.follow && t.last_status != TaskStatus::Stopped,
                    since,
                    q.tail,
                )
                .filter_map(move |line| {
                    let prefix = prefix.clone();
                    async move {
                        match line {
                            Ok(l) => Some(Ok::<_, std::io::Error>(
                                l.lines()
                                    .map(|x| format!("{prefix}{x}\n"))
                                    .collect::<String>(),
                            )),
                            // A task whose container is gone has no more logs: not an error.
                            Err(_) => None,
                        }
                    }
                });
            streams.push(s.boxed());
        }
    }
    streams
}

/// The merged streams as a `text/plain` response.
pub(crate) fn log_response(streams: Vec<LogStream>) -> Response {
    let merged = futures_util::stream::select_all(streams);
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(merged),
    )
        .into_response()
}

/// `GET /api/v1/info`: what this server is.
pub(crate) async fn info(State(state): State<ApiState>) -> Json<serde_json::Value> {
    let ingress = state
        .store
        .get_meta("ingress_url")
        .await
        .ok()
        .flatten()
        .filter(|u| !u.is_empty());
    Json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "cluster": state.controller.cluster(),
        "ingress_url": ingress,
        "platform": state.controller.runtime().host_platform(),
    }))
}

/// Refuses a deploy whose ingress routes (host + path) are already claimed by another service.
async fn check_routes(
    state: &ApiState,
    specs: &[slipway_core::model::ServiceSpec],
) -> Result<(), ApiError> {
    let mut claimed: HashMap<(String, String), ServiceKey> = HashMap::new();
    let norm = |p: &str| {
        if p.len() > 1 {
            p.trim_end_matches('/').to_owned()
        } else {
            p.to_owned()
        }
    };
    let mut claim = |key: &ServiceKey,
                     route: &slipway_core::model::HttpRoute|
     -> Result<(), ApiError> {
        let hosts: Vec<String> = if route.aliases.is_empty() {
            vec![String::new()]
        } else {
            route.aliases.clone()
        };
        for h in hosts {
            let k = (h.to_ascii_lowercase(), norm(&route.path));
            if let Some(other) = claimed.insert(k.clone(), key.clone())
                && &other != key
            {
                let host = if k.0.is_empty() {
                    "any host".to_owned()
                } else {
                    k.0
                };
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "ROUTE_CONFLICT",
                    format!(
                        "route {} on {host} is already used by service {other}; choose another http.path or http.alias for {key}",
                        k.1
                    ),
                ));
            }
        }
        Ok(())
    };
    for s in specs {
        if let Some(r) = &s.container.http_route {
            claim(&s.key, r)?;
        }
    }
    for svc in state.store.list_services(None).await? {
        if svc.deleting || specs.iter().any(|s| s.key == svc.key) {
            continue;
        }
        if let Some(td) = state
            .store
            .get_task_definition(&svc.key.family(), svc.revision)
            .await?
            && let Some(r) = &td.container.http_route
        {
            claim(&svc.key, r)?;
        }
    }
    Ok(())
}

/// Records a new deployment of a service, logs its start as a service event and wakes the
/// controller: the one way every verb (deploy, rollback, restart) starts a rollout.
async fn start_deployment(
    state: &ApiState,
    key: &ServiceKey,
    kind: slipway_core::model::ServiceKind,
    desired_count: u32,
    config: slipway_core::model::DeploymentConfig,
    revision: RevisionChoice,
    event: impl FnOnce(&slipway_core::model::Deployment) -> String,
) -> Result<slipway_core::model::Deployment, ApiError> {
    let now = now_ms();
    let d = state
        .store
        .create_deployment(NewDeployment {
            id: format!("d-{}", random_id(6)),
            key: key.clone(),
            kind,
            desired_count,
            config,
            revision,
            rollback_of: None,
            now,
        })
        .await?;
    state.store.add_event(key, now, &event(&d)).await?;
    state.controller.wake(key);
    Ok(d)
}
