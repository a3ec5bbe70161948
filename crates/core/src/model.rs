//! Domain types shared by every part of Slipway.
//!
//! The model follows ECS underneath (task definition revisions, services with a deployment
//! configuration, deployments with a rollout state, tasks with ECS lifecycle states) so that
//! the AWS-compatible front door and the native one describe the same objects.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Identity of a service: app, environment and service name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ServiceKey {
    pub app: String,
    pub env: String,
    pub name: String,
}

impl ServiceKey {
    pub fn new(app: impl Into<String>, env: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            app: app.into(),
            env: env.into(),
            name: name.into(),
        }
    }

    /// The key under which the standalone tasks (ECS `RunTask`) of an app environment are
    /// recorded and labelled. Its name is not a valid service name, so it never collides.
    pub fn standalone(app: impl Into<String>, env: impl Into<String>) -> Self {
        Self::new(app, env, STANDALONE_SERVICE)
    }

    /// True for the key of standalone tasks (see [`ServiceKey::standalone`]).
    pub fn is_standalone(&self) -> bool {
        self.name == STANDALONE_SERVICE
    }

    /// The task definition family of this service: `app-env-service`.
    pub fn family(&self) -> String {
        format!("{}-{}-{}", self.app, self.env, self.name)
    }

    /// Name of the private Docker network shared by the tasks of this app and environment,
    /// for the Slipway server (cluster) `cluster`.
    pub fn network_for(&self, cluster: &str) -> String {
        let short: String = cluster.chars().take(8).collect();
        format!("slipway-{short}-{}-{}", self.app, self.env)
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.app, self.env, self.name)
    }
}

/// The service name of standalone tasks (not a valid service name: it has an underscore).
pub const STANDALONE_SERVICE: &str = "_tasks";

/// When to pull an image before starting a task.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum PullPolicy {
    /// Pull only when the image is not present in the local engine (the default).
    #[default]
    Missing,
    /// Pull on every deploy, to re-resolve a mutable tag.
    Always,
}

/// A container health check run by the engine (Docker `HEALTHCHECK`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandHealthCheck {
    /// Docker's test form: `["CMD", ...]` or `["CMD-SHELL", "..."]`.
    pub test: Vec<String>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub retries: u32,
    pub start_period_ms: u64,
}

/// An HTTP health check that the controller probes from outside the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpHealthCheck {
    pub path: String,
    /// Port probed; the container port when not set.
    pub port: Option<u16>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    /// Inclusive ranges of status codes that count as success.
    pub success_codes: Vec<(u16, u16)>,
}

impl HttpHealthCheck {
    pub fn accepts(&self, status: u16) -> bool {
        self.success_codes
            .iter()
            .any(|(lo, hi)| (*lo..=*hi).contains(&status))
    }
}

