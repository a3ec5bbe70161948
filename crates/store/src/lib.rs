//! Slipway's state store: versioned records in SQLite (embedded, the default for one host) or
//! PostgreSQL (shared by several servers), behind one interface.
//!
//! **Versioned records.** Every record a writer reads and writes back (service, deployment,
//! task, task definition, cluster, access key) carries a `version`. A write is a
//! compare-and-swap on it inside one transaction: a record read at version 7 is written only
//! if it is still at 7 (it then becomes 8); a record with version 0 is new and is written
//! only if no such record exists. A writer that lost a race gets [`StoreError::Conflict`]
//! and nothing of its [`Batch`] is applied; it re-reads and re-applies its intent.
//! Secrets are versioned by their value versions; the same rule holds for them.
//!
//! **One transaction per intent.** A [`Batch`] is a list of [`Write`]s committed together: a
//! deployment with its task definition, the service's new revision and its event
//! ([`Write::Deploy`]), several services' deployments, a task with its service's event.
//!
//! **Notices.** A batch names the services whose controller should look again; every
//! server sharing the database learns of them ([`Store::subscribe`]): at once in this
//! process, through PostgreSQL `LISTEN/NOTIFY` in the others.
//!
//! **Read caches** answer the reads pollers repeat (service views, task definitions, meta
//! values) without the database while nothing changed. Every commit of this process, and
//! every notice of another server's commit, invalidates them (see [`cache`]).
//!
//! **Leadership.** Exactly one server runs the controller: the holder of a PostgreSQL
//! advisory lock; with SQLite, the one server of the data directory ([`Store::try_lead`]).
//!
//! Both databases run through sqlx's `Any` driver with one set of SQL statements (numbered
//! `$n` parameters, no JSON functions); each has its migrations, with the same meaning
//! (`migrations/sqlite`, `migrations/postgres`).
//!
//! This crate may call the database (and the file system for the secret key) and nothing
//! else. The store holds desired state and history only: what runs is read from engines.

pub mod audit;
mod cache;
mod db;
mod lease;
mod notify;
mod read;
pub mod secrets;
#[cfg(feature = "testing")]
pub mod testing;
mod write;

use serde::{Deserialize, Serialize};
use slipway_core::model::{
    ContainerSpec, Deployment, DeploymentConfig, ServiceEvent, ServiceKey, ServiceKind, TaskHealth,
    TaskStatus,
};

pub use audit::with_pending_audit;
pub use db::{Backend, Store, redacted};
pub use lease::ServerInfo;
pub use notify::Notice;

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
    #[error(transparent)]
    Conflict(#[from] Conflict),
    /// The database cannot be used by this server (newer schema, another cluster, bad URL).
    #[error("{0}")]
    Unusable(String),
}

impl StoreError {
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict(_))
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A write lost a race: the record was not at the version the writer read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{record} changed since it was read (expected version {expected}, found {found})")]
pub struct Conflict {
    /// What was written, e.g. `service shop/default/web`.
    pub record: String,
    /// The version the writer read (0: it expected no such record).
    pub expected: u64,
    /// The version found (0: there is no such record).
    pub found: u64,
}

/// Milliseconds since the Unix epoch: the time stamps of records.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A random lowercase hex id of `bytes` bytes: the ids of new records.
pub fn random_id(bytes: usize) -> String {
    use rand::RngCore;
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

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
    /// How its tasks are placed on the hosts.
    #[serde(
        default,
        skip_serializing_if = "slipway_core::placement::Placement::is_empty"
    )]
    pub placement: slipway_core::placement::Placement,
    pub created_at: i64,
    pub updated_at: i64,
    /// The record's version (0 before it is first written).
    #[serde(default)]
    pub version: u64,
}

/// A new deployment, recorded atomically ([`Write::Deploy`]) with its task definition (when
/// registered), the service's new state, the older deployments it supersedes and its event.
#[derive(Debug, Clone)]
pub struct NewDeployment {
    pub id: String,
    pub key: ServiceKey,
    pub kind: ServiceKind,
    pub desired_count: u32,
    pub config: DeploymentConfig,
    pub placement: slipway_core::placement::Placement,
    /// Register this container as a new revision, or reuse an existing revision.
    pub revision: RevisionChoice,
    /// Set by the circuit breaker: the failed deployment this one rolls back.
    pub rollback_of: Option<String>,
    pub now: i64,
    /// The version of the service record the writer read (0: a new service).
    pub service_version: u64,
    /// The service event recorded with it; `{revision}` is replaced by the revision number.
    pub event: Option<String>,
}

