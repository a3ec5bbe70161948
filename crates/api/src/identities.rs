//! Identities and the audit log over the native API:
//!
//! | route | what |
//! | --- | --- |
//! | `POST /api/v1/tokens` `{"name", "role", "apps", "envs"}` | a new identity; its token is in this answer only |
//! | `GET /api/v1/tokens` | identities (never a token) |
//! | `DELETE /api/v1/tokens/NAME` | revoke it, its access keys and every credential issued to it |
//! | `GET /api/v1/audit?since=MS&identity=NAME&after=SEQ&limit=N` | the audit log, oldest first |
//! | `GET /api/v1/whoami` | the calling identity |

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use slipway_core::access::{Identity, Role};
use slipway_store::{AuditEntry, IdentityRecord};

use crate::ApiState;
use crate::types::ApiError;

type ApiResult<T> = Result<Json<T>, ApiError>;

/// `POST /api/v1/tokens`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateToken {
    pub name: String,
    pub role: String,
    #[serde(default)]
    pub apps: Vec<String>,
    #[serde(default)]
    pub envs: Vec<String>,
}

/// An identity as listed (never its token).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenInfo {
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub apps: Vec<String>,
    #[serde(default)]
    pub envs: Vec<String>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// The answer to a create: the only time the token is shown.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenCreated {
    #[serde(flatten)]
    pub info: TokenInfo,
    pub token: String,
}

fn info(r: IdentityRecord) -> TokenInfo {
    TokenInfo {
        name: r.identity.name,
        role: r.identity.role,
        apps: r.identity.apps,
        envs: r.identity.envs,
        created_at: r.created_at,
        revoked_at: r.revoked_at,
    }
}

pub(crate) async fn create(
    State(state): State<ApiState>,
    Json(req): Json<CreateToken>,
) -> Result<(StatusCode, Json<TokenCreated>), ApiError> {
    let role = Role::parse(&req.role).ok_or_else(|| {
        ApiError::bad_request(format!(
            "role {:?} is not one of admin, deployer, reader",
            req.role
        ))
    })?;
    let made = state
        .app
        .create_identity(&req.name, role, req.apps, req.envs)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(TokenCreated {
            info: info(made.record),
            token: made.token,
        }),
    ))
}

pub(crate) async fn list(State(state): State<ApiState>) -> ApiResult<Vec<TokenInfo>> {
    Ok(Json(
        state
            .app
            .list_identities()
            .await?
            .into_iter()
            .map(info)
            .collect(),
    ))
}

pub(crate) async fn revoke(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> ApiResult<TokenInfo> {
    Ok(Json(info(state.app.revoke_identity(&name).await?)))
}

#[derive(Debug, Deserialize)]
pub(crate) struct AuditQuery {
    #[serde(default)]
    since: i64,
    #[serde(default)]
    after: i64,
    identity: Option<String>,
    limit: Option<u32>,
}

/// Most entries of one page of the audit log.
const AUDIT_PAGE: u32 = 1000;

pub(crate) async fn audit_log(
    State(state): State<ApiState>,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Vec<AuditEntry>> {
    let limit = q.limit.unwrap_or(AUDIT_PAGE).clamp(1, AUDIT_PAGE);
    Ok(Json(
        state
            .app
            .store()
            .list_audit(q.after, q.since, q.identity.as_deref(), limit)
            .await?,
    ))
}

pub(crate) async fn whoami(axum::Extension(who): axum::Extension<Identity>) -> Json<Identity> {
    Json(who)
}
