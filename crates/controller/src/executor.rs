//! The executor: carries out the planner's actions against the engine and the store.
//!
//! Every action is safe to repeat: starting a task first records it, creating its container
//! is keyed by the task id, stopping an already stopped container succeeds, and reaping a
//! container that is gone only updates the record. Long operations (container start, stop
//! with its grace period) run in their own tasks and wake the service when done.
//!
//! Records are written by compare-and-swap on the versions the pass read: a write that lost
//! a race fails the pass, which is then planned again from a fresh observation.

use std::collections::HashMap;
use std::time::Duration;

use slipway_agent::proto::Launch;
use slipway_core::model::{
    Deployment, RolloutState, STOP_TIMEOUT_HINT, SecretDelivery, ServiceKey, Task, TaskExit,
    TaskHealth, TaskStatus,
};
use slipway_core::planner::{Action, Mark};
use slipway_runtime::{ContainerInfo, ExitInfo, SecretFile};
use slipway_store::{Batch, NewDeployment, RevisionChoice, ServiceRecord, Write, random_id};

use crate::schedule::{Board, need_of};
use crate::{Controller, ControllerError, now_ms};

/// Crash-loop back-off: the first crashes are replaced at once, then the delay doubles from
/// one second up to five minutes.
fn backoff_ms(streak: u32) -> Option<i64> {
    const FREE: u32 = 3;
    if streak < FREE {
        return None;
    }
    Some((1000i64 << (streak - FREE).min(12)).min(300_000))
}