/// The main container of a task definition, with the task's other containers in
/// [`ContainerSpec::sidecars`] (see [`containers`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// The image reference as the user wrote it (`repo:tag`).
    pub image: String,
    /// The image pinned at deploy time: a repo digest or the engine's image id.
    #[serde(default)]
    pub image_digest: Option<String>,
    pub pull: PullPolicy,
    pub port: Option<u16>,
    pub command: Option<Vec<String>>,
    pub environment: BTreeMap<String, String>,
    /// CPU units; 1024 = one core.
    pub cpu: Option<u32>,
    /// Hard memory limit in MiB.
    pub memory: Option<u32>,
    pub healthcheck: Option<CommandHealthCheck>,
    pub http_health: Option<HttpHealthCheck>,
    /// SIGTERM, then SIGKILL after this long.
    pub stop_timeout_ms: u64,
    /// Ingress routes of a Load Balanced Web Service.
    #[serde(default)]
    pub http_route: Option<HttpRoute>,
    /// Values from the secret store, by variable (or file) name: environment variables, or
    /// files under [`SECRET_FILES_DIR`] ([`SecretRef::delivery`]). Only names and versions
    /// live here: values are decrypted when a task's container is created.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, SecretRef>,
    /// Run an init process as PID 1 (Docker's `--init`, ECS
    /// `linuxParameters.initProcessEnabled`): it forwards signals and reaps zombies, so a
    /// process without a SIGTERM handler still stops on SIGTERM.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub init: bool,
    /// Replaces the image's ENTRYPOINT (ECS `entryPoint`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// The user the process runs as: `name`, `uid` or `uid:gid` (ECS `user`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Named volumes mounted into the container (ECS `mountPoints` of docker volumes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeMount>,
    /// Services of the same app environment whose tasks must be healthy before the first
    /// tasks of this service start (the service's first deployment only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// Set on a Scheduled Job: when it runs, how often a failed run is retried, how long a
    /// run may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobSpec>,
    /// The main container's name in a task of several (ECS `containerDefinitions[].name`);
    /// the service's name when not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The task's other containers (ECS `containerDefinitions[1..]`, Copilot `sidecars`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sidecars: Vec<Sidecar>,
    /// Containers of the same task that must reach a condition before this one starts
    /// (ECS `dependsOn`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub container_depends_on: Vec<ContainerDependency>,
    /// Mounts of other containers of the task (ECS `volumesFrom`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes_from: Vec<VolumesFrom>,
    /// Output sent to the task's log router (ECS `logConfiguration` `awsfirelens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<LogRouting>,
}

/// When and how a Scheduled Job runs (Copilot's `on.schedule`, `retries`, `timeout`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// A cron expression (UTC), a macro (`@daily`) or `@every DURATION`
    /// (see [`crate::schedule::Schedule`]).
    pub schedule: String,
    /// How many times a failed run is run again (0: never).
    #[serde(default)]
    pub retries: u32,
    /// A run still going after this long is stopped and counts as failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// Upper bound of a job's `retries`.
pub const MAX_JOB_RETRIES: u32 = 10;

/// A named volume mounted into a task's container. The volume belongs to the app
/// environment (every service of it naming the same volume shares it), lives on the host
/// the task runs on, and outlives tasks, deploys and `slipway delete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeMount {
    /// The volume's name in the manifest (`storage.volumes.NAME`).
    pub name: String,
    /// Where it is mounted in the container (an absolute path).
    pub path: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

impl VolumeMount {
    /// The engine's name of this volume for the app environment of `key`:
    /// `slipway-<app>-<env>-<name>`.
    pub fn docker_name(&self, key: &ServiceKey) -> String {
        format!("slipway-{}-{}-{}", key.app, key.env, self.name)
    }
}

/// Checks a `user`: a name or uid, optionally with `:group`.
pub fn validate_user(u: &str) -> Result<(), String> {
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    };
    let ok = match u.split_once(':') {
        Some((a, b)) => part_ok(a) && part_ok(b),
        None => part_ok(u),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "user {u:?} must be a user name or uid, optionally with :group (e.g. 1000:1000)"
        ))
    }
}

/// Checks a volume name: what Docker accepts, at most 64 characters.
pub fn validate_volume_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "volume name {name:?} must be 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit"
        ))
    }
}

/// Checks a volume's mount path: absolute, not the root, no `..`.
pub fn validate_mount_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') || path == "/" || path.split('/').any(|p| p == "..") {
        return Err(format!(
            "mount path {path:?} must be an absolute path other than / (e.g. /data)"
        ));
    }
    Ok(())
}

impl ContainerSpec {
    /// Checks `entrypoint`, `user` and `volumes` (shared by the manifest, the native API and
    /// the ECS face).
    pub fn validate_runtime(&self) -> Result<(), String> {
        if self.entrypoint.as_ref().is_some_and(|e| e.is_empty()) {
            return Err("entrypoint is empty; leave it out to use the image's".into());
        }
        if let Some(u) = &self.user {
            validate_user(u)?;
        }
        let mut paths = std::collections::BTreeSet::new();
        for v in &self.volumes {
            validate_volume_name(&v.name)?;
            validate_mount_path(&v.path)?;
            if !paths.insert(v.path.trim_end_matches('/')) {
                return Err(format!("two volumes are mounted at {}", v.path));
            }
        }
        Ok(())
    }
}