/// The revision a deployment runs.
#[derive(Debug, Clone)]
pub enum RevisionChoice {
    /// Register this container as the next revision of the service's family (`source` and
    /// `ecs` as in [`slipway_core::model::TaskDefinition`]).
    Register {
        container: Box<ContainerSpec>,
        source: Option<String>,
        ecs: Option<String>,
    },
    /// An existing revision of the service's family.
    Existing(u32),
}

/// An access key of the AWS-compatible API (SigV4). SigV4 verification re-signs each
/// request with the secret, so it must be recoverable: it is stored sealed with the secret
/// store's key (`sealed`, hex), bound to the key's id, and opened only in memory by the
/// application layer. `secret` holds the plaintext in memory only (and, in rows written
/// before sealing, in the database until the server seals them at start).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKey {
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<String>,
    pub name: Option<String>,
    /// Read-only keys may only call operations that change nothing.
    pub read_only: bool,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    /// The identity the key belongs to: it acts with that identity's role and scope and
    /// dies with it. `None`: a key of the admin (or a reader key, with `read_only`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default)]
    pub version: u64,
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKey")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("read_only", &self.read_only)
            .field("owner", &self.owner)
            .field("revoked_at", &self.revoked_at)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// A named identity: a token (only its SHA-256 is kept) with a role and a scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityRecord {
    #[serde(flatten)]
    pub identity: slipway_core::access::Identity,
    pub token_sha256: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    #[serde(default)]
    pub version: u64,
}

/// An ELBv2 object (load balancer, target group, listener or rule), keyed by the resource
/// part of its ARN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElbRecord {
    pub object: slipway_core::elb::ElbObject,
    #[serde(default)]
    pub version: u64,
}

/// One entry of the audit log: a mutating call on any face. Never a request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Its place in the log (filled in when read).
    #[serde(default)]
    pub seq: i64,
    /// Unix milliseconds.
    pub at: i64,
    pub identity: String,
    /// The client's address.
    pub source: String,
    /// `native`, `ecs`, `ecr`, `sts`, `registry`.
    pub face: String,
    pub operation: String,
    /// What it acted on: the request path, the ECS/ECR resource, the repository.
    pub target: String,
    /// The HTTP status it was answered with; 0 when recorded in the same transaction as the
    /// call's change (answered after it, with a success: see [`audit`]).
    pub status: u16,
    /// `ok` or `refused`/`failed` with the error's code.
    pub outcome: String,
}

/// A push event of a pipeline trigger: one updated ref of a `git push` to the built-in
/// remote, or one push webhook delivery. Recorded once per `(app, delivery)`
/// ([`Write::Push`]); the runner starts from these later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushRecord {
    pub id: String,
    pub app: String,
    /// `git` (the built-in remote), `github`, `gitea`, `forgejo` or `gitlab`.
    pub source: String,
    /// The delivery id: the webhook's (`X-GitHub-Delivery`, ...), or for the built-in
    /// remote `git:PUSH_ID:REF` (one per updated ref of one push).
    pub delivery: String,
    /// The full ref, e.g. `refs/heads/main`.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// The ref's commit before and after (40 zeros: created or deleted).
    pub before: String,
    pub after: String,
    /// Who pushed: the identity (built-in remote) or the provider's pusher name.
    pub pusher: String,
    /// Where the commit can be fetched from (a webhook's repository clone URL); `None` for
    /// the built-in remote (the commit is in the server's own repository).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// Paths changed by the push (`before..after`, or the payload's commits), sorted, at
    /// most [`MAX_PUSH_PATHS`].
    #[serde(default)]
    pub paths: Vec<String>,
    /// More paths changed than are listed (a filter on `paths` must then assume a match).
    #[serde(default)]
    pub paths_truncated: bool,
    /// Unix milliseconds.
    pub at: i64,
}

/// Most changed paths kept with a push event.
pub const MAX_PUSH_PATHS: usize = 3000;

