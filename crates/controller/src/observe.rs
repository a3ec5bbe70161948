//! One reconcile pass: observe a service on every host, plan, and hand the plan to the
//! executor.
//!
//! A task whose host did not answer the listing is not known to be gone: while its host is
//! only out of touch it keeps its last known state; once the host is LOST (or removed) the
//! task is counted out and replaced elsewhere. Tasks on a DRAINING host are replaced with
//! the service's rolling rules.

use std::collections::{BTreeSet, HashMap, HashSet};

use slipway_core::health::{self, EngineHealth, HealthInputs, ProbeState};
use slipway_core::model::{
    CommandHealthCheck, HttpHealthCheck, ServiceKey, Task, TaskHealth, TaskStatus,
};
use slipway_core::placement::HostState;
use slipway_core::planner::{self, Evict, ObservedTask, PlanInput, Replacement, TaskState};
use slipway_runtime::{ContainerInfo, ContainerState, ExitInfo};
use slipway_store::{Batch, ServiceRecord, Write};

use crate::{Controller, ControllerError, Probe, now_ms};

/// What a pass knows of the hosts.
#[derive(Debug, Default)]
pub(crate) struct HostsSeen {
    /// Hosts whose containers were listed.
    pub listed: BTreeSet<String>,
    /// Every host record's state, by id.
    pub states: HashMap<String, HostState>,
    /// The server's own host.
    pub local: Option<String>,
    /// Hosts unheard for half the loss timeout, not lost yet.
    pub unheard: BTreeSet<String>,
    /// When the listing began: a container started after it is not in it.
    pub listed_at: i64,
}

impl HostsSeen {
    /// The host of a task (tasks recorded before hosts existed ran on the server's own).
    pub fn of(&self, t: &Task) -> Option<String> {
        t.host.clone().or_else(|| self.local.clone())
    }

    /// The host is gone for good: lost, or removed from the cluster.
    pub fn gone(&self, host: &str) -> bool {
        !self.listed.contains(host) && self.states.get(host).is_none_or(|s| *s == HostState::Lost)
    }
}

/// Stopped task records are kept this long (ECS keeps them about an hour)...
const STOPPED_TASK_RETENTION_MS: i64 = 60 * 60 * 1000;
/// ...and at least this many per service regardless of age.
const STOPPED_TASKS_KEPT: u32 = 20;

impl Controller {
    /// Reconciles the given services (every service, and orphan containers, when `None`).
    pub(crate) async fn reconcile(
        &self,
        scope: Option<&HashSet<ServiceKey>>,
    ) -> Result<(), ControllerError> {
        let store = &self.inner.store;
        tracing::trace!(?scope, "reconcile pass");
        let listed_at = now_ms();
        let listing = self.inner.hosts.list(&self.inner.cluster).await;
        let seen = HostsSeen {
            listed_at,
            listed: listing.listed,
            states: store
                .list_hosts()
                .await?
                .into_iter()
                .map(|h| (h.id, h.state))
                .collect(),
            local: self.inner.hosts.local_id().map(str::to_owned),
            unheard: self.unheard_hosts(),
        };
        let containers = listing.containers;
        let services = store.list_services(None).await?;
        let mut by_service: HashMap<ServiceKey, Vec<ContainerInfo>> = HashMap::new();
        let mut standalone = Vec::new();
        for c in containers {
            if c.service.is_standalone() {
                standalone.push(c);
            } else {
                by_service.entry(c.service.clone()).or_default().push(c);
            }
        }
        if scope.is_none() {
            // Orphans: containers of services this server does not know (deleted while the
            // server was down, or created by a crashed deploy of a service never recorded).
            let known: HashSet<&ServiceKey> = services.iter().map(|s| &s.key).collect();
            for (key, list) in &by_service {
                if !known.contains(key) {
                    for c in list {
                        tracing::info!(container = %c.name, service = %key, host = %c.host, "removing orphan container");
                        self.inner.hosts.remove(&c.host, &c.id).await?;
                    }
                }
            }
            let pruned = store
                .prune_stopped_tasks(now_ms() - STOPPED_TASK_RETENTION_MS, STOPPED_TASKS_KEPT)
                .await?;
            if pruned > 0 {
                tracing::debug!(pruned, "pruned stopped task records");
            }
        }
        // Standalone tasks (ECS RunTask): on full passes, and when one of theirs woke us.
        if scope.is_none_or(|s| s.iter().any(ServiceKey::is_standalone))
            && let Err(e) = self.reconcile_standalone(scope, standalone, &seen).await
        {
            tracing::warn!(error = %e, "reconcile of standalone tasks failed");
        }
        for svc in &services {
            if scope.is_some_and(|s| !s.contains(&svc.key)) {
                continue;
            }
            let list = by_service.remove(&svc.key).unwrap_or_default();
            match self.reconcile_service(svc, &list, &seen).await {
                Ok(()) => {}
                // The service changed while this pass ran (an intent, another writer):
                // observe and plan again at once.
                Err(ControllerError::Store(e)) if e.is_conflict() => {
                    tracing::debug!(service = %svc.key, error = %e, "reconcile raced a write; planning again");
                    self.local().requeue.insert(svc.key.clone(), now_ms());
                }
                Err(e) => {
                    tracing::warn!(service = %svc.key, error = %e, "reconcile of service failed");
                    self.local()
                        .requeue
                        .insert(svc.key.clone(), now_ms() + 1000);
                }
            }
        }
        Ok(())
    }

