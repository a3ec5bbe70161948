//! The deployment planner: desired state + observed tasks → actions.
//!
//! [`plan`] is a pure function. The controller calls it for one service with the service's
//! desired count and deployment configuration, its deployments and the tasks it observed in
//! the engine, and carries out the [`Action`]s it returns. Because the planner is
//! level-triggered and keeps no state of its own, running it again on the same input gives
//! the same actions, and a controller that crashed anywhere recovers by observing again.
//!
//! The rules follow ECS's rolling update:
//! - the *target* deployment is the newest one that is `IN_PROGRESS` or `SUCCEEDED`;
//! - tasks of the target are *new*, all others are *old*; a rollback deployment also adopts
//!   live tasks of its revision, so rolling back to tasks that still run costs nothing;
//! - new tasks start while fewer than `desired` exist and the total (including stopping
//!   tasks) stays within `floor(desired × maximum%)`;
//! - old tasks stop while the healthy total stays at or above
//!   `ceil(desired × minimumHealthy%)`; tasks that are not healthy may always be stopped;
//! - tasks that exit on their own, or fail health checks, are stopped and replaced; while the
//!   target is in progress they count towards its circuit breaker, which fails the deployment
//!   and, with rollback, starts a deployment of the last `SUCCEEDED` revision;
//! - a deployment that runs past its timeout fails the same way;
//! - an older deployment still in progress when a newer one becomes the target ends FAILED
//!   ("superseded by deployment ...").
//! - tasks on a draining host, or moved by a rebalance, are replaced like old ones; tasks on
//!   a host gone unheard get replacements within maximum % but are never stopped from here
//!   (see [`Evict::Unreachable`]); a scale-in takes from the most crowded hosts first.

use crate::model::{Deployment, DeploymentConfig, RolloutState, StopCode, TaskHealth};

/// What the controller observed about one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedTask {
    pub id: String,
    pub deployment_id: String,
    pub revision: u32,
    /// The scheduler still wants this task to run (false once Slipway decided to stop it).
    pub desired_running: bool,
    pub state: TaskState,
    /// Healthy now, and not yet recorded as having been healthy.
    pub newly_healthy: bool,
    /// Replace it elsewhere, with the rolling rules (and why).
    pub evict: Option<Evict>,
    /// The host it runs on (a scale-in takes from the most crowded hosts first, so the
    /// spread survives it).
    pub host: Option<String>,
    /// When it is unhealthy: the check that failed and what it saw, in words.
    pub failing_check: Option<String>,
}

/// Why a task of the current revision is replaced on another host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evict {
    /// Its host is draining.
    Draining,
    /// A rebalance moves it to restore the service's spread.
    Rebalance,
    /// Its host has gone unheard (not lost yet): a replacement starts elsewhere within
    /// maximum %, but the task itself is neither stopped (its host cannot be told) nor
    /// counted healthy. Heard again, its host's tasks are ordinary again and the surplus is
    /// scaled in; lost, they are counted out.
    Unreachable,
}

/// The observed state of a task's container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskState {
    /// Being created or started.
    Pending,
    /// Running, with the controller's judgement of its health.
    Running(TaskHealth),
    /// The container is no longer running.
    Exited {
        exit_code: Option<i64>,
        ever_ran: bool,
        detail: Option<String>,
    },
}

/// Everything the planner needs for one service.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    pub now: i64,
    pub desired_count: u32,
    pub config: &'a DeploymentConfig,
    /// The service is being deleted: stop everything.
    pub deleting: bool,
    pub deployments: &'a [Deployment],
    pub tasks: &'a [ObservedTask],
    /// Crash-loop back-off: no task may start before this time.
    pub start_backoff_until: Option<i64>,
}

/// Timeline marks the planner can set on a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    FirstOldStopped,
    /// No task of an older deployment is left serving: the last one was deregistered.
    OldDeregistered,
    OldGone,
}

