//! Slipway's container runtime: the Docker Engine API, through bollard.
//!
//! This crate owns every call to the engine: listing Slipway's containers, creating,
//! starting, stopping and removing them, resolving and pulling images, private networks,
//! the event stream and logs. It knows the labels Slipway puts on containers and turns the
//! engine's answers into small plain types; it makes no decisions (that is the planner's job)
//! and touches no state store. [`container`] has a task container's life from creation to
//! removal.

mod compose;
mod container;
pub mod isolation;
mod ops;
pub mod pod;
pub mod secret_files;
pub use compose::{ContainerDetails, Health, ImageDetails, PullAuth};
pub use ops::{EngineInfo, ExecOutput, LOCAL_RUN_LABEL, LocalRun};
pub use secret_files::{SecretFile, SecretFileError};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::models::{
    ContainerCreateBody, ContainerSummaryStateEnum, EndpointSettings, HealthConfig, HostConfig,
    HostConfigLogConfig, Mount, MountType, MountVolumeOptions, NetworkCreateRequest,
    NetworkingConfig, PortBinding,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, EventsOptions, InspectContainerOptions,
    ListContainersOptions, ListNetworksOptions, LogsOptions, RemoveContainerOptions,
    StopContainerOptions,
};
use futures_util::{Stream, StreamExt, TryStreamExt};
use slipway_core::health::EngineHealth;
use slipway_core::model::{ContainerSpec, PullPolicy, ServiceKey, labels};

/// Label naming the Slipway server (cluster) that owns a container or network, so several
/// servers can share one engine without touching each other's containers.
pub const CLUSTER_LABEL: &str = "slipway.cluster";

/// Errors from the engine.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "cannot reach the Docker engine ({0}); is it running and is /var/run/docker.sock accessible (DOCKER_HOST)?"
    )]
    Unreachable(String),
    #[error("image {image:?} is not available: {reason}")]
    ImageUnavailable { image: String, reason: String },
    #[error(
        "image {image:?} is built for {image_platform} but this host runs {host_platform}; rebuild it for the host (docker build --platform {host_platform}, or `platform: {host_platform}` in slipway.yml) or push a multi-platform image"
    )]
    PlatformMismatch {
        image: String,
        image_platform: String,
        host_platform: String,
    },
    #[error("docker: {0}")]
    Docker(#[from] bollard::errors::Error),
    #[error(transparent)]
    SecretFiles(#[from] SecretFileError),
    /// A task of several containers that cannot be created or started as asked (a
    /// dependency that cannot be met, a holder image this machine cannot have).
    #[error("{0}")]
    Task(String),
}

impl RuntimeError {
    /// The engine answered 404 for the object asked about.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            RuntimeError::Docker(bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                ..
            })
        )
    }
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// The coarse state of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ContainerState {
    Created,
    Running,
    /// Stopped, dead, or being removed.
    Exited,
}

/// One Slipway container as listed by the engine.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub service: ServiceKey,
    pub task_id: String,
    pub deployment_id: String,
    pub revision: u32,
    pub state: ContainerState,
    pub health: EngineHealth,
    /// The container's address on its app network.
    pub ip: Option<String>,
    /// Creation time (unix ms).
    pub created_ms: i64,
    /// `host:port` where the task's port is published on its host's address (for traffic
    /// from other hosts), when it is.
    #[serde(default)]
    pub published: Option<String>,
    /// The host that runs it (filled in by whoever gathers several hosts' lists).
    #[serde(default)]
    pub host: String,
    /// A task of several containers: each of them, the main one first (see [`pod`]). The
    /// entry is then the main container's, with the holder's address and published port,
    /// the health of every essential container together, and `Exited` once an essential
    /// container has exited.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<slipway_core::model::ContainerStatus>,
}