/// A host of the cluster: one Docker engine, run by its agent (or by the server itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    pub id: String,
    pub name: String,
    /// The engine's id (one host per engine).
    pub engine: String,
    pub state: slipway_core::placement::HostState,
    /// `zone=a` and the like (placement constraints and spread fields use them).
    #[serde(default)]
    pub attributes: std::collections::BTreeMap<String, String>,
    /// CPU units (1024 per core) and MiB offered to tasks.
    pub cpu: u64,
    pub memory: u64,
    /// `os/arch`.
    pub platform: String,
    /// Where other hosts reach its published ports.
    pub address: String,
    /// SHA-256 (hex) of its agent's key; `None` for the server's own host.
    #[serde(default)]
    pub key_hash: Option<String>,
    pub created_at: i64,
    /// When its agent was last connected (ms).
    pub last_seen: i64,
    /// Why it is in its state (a drain, a lost heartbeat).
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub version: u64,
}

/// What the live tasks of a host reserve ([`Store::host_usage`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostUsage {
    /// CPU units and MiB reserved.
    pub cpu: u64,
    pub memory: u64,
    /// Live tasks there, of any kind.
    pub tasks: u32,
    /// Tasks of each service meant to stay there.
    pub services: std::collections::HashMap<ServiceKey, u32>,
}

/// An ECS cluster created through the ECS API (app environments are clusters too, without a
/// record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRecord {
    pub name: String,
    pub created_at: i64,
    #[serde(default)]
    pub version: u64,
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

impl ServiceView {
    /// Tasks wanted running that run.
    pub fn running(&self) -> u32 {
        self.tasks
            .iter()
            .filter(|t| t.desired_running && t.last_status == TaskStatus::Running)
            .map(|t| t.count)
            .sum()
    }

    /// Tasks wanted running that passed their health checks.
    pub fn healthy(&self) -> u32 {
        self.tasks
            .iter()
            .filter(|t| t.desired_running && t.health == TaskHealth::Healthy)
            .map(|t| t.count)
            .sum()
    }
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

/// One write of a [`Batch`]. Records are written if they are still at the version they
/// carry (0: only if there is no such record); see the crate documentation.
#[derive(Debug, Clone)]
pub enum Write {
    /// Creates or updates a service record.
    Service(ServiceRecord),
    /// Forgets a service with its deployments, tasks and events (task definitions are
    /// kept), if it is still at `version`.
    RemoveService {
        key: ServiceKey,
        version: u64,
    },
    /// Starts a deployment; its outcome is [`Outcome::Deployed`].
    Deploy(NewDeployment),
    /// Updates a deployment (it is created by [`Write::Deploy`] only).
    Deployment(Deployment),
    /// Creates (version 0) or updates a task.
    Task(slipway_core::model::Task),
    /// Registers the next revision of the family (version 0; `revision` and `created_at`
    /// are filled in) or updates a registered one (deregistration). Its outcome is
    /// [`Outcome::TaskDefinition`].
    TaskDefinition(Box<slipway_core::model::TaskDefinition>),
    /// Adds a service event (and trims the list to [`slipway_core::model::MAX_EVENTS`]).
    Event {
        key: ServiceKey,
        at: i64,
        message: String,
    },
    /// Creates (version 0) or updates an ECS cluster record.
    Cluster(ClusterRecord),
    RemoveCluster {
        name: String,
        version: u64,
    },
    /// Creates (version 0) or updates an access key.
    AccessKey(AccessKey),
    /// Creates (version 0) or updates (revokes) an identity.
    Identity(IdentityRecord),
    /// Appends an entry to the audit log.
    Audit(AuditEntry),
    /// Creates (version 0) or updates an ELBv2 object; a conflict when another of its kind
    /// has its name.
    Elb(ElbRecord),
    /// Forgets an ELBv2 object if it is still at `version`.
    RemoveElb {
        resource: String,
        version: u64,
    },
    /// Stores version `version` of a secret, sealed by the caller for that name and
    /// version: a conflict unless `version` is the next one (versions are never reused; a
    /// deleted secret set again continues its numbers). With `expected`, also only if the
    /// current version is that one (`Some(0)`: only if the secret does not exist). Its
    /// outcome is `version`.
    Secret {
        name: String,
        version: u32,
        sealed: Vec<u8>,
        at: i64,
        expected: Option<u32>,
    },
    /// Replaces the sealed value of one version of a secret if it is still `old` (a legacy
    /// value re-sealed with its version bound); outcome [`Outcome::Done`] with whether it
    /// was replaced.
    ResealSecret {
        name: String,
        version: u32,
        old: Vec<u8>,
        sealed: Vec<u8>,
    },
    /// Marks a secret deleted (new deploys cannot use it); outcome [`Outcome::Done`] with
    /// whether there was one.
    DeleteSecret {
        name: String,
        at: i64,
    },
    /// Records a push event unless its `(app, delivery)` is recorded already; outcome
    /// [`Outcome::Done`] with whether it was recorded (false: a repeated delivery).
    Push(PushRecord),
    /// Sets a meta value (last writer wins: meta values have one writer each).
    Meta {
        key: String,
        value: String,
    },
    /// Creates (version 0) or updates a host.
    Host(HostRecord),
    RemoveHost {
        id: String,
        version: u64,
    },
    /// A new join token (its hash), usable once until `expires_at`.
    JoinToken {
        hash: String,
        at: i64,
        expires_at: i64,
    },
    /// Spends a join token for `host`; [`StoreError::NotFound`] when it is unknown, used
    /// or expired.
    UseJoinToken {
        hash: String,
        host: String,
        at: i64,
    },
}

/// What one write of a committed batch produced, in the batch's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The record's new version.
    Version(u64),
    /// A deployment started, and the service record's new version; `ended`: the
    /// deployments this write moved from `IN_PROGRESS` to an outcome (superseded ones →
    /// `FAILED`, the one it rolls back → `ROLLED_BACK`).
    Deployed {
        deployment: Box<Deployment>,
        service_version: u64,
        ended: Vec<Deployment>,
    },
    /// A deployment written with an outcome that was `IN_PROGRESS` before this write: its
    /// record's new version, and the deployment as written.
    Ended {
        version: u64,
        deployment: Box<Deployment>,
    },
    TaskDefinition(Box<slipway_core::model::TaskDefinition>),
    /// A removal or deletion: whether there was something to remove.
    Done(bool),
}

