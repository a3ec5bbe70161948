//! The engines of a cluster as one: the server's own host (its Docker engine, in-process)
//! and every host whose agent is connected (calls over the agent protocol). The controller
//! and the application layer go through this for everything they ask of an engine.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use slipway_core::model::{PullPolicy, ServiceKey};
use slipway_runtime::{
    ContainerInfo, DockerRuntime, ExecOutput, ExitInfo, ImageInfo, RuntimeError, TaskLaunch,
};

use crate::hub::{CALL_TIMEOUT, Hub, HubError};
use crate::proto::{Launch, Op, ProbeResult, RegistryAuth, ToAgent};

/// Why something asked of a host failed.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Hub(#[from] HubError),
}

impl HostError {
    /// The host cannot be reached (not that it refused).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            HostError::Hub(
                HubError::NotConnected(_) | HubError::Dropped { .. } | HubError::Timeout { .. }
            )
        )
    }
}

pub type Result<T, E = HostError> = std::result::Result<T, E>;

/// How the server's own registry is reached from other hosts, and with what.
pub trait RemoteRegistry: Send + Sync + 'static {
    /// `(name, reachable)`: spellings of the server's registry in image references
    /// (`127.0.0.1:7780`) and the one other hosts reach it at (`10.0.0.5:7780`).
    fn rewrite(&self) -> Option<(Vec<String>, String)>;
    /// A short-lived pull credential for it.
    fn credentials(&self) -> Option<(String, String)>;
}

#[derive(Clone)]
struct Local {
    id: String,
    rt: DockerRuntime,
    /// The address its tasks' ports are published on (none: not published).
    publish: Option<String>,
    /// Service names across hosts on this host: started with the first map of a cluster
    /// of several hosts (`Some(None)`: it could not start).
    discovery: Arc<crate::hosts::DiscoveryCell>,
}

/// What listing every host found.
#[derive(Debug, Default)]
pub struct Listing {
    /// Containers of this cluster, each with its host.
    pub containers: Vec<ContainerInfo>,
    /// The hosts that answered (a task on another host is not known to be gone).
    pub listed: BTreeSet<String>,
}

/// The engines of the cluster (cheap to clone).
#[derive(Clone)]
pub struct Hosts {
    local: Option<Local>,
    hub: Hub,
    registry: Option<Arc<dyn RemoteRegistry>>,
    loss_timeout: std::time::Duration,
}

/// How long a host may go unheard before it is lost, unless configured (Swarm: ~15 s,
/// Nomad: ~20 s).
pub const LOSS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl std::fmt::Debug for Hosts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hosts")
            .field("local", &self.local.as_ref().map(|l| &l.id))
            .field("hub", &self.hub)
            .finish()
    }
}

/// A free TCP port on `ip` (bound once, then released): where a task's port is published.
pub fn free_port(ip: &str) -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind((ip, 0))?;
    Ok(l.local_addr()?.port())
}

/// A host's discovery (resolver and proxies), started with the first service map.
pub(crate) type DiscoveryCell = tokio::sync::OnceCell<Option<Arc<crate::discovery::Discovery>>>;

/// Creates a task's container on the engine of this process's host (the server's own or an
/// agent's): its port published on `publish_on` when the launch asks, its DNS through the
/// host's discovery when that runs. The container's id.
pub(crate) async fn create_here(
    rt: &DockerRuntime,
    launch: &Launch,
    publish_on: Option<&str>,
    discovery: &DiscoveryCell,
) -> std::result::Result<String, RuntimeError> {
    let port = match (publish_on, launch.publish, launch.container.port) {
        (Some(ip), true, Some(_)) => Some((
            ip,
            free_port(ip)
                .map_err(|e| RuntimeError::Unreachable(format!("no free port on {ip}: {e}")))?,
        )),
        _ => None,
    };
    let t = TaskLaunch {
        cluster: &launch.cluster,
        service: &launch.service,
        task_id: &launch.task_id,
        deployment_id: &launch.deployment_id,
        revision: launch.revision,
        network: &launch.network,
        container: &launch.container,
        extra_env: &launch.extra_env,
        secret_files: &launch.secret_files,
        sidecar_env: &launch.sidecar_env,
        publish: port,
        dns: &discovery
            .get()
            .and_then(|d| d.as_ref().map(|d| d.dns()))
            .unwrap_or_default(),
    };
    rt.create(&t).await
}

impl Hosts {
    /// `local`: the server's own host (its id, engine and the address to publish task
    /// ports on), unless it runs no tasks.
    pub fn new(
        local: Option<(String, DockerRuntime, Option<String>)>,
        hub: Hub,
        registry: Option<Arc<dyn RemoteRegistry>>,
    ) -> Self {
        Hosts {
            local: local.map(|(id, rt, publish)| Local {
                id,
                rt,
                publish,
                discovery: Arc::default(),
            }),
            hub,
            registry,
            loss_timeout: LOSS_TIMEOUT,
        }
    }

