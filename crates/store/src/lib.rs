//! Slipway's state store.
//!
//! [`Store`] is the interface the controller and the API use; [`SqliteStore`] implements it
//! on an embedded SQLite database (the default, one file in the data directory). A PostgreSQL
//! implementation for several servers sharing state fills the same trait. The store holds
//! desired state and history only: what is running is always read from the engine.
//!
//! [`SqliteStore`] answers the reads pollers repeat (service views, task definitions, meta
//! values) from read caches that every relevant write invalidates (`cache`), so a
//! `DescribeServices` loop costs no database reads while nothing changes.
//!
//! This crate may call the database and nothing else.

mod cache;
mod sqlite;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use slipway_core::model::{
    ContainerSpec, Deployment, DeploymentConfig, ServiceEvent, ServiceKey, ServiceKind, Task,
    TaskDefinition, TaskHealth, TaskStatus,
};

pub use sqlite::SqliteStore;

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored record is corrupt: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("{0} not found")]
    NotFound(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A service's desired state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub key: ServiceKey,
    pub kind: ServiceKind,
    pub desired_count: u32,
    pub config: DeploymentConfig,
    /// The task definition revision of the newest deployment.
    pub revision: u32,
    /// `slipway delete` was asked: stop every task, then forget the service.
    pub deleting: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A new deployment to record atomically with its task definition and service update.
#[derive(Debug, Clone)]
pub struct NewDeployment {
    pub id: String,
    pub key: ServiceKey,
    pub kind: ServiceKind,
    pub desired_count: u32,
    pub config: DeploymentConfig,
    /// Register this container as a new revision, or reuse an existing revision.
    pub revision: RevisionChoice,
    pub rollback_of: Option<String>,
    pub now: i64,
}

/// An access key of the AWS-compatible API (SigV4). The secret is stored as is: SigV4
/// verification re-signs each request with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKey {
    pub id: String,
    pub secret: String,
    pub name: Option<String>,
    /// Read-only keys may only call operations that change nothing.
    pub read_only: bool,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// What may be shown of a secret: never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretInfo {
    pub name: String,
    /// The current version.
    pub version: u32,
    /// How many versions are kept (old ones stay for rollbacks).
    pub versions: u32,
    pub updated_at: i64,
}

/// What describing a service shows of it, read for several services at once
/// ([`Store::service_views`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceView {
    pub record: ServiceRecord,
    /// Newest first.
    pub deployments: Vec<Deployment>,
    /// Tasks that are not stopped, counted by what describing them needs.
    pub tasks: Vec<TaskCount>,
    /// Newest first.
    pub events: Vec<ServiceEvent>,
}

/// How many live tasks of a service share a deployment, revision, status and health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskCount {
    pub deployment_id: String,
    pub revision: u32,
    pub last_status: TaskStatus,
    pub health: TaskHealth,
    pub desired_running: bool,
    pub count: u32,
}

#[derive(Debug, Clone)]
pub enum RevisionChoice {
    Register(Box<ContainerSpec>),
    Existing(u32),
}

