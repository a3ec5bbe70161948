//! The registry's part of Slipway's native API, under `/api/v1` (behind the native API's
//! gate, which checks who may call what):
//!
//! | route | what |
//! | --- | --- |
//! | `POST /api/v1/registry/password` `{"pull_only": bool}` | a fresh 12-hour registry password of the caller (pull only for a reader) |
//! | `POST /api/v1/repositories` `{"name", "immutable"}` | create a repository |
//! | `GET /api/v1/repositories` | list repositories |
//! | `GET /api/v1/repositories/NAME` | one repository |
//! | `PATCH /api/v1/repositories/NAME` `{"immutable": bool}` | switch tag mutability |
//! | `DELETE /api/v1/repositories/NAME[?force=true]` | delete (refused when not empty unless forced) |
//! | `GET /api/v1/repositories/NAME/images` | images: tags, digest, size, pushed at, platforms |
//! | `PUT /api/v1/repositories/NAME/lifecycle-policy` (ECR policy JSON) | set (validated) |
//! | `GET / DELETE /api/v1/repositories/NAME/lifecycle-policy` | get / remove the policy |
//! | `POST /api/v1/repositories/NAME/lifecycle-policy/preview` | what a run would expire |
//! | `POST /api/v1/repositories/NAME/lifecycle-policy/run` | apply the policy now |
//! | `POST /api/v1/registry/gc` `{"dry_run": bool}` | garbage collection now |
//!
//! Errors use the native API's body, `{"error": {"code", "message"}}`.

use std::collections::{HashMap, HashSet};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use slipway_core::access::Identity;

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
    /// The repository record's version (bumped by every change of its settings).
    #[serde(default)]
    pub version: i64,
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
        .route("/api/v1/registry/gc", post(gc))
        .route("/api/v1/registry/ca", get(ca))
        .route(
            "/api/v1/repositories",
            get(list_repositories).post(create_repository),
        )
        .route(
            "/api/v1/repositories/{*name}",
            get(get_repository)
                .delete(delete_repository)
                .patch(update_repository)
                .put(put_policy)
                .post(post_repository),
        )
        .with_state(reg)
}

async fn password(
    State(reg): State<Registry>,
    axum::Extension(who): axum::Extension<Identity>,
    body: Option<Json<PasswordRequest>>,
) -> AResult<PasswordResponse> {
    let req = body.map(|b| b.0).unwrap_or_default();
    let rights = if req.pull_only || !who.role.meets(slipway_core::access::Need::Deploy) {
        Rights::Pull
    } else {
        Rights::Push
    };
    let (password, exp) = reg.issue_password(rights, &who.name);
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
        version: r.version,
    }))
}

async fn create_repository(
    State(reg): State<Registry>,
    axum::Extension(who): axum::Extension<Identity>,
    Json(req): Json<CreateRepository>,
) -> Result<(StatusCode, Json<RepositoryInfo>), AdminError> {
    check_name(&req.name)?;
    who.may_change_repo(&req.name)
        .map_err(|d| AdminError::new(StatusCode::FORBIDDEN, "FORBIDDEN", d.to_string()))?;
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
    Ok(Json(reg.repositories().await?))
}

/// `GET .../NAME` or `GET .../NAME/images` (a name's last component is never `images`
/// for this purpose: the images listing wins).
async fn get_repository(State(reg): State<Registry>, Path(name): Path<String>) -> Response {
    if let Some(repo) = name.strip_suffix("/lifecycle-policy") {
        return get_policy(&reg, repo)
            .await
            .unwrap_or_else(IntoResponse::into_response);
    }
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
) -> Response {
    if let Some(repo) = name.strip_suffix("/lifecycle-policy") {
        return delete_policy(&reg, repo)
            .await
            .unwrap_or_else(IntoResponse::into_response);
    }
    delete_repo(&reg, name, q)
        .await
        .map_or_else(IntoResponse::into_response, IntoResponse::into_response)
}

async fn delete_repo(reg: &Registry, name: String, q: DeleteQuery) -> AResult<DeleteResponse> {
    check_name(&name)?;
    let i = info(reg, &name).await?.ok_or_else(|| no_repo(&name))?;
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

/// `POST /api/v1/registry/gc`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GcRequest {
    #[serde(default)]
    pub dry_run: bool,
}

async fn gc(
    State(reg): State<Registry>,
    body: Option<Json<GcRequest>>,
) -> AResult<crate::gc::GcReport> {
    let req = body.map(|b| b.0).unwrap_or_default();
    Ok(Json(reg.gc(req.dry_run).await?))
}

