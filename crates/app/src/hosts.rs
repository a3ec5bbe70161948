//! Use cases on hosts: join tokens, joining, an agent's credential and its hello, draining,
//! activating and removing a host, and the server's own host.

use sha2::{Digest, Sha256};
use slipway_core::placement::HostState;
use slipway_store::{Batch, HostRecord, StoreError, Write, now_ms, random_id};
use subtle::ConstantTimeEq;

use crate::retry::retry;
use crate::{App, AppError, ErrorKind, Result};

/// How long a join token is valid by default.
pub const JOIN_TOKEN_TTL_MS: i64 = 60 * 60 * 1000;

/// What an agent gets when it joins: its host id and key (shown once), and the cluster.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Joined {
    pub host: String,
    pub key: String,
    pub cluster: String,
}

/// A host as `slipway host ls` shows it: its record (never its key), whether its agent is
/// connected, and what its live tasks reserve.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct HostStatus {
    pub id: String,
    pub name: String,
    pub state: HostState,
    pub reason: Option<String>,
    pub attributes: std::collections::BTreeMap<String, String>,
    pub platform: String,
    pub address: String,
    /// Reached now (the server's own host always is).
    pub connected: bool,
    /// The server's own host (no agent).
    pub local: bool,
    pub cpu: u64,
    pub memory: u64,
    pub cpu_used: u64,
    pub memory_used: u64,
    /// Live tasks placed there.
    pub tasks: u32,
    pub last_seen: i64,
}