/// Where a container finds its file secrets: `/run/secrets/VARIABLE`, a read-only
/// in-memory mount (see the runtime crate).
pub const SECRET_FILES_DIR: &str = "/run/secrets";

/// A reference to one version of a stored secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRef {
    pub name: String,
    /// Pinned by the server at deploy time (the latest version then); a release records the
    /// versions it used, so a rollback restores them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// How the container receives the value (records written before files existed: env).
    #[serde(default, skip_serializing_if = "SecretDelivery::is_env")]
    pub delivery: SecretDelivery,
}

impl SecretRef {
    /// A reference to whatever version is current when the deploy is made, delivered as an
    /// environment variable.
    pub fn latest(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            version: None,
            delivery: SecretDelivery::Env,
        }
    }

    /// The same reference, delivered as `delivery`.
    #[must_use]
    pub fn delivered(mut self, delivery: SecretDelivery) -> Self {
        self.delivery = delivery;
        self
    }
}

/// How a secret reaches a container (`as:` in `slipway.yml`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretDelivery {
    /// An environment variable named as the key (visible to `docker inspect`).
    #[default]
    Env,
    /// A file `/run/secrets/KEY` on an in-memory, read-only mount, mode 0400 and owned by
    /// the container's user when it is known; never in the container's configuration.
    File,
}

impl SecretDelivery {
    pub fn is_env(&self) -> bool {
        *self == SecretDelivery::Env
    }

    /// The words `as:` accepts.
    pub const CHOICES: &'static str = "env or file";

    /// Parses `as:` (`env` or `file`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "env" => Some(SecretDelivery::Env),
            "file" => Some(SecretDelivery::File),
            _ => None,
        }
    }
}

/// How the ingress reaches a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpRoute {
    /// Path prefix (`/` for everything).
    pub path: String,
    /// Host names (exact or `*.` wildcard); any host when empty.
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub strip_prefix: bool,
    /// How long a stopping task may finish in-flight requests (draining ends early when idle).
    pub deregistration_delay_ms: u64,
    /// The route may take requests from another app's shorter route (`/users` under another
    /// app's `/`); refused without it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_shadowing: bool,
    /// Set when the route comes from an ELBv2 target group attached to the service (ECS
    /// `loadBalancers[]`): which group, container and port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_group: Option<crate::elb::TargetGroupBinding>,
    /// More path prefixes routed alike, on the same hosts (a target group that listener
    /// rules forward to for several paths); a manifest route has none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more_paths: Vec<String>,
}

impl HttpRoute {
    /// Every path prefix of the route: `path`, then `more_paths`.
    pub fn paths(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.path).chain(&self.more_paths)
    }
}

/// Circuit breaker settings (ECS `deploymentCircuitBreaker` plus its 2026 threshold option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CircuitBreaker {
    pub enable: bool,
    pub rollback: bool,
    /// Fixed failure threshold; `clamp(ceil(0.5 × desired), 3, 200)` when not set.
    pub threshold: Option<u32>,
}

impl CircuitBreaker {
    /// The number of consecutive failed tasks that trips the breaker.
    pub fn threshold_for(&self, desired: u32) -> u32 {
        self.threshold
            .unwrap_or_else(|| desired.div_ceil(2).clamp(3, 200))
    }
}

/// How a service moves from one revision to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentConfig {
    pub minimum_healthy_percent: u32,
    pub maximum_percent: u32,
    pub circuit_breaker: CircuitBreaker,
    /// Failed health checks are ignored this long after a task starts.
    pub health_check_grace_period_ms: u64,
    /// A deployment that has not reached steady state after this long fails.
    pub timeout_ms: u64,
    /// Canary, linear and blue/green rollouts, the bake after 100 % and its analysis.
    #[serde(
        default,
        skip_serializing_if = "crate::rollout::Progressive::is_default"
    )]
    pub progressive: crate::rollout::Progressive,
}