/// What `inspect` adds for a container that stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExitInfo {
    /// The container is still running (the engine's own state, not its list's).
    #[serde(default)]
    pub running: bool,
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    pub error: Option<String>,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    /// Output of the last failing engine health check, if any.
    pub health_output: Option<String>,
    /// The container's last output lines (see [`slipway_core::model::output_tail`]), read
    /// only once it is no longer running.
    #[serde(default)]
    pub last_output: Vec<String>,
    /// A task of several containers: the essential container whose exit ended it (what the
    /// rest describes), and the state of each container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// `HEALTHY` or `UNHEALTHY` when the container has a health check that was judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_status: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<slipway_core::model::ContainerStatus>,
}

impl ExitInfo {
    /// What a task record keeps of it once the container is removed.
    pub fn task_exit(&self) -> slipway_core::model::TaskExit {
        slipway_core::model::TaskExit {
            exit_code: self.exit_code,
            oom_killed: self.oom_killed,
            signal: self
                .exit_code
                .and_then(slipway_core::model::exit_signal)
                .map(str::to_owned),
            last_output: self.last_output.clone(),
        }
    }
}

/// A resolved image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageInfo {
    /// `sha256:...` image id: what tasks are created from, so a moving tag cannot change
    /// what a revision runs.
    pub id: String,
    pub repo_digest: Option<String>,
    pub os: Option<String>,
    pub architecture: Option<String>,
}

/// A container event of interest to the controller.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ContainerEvent {
    pub container_id: String,
    pub action: String,
    pub service: Option<ServiceKey>,
}

/// Everything needed to create one task's container. Its debug output names the extra
/// variables but never shows their values (decrypted secrets).
#[derive(Clone)]
pub struct TaskLaunch<'a> {
    pub cluster: &'a str,
    pub service: &'a ServiceKey,
    pub task_id: &'a str,
    pub deployment_id: &'a str,
    pub revision: u32,
    pub network: &'a str,
    pub container: &'a ContainerSpec,
    /// Extra environment (discovery variables) added to the spec's.
    pub extra_env: &'a [(String, String)],
    /// Secrets delivered as files under `/run/secrets` (see [`secret_files`]).
    pub secret_files: &'a [SecretFile],
    /// Publish the container's port on this address of the host, at `host_port` (for
    /// traffic from other hosts: the ingress of a cluster of several hosts).
    pub publish: Option<(&'a str, u16)>,
    /// DNS servers of the container (the engine's embedded resolver forwards the names it
    /// does not know to them); empty: the host's.
    pub dns: &'a [String],
    /// Environment added to each sidecar's, by container name (its decrypted secrets).
    pub sidecar_env: &'a [(String, Vec<(String, String)>)],
}

impl std::fmt::Debug for TaskLaunch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskLaunch")
            .field("cluster", &self.cluster)
            .field("service", &self.service)
            .field("task_id", &self.task_id)
            .field("deployment_id", &self.deployment_id)
            .field("revision", &self.revision)
            .field("network", &self.network)
            .field("container", &self.container)
            .field(
                "extra_env",
                &self.extra_env.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("secret_files", &self.secret_files)
            .field("publish", &self.publish)
            .field("dns", &self.dns)
            .field(
                "sidecar_env",
                &self
                    .sidecar_env
                    .iter()
                    .map(|(n, e)| (n, e.iter().map(|(k, _)| k).collect::<Vec<_>>()))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Supplies the credentials the engine pulls with, per registry host (`host:port`). The
/// server implements it for its own registry (a short-lived internal pull password), so
/// hosts need no `docker login`.
pub trait PullCredentials: Send + Sync + 'static {
    /// `(username, password)` for `registry`, or `None` to pull anonymously.
    fn credentials_for(&self, registry: &str) -> Option<(String, String)>;
}

/// The Docker engine.
#[derive(Clone)]
pub struct DockerRuntime {
    docker: Docker,
    credentials: Option<Arc<dyn PullCredentials>>,
    /// The engine's `os`/`arch` (Go names: linux/amd64), read once at connect.
    host_platform: (String, String),
    /// Where tasks' secret files are written ([`secret_files::root`]).
    secret_root: std::path::PathBuf,
}

impl std::fmt::Debug for DockerRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerRuntime")
            .field("credentials", &self.credentials.is_some())
            .finish_non_exhaustive()
    }
}

