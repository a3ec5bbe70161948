//! A task of several containers on one engine, as ECS runs an `awsvpc` task: a holder
//! container owns the task's network namespace (its address on the app network, its
//! aliases, its published port); every container of the task joins that namespace, so they
//! reach each other on `localhost`. Containers start in their dependency order (each waits
//! for its `dependsOn` conditions), stop in the reverse order, and go together.
//!
//! The group is found from any of its containers through the task label; what start and
//! stop need (order, conditions, essential) is written into labels at creation, so an agent
//! or a restarted server can start or stop a group from a container id alone.
//!
//! The holder runs [`pause`]: a 150-byte static program that waits for a signal, in an
//! image this module imports once per engine (nothing is pulled).

use super::*;
use crate::container::{apply_limits, default_log_config, health_config};
use slipway_core::model::containers::{self, DependencyCondition};

/// Label: the name of a container within its task (set on every container of a group).
pub const CONTAINER_LABEL: &str = "slipway.container";
/// Label: `main`, `sidecar` or `holder` (set on every container of a group).
pub const ROLE_LABEL: &str = "slipway.role";
/// Label: the container's place in the start order (0 first).
const ORDER_LABEL: &str = "slipway.order";
/// Label: `NAME:CONDITION,...`, what the container waits for before it starts.
const DEPENDS_LABEL: &str = "slipway.depends";
/// Label: `true` when the container's stop stops the task.
const ESSENTIAL_LABEL: &str = "slipway.essential";
/// Label: the container's stop timeout in seconds.
const STOP_TIMEOUT_LABEL: &str = "slipway.stop-timeout";

/// The image of the network holder.
pub const HOLDER_IMAGE: &str = "slipway-holder:1";

/// How long a container waits for its dependencies' conditions before the task fails to
/// start.
pub const DEPENDENCY_TIMEOUT: Duration = Duration::from_secs(180);

/// One container of a group, as listed.
#[derive(Debug, Clone)]
pub(crate) struct GroupMember {
    pub id: String,
    pub name: String,
    pub role: String,
    pub order: u32,
    pub essential: bool,
    pub depends: Vec<(String, DependencyCondition)>,
    pub stop_timeout: Duration,
}

pub(crate) fn member_of(labels: &HashMap<String, String>, id: String) -> Option<GroupMember> {
    let role = labels.get(ROLE_LABEL)?.clone();
    Some(GroupMember {
        id,
        name: labels.get(CONTAINER_LABEL).cloned().unwrap_or_default(),
        role,
        order: labels
            .get(ORDER_LABEL)
            .and_then(|o| o.parse().ok())
            .unwrap_or(0),
        essential: labels.get(ESSENTIAL_LABEL).is_some_and(|e| e == "true"),
        depends: labels
            .get(DEPENDS_LABEL)
            .map(|d| parse_depends(d))
            .unwrap_or_default(),
        stop_timeout: Duration::from_secs(
            labels
                .get(STOP_TIMEOUT_LABEL)
                .and_then(|s| s.parse().ok())
                .unwrap_or(30),
        ),
    })
}

fn parse_depends(s: &str) -> Vec<(String, DependencyCondition)> {
    s.split(',')
        .filter_map(|d| {
            let (n, c) = d.split_once(':')?;
            Some((n.to_owned(), DependencyCondition::parse(c)?))
        })
        .collect()
}