    /// How long a host may go unheard before it is lost (and its tasks replaced).
    pub fn with_loss_timeout(mut self, d: std::time::Duration) -> Self {
        self.loss_timeout = d;
        self
    }

    pub fn loss_timeout(&self) -> std::time::Duration {
        self.loss_timeout
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The server's own host.
    pub fn local_id(&self) -> Option<&str> {
        self.local.as_ref().map(|l| l.id.as_str())
    }

    pub fn local_runtime(&self) -> Option<&DockerRuntime> {
        self.local.as_ref().map(|l| &l.rt)
    }

    fn local_for(&self, host: &str) -> Option<&Local> {
        self.local.as_ref().filter(|l| l.id == host)
    }

    /// Whether the host can be asked anything now.
    pub fn is_up(&self, host: &str) -> bool {
        self.local_for(host).is_some() || self.hub.is_connected(host)
    }

    /// Sends every host the services of the cluster for discovery across hosts: each
    /// connected agent, and the server's own host (its resolver starts with the first map).
    pub async fn push_services(&self, map: &crate::discovery::ServiceMap) {
        for h in self.remote_up() {
            self.hub.send(&h, ToAgent::Services { map: map.clone() });
        }
        if let Some(l) = &self.local {
            // Containers of this host must not reach other hosts' published tasks.
            let _ = slipway_runtime::isolation::sync_remote(&map.cluster, &map.published).await;
            let rt = l.rt.clone();
            let d = l
                .discovery
                .get_or_init(|| crate::discovery::Discovery::start(rt))
                .await;
            if let Some(d) = d {
                d.apply(map.clone()).await;
            }
        }
    }

    /// Forgets a removed host: removes the containers of `cluster` there while its agent is
    /// still connected (best effort: a host out of reach keeps them), then ends its
    /// connection (its credential no longer works). How many containers were removed.
    pub async fn forget(&self, host: &str, cluster: &str) -> usize {
        let mut removed = 0;
        if self.local_for(host).is_none() && self.hub.is_connected(host) {
            let listed = self
                .hub
                .call::<Vec<ContainerInfo>>(
                    host,
                    Op::List {
                        cluster: cluster.to_owned(),
                    },
                    Duration::from_secs(10),
                )
                .await;
            for c in listed.unwrap_or_default() {
                match self.remove(host, &c.id).await {
                    Ok(()) => removed += 1,
                    Err(e) => {
                        tracing::warn!(%host, container = %c.id, error = %e, "cannot remove a container of a removed host")
                    }
                }
            }
        }
        self.hub.disconnect(host);
        removed
    }

    /// Agent hosts this server has not heard from for `after` (connected or not) among
    /// those it has heard from since it started.
    pub fn silent_hosts(&self, after: std::time::Duration) -> std::collections::BTreeSet<String> {
        self.hub.silent(after)
    }

    /// The hosts that can be asked anything now.
    pub fn up(&self) -> Vec<String> {
        let mut v: Vec<String> = self.hub.connected().into_iter().map(|h| h.host).collect();
        if let Some(l) = &self.local {
            v.push(l.id.clone());
        }
        v.sort();
        v.dedup();
        v
    }

    /// Every container of the cluster on every host that answers.
    pub async fn list(&self, cluster: &str) -> Listing {
        let mut out = Listing::default();
        if let Some(l) = &self.local {
            match l.rt.list(cluster).await {
                Ok(cs) => {
                    out.listed.insert(l.id.clone());
                    out.containers.extend(cs.into_iter().map(|mut c| {
                        c.host = l.id.clone();
                        c
                    }));
                }
                Err(e) => tracing::warn!(host = %l.id, error = %e, "cannot list containers"),
            }
        }
        let remote: Vec<String> = self
            .hub
            .connected()
            .into_iter()
            .map(|h| h.host)
            .filter(|h| self.local_for(h).is_none())
            .collect();
        let calls = remote.iter().map(|h| {
            self.hub.call::<Vec<ContainerInfo>>(
                h,
                Op::List {
                    cluster: cluster.to_owned(),
                },
                Duration::from_secs(10),
            )
        });
        for (h, r) in remote
            .iter()
            .zip(futures_util::future::join_all(calls).await)
        {
            match r {
                Ok(cs) => {
                    out.listed.insert(h.clone());
                    out.containers.extend(cs.into_iter().map(|mut c| {
                        c.host = h.clone();
                        c
                    }));
                }
                Err(e) => tracing::warn!(host = %h, error = %e, "cannot list containers"),
            }
        }
        out
    }

    pub async fn exit_info(&self, host: &str, container: &str) -> Result<Option<ExitInfo>> {
        match self.local_for(host) {
            Some(l) => Ok(l.rt.exit_info(container).await?),
            None => Ok(self
                .hub
                .call(
                    host,
                    Op::ExitInfo {
                        container: container.to_owned(),
                    },
                    CALL_TIMEOUT,
                )
                .await?),
        }
    }

    /// Makes sure the app environment's network exists on `host`; returns its name.
    pub async fn ensure_network(
        &self,
        host: &str,
        cluster: &str,
        key: &ServiceKey,
    ) -> Result<String> {
        match self.local_for(host) {
            Some(l) => Ok(l.rt.ensure_network(cluster, key).await?),
            None => Ok(self
                .hub
                .call(
                    host,
                    Op::EnsureNetwork {
                        cluster: cluster.to_owned(),
                        key: key.clone(),
                    },
                    CALL_TIMEOUT,
                )
                .await?),
        }
    }

    /// Removes the app environment's network from every host that answers.
    pub async fn remove_network(&self, cluster: &str, key: &ServiceKey) -> Result<()> {
        if let Some(l) = &self.local {
            l.rt.remove_network(cluster, key).await?;
        }
        for h in self.remote_up() {
            let r: Result<(), HubError> = self
                .hub
                .call(
                    &h,
                    Op::RemoveNetwork {
                        cluster: cluster.to_owned(),
                        key: key.clone(),
                    },
                    CALL_TIMEOUT,
                )
                .await;
            if let Err(e) = r {
                tracing::warn!(host = %h, error = %e, "cannot remove a network");
            }
        }
        Ok(())
    }

    /// Removes an app's (or environment's) networks from every host; their names.
    pub async fn remove_app_networks(
        &self,
        cluster: &str,
        app: &str,
        env: Option<&str>,
    ) -> Result<Vec<String>> {
        let mut out = Vec::new();
        if let Some(l) = &self.local {
            out.extend(l.rt.remove_app_networks(cluster, app, env).await?);
        }
        for h in self.remote_up() {
            let names: Vec<String> = self
                .hub
                .call(
                    &h,
                    Op::RemoveAppNetworks {
                        cluster: cluster.to_owned(),
                        app: app.to_owned(),
                        env: env.map(str::to_owned),
                    },
                    CALL_TIMEOUT,
                )
                .await?;
            out.extend(names);
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn remote_up(&self) -> Vec<String> {
        self.hub
            .connected()
            .into_iter()
            .map(|h| h.host)
            .filter(|h| self.local_for(h).is_none())
            .collect()
    }

    /// Creates a task's container on `host` (not started); its id.
    pub async fn create(&self, host: &str, mut launch: Launch) -> Result<String> {
        if let Some(l) = self.local_for(host) {
            return Ok(create_here(&l.rt, &launch, l.publish.as_deref(), &l.discovery).await?);
        }
        launch.auth = self.remote_auth(&mut launch.container.image);
        if let Some(d) = launch.container.image_digest.as_mut() {
            self.rewrite_image(d);
        }
        for s in &mut launch.container.sidecars {
            self.rewrite_image(&mut s.container.image);
            if let Some(d) = s.container.image_digest.as_mut() {
                self.rewrite_image(d);
            }
        }
        Ok(self
            .hub
            .call(
                host,
                Op::Create {
                    launch: Box::new(launch),
                },
                // Creating may pull the image first.
                Duration::from_secs(600),
            )
            .await?)
    }

    /// An image reference of the server's own registry as other hosts reach it.
    fn rewrite_image(&self, image: &mut String) {
        let Some((names, reachable)) = self.registry.as_ref().and_then(|r| r.rewrite()) else {
            return;
        };
        if let Some(host) = slipway_runtime::registry_host(image)
            && names.iter().any(|n| n.eq_ignore_ascii_case(host))
        {
            *image = format!("{reachable}{}", &image[host.len()..]);
        }
    }

    /// Rewrites `image` for a remote host and the credentials its pull needs.
    fn remote_auth(&self, image: &mut String) -> Vec<RegistryAuth> {
        self.rewrite_image(image);
        let Some(r) = &self.registry else {
            return Vec::new();
        };
        match (r.rewrite(), r.credentials()) {
            (Some((_, reachable)), Some((username, password))) => vec![RegistryAuth {
                registry: reachable,
                username,
                password,
            }],
            _ => Vec::new(),
        }
    }

    pub async fn start(&self, host: &str, container: &str) -> Result<()> {
        match self.local_for(host) {
            Some(l) => Ok(l.rt.start(container).await?),
            None => Ok(self
                .hub
                .call(
                    host,
                    Op::Start {
                        container: container.to_owned(),
                    },
                    // A task of several containers starts each after its dependencies.
                    CALL_TIMEOUT + slipway_runtime::pod::DEPENDENCY_TIMEOUT,
                )
                .await?),
        }
    }

    pub async fn address(
        &self,
        host: &str,
        container: &str,
        network: &str,
    ) -> Result<Option<String>> {
        match self.local_for(host) {
            Some(l) => Ok(l.rt.address(container, network).await?),
            None => Ok(self
                .hub
                .call(
                    host,
                    Op::Address {
                        container: container.to_owned(),
                        network: network.to_owned(),
                    },
                    CALL_TIMEOUT,
                )
                .await?),
        }
    }

    /// SIGTERM, then SIGKILL after `timeout`; returns once stopped.
    pub async fn stop(&self, host: &str, container: &str, timeout: Duration) -> Result<()> {
        match self.local_for(host) {
            Some(l) => Ok(l.rt.stop(container, timeout).await?),
            None => Ok(self
                .hub
                .call(
                    host,
                    Op::Stop {
                        container: container.to_owned(),
                        timeout_ms: timeout.as_millis() as u64,
                    },
                    CALL_TIMEOUT + timeout,
                )
                .await?),
        }
    }

    pub async fn remove(&self, host: &str, container: &str) -> Result<()> {
        match self.local_for(host) {
            Some(l) => Ok(l.rt.remove(container).await?),
            None => Ok(self
                .hub
                .call(
                    host,
                    Op::Remove {
                        container: container.to_owned(),
                    },
                    CALL_TIMEOUT,
                )
                .await?),
        }
    }

    /// A container's log lines (each item may hold several lines).
    pub fn logs(
        &self,
        host: &str,
        container: &str,
        follow: bool,
        since: Option<i64>,
        tail: Option<u32>,
    ) -> BoxStream<'static, Result<String, String>> {
        match self.local_for(host) {
            Some(l) => {
                l.rt.logs(container, follow, since, tail)
                    .map(|r| r.map_err(|e| e.to_string()))
                    .boxed()
            }
            None => match self.hub.stream(
                host,
                Op::Logs {
                    container: container.to_owned(),
                    follow,
                    since,
                    tail,
                },
            ) {
                Ok(s) => s.map(|r| r.map_err(|e| e.to_string())).boxed(),
                Err(e) => futures_util::stream::once(async move { Err(e.to_string()) }).boxed(),
            },
        }
    }

    pub async fn exec(
        &self,
        host: &str,
        container: &str,
        cmd: Vec<String>,
        max_output: usize,
    ) -> Result<ExecOutput> {
        match self.local_for(host) {
            Some(l) => Ok(l.rt.exec(container, cmd, max_output).await?),
            None => Ok(self
                .hub
                .call(
                    host,
                    Op::Exec {
                        container: container.to_owned(),
                        cmd,
                        max_output,
                    },
                    CALL_TIMEOUT,
                )
                .await?),
        }
    }

    /// A health probe run on `host` (a remote host's tasks are reachable only there). An
    /// error is the host's (not connected, the call lost or timed out): it says nothing of
    /// the task's health.
    pub async fn probe_remote(
        &self,
        host: &str,
        url: &str,
        timeout: Duration,
    ) -> std::result::Result<ProbeResult, HubError> {
        self.hub
            .call(
                host,
                Op::Probe {
                    url: url.to_owned(),
                    timeout_ms: timeout.as_millis() as u64,
                },
                timeout + Duration::from_secs(5),
            )
            .await
    }

    /// Resolves an image on the server's own host (what deploys pin).
    pub async fn resolve_image(&self, image: &str, pull: PullPolicy) -> Result<ImageInfo> {
        match &self.local {
            Some(l) => Ok(l.rt.resolve_image(image, pull).await?),
            None => {
                let host = self
                    .hub
                    .connected()
                    .into_iter()
                    .map(|h| h.host)
                    .next()
                    .ok_or_else(|| HubError::NotConnected("any".into()))?;
                let mut image = image.to_owned();
                let auth = self.remote_auth(&mut image);
                Ok(self
                    .hub
                    .call(
                        &host,
                        Op::ResolveImage { image, pull, auth },
                        Duration::from_secs(600),
                    )
                    .await?)
            }
        }
    }

    /// The platform of the hosts (`os/arch`): the local host's, else the first agent's.
    pub fn platform(&self) -> String {
        if let Some(l) = &self.local {
            return l.rt.host_platform();
        }
        self.hub
            .connected()
            .into_iter()
            .map(|h| h.platform)
            .next()
            .unwrap_or_else(|| "linux/amd64".into())
    }

    /// Platforms of every host that is up, by host.
    pub fn platforms(&self) -> HashMap<String, String> {
        let mut m: HashMap<String, String> = self
            .hub
            .connected()
            .into_iter()
            .map(|h| (h.host, h.platform))
            .collect();
        if let Some(l) = &self.local {
            m.insert(l.id.clone(), l.rt.host_platform());
        }
        m
    }
}