impl Default for DeploymentConfig {
    fn default() -> Self {
        Self {
            minimum_healthy_percent: 100,
            maximum_percent: 200,
            circuit_breaker: CircuitBreaker {
                enable: true,
                rollback: true,
                threshold: None,
            },
            health_check_grace_period_ms: 0,
            timeout_ms: 10 * 60 * 1000,
            progressive: crate::rollout::Progressive::default(),
        }
    }
}

impl DeploymentConfig {
    /// The deployment timeout when none is chosen for this rollout plan: 10 minutes beyond
    /// its bake times.
    pub fn default_timeout_ms(progressive: &crate::rollout::Progressive) -> u64 {
        progressive.default_timeout_ms(Self::default().timeout_ms)
    }

    /// Replaces the rollout plan; a timeout that was the default for the old plan becomes the
    /// default for the new one, a chosen one is kept.
    pub fn set_progressive(&mut self, p: crate::rollout::Progressive) {
        let derived = self.timeout_ms == Self::default_timeout_ms(&self.progressive);
        self.progressive = p;
        if derived {
            self.timeout_ms = Self::default_timeout_ms(&p);
        }
    }

    /// Lower bound of healthy tasks during a deployment (rounded up, as ECS does).
    pub fn min_healthy(&self, desired: u32) -> u32 {
        (u64::from(desired) * u64::from(self.minimum_healthy_percent)).div_ceil(100) as u32
    }

    /// Upper bound of tasks that may exist at once (rounded down, as ECS does).
    pub fn max_total(&self, desired: u32) -> u32 {
        (u64::from(desired) * u64::from(self.maximum_percent) / 100) as u32
    }
}

/// What a user asks to run: one service of one app environment, compiled from a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub key: ServiceKey,
    pub kind: ServiceKind,
    /// The desired count; `None` (no `count` in the manifest) keeps an existing service's
    /// count, as a scale set it, and starts a new service with one task.
    #[serde(default)]
    pub desired_count: Option<u32>,
    pub container: ContainerSpec,
    pub deployment: DeploymentConfig,
    /// How its tasks are placed on the hosts (default: spread over the hosts).
    #[serde(default, skip_serializing_if = "crate::placement::Placement::is_empty")]
    pub placement: crate::placement::Placement,
}

impl ServiceSpec {
    /// The count a deploy of this spec applies to a service whose count is `current`
    /// (`None`: a new service).
    pub fn count_for(&self, current: Option<u32>) -> u32 {
        self.desired_count.or(current).unwrap_or(1)
    }