/// The stop reason of a task that failed its health checks (a detail may follow `: `).
pub const UNHEALTHY: &str = "Task failed health checks";
/// The stop reason of a task moved off a draining host.
pub const DRAINING: &str = "Host is draining";
/// The stop reason of a task moved by a rebalance.
pub const REBALANCED: &str = "Moved to restore the service's spread";

/// Why the controller replaces a task (the `reason` of `slipway_task_replacements_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replacement {
    /// Its essential container exited on its own.
    Exited,
    /// It never ran: its container could not be created or started.
    FailedToStart,
    /// It failed its health checks.
    Unhealthy,
    /// Its host was lost (its agent stopped answering past the loss timeout).
    HostLost,
    /// Its host is draining.
    HostDraining,
    /// A rebalance moves it.
    Rebalance,
}

impl Replacement {
    pub const ALL: [Replacement; 6] = [
        Replacement::Exited,
        Replacement::FailedToStart,
        Replacement::Unhealthy,
        Replacement::HostLost,
        Replacement::HostDraining,
        Replacement::Rebalance,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Replacement::Exited => "exited",
            Replacement::FailedToStart => "failed_to_start",
            Replacement::Unhealthy => "unhealthy",
            Replacement::HostLost => "host_lost",
            Replacement::HostDraining => "host_draining",
            Replacement::Rebalance => "rebalance",
        }
    }
}

impl Action {
    /// Why this action replaces a task, if it does: a crashed task reaped, or a task stopped
    /// for failing its health checks or moved off its host. (A task counted out with its lost
    /// host is reaped as not crashed: the controller reports those where it counts them out.)
    pub fn replacement(&self) -> Option<Replacement> {
        match self {
            Action::Reap {
                crashed: true,
                code,
                ..
            } => Some(match code {
                StopCode::TaskFailedToStart => Replacement::FailedToStart,
                _ => Replacement::Exited,
            }),
            Action::Stop {
                code: StopCode::ServiceSchedulerInitiated,
                reason,
                ..
            } => {
                if reason.starts_with(UNHEALTHY) {
                    Some(Replacement::Unhealthy)
                } else if reason == DRAINING {
                    Some(Replacement::HostDraining)
                } else if reason == REBALANCED {
                    Some(Replacement::Rebalance)
                } else {
                    None
                }
            }
            _ => None,
        }
    }
}

/// One step for the executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create and start a task of this deployment.
    Start {
        deployment_id: String,
        revision: u32,
    },
    /// Stop a running task: deregister, SIGTERM, SIGKILL after the stop timeout.
    Stop {
        task_id: String,
        code: StopCode,
        reason: String,
    },
    /// Record a task whose container is no longer running, and remove the container.
    Reap {
        task_id: String,
        code: StopCode,
        reason: String,
        exit_code: Option<i64>,
        crashed: bool,
    },
    /// Record that a task passed its health checks for the first time.
    TaskHealthy {
        task_id: String,
    },
    /// Set a deployment's consecutive failed-task count.
    SetFailedTasks {
        deployment_id: String,
        failed_tasks: u32,
    },
    /// Move a deployment to a terminal state.
    Finish {
        deployment_id: String,
        state: RolloutState,
        reason: String,
    },
    /// The circuit breaker tripped: mark `failed_id` ROLLED_BACK and start a deployment of
    /// `to_revision` that adopts its live tasks.
    Rollback {
        failed_id: String,
        to_revision: u32,
        reason: String,
    },
    Mark {
        deployment_id: String,
        mark: Mark,
    },
    /// A service event (ECS message templates where ECS has one).
    Event(String),
}

/// The planner's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Plan again after this many milliseconds even if nothing is reported.
    pub requeue_after_ms: Option<u64>,
}

/// How soon to look again while tasks are changing.
const BUSY_REQUEUE_MS: u64 = 250;
const ROLLOUT_REQUEUE_MS: u64 = 1000;

fn is_target_state(d: &Deployment) -> bool {
    matches!(d.state, RolloutState::InProgress | RolloutState::Succeeded)
}

