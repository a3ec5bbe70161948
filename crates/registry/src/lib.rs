//! Slipway's built-in OCI registry (the ECR part): the distribution API under `/v2/`, the
//! Docker token service, and the repository endpoints of the native API.
//!
//! * **Storage.** Blobs (layers, configs and manifests) live once per digest under
//!   `DATA_DIR/registry/blobs/<alg>/<xx>/<hex>`, written to a temp file, fsynced and renamed
//!   into place; metadata (repositories, blob links, manifests, their references, tags,
//!   upload sessions) lives in the registry's **own SQLite database**,
//!   `DATA_DIR/registry/registry.db`, with migrations in `crates/registry/migrations/`. It is
//!   kept apart from the control plane's store so the two evolve independently. A row is
//!   written only after its bytes are durable, so metadata never points at missing bytes.
//! * **Uploads** are files under `DATA_DIR/registry/uploads/` whose durable length is
//!   recorded after each chunk, so an upload resumes after a server restart
//!   (`GET` on the upload returns `Range`). Bodies are streamed, never buffered whole.
//! * **Repositories** are created by `POST /api/v1/repositories` (optionally immutable) or,
//!   mutable, by the first push to a new name. In an immutable repository a tag never moves
//!   to another digest (`TAG_INVALID`); pushing the same digest again succeeds.
//! * **Auth** follows the Docker token protocol, see [`auth`].
//!
//! Not yet here: lifecycle policies, garbage collection (deleted manifests, blobs and
//! repositories leave their files on disk until GC exists), TLS.

pub mod admin;
pub mod auth;
mod db;
mod error;
pub mod names;
mod repos;
mod routes;
mod storage;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;

pub use auth::{AdminCheck, Rights};
pub use error::{Code, OciError, RegistryError};

use crate::db::Db;
use crate::names::Hasher;
use crate::storage::BlobStore;

/// Largest manifest accepted (bigger ones get 413 `MANIFEST_INVALID`).
pub const DEFAULT_MAX_MANIFEST_BYTES: usize = 4 << 20;

/// How the registry is set up.
pub struct RegistryConfig {
    /// Where blobs, uploads, the database and the signing key live (`DATA_DIR/registry`).
    pub dir: PathBuf,
    /// The token service name (`service=` of the challenge, `aud` of tokens).
    pub service: String,
    /// Accepts the server's admin token as a password with full rights.
    pub admin: Arc<dyn AdminCheck>,
    pub max_manifest_bytes: usize,
    /// Upload sessions untouched for this long are dropped (checked at start and hourly).
    pub upload_ttl: std::time::Duration,
}

impl RegistryConfig {
    pub fn new(dir: PathBuf, admin: Arc<dyn AdminCheck>) -> Self {
        RegistryConfig {
            dir,
            service: "slipway".into(),
            admin,
            max_manifest_bytes: DEFAULT_MAX_MANIFEST_BYTES,
            upload_ttl: std::time::Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Incremental SHA-256 of an upload: (bytes hashed, state). Lost on restart, when the
/// upload is hashed again from disk at the end.
type UploadCache = Option<(u64, Hasher)>;

pub(crate) struct Inner {
    pub(crate) db: Db,
    pub(crate) blobs: BlobStore,
    pub(crate) keys: auth::Keys,
    pub(crate) service: String,
    pub(crate) admin: Arc<dyn AdminCheck>,
    pub(crate) max_manifest_bytes: usize,
    upload_ttl: std::time::Duration,
    uploads: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<UploadCache>>>>,
}

/// The registry: cheap to clone, shared by its routers.
#[derive(Clone)]
pub struct Registry {
    pub(crate) inner: Arc<Inner>,
}

impl Registry {
    /// Opens (creating on first use) the registry's storage, database and signing key.
    pub async fn open(cfg: RegistryConfig) -> Result<Self, RegistryError> {
        std::fs::create_dir_all(&cfg.dir)?;
        let blobs = BlobStore::open(&cfg.dir)?;
        let db = Db::open(&cfg.dir.join("registry.db")).await?;
        let keys = auth::Keys::load_or_create(&cfg.dir.join("signing.key"))?;
        let reg = Registry {
            inner: Arc::new(Inner {
                db,
                blobs,
                keys,
                service: cfg.service,
                admin: cfg.admin,
                max_manifest_bytes: cfg.max_manifest_bytes,
                upload_ttl: cfg.upload_ttl,
                uploads: std::sync::Mutex::new(HashMap::new()),
            }),
        };
        reg.purge_stale_uploads().await?;
        Ok(reg)
    }

    /// Runs the hourly purge of abandoned uploads until `stop` turns true.
    pub fn spawn_janitor(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let reg = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if let Err(e) = reg.purge_stale_uploads().await {
                            tracing::warn!(error = %e, "purging stale uploads failed");
                        }
                    }
                    _ = stop.changed() => break,
                }
            }
        });
    }

    async fn purge_stale_uploads(&self) -> Result<(), RegistryError> {
        let ttl_ms = i64::try_from(self.inner.upload_ttl.as_millis()).unwrap_or(i64::MAX);
        let before = db::now_ms().saturating_sub(ttl_ms);
        for uuid in self.inner.db.stale_uploads(before).await? {
            self.inner.db.delete_upload(&uuid).await?;
            self.inner.blobs.remove_upload(&uuid).await;
            self.forget_upload(&uuid);
            tracing::info!(uuid, "dropped an abandoned upload");
        }
        Ok(())
    }

    /// The distribution API: `/v2/`, `/v2/token` and everything under `/v2/`.
    pub fn router(&self) -> Router {
        routes::router(self.clone())
    }

    /// The registry's part of the native API (`/api/v1/registry/...`,
    /// `/api/v1/repositories...`), authenticated with the admin token.
    pub fn admin_router(&self) -> Router {
        admin::router(self.clone())
    }

    /// A fresh registry password (see [`auth`]); returns it and its expiry (unix seconds).
    pub fn issue_password(&self, rights: Rights) -> (String, u64) {
        self.inner
            .keys
            .issue_password(rights, auth::PASSWORD_TTL_SECS)
    }

    pub(crate) fn upload_lock(&self, uuid: &str) -> Arc<tokio::sync::Mutex<UploadCache>> {
        let mut map = self.inner.uploads.lock().expect("upload map lock");
        map.entry(uuid.to_owned())
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(None)))
            .clone()
    }

    pub(crate) fn forget_upload(&self, uuid: &str) {
        self.inner
            .uploads
            .lock()
            .expect("upload map lock")
            .remove(uuid);
    }
}