/// A repository's lifecycle policy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyResponse {
    pub repository: String,
    /// The policy's JSON text as stored.
    pub policy: Option<String>,
}

fn policy_not_set(name: &str) -> AdminError {
    AdminError::new(
        StatusCode::NOT_FOUND,
        "LIFECYCLE_POLICY_NOT_FOUND",
        format!(
            "repository {name} has no lifecycle policy; `slipway repo policy set {name} FILE` sets one"
        ),
    )
}

async fn get_policy(reg: &Registry, name: &str) -> Result<Response, AdminError> {
    check_name(name)?;
    if reg.inner.db.get_repo(name).await?.is_none() {
        return Err(no_repo(name));
    }
    let policy = reg.lifecycle_policy(name).await?;
    if policy.is_none() {
        return Err(policy_not_set(name));
    }
    Ok(Json(PolicyResponse {
        repository: name.to_owned(),
        policy,
    })
    .into_response())
}

async fn delete_policy(reg: &Registry, name: &str) -> Result<Response, AdminError> {
    check_name(name)?;
    if reg.lifecycle_policy(name).await?.is_none() {
        return Err(policy_not_set(name));
    }
    reg.set_lifecycle_policy(name, None)
        .await?
        .map_err(|e| AdminError::new(StatusCode::BAD_REQUEST, "INVALID_PARAMETER", e.0))?;
    Ok(Json(PolicyResponse {
        repository: name.to_owned(),
        policy: None,
    })
    .into_response())
}

/// `PUT .../NAME/lifecycle-policy` with the policy's JSON text as the body.
async fn put_policy(
    State(reg): State<Registry>,
    Path(name): Path<String>,
    body: Bytes,
) -> AResult<PolicyResponse> {
    let Some(repo) = name.strip_suffix("/lifecycle-policy") else {
        return Err(AdminError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "PUT is only supported on .../lifecycle-policy",
        ));
    };
    check_name(repo)?;
    let text = std::str::from_utf8(&body).map_err(|_| {
        AdminError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER",
            "the policy is not UTF-8",
        )
    })?;
    match reg.set_lifecycle_policy(repo, Some(text)).await? {
        Ok(true) => Ok(Json(PolicyResponse {
            repository: repo.to_owned(),
            policy: Some(text.to_owned()),
        })),
        Ok(false) => Err(no_repo(repo)),
        Err(e) => Err(AdminError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER",
            format!("Lifecycle policy validation failure: {}", e.0),
        )),
    }
}

/// `POST .../NAME/lifecycle-policy/preview` and `.../run`.
async fn post_repository(State(reg): State<Registry>, Path(name): Path<String>) -> Response {
    let (repo, dry_run) = if let Some(r) = name.strip_suffix("/lifecycle-policy/preview") {
        (r, true)
    } else if let Some(r) = name.strip_suffix("/lifecycle-policy/run") {
        (r, false)
    } else {
        return AdminError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "POST is only supported on .../lifecycle-policy/preview and .../run",
        )
        .into_response();
    };
    let r: Result<Response, AdminError> = async {
        check_name(repo)?;
        if reg.inner.db.get_repo(repo).await?.is_none() {
            return Err(no_repo(repo));
        }
        let report = reg
            .apply_lifecycle(repo, dry_run, crate::db::now_ms())
            .await?
            .ok_or_else(|| policy_not_set(repo))?;
        Ok(Json(report).into_response())
    }
    .await;
    r.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /api/v1/registry/ca`: the private CA that issued the server's certificate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaResponse {
    /// PEM.
    pub certificate: String,
    /// How to make Docker trust it.
    pub instruction: String,
}

async fn ca(State(reg): State<Registry>) -> AResult<CaResponse> {
    let Some(ca) = &reg.inner.ca else {
        return Err(AdminError::new(
            StatusCode::NOT_FOUND,
            "NO_CA",
            "this server has no private CA: it serves plain HTTP, or TLS with --tls-cert/--tls-key certificates; start it with --tls-auto for a generated CA",
        ));
    };
    let host = ca
        .hosts
        .first()
        .cloned()
        .unwrap_or_else(|| "HOST:PORT".into());
    Ok(Json(CaResponse {
        certificate: ca.certificate.clone(),
        instruction: format!(
            "# trust it in Docker on each client host: sudo mkdir -p /etc/docker/certs.d/{host} && slipway registry ca | sudo tee /etc/docker/certs.d/{host}/ca.crt"
        ),
    }))
}