    /// Checks a spec that arrives over the API (the manifest parser checks the same rules
    /// with line and column; this is the server's own line of defence).
    pub fn validate(&self) -> Result<(), String> {
        validate_name(&self.key.app).map_err(|e| format!("app: {e}"))?;
        validate_name(&self.key.env).map_err(|e| format!("environment: {e}"))?;
        validate_name(&self.key.name).map_err(|e| format!("service: {e}"))?;
        let svc = &self.key.name;
        if let Some(n) = self.desired_count
            && n > 1000
        {
            return Err(format!("{svc}: count must be between 0 and 1000, got {n}"));
        }
        let d = &self.deployment;
        if d.minimum_healthy_percent > 100 || d.maximum_percent < 100 {
            return Err(format!(
                "{svc}: minimum_healthy_percent must be at most 100 and maximum_percent at least 100"
            ));
        }
        if d.minimum_healthy_percent == 100 && d.maximum_percent == 100 {
            return Err(format!(
                "{svc}: minimum 100% with maximum 100% allows no progress"
            ));
        }
        crate::placement::validate(&self.placement)
            .map_err(|e| format!("{svc}: placement: {e}"))?;
        let c = &self.container;
        d.progressive
            .validate(d.timeout_ms, c.http_route.is_some())
            .map_err(|e| format!("{svc}: deployment: {e}"))?;
        if c.image.trim().is_empty() {
            return Err(format!("{svc}: image is empty"));
        }
        if c.port == Some(0) {
            return Err(format!("{svc}: port must be between 1 and 65535"));
        }
        if let Some(m) = c.memory
            && m < 6
        {
            return Err(format!("{svc}: memory must be at least 6 MiB"));
        }
        c.validate_runtime().map_err(|e| format!("{svc}: {e}"))?;
        containers::validate_task_containers(c, svc).map_err(|e| format!("{svc}: {e}"))?;
        match (&c.job, self.kind) {
            (Some(j), ServiceKind::ScheduledJob) => {
                crate::schedule::Schedule::parse(&j.schedule)
                    .map_err(|e| format!("{svc}: schedule: {e}"))?;
                if j.retries > MAX_JOB_RETRIES {
                    return Err(format!("{svc}: retries must be at most {MAX_JOB_RETRIES}"));
                }
                if self.desired_count.is_some_and(|n| n > 0) {
                    return Err(format!(
                        "{svc}: a Scheduled Job runs no task between its runs; leave count out"
                    ));
                }
            }
            (None, ServiceKind::ScheduledJob) => {
                return Err(format!("{svc}: a Scheduled Job needs a schedule"));
            }
            (Some(_), _) => {
                return Err(format!("{svc}: only a Scheduled Job has a schedule"));
            }
            (None, _) => {}
        }
        if c.depends_on.contains(svc) {
            return Err(format!("{svc}: depends_on names the service itself"));
        }
        for d in &c.depends_on {
            validate_name(d).map_err(|e| format!("{svc}: depends_on: {e}"))?;
        }
        if let Some(h) = &c.http_health {
            if !h.path.starts_with('/') {
                return Err(format!("{svc}: http health check path must start with '/'"));
            }
            if h.port.or(c.port).is_none() {
                return Err(format!("{svc}: http health check needs a port"));
            }
        }
        Ok(())
    }
}

/// Service types, with Copilot's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceKind {
    #[serde(rename = "Load Balanced Web Service")]
    LoadBalancedWebService,
    #[serde(rename = "Backend Service")]
    BackendService,
    #[serde(rename = "Worker Service")]
    WorkerService,
    /// Runs on a schedule as standalone tasks; no task runs between its runs.
    #[serde(rename = "Scheduled Job")]
    ScheduledJob,
}

impl ServiceKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ServiceKind::LoadBalancedWebService => "Load Balanced Web Service",
            ServiceKind::BackendService => "Backend Service",
            ServiceKind::WorkerService => "Worker Service",
            ServiceKind::ScheduledJob => "Scheduled Job",
        }
    }
}

/// An immutable task definition revision (`family:revision`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskDefinition {
    pub family: String,
    pub revision: u32,
    pub container: ContainerSpec,
    pub created_at: i64,
    /// Set when this revision copies another task definition (`family:revision`): a service
    /// of the ECS front door runs a task definition of another family through a pinned copy
    /// in its own family.
    #[serde(default)]
    pub source: Option<String>,
    /// The task definition as registered through the ECS API (a JSON object), echoed back
    /// by `DescribeTaskDefinition`.
    #[serde(default)]
    pub ecs: Option<String>,
    /// Set by `DeregisterTaskDefinition` (status INACTIVE): existing services keep it, new
    /// services and updates may not use it.
    #[serde(default)]
    pub deregistered_at: Option<i64>,
    /// The record's version in the store (0 before it is registered).
    #[serde(default)]
    pub version: u64,
}

impl TaskDefinition {
    pub fn id(&self) -> String {
        format!("{}:{}", self.family, self.revision)
    }
}

/// Outcome of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RolloutState {
    InProgress,
    Succeeded,
    Failed,
    RolledBack,
}