/// The deployment the service is converging to.
pub fn target(deployments: &[Deployment]) -> Option<&Deployment> {
    deployments
        .iter()
        .filter(|d| is_target_state(d))
        .max_by_key(|d| (d.created_at, d.id.clone()))
}

/// The deployment a failed one rolls back to: the newest older `SUCCEEDED` one.
pub fn rollback_target<'a>(
    deployments: &'a [Deployment],
    failed: &Deployment,
) -> Option<&'a Deployment> {
    deployments
        .iter()
        .filter(|d| {
            d.state == RolloutState::Succeeded
                && d.id != failed.id
                && d.created_at <= failed.created_at
        })
        .max_by_key(|d| (d.created_at, d.id.clone()))
}

fn belongs(task: &ObservedTask, t: &Deployment) -> bool {
    is_of(t, &task.deployment_id, task.revision)
}

/// A task of deployment `task_deployment` belongs to a stable version: its deployment
/// succeeded (or is too old to be remembered). A progressive rollout keeps such tasks, and
/// they take the rest of the requests; tasks of failed or superseded deployments do not.
pub fn is_stable(deployments: &[Deployment], task_deployment: &str) -> bool {
    deployments
        .iter()
        .find(|d| d.id == task_deployment)
        .is_none_or(|d| d.state == RolloutState::Succeeded)
}

/// A task of deployment `task_deployment` and revision `task_revision` counts as one of
/// `t`'s: its own, or (for a rollback) a live task of the revision it restores.
pub fn is_of(t: &Deployment, task_deployment: &str, task_revision: u32) -> bool {
    task_deployment == t.id || (t.rollback_of.is_some() && task_revision == t.revision)
}

/// Plans one reconcile step for one service.
pub fn plan(input: PlanInput<'_>) -> Plan {
    let mut p = Plan::default();
    let mut tasks: Vec<&ObservedTask> = input.tasks.iter().collect();
    tasks.sort_by(|a, b| a.id.cmp(&b.id));

    let mut target = target(input.deployments).cloned();
    supersede(input.deployments, target.as_ref(), &mut p);
    let exited_failures = reap_exited(&tasks, target.as_ref(), &mut p);
    let judged = judge_health(&tasks, target.as_ref(), input.deleting, &mut p);

    if input.deleting {
        for t in &tasks {
            if t.desired_running && !matches!(t.state, TaskState::Exited { .. }) {
                p.actions.push(Action::Stop {
                    task_id: t.id.clone(),
                    code: StopCode::UserInitiated,
                    reason: "Service deleted".to_owned(),
                });
            }
        }
        if !tasks.is_empty() {
            p.requeue_after_ms = Some(BUSY_REQUEUE_MS);
        }
        return p;
    }

    if let Some(t) = target
        .clone()
        .filter(|t| t.state == RolloutState::InProgress)
    {
        let failures = exited_failures + judged.failures;
        match breaker(&input, &t, failures, judged.reset, &mut p) {
            Verdict::Going => {}
            Verdict::RolledBack => return p,
            Verdict::Failed(mut why) => {
                let rest: Vec<Deployment> = input
                    .deployments
                    .iter()
                    .filter(|d| d.id != t.id)
                    .cloned()
                    .collect();
                target = self::target(&rest).cloned();
                if target.is_none() {
                    // Nothing runs any more: say so, rather than leave a "retrying" event
                    // as the last word.
                    why.push_str("; no more tasks are started: fix the version and deploy again");
                }
                p.actions
                    .push(Action::Event(format!("deployment {} failed: {why}", t.id)));
                p.actions.push(Action::Finish {
                    deployment_id: t.id.clone(),
                    state: RolloutState::Failed,
                    reason: why,
                });
            }
        }
    }

    let view = View {
        stopping_now: &judged.stopping_now,
    };
    let Some(t) = target else {
        // Nothing to converge to (the first deployment failed): stop what is left.
        for task in tasks.iter().filter(|x| view.is_live(x)) {
            p.actions.push(Action::Stop {
                task_id: task.id.clone(),
                code: StopCode::ServiceSchedulerInitiated,
                reason: "Deployment failed".to_owned(),
            });
        }
        if view.in_flight(&tasks) {
            p.requeue_after_ms = Some(BUSY_REQUEUE_MS);
        }
        return p;
    };
    converge(&input, &tasks, &t, view, p)
}