/// The registry host of an image reference (`127.0.0.1:5000/team/app:v1` →
/// `127.0.0.1:5000`), or `None` for Docker Hub names.
pub fn registry_host(image: &str) -> Option<&str> {
    let (first, _) = image.split_once('/')?;
    (first.contains('.') || first.contains(':') || first == "localhost").then_some(first)
}

fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    // Docker writes e.g. 2026-11-21T23:46:49.123456789Z; zero time means "never".
    if s.starts_with("0001-") {
        return None;
    }
    let (date, rest) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let rest = rest.trim_end_matches('Z');
    let (hms, frac) = rest.split_once('.').unwrap_or((rest, "0"));
    let mut t = hms.split(':').map(|x| x.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    let frac: String = frac
        .chars()
        .take_while(char::is_ascii_digit)
        .chain("000".chars())
        .take(3)
        .collect();
    let ms: i64 = frac.parse().ok()?;
    // Days from civil date (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1000) + ms)
}

/// Reads health from a container's status line ("Up 3 seconds (healthy)"): the list endpoint
/// of engines before API 1.52 carries health only there.
/// The exit code in a listed container's status (`Exited (3) 2 seconds ago`).
fn exit_code_of_status(status: &str) -> Option<i64> {
    let rest = status.strip_prefix("Exited (")?;
    rest.split_once(')')?.0.parse().ok()
}

fn health_from_status(status: &str) -> EngineHealth {
    if status.contains("(healthy)") {
        EngineHealth::Healthy
    } else if status.contains("(unhealthy)") {
        EngineHealth::Unhealthy
    } else if status.contains("(health: starting)") {
        EngineHealth::Starting
    } else {
        EngineHealth::None
    }
}