/// The static program the holder runs: waits for signals forever (`pause` on x86_64,
/// `ppoll` with nothing to poll on aarch64). It is killed with SIGKILL. A minimal ELF file:
/// the header, one loadable segment, then the code.
pub fn pause_program(arch: &str) -> Option<Vec<u8>> {
    let (machine, code): (u16, Vec<u8>) = match arch {
        "amd64" | "x86_64" => (
            0x3e,
            // mov eax, 34 (pause); syscall; jmp back to the mov
            vec![0xb8, 0x22, 0, 0, 0, 0x0f, 0x05, 0xeb, 0xf7],
        ),
        "arm64" | "aarch64" => (0xb7, {
            // mov x8, #73 (ppoll); mov x0..x3, #0; svc #0; b back to the first mov
            let words: [u32; 7] = [
                0xd280_0928,
                0xd280_0000,
                0xd280_0001,
                0xd280_0002,
                0xd280_0003,
                0xd400_0001,
                0x17ff_fffa,
            ];
            words.iter().flat_map(|w| w.to_le_bytes()).collect()
        }),
        _ => return None,
    };
    const BASE: u64 = 0x40_0000;
    const HEADERS: u64 = 64 + 56;
    let size = HEADERS + code.len() as u64;
    let mut f = Vec::with_capacity(size as usize);
    // ELF header
    f.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f.extend_from_slice(&machine.to_le_bytes());
    f.extend_from_slice(&1u32.to_le_bytes()); // version
    f.extend_from_slice(&(BASE + HEADERS).to_le_bytes()); // entry
    f.extend_from_slice(&64u64.to_le_bytes()); // program headers at
    f.extend_from_slice(&0u64.to_le_bytes()); // no section headers
    f.extend_from_slice(&0u32.to_le_bytes()); // flags
    f.extend_from_slice(&64u16.to_le_bytes()); // header size
    f.extend_from_slice(&56u16.to_le_bytes()); // program header size
    f.extend_from_slice(&1u16.to_le_bytes()); // one program header
    f.extend_from_slice(&[0; 6]); // no sections
    // Program header: one PT_LOAD of the whole file, read + execute.
    f.extend_from_slice(&1u32.to_le_bytes());
    f.extend_from_slice(&5u32.to_le_bytes());
    f.extend_from_slice(&0u64.to_le_bytes());
    f.extend_from_slice(&BASE.to_le_bytes());
    f.extend_from_slice(&BASE.to_le_bytes());
    f.extend_from_slice(&size.to_le_bytes());
    f.extend_from_slice(&size.to_le_bytes());
    f.extend_from_slice(&0x1000u64.to_le_bytes());
    f.extend_from_slice(&code);
    Some(f)
}

impl DockerRuntime {
    /// Imports the holder image unless the engine has it.
    async fn ensure_holder_image(&self) -> Result<()> {
        if self.docker.inspect_image(HOLDER_IMAGE).await.is_ok() {
            return Ok(());
        }
        let arch = &self.host_platform.1;
        let program = pause_program(arch).ok_or_else(|| {
            RuntimeError::Task(format!(
                "tasks of several containers need a network holder, which Slipway has for amd64 and arm64, not {arch}"
            ))
        })?;
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(program.len() as u64);
        h.set_mode(0o755);
        h.set_cksum();
        tar.append_data(&mut h, "pause", program.as_slice())
            .map_err(|e| RuntimeError::Task(format!("holder image: {e}")))?;
        let bytes = tar
            .into_inner()
            .map_err(|e| RuntimeError::Task(format!("holder image: {e}")))?;
        let (repo, tag) = split_tag(HOLDER_IMAGE);
        let opts = CreateImageOptions {
            from_src: Some("-".into()),
            repo: Some(repo.into()),
            tag: Some(tag.into()),
            changes: vec!["ENTRYPOINT [\"/pause\"]".into()],
            ..Default::default()
        };
        self.docker
            .create_image(Some(opts), Some(bollard::body_full(bytes.into())), None)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(())
    }

    /// Creates the containers of a task of several: the holder (started at once: it owns
    /// the namespace the others join), then each container, not started. Returns the main
    /// container's id.
    pub(crate) async fn create_group(&self, t: &TaskLaunch<'_>) -> Result<String> {
        let c = t.container;
        let order = containers::start_order(c, &t.service.name).map_err(RuntimeError::Task)?;
        self.ensure_holder_image().await?;
        let base = self.task_labels(t);
        let name = |member: &str| {
            format!(
                "{}-{}-{}-{}-{member}",
                t.service.app, t.service.env, t.service.name, t.task_id
            )
        };
        // The holder: the task's address, aliases and published port.
        let mut labels = base.clone();
        labels.insert(ROLE_LABEL.into(), "holder".into());
        labels.insert(CONTAINER_LABEL.into(), "holder".into());
        labels.insert(ORDER_LABEL.into(), "0".into());
        let mut holder = ContainerCreateBody {
            image: Some(HOLDER_IMAGE.into()),
            labels: Some(labels),
            // It ignores SIGTERM (PID 1 without a handler): stopped at once.
            stop_signal: Some("SIGKILL".into()),
            ..Default::default()
        };
        self.attach_network(t, &mut holder);
        let holder_id = self.create_named(name("holder"), holder).await?;
        let created = self
            .create_members(t, &holder_id, &order, &base, name)
            .await;
        match created {
            Ok(main) => Ok(main),
            Err(e) => {
                let _ = self.remove_group(t.task_id, None).await;
                Err(e)
            }
        }
    }