impl RolloutState {
    pub fn as_str(&self) -> &'static str {
        match self {
            RolloutState::InProgress => "IN_PROGRESS",
            RolloutState::Succeeded => "SUCCEEDED",
            RolloutState::Failed => "FAILED",
            RolloutState::RolledBack => "ROLLED_BACK",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "IN_PROGRESS" => RolloutState::InProgress,
            "SUCCEEDED" => RolloutState::Succeeded,
            "FAILED" => RolloutState::Failed,
            "ROLLED_BACK" => RolloutState::RolledBack,
            _ => return None,
        })
    }

    pub fn is_terminal(&self) -> bool {
        !matches!(self, RolloutState::InProgress)
    }
}

/// Timestamps (unix milliseconds) that answer "how long did it take, and how long were two
/// versions reachable".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeline {
    /// First task of this deployment passed its health checks.
    pub first_healthy_at: Option<i64>,
    /// First task of an older deployment was stopped.
    pub first_old_stopped_at: Option<i64>,
    /// The last task of an older deployment was deregistered (asked to stop): until then
    /// both versions were served; after it the old tasks only drain and stop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_deregistered_at: Option<i64>,
    /// No task of an older deployment was left.
    pub old_gone_at: Option<i64>,
    /// The deployment reached a terminal state.
    pub finished_at: Option<i64>,
}

/// One deployment: moving a service's tasks to one task definition revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    pub id: String,
    pub service: ServiceKey,
    pub revision: u32,
    pub desired_count: u32,
    pub state: RolloutState,
    pub reason: Option<String>,
    /// Consecutive failed tasks counted by the circuit breaker.
    pub failed_tasks: u32,
    /// Set on a deployment started by the circuit breaker: the deployment it rolls back.
    pub rollback_of: Option<String>,
    /// Set on a deployment that was rolled back: the deployment that restores service.
    pub rolled_back_by: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub timeline: Timeline,
    /// A canary, linear or blue/green rollout (or a bake after a rolling one): its plan and
    /// where it stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<crate::rollout::RolloutProgress>,
    /// The record's version in the store (0 before it is first written).
    #[serde(default)]
    pub version: u64,
}

/// ECS task lifecycle states (`lastStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    Provisioning,
    Pending,
    Activating,
    Running,
    Deactivating,
    Stopping,
    Deprovisioning,
    Stopped,
}

impl TaskStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            TaskStatus::Provisioning => "PROVISIONING",
            TaskStatus::Pending => "PENDING",
            TaskStatus::Activating => "ACTIVATING",
            TaskStatus::Running => "RUNNING",
            TaskStatus::Deactivating => "DEACTIVATING",
            TaskStatus::Stopping => "STOPPING",
            TaskStatus::Deprovisioning => "DEPROVISIONING",
            TaskStatus::Stopped => "STOPPED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "PROVISIONING" => TaskStatus::Provisioning,
            "PENDING" => TaskStatus::Pending,
            "ACTIVATING" => TaskStatus::Activating,
            "RUNNING" => TaskStatus::Running,
            "DEACTIVATING" => TaskStatus::Deactivating,
            "STOPPING" => TaskStatus::Stopping,
            "DEPROVISIONING" => TaskStatus::Deprovisioning,
            "STOPPED" => TaskStatus::Stopped,
            _ => return None,
        })
    }
}

/// Why a task stopped (ECS `stopCode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopCode {
    TaskFailedToStart,
    EssentialContainerExited,
    UserInitiated,
    ServiceSchedulerInitiated,
}

impl StopCode {
    pub fn as_str(&self) -> &'static str {
        match self {
            StopCode::TaskFailedToStart => "TaskFailedToStart",
            StopCode::EssentialContainerExited => "EssentialContainerExited",
            StopCode::UserInitiated => "UserInitiated",
            StopCode::ServiceSchedulerInitiated => "ServiceSchedulerInitiated",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "TaskFailedToStart" => StopCode::TaskFailedToStart,
            "EssentialContainerExited" => StopCode::EssentialContainerExited,
            "UserInitiated" => StopCode::UserInitiated,
            "ServiceSchedulerInitiated" => StopCode::ServiceSchedulerInitiated,
            _ => return None,
        })
    }
}

