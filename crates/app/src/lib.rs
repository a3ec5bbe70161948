//! Slipway's application layer: every use case that changes state, in one place.
//!
//! Deploy, diff, scale, rollback, restart, delete (a service or an app), run and stop tasks,
//! register and deregister task definitions, create, update and delete services and
//! clusters through the ECS model, secrets and access keys. The faces (the native API under
//! `/api/v1`, the ECS/ECR JSON API, and any face added later) translate requests into calls
//! here and results back; no business rule lives in a face.
//!
//! Every use case reads what it needs, decides, and commits its whole intent as one store
//! [`Batch`](slipway_store::Batch) (a deployment with its task definition, event and the
//! service's new revision; several services' deployments), compare-and-swapped on the
//! versions it read. When another writer got there first the use case re-reads and applies
//! its intent again ([`retry`]) — unless the caller named the version it expects, in which
//! case it gets [`ErrorKind::Conflict`] with what changed since that version. Committed
//! batches wake the controller through the store's notices (on whichever server leads); this
//! layer never calls the controller.
//!
//! This crate may call the store and an [`Engine`] (image resolution, logs, exec, networks).

mod access;
mod apps;
mod catalog;
mod deploy;
mod elb;
mod engine;
mod error;
mod hosts;
mod jobs;
mod pushes;
mod retry;
mod rollout;
mod services;
mod tasks;
#[cfg(feature = "testing")]
pub mod testing;

use std::sync::Arc;

use slipway_store::Store;
use slipway_store::secrets::SecretBox;

pub use access::{ADMIN_IDENTITY, ADMIN_TOKEN_META_KEY, NewIdentity, hash_token};
pub use apps::{AppDetail, AppSummary, EnvDetail, EnvSummary, RouteLine, ServiceLine};
pub use deploy::{DeployOutcome, DeployResult, DiffResult};
pub use elb::{ElbState, NewTargetGroup};
pub use engine::{Engine, LogStream};
pub use error::{AppError, ErrorKind, Result};
pub use hosts::{HostHello, HostStatus, JOIN_TOKEN_TTL_MS, Joined, Rebalance, host_id_of_engine};
pub use jobs::{JobRun, JobView};
pub use pushes::{MAX_PUSHES_LISTED, webhook_secret_name};
pub use rollout::RolloutControl;
pub use services::{
    ActionResult, ConfigPatch, DeleteAppResult, EcsServiceChange, LoadBalancing, MAX_COUNT,
};
pub use tasks::{ExecResult, LogsQuery, RunTasks};

/// How long `exec` waits for a command.
pub const EXEC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// The most output `exec` returns.
pub const EXEC_MAX_OUTPUT: usize = 1024 * 1024;
/// Largest secret value accepted (environment variables are not meant for bulk data).
pub const MAX_SECRET_BYTES: usize = 64 * 1024;

/// The application layer: cheap to clone, shared by every face.
#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    engine: Arc<dyn Engine>,
    secrets: SecretBox,
    cluster: String,
    /// Identity lookups (see [`access`]).
    identities: access::IdentityCache,
    /// One queue per service for the intents of this server (see [`App::queue`]).
    queues: std::sync::Mutex<
        std::collections::HashMap<
            slipway_core::model::ServiceKey,
            std::sync::Weak<tokio::sync::Mutex<()>>,
        >,
    >,
    /// Where the `resolve` spans of deployments go (see [`App::trace_to`]).
    traces: std::sync::OnceLock<slipway_otel::Exporter>,
}

impl App {
    pub fn new(
        store: Store,
        engine: Arc<dyn Engine>,
        secrets: SecretBox,
        cluster: impl Into<String>,
    ) -> Self {
        App {
            inner: Arc::new(Inner {
                store,
                engine,
                secrets,
                cluster: cluster.into(),
                identities: Default::default(),
                queues: Default::default(),
                traces: Default::default(),
            }),
        }
    }

    /// Sends the `resolve` span of each deployment this layer starts to `exporter` (the
    /// rest of a deployment's trace is the controller's).
    pub fn trace_to(&self, exporter: slipway_otel::Exporter) {
        let _ = self.inner.traces.set(exporter);
    }

    /// The store, for queries (reads are not use cases; writes go through this layer).
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn engine(&self) -> &dyn Engine {
        self.inner.engine.as_ref()
    }

    /// The id of this Slipway cluster (labels every container it owns).
    pub fn cluster(&self) -> &str {
        &self.inner.cluster
    }

    pub(crate) fn secrets(&self) -> &SecretBox {
        &self.inner.secrets
    }

    /// Takes the turn of this server's intents on `keys` (in key order, so two intents on
    /// overlapping services never wait for each other). Intents of one server on one
    /// service run one after the other, first come first served: compare-and-swap alone
    /// would let a stream of quick writes (scales) starve a slower intent (a deploy reads
    /// more before it commits) forever. Writers on other servers still race, and lose and
    /// re-apply as the crate documentation says.
    pub(crate) async fn queue(
        &self,
        keys: &[slipway_core::model::ServiceKey],
    ) -> Vec<tokio::sync::OwnedMutexGuard<()>> {
        let mut keys = keys.to_vec();
        keys.sort();
        keys.dedup();
        let mutexes: Vec<Arc<tokio::sync::Mutex<()>>> = {
            let mut q = self.inner.queues.lock().unwrap_or_else(|p| p.into_inner());
            q.retain(|_, w| w.strong_count() > 0);
            keys.into_iter()
                .map(|k| match q.get(&k).and_then(std::sync::Weak::upgrade) {
                    Some(m) => m,
                    None => {
                        let m = Arc::new(tokio::sync::Mutex::new(()));
                        q.insert(k, Arc::downgrade(&m));
                        m
                    }
                })
                .collect()
        };
        let mut guards = Vec::with_capacity(mutexes.len());
        for m in mutexes {
            guards.push(m.lock_owned().await);
        }
        guards
    }
}