impl Outcome {
    /// The new version, for writes of versioned records (0 otherwise; a deploy's is its
    /// service's).
    pub fn version(&self) -> u64 {
        match self {
            Outcome::Version(v) => *v,
            Outcome::Deployed {
                service_version, ..
            } => *service_version,
            Outcome::Ended { version, .. } => *version,
            Outcome::TaskDefinition(td) => td.version,
            Outcome::Done(_) => 0,
        }
    }

    /// The deployments this write ended (moved from `IN_PROGRESS` to an outcome).
    pub fn ended(&self) -> &[Deployment] {
        match self {
            Outcome::Deployed { ended, .. } => ended,
            Outcome::Ended { deployment, .. } => std::slice::from_ref(&**deployment),
            _ => &[],
        }
    }
}

/// What [`Store::on_deployment_ended`] calls.
pub type EndedHook = std::sync::Arc<dyn Fn(&Deployment) + Send + Sync>;

/// Writes committed together, and the services whose controller should look again.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub writes: Vec<Write>,
    pub notify: Vec<ServiceKey>,
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }

    /// The services whose records this batch writes (in order, each once).
    pub fn touched(&self) -> Vec<ServiceKey> {
        let mut out: Vec<ServiceKey> = Vec::new();
        for w in &self.writes {
            let key = match w {
                Write::Service(r) => &r.key,
                Write::RemoveService { key, .. } | Write::Event { key, .. } => key,
                Write::Deploy(d) => &d.key,
                Write::Deployment(d) => &d.service,
                Write::Task(t) => &t.service,
                _ => continue,
            };
            if !out.contains(key) {
                out.push(key.clone());
            }
        }
        out
    }

    pub fn write(mut self, w: Write) -> Self {
        self.writes.push(w);
        self
    }

    pub fn push(&mut self, w: Write) {
        self.writes.push(w);
    }

    /// Only audit entries: no record anyone caches or watches changes, so the commit skips
    /// the caches, the generation and the other servers' notices, and is not synced to
    /// disk on its own (see [`Store::commit`]).
    pub fn only_audit(&self) -> bool {
        !self.writes.is_empty() && self.writes.iter().all(|w| matches!(w, Write::Audit(_)))
    }

    /// Wakes the controller for `key` once the batch is committed.
    pub fn notify(mut self, key: &ServiceKey) -> Self {
        if !self.notify.contains(key) {
            self.notify.push(key.clone());
        }
        self
    }

    pub fn event(self, key: &ServiceKey, at: i64, message: impl Into<String>) -> Self {
        self.write(Write::Event {
            key: key.clone(),
            at,
            message: message.into(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.notify.is_empty()
    }
}