/// A newer deployment took over (ECS: it became primary): older ones still in progress end
/// now with the reason, so no deployment stays IN_PROGRESS forever.
fn supersede(deployments: &[Deployment], target: Option<&Deployment>, p: &mut Plan) {
    let Some(t) = target else { return };
    for d in deployments {
        if d.state == RolloutState::InProgress && d.id != t.id {
            p.actions.push(Action::Finish {
                deployment_id: d.id.clone(),
                state: RolloutState::Failed,
                reason: format!("superseded by deployment {}", t.id),
            });
        }
    }
}

/// The task counts towards the circuit breaker of the target: the target is in progress
/// and the task is one of its own.
fn counts_against(target: Option<&Deployment>, task: &ObservedTask) -> bool {
    target.is_some_and(|t| t.state == RolloutState::InProgress && belongs(task, t))
}

/// Containers that stopped: record and remove them. Returns how many of them were the
/// target's own failures.
fn reap_exited(tasks: &[&ObservedTask], target: Option<&Deployment>, p: &mut Plan) -> u32 {
    let mut failures = 0;
    for t in tasks {
        let TaskState::Exited {
            exit_code,
            ever_ran,
            detail,
        } = &t.state
        else {
            continue;
        };
        if !t.desired_running {
            p.actions.push(Action::Reap {
                task_id: t.id.clone(),
                code: StopCode::ServiceSchedulerInitiated,
                reason: String::new(),
                exit_code: *exit_code,
                crashed: false,
            });
            continue;
        }
        let (code, mut reason) = if *ever_ran {
            let code_text = exit_code.map_or("unknown".to_owned(), |c| c.to_string());
            (
                StopCode::EssentialContainerExited,
                format!("Essential container in task exited (exit code {code_text})"),
            )
        } else {
            (
                StopCode::TaskFailedToStart,
                "Task failed to start".to_owned(),
            )
        };
        if let Some(d) = detail {
            reason.push_str(": ");
            reason.push_str(d);
        }
        if counts_against(target, t) {
            failures += 1;
        }
        p.actions.push(Action::Reap {
            task_id: t.id.clone(),
            code,
            reason,
            exit_code: *exit_code,
            crashed: true,
        });
    }
    failures
}

/// What [`judge_health`] decided.
struct Judged {
    /// Unhealthy tasks stopped by this plan.
    stopping_now: Vec<String>,
    /// How many of them were the target's own.
    failures: u32,
    /// A task of the target passed its checks: the breaker's count starts again.
    reset: bool,
}

/// Unhealthy tasks are stopped and replaced; tasks healthy for the first time are recorded.
fn judge_health(
    tasks: &[&ObservedTask],
    target: Option<&Deployment>,
    deleting: bool,
    p: &mut Plan,
) -> Judged {
    let mut j = Judged {
        stopping_now: Vec::new(),
        failures: 0,
        reset: false,
    };
    for t in tasks {
        if t.desired_running && t.state == TaskState::Running(TaskHealth::Unhealthy) && !deleting {
            if counts_against(target, t) {
                j.failures += 1;
            }
            j.stopping_now.push(t.id.clone());
            let reason = match t.failing_check.as_deref().filter(|d| !d.is_empty()) {
                Some(d) => format!("{UNHEALTHY}: {d}"),
                None => UNHEALTHY.to_owned(),
            };
            p.actions.push(Action::Event(format!(
                "(service) task {} failed its health checks: {}",
                t.id,
                t.failing_check.as_deref().unwrap_or("no detail")
            )));
            p.actions.push(Action::Stop {
                task_id: t.id.clone(),
                code: StopCode::ServiceSchedulerInitiated,
                reason,
            });
        }
        if t.newly_healthy && t.desired_running {
            p.actions.push(Action::TaskHealthy {
                task_id: t.id.clone(),
            });
            if counts_against(target, t) {
                j.reset = true;
            }
        }
    }
    j
}

