//! Access keys of the AWS-compatible API, managed through the native API (behind its gate:
//! admin only): `POST /api/v1/access-keys` (`{"name", "read_only", "owner"}`: a key of the
//! identity `owner` acts with its role and scope and dies with it), `GET
//! /api/v1/access-keys`, `DELETE /api/v1/access-keys/ID` (revoke).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use slipway_store::AccessKey;

use crate::AwsState;

/// The caches are cleared when they grow past this many entries.
const CACHE_MAX: usize = 4096;

/// Access keys and SigV4 signing keys (`kSigning` per key, date, region and service) kept in
/// memory, so verifying a request reads no store and derives no key chain after the first
/// request of a key and scope.
#[derive(Debug, Default)]
pub struct KeyCache {
    inner: std::sync::Mutex<KeyCacheInner>,
}

#[derive(Debug, Default)]
struct KeyCacheInner {
    /// By id: the key and the store's change generation it was read at.
    keys: std::collections::HashMap<String, (AccessKey, u64)>,
    signing: std::collections::HashMap<(String, String, String, String), [u8; 32]>,
}

impl KeyCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, KeyCacheInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A key by id: from memory while nothing was written since it was read (by this
    /// server or, through the store's notices, another one: a revocation anywhere takes
    /// effect at once), else from the store (unknown ids are not remembered).
    pub(crate) async fn access_key(
        &self,
        app: &slipway_app::App,
        id: &str,
    ) -> Result<Option<AccessKey>, slipway_app::AppError> {
        let store = app.store();
        let generation = store.generation();
        if let Some((k, at)) = self.lock().keys.get(id)
            && *at == generation
        {
            return Ok(Some(k.clone()));
        }
        let mut found = store.get_access_key(id).await?;
        if let Some(k) = &mut found {
            // The secret is opened here and kept only in this cache.
            app.open_access_key(k)?;
        }
        let mut c = self.lock();
        match &found {
            Some(k) => {
                if c.keys.len() >= CACHE_MAX {
                    c.keys.clear();
                }
                c.keys.insert(id.to_owned(), (k.clone(), generation));
            }
            None => {
                c.keys.remove(id);
            }
        }
        Ok(found)
    }

    /// `kSigning` of a key for a credential scope.
    pub(crate) fn signing_key(
        &self,
        key: &AccessKey,
        date: &str,
        region: &str,
        service: &str,
    ) -> [u8; 32] {
        let k = (
            key.id.clone(),
            date.to_owned(),
            region.to_owned(),
            service.to_owned(),
        );
        if let Some(s) = self.lock().signing.get(&k) {
            return *s;
        }
        let derived = crate::sigv4::signing_key(&key.secret, date, region, service);
        let mut c = self.lock();
        if c.signing.len() >= CACHE_MAX {
            c.signing.clear();
        }
        c.signing.insert(k, derived);
        derived
    }

    /// Forgets everything about a key (it was revoked).
    pub(crate) fn forget(&self, id: &str) {
        let mut c = self.lock();
        c.keys.remove(id);
        c.signing.retain(|(k, ..), _| k != id);
    }
}

/// `POST /api/v1/access-keys`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CreateAccessKey {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub read_only: bool,
    /// The identity the key belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// The one answer that shows the secret (IAM's `AccessKey` shape).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessKeyCreated {
    #[serde(rename = "AccessKeyId")]
    pub access_key_id: String,
    #[serde(rename = "SecretAccessKey")]
    pub secret_access_key: String,
    #[serde(rename = "UserName", skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "ReadOnly")]
    pub read_only: bool,
    #[serde(rename = "Owner", default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(rename = "Status")]
    pub status: String,
}

/// A key as listed: never the secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessKeyInfo {
    pub id: String,
    pub name: Option<String>,
    pub read_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(serde_json::json!({ "error": { "code": code, "message": message.into() } })),
    )
        .into_response()
}

fn internal(e: impl std::fmt::Display) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", e.to_string())
}

fn app_error(e: slipway_app::AppError) -> Response {
    let status = match e.kind {
        slipway_app::ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        slipway_app::ErrorKind::NotFound => StatusCode::NOT_FOUND,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e.code, e.message)
}

pub(crate) async fn create(
    State(state): State<AwsState>,
    body: Option<Json<CreateAccessKey>>,
) -> Response {
    let req = body.map(|b| b.0).unwrap_or_default();
    let key = match state
        .app
        .create_access_key(req.name, req.read_only, req.owner)
        .await
    {
        Ok(k) => k,
        Err(e) => return app_error(e),
    };
    (
        StatusCode::CREATED,
        Json(AccessKeyCreated {
            access_key_id: key.id,
            secret_access_key: key.secret,
            name: key.name,
            read_only: key.read_only,
            owner: key.owner,
            status: "Active".into(),
        }),
    )
        .into_response()
}

pub(crate) async fn list(State(state): State<AwsState>) -> Response {
    match state.app.store().list_access_keys().await {
        Ok(keys) => Json(
            keys.into_iter()
                .map(|k| AccessKeyInfo {
                    id: k.id,
                    name: k.name,
                    read_only: k.read_only,
                    owner: k.owner,
                    created_at: k.created_at,
                    revoked_at: k.revoked_at,
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => internal(e),
    }
}

pub(crate) async fn revoke(State(state): State<AwsState>, Path(id): Path<String>) -> Response {
    let key = match state.app.revoke_access_key(&id).await {
        Ok(k) => k,
        Err(e) => return app_error(e),
    };
    state.keys.forget(&key.id);
    Json(AccessKeyInfo {
        id: key.id,
        name: key.name,
        read_only: key.read_only,
        owner: key.owner,
        created_at: key.created_at,
        revoked_at: key.revoked_at,
    })
    .into_response()
}
