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
//! * **Uploads** are files under `DATA_DIR/registry/uploads/`; what an upload holds is its
//!   file's length, so an upload resumes after a server restart (`GET` on the upload returns
//!   `Range`). Chunks are written in 1 MiB blocks without fsync; the one data fsync, the
//!   rename and the directory fsync happen when the upload is committed, after its digest
//!   is checked (which also catches an upload damaged by a crash). A request that fails
//!   appends nothing. Bodies are streamed, never buffered whole.
//! * **Repositories** are created by `POST /api/v1/repositories` (optionally immutable) or,
//!   mutable, by the first push to a new name. In an immutable repository a tag never moves
//!   to another digest (`TAG_INVALID`); pushing the same digest again succeeds.
//! * **Auth** follows the Docker token protocol, see [`auth`].
//!
//! * **Garbage collection** is online, see [`gc`]; **lifecycle policies** (ECR's JSON
//!   format) expire images by rule, see [`lifecycle`]. Both also run on a schedule.
//! * **Metrics.** It reports to the process' metrics (`slipway_metrics`) the blob bytes
//!   pushed and pulled, the manifests pushed and the bytes stored, and names each
//!   request's operation by its route template (never a repository or digest).

pub mod admin;
pub mod auth;
mod db;
mod error;
pub mod gc;
pub mod lifecycle;
pub mod names;
mod repos;
mod routes;
mod storage;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;

pub use auth::{AuditEvent, Identities, Rights};
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
    /// The server's identities: who a password belongs to, the audit log.
    pub ids: Arc<dyn Identities>,
    pub max_manifest_bytes: usize,
    /// Upload sessions untouched for this long are dropped (checked at start and hourly).
    pub upload_ttl: std::time::Duration,
    /// Unreferenced blobs younger than this (or used this recently) are never collected.
    pub gc_grace: std::time::Duration,
    /// How often garbage collection runs (`None`: only on demand).
    pub gc_interval: Option<std::time::Duration>,
    /// How often lifecycle policies are applied (`None`: only on demand).
    pub lifecycle_interval: Option<std::time::Duration>,
    /// What images running tasks and the last successful releases use (the safety rule of
    /// lifecycle policies).
    pub in_use: Option<Arc<dyn lifecycle::InUse>>,
    /// The private CA `slipway registry ca` prints, when the server made one.
    pub ca: Option<CaInfo>,
}

/// The server's private CA, as `GET /api/v1/registry/ca` shows it.
#[derive(Debug, Clone)]
pub struct CaInfo {
    /// PEM.
    pub certificate: String,
    /// `host:port` names clients reach the registry at (the first is shown in the hint).
    pub hosts: Vec<String>,
}