impl DockerRuntime {
    /// Connects to the local engine and negotiates the API version.
    pub async fn connect() -> Result<Self> {
        let docker = Docker::connect_with_local_defaults()
            .map_err(|e| RuntimeError::Unreachable(e.to_string()))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| RuntimeError::Unreachable(e.to_string()))?;
        docker
            .ping()
            .await
            .map_err(|e| RuntimeError::Unreachable(e.to_string()))?;
        let v = docker
            .version()
            .await
            .map_err(|e| RuntimeError::Unreachable(e.to_string()))?;
        let host_platform = (
            v.os.unwrap_or_else(|| "linux".into()),
            v.arch.unwrap_or_else(|| "amd64".into()),
        );
        Ok(Self {
            docker,
            credentials: None,
            host_platform,
            secret_root: secret_files::root(),
        })
    }

    /// Pulls with credentials from `source` (for the built-in registry).
    #[must_use]
    pub fn with_credentials(mut self, source: Arc<dyn PullCredentials>) -> Self {
        self.credentials = Some(source);
        self
    }

    /// Whether the engine answers (`GET /_ping`).
    pub async fn ping(&self) -> Result<()> {
        self.docker.ping().await?;
        Ok(())
    }

    /// The engine's `os/arch`, for platform checks.
    pub async fn platform(&self) -> Result<(String, String)> {
        let v = self.docker.version().await?;
        Ok((
            v.os.unwrap_or_else(|| "linux".into()),
            v.arch.unwrap_or_else(|| "amd64".into()),
        ))
    }

    /// Every container of this cluster, running or not.
    pub async fn list(&self, cluster: &str) -> Result<Vec<ContainerInfo>> {
        let filters = HashMap::from([(
            "label".to_owned(),
            vec![format!("{CLUSTER_LABEL}={cluster}")],
        )]);
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await?;
        let mut out = Vec::with_capacity(list.len());
        let mut groups: HashMap<String, Vec<(pod::GroupMember, ContainerInfo)>> = HashMap::new();
        for c in list {
            let labels = c.labels.unwrap_or_default();
            let member = c.id.clone().and_then(|id| pod::member_of(&labels, id));
            let exit_code = c.status.as_deref().and_then(exit_code_of_status);
            let get = |k: &str| labels.get(k).cloned();
            let (Some(id), Some(app), Some(env), Some(svc), Some(task)) = (
                c.id,
                get(labels::APP),
                get(labels::ENV),
                get(labels::SERVICE),
                get(labels::TASK),
            ) else {
                continue;
            };
            let state = match c.state {
                Some(ContainerSummaryStateEnum::RUNNING) => ContainerState::Running,
                Some(ContainerSummaryStateEnum::CREATED) => ContainerState::Created,
                _ => ContainerState::Exited,
            };
            let network = ServiceKey::new(&app, &env, &svc).network_for(cluster);
            let ip = c
                .network_settings
                .and_then(|n| n.networks)
                .and_then(|mut n| n.remove(&network))
                .and_then(|e| e.ip_address)
                .filter(|ip| !ip.is_empty());
            let info = ContainerInfo {
                id,
                name: c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_owned(),
                service: ServiceKey::new(app, env, svc),
                task_id: task,
                deployment_id: get(labels::DEPLOYMENT).unwrap_or_default(),
                revision: get(labels::REVISION)
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(0),
                state,
                health: health_from_status(c.status.as_deref().unwrap_or("")),
                ip,
                created_ms: c.created.unwrap_or(0) * 1000,
                published: c.ports.unwrap_or_default().into_iter().find_map(|p| {
                    let public = p.public_port?;
                    let ip = p.ip.filter(|ip| !ip.is_empty() && ip != "::")?;
                    Some(format!("{ip}:{public}"))
                }),
                host: String::new(),
                containers: Vec::new(),
            };
            match member {
                Some(m) => {
                    let mut info = info;
                    info.containers = vec![slipway_core::model::ContainerStatus {
                        name: m.name.clone(),
                        id: Some(info.id.clone()),
                        essential: m.essential,
                        last_status: match info.state {
                            ContainerState::Created => "PENDING",
                            ContainerState::Running => "RUNNING",
                            ContainerState::Exited => "STOPPED",
                        }
                        .into(),
                        health: match info.health {
                            EngineHealth::Healthy => "HEALTHY",
                            EngineHealth::Unhealthy => "UNHEALTHY",
                            _ => "UNKNOWN",
                        }
                        .into(),
                        exit_code: (info.state == ContainerState::Exited)
                            .then_some(exit_code)
                            .flatten(),
                    }];
                    groups
                        .entry(info.task_id.clone())
                        .or_default()
                        .push((m, info));
                }
                None => out.push(info),
            }
        }
        out.extend(groups.into_values().map(pod::fold_group));
        Ok(out)
    }

    /// Details of a stopped container; `None` when it no longer exists.
    pub async fn exit_info(&self, id: &str) -> Result<Option<ExitInfo>> {
        if let Some((_, members)) = self.group_of(id).await? {
            return self.group_exit_info(&members).await;
        }
        self.exit_info_one(id).await
    }

    async fn exit_info_one(&self, id: &str) -> Result<Option<ExitInfo>> {
        let c = match self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                let e = RuntimeError::from(e);
                return if e.is_not_found() { Ok(None) } else { Err(e) };
            }
        };
        let st = c.state.unwrap_or_default();
        let last_output = if st.running == Some(true) {
            Vec::new()
        } else {
            self.last_output(id).await
        };
        let health_output = st
            .health
            .as_ref()
            .and_then(|h| h.log.as_ref())
            .and_then(|l| {
                l.iter()
                    .rev()
                    .find(|r| r.exit_code.unwrap_or(0) != 0)
                    .and_then(|r| r.output.clone())
            });
        Ok(Some(ExitInfo {
            running: st.running == Some(true),
            exit_code: st.exit_code,
            oom_killed: st.oom_killed.unwrap_or(false),
            error: st.error.filter(|e| !e.is_empty()),
            // A container never started says 0001-01-01.
            started_ms: st
                .started_at
                .as_deref()
                .and_then(parse_rfc3339_ms)
                .filter(|ms| *ms > 0),
            finished_ms: st.finished_at.as_deref().and_then(parse_rfc3339_ms),
            health_output: health_output.map(|o| o.trim().chars().take(300).collect()),
            last_output,
            health_status: st
                .health
                .as_ref()
                .and_then(|h| h.status)
                .and_then(|s| match s {
                    bollard::models::HealthStatusEnum::HEALTHY => Some("HEALTHY".to_owned()),
                    bollard::models::HealthStatusEnum::UNHEALTHY => Some("UNHEALTHY".to_owned()),
                    _ => None,
                }),
            container: None,
            containers: Vec::new(),
        }))
    }

    /// The last output lines of a container (stdout and stderr), within the limits a task
    /// record keeps; empty when there is none or it cannot be read.
    pub async fn last_output(&self, id: &str) -> Vec<String> {
        let opts = LogsOptions {
            stdout: true,
            stderr: true,
            tail: slipway_core::model::LAST_OUTPUT_LINES.to_string(),
            ..Default::default()
        };
        let mut text = String::new();
        let mut stream = self.docker.logs(id, Some(opts));
        while let Some(Ok(chunk)) = stream.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        }
        slipway_core::model::output_tail(&text)
    }

    /// When a running container started (unix ms).
    pub async fn started_at(&self, id: &str) -> Result<Option<i64>> {
        Ok(self.exit_info(id).await?.and_then(|i| i.started_ms))
    }

    /// Resolves an image reference to an image id, pulling it when the policy says so.
    ///
    /// An image built for another platform than the engine's is refused here, before any
    /// task is created from it ([`RuntimeError::PlatformMismatch`]).
    pub async fn resolve_image(&self, image: &str, pull: PullPolicy) -> Result<ImageInfo> {
        let info = self.resolve_image_any(image, pull).await?;
        self.check_platform(image, &info)?;
        Ok(info)
    }

    /// `os/arch` of the engine.
    pub fn host_platform(&self) -> String {
        format!("{}/{}", self.host_platform.0, self.host_platform.1)
    }

    fn check_platform(&self, image: &str, info: &ImageInfo) -> Result<()> {
        let os = info
            .os
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or("linux");
        // An image without an architecture in its config runs anywhere its binaries do;
        // only a declared, different one is refused.
        let Some(arch) = info.architecture.as_deref().filter(|s| !s.is_empty()) else {
            return Ok(());
        };
        if os != self.host_platform.0
            || normalize_arch(arch) != normalize_arch(&self.host_platform.1)
        {
            return Err(RuntimeError::PlatformMismatch {
                image: image.to_owned(),
                image_platform: format!("{os}/{arch}"),
                host_platform: self.host_platform(),
            });
        }
        Ok(())
    }

    async fn resolve_image_any(&self, image: &str, pull: PullPolicy) -> Result<ImageInfo> {
        if pull == PullPolicy::Always {
            self.pull(image).await?;
        }
        match self.docker.inspect_image(image).await {
            Ok(i) => Ok(image_info(image, i)),
            Err(e) => {
                let e = RuntimeError::from(e);
                if !e.is_not_found() {
                    return Err(e);
                }
                if pull == PullPolicy::Always {
                    return Err(RuntimeError::ImageUnavailable {
                        image: image.into(),
                        reason: "not found after pull".into(),
                    });
                }
                self.pull(image).await?;
                let i = self.docker.inspect_image(image).await?;
                Ok(image_info(image, i))
            }
        }
    }

    /// Pulls an image, with the credentials [`PullCredentials`] gives for its registry.
    pub async fn pull(&self, image: &str) -> Result<()> {
        let (repo, tag) = split_tag(image);
        let opts = CreateImageOptions {
            from_image: Some(repo.to_owned()),
            tag: Some(tag.to_owned()),
            ..Default::default()
        };
        let creds = registry_host(image).and_then(|host| {
            let (username, password) = self.credentials.as_ref()?.credentials_for(host)?;
            tracing::debug!(
                registry = host,
                "pulling with internal registry credentials"
            );
            Some(DockerCredentials {
                username: Some(username),
                password: Some(password),
                serveraddress: Some(host.to_owned()),
                ..Default::default()
            })
        });
        let mut stream = self.docker.create_image(Some(opts), None, creds);
        while let Some(item) = stream.next().await {
            if let Err(e) = item {
                let text = e.to_string();
                if text.contains("no matching manifest") {
                    return Err(RuntimeError::PlatformMismatch {
                        image: image.into(),
                        image_platform:
                            "other platforms only (its index has no entry for this host)".into(),
                        host_platform: self.host_platform(),
                    });
                }
                return Err(RuntimeError::ImageUnavailable {
                    image: image.into(),
                    reason: format!("it is not in the local engine and pulling it failed: {text}"),
                });
            }
        }
        Ok(())
    }

    /// Creates the private network of an app environment if it does not exist.
    pub async fn ensure_network(&self, cluster: &str, key: &ServiceKey) -> Result<String> {
        let name = key.network_for(cluster);
        let filters = HashMap::from([("name".to_owned(), vec![name.clone()])]);
        let existing = self
            .docker
            .list_networks(Some(ListNetworksOptions {
                filters: Some(filters),
            }))
            .await?;
        if existing
            .iter()
            .any(|n| n.name.as_deref() == Some(name.as_str()))
        {
            return Ok(name);
        }
        let labels = HashMap::from([
            (CLUSTER_LABEL.to_owned(), cluster.to_owned()),
            (labels::APP.to_owned(), key.app.clone()),
            (labels::ENV.to_owned(), key.env.clone()),
        ]);
        let req = NetworkCreateRequest {
            name: name.clone(),
            driver: Some("bridge".into()),
            labels: Some(labels),
            ..Default::default()
        };
        match self.docker.create_network(req).await {
            Ok(_) => Ok(name),
            // Lost a race with another creator: fine.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(name),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes an app environment's network (when its last service is gone).
    /// The IPv4 subnets of a network (`10.1.2.0`, 24), none if it does not exist.
    pub async fn network_subnets(&self, name: &str) -> Result<Vec<(std::net::Ipv4Addr, u8)>> {
        let n = match self
            .docker
            .inspect_network(
                name,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
        {
            Ok(n) => n,
            Err(e) => {
                let e = RuntimeError::from(e);
                return if e.is_not_found() {
                    Ok(Vec::new())
                } else {
                    Err(e)
                };
            }
        };
        Ok(n.ipam
            .and_then(|i| i.config)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|c| {
                let (ip, len) = c
                    .subnet?
                    .split_once('/')
                    .map(|(a, b)| (a.to_owned(), b.to_owned()))?;
                Some((ip.parse().ok()?, len.parse().ok()?))
            })
            .collect())
    }

    pub async fn remove_network(&self, cluster: &str, key: &ServiceKey) -> Result<()> {
        match self.docker.remove_network(&key.network_for(cluster)).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let e = RuntimeError::from(e);
                if e.is_not_found() { Ok(()) } else { Err(e) }
            }
        }
    }

    /// Container events (start, die, health changes, destroy) of this cluster.
    pub fn events(
        &self,
        cluster: &str,
    ) -> impl Stream<Item = Result<ContainerEvent>> + Send + 'static {
        let filters = HashMap::from([
            ("type".to_owned(), vec!["container".to_owned()]),
            (
                "label".to_owned(),
                vec![format!("{CLUSTER_LABEL}={cluster}")],
            ),
        ]);
        self.docker
            .events(Some(EventsOptions {
                filters: Some(filters),
                ..Default::default()
            }))
            .map(|e| {
                let e = e?;
                let actor = e.actor.unwrap_or_default();
                let attrs = actor.attributes.unwrap_or_default();
                let service = match (
                    attrs.get(labels::APP),
                    attrs.get(labels::ENV),
                    attrs.get(labels::SERVICE),
                ) {
                    (Some(a), Some(en), Some(s)) => Some(ServiceKey::new(a, en, s)),
                    _ => None,
                };
                Ok(ContainerEvent {
                    container_id: actor.id.unwrap_or_default(),
                    action: e.action.unwrap_or_default(),
                    service,
                })
            })
    }

    /// A container's log lines (stdout and stderr).
    pub fn logs(
        &self,
        id: &str,
        follow: bool,
        since_secs: Option<i64>,
        tail: Option<u32>,
    ) -> impl Stream<Item = Result<String>> + Send + 'static {
        let opts = LogsOptions {
            follow,
            stdout: true,
            stderr: true,
            since: since_secs.unwrap_or(0).clamp(0, i64::from(i32::MAX)) as i32,
            tail: tail.map_or_else(|| "all".to_owned(), |t| t.to_string()),
            ..Default::default()
        };
        self.docker
            .logs(id, Some(opts))
            .map_ok(|o| String::from_utf8_lossy(&o.into_bytes()).into_owned())
            .map_err(RuntimeError::from)
    }
}