impl Controller {
    pub(crate) async fn execute(
        &self,
        svc: &ServiceRecord,
        deployments: &[Deployment],
        rows: &[Task],
        containers: &HashMap<&str, &ContainerInfo>,
        exits: &HashMap<String, ExitInfo>,
        actions: Vec<Action>,
    ) -> Result<(), ControllerError> {
        let key = &svc.key;
        let now = now_ms();
        // The hosts, as placement sees them (read once, when a task needs a place).
        let mut board: Option<Board> = None;
        // Tasks that wait for a host: try again.
        for t in rows
            .iter()
            .filter(|t| t.host.is_none() && t.pending_reason.is_some() && t.desired_running)
        {
            if self.local().starting.contains(&t.id) {
                continue;
            }
            let Some(td) = self
                .inner
                .store
                .get_task_definition(&key.family(), t.revision)
                .await?
            else {
                continue;
            };
            if board.is_none() {
                board = Some(self.board(key).await?);
            }
            let Some(b) = board.as_mut() else { continue };
            if let Ok(host) = b.place(need_of(&td.container), &svc.placement) {
                let mut t = t.clone();
                t.host = Some(host.clone());
                t.pending_reason = None;
                self.save_task(&mut t).await?;
                self.spawn_start(key, t, td.container, host);
            }
        }
        let mut deps: HashMap<String, Deployment> = deployments
            .iter()
            .map(|d| (d.id.clone(), d.clone()))
            .collect();
        let mut dirty: Vec<String> = Vec::new();
        let row = |id: &str| rows.iter().find(|t| t.id == id).cloned();
        let mut stopped: Vec<String> = Vec::new();
        let mut removals: Vec<(String, String)> = Vec::new();

        // This pass ends the deployment (failed, or rolled back): a crash in it announces no
        // retry, as none follows.
        let ends = actions.iter().any(|a| {
            matches!(
                a,
                Action::Finish {
                    state: RolloutState::Failed,
                    ..
                } | Action::Rollback { .. }
            )
        });
        for action in actions {
            // Counted once the task's record says so (a pass that fails before re-plans it).
            let replaced = action.replacement();
            match action {
                Action::Start {
                    deployment_id,
                    revision,
                } => {
                    let Some(td) = self
                        .inner
                        .store
                        .get_task_definition(&key.family(), revision)
                        .await?
                    else {
                        tracing::error!(service = %key, revision, "task definition missing; cannot start task");
                        continue;
                    };
                    let id = random_id(6);
                    let mut task = Task::provisioning(
                        id.clone(),
                        key.clone(),
                        deployment_id.clone(),
                        revision,
                        now,
                    );
                    if board.is_none() {
                        board = Some(self.board(key).await?);
                    }
                    let placed = match board.as_mut() {
                        Some(b) => b.place(need_of(&td.container), &svc.placement),
                        None => Err(slipway_core::placement::Unplaced::NoHost),
                    };
                    match placed {
                        Ok(host) => {
                            task.host = Some(host.clone());
                            self.save_task(&mut task).await?;
                            self.spawn_start(key, task, td.container, host);
                        }
                        Err(why) => {
                            // ECS's words: the task waits, PENDING, and the service says why.
                            task.pending_reason = Some(why.code().to_owned());
                            self.save_task(&mut task).await?;
                            let msg = format!(
                                "(service {}) was unable to place a task because no host met all of its requirements: {why}.",
                                key.name
                            );
                            let newest = self.inner.store.list_events(key, 1).await?;
                            if newest.first().is_none_or(|e| e.message != msg) {
                                self.event(key, now, msg).await?;
                            }
                        }
                    }
                }
                Action::Stop {
                    task_id,
                    code,
                    reason,
                } => {
                    let Some(mut t) = row(&task_id) else { continue };
                    if t.desired_running {
                        t.desired_running = false;
                        // Routed tasks are deregistered and drained first (DEACTIVATING).
                        t.last_status = if self.has_ingress() && t.address.is_some() {
                            TaskStatus::Deactivating
                        } else {
                            TaskStatus::Stopping
                        };
                        t.stop_code = Some(code);
                        t.stopped_reason = Some(reason.clone());
                        self.save_task(&mut t).await?;
                        if let Some(why) = replaced {
                            slipway_metrics::global().task_replaced(why);
                        }
                        stopped.push(task_id.clone());
                    }
                    self.local().probes.remove(&task_id);
                    if let Some(c) = containers.get(task_id.as_str()) {
                        self.spawn_stop(key, &task_id, &c.host, &c.id);
                    }
                }
                Action::Reap {
                    task_id,
                    code,
                    reason,
                    exit_code,
                    crashed,
                } => {
                    // Removed after this pass's starts are under way (its output and exit
                    // details were read when it was observed).
                    if let Some(c) = containers.get(task_id.as_str()) {
                        removals.push((c.host.clone(), c.id.clone()));
                    }
                    self.local().probes.remove(&task_id);
                    let Some(mut t) = row(&task_id) else { continue };
                    let info = exits.get(&task_id);
                    let exit = info.map(ExitInfo::task_exit);
                    // Asked to stop, and SIGTERM did not end it: say so, with the way out.
                    let timed_out = !crashed
                        && exit
                            .as_ref()
                            .is_some_and(TaskExit::killed_after_stop_timeout);
                    if timed_out {
                        t.stopped_reason = Some(match t.stopped_reason.take() {
                            Some(r) => format!("{r}; {STOP_TIMEOUT_HINT}"),
                            None => format!("Task stopped; {STOP_TIMEOUT_HINT}"),
                        });
                    }
                    if exit.is_some() {
                        t.exit = exit;
                    }
                    t.last_status = TaskStatus::Stopped;
                    t.desired_running = false;
                    t.health = TaskHealth::Unknown;
                    t.exit_code = exit_code.or(t.exit_code);
                    t.stopped_at = Some(info.and_then(|i| i.finished_ms).unwrap_or(now));
                    if t.stop_code.is_none() || crashed {
                        t.stop_code = Some(code);
                    }
                    if crashed || t.stopped_reason.is_none() {
                        t.stopped_reason = Some(if reason.is_empty() {
                            "Task stopped".to_owned()
                        } else {
                            reason.clone()
                        });
                    }
                    let mut batch = Batch::new().write(Write::Task(t.clone()));
                    if timed_out {
                        let msg = format!(
                            "(service {}) task {} was {STOP_TIMEOUT_HINT}.",
                            key.name, task_id
                        );
                        batch = batch.event(key, now, msg);
                    }
                    if crashed {
                        let msg = format!(
                            "(service {}) task {} stopped: {}",
                            key.name,
                            task_id,
                            t.stopped_reason.as_deref().unwrap_or("")
                        );
                        batch = batch.event(key, now, msg);
                        let announce = {
                            let mut l = self.local();
                            let entry = l.backoff.entry(key.clone()).or_insert((0, 0));
                            entry.0 += 1;
                            match backoff_ms(entry.0) {
                                Some(ms) => {
                                    entry.1 = now + ms;
                                    // Only the first step of a streak is announced.
                                    (ms == 1000 && !ends).then_some(ms)
                                }
                                None => None,
                            }
                        };
                        if let Some(ms) = announce {
                            let msg = format!(
                                "(service {}) is unable to consistently start tasks successfully; retrying in {}s.",
                                key.name,
                                ms / 1000
                            );
                            batch = batch.event(key, now, msg);
                        }
                    }
                    self.inner.store.commit(batch).await?;
                    if let Some(why) = replaced {
                        slipway_metrics::global().task_replaced(why);
                    }
                }
                Action::TaskHealthy { task_id } => {
                    let Some(mut t) = row(&task_id) else { continue };
                    let healthy_at = *t.healthy_at.get_or_insert(now);
                    t.health = TaskHealth::Healthy;
                    self.save_task(&mut t).await?;
                    self.trace_healthy(&t, healthy_at);
                    self.local().backoff.remove(key);
                    if let Some(d) = deps
                        .get_mut(&t.deployment_id)
                        .filter(|d| d.timeline.first_healthy_at.is_none())
                    {
                        d.timeline.first_healthy_at = Some(healthy_at);
                        dirty.push(d.id.clone());
                    }
                    // A rollback deployment adopts tasks of its revision.
                    for d in deps.values_mut() {
                        if d.state == RolloutState::InProgress
                            && d.rollback_of.is_some()
                            && d.revision == t.revision
                            && d.timeline.first_healthy_at.is_none()
                        {
                            d.timeline.first_healthy_at = Some(healthy_at);
                            dirty.push(d.id.clone());
                        }
                    }
                }
                Action::SetFailedTasks {
                    deployment_id,
                    failed_tasks,
                } => {
                    if let Some(d) = deps.get_mut(&deployment_id) {
                        d.failed_tasks = failed_tasks;
                        dirty.push(deployment_id);
                    }
                }
                Action::Finish {
                    deployment_id,
                    state,
                    reason,
                } => {
                    if let Some(d) = deps.get_mut(&deployment_id) {
                        d.state = state;
                        d.reason = Some(reason);
                        d.timeline.finished_at = Some(now);
                        if state == RolloutState::Succeeded && d.timeline.old_gone_at.is_none() {
                            d.timeline.old_gone_at = Some(now);
                        }
                        dirty.push(deployment_id);
                    }
                }
                Action::Mark {
                    deployment_id,
                    mark,
                } => {
                    if let Some(d) = deps.get_mut(&deployment_id) {
                        match mark {
                            Mark::FirstOldStopped => d.timeline.first_old_stopped_at = Some(now),
                            Mark::OldDeregistered => d.timeline.old_deregistered_at = Some(now),
                            Mark::OldGone => d.timeline.old_gone_at = Some(now),
                        }
                        dirty.push(deployment_id);
                    }
                }
                Action::Rollback {
                    failed_id,
                    to_revision,
                    reason,
                } => {
                    // What this pass learned about the failed deployment, and the rollback,
                    // in one transaction.
                    let mut batch = Batch::new();
                    if let Some(d) = deps.get_mut(&failed_id) {
                        d.reason = Some(reason.clone());
                        d.updated_at = now;
                        batch.push(Write::Deployment(d.clone()));
                    }
                    dirty.retain(|id| id != &failed_id);
                    let new_id = format!("d-{}", random_id(6));
                    batch.push(Write::Deploy(NewDeployment {
                        id: new_id.clone(),
                        key: key.clone(),
                        kind: svc.kind,
                        desired_count: svc.desired_count,
                        config: svc.config,
                        placement: svc.placement.clone(),
                        revision: RevisionChoice::Existing(to_revision),
                        rollback_of: Some(failed_id.clone()),
                        now,
                        service_version: svc.version,
                        event: None,
                    }));
                    self.inner.store.commit(batch).await?;
                    let new = &new_id;
                    tracing::warn!(service = %key, failed = %failed_id, rollback = %new, %reason, "rolling back");
                    self.local().backoff.remove(key);
                    self.wake(key);
                }
                Action::Event(message) => {
                    let message = message.replace("(service)", &format!("(service {})", key.name));
                    let newest = self.inner.store.list_events(key, 1).await?;
                    let repeat = newest.first().is_some_and(|e| e.message == message);
                    if !repeat || !message.contains("unable") {
                        self.event(key, now, message).await?;
                    }
                }
            }
        }
        for (host, id) in removals {
            self.inner.hosts.remove(&host, &id).await?;
        }
        if !stopped.is_empty() {
            let msg = format!(
                "(service {}) has stopped {} running tasks: {}.",
                key.name,
                stopped.len(),
                stopped
                    .iter()
                    .map(|t| format!("(task {t})"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            self.event(key, now, msg).await?;
        }
        dirty.sort();
        dirty.dedup();
        for id in dirty {
            if let Some(d) = deps.get_mut(&id) {
                d.updated_at = now;
                self.save_deployment(d).await?;
            }
        }
        Ok(())
    }

    /// The secrets of a container, decrypted: environment variables and files. Errors
    /// name the secret, never a value.
    async fn secret_values(
        &self,
        container: &slipway_core::model::ContainerSpec,
    ) -> Result<(Vec<(String, String)>, Vec<SecretFile>), String> {
        let (mut env, mut files) = (Vec::new(), Vec::new());
        for (var, r) in &container.secrets {
            let found = self
                .inner
                .store
                .get_secret(&r.name, r.version)
                .await
                .map_err(|e| e.to_string())?;
            let Some((version, sealed)) = found else {
                return Err(match r.version {
                    Some(v) => format!(
                        "secret {:?} version {v} (variable {var}) no longer exists",
                        r.name
                    ),
                    None => format!(
                        "secret {:?} (variable {var}) does not exist; set it with `slipway secret set {}`",
                        r.name, r.name
                    ),
                });
            };
            let plain = self
                .inner
                .secrets
                .open(&r.name, version, &sealed)
                .map_err(|e| e.to_string())?;
            let value = String::from_utf8(plain.value)
                .map_err(|_| format!("secret {:?} is not UTF-8 text", r.name))?;
            match r.delivery {
                SecretDelivery::Env => env.push((var.clone(), value)),
                SecretDelivery::File => files.push(SecretFile {
                    name: var.clone(),
                    value,
                }),
            }
        }
        Ok((env, files))
    }

    /// Starts `task` on `host` in the background (its record is written already).
    pub(crate) fn spawn_start(
        &self,
        key: &ServiceKey,
        task: Task,
        container: slipway_core::model::ContainerSpec,
        host: String,
    ) {
        let id = task.id.clone();
        self.local().starting.insert(id.clone());
        let c = self.clone();
        let key = key.clone();
        tokio::spawn(async move {
            c.start_task(&key, task, container, &host).await;
            c.local().starting.remove(&id);
            c.wake(&key);
        });
    }

    /// Creates and starts a task's container on its host, recording the outcome on the
    /// task. The task may be asked to stop meanwhile (a stop request, a newer deployment):
    /// each record write applies only what the starter learned to the current record.
    pub(crate) async fn start_task(
        &self,
        key: &ServiceKey,
        task: Task,
        container: slipway_core::model::ContainerSpec,
        host: &str,
    ) {
        let hosts = &self.inner.hosts;
        let id = task.id.clone();
        let digest = container.image_digest.clone();
        // Ok: when the container started.
        let result: Result<i64, String> = async {
            let network = {
                let _guard = self.inner.network_lock.lock().await;
                hosts
                    .ensure_network(host, &self.inner.cluster, key)
                    .await
                    .map_err(|e| e.to_string())?
            };
            let (mut extra_env, secret_files) = self.secret_values(&container).await?;
            // Sidecars take their secrets as variables (files are the main container's).
            let mut sidecar_env = Vec::new();
            for s in &container.sidecars {
                let (env, _) = self.secret_values(&s.container).await?;
                if !env.is_empty() {
                    sidecar_env.push((s.name.clone(), env));
                }
            }
            extra_env.extend([
                ("SLIPWAY_APP".to_owned(), key.app.clone()),
                ("SLIPWAY_ENV".to_owned(), key.env.clone()),
                ("SLIPWAY_SERVICE".to_owned(), key.name.clone()),
                ("SLIPWAY_TASK".to_owned(), task.id.clone()),
                (
                    "SLIPWAY_SERVICE_DISCOVERY_SUFFIX".to_owned(),
                    format!("{}.{}.internal", key.env, key.app),
                ),
            ]);
            let image = container.image.clone();
            let launch = Launch {
                cluster: self.inner.cluster.clone(),
                service: key.clone(),
                task_id: task.id.clone(),
                deployment_id: task.deployment_id.clone(),
                revision: task.revision,
                network: network.clone(),
                container,
                extra_env,
                secret_files,
                sidecar_env,
                // Published on the host's address: the ingress reaches tasks of other
                // hosts there.
                publish: true,
                auth: Vec::new(),
            };
            let pull_from = now_ms();
            let created = hosts.create(host, launch).await.map_err(|e| e.to_string());
            self.trace_pull(
                &task,
                &image,
                pull_from,
                created.as_ref().map(|_| ()).map_err(String::as_str),
            );
            let cid = created?;
            self.update_task(&id, |t| {
                t.container_id = Some(cid.clone());
                t.host = Some(host.to_owned());
                if t.last_status == TaskStatus::Provisioning {
                    t.last_status = TaskStatus::Pending;
                }
                true
            })
            .await
            .map_err(|e| e.to_string())?;
            if let Err(e) = hosts.start(host, &cid).await {
                let _ = hosts.remove(host, &cid).await;
                self.update_task(&id, |t| {
                    t.container_id = None;
                    true
                })
                .await
                .map_err(|e| e.to_string())?;
                return Err(e.to_string());
            }
            let started_at = now_ms();
            let address = hosts.address(host, &cid, &network).await.ok().flatten();
            self.update_task(&id, |t| {
                if t.desired_running {
                    t.last_status = TaskStatus::Running;
                } else if t.last_status == TaskStatus::Pending {
                    // Asked to stop while starting: the stop is carried out from here.
                    t.last_status = TaskStatus::Stopping;
                }
                t.started_at = Some(started_at);
                t.address = address.clone();
                true
            })
            .await
            .map_err(|e| e.to_string())?;
            Ok(started_at)
        }
        .await;
        self.trace_task_start(
            &task,
            host,
            digest.as_deref(),
            result.as_ref().copied().map_err(String::as_str),
        );
        if let Err(e) = result {
            tracing::warn!(service = %key, task = %id, %host, error = %e, "task failed to start");
            let reason = format!("CannotStartContainerError: {e}");
            if let Err(e) = self
                .update_task(&id, |t| {
                    t.stopped_reason = Some(reason.clone());
                    true
                })
                .await
            {
                tracing::error!(error = %e, "cannot record failed start");
            }
        }
    }

    /// Starts a container that exists but never started (its starter died).
    pub(crate) fn spawn_start_existing(
        &self,
        key: &ServiceKey,
        task_id: String,
        host: String,
        container_id: String,
    ) {
        self.local().starting.insert(task_id.clone());
        let c = self.clone();
        let key = key.clone();
        tokio::spawn(async move {
            if let Err(e) = c.inner.hosts.start(&host, &container_id).await {
                tracing::warn!(task = %task_id, error = %e, "starting leftover container failed");
                let _ = c.inner.hosts.remove(&host, &container_id).await;
            }
            c.local().starting.remove(&task_id);
            c.wake(&key);
        });
    }

    pub(crate) fn spawn_stop(
        &self,
        key: &ServiceKey,
        task_id: &str,
        host: &str,
        container_id: &str,
    ) {
        if !self.local().stopping.insert(task_id.to_owned()) {
            return;
        }
        let c = self.clone();
        let key = key.clone();
        let task_id = task_id.to_owned();
        let host = host.to_owned();
        let container_id = container_id.to_owned();
        tokio::spawn(async move {
            let task = c.inner.store.get_task(&task_id).await.ok().flatten();
            let spec = match &task {
                Some(t) => match &t.standalone {
                    Some(s) => Some(s.container.clone()),
                    None => c
                        .inner
                        .store
                        .get_task_definition(&key.family(), t.revision)
                        .await
                        .ok()
                        .flatten()
                        .map(|d| d.container),
                },
                None => None,
            };
            let timeout = spec.as_ref().map_or(Duration::from_secs(30), |s| {
                Duration::from_millis(s.stop_timeout_ms)
            });
            // Deregister from the ingress and let in-flight requests finish before SIGTERM.
            let route = spec.as_ref().and_then(|s| s.http_route.clone());
            let owner = match &task {
                Some(t) if c.traces().enabled() && t.standalone.is_none() => {
                    Some((c.stop_trace_owner(&key, t).await, t.id.clone()))
                }
                _ => None,
            };
            let drain_from = now_ms();
            if let (Some(route), Some(t)) = (route, task)
                && t.last_status == TaskStatus::Deactivating
            {
                let waited = c
                    .drain(
                        &task_id,
                        Duration::from_millis(route.deregistration_delay_ms),
                    )
                    .await;
                if let Some((dep, tid)) = &owner {
                    c.traces().export(
                        crate::traces::child(
                            dep,
                            &key,
                            "drain",
                            &format!("{tid}/drain"),
                            drain_from,
                            now_ms(),
                        )
                        .attr("slipway.task", tid.as_str())
                        .attr(
                            "slipway.deregistration_delay_ms",
                            route.deregistration_delay_ms as i64,
                        ),
                    );
                }
                if let Some(waited) = waited {
                    tracing::debug!(task = %task_id, waited_ms = waited.as_millis() as u64, "drained");
                }
                if let Err(e) = c
                    .update_task(&task_id, |t| {
                        let drained = t.last_status == TaskStatus::Deactivating;
                        if drained {
                            t.last_status = TaskStatus::Stopping;
                        }
                        drained
                    })
                    .await
                {
                    tracing::warn!(error = %e, "cannot record task state");
                }
            }
            let stop_from = now_ms();
            let stopped = c.inner.hosts.stop(&host, &container_id, timeout).await;
            if let Some((dep, tid)) = &owner {
                let mut span = crate::traces::child(
                    dep,
                    &key,
                    "stop",
                    &format!("{tid}/stop"),
                    stop_from,
                    now_ms(),
                )
                .attr("slipway.task", tid.as_str())
                .attr("slipway.host", host.as_str());
                if let Err(e) = &stopped {
                    span = span.error(e.to_string());
                }
                c.traces().export(span);
            }
            if let Err(e) = stopped {
                tracing::warn!(task = %task_id, error = %e, "stopping task failed; will retry");
            }
            c.local().stopping.remove(&task_id);
            c.wake(&key);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::backoff_ms;

    #[test]
    fn crash_loop_backoff_doubles_up_to_five_minutes() {
        assert_eq!(backoff_ms(1), None);
        assert_eq!(backoff_ms(2), None);
        assert_eq!(backoff_ms(3), Some(1000));
        assert_eq!(backoff_ms(4), Some(2000));
        assert_eq!(backoff_ms(8), Some(32_000));
        assert_eq!(backoff_ms(20), Some(300_000));
        assert_eq!(backoff_ms(u32::MAX), Some(300_000));
    }
}