/// What the circuit breaker and the deployment timeout decided about the target.
enum Verdict {
    /// It goes on.
    Going,
    /// It tripped and a rollback starts ([`Action::Rollback`] is the plan's last action).
    RolledBack,
    /// It tripped with nothing to roll back to (or rollback is off): it ends FAILED, for
    /// this reason.
    Failed(String),
}

/// Circuit breaker, failed analysis and deployment timeout of the target `t` (in progress).
fn breaker(
    input: &PlanInput<'_>,
    t: &Deployment,
    failures: u32,
    reset: bool,
    p: &mut Plan,
) -> Verdict {
    let base = if reset { 0 } else { t.failed_tasks };
    let count = base + failures;
    if count != t.failed_tasks {
        p.actions.push(Action::SetFailedTasks {
            deployment_id: t.id.clone(),
            failed_tasks: count,
        });
    }
    let cb = input.config.circuit_breaker;
    let threshold = cb.threshold_for(input.desired_count);
    let failed_analysis = t.rollout.as_ref().and_then(|r| r.failed.clone());
    let reason = if let Some(why) = &failed_analysis {
        why.clone()
    } else if cb.enable && count >= threshold {
        format!("circuit breaker: {count} tasks failed in a row (threshold {threshold})")
    } else if input.now - t.created_at >= input.config.timeout_ms as i64 {
        let mut why = format!(
            "deployment did not reach a steady state within {}s",
            input.config.timeout_ms / 1000
        );
        // A rollout that waited on inconclusive analysis says so.
        if let Some(v) = t.rollout.as_ref().and_then(|r| r.last.as_ref())
            && v.outcome == crate::rollout::Outcome::Inconclusive
        {
            why.push_str(&format!(" (analysis {})", v.detail));
        }
        why
    } else {
        return Verdict::Going;
    };
    // A version judged bad by its analysis (or aborted) is always rolled back.
    let rollback = cb.rollback || failed_analysis.is_some();
    match rollback_target(input.deployments, t).filter(|_| rollback) {
        Some(prev) => {
            p.actions.push(Action::Event(format!(
                "deployment {} failed ({reason}); rolling back to revision {}",
                t.id, prev.revision
            )));
            p.actions.push(Action::Rollback {
                failed_id: t.id.clone(),
                to_revision: prev.revision,
                reason,
            });
            p.requeue_after_ms = Some(0);
            Verdict::RolledBack
        }
        None if rollback => Verdict::Failed(format!(
            "{reason}; no earlier successful deployment to roll back to"
        )),
        None => Verdict::Failed(reason),
    }
}

/// How a task counts while converging, given the tasks this plan already stops.
#[derive(Clone, Copy)]
struct View<'a> {
    stopping_now: &'a [String],
}

impl View<'_> {
    fn stopped_now(&self, t: &ObservedTask) -> bool {
        self.stopping_now.contains(&t.id)
    }

    /// Wanted, and starting or running without a failed health judgement.
    fn is_live(&self, t: &ObservedTask) -> bool {
        t.desired_running
            && !self.stopped_now(t)
            && matches!(
                t.state,
                TaskState::Pending | TaskState::Running(TaskHealth::Unknown | TaskHealth::Healthy)
            )
    }

    /// Being stopped (earlier, or by this plan) and not exited yet.
    fn is_stopping(&self, t: &ObservedTask) -> bool {
        !matches!(t.state, TaskState::Exited { .. }) && (!t.desired_running || self.stopped_now(t))
    }

    /// Healthy as far as anyone can tell: the last word of an unheard host does not count.
    fn healthy(&self, t: &ObservedTask) -> bool {
        t.state == TaskState::Running(TaskHealth::Healthy) && !unreachable(t)
    }

    /// Something is changing: a task stopping, starting, not yet healthy, or exited.
    fn in_flight(&self, tasks: &[&ObservedTask]) -> bool {
        tasks.iter().any(|t| {
            self.is_stopping(t)
                || (self.is_live(t) && !self.healthy(t))
                || matches!(t.state, TaskState::Exited { .. })
        })
    }
}

