//! The registry's part of Slipway's native API, under `/api/v1` with the admin token:
//!
//! | route | what |
//! | --- | --- |
//! | `POST /api/v1/registry/password` `{"pull_only": bool}` | a fresh 12-hour registry password |
//! | `POST /api/v1/repositories` `{"name", "immutable"}` | create a repository |
//! | `GET /api/v1/repositories` | list repositories |
//! | `GET /api/v1/repositories/NAME` | one repository |
//! | `PATCH /api/v1/repositories/NAME` `{"immutable": bool}` | switch tag mutability |
//! | `DELETE /api/v1/repositories/NAME[?force=true]` | delete (refused when not empty unless forced) |
//! | `GET /api/v1/repositories/NAME/images` | images: tags, digest, size, pushed at, platforms |
//!
//! Errors use the native API's body, `{"error": {"code", "message"}}`.

use std::collections::{HashMap, HashSet};

use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Registry;
use crate::auth::Rights;
use crate::names::{Digest, validate_name};
use crate::routes::{DOCKER_LIST, OCI_INDEX};

/// `POST /api/v1/registry/password`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PasswordRequest {
    #[serde(default)]
    pub pull_only: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PasswordResponse {
    /// Any username works with the password; this one is suggested.
    pub username: String,
    pub password: String,
    /// `pull` or `pull,push`.
    pub rights: String,
    /// Unix milliseconds.
    pub expires_at: i64,
}

/// `POST /api/v1/repositories`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateRepository {
    pub name: String,
    #[serde(default)]
    pub immutable: bool,
}

/// `PATCH /api/v1/repositories/NAME`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpdateRepository {
    pub immutable: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepositoryInfo {
    pub name: String,
    pub immutable: bool,
    pub created_at: i64,
    pub tags: i64,
    pub manifests: i64,
}

/// One image (a top-level manifest) of a repository.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageInfo {
    pub digest: String,
    pub media_type: String,
    pub tags: Vec<String>,
    /// Bytes of the manifest, its config and layers (and, for an index, its children).
    pub size: i64,
    pub pushed_at: i64,
    /// `os/arch[/variant]` of the image, or of each entry of an index.
    pub platforms: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeleteResponse {
    pub name: String,
    pub deleted: bool,
}

#[derive(Debug, Clone, Deserialize)]
struct DeleteQuery {
    #[serde(default)]
    force: bool,
}

/// An error of the native API.
#[derive(Debug)]
pub struct AdminError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl AdminError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        AdminError {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": { "code": self.code, "message": self.message } })),
        )
            .into_response()
    }
}

impl<E: Into<crate::RegistryError>> From<E> for AdminError {
    fn from(e: E) -> Self {
        let e: crate::RegistryError = e.into();
        tracing::error!(error = %e, "registry API request failed");
        AdminError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", e.to_string())
    }
}

type AResult<T> = Result<Json<T>, AdminError>;

pub(crate) fn router(reg: Registry) -> Router {
    Router::new()
        .route("/api/v1/registry/password", post(password))
        .route(
            "/api/v1/repositories",
            get(list_repositories).post(create_repository),
        )
        .route(
            "/api/v1/repositories/{*name}",
            get(get_repository)
                .delete(delete_repository)
                .patch(update_repository),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            reg.clone(),
            require_admin,
        ))
        .with_state(reg)
}

async fn require_admin(State(reg): State<Registry>, req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    match token {
        Some(t) if reg.inner.admin.is_admin_token(&t).await => next.run(req).await,
        _ => {
            let mut r = AdminError::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "missing or invalid API token; set SLIPWAY_TOKEN or run `slipway login --server URL --token-file DATA_DIR/admin.token`",
            )
            .into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            r
        }
    }
}

async fn password(
    State(reg): State<Registry>,
    body: Option<Json<PasswordRequest>>,
) -> AResult<PasswordResponse> {
    let req = body.map(|b| b.0).unwrap_or_default();
    let rights = if req.pull_only {
        Rights::Pull
    } else {
        Rights::Push
    };
    let (password, exp) = reg.issue_password(rights);
    Ok(Json(PasswordResponse {
        username: "slipway".into(),
        password,
        rights: rights.describe().into(),
        expires_at: exp as i64 * 1000,
    }))
}

fn check_name(name: &str) -> Result<(), AdminError> {
    validate_name(name).map_err(|m| AdminError::new(StatusCode::BAD_REQUEST, "NAME_INVALID", m))
}

fn no_repo(name: &str) -> AdminError {
    AdminError::new(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format!("repository {name} not found; `slipway repo ls` lists them"),
    )
}

pub(crate) async fn info(
    reg: &Registry,
    name: &str,
) -> Result<Option<RepositoryInfo>, crate::RegistryError> {
    let Some(r) = reg.inner.db.get_repo(name).await? else {
        return Ok(None);
    };
    let (tags, manifests) = reg.inner.db.repo_counts(name).await?;
    Ok(Some(RepositoryInfo {
        name: r.name,
        immutable: r.immutable,
        created_at: r.created_at,
        tags,
        manifests,
    }))
}

async fn create_repository(
    State(reg): State<Registry>,
    Json(req): Json<CreateRepository>,
) -> Result<(StatusCode, Json<RepositoryInfo>), AdminError> {
    check_name(&req.name)?;
    if !reg.inner.db.create_repo(&req.name, req.immutable).await? {
        return Err(AdminError::new(
            StatusCode::CONFLICT,
            "ALREADY_EXISTS",
            format!("repository {} already exists", req.name),
        ));
    }
    let i = info(&reg, &req.name)
        .await?
        .ok_or_else(|| no_repo(&req.name))?;
    Ok((StatusCode::CREATED, Json(i)))
}

