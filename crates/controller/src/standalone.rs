//! Standalone tasks (ECS `RunTask`): a task definition revision run once, outside any
//! service. The application layer records them (PROVISIONING); the controller starts them. They are recorded under [`ServiceKey::standalone`] of their app environment, are
//! never replaced, and are reaped like service tasks: exit code, stop code and reason are
//! kept on the record. Nothing here touches service planning.
//!
//! The reconcile pass reads the live standalone tasks with one indexed query and looks at
//! their containers from the engine listing the pass already made.

use std::collections::{HashMap, HashSet};

use slipway_core::health::EngineHealth;
use slipway_core::model::{ServiceKey, StopCode, Task, TaskHealth, TaskStatus};
use slipway_runtime::{ContainerInfo, ContainerState};

use crate::observe::HostsSeen;
use crate::{Controller, ControllerError, now_ms};

/// `stoppedReason` of a task whose essential container exited (ECS's words).
pub(crate) const ESSENTIAL_EXITED: &str = "Essential container in task exited";

impl Controller {
    /// Starts a recorded standalone task: on its host, or on the host placement picks.
    async fn start_standalone(&self, mut task: Task) -> Result<(), ControllerError> {
        let Some((spec, placement)) = task
            .standalone
            .as_ref()
            .map(|s| (s.container.clone(), s.placement.clone()))
        else {
            return Ok(());
        };
        let key = task.service.clone();
        let host = match task.host.clone() {
            Some(h) => h,
            None => {
                let mut board = self.board(&key).await?;
                match board.place(crate::schedule::need_of(&spec), &placement) {
                    Ok(h) => {
                        task.host = Some(h.clone());
                        task.pending_reason = None;
                        self.save_task(&mut task).await?;
                        h
                    }
                    Err(why) => {
                        if task.pending_reason.as_deref() != Some(why.code()) {
                            task.pending_reason = Some(why.code().to_owned());
                            self.save_task(&mut task).await?;
                        }
                        return Ok(());
                    }
                }
            }
        };
        self.spawn_start(&key, task, spec, host);
        Ok(())
    }

    /// Reconciles the standalone tasks of the environments in `scope` (all when `None`).
    /// `containers` are the engine's containers of standalone tasks.
    pub(crate) async fn reconcile_standalone(
        &self,
        scope: Option<&HashSet<ServiceKey>>,
        containers: Vec<ContainerInfo>,
        seen: &HostsSeen,
    ) -> Result<(), ControllerError> {
        let store = &self.inner.store;
        let in_scope = |k: &ServiceKey| scope.is_none_or(|s| s.contains(k));
        let rows: Vec<Task> = store
            .live_standalone_tasks()
            .await?
            .into_iter()
            .filter(|t| in_scope(&t.service))
            .collect();
        let mut by_task: HashMap<String, ContainerInfo> = containers
            .into_iter()
            .filter(|c| in_scope(&c.service))
            .map(|c| (c.task_id.clone(), c))
            .collect();
        for row in rows {
            let c = by_task.remove(&row.id);
            let id = row.id.clone();
            if let Err(e) = self.reconcile_standalone_task(row, c.as_ref(), seen).await {
                tracing::warn!(task = %id, error = %e, "reconcile of standalone task failed");
            }
        }
        // Containers left have no live record: their task stopped (or was forgotten).
        for c in by_task.into_values() {
            let live = store
                .get_task(&c.task_id)
                .await?
                .is_some_and(|t| t.last_status != TaskStatus::Stopped);
            let busy = {
                let l = self.local();
                l.starting.contains(&c.task_id) || l.stopping.contains(&c.task_id)
            };
            if !live && !busy {
                tracing::info!(container = %c.name, host = %c.host, "removing container of a stopped standalone task");
                self.inner.hosts.remove(&c.host, &c.id).await?;
            }
        }
        Ok(())
    }

