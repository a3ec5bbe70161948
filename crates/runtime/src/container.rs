//! A task's container from creation to removal: the container's configuration (image,
//! command, environment and secrets, health check, limits, labels, mounts, log driver,
//! network and published port), its secret files, start, address, stop and removal (with
//! the network isolation rules that go with it).

use super::*;

impl DockerRuntime {
    /// Creates a task's container (not started): its id. A task of several containers is
    /// created as a group (see [`crate::pod`]) and the main container's id is returned.
    pub async fn create(&self, t: &TaskLaunch<'_>) -> Result<String> {
        if !t.container.sidecars.is_empty() {
            let created = self.create_group(t).await;
            self.isolate_group(t, &created).await;
            return created;
        }
        let c = t.container;
        let mut env: Vec<String> = c
            .environment
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        env.extend(t.extra_env.iter().map(|(k, v)| format!("{k}={v}")));
        let labels = self.task_labels(t);
        let healthcheck = c.healthcheck.as_ref().map(health_config);
        let mut mounts = self.volume_mounts(t, c);
        let secret_dir = match self.secret_dir_mount(t).await? {
            Some(m) => {
                let dir = m.source.clone().map(std::path::PathBuf::from);
                mounts.push(m);
                dir
            }
            None => None,
        };
        let mut host_config = HostConfig {
            mounts: (!mounts.is_empty()).then_some(mounts),
            init: c.init.then_some(true),
            log_config: Some(default_log_config()),
            ..Default::default()
        };
        apply_limits(c, &mut host_config);
        let mut body = ContainerCreateBody {
            image: Some(c.image_digest.clone().unwrap_or_else(|| c.image.clone())),
            env: Some(env),
            cmd: c.command.clone(),
            entrypoint: c.entrypoint.clone(),
            user: c.user.clone(),
            labels: Some(labels),
            healthcheck,
            stop_timeout: Some((c.stop_timeout_ms / 1000).max(1) as i64),
            host_config: Some(host_config),
            ..Default::default()
        };
        self.attach_network(t, &mut body);
        let name = format!(
            "{}-{}-{}-{}",
            t.service.app, t.service.env, t.service.name, t.task_id
        );
        let created = self.create_named(name, body).await;
        if created.is_err()
            && let Some(dir) = &secret_dir
        {
            secret_files::remove(&self.secret_root, dir);
        }
        // Other app environments' containers must not reach the published port: the rule
        // is in place before the task starts (see [`isolation`]). Without iptables the task
        // still runs (a warning says its port is not isolated).
        if let (Ok(id), Some((ip, port))) = (&created, t.publish)
            && let Ok(ip) = ip.parse::<std::net::IpAddr>()
            && isolation::block_task(id, std::net::SocketAddr::new(ip, port))
                .await
                .is_ok()
        {
            self.prune_isolation().await;
        }
        created
    }