fn unreachable(t: &ObservedTask) -> bool {
    t.evict == Some(Evict::Unreachable)
}

/// The rolling update towards the target `t`: starts and stops within minimum healthy and
/// maximum %, the timeline marks, the end of the deployment, and when to look again.
fn converge(
    input: &PlanInput<'_>,
    tasks: &[&ObservedTask],
    t: &Deployment,
    view: View<'_>,
    mut p: Plan,
) -> Plan {
    let desired = input.desired_count;
    // A progressive rollout keeps the old tasks while the new version takes less than every
    // request, and starts the whole new count beside them (maximum % does not apply).
    let hold_old =
        t.state == RolloutState::InProgress && t.rollout.as_ref().is_some_and(|r| r.holds_old());
    // Tasks on a draining host count as old: they are replaced like the tasks of an older
    // revision (new ones first within maximum%, the old ones stopped while minimum healthy
    // holds).
    let mut new: Vec<&ObservedTask> = tasks
        .iter()
        .copied()
        .filter(|x| view.is_live(x) && belongs(x, t) && x.evict.is_none())
        .collect();
    let old: Vec<&ObservedTask> = tasks
        .iter()
        .copied()
        .filter(|x| view.is_live(x) && (!belongs(x, t) || x.evict.is_some()))
        .collect();
    let stopping = tasks.iter().filter(|x| view.is_stopping(x)).count() as u32;
    let max_total = input.config.max_total(desired).max(desired);

    let mut healthy_total = tasks
        .iter()
        .filter(|x| view.is_live(x) && view.healthy(x))
        .count() as u32;
    let mut stops = scale_in(&mut new, desired, view, &mut healthy_total);
    let old_left = stop_old(input, &old, t, view, hold_old, healthy_total, &mut stops);

    let total = new.len() as u32 + old.len() as u32 + stopping;
    let backoff = input.start_backoff_until.filter(|u| *u > input.now);
    let room = if hold_old {
        desired
    } else {
        max_total.saturating_sub(total)
    };
    let want = desired.saturating_sub(new.len() as u32);
    let starts = if backoff.is_some() { 0 } else { want.min(room) };
    for _ in 0..starts {
        p.actions.push(Action::Start {
            deployment_id: t.id.clone(),
            revision: t.revision,
        });
    }
    let stopped_old = stops.iter().any(|(x, _)| !belongs(x, t));
    for (x, why) in &stops {
        p.actions.push(Action::Stop {
            task_id: x.id.clone(),
            code: StopCode::ServiceSchedulerInitiated,
            reason: (*why).to_owned(),
        });
    }
    if starts > 0 {
        p.actions.push(Action::Event(format!(
            "(service) has started {starts} tasks."
        )));
    }

    let in_flight = view.in_flight(tasks);
    if t.state == RolloutState::InProgress {
        let old_remaining = old.len() as u32
            + tasks
                .iter()
                .filter(|x| view.is_stopping(x) && !belongs(x, t))
                .count() as u32;
        mark_timeline(t, stopped_old, old_left, old_remaining, &mut p);
        let new_healthy = new.iter().filter(|x| view.healthy(x)).count() as u32;
        let hold_finish = t.rollout.as_ref().is_some_and(|r| r.holds_finish());
        let done = new.len() as u32 == desired
            && new_healthy == desired
            && old_remaining == 0
            && stopping == 0
            && !hold_finish;
        if done {
            p.actions.push(Action::Finish {
                deployment_id: t.id.clone(),
                state: RolloutState::Succeeded,
                reason: "reached a steady state".to_owned(),
            });
            p.actions.push(Action::Event(
                "(service) has reached a steady state.".to_owned(),
            ));
        } else if starts == 0
            && stops.is_empty()
            && !in_flight
            && backoff.is_none()
            && old_left > 0
            && !hold_old
        {
            p.actions.push(Action::Event(
                "(service) was unable to stop or start tasks during a deployment because of the service deployment configuration. Update the minimumHealthyPercent or maximumPercent value and try again.".to_owned(),
            ));
        }
    }

    p.requeue_after_ms = match backoff {
        Some(until) => Some((until - input.now).max(0) as u64),
        None if in_flight || starts > 0 || !stops.is_empty() => Some(BUSY_REQUEUE_MS),
        None if t.state == RolloutState::InProgress => Some(ROLLOUT_REQUEUE_MS),
        None => None,
    };
    p
}