/// Health of a task as the controller judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskHealth {
    /// Checks have not passed yet (or are still within the grace period).
    Unknown,
    Healthy,
    Unhealthy,
}

impl TaskHealth {
    pub fn as_str(&self) -> &'static str {
        match self {
            TaskHealth::Unknown => "UNKNOWN",
            TaskHealth::Healthy => "HEALTHY",
            TaskHealth::Unhealthy => "UNHEALTHY",
        }
    }
}

/// The record of one task: a running (or stopped) copy of a task definition revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub service: ServiceKey,
    pub deployment_id: String,
    pub revision: u32,
    pub container_id: Option<String>,
    pub last_status: TaskStatus,
    /// `RUNNING` or `STOPPED`: what the scheduler wants for this task.
    pub desired_running: bool,
    pub health: TaskHealth,
    pub address: Option<String>,
    pub stop_code: Option<StopCode>,
    pub stopped_reason: Option<String>,
    pub exit_code: Option<i64>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub healthy_at: Option<i64>,
    pub stopped_at: Option<i64>,
    /// Set on a standalone task (ECS `RunTask`): it runs once, belongs to no service and is
    /// not replaced when it stops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standalone: Option<Box<Standalone>>,
    /// The host it runs on (`None` until it is placed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `host:port` where its port is published on its host (reached from other hosts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<String>,
    /// Why it waits to be placed (`RESOURCE:MEMORY` ...), while it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_reason: Option<String>,
    /// A rebalance moves it: it is replaced on another host, then stopped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub moving: bool,
    /// How its container ended, kept after the container is removed (see [`TaskExit`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<TaskExit>,
    /// Each container of a task of several, the main one first (empty for a task of one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<ContainerStatus>,
    /// The record's version in the store (0 before it is first written).
    #[serde(default)]
    pub version: u64,
}

impl Task {
    /// A new task of `revision` that is yet to be started: wanted running, nothing observed.
    pub fn provisioning(
        id: String,
        service: ServiceKey,
        deployment_id: String,
        revision: u32,
        now: i64,
    ) -> Self {
        Self {
            id,
            service,
            deployment_id,
            revision,
            container_id: None,
            last_status: TaskStatus::Provisioning,
            desired_running: true,
            health: TaskHealth::Unknown,
            address: None,
            stop_code: None,
            stopped_reason: None,
            exit_code: None,
            created_at: now,
            started_at: None,
            healthy_at: None,
            stopped_at: None,
            standalone: None,
            host: None,
            published: None,
            pending_reason: None,
            moving: false,
            exit: None,
            containers: Vec::new(),
            version: 0,
        }
    }
}

/// The most output kept of a task that ended: its last lines...
pub const LAST_OUTPUT_LINES: usize = 50;
/// ...and at most this many bytes of them.
pub const LAST_OUTPUT_BYTES: usize = 8 * 1024;

/// How a task's container ended, read before the container is removed: what `slipway ps
/// --all`, `slipway logs --task` and a deploy's failure summary show after it is gone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskExit {
    pub exit_code: Option<i64>,
    /// The kernel killed it for using more memory than its limit.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub oom_killed: bool,
    /// The signal that ended it (`SIGKILL`), when the exit code says one did (128 + n).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// Its last output lines, stdout and stderr as they came (at most
    /// [`LAST_OUTPUT_LINES`] lines and [`LAST_OUTPUT_BYTES`] bytes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_output: Vec<String>,
}

impl TaskExit {
    /// The last non-empty output line, if any.
    pub fn last_line(&self) -> Option<&str> {
        self.last_output
            .iter()
            .rev()
            .map(|l| l.trim())
            .find(|l| !l.is_empty())
    }
}