    /// Drops the isolation rules of containers that no longer exist (see
    /// [`isolation::prune_tasks`]); nothing when the engine cannot list them.
    async fn prune_isolation(&self) {
        let opts = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([(
                "label".to_owned(),
                vec![CLUSTER_LABEL.to_owned()],
            )])),
            ..Default::default()
        };
        let Ok(list) = self.docker.list_containers(Some(opts)).await else {
            return;
        };
        let ids: Vec<String> = list.into_iter().filter_map(|c| c.id).collect();
        isolation::prune_tasks(|prefix| ids.iter().any(|id| id.starts_with(prefix))).await;
    }

    /// Writes a task's file secrets into their directory (see [`secret_files`]), owned by
    /// the container's user when it is numeric (the spec's `user`, else the image's).
    async fn write_secret_files(&self, t: &TaskLaunch<'_>) -> Result<std::path::PathBuf> {
        let c = t.container;
        let user = match &c.user {
            Some(u) => Some(u.clone()),
            None => {
                let image = c.image_digest.as_deref().unwrap_or(&c.image);
                match self.docker.inspect_image(image).await {
                    Ok(i) => Some(i.config.and_then(|c| c.user).unwrap_or_default()),
                    Err(_) => None,
                }
            }
        };
        // No user at all runs as root.
        let owner = user.and_then(|u| {
            if u.trim().is_empty() {
                Some((0, 0))
            } else {
                secret_files::numeric_owner(&u)
            }
        });
        let root = self.secret_root.clone();
        let dir = secret_files::task_dir(&root, t.cluster, t.task_id)?;
        let files = t.secret_files.to_vec();
        let d = dir.clone();
        tokio::task::spawn_blocking(move || secret_files::write(&root, &d, &files, owner))
            .await
            .map_err(|e| RuntimeError::Unreachable(format!("writing secret files: {e}")))??;
        Ok(dir)
    }

    /// Starts a task's container; a group's containers start in their order (see
    /// [`crate::pod`]), each once its dependencies' conditions hold.
    pub async fn start(&self, id: &str) -> Result<()> {
        if let Some((_, members)) = self.group_of(id).await? {
            return self.start_group(&members).await;
        }
        match self.docker.start_container(id, None).await {
            Ok(()) => Ok(()),
            // 304: already started.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The task's address on a network (a group's is its holder's).
    pub async fn address(&self, id: &str, network: &str) -> Result<Option<String>> {
        let c = self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await?;
        let mode = c
            .host_config
            .as_ref()
            .and_then(|h| h.network_mode.clone())
            .unwrap_or_default();
        if let Some(holder) = mode.strip_prefix("container:") {
            return Box::pin(self.address(holder, network)).await;
        }
        Ok(c.network_settings
            .and_then(|n| n.networks)
            .and_then(|mut n| n.remove(network))
            .and_then(|e| e.ip_address)
            .filter(|ip| !ip.is_empty()))
    }

    /// SIGTERM, then SIGKILL after `timeout`. Waits until the container has stopped. A
    /// group stops in the reverse of its start order: the main container (with `timeout`)
    /// before the sidecars it depends on.
    pub async fn stop(&self, id: &str, timeout: Duration) -> Result<()> {
        if let Some((_, members)) = self.group_of(id).await? {
            return self.stop_group(&members, timeout).await;
        }
        self.stop_one(id, timeout).await
    }

    pub(crate) async fn stop_one(&self, id: &str, timeout: Duration) -> Result<()> {
        let t = timeout.as_secs().clamp(0, i32::MAX as u64) as i32;
        match self
            .docker
            .stop_container(
                id,
                Some(StopContainerOptions {
                    t: Some(t),
                    signal: None,
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304 | 404,
                ..
            }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes a task's container (forcibly) and its secret files; a missing container is
    /// not an error. A group goes whole.
    pub async fn remove(&self, id: &str) -> Result<()> {
        if let Some((_, members)) = self.group_of(id).await? {
            for m in members.iter().rev() {
                self.remove_one(&m.id).await?;
            }
            return Ok(());
        }
        self.remove_one(id).await
    }

    async fn remove_one(&self, id: &str) -> Result<()> {
        // What goes with the container, read before it is gone: the secret files'
        // directory (only when this host has any) and whether its port is published (then
        // it has an isolation rule).
        let inspected = self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .ok();
        let published = inspected
            .as_ref()
            .and_then(|c| c.host_config.as_ref())
            .and_then(|h| h.port_bindings.as_ref())
            .is_some_and(|b| {
                b.values()
                    .any(|v| v.as_ref().is_some_and(|v| !v.is_empty()))
            });
        let full_id = inspected.as_ref().and_then(|c| c.id.clone());
        let secret_dir = if self.secret_root.exists() {
            inspected
                .and_then(|c| c.mounts)
                .unwrap_or_default()
                .into_iter()
                .find(|m| m.destination.as_deref() == Some(secret_files::MOUNT_PATH))
                .and_then(|m| m.source)
                .map(std::path::PathBuf::from)
        } else {
            None
        };
        let opts = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        let removed = match self.docker.remove_container(id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404 | 409,
                ..
            }) => Ok(()),
            Err(e) => Err(e.into()),
        };
        if removed.is_ok()
            && let Some(dir) = secret_dir
        {
            secret_files::remove(&self.secret_root, &dir);
        }
        if removed.is_ok()
            && published
            && let Some(full_id) = full_id
        {
            isolation::unblock_task(&full_id).await;
        }
        removed
    }

    /// The labels of every container of a task.
    pub(crate) fn task_labels(&self, t: &TaskLaunch<'_>) -> HashMap<String, String> {
        HashMap::from([
            (CLUSTER_LABEL.to_owned(), t.cluster.to_owned()),
            (labels::APP.to_owned(), t.service.app.clone()),
            (labels::ENV.to_owned(), t.service.env.clone()),
            (labels::SERVICE.to_owned(), t.service.name.clone()),
            (labels::TASK.to_owned(), t.task_id.to_owned()),
            (labels::REVISION.to_owned(), t.revision.to_string()),
            (labels::DEPLOYMENT.to_owned(), t.deployment_id.to_owned()),
        ])
    }

    /// Puts the container that owns a task's network namespace on the app network: its
    /// aliases (the service's names), DNS and the published port of the task's port.
    pub(crate) fn attach_network(&self, t: &TaskLaunch<'_>, body: &mut ContainerCreateBody) {
        // Standalone tasks are not reachable by a service name.
        let aliases = if t.service.is_standalone() {
            Vec::new()
        } else {
            vec![
                t.service.name.clone(),
                format!(
                    "{}.{}.{}.internal",
                    t.service.name, t.service.env, t.service.app
                ),
            ]
        };
        let port = t.container.port;
        // A published port is also exposed (the engine ignores a binding of a port the
        // image does not `EXPOSE`).
        if let (Some(_), Some(port)) = (t.publish, port) {
            body.exposed_ports = Some(vec![format!("{port}/tcp")]);
        }
        let hc = body.host_config.get_or_insert_with(Default::default);
        hc.network_mode = Some(t.network.to_owned());
        hc.dns = (!t.dns.is_empty()).then(|| t.dns.to_vec());
        if let (Some((ip, host_port)), Some(port)) = (t.publish, port) {
            hc.port_bindings = Some(HashMap::from([(
                format!("{port}/tcp"),
                Some(vec![PortBinding {
                    host_ip: Some(ip.to_owned()),
                    host_port: Some(host_port.to_string()),
                }]),
            )]));
        }
        body.networking_config = Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                t.network.to_owned(),
                EndpointSettings {
                    aliases: Some(aliases),
                    ..Default::default()
                },
            )])),
        });
    }

    /// The app environment's named volumes a container mounts.
    pub(crate) fn volume_mounts(&self, t: &TaskLaunch<'_>, c: &ContainerSpec) -> Vec<Mount> {
        c.volumes
            .iter()
            .map(|v| Mount {
                target: Some(v.path.clone()),
                source: Some(v.docker_name(t.service)),
                typ: Some(MountType::VOLUME),
                read_only: Some(v.read_only),
                // Labels of a volume the engine creates on first use.
                volume_options: Some(MountVolumeOptions {
                    labels: Some(HashMap::from([
                        (CLUSTER_LABEL.to_owned(), t.cluster.to_owned()),
                        (labels::APP.to_owned(), t.service.app.clone()),
                        (labels::ENV.to_owned(), t.service.env.clone()),
                    ])),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect()
    }

    /// Writes the task's file secrets and returns their read-only mount; `None` when it
    /// has none.
    pub(crate) async fn secret_dir_mount(&self, t: &TaskLaunch<'_>) -> Result<Option<Mount>> {
        if t.secret_files.is_empty() {
            return Ok(None);
        }
        let dir = self.write_secret_files(t).await?;
        Ok(Some(Mount {
            target: Some(secret_files::MOUNT_PATH.to_owned()),
            source: Some(dir.display().to_string()),
            typ: Some(MountType::BIND),
            read_only: Some(true),
            ..Default::default()
        }))
    }

    /// The isolation rule of a group's published port (on its holder), as [`Self::create`]
    /// sets one for a task of one container.
    async fn isolate_group(&self, t: &TaskLaunch<'_>, created: &Result<String>) {
        let (Ok(_), Some((ip, port))) = (created, t.publish) else {
            return;
        };
        let Ok(ip) = ip.parse::<std::net::IpAddr>() else {
            return;
        };
        let Ok(members) = self.group_members(t.task_id).await else {
            return;
        };
        if let Some(h) = members.iter().find(|m| m.role == "holder")
            && isolation::block_task(&h.id, std::net::SocketAddr::new(ip, port))
                .await
                .is_ok()
        {
            self.prune_isolation().await;
        }
    }
}

/// Docker's form of a command health check.
pub(crate) fn health_config(h: &slipway_core::model::CommandHealthCheck) -> HealthConfig {
    HealthConfig {
        test: Some(h.test.clone()),
        interval: Some(h.interval_ms as i64 * 1_000_000),
        timeout: Some(h.timeout_ms as i64 * 1_000_000),
        retries: Some(i64::from(h.retries)),
        start_period: Some(h.start_period_ms as i64 * 1_000_000),
        start_interval: None,
    }
}

/// Output kept by the engine, within bounds.
pub(crate) fn default_log_config() -> HostConfigLogConfig {
    HostConfigLogConfig {
        typ: Some("json-file".into()),
        config: Some(HashMap::from([
            ("max-size".into(), "10m".into()),
            ("max-file".into(), "3".into()),
        ])),
    }
}

/// A container's CPU and memory limits.
pub(crate) fn apply_limits(c: &ContainerSpec, hc: &mut HostConfig) {
    // Docker refuses less than 0.01 CPU.
    hc.nano_cpus = c
        .cpu
        .map(|cpu| (i64::from(cpu) * 1_000_000_000 / 1024).max(10_000_000));
    hc.cpu_shares = c.cpu.map(i64::from);
    hc.memory = c.memory.map(|m| i64::from(m) * 1024 * 1024);
}