impl ImageInfo {
    /// What a revision pins: the repo digest (`repo@sha256:...`) when the image came from a
    /// registry, else the engine's image id.
    pub fn pinned(&self) -> String {
        self.repo_digest.clone().unwrap_or_else(|| self.id.clone())
    }
}

/// Go architecture names, with the kernel's spellings folded in.
fn normalize_arch(a: &str) -> &str {
    match a {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" | "arm64/v8" => "arm64",
        other => other,
    }
}

fn image_info(image: &str, i: bollard::models::ImageInspect) -> ImageInfo {
    // The repo digest of the repository asked for (an image may carry several).
    let (repo, _) = split_tag(image);
    let repo_digest = i.repo_digests.and_then(|d| {
        d.into_iter()
            .find(|rd| rd.split_once('@').is_some_and(|(r, _)| r == repo))
    });
    ImageInfo {
        id: i.id.unwrap_or_default(),
        repo_digest,
        os: i.os,
        architecture: i.architecture,
    }
}

/// Splits `repo[:tag]` (a registry port is not a tag); digests stay whole.
pub fn split_tag(image: &str) -> (&str, &str) {
    if let Some((repo, digest)) = image.split_once('@') {
        let _ = digest;
        return (repo, &image[repo.len() + 1..]);
    }
    let slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[slash..].rfind(':') {
        Some(i) => (&image[..slash + i], &image[slash + i + 1..]),
        None => (image, "latest"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_hosts() {
        assert_eq!(
            registry_host("127.0.0.1:5000/a/b:c"),
            Some("127.0.0.1:5000")
        );
        assert_eq!(registry_host("localhost/a"), Some("localhost"));
        assert_eq!(registry_host("ghcr.io/a/b"), Some("ghcr.io"));
        assert_eq!(registry_host("team/app:v1"), None);
        assert_eq!(registry_host("hello"), None);
    }

    #[test]
    fn tags_split() {
        assert_eq!(split_tag("hello:v1"), ("hello", "v1"));
        assert_eq!(split_tag("hello"), ("hello", "latest"));
        assert_eq!(
            split_tag("localhost:5000/a/b:c"),
            ("localhost:5000/a/b", "c")
        );
        assert_eq!(
            split_tag("localhost:5000/a/b"),
            ("localhost:5000/a/b", "latest")
        );
    }

    #[test]
    fn health_parsed_from_status() {
        assert_eq!(
            health_from_status("Up 3 seconds (healthy)"),
            EngineHealth::Healthy
        );
        assert_eq!(
            health_from_status("Up 3 seconds (health: starting)"),
            EngineHealth::Starting
        );
        assert_eq!(
            health_from_status("Up 1 minute (unhealthy)"),
            EngineHealth::Unhealthy
        );
        assert_eq!(health_from_status("Up 3 seconds"), EngineHealth::None);
    }

    #[test]
    fn docker_times_parse() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(
            parse_rfc3339_ms("2026-11-21T23:46:49.123456789Z"),
            Some(1_795_304_809_123)
        );
        assert_eq!(parse_rfc3339_ms("0001-01-01T00:00:00Z"), None);
    }
}