/// What an agent says of its host when it connects.
#[derive(Debug, Clone)]
pub struct HostHello {
    pub host: String,
    pub engine: String,
    pub name: String,
    pub cpu: u64,
    pub memory: u64,
    pub platform: String,
    pub attributes: std::collections::BTreeMap<String, String>,
    pub address: String,
}

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.trim().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The host id of an engine (the server's own host: the same for every server on one
/// engine).
pub fn host_id_of_engine(engine: &str) -> String {
    format!("h-{}", &sha256_hex(engine)[..12])
}

fn unauthorized(message: impl Into<String>) -> AppError {
    AppError::new(ErrorKind::Invalid, "UNAUTHORIZED", message)
}

impl App {
    /// Writes a host record (compare-and-swap on its version); the record as stored.
    async fn save_host(&self, mut h: HostRecord) -> std::result::Result<HostRecord, StoreError> {
        let out = self
            .store()
            .commit(Batch::new().write(Write::Host(h.clone())))
            .await?;
        h.version = out[0].version();
        Ok(h)
    }

    /// A new join token, valid once for `ttl_ms`; the token itself (only its hash is kept).
    pub async fn create_join_token(&self, ttl_ms: Option<i64>) -> Result<String> {
        let ttl = ttl_ms.unwrap_or(JOIN_TOKEN_TTL_MS);
        if !(1000..=30 * 24 * 3_600_000).contains(&ttl) {
            return Err(AppError::invalid(
                "a join token lives between 1 s and 30 days",
            ));
        }
        let token = format!("slwj_{}", random_id(24));
        let now = now_ms();
        self.store()
            .commit(Batch::new().write(Write::JoinToken {
                hash: sha256_hex(&token),
                at: now,
                expires_at: now + ttl,
            }))
            .await?;
        Ok(token)
    }

    /// Joins a host with a join token: a new host record and its agent's key. A token works
    /// once; an engine joins once (remove its host to join it again).
    pub async fn join_host(&self, token: &str, engine: &str, name: &str) -> Result<Joined> {
        if engine.trim().is_empty() {
            return Err(AppError::invalid("the joining engine has no id"));
        }
        if let Some(h) = self
            .store()
            .list_hosts()
            .await?
            .into_iter()
            .find(|h| h.engine == engine)
        {
            return Err(AppError::conflict(
                "ENGINE_JOINED",
                format!(
                    "this Docker engine already joined as host {} ({}); remove that host (`slipway host rm {}`) to join it again",
                    h.id, h.name, h.id
                ),
            ));
        }
        let id = format!("h-{}", random_id(6));
        let key = random_id(32);
        let now = now_ms();
        let host = HostRecord {
            id: id.clone(),
            name: name.to_owned(),
            engine: engine.to_owned(),
            state: HostState::Active,
            attributes: Default::default(),
            cpu: 0,
            memory: 0,
            platform: String::new(),
            address: String::new(),
            key_hash: Some(sha256_hex(&key)),
            created_at: now,
            last_seen: now,
            reason: None,
            version: 0,
        };
        let r = self
            .store()
            .commit(
                Batch::new()
                    .write(Write::UseJoinToken {
                        hash: sha256_hex(token),
                        host: id.clone(),
                        at: now,
                    })
                    .write(Write::Host(host)),
            )
            .await;
        match r {
            Ok(_) => {}
            Err(StoreError::NotFound(_)) => {
                return Err(unauthorized(
                    "the join token is wrong, used or expired; make a new one with `slipway host join-token`",
                ));
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(host = %id, %name, "a host joined");
        Ok(Joined {
            host: id,
            key,
            cluster: self.cluster().to_owned(),
        })
    }

    /// Checks an agent's credential (`HOST.KEY`) and cluster: the host it is.
    pub async fn authenticate_agent(&self, credential: &str, cluster: &str) -> Result<HostRecord> {
        if !cluster.is_empty() && cluster != self.cluster() {
            return Err(AppError::conflict(
                "OTHER_CLUSTER",
                format!(
                    "this agent belongs to cluster {cluster}, and this server runs cluster {}; point it at its own cluster's server, or join this one with a new data directory",
                    self.cluster()
                ),
            ));
        }
        let (host, key) = credential.split_once('.').unwrap_or((credential, ""));
        let record = self.store().get_host(host).await?;
        let ok = record.as_ref().is_some_and(|h| {
            h.key_hash
                .as_deref()
                .is_some_and(|k| bool::from(k.as_bytes().ct_eq(sha256_hex(key).as_bytes())))
        });
        match record {
            Some(h) if ok => Ok(h),
            _ => Err(unauthorized(format!(
                "host {host} is unknown or its credential was revoked; join it again with a new token (`slipway host join-token`)"
            ))),
        }
    }

    /// Records what a connected agent says of its host (resources, attributes, address);
    /// a lost host that is back becomes active.
    pub async fn host_seen(&self, hello: &HostHello) -> Result<HostRecord> {
        retry(|| async {
            let Some(mut h) = self.store().get_host(&hello.host).await? else {
                return Err(AppError::not_found(format!("host {}", hello.host)).into());
            };
            if h.engine != hello.engine {
                return Err(unauthorized(format!(
                    "host {} joined from another Docker engine; join this one as a new host",
                    h.id
                ))
                .into());
            }
            h.name.clone_from(&hello.name);
            h.cpu = hello.cpu;
            h.memory = hello.memory;
            h.platform.clone_from(&hello.platform);
            h.attributes.clone_from(&hello.attributes);
            h.address.clone_from(&hello.address);
            h.last_seen = now_ms();
            if h.state == HostState::Lost {
                h.state = HostState::Active;
                h.reason = Some("its agent is back".into());
            }
            Ok(self.save_host(h).await?)
        })
        .await
    }

    /// Records the server's own host (no agent, no key): it is the engine the server runs
    /// next to. Returns its id.
    pub async fn register_local_host(&self, hello: HostHello) -> Result<String> {
        let id = host_id_of_engine(&hello.engine);
        retry(|| async {
            let now = now_ms();
            let mut h = match self.store().get_host(&id).await? {
                Some(h) => h,
                None => HostRecord {
                    id: id.clone(),
                    name: String::new(),
                    engine: hello.engine.clone(),
                    state: HostState::Active,
                    attributes: Default::default(),
                    cpu: 0,
                    memory: 0,
                    platform: String::new(),
                    address: String::new(),
                    key_hash: None,
                    created_at: now,
                    last_seen: now,
                    reason: None,
                    version: 0,
                },
            };
            h.name.clone_from(&hello.name);
            h.cpu = hello.cpu;
            h.memory = hello.memory;
            h.platform.clone_from(&hello.platform);
            h.attributes.clone_from(&hello.attributes);
            h.address.clone_from(&hello.address);
            h.last_seen = now;
            if h.state == HostState::Lost {
                h.state = HostState::Active;
            }
            self.store()
                .commit(Batch::new().write(Write::Host(h)))
                .await?;
            Ok(id.clone())
        })
        .await
    }

    async fn set_host_state(&self, id: &str, state: HostState, reason: &str) -> Result<HostRecord> {
        retry(|| async {
            let Some(mut h) = self.store().get_host(id).await? else {
                return Err(AppError::not_found(format!(
                    "host {id} (`slipway host ls` lists them)"
                ))
                .into());
            };
            if h.state == state {
                return Ok(h);
            }
            if h.state == HostState::Lost && state == HostState::Active {
                return Err(AppError::conflict(
                    "HOST_LOST",
                    format!("host {id} is lost: it becomes active when its agent connects again"),
                )
                .into());
            }
            h.state = state;
            h.reason = Some(reason.to_owned());
            Ok(self.save_host(h).await?)
        })
        .await
    }

    /// Drains a host: it takes no new task, and its tasks move to other hosts with their
    /// services' rolling rules (never below the minimum healthy).
    pub async fn drain_host(&self, id: &str) -> Result<HostRecord> {
        let h = self
            .set_host_state(id, HostState::Draining, "drained by a user")
            .await?;
        self.wake_services_on(id).await?;
        Ok(h)
    }

    /// Lets a drained host take tasks again.
    pub async fn activate_host(&self, id: &str) -> Result<HostRecord> {
        self.set_host_state(id, HostState::Active, "activated by a user")
            .await
    }

    /// Forgets a host and revokes its agent's key. Its tasks, if any are left, are replaced
    /// on other hosts.
    pub async fn remove_host(&self, id: &str, force: bool) -> Result<HostRecord> {
        let h = retry(|| async {
            let Some(h) = self.store().get_host(id).await? else {
                return Err(AppError::not_found(format!(
                    "host {id} (`slipway host ls` lists them)"
                ))
                .into());
            };
            let tasks = self.store().live_tasks_on(id).await?.len();
            if tasks > 0 && !force {
                return Err(AppError::conflict(
                    "HOST_NOT_EMPTY",
                    format!(
                        "host {id} still runs {tasks} task(s); drain it first (`slipway host drain {id}`, then `slipway host ls` shows 0 tasks), or pass --force to replace them on other hosts at once"
                    ),
                )
                .into());
            }
            self.store()
                .commit(Batch::new().write(Write::RemoveHost {
                    id: h.id.clone(),
                    version: h.version,
                }))
                .await?;
            Ok(h)
        })
        .await?;
        let stopped = self.engine().forget_host(id, self.cluster()).await;
        self.wake_services_on(id).await?;
        tracing::info!(host = %id, stopped, "host removed; its credential is revoked");
        Ok(h)
    }

    /// Every host with what runs there.
    pub async fn host_statuses(&self) -> Result<Vec<HostStatus>> {
        let store = self.store();
        let up = self.engine().up_hosts();
        let local = self.engine().local_host();
        let usage = store.host_usage(local.as_deref()).await?;
        Ok(store
            .list_hosts()
            .await?
            .into_iter()
            .map(|h| {
                let u = usage.get(&h.id).cloned().unwrap_or_default();
                let (cpu_used, memory_used, tasks) = (u.cpu, u.memory, u.tasks);
                HostStatus {
                    connected: up.contains(&h.id),
                    local: h.key_hash.is_none(),
                    id: h.id,
                    name: h.name,
                    state: h.state,
                    reason: h.reason,
                    attributes: h.attributes,
                    platform: h.platform,
                    address: h.address,
                    cpu: h.cpu,
                    memory: h.memory,
                    cpu_used,
                    memory_used,
                    tasks,
                    last_seen: h.last_seen,
                }
            })
            .collect())
    }

    /// Wakes the controller for every service with a task on `host`.
    async fn wake_services_on(&self, host: &str) -> Result<()> {
        let mut batch = Batch::new();
        for t in self.store().live_tasks_on(host).await? {
            batch = batch.notify(&t.service);
        }
        self.store().commit(batch).await?;
        Ok(())
    }
}

/// What a rebalance moves.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Rebalance {
    pub service: String,
    /// (task, the host it leaves).
    pub moved: Vec<(String, String)>,
    pub message: String,
}

impl App {
    /// Moves tasks of a service to restore its spread over the hosts (after a host joined,
    /// or came back): each moved task is replaced on the host placement picks and stopped
    /// once its replacement is healthy, with the service's rolling rules.
    pub async fn rebalance(&self, key: &slipway_core::model::ServiceKey) -> Result<Rebalance> {
        use slipway_core::model::{RolloutState, TaskStatus};
        let _turn = self.queue(std::slice::from_ref(key)).await;
        retry(|| async {
            let store = self.store();
            let Some(svc) = store.get_service(key).await? else {
                return Err(AppError::not_found(format!("service {key}")).into());
            };
            if svc.deleting {
                return Err(AppError::conflict(
                    "SERVICE_NOT_ACTIVE",
                    format!("{key} is being deleted"),
                )
                .into());
            }
            if store
                .active_deployments(key)
                .await?
                .iter()
                .any(|d| d.state == RolloutState::InProgress)
            {
                return Err(AppError::conflict(
                    "DEPLOYMENT_IN_PROGRESS",
                    format!("{key} is being deployed; rebalance once the deployment is done (a deployment places every task anew)"),
                )
                .into());
            }
            let tasks = store.list_tasks(key, false).await?;
            if tasks.iter().any(|t| t.moving && t.desired_running) {
                return Err(AppError::conflict(
                    "REBALANCE_IN_PROGRESS",
                    format!("{key} is being rebalanced already; `slipway ps` shows the tasks that move"),
                )
                .into());
            }
            let Some(td) = store
                .get_task_definition(&key.family(), svc.revision)
                .await?
            else {
                return Err(AppError::not_found(format!("the task definition of {key}")).into());
            };
            let up = self.engine().up_hosts();
            let local = self.engine().local_host();
            let views = store.host_views(&up, local.as_deref(), key).await?;
            let need = slipway_core::placement::Need::of(&td.container);
            let moves = slipway_core::placement::rebalance(&views, need, &svc.placement)
                .map_err(|m| AppError::invalid(format!("{key}: {m}")))?;
            let mut batch = Batch::new();
            let mut moved = Vec::new();
            for (host, n) in &moves {
                // The newest tasks move: the ones that ran longest stay.
                let mut on: Vec<&slipway_core::model::Task> = tasks
                    .iter()
                    .filter(|t| {
                        t.desired_running
                            && t.last_status == TaskStatus::Running
                            && t.host.as_deref().or(local.as_deref()) == Some(host.as_str())
                    })
                    .collect();
                on.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
                for t in on.into_iter().take(*n as usize) {
                    let mut t = t.clone();
                    t.moving = true;
                    moved.push((t.id.clone(), host.clone()));
                    batch = batch.write(Write::Task(t));
                }
            }
            if moved.is_empty() {
                return Ok(Rebalance {
                    service: key.to_string(),
                    moved,
                    message: "already balanced: no task moves".into(),
                });
            }
            let list: Vec<String> = moved
                .iter()
                .map(|(t, h)| format!("(task {t}) from host {h}"))
                .collect();
            let message = format!(
                "rebalancing: moving {} task(s) to restore the spread: {}",
                moved.len(),
                list.join(", ")
            );
            batch = batch
                .event(key, now_ms(), format!("(service {}) {message}.", key.name))
                .notify(key);
            store.commit(batch).await?;
            Ok(Rebalance {
                service: key.to_string(),
                moved,
                message,
            })
        })
        .await
    }
}