    async fn create_members(
        &self,
        t: &TaskLaunch<'_>,
        holder_id: &str,
        order: &[&str],
        base: &HashMap<String, String>,
        name: impl Fn(&str) -> String,
    ) -> Result<String> {
        let c = t.container;
        self.start_one(holder_id).await?;
        let holder_ip = self.address(holder_id, t.network).await?;
        let members = containers::members(c, &t.service.name);
        // Containers named by another's volumesFrom are created first.
        let mut pending: Vec<&containers::Member<'_>> = members.iter().collect();
        let mut ids: HashMap<String, String> = HashMap::new();
        let mut main_id = None;
        while !pending.is_empty() {
            let i = pending
                .iter()
                .position(|m| {
                    m.spec
                        .volumes_from
                        .iter()
                        .all(|v| ids.contains_key(&v.source_container))
                })
                .ok_or_else(|| RuntimeError::Task("volumesFrom has a cycle".into()))?;
            let m = pending.remove(i);
            let deps = containers::dependencies_of(c, m);
            let mut labels = base.clone();
            labels.insert(
                ROLE_LABEL.into(),
                if m.main { "main" } else { "sidecar" }.into(),
            );
            labels.insert(CONTAINER_LABEL.into(), m.name.into());
            let place = order.iter().position(|n| *n == m.name).unwrap_or(0) + 1;
            labels.insert(ORDER_LABEL.into(), place.to_string());
            labels.insert(ESSENTIAL_LABEL.into(), m.essential.to_string());
            labels.insert(
                STOP_TIMEOUT_LABEL.into(),
                (m.spec.stop_timeout_ms / 1000).max(1).to_string(),
            );
            labels.insert(
                DEPENDS_LABEL.into(),
                deps.iter()
                    .map(|d| format!("{}:{}", d.container, d.condition.as_str()))
                    .collect::<Vec<_>>()
                    .join(","),
            );
            let mut env: Vec<String> = m
                .spec
                .environment
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            env.extend(t.extra_env.iter().map(|(k, v)| format!("{k}={v}")));
            if let Some((_, extra)) = t.sidecar_env.iter().find(|(n, _)| n == m.name) {
                env.extend(extra.iter().map(|(k, v)| format!("{k}={v}")));
            }
            let mut mounts = self.volume_mounts(t, m.spec);
            if m.main
                && !t.secret_files.is_empty()
                && let Some(dir) = self.secret_dir_mount(t).await?
            {
                mounts.push(dir);
            }
            let volumes_from: Vec<String> = m
                .spec
                .volumes_from
                .iter()
                .filter_map(|v| {
                    let id = ids.get(&v.source_container)?;
                    Some(if v.read_only {
                        format!("{id}:ro")
                    } else {
                        id.clone()
                    })
                })
                .collect();
            let log_config = match (&m.spec.logging, &holder_ip) {
                (Some(_), Some(ip)) => Some(HostConfigLogConfig {
                    typ: Some("fluentd".into()),
                    config: Some(HashMap::from([
                        (
                            "fluentd-address".into(),
                            format!("tcp://{ip}:{}", containers::FORWARD_PORT),
                        ),
                        // The router may still be starting: records wait in the driver.
                        ("fluentd-async".into(), "true".into()),
                        // FireLens's tag: `<container>-firelens-<task>`.
                        ("tag".into(), format!("{}-firelens-{}", m.name, t.task_id)),
                    ])),
                }),
                (Some(_), None) => {
                    return Err(RuntimeError::Task(
                        "the task has no address for its log router".into(),
                    ));
                }
                _ => Some(default_log_config()),
            };
            let mut host_config = HostConfig {
                network_mode: Some(format!("container:{holder_id}")),
                mounts: (!mounts.is_empty()).then_some(mounts),
                volumes_from: (!volumes_from.is_empty()).then_some(volumes_from),
                init: m.spec.init.then_some(true),
                log_config,
                ..Default::default()
            };
            apply_limits(m.spec, &mut host_config);
            let body = ContainerCreateBody {
                image: Some(
                    m.spec
                        .image_digest
                        .clone()
                        .unwrap_or_else(|| m.spec.image.clone()),
                ),
                env: Some(env),
                cmd: m.spec.command.clone(),
                entrypoint: m.spec.entrypoint.clone(),
                user: m.spec.user.clone(),
                labels: Some(labels),
                healthcheck: m.spec.healthcheck.as_ref().map(health_config),
                stop_timeout: Some((m.spec.stop_timeout_ms / 1000).max(1) as i64),
                host_config: Some(host_config),
                ..Default::default()
            };
            let id = self.create_named(name(m.name), body).await?;
            if m.main {
                main_id = Some(id.clone());
            }
            ids.insert(m.name.to_owned(), id);
        }
        main_id.ok_or_else(|| RuntimeError::Task("the task has no main container".into()))
    }

