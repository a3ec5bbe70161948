//! A task's container from creation to removal: the container's configuration (image,
//! command, environment and secrets, health check, limits, labels, mounts, log driver,
//! network and published port), its secret files, start, address, stop and removal (with
//! the network isolation rules that go with it).

use super::*;

impl DockerRuntime {
    /// Creates a task's container (not started). Returns its id.
    pub async fn create(&self, t: &TaskLaunch<'_>) -> Result<String> {
        let c = t.container;
        let mut env: Vec<String> = c
            .environment
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        env.extend(t.extra_env.iter().map(|(k, v)| format!("{k}={v}")));
        let labels = HashMap::from([
            (CLUSTER_LABEL.to_owned(), t.cluster.to_owned()),
            (labels::APP.to_owned(), t.service.app.clone()),
            (labels::ENV.to_owned(), t.service.env.clone()),
            (labels::SERVICE.to_owned(), t.service.name.clone()),
            (labels::TASK.to_owned(), t.task_id.to_owned()),
            (labels::REVISION.to_owned(), t.revision.to_string()),
            (labels::DEPLOYMENT.to_owned(), t.deployment_id.to_owned()),
        ]);
        let healthcheck = c.healthcheck.as_ref().map(|h| HealthConfig {
            test: Some(h.test.clone()),
            interval: Some(h.interval_ms as i64 * 1_000_000),
            timeout: Some(h.timeout_ms as i64 * 1_000_000),
            retries: Some(i64::from(h.retries)),
            start_period: Some(h.start_period_ms as i64 * 1_000_000),
            start_interval: None,
        });
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
        // A published port is also exposed (the engine ignores a binding of a port the
        // image does not `EXPOSE`).
        let exposed_ports = match (t.publish, c.port) {
            (Some(_), Some(port)) => Some(vec![format!("{port}/tcp")]),
            _ => None,
        };
        let port_bindings = match (t.publish, c.port) {
            (Some((ip, host_port)), Some(port)) => Some(HashMap::from([(
                format!("{port}/tcp"),
                Some(vec![PortBinding {
                    host_ip: Some(ip.to_owned()),
                    host_port: Some(host_port.to_string()),
                }]),
            )])),
            _ => None,
        };
        let mut mounts: Vec<Mount> = c
            .volumes
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
            .collect();
        let secret_dir = if t.secret_files.is_empty() {
            None
        } else {
            let dir = self.write_secret_files(t).await?;
            mounts.push(Mount {
                target: Some(secret_files::MOUNT_PATH.to_owned()),
                source: Some(dir.display().to_string()),
                typ: Some(MountType::BIND),
                read_only: Some(true),
                ..Default::default()
            });
            Some(dir)
        };
        let host_config = HostConfig {
            network_mode: Some(t.network.to_owned()),
            mounts: (!mounts.is_empty()).then_some(mounts),
            port_bindings,
            dns: (!t.dns.is_empty()).then(|| t.dns.to_vec()),
            // Docker refuses less than 0.01 CPU.
            nano_cpus: c
                .cpu
                .map(|cpu| (i64::from(cpu) * 1_000_000_000 / 1024).max(10_000_000)),
            cpu_shares: c.cpu.map(i64::from),
            memory: c.memory.map(|m| i64::from(m) * 1024 * 1024),
            init: c.init.then_some(true),
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".into()),
                config: Some(HashMap::from([
                    ("max-size".into(), "10m".into()),
                    ("max-file".into(), "3".into()),
                ])),
            }),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(c.image_digest.clone().unwrap_or_else(|| c.image.clone())),
            env: Some(env),
            cmd: c.command.clone(),
            entrypoint: c.entrypoint.clone(),
            user: c.user.clone(),
            labels: Some(labels),
            healthcheck,
            exposed_ports,
            stop_timeout: Some((c.stop_timeout_ms / 1000).max(1) as i64),
            host_config: Some(host_config),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    t.network.to_owned(),
                    EndpointSettings {
                        aliases: Some(aliases),
                        ..Default::default()
                    },
                )])),
            }),
            ..Default::default()
        };
        let name = format!(
            "{}-{}-{}-{}",
            t.service.app, t.service.env, t.service.name, t.task_id
        );
        let opts = CreateContainerOptions {
            name: Some(name),
            ..Default::default()
        };
        let created = match self
            .docker
            .create_container(Some(opts.clone()), body.clone())
            .await
        {
            Ok(r) => Ok(r.id),
            Err(e) => {
                let e = RuntimeError::from(e);
                // A pinned registry image this engine no longer has: pull it by digest.
                let pinned = body.image.as_deref().unwrap_or_default();
                if e.is_not_found() && pinned.contains('@') && registry_host(pinned).is_some() {
                    tracing::info!(image = pinned, "pulling a pinned image the engine lost");
                    match self.pull(pinned).await {
                        Ok(()) => self
                            .docker
                            .create_container(Some(opts), body)
                            .await
                            .map(|r| r.id)
                            .map_err(RuntimeError::from),
                        Err(e) => Err(e),
                    }
                } else {
                    Err(e)
                }
            }
        };
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

    pub async fn start(&self, id: &str) -> Result<()> {
        match self.docker.start_container(id, None).await {
            Ok(()) => Ok(()),
            // 304: already started.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The container's address on a network.
    pub async fn address(&self, id: &str, network: &str) -> Result<Option<String>> {
        let c = self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await?;
        Ok(c.network_settings
            .and_then(|n| n.networks)
            .and_then(|mut n| n.remove(network))
            .and_then(|e| e.ip_address)
            .filter(|ip| !ip.is_empty()))
    }

    /// SIGTERM, then SIGKILL after `timeout`. Waits until the container has stopped.
    pub async fn stop(&self, id: &str, timeout: Duration) -> Result<()> {
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

    /// Removes a container (forcibly) and its secret files; a missing container is not an
    /// error.
    pub async fn remove(&self, id: &str) -> Result<()> {
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
}