impl TaskExit {
    /// A task asked to stop that ended with SIGKILL (exit 137) without running out of
    /// memory was killed after its stop timeout: SIGTERM did not end it.
    pub fn killed_after_stop_timeout(&self) -> bool {
        self.exit_code == Some(137) && !self.oom_killed
    }
}

/// What a task killed after its stop timeout is told (see
/// [`TaskExit::killed_after_stop_timeout`]).
pub const STOP_TIMEOUT_HINT: &str = "killed after its stop timeout (exit code 137 after SIGTERM): the process ignored SIGTERM, as PID 1 does without a signal handler; handle SIGTERM in the app, or set `init: true` so an init process passes SIGTERM on";

/// The name of the signal an exit code of 128 + n reports (`None` for other codes).
pub fn exit_signal(code: i64) -> Option<&'static str> {
    Some(match code - 128 {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        6 => "SIGABRT",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        15 => "SIGTERM",
        _ => return None,
    })
}

/// Keeps the tail of `text`: its last [`LAST_OUTPUT_LINES`] lines within
/// [`LAST_OUTPUT_BYTES`] bytes (a longer single line keeps its end).
pub fn output_tail(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut bytes = 0usize;
    for line in text.lines().rev() {
        if out.len() == LAST_OUTPUT_LINES {
            break;
        }
        let line = line.trim_end_matches('\r');
        let room = LAST_OUTPUT_BYTES - bytes;
        if line.len() + 1 > room {
            if out.is_empty() {
                let mut start = line.len().saturating_sub(room.saturating_sub(1));
                while !line.is_char_boundary(start) {
                    start += 1;
                }
                out.push(line[start..].to_owned());
            }
            break;
        }
        bytes += line.len() + 1;
        out.push(line.to_owned());
    }
    out.reverse();
    out
}

/// What a standalone task runs and how it was asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Standalone {
    /// The task definition revision it runs (`family:revision`).
    pub task_definition: String,
    /// The container it runs: the revision's, image pinned, overrides applied.
    pub container: ContainerSpec,
    /// The container's name in the task definition.
    pub container_name: String,
    /// ECS `startedBy`.
    #[serde(default)]
    pub started_by: Option<String>,
    /// ECS `group` (`family:NAME` unless given).
    pub group: String,
    /// ECS `overrides` as given (a JSON object), echoed when the task is described.
    #[serde(default)]
    pub overrides: Option<String>,
    /// Where it may run (ECS `placementStrategy` / `placementConstraints`).
    #[serde(default, skip_serializing_if = "crate::placement::Placement::is_empty")]
    pub placement: crate::placement::Placement,
}

/// A service event (ECS `services[].events[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEvent {
    pub id: i64,
    pub created_at: i64,
    pub message: String,
    /// The service record's version when the event was written: the events newer than a
    /// version say what changed since it.
    #[serde(default)]
    pub version: u64,
}

/// How many events are kept per service (ECS shows 100).
pub const MAX_EVENTS: i64 = 100;

/// Container labels Slipway puts on every container it creates.
pub mod labels {
    pub const APP: &str = "slipway.app";
    pub const ENV: &str = "slipway.env";
    pub const SERVICE: &str = "slipway.service";
    pub const TASK: &str = "slipway.task";
    pub const REVISION: &str = "slipway.revision";
    pub const DEPLOYMENT: &str = "slipway.deployment";
}

/// Checks a name used for apps, environments and services: what Docker accepts in container
/// and network names and what a DNS label allows.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 40 {
        return Err(format!("name {name:?} must be 1 to 40 characters long"));
    }
    let ok = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "name {name:?} must use lowercase letters, digits and '-', start with a letter and not end with '-'"
        ))
    }
}

pub mod containers;
pub use containers::{
    ContainerDependency, ContainerStatus, DependencyCondition, Firelens, LogRouting, Sidecar,
    VolumesFrom,
};

#[cfg(test)]
mod tests;