impl RegistryConfig {
    pub fn new(dir: PathBuf, ids: Arc<dyn Identities>) -> Self {
        RegistryConfig {
            dir,
            service: "slipway".into(),
            ids,
            max_manifest_bytes: DEFAULT_MAX_MANIFEST_BYTES,
            upload_ttl: std::time::Duration::from_secs(7 * 24 * 3600),
            gc_grace: std::time::Duration::from_secs(3600),
            gc_interval: Some(std::time::Duration::from_secs(3600)),
            lifecycle_interval: Some(std::time::Duration::from_secs(3600)),
            in_use: None,
            ca: None,
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
    pub(crate) ids: Arc<dyn Identities>,
    pub(crate) max_manifest_bytes: usize,
    upload_ttl: std::time::Duration,
    uploads: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<UploadCache>>>>,
    /// Held shared by writes that make a blob referenced, exclusively by the GC sweep.
    pub(crate) gc_lock: tokio::sync::RwLock<()>,
    /// Blobs used by recent requests (digest → unix ms), protected from GC for the grace.
    pub(crate) touched: std::sync::Mutex<HashMap<String, i64>>,
    pub(crate) gc_grace: std::time::Duration,
    gc_interval: Option<std::time::Duration>,
    lifecycle_interval: Option<std::time::Duration>,
    pub(crate) in_use: Option<Arc<dyn lifecycle::InUse>>,
    pub(crate) ca: Option<CaInfo>,
    /// Per repository: when its policy was last applied (unix ms) by this process.
    pub(crate) lifecycle_evaluated: std::sync::Mutex<HashMap<String, i64>>,
    /// Per repository: the last preview started (ECR's `StartLifecyclePolicyPreview`).
    pub(crate) lifecycle_previews: std::sync::Mutex<HashMap<String, lifecycle::Preview>>,
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
                ids: cfg.ids,
                max_manifest_bytes: cfg.max_manifest_bytes,
                upload_ttl: cfg.upload_ttl,
                uploads: std::sync::Mutex::new(HashMap::new()),
                gc_lock: tokio::sync::RwLock::new(()),
                touched: std::sync::Mutex::new(HashMap::new()),
                gc_grace: cfg.gc_grace,
                gc_interval: cfg.gc_interval,
                lifecycle_interval: cfg.lifecycle_interval,
                in_use: cfg.in_use,
                ca: cfg.ca,
                lifecycle_evaluated: std::sync::Mutex::new(HashMap::new()),
                lifecycle_previews: std::sync::Mutex::new(HashMap::new()),
            }),
        };
        reg.purge_stale_uploads().await?;
        reg.report_storage().await;
        Ok(reg)
    }

    /// Tells the process' metrics how many bytes of blobs are stored now (after a change).
    pub(crate) async fn report_storage(&self) {
        match self.inner.db.stored_bytes().await {
            Ok(n) => slipway_metrics::global().set_registry_storage(n),
            Err(e) => tracing::warn!(error = %e, "cannot sum the registry's blob sizes"),
        }
    }

    /// The janitor's chores on their schedules (those switched off left out): the hourly
    /// purge of abandoned uploads, lifecycle policies and garbage collection. The server
    /// runs each with [`Registry::run_chore`] under its supervisor while it leads.
    pub fn chores(&self) -> Vec<(Chore, std::time::Duration)> {
        [
            (
                Chore::PurgeUploads,
                Some(std::time::Duration::from_secs(3600)),
            ),
            (Chore::Lifecycle, self.inner.lifecycle_interval),
            (Chore::Gc, self.inner.gc_interval),
        ]
        .into_iter()
        .filter_map(|(c, p)| p.map(|p| (c, p)))
        .collect()
    }

    /// Runs `chore` every `period` (first after one period) until `stop` turns true.
    pub async fn run_chore(
        &self,
        chore: Chore,
        period: std::time::Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            let result = match chore {
                Chore::PurgeUploads => self.purge_stale_uploads().await,
                Chore::Lifecycle => self.apply_lifecycle_all().await.map(drop),
                Chore::Gc => self.gc(false).await.map(drop),
            };
            if let Err(e) = result {
                tracing::warn!(chore = chore.name(), error = %e, "registry chore failed");
            }
        }
    }

    async fn purge_stale_uploads(&self) -> Result<(), RegistryError> {
        let ttl_ms = i64::try_from(self.inner.upload_ttl.as_millis()).unwrap_or(i64::MAX);
        let before = db::now_ms().saturating_sub(ttl_ms);
        let cutoff = std::time::SystemTime::now()
            .checked_sub(self.inner.upload_ttl)
            .unwrap_or(std::time::UNIX_EPOCH);
        for uuid in self.inner.db.stale_uploads(before).await? {
            // A PATCH touches only the file, not the row.
            if self
                .inner
                .blobs
                .upload_modified(&uuid)
                .await
                .is_some_and(|m| m > cutoff)
            {
                continue;
            }
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
    /// `/api/v1/repositories...`); the server puts it behind the native API's gate, which
    /// authenticates and authorizes each call and leaves the caller's identity in the
    /// request's extensions.
    pub fn admin_router(&self) -> Router {
        admin::router(self.clone())
    }

    /// A fresh registry password of `identity` (see [`auth`]); returns it and its expiry
    /// (unix seconds).
    pub fn issue_password(&self, rights: Rights, identity: &str) -> (String, u64) {
        self.inner
            .keys
            .issue_password(rights, auth::PASSWORD_TTL_SECS, Some(identity))
    }

    /// A pull-only password living `ttl_secs`, for the engine's pulls of deployed images
    /// (internal credentials: hosts need no `docker login`).
    pub fn internal_pull_password(&self, ttl_secs: u64) -> String {
        self.inner
            .keys
            .issue_password(Rights::Pull, ttl_secs, None)
            .0
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

/// A periodic job of the registry's janitor (see [`Registry::chores`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chore {
    PurgeUploads,
    Lifecycle,
    Gc,
}

impl Chore {
    /// Its name as a supervised loop.
    pub fn name(self) -> &'static str {
        match self {
            Chore::PurgeUploads => "registry-uploads",
            Chore::Lifecycle => "registry-lifecycle",
            Chore::Gc => "registry-gc",
        }
    }
}