    async fn reconcile_service(
        &self,
        svc: &ServiceRecord,
        containers: &[ContainerInfo],
        seen: &HostsSeen,
    ) -> Result<(), ControllerError> {
        let store = &self.inner.store;
        let now = now_ms();
        let key = &svc.key;
        let deployments = store.active_deployments(key).await?;
        let mut rows = store.list_tasks(key, false).await?;
        let known: HashSet<String> = rows.iter().map(|t| t.id.clone()).collect();

        // Adopt containers that have no live record (created by a process that crashed before
        // writing it back); remove containers of tasks already recorded as stopped.
        for c in containers {
            if known.contains(&c.task_id) {
                continue;
            }
            if let Some(t) = store.get_task(&c.task_id).await?
                && t.last_status == TaskStatus::Stopped
            {
                // A host that comes back still runs what was replaced meanwhile.
                tracing::info!(task = %t.id, host = %c.host, "removing the container of a stopped task");
                self.inner.hosts.remove(&c.host, &c.id).await?;
                if c.state == ContainerState::Running {
                    self.event(
                        key,
                        now,
                        format!(
                            "(service {}) task {} still ran on host {}, which is back; it was replaced meanwhile, so it was stopped.",
                            key.name, t.id, c.host
                        ),
                    )
                    .await?;
                }
                continue;
            }
            let mut task = Task {
                id: c.task_id.clone(),
                service: key.clone(),
                deployment_id: c.deployment_id.clone(),
                revision: c.revision,
                container_id: Some(c.id.clone()),
                last_status: TaskStatus::Pending,
                desired_running: true,
                health: TaskHealth::Unknown,
                address: c.ip.clone(),
                stop_code: None,
                stopped_reason: None,
                exit_code: None,
                created_at: c.created_ms,
                started_at: None,
                healthy_at: None,
                stopped_at: None,
                standalone: None,
                host: (!c.host.is_empty()).then(|| c.host.clone()),
                published: c.published.clone(),
                pending_reason: None,
                moving: false,
                exit: None,
                containers: Vec::new(),
                version: 0,
            };
            self.save_task(&mut task).await?;
            rows.push(task);
        }

        let by_task: HashMap<&str, &ContainerInfo> =
            containers.iter().map(|c| (c.task_id.as_str(), c)).collect();
        let revisions: HashSet<u32> = rows.iter().map(|t| t.revision).collect();
        let mut defs = HashMap::new();
        for r in revisions {
            if let Some(td) = store.get_task_definition(&key.family(), r).await? {
                defs.insert(r, td);
            }
        }

        let mut observed = Vec::with_capacity(rows.len());
        let mut newly_healthy_ids: Vec<String> = Vec::new();
        let mut exits = HashMap::new();
        // Tasks counted out in this pass because their host was lost, by host.
        let mut lost_now: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        // Tasks on hosts unheard (not lost yet), by host: replaced elsewhere meanwhile.
        let mut unheard_now: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for row in &mut rows {
            let (starting, stopping) = {
                let l = self.local();
                (l.starting.contains(&row.id), l.stopping.contains(&row.id))
            };
            // A stop this process did not start (the server restarted mid-stop) is resumed.
            if !row.desired_running
                && !stopping
                && let Some(c) = by_task.get(row.id.as_str())
                && matches!(c.state, ContainerState::Running | ContainerState::Created)
            {
                self.spawn_stop(key, &row.id, &c.host, &c.id);
            }
            let host = seen.of(row);
            let unheard = row.desired_running
                && host
                    .as_deref()
                    .is_some_and(|h| seen.unheard.contains(h) && !seen.gone(h));
            let evict = if unheard {
                if let Some(h) = &host {
                    unheard_now
                        .entry(h.clone())
                        .or_default()
                        .push(row.id.clone());
                }
                Some(Evict::Unreachable)
            } else if host
                .as_deref()
                .is_some_and(|h| seen.states.get(h) == Some(&HostState::Draining))
            {
                Some(Evict::Draining)
            } else if row.moving {
                Some(Evict::Rebalance)
            } else {
                None
            };
            let mut desired_running = row.desired_running;
            let mut failing_check = None;
            let state = match by_task.get(row.id.as_str()) {
                None if starting => TaskState::Pending,
                // Waiting for a host it fits on (the executor tries again).
                None if row.host.is_none()
                    && row.pending_reason.is_some()
                    && row.desired_running =>
                {
                    TaskState::Pending
                }
                None if host.as_deref().is_some_and(|h| seen.gone(h)) => {
                    // Its host is lost or removed: it is counted out and replaced.
                    let h = host.clone().unwrap_or_default();
                    desired_running = false;
                    if row.stopped_reason.is_none() {
                        row.stopped_reason =
                            Some(format!("Host {h} was lost: its agent stopped answering"));
                        lost_now.entry(h.clone()).or_default().push(row.id.clone());
                    }
                    TaskState::Exited {
                        exit_code: None,
                        ever_ran: row.started_at.is_some(),
                        detail: row.stopped_reason.clone(),
                    }
                }
                // Its host is out of touch (not lost yet): what was last known holds.
                None if host.as_deref().is_some_and(|h| !seen.listed.contains(h)) => {
                    if row.last_status == TaskStatus::Running && row.desired_running {
                        TaskState::Running(row.health)
                    } else {
                        TaskState::Pending
                    }
                }
                None => {
                    // No container: it failed to start (reason recorded), or the process that
                    // was starting it died first (then it is not the task's fault).
                    if row.stopped_reason.is_none() && row.started_at.is_none() {
                        desired_running = false;
                    }
                    TaskState::Exited {
                        exit_code: row.exit_code,
                        ever_ran: row.started_at.is_some(),
                        detail: row
                            .stopped_reason
                            .clone()
                            .or_else(|| Some("container disappeared".into())),
                    }
                }
                Some(c) => match self.state_of(c, &mut exits).await? {
                    ContainerState::Created if row.desired_running => {
                        if !starting {
                            self.spawn_start_existing(
                                key,
                                row.id.clone(),
                                c.host.clone(),
                                c.id.clone(),
                            );
                        }
                        TaskState::Pending
                    }
                    ContainerState::Created => TaskState::Exited {
                        exit_code: None,
                        ever_ran: false,
                        detail: None,
                    },
                    ContainerState::Running => {
                        // Its starter has not written when it started yet: it started just
                        // now (a task of several containers is created long before its main
                        // container starts, after its dependencies).
                        let started_at = match row.started_at {
                            Some(at) => at,
                            None if starting => now,
                            None => c.created_ms,
                        };
                        let def = defs.get(&row.revision);
                        let http = def.and_then(|d| d.container.http_health.clone());
                        let port = def.and_then(|d| d.container.port);
                        let (health, probe) = {
                            let mut l = self.local();
                            let probe = match (&http, &c.ip) {
                                (Some(check), Some(ip)) => {
                                    let port = check.port.or(port).unwrap_or(80);
                                    let url = format!("http://{ip}:{port}{}", check.path);
                                    // A task recorded healthy (by this server before a
                                    // restart) stays routable until probes say otherwise.
                                    let was_healthy = row.health == TaskHealth::Healthy;
                                    let remote = (Some(c.host.as_str()) != seen.local.as_deref())
                                        .then(|| c.host.clone());
                                    let p =
                                        l.probes.entry(row.id.clone()).or_insert_with(|| Probe {
                                            service: key.clone(),
                                            url: url.clone(),
                                            port,
                                            host: remote,
                                            check: check.clone(),
                                            state: slipway_core::health::ProbeState {
                                                healthy: was_healthy,
                                                ever_healthy: was_healthy,
                                                ..Default::default()
                                            },
                                            next_at: now,
                                            in_flight: false,
                                        });
                                    p.url = url;
                                    Some(p.state.clone())
                                }
                                _ => None,
                            };
                            let grace = svc.config.health_check_grace_period_ms;
                            let health = match (&http, &probe) {
                                (Some(check), Some(p)) => health::assess(HealthInputs {
                                    now,
                                    started_at,
                                    grace_period_ms: grace,
                                    engine: c.health,
                                    http: Some((check, p)),
                                }),
                                // An HTTP check without an address cannot pass yet.
                                (Some(_), None) => TaskHealth::Unknown,
                                _ => health::assess(HealthInputs {
                                    now,
                                    started_at,
                                    grace_period_ms: grace,
                                    engine: c.health,
                                    http: None,
                                }),
                            };
                            (health, probe)
                        };
                        if health == TaskHealth::Unhealthy && row.desired_running {
                            let check = def.and_then(|d| d.container.healthcheck.as_ref());
                            failing_check = Some(
                                self.failing_check(c, probe.as_ref(), http.as_ref(), check)
                                    .await,
                            );
                        }
                        let mut changed = false;
                        if row.health != health {
                            row.health = health;
                            changed = true;
                        }
                        // Record the first pass at once, in the same write that makes the
                        // task routable, so no request can predate it.
                        let first_healthy = health == TaskHealth::Healthy
                            && row.desired_running
                            && row.healthy_at.is_none();
                        if first_healthy {
                            row.healthy_at = Some(now);
                            newly_healthy_ids.push(row.id.clone());
                            changed = true;
                        }
                        if row.desired_running && row.last_status != TaskStatus::Running {
                            row.last_status = TaskStatus::Running;
                            changed = true;
                        }
                        if row.started_at.is_none() {
                            row.started_at = Some(started_at);
                            changed = true;
                        }
                        if row.address.is_none() && c.ip.is_some() {
                            row.address = c.ip.clone();
                            changed = true;
                        }
                        if row.container_id.is_none() {
                            row.container_id = Some(c.id.clone());
                            changed = true;
                        }
                        if row.published != c.published && c.published.is_some() {
                            row.published = c.published.clone();
                            changed = true;
                        }
                        if row.host.is_none() && !c.host.is_empty() {
                            row.host = Some(c.host.clone());
                            changed = true;
                        }
                        if row.containers != c.containers {
                            row.containers = c.containers.clone();
                            changed = true;
                        }
                        if changed {
                            self.save_task(row).await?;
                        }
                        if row.desired_running {
                            TaskState::Running(health)
                        } else {
                            TaskState::Running(TaskHealth::Unknown)
                        }
                    }
                    ContainerState::Exited => {
                        let info = match exits.remove(&row.id) {
                            Some(i) => i,
                            None => self
                                .inner
                                .hosts
                                .exit_info(&c.host, &c.id)
                                .await?
                                .unwrap_or_default(),
                        };
                        let mut detail = Vec::new();
                        // A task of several containers: which one ended it, and how the
                        // others were (a crashed app beside healthy sidecars).
                        if let Some(name) = &info.container {
                            detail.push(slipway_core::model::containers::ended_story(
                                name,
                                info.exit_code,
                                &info.containers,
                            ));
                            if row.containers != info.containers {
                                row.containers = info.containers.clone();
                            }
                        }
                        if info.oom_killed {
                            detail.push(
                                "OutOfMemoryError: container killed due to memory usage".to_owned(),
                            );
                        }
                        if let Some(e) = &info.error {
                            detail.push(e.clone());
                        }
                        if let Some(h) = &info.health_output {
                            detail.push(format!("last health check output: {h}"));
                        }
                        if let Some(line) = info.task_exit().last_line() {
                            let line: String = line.chars().take(200).collect();
                            detail.push(format!("last output: {line}"));
                        }
                        let ever_ran = info.started_ms.is_some() || row.started_at.is_some();
                        exits.insert(row.id.clone(), info.clone());
                        TaskState::Exited {
                            exit_code: info.exit_code,
                            ever_ran,
                            detail: if detail.is_empty() {
                                None
                            } else {
                                Some(detail.join("; "))
                            },
                        }
                    }
                },
            };
            let newly_healthy = newly_healthy_ids.contains(&row.id);
            observed.push(ObservedTask {
                id: row.id.clone(),
                deployment_id: row.deployment_id.clone(),
                revision: row.revision,
                desired_running,
                state,
                newly_healthy,
                evict,
                host,
                failing_check,
            });
        }

        // A host gone unheard, told once per service (and again after it was heard).
        {
            let mut fresh = Vec::new();
            {
                let mut l = self.local();
                l.unheard_told
                    .retain(|(k, h)| k != key || unheard_now.contains_key(h));
                for (host, ids) in &unheard_now {
                    if l.unheard_told.insert((key.clone(), host.clone())) {
                        fresh.push((host.clone(), ids.clone()));
                    }
                }
            }
            for (host, ids) in fresh {
                let tasks: Vec<String> = ids.iter().map(|t| format!("(task {t})")).collect();
                let msg = format!(
                    "(service {}) host {host} is unheard: starting replacements of its {} task(s) on the other hosts: {}; if the host is heard again the surplus is scaled in, if it is lost they are counted out.",
                    key.name,
                    ids.len(),
                    tasks.join(" ")
                );
                self.event(key, now, msg).await?;
            }
        }

        // The story of a lost host, told once: its tasks (recorded with the reason) and one
        // event, in one batch (a task already told of keeps its reason, so no repeat).
        for (host, ids) in &lost_now {
            let mut batch = Batch::new();
            for id in ids {
                if let Some(row) = rows.iter().find(|r| &r.id == id) {
                    batch = batch.write(Write::Task(row.clone()));
                }
            }
            let tasks: Vec<String> = ids.iter().map(|t| format!("(task {t})")).collect();
            let msg = format!(
                "(service {}) host {host} was lost (its agent stopped answering): replacing its {} task(s) on the other hosts: {}.",
                key.name,
                ids.len(),
                tasks.join(" ")
            );
            let out = store.commit(batch.event(key, now, msg)).await?;
            for _ in ids {
                slipway_metrics::global().task_replaced(Replacement::HostLost);
            }
            for (id, o) in ids.iter().zip(out.iter()) {
                if let Some(row) = rows.iter_mut().find(|r| &r.id == id) {
                    row.version = o.version();
                }
            }
        }

        // A service being deleted is forgotten once nothing of it is left.
        if svc.deleting && observed.is_empty() && containers.is_empty() {
            // Only if nothing revived it since this pass read it (a deploy of the same
            // service): the removal is a compare-and-swap on the version read.
            store
                .commit(
                    slipway_store::Batch::new().write(slipway_store::Write::RemoveService {
                        key: key.clone(),
                        version: svc.version,
                    }),
                )
                .await?;
            let others = store.list_services(Some(&key.app)).await?;
            if !others.iter().any(|s| s.key.env == key.env) {
                self.inner
                    .hosts
                    .remove_network(&self.inner.cluster, key)
                    .await?;
            }
            tracing::info!(service = %key, "service deleted");
            return Ok(());
        }

        let mut backoff = self.local().backoff.get(key).map(|(_, until)| *until);
        let waits_for = self.unready_dependency(svc, &deployments).await?;
        self.note_waiting(key, waits_for.as_deref(), now).await?;
        if waits_for.is_some() {
            // No start yet; look again shortly (dependencies wake nothing here).
            let until = now + crate::depends::DEPENDS_RECHECK_MS;
            backoff = Some(backoff.map_or(until, |b| b.max(until)));
        }
        let mut deployments = deployments;
        if !svc.deleting {
            self.advance_rollout(svc, &mut deployments, &observed, now)
                .await?;
        }
        let plan = planner::plan(PlanInput {
            now,
            desired_count: svc.desired_count,
            config: &svc.config,
            deleting: svc.deleting,
            deployments: &deployments,
            tasks: &observed,
            start_backoff_until: backoff,
        });
        if !plan.actions.is_empty() {
            tracing::debug!(service = %key, actions = ?plan.actions, "plan");
        }
        self.execute(svc, &deployments, &rows, &by_task, &exits, plan.actions)
            .await?;
        if let Err(e) = self.trace_outcomes(key).await {
            tracing::debug!(service = %key, error = %e, "cannot trace deployment outcomes");
        }
        if let Some(ms) = plan.requeue_after_ms {
            self.local()
                .requeue
                .insert(key.clone(), now_ms() + ms as i64);
        }
        Ok(())
    }
}

