//! `/api/v1/secrets`: set, list and delete secrets. Values go in, sealed, and never come
//! out: responses carry names and versions only, and no value is logged.
//!
//! May call the store and the controller's secret box.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use slipway_controller::now_ms;
use slipway_store::SecretInfo;

use crate::ApiState;
use crate::types::ApiError;

/// Largest secret value accepted (environment variables are not meant for bulk data).
pub const MAX_SECRET_BYTES: usize = 64 * 1024;

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

fn check_name(name: &str) -> Result<(), ApiError> {
    slipway_core::manifest::check_secret_name(name).map_err(ApiError::bad_request)
}

pub(crate) async fn set(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    Json(body): Json<SetSecret>,
) -> Result<Json<SecretVersion>, ApiError> {
    check_name(&name)?;
    if body.value.is_empty() {
        return Err(ApiError::bad_request(format!(
            "secret {name:?}: the value is empty"
        )));
    }
    if body.value.len() > MAX_SECRET_BYTES || body.value.contains('\0') {
        return Err(ApiError::bad_request(format!(
            "secret {name:?}: a value is text of at most {MAX_SECRET_BYTES} bytes without NUL characters"
        )));
    }
    let sealed = state
        .controller
        .secrets()
        .seal(&name, body.value.as_bytes())
        .map_err(ApiError::internal)?;
    let version = state.store.put_secret(&name, &sealed, now_ms()).await?;
    tracing::info!(secret = %name, version, "secret set");
    Ok(Json(SecretVersion { name, version }))
}

pub(crate) async fn list(State(state): State<ApiState>) -> Result<Json<Vec<SecretInfo>>, ApiError> {
    Ok(Json(state.store.list_secrets().await?))
}

pub(crate) async fn delete(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<SecretDeleted>, ApiError> {
    check_name(&name)?;
    let deleted = state.store.delete_secret(&name, now_ms()).await?;
    if deleted {
        tracing::info!(secret = %name, "secret deleted");
    }
    Ok(Json(SecretDeleted { name, deleted }))
}