/// Surplus new tasks (scale-in): the least useful first, then one at a time from the host
/// with the most. Takes them out of `new` and returns them to stop.
fn scale_in<'a>(
    new: &mut Vec<&'a ObservedTask>,
    desired: u32,
    view: View<'_>,
    healthy_total: &mut u32,
) -> Vec<(&'a ObservedTask, &'static str)> {
    let mut stops = Vec::new();
    if new.len() as u32 <= desired {
        return stops;
    }
    for _ in 0..new.len() - desired as usize {
        let mut crowd: std::collections::HashMap<Option<&str>, u32> = Default::default();
        for x in new.iter() {
            *crowd.entry(x.host.as_deref()).or_default() += 1;
        }
        let Some((i, _)) = new.iter().enumerate().min_by_key(|(_, x)| {
            (
                view.healthy(x),
                std::cmp::Reverse(crowd[&x.host.as_deref()]),
                x.id.clone(),
            )
        }) else {
            break;
        };
        let x = new.remove(i);
        if view.healthy(x) {
            *healthy_total -= 1;
        }
        stops.push((x, "Scaling in"));
    }
    stops
}

/// Old tasks: stop the ones that are not serving, then healthy ones while the minimum holds.
/// Adds them to `stops`; returns how many old tasks are left serving.
fn stop_old<'a>(
    input: &PlanInput<'_>,
    old: &[&'a ObservedTask],
    t: &Deployment,
    view: View<'_>,
    hold_old: bool,
    mut healthy_total: u32,
    stops: &mut Vec<(&'a ObservedTask, &'static str)>,
) -> u32 {
    let min_healthy = input.config.min_healthy(input.desired_count);
    let mut old_sorted = old.to_vec();
    old_sorted.sort_by_key(|x| (view.healthy(x), x.id.clone()));
    let mut old_left = old_sorted.len() as u32;
    for x in old_sorted {
        if unreachable(x) {
            // Its host cannot be told: it stays counted (as old) until heard or lost.
            continue;
        }
        let why = match x.evict {
            Some(Evict::Draining) if belongs(x, t) => DRAINING,
            Some(Evict::Rebalance) if belongs(x, t) => REBALANCED,
            _ => "Replaced by a new deployment",
        };
        if !view.healthy(x) {
            stops.push((x, why));
            old_left -= 1;
        } else if hold_old && is_stable(input.deployments, &x.deployment_id) {
            // It takes the stable version's share of the requests.
        } else if healthy_total > min_healthy {
            healthy_total -= 1;
            stops.push((x, why));
            old_left -= 1;
        }
    }
    old_left
}

/// The deployment's timeline marks: the first old task stopped, the last old one
/// deregistered, the last old one gone.
fn mark_timeline(
    t: &Deployment,
    stopped_old: bool,
    old_left: u32,
    old_remaining: u32,
    p: &mut Plan,
) {
    let mut mark = |mark: Mark| {
        p.actions.push(Action::Mark {
            deployment_id: t.id.clone(),
            mark,
        })
    };
    if stopped_old && t.timeline.first_old_stopped_at.is_none() {
        mark(Mark::FirstOldStopped);
    }
    let had_old = stopped_old || t.timeline.first_old_stopped_at.is_some();
    if had_old && old_left == 0 && t.timeline.old_deregistered_at.is_none() {
        mark(Mark::OldDeregistered);
    }
    if old_remaining == 0 && t.timeline.old_gone_at.is_none() {
        mark(Mark::OldGone);
    }
}

#[cfg(test)]
mod tests;