/// The persistent state of Slipway.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn get_meta(&self, key: &str) -> Result<Option<String>>;
    async fn set_meta(&self, key: &str, value: &str) -> Result<()>;

    async fn get_service(&self, key: &ServiceKey) -> Result<Option<ServiceRecord>>;
    /// Services of one app (all apps when `None`), sorted by key.
    async fn list_services(&self, app: Option<&str>) -> Result<Vec<ServiceRecord>>;
    async fn put_service(&self, service: &ServiceRecord) -> Result<()>;
    /// Forgets a service with its deployments, tasks and events (task definitions are kept).
    async fn remove_service(&self, key: &ServiceKey) -> Result<()>;

    async fn get_task_definition(
        &self,
        family: &str,
        revision: u32,
    ) -> Result<Option<TaskDefinition>>;
    async fn latest_task_definition(&self, family: &str) -> Result<Option<TaskDefinition>>;
    /// Registers the next revision of `family` (`family`, `revision` and `created_at` of
    /// `td` are filled in) and returns it.
    async fn register_task_definition(&self, td: TaskDefinition) -> Result<TaskDefinition>;
    /// Replaces a registered revision (deregistration).
    async fn put_task_definition(&self, td: &TaskDefinition) -> Result<()>;
    /// Several revisions at once, by `(family, revision)`; unknown ones are left out.
    async fn get_task_definitions(&self, ids: &[(String, u32)]) -> Result<Vec<TaskDefinition>>;
    /// Every task definition revision, by family and revision.
    async fn list_task_definitions(&self) -> Result<Vec<TaskDefinition>>;

    async fn put_access_key(&self, key: &AccessKey) -> Result<()>;
    async fn get_access_key(&self, id: &str) -> Result<Option<AccessKey>>;
    /// Access keys, oldest first.
    async fn list_access_keys(&self) -> Result<Vec<AccessKey>>;

    /// Stores a new version of a secret (already sealed by the caller); returns its version.
    /// A deleted secret set again continues its version numbers.
    async fn put_secret(&self, name: &str, sealed: &[u8], now: i64) -> Result<u32>;
    /// One version of a secret, sealed; `None` for the current version. Versions of a
    /// deleted secret stay readable so running releases keep working until replaced.
    async fn get_secret(&self, name: &str, version: Option<u32>) -> Result<Option<(u32, Vec<u8>)>>;
    /// The current version of a secret that is not deleted.
    async fn current_secret_version(&self, name: &str) -> Result<Option<u32>>;
    async fn list_secrets(&self) -> Result<Vec<SecretInfo>>;
    /// Marks a secret deleted (new deploys cannot use it). Returns false when there was none.
    async fn delete_secret(&self, name: &str, now: i64) -> Result<bool>;

    /// Records a deployment in one transaction: registers the task definition revision when
    /// asked, updates the service, marks older in-progress deployments as superseded (FAILED)
    /// and, for a rollback, marks the failed deployment ROLLED_BACK.
    async fn create_deployment(&self, new: NewDeployment) -> Result<Deployment>;
    async fn get_deployment(&self, id: &str) -> Result<Option<Deployment>>;
    /// Deployments of a service, newest first.
    async fn list_deployments(&self, key: &ServiceKey, limit: u32) -> Result<Vec<Deployment>>;
    /// Some services of one app environment (by name, unknown ones left out) with their
    /// newest `deployments` deployments, live task counts and newest `events` events, in a
    /// fixed number of queries whatever the number of services.
    async fn service_views(
        &self,
        app: &str,
        env: &str,
        names: &[String],
        deployments: u32,
        events: u32,
    ) -> Result<Vec<ServiceView>>;
    /// Deployments that may still matter to the planner (in progress, or the newest ones).
    async fn active_deployments(&self, key: &ServiceKey) -> Result<Vec<Deployment>>;
    async fn put_deployment(&self, d: &Deployment) -> Result<()>;

    async fn put_task(&self, task: &Task) -> Result<()>;
    async fn get_task(&self, id: &str) -> Result<Option<Task>>;
    /// Tasks of a service, newest first; stopped ones only when asked.
    async fn list_tasks(&self, key: &ServiceKey, include_stopped: bool) -> Result<Vec<Task>>;
    /// Standalone tasks (ECS `RunTask`) of every app environment that are not stopped.
    async fn live_standalone_tasks(&self) -> Result<Vec<Task>>;
    /// Drops stopped tasks that stopped before `before`, keeping the newest `keep` per service.
    async fn prune_stopped_tasks(&self, before: i64, keep: u32) -> Result<u64>;

    /// Adds an event and trims the service's list to [`slipway_core::model::MAX_EVENTS`].
    async fn add_event(&self, key: &ServiceKey, now: i64, message: &str) -> Result<()>;
    /// Events of a service, newest first.
    async fn list_events(&self, key: &ServiceKey, limit: u32) -> Result<Vec<ServiceEvent>>;
}
