//! `/api/v1/secrets`: set, list and delete secrets. Values go in, sealed, and never come
//! out: responses carry names and versions only, and no value is logged.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use slipway_store::SecretInfo;

use crate::ApiState;
use crate::types::ApiError;

pub use slipway_app::MAX_SECRET_BYTES;

/// `PUT /secrets/{name}` body.
#[derive(Serialize, Deserialize)]
pub struct SetSecret {
    pub value: String,
}

impl std::fmt::Debug for SetSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SetSecret { value: <redacted> }")
    }
}

/// What setting a secret returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecretVersion {
    pub name: String,
    pub version: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecretDeleted {
    pub name: String,
    pub deleted: bool,
}

/// `PUT /secrets/{name}`; `If-Match: N` sets it only if its current version is N (0: only
/// if it does not exist).
pub(crate) async fn set(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Json(body): Json<SetSecret>,
) -> Result<Json<SecretVersion>, ApiError> {
    let expect = crate::handlers::if_match(&headers)?.map(|v| v as u32);
    let version = state.app.set_secret(&name, &body.value, expect).await?;
    Ok(Json(SecretVersion { name, version }))
}

pub(crate) async fn list(State(state): State<ApiState>) -> Result<Json<Vec<SecretInfo>>, ApiError> {
    Ok(Json(state.app.store().list_secrets().await?))
}

pub(crate) async fn delete(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<SecretDeleted>, ApiError> {
    let deleted = state.app.delete_secret(&name).await?;
    Ok(Json(SecretDeleted { name, deleted }))
}