    async fn reconcile_standalone_task(
        &self,
        mut t: Task,
        c: Option<&ContainerInfo>,
        seen: &HostsSeen,
    ) -> Result<(), ControllerError> {
        let key = t.service.clone();
        let (starting, stopping) = {
            let l = self.local();
            (l.starting.contains(&t.id), l.stopping.contains(&t.id))
        };
        let now = now_ms();
        match c {
            None if starting => {}
            // Started after the listing was made (a quick run): look again next pass.
            None if t.started_at.is_some_and(|s| s >= seen.listed_at) => {}
            // Its host is out of touch, not lost: what was last known holds.
            None if t
                .host
                .as_deref()
                .is_some_and(|h| !seen.listed.contains(h) && !seen.gone(h)) => {}
            None if t.host.as_deref().is_some_and(|h| seen.gone(h)) => {
                let h = t.host.clone().unwrap_or_default();
                let reason = format!("{ESSENTIAL_EXITED}: host {h} was lost");
                self.mark_stopped(
                    &mut t,
                    StopCode::EssentialContainerExited,
                    reason,
                    None,
                    now,
                )
                .await?;
            }
            None => {
                if t.desired_running && t.container_id.is_none() && t.stopped_reason.is_none() {
                    // Recorded (by the application layer), or the process that was to start
                    // it died first: start it.
                    self.start_standalone(t).await?;
                    return Ok(());
                }
                // It failed to start (reason recorded), or its container is gone.
                let code = match (t.stop_code, t.started_at) {
                    (Some(code), _) => code,
                    (None, None) => StopCode::TaskFailedToStart,
                    (None, Some(_)) => StopCode::EssentialContainerExited,
                };
                let reason = t.stopped_reason.clone().unwrap_or_else(|| {
                    if t.started_at.is_some() {
                        format!("{ESSENTIAL_EXITED}: container disappeared")
                    } else {
                        "Task failed to start".to_owned()
                    }
                });
                self.mark_stopped(&mut t, code, reason, None, now).await?;
            }
            Some(c) => match c.state {
                ContainerState::Created if t.desired_running => {
                    if !starting {
                        self.spawn_start_existing(&key, t.id.clone(), c.host.clone(), c.id.clone());
                    }
                }
                ContainerState::Created => {
                    self.inner.hosts.remove(&c.host, &c.id).await?;
                    let reason = t
                        .stopped_reason
                        .clone()
                        .unwrap_or_else(|| "Task stopped".into());
                    let code = t.stop_code.unwrap_or(StopCode::UserInitiated);
                    self.mark_stopped(&mut t, code, reason, None, now).await?;
                }
                ContainerState::Running => {
                    let mut changed = false;
                    if !t.desired_running {
                        if !stopping {
                            self.spawn_stop(&key, &t.id, &c.host, &c.id);
                        }
                    } else if t.last_status != TaskStatus::Running {
                        t.last_status = TaskStatus::Running;
                        changed = true;
                    }
                    let health = match c.health {
                        EngineHealth::Healthy => TaskHealth::Healthy,
                        EngineHealth::Unhealthy => TaskHealth::Unhealthy,
                        EngineHealth::None | EngineHealth::Starting => TaskHealth::Unknown,
                    };
                    if t.health != health {
                        t.health = health;
                        changed = true;
                    }
                    if t.started_at.is_none() {
                        t.started_at = Some(c.created_ms.max(t.created_at));
                        changed = true;
                    }
                    if t.container_id.is_none() {
                        t.container_id = Some(c.id.clone());
                        changed = true;
                    }
                    if t.address.is_none() && c.ip.is_some() {
                        t.address = c.ip.clone();
                        changed = true;
                    }
                    if changed {
                        self.save_task(&mut t).await?;
                    }
                }
                ContainerState::Exited => {
                    let info = self
                        .inner
                        .hosts
                        .exit_info(&c.host, &c.id)
                        .await?
                        .unwrap_or_default();
                    self.inner.hosts.remove(&c.host, &c.id).await?;
                    let ever_ran = info.started_ms.is_some() || t.started_at.is_some();
                    if t.started_at.is_none() {
                        t.started_at = info.started_ms;
                    }
                    t.exit_code = info.exit_code.or(t.exit_code);
                    t.exit = Some(info.task_exit());
                    let code = match t.stop_code {
                        Some(code) => code,
                        None if ever_ran => StopCode::EssentialContainerExited,
                        None => StopCode::TaskFailedToStart,
                    };
                    let reason = t.stopped_reason.clone().unwrap_or_else(|| {
                        let mut r = if ever_ran {
                            ESSENTIAL_EXITED.to_owned()
                        } else {
                            "Task failed to start".to_owned()
                        };
                        if info.oom_killed {
                            r.push_str(": OutOfMemoryError: container killed due to memory usage");
                        } else if let Some(e) = info.error.as_deref().filter(|e| !e.is_empty()) {
                            r.push_str(": ");
                            r.push_str(e);
                        }
                        r
                    });
                    self.mark_stopped(&mut t, code, reason, info.finished_ms, now)
                        .await?;
                }
            },
        }
        Ok(())
    }

    async fn mark_stopped(
        &self,
        t: &mut Task,
        code: StopCode,
        reason: String,
        finished: Option<i64>,
        now: i64,
    ) -> Result<(), ControllerError> {
        t.last_status = TaskStatus::Stopped;
        t.desired_running = false;
        t.health = TaskHealth::Unknown;
        t.stop_code = Some(code);
        t.stopped_reason = Some(reason);
        t.stopped_at = Some(finished.unwrap_or(now));
        self.save_task(t).await?;
        tracing::info!(
            task = %t.id,
            exit_code = ?t.exit_code,
            stop_code = code.as_str(),
            reason = t.stopped_reason.as_deref().unwrap_or(""),
            "standalone task stopped"
        );
        Ok(())
    }
}