    /// Creates a container; a pinned registry image this engine no longer has is pulled by
    /// digest first.
    pub(crate) async fn create_named(
        &self,
        name: String,
        body: ContainerCreateBody,
    ) -> Result<String> {
        let opts = CreateContainerOptions {
            name: Some(name),
            ..Default::default()
        };
        match self
            .docker
            .create_container(Some(opts.clone()), body.clone())
            .await
        {
            Ok(r) => Ok(r.id),
            Err(e) => {
                let e = RuntimeError::from(e);
                let pinned = body.image.as_deref().unwrap_or_default();
                if e.is_not_found() && pinned.contains('@') && registry_host(pinned).is_some() {
                    tracing::info!(image = pinned, "pulling a pinned image the engine lost");
                    self.pull(pinned).await?;
                    Ok(self.docker.create_container(Some(opts), body).await?.id)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// The containers of the group `id` belongs to, in start order (the holder first);
    /// `None` when `id` is a task of one container (or is gone).
    pub(crate) async fn group_of(&self, id: &str) -> Result<Option<(String, Vec<GroupMember>)>> {
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
        let labels = c.config.and_then(|c| c.labels).unwrap_or_default();
        if !labels.contains_key(ROLE_LABEL) {
            return Ok(None);
        }
        let Some(task) = labels.get(labels::TASK) else {
            return Ok(None);
        };
        let members = self.group_members(task).await?;
        Ok(Some((task.clone(), members)))
    }

    pub(crate) async fn group_members(&self, task: &str) -> Result<Vec<GroupMember>> {
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(HashMap::from([(
                    "label".to_owned(),
                    vec![format!("{}={task}", labels::TASK), ROLE_LABEL.to_owned()],
                )])),
                ..Default::default()
            }))
            .await?;
        let mut members: Vec<GroupMember> = list
            .into_iter()
            .filter_map(|c| member_of(&c.labels.unwrap_or_default(), c.id?))
            .collect();
        members.sort_by_key(|m| m.order);
        Ok(members)
    }

    /// Starts a group: each container once its dependencies' conditions hold, the main
    /// one among them. Fails when a condition cannot hold (the container it waits for
    /// exited, or did not succeed) or did not within [`DEPENDENCY_TIMEOUT`].
    pub(crate) async fn start_group(&self, members: &[GroupMember]) -> Result<()> {
        if !members.iter().any(|m| m.role == "main") {
            return Err(RuntimeError::Task(
                "the task's main container was never created (its creation was cut short)".into(),
            ));
        }
        for m in members {
            for (dep, cond) in &m.depends {
                let Some(d) = members.iter().find(|x| &x.name == dep) else {
                    return Err(RuntimeError::Task(format!(
                        "container {} depends on {dep}, which the task does not have",
                        m.name
                    )));
                };
                self.wait_condition(&m.name, d, *cond).await?;
            }
            self.start_one(&m.id).await?;
        }
        Ok(())
    }

    async fn start_one(&self, id: &str) -> Result<()> {
        match self.docker.start_container(id, None).await {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn wait_condition(
        &self,
        waiter: &str,
        d: &GroupMember,
        cond: DependencyCondition,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + DEPENDENCY_TIMEOUT;
        let fail = |why: String| {
            RuntimeError::Task(format!(
                "container {waiter} waits for {} {}: {why}",
                d.name,
                cond.as_str()
            ))
        };
        loop {
            let c = self
                .docker
                .inspect_container(&d.id, None::<InspectContainerOptions>)
                .await?;
            let st = c.state.unwrap_or_default();
            let running = st.running == Some(true);
            let started = st
                .started_at
                .as_deref()
                .is_some_and(|s| !s.starts_with("0001"));
            let exited = started && !running;
            let health = st
                .health
                .and_then(|h| h.status)
                .map(|s| s.to_string())
                .unwrap_or_default();
            let code = st.exit_code.unwrap_or(0);
            match cond {
                DependencyCondition::Start if started => return Ok(()),
                DependencyCondition::Complete if exited => return Ok(()),
                DependencyCondition::Success if exited && code == 0 => return Ok(()),
                DependencyCondition::Success if exited => {
                    return Err(fail(format!("it exited with code {code}")));
                }
                DependencyCondition::Healthy if health == "healthy" => return Ok(()),
                DependencyCondition::Healthy if exited => {
                    return Err(fail(format!(
                        "it exited with code {code} before it was healthy"
                    )));
                }
                _ => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(fail(format!(
                    "not met within {} s",
                    DEPENDENCY_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What ended a group: the first essential container that exited (the main one
    /// first), with every container's state; the main container's when none did.
    pub(crate) async fn group_exit_info(
        &self,
        members: &[GroupMember],
    ) -> Result<Option<ExitInfo>> {
        let mut infos = Vec::new();
        for m in members.iter().filter(|m| m.role != "holder") {
            if let Some(i) = self.exit_info_one(&m.id).await? {
                infos.push((m, i));
            }
        }
        let statuses: Vec<slipway_core::model::ContainerStatus> = infos
            .iter()
            .map(|(m, i)| slipway_core::model::ContainerStatus {
                name: m.name.clone(),
                id: Some(m.id.clone()),
                essential: m.essential,
                last_status: if i.running {
                    "RUNNING"
                } else if i.started_ms.is_some() {
                    "STOPPED"
                } else {
                    "PENDING"
                }
                .into(),
                health: i.health_status.clone().unwrap_or_else(|| "UNKNOWN".into()),
                exit_code: (!i.running && i.started_ms.is_some())
                    .then_some(i.exit_code)
                    .flatten(),
            })
            .collect();
        let ended = |main: bool| {
            infos.iter().find(|(m, i)| {
                (m.role == "main") == main && m.essential && !i.running && i.started_ms.is_some()
            })
        };
        let pick = ended(true)
            .or_else(|| ended(false))
            .or_else(|| infos.iter().find(|(m, _)| m.role == "main"));
        Ok(pick.map(|(m, i)| ExitInfo {
            container: Some(m.name.clone()),
            containers: statuses.clone(),
            ..i.clone()
        }))
    }

    /// Stops a group in the reverse start order (the containers that depend on others
    /// first), the holder last.
    pub(crate) async fn stop_group(&self, members: &[GroupMember], main: Duration) -> Result<()> {
        for m in members.iter().rev() {
            let timeout = match m.role.as_str() {
                "main" => main,
                "holder" => Duration::ZERO,
                _ => m.stop_timeout,
            };
            self.stop_one(&m.id, timeout).await?;
        }
        Ok(())
    }

    /// Removes every container of a task's group (`main`: but that one).
    pub(crate) async fn remove_group(&self, task: &str, main: Option<&str>) -> Result<()> {
        let members = self.group_members(task).await?;
        for m in members.iter().rev() {
            if Some(m.id.as_str()) == main {
                continue; // the caller removes it (with its secret files and rules)
            }
            let opts = RemoveContainerOptions {
                force: true,
                v: true,
                ..Default::default()
            };
            match self.docker.remove_container(&m.id, Some(opts)).await {
                Ok(())
                | Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404 | 409,
                    ..
                }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// One entry for a group's containers (see [`ContainerInfo::containers`]).
pub(crate) fn fold_group(mut members: Vec<(GroupMember, ContainerInfo)>) -> ContainerInfo {
    members.sort_by_key(|(m, _)| (m.role != "main", m.order));
    let holder = members
        .iter()
        .position(|(m, _)| m.role == "holder")
        .map(|i| members.remove(i).1);
    let ended = members
        .iter()
        .any(|(m, i)| m.essential && i.state == ContainerState::Exited);
    // The main container's health, made worse by an essential sidecar's: a sidecar's
    // passing check never stands in for a main container without one (that one is judged
    // by how long it has run, as a task of one container is).
    let main_health = members
        .iter()
        .find(|(m, _)| m.role == "main")
        .map_or(EngineHealth::None, |(_, i)| i.health);
    let health = members
        .iter()
        .filter(|(m, _)| m.essential && m.role != "main")
        .map(|(_, i)| i.health)
        .fold(main_health, |acc, h| match (acc, h) {
            (EngineHealth::Unhealthy, _) | (_, EngineHealth::Unhealthy) => EngineHealth::Unhealthy,
            (EngineHealth::Starting, _) | (_, EngineHealth::Starting) => EngineHealth::Starting,
            (acc, _) => acc,
        });
    let statuses = members
        .iter()
        .flat_map(|(_, i)| i.containers.clone())
        .collect();
    // A group without its main container yet (being created): its holder or first
    // container stands for it, as not started. Starting such a group fails (see
    // [`DockerRuntime::start_group`]), so one its creator left part way is removed.
    let main_present = members.first().is_some_and(|(m, _)| m.role == "main");
    let mut entry = match (main_present, members.into_iter().next(), holder.clone()) {
        (true, Some((_, i)), _) => i,
        (false, Some((_, i)), _) | (false, None, Some(i)) => ContainerInfo {
            state: ContainerState::Created,
            ..i
        },
        (true, None, _) | (false, None, None) => unreachable!("a group has a container"),
    };
    if let Some(h) = holder {
        entry.ip = h.ip;
        entry.published = h.published;
        if h.state != ContainerState::Running && entry.state == ContainerState::Running {
            entry.state = ContainerState::Exited;
        }
    }
    if ended && main_present {
        entry.state = ContainerState::Exited;
    }
    entry.health = health;
    entry.containers = statuses;
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_program_is_an_elf_executable_for_its_machine() {
        let x = pause_program("amd64").unwrap();
        assert_eq!(&x[..4], b"\x7fELF");
        assert_eq!(u16::from_le_bytes([x[18], x[19]]), 0x3e);
        // The entry point is right after the headers, where the code is.
        let entry = u64::from_le_bytes(x[24..32].try_into().unwrap());
        assert_eq!(entry, 0x40_0000 + 120);
        assert_eq!(x.len(), 120 + 9);
        // The segment covers the whole file.
        let filesz = u64::from_le_bytes(x[64 + 32..64 + 40].try_into().unwrap());
        assert_eq!(filesz, x.len() as u64);
        let a = pause_program("arm64").unwrap();
        assert_eq!(u16::from_le_bytes([a[18], a[19]]), 0xb7);
        assert_eq!(a.len(), 120 + 28);
        assert!(pause_program("riscv64").is_none());
    }

    fn member(
        role: &str,
        name: &str,
        state: ContainerState,
        health: EngineHealth,
    ) -> (GroupMember, ContainerInfo) {
        let id = format!("{name}-id");
        (
            GroupMember {
                id: id.clone(),
                name: name.into(),
                role: role.into(),
                order: 0,
                essential: true,
                depends: Vec::new(),
                stop_timeout: Duration::from_secs(1),
            },
            ContainerInfo {
                id,
                name: name.into(),
                service: ServiceKey::new("a", "e", "s"),
                task_id: "t".into(),
                deployment_id: "d".into(),
                revision: 1,
                state,
                health,
                ip: (role == "holder").then(|| "10.0.0.2".to_owned()),
                created_ms: 0,
                published: None,
                host: String::new(),
                containers: Vec::new(),
            },
        )
    }

    #[test]
    fn a_group_is_judged_by_its_main_container_made_worse_by_its_sidecars() {
        use ContainerState::*;
        let fold = |main: (ContainerState, EngineHealth), side: (ContainerState, EngineHealth)| {
            fold_group(vec![
                member("sidecar", "agent", side.0, side.1),
                member("holder", "holder", Running, EngineHealth::None),
                member("main", "app", main.0, main.1),
            ])
        };
        // A healthy sidecar does not make a main container without a check healthy.
        let g = fold(
            (Running, EngineHealth::None),
            (Running, EngineHealth::Healthy),
        );
        assert_eq!(
            (g.id.as_str(), g.state, g.health),
            ("app-id", Running, EngineHealth::None)
        );
        assert_eq!(g.ip.as_deref(), Some("10.0.0.2"));
        let g = fold(
            (Running, EngineHealth::Healthy),
            (Running, EngineHealth::Unhealthy),
        );
        assert_eq!(g.health, EngineHealth::Unhealthy);
        let g = fold(
            (Running, EngineHealth::None),
            (Running, EngineHealth::Starting),
        );
        assert_eq!(g.health, EngineHealth::Starting);
        // An essential sidecar that exited ends the task.
        let g = fold(
            (Running, EngineHealth::Healthy),
            (Exited, EngineHealth::None),
        );
        assert_eq!(g.state, Exited);
        // Without its main container yet, the group is not started.
        let g = fold_group(vec![member(
            "holder",
            "holder",
            Running,
            EngineHealth::None,
        )]);
        assert_eq!(g.state, Created);
    }

    #[test]
    fn dependency_labels_round_trip() {
        assert_eq!(
            parse_depends("agent:HEALTHY,log_router:START"),
            vec![
                ("agent".to_owned(), DependencyCondition::Healthy),
                ("log_router".to_owned(), DependencyCondition::Start)
            ]
        );
        assert!(parse_depends("").is_empty());
    }
}