impl Controller {
    /// What a task that failed its checks was told, in words: the check (HTTP path and
    /// port, or the container command), its last result and how many failed in a row.
    async fn failing_check(
        &self,
        c: &ContainerInfo,
        probe: Option<&ProbeState>,
        http: Option<&HttpHealthCheck>,
        command: Option<&CommandHealthCheck>,
    ) -> String {
        let mut parts = Vec::new();
        if let (Some(check), Some(p)) = (http, probe)
            && p.failures > 0
        {
            let last = p
                .last_failure
                .clone()
                .unwrap_or_else(|| format!("GET {} failed", check.path));
            parts.push(format!("{last} ({} times in a row)", p.failures));
        }
        if c.health == EngineHealth::Unhealthy {
            let what = command.map_or_else(
                || "the image's HEALTHCHECK".to_owned(),
                |h| format!("container check {:?}", h.test),
            );
            let output = self
                .inner
                .hosts
                .exit_info(&c.host, &c.id)
                .await
                .ok()
                .flatten()
                .and_then(|i| i.health_output);
            let retries =
                command.map_or(String::new(), |h| format!(" {} times in a row", h.retries));
            parts.push(match output {
                Some(o) if !o.is_empty() => format!("{what} failed{retries}: {o:?}"),
                _ => format!("{what} failed{retries}"),
            });
        }
        parts.join("; ")
    }
}

impl Controller {
    /// A container's state: the list's, unless the engine reported it dead (`die`) while
    /// the list still shows it running; then the engine's own (inspect), so a killed task
    /// is replaced without waiting for the list to catch up.
    /// What the engine said of an exited one is kept in `exits` (by task), not asked again.
    async fn state_of(
        &self,
        c: &ContainerInfo,
        exits: &mut HashMap<String, ExitInfo>,
    ) -> Result<ContainerState, ControllerError> {
        if c.state != ContainerState::Running || !self.local().dying.contains_key(&c.id) {
            return Ok(c.state);
        }
        let info = self.inner.hosts.exit_info(&c.host, &c.id).await?;
        Ok(match info {
            Some(i) if !i.running => {
                self.local().dying.remove(&c.id);
                exits.insert(c.task_id.clone(), i);
                ContainerState::Exited
            }
            _ => ContainerState::Running,
        })
    }
}