async fn list_repositories(State(reg): State<Registry>) -> AResult<Vec<RepositoryInfo>> {
    let mut out = Vec::new();
    for r in reg.inner.db.list_repos(None, -1).await? {
        if let Some(i) = info(&reg, &r.name).await? {
            out.push(i);
        }
    }
    Ok(Json(out))
}

/// `GET .../NAME` or `GET .../NAME/images` (a name's last component is never `images`
/// for this purpose: the images listing wins).
async fn get_repository(State(reg): State<Registry>, Path(name): Path<String>) -> Response {
    let result = match name.strip_suffix("/images") {
        Some(repo) => images(&reg, repo).await.map(IntoResponse::into_response),
        None => {
            async {
                check_name(&name)?;
                let i = info(&reg, &name).await?.ok_or_else(|| no_repo(&name))?;
                Ok(Json(i).into_response())
            }
            .await
        }
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn update_repository(
    State(reg): State<Registry>,
    Path(name): Path<String>,
    Json(req): Json<UpdateRepository>,
) -> AResult<RepositoryInfo> {
    check_name(&name)?;
    if !reg.inner.db.set_immutable(&name, req.immutable).await? {
        return Err(no_repo(&name));
    }
    Ok(Json(
        info(&reg, &name).await?.ok_or_else(|| no_repo(&name))?,
    ))
}

async fn delete_repository(
    State(reg): State<Registry>,
    Path(name): Path<String>,
    Query(q): Query<DeleteQuery>,
) -> AResult<DeleteResponse> {
    check_name(&name)?;
    let i = info(&reg, &name).await?.ok_or_else(|| no_repo(&name))?;
    if (i.tags > 0 || i.manifests > 0) && !q.force {
        return Err(AdminError::new(
            StatusCode::CONFLICT,
            "NOT_EMPTY",
            format!(
                "repository {name} holds {} image(s) and {} tag(s); delete it with --force",
                i.manifests, i.tags
            ),
        ));
    }
    if let Some(uploads) = reg.inner.db.delete_repo(&name).await? {
        for u in uploads {
            reg.inner.blobs.remove_upload(&u).await;
            reg.forget_upload(&u);
        }
    }
    tracing::info!(repository = %name, "deleted repository");
    Ok(Json(DeleteResponse {
        name,
        deleted: true,
    }))
}

fn platform_of(v: &Value) -> Option<String> {
    let os = v.get("os")?.as_str()?;
    let arch = v.get("architecture")?.as_str()?;
    if os == "unknown" {
        return None;
    }
    Some(match v.get("variant").and_then(Value::as_str) {
        Some(var) if !var.is_empty() => format!("{os}/{arch}/{var}"),
        _ => format!("{os}/{arch}"),
    })
}

async fn read_json(reg: &Registry, digest: &str) -> Option<Value> {
    let d = Digest::parse(digest).ok()?;
    let bytes = reg.inner.blobs.read_small(&d, 1 << 20).await.ok()?;
    serde_json::from_slice(&bytes).ok()
}

async fn images(reg: &Registry, name: &str) -> AResult<Vec<ImageInfo>> {
    check_name(name)?;
    if reg.inner.db.get_repo(name).await?.is_none() {
        return Err(no_repo(name));
    }
    Ok(Json(image_list(reg, name).await?))
}

/// The images of an existing repository, newest first.
pub(crate) async fn image_list(
    reg: &Registry,
    name: &str,
) -> Result<Vec<ImageInfo>, crate::RegistryError> {
    let all = reg.inner.db.manifests_with_tags(name).await?;
    // Sizes and children of every manifest, then the top-level ones (not an index's child,
    // or tagged) are the images.
    let mut own: HashMap<String, (i64, Vec<String>)> = HashMap::new();
    let mut children: HashSet<String> = HashSet::new();
    for (m, _) in &all {
        let mut size = m.size;
        let mut kids = Vec::new();
        for (child, kind, csize) in reg.inner.db.manifest_refs(name, &m.digest).await? {
            if kind == "manifest" {
                children.insert(child.clone());
                kids.push(child);
            } else {
                size += csize.unwrap_or(0);
            }
        }
        own.insert(m.digest.clone(), (size, kids));
    }
    let mut out = Vec::new();
    for (m, tags) in all {
        if children.contains(&m.digest) && tags.is_empty() {
            continue;
        }
        let (mut size, kids) = own.get(&m.digest).cloned().unwrap_or_default();
        let is_index = m.media_type == OCI_INDEX || m.media_type == DOCKER_LIST;
        for k in &kids {
            size += own.get(k).map_or(0, |(s, _)| *s);
        }
        let mut platforms = Vec::new();
        if let Some(doc) = read_json(reg, &m.digest).await {
            if is_index {
                for e in doc
                    .get("manifests")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(p) = e.get("platform").and_then(platform_of) {
                        platforms.push(p);
                    }
                }
            } else if let Some(cfg) = doc.pointer("/config/digest").and_then(Value::as_str)
                && let Some(c) = read_json(reg, cfg).await
                && let Some(p) = platform_of(&c)
            {
                platforms.push(p);
            }
        }
        out.push(ImageInfo {
            digest: m.digest,
            media_type: m.media_type,
            tags,
            size,
            pushed_at: m.pushed_at,
            platforms,
        });
    }
    Ok(out)
}
