//! Planner tests: worked examples from ECS's documentation, and property tests that simulate
//! whole rollouts over random (desired, minimum healthy %, maximum %) settings.

use proptest::prelude::*;

use super::*;
use crate::model::{CircuitBreaker, ServiceKey, Timeline};

fn deployment(id: &str, revision: u32, state: RolloutState, created_at: i64) -> Deployment {
    Deployment {
        id: id.into(),
        service: ServiceKey::new("a", "default", "s"),
        revision,
        desired_count: 3,
        state,
        reason: None,
        failed_tasks: 0,
        rollback_of: None,
        rolled_back_by: None,
        created_at,
        updated_at: created_at,
        timeline: Timeline::default(),
        rollout: None,
        version: 1,
    }
}

fn task(id: &str, dep: &str, revision: u32, state: TaskState) -> ObservedTask {
    ObservedTask {
        id: id.into(),
        deployment_id: dep.into(),
        revision,
        desired_running: true,
        state,
        newly_healthy: false,
        evict: None,
        host: None,
        failing_check: None,
    }
}

fn healthy() -> TaskState {
    TaskState::Running(TaskHealth::Healthy)
}

fn config(min: u32, max: u32) -> DeploymentConfig {
    DeploymentConfig {
        minimum_healthy_percent: min,
        maximum_percent: max,
        ..Default::default()
    }
}

fn starts(p: &Plan) -> usize {
    p.actions
        .iter()
        .filter(|a| matches!(a, Action::Start { .. }))
        .count()
}

fn stops(p: &Plan) -> Vec<&str> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::Stop { task_id, .. } => Some(task_id.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn first_deploy_starts_desired_tasks() {
    let deps = [deployment("d1", 1, RolloutState::InProgress, 0)];
    let cfg = config(100, 200);
    let p = plan(PlanInput {
        now: 1,
        desired_count: 3,
        config: &cfg,
        deleting: false,
        deployments: &deps,
        tasks: &[],
        start_backoff_until: None,
    });
    assert_eq!(starts(&p), 3);
    assert!(p.requeue_after_ms.is_some());
}

#[test]
fn rolling_update_keeps_minimum_healthy() {
    let deps = [
        deployment("d1", 1, RolloutState::Succeeded, 0),
        deployment("d2", 2, RolloutState::InProgress, 10),
    ];
    let cfg = config(100, 200);
    let mut tasks: Vec<ObservedTask> = (0..3)
        .map(|i| task(&format!("o{i}"), "d1", 1, healthy()))
        .collect();
    let input = |tasks: &[ObservedTask]| {
        plan(PlanInput {
            now: 20,
            desired_count: 3,
            config: &cfg,
            deleting: false,
            deployments: &deps,
            tasks,
            start_backoff_until: None,
        })
    };
    let p = input(&tasks);
    assert_eq!(starts(&p), 3, "max 200% allows 3 extra");
    assert!(
        stops(&p).is_empty(),
        "min 100% forbids stopping a healthy old task"
    );
    // One new task becomes healthy: exactly one old one may stop.
    tasks.push(task("n0", "d2", 2, healthy()));
    tasks.push(task("n1", "d2", 2, TaskState::Pending));
    tasks.push(task("n2", "d2", 2, TaskState::Running(TaskHealth::Unknown)));
    let p = input(&tasks);
    assert_eq!(starts(&p), 0);
    assert_eq!(stops(&p), vec!["o0"]);
}

#[test]
fn ecs_examples_on_progress() {
    // desired 2, min 75% → ceil(1.5) = 2: no old task may stop; max 100% → no extra start.
    let deps = [
        deployment("d1", 1, RolloutState::Succeeded, 0),
        deployment("d2", 2, RolloutState::InProgress, 10),
    ];
    let cfg = config(75, 100);
    let tasks: Vec<ObservedTask> = (0..2)
        .map(|i| task(&format!("o{i}"), "d1", 1, healthy()))
        .collect();
    let p = plan(PlanInput {
        now: 20,
        desired_count: 2,
        config: &cfg,
        deleting: false,
        deployments: &deps,
        tasks: &tasks,
        start_backoff_until: None,
    });
    assert_eq!(starts(&p), 0);
    assert!(stops(&p).is_empty());
    assert!(
        p.actions
            .iter()
            .any(|a| matches!(a, Action::Event(m) if m.contains("unable to stop or start tasks"))),
        "a stuck configuration is reported with ECS's message: {p:?}"
    );
}

#[test]
fn crashed_task_is_reaped_and_replaced() {
    let deps = [deployment("d1", 1, RolloutState::Succeeded, 0)];
    let cfg = config(100, 200);
    let tasks = vec![
        task("a", "d1", 1, healthy()),
        task("b", "d1", 1, healthy()),
        task(
            "c",
            "d1",
            1,
            TaskState::Exited {
                exit_code: Some(137),
                ever_ran: true,
                detail: None,
            },
        ),
    ];
    let p = plan(PlanInput {
        now: 20,
        desired_count: 3,
        config: &cfg,
        deleting: false,
        deployments: &deps,
        tasks: &tasks,
        start_backoff_until: None,
    });
    assert!(p.actions.iter().any(|a| matches!(a, Action::Reap { task_id, exit_code: Some(137), crashed: true, reason, .. } if task_id == "c" && reason.contains("137"))));
    assert_eq!(starts(&p), 1);
    // The one replacement, and why (the metrics' reason).
    let why: Vec<Replacement> = p.actions.iter().filter_map(Action::replacement).collect();
    assert_eq!(why, [Replacement::Exited]);
    // Back-off delays the replacement.
    let p = plan(PlanInput {
        now: 20,
        desired_count: 3,
        config: &cfg,
        deleting: false,
        deployments: &deps,
        tasks: &tasks,
        start_backoff_until: Some(5020),
    });
    assert_eq!(starts(&p), 0);
    assert_eq!(p.requeue_after_ms, Some(5000));
}

#[test]
fn circuit_breaker_rolls_back_to_last_success() {
    let mut failing = deployment("d2", 2, RolloutState::InProgress, 10);
    failing.failed_tasks = 2;
    let deps = [deployment("d1", 1, RolloutState::Succeeded, 0), failing];
    let cfg = config(100, 200);
    let mut tasks: Vec<ObservedTask> = (0..3)
        .map(|i| task(&format!("o{i}"), "d1", 1, healthy()))
        .collect();
    tasks.push(task(
        "n0",
        "d2",
        2,
        TaskState::Exited {
            exit_code: Some(1),
            ever_ran: true,
            detail: None,
        },
    ));
    let p = plan(PlanInput {
        now: 20,
        desired_count: 3,
        config: &cfg,
        deleting: false,
        deployments: &deps,
        tasks: &tasks,
        start_backoff_until: None,
    });
    assert!(p.actions.contains(&Action::SetFailedTasks {
        deployment_id: "d2".into(),
        failed_tasks: 3
    }));
    assert!(p.actions.iter().any(
        |a| matches!(a, Action::Rollback { failed_id, to_revision: 1, .. } if failed_id == "d2")
    ));
    assert_eq!(starts(&p), 0);
}

#[test]
fn without_rollback_the_deployment_fails_and_old_tasks_stay() {
    let mut failing = deployment("d2", 2, RolloutState::InProgress, 10);
    failing.failed_tasks = 2;
    let deps = [deployment("d1", 1, RolloutState::Succeeded, 0), failing];
    let cfg = DeploymentConfig {
        circuit_breaker: CircuitBreaker {
            enable: true,
            rollback: false,
            threshold: None,
        },
        ..config(100, 200)
    };
    let mut tasks: Vec<ObservedTask> = (0..3)
        .map(|i| task(&format!("o{i}"), "d1", 1, healthy()))
        .collect();
    tasks.push(task(
        "n0",
        "d2",
        2,
        TaskState::Running(TaskHealth::Unhealthy),
    ));
    tasks.push(task("n1", "d2", 2, TaskState::Running(TaskHealth::Unknown)));
    let p = plan(PlanInput {
        now: 20,
        desired_count: 3,
        config: &cfg,
        deleting: false,
        deployments: &deps,
        tasks: &tasks,
        start_backoff_until: None,
    });
    assert!(p.actions.iter().any(|a| matches!(a, Action::Finish { deployment_id, state: RolloutState::Failed, .. } if deployment_id == "d2")));
    let s = stops(&p);
    assert!(
        s.contains(&"n0") && s.contains(&"n1"),
        "new tasks are stopped: {s:?}"
    );
    assert!(
        !s.iter().any(|t| t.starts_with('o')),
        "old tasks keep running: {s:?}"
    );
    assert_eq!(starts(&p), 0);
}

#[test]
fn rollback_deployment_adopts_running_tasks() {
    let mut rb = deployment("d3", 1, RolloutState::InProgress, 20);
    rb.rollback_of = Some("d2".into());
    let deps = [
        deployment("d1", 1, RolloutState::Succeeded, 0),
        deployment("d2", 2, RolloutState::RolledBack, 10),
        rb,
    ];
    let cfg = config(100, 200);
    let tasks: Vec<ObservedTask> = (0..3)
        .map(|i| task(&format!("o{i}"), "d1", 1, healthy()))
        .collect();
    let p = plan(PlanInput {
        now: 30,
        desired_count: 3,
        config: &cfg,
        deleting: false,
        deployments: &deps,
        tasks: &tasks,
        start_backoff_until: None,
    });
    assert_eq!(starts(&p), 0);
    assert!(stops(&p).is_empty());
    assert!(p.actions.iter().any(|a| matches!(a, Action::Finish { deployment_id, state: RolloutState::Succeeded, .. } if deployment_id == "d3")));
}

#[test]
fn timeout_fails_the_deployment() {
    let deps = [deployment("d1", 1, RolloutState::InProgress, 0)];
    let cfg = DeploymentConfig {
        timeout_ms: 1000,
        ..config(100, 200)
    };
    let tasks = vec![task("n0", "d1", 1, TaskState::Running(TaskHealth::Unknown))];
    let p = plan(PlanInput {
        now: 1000,
        desired_count: 1,
        config: &cfg,
        deleting: false,
        deployments: &deps,
        tasks: &tasks,
        start_backoff_until: None,
    });
    assert!(p.actions.iter().any(|a| matches!(a, Action::Finish { state: RolloutState::Failed, reason, .. } if reason.contains("steady state within"))));
    assert_eq!(stops(&p), vec!["n0"]);
}

#[test]
fn older_in_progress_deployment_is_superseded() {
    let deps = [
        deployment("d1", 1, RolloutState::Succeeded, 0),
        deployment("d2", 2, RolloutState::InProgress, 10),
        deployment("d3", 3, RolloutState::InProgress, 20),
    ];
    let tasks = [
        task("a", "d1", 1, healthy()),
        task("b", "d2", 2, TaskState::Pending),
    ];
    let cfg = config(100, 200);
    let p = plan(PlanInput {
        now: 21,
        desired_count: 1,
        config: &cfg,
        deleting: false,
        deployments: &deps,
        tasks: &tasks,
        start_backoff_until: None,
    });
    assert!(p.actions.contains(&Action::Finish {
        deployment_id: "d2".into(),
        state: RolloutState::Failed,
        reason: "superseded by deployment d3".into(),
    }));
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::Finish { deployment_id, .. } if deployment_id != "d2"))
    );
    // The superseded deployment's task is not serving: it stops (d3 starts its own once
    // there is room under maximum percent).
    assert_eq!(stops(&p), vec!["b"]);
}

#[test]
fn deleting_stops_everything() {
    let deps = [deployment("d1", 1, RolloutState::Succeeded, 0)];
    let cfg = config(100, 200);
    let tasks = vec![
        task("a", "d1", 1, healthy()),
        task("b", "d1", 1, TaskState::Pending),
    ];
    let p = plan(PlanInput {
        now: 1,
        desired_count: 2,
        config: &cfg,
        deleting: true,
        deployments: &deps,
        tasks: &tasks,
        start_backoff_until: None,
    });
    assert_eq!(stops(&p), vec!["a", "b"]);
    assert_eq!(starts(&p), 0);
}

#[test]
fn healthy_task_resets_failure_count() {
    let mut d = deployment("d1", 1, RolloutState::InProgress, 0);
    d.failed_tasks = 2;
    let deps = [d];
    let cfg = config(100, 200);
    let mut t = task("a", "d1", 1, healthy());
    t.newly_healthy = true;
    let p = plan(PlanInput {
        now: 1,
        desired_count: 3,
        config: &cfg,
        deleting: false,
        deployments: &deps,
        tasks: &[t],
        start_backoff_until: None,
    });
    assert!(p.actions.contains(&Action::SetFailedTasks {
        deployment_id: "d1".into(),
        failed_tasks: 0
    }));
    assert!(p.actions.contains(&Action::TaskHealthy {
        task_id: "a".into()
    }));
}

/// A simulated engine: applies a plan's actions, then lets every started task pass its
/// health checks and every stopping task finish on the next step.
#[derive(Debug, Clone)]
struct Sim {
    tasks: Vec<ObservedTask>,
    next: u32,
}

impl Sim {
    fn apply(&mut self, p: &Plan) {
        for a in &p.actions {
            match a {
                Action::Start {
                    deployment_id,
                    revision,
                } => {
                    self.next += 1;
                    self.tasks.push(task(
                        &format!("t{:05}", self.next),
                        deployment_id,
                        *revision,
                        TaskState::Pending,
                    ));
                }
                Action::Stop { task_id, .. } => {
                    if let Some(t) = self.tasks.iter_mut().find(|t| &t.id == task_id) {
                        t.desired_running = false;
                    }
                }
                Action::Reap { task_id, .. } => self.tasks.retain(|t| &t.id != task_id),
                _ => {}
            }
        }
    }

    /// Time passes: stopping tasks exit, pending tasks run, running tasks turn healthy.
    fn tick(&mut self) {
        for t in &mut self.tasks {
            t.state = match (&t.state, t.desired_running) {
                (_, false) => TaskState::Exited {
                    exit_code: Some(0),
                    ever_ran: true,
                    detail: None,
                },
                (TaskState::Pending, true) => TaskState::Running(TaskHealth::Unknown),
                (TaskState::Running(_), true) => TaskState::Running(TaskHealth::Healthy),
                (s, true) => s.clone(),
            };
        }
    }

    fn healthy(&self) -> u32 {
        self.tasks
            .iter()
            .filter(|t| t.desired_running && t.state == TaskState::Running(TaskHealth::Healthy))
            .count() as u32
    }

    fn existing(&self) -> u32 {
        self.tasks
            .iter()
            .filter(|t| !matches!(t.state, TaskState::Exited { .. }))
            .count() as u32
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// From `desired` healthy old tasks, a rollout under any valid (min, max) never has fewer
    /// healthy tasks than the minimum, never more tasks than the maximum, and ends with exactly
    /// `desired` healthy new tasks and no old ones, when the configuration allows progress.
    #[test]
    fn rollout_respects_bounds_and_converges(desired in 0u32..12, min in 0u32..=100, max in 100u32..=300) {
        let cfg = config(min, max);
        let min_h = cfg.min_healthy(desired);
        let max_t = cfg.max_total(desired).max(desired);
        let progress_possible = max_t > desired || min_h < desired || desired == 0;
        let mut deps = vec![
            deployment("d1", 1, RolloutState::Succeeded, 0),
            deployment("d2", 2, RolloutState::InProgress, 10),
        ];
        let mut sim = Sim { tasks: (0..desired).map(|i| task(&format!("o{i:03}"), "d1", 1, healthy())).collect(), next: 0 };
        let mut finished = false;
        for step in 0..(4 * desired + 10) {
            let p = plan(PlanInput {
                now: 20 + i64::from(step),
                desired_count: desired,
                config: &cfg,
                deleting: false,
                deployments: &deps,
                tasks: &sim.tasks,
                start_backoff_until: None,
            });
            // Idempotence: planning again on the same input gives the same plan.
            let again = plan(PlanInput {
                now: 20 + i64::from(step),
                desired_count: desired,
                config: &cfg,
                deleting: false,
                deployments: &deps,
                tasks: &sim.tasks,
                start_backoff_until: None,
            });
            prop_assert_eq!(&p, &again);
            let before = sim.healthy();
            sim.apply(&p);
            prop_assert!(sim.healthy() >= min_h.min(before), "healthy {} < min {} (was {})", sim.healthy(), min_h, before);
            prop_assert!(sim.existing() <= max_t, "{} tasks exist, max {}", sim.existing(), max_t);
            if p.actions.iter().any(|a| matches!(a, Action::Finish { state: RolloutState::Succeeded, .. })) {
                deps[1].state = RolloutState::Succeeded;
                finished = true;
                break;
            }
            sim.tick();
        }
        if progress_possible {
            prop_assert!(finished, "rollout did not finish: {:?}", sim.tasks);
            let live: Vec<_> = sim.tasks.iter().filter(|t| t.desired_running).collect();
            prop_assert_eq!(live.len() as u32, desired);
            prop_assert!(live.iter().all(|t| t.deployment_id == "d2"));
        } else {
            prop_assert!(!finished);
        }
    }

    /// Steady state: whatever crashes, the planner restores exactly `desired` tasks.
    #[test]
    fn replacement_restores_desired_count(desired in 1u32..10, crashed in proptest::collection::vec(any::<bool>(), 10)) {
        let deps = [deployment("d1", 1, RolloutState::Succeeded, 0)];
        let cfg = config(100, 200);
        let tasks: Vec<ObservedTask> = (0..desired).map(|i| {
            let state = if crashed[i as usize] {
                TaskState::Exited { exit_code: Some(1), ever_ran: true, detail: None }
            } else { healthy() };
            task(&format!("o{i:03}"), "d1", 1, state)
        }).collect();
        let p = plan(PlanInput { now: 5, desired_count: desired, config: &cfg, deleting: false, deployments: &deps, tasks: &tasks, start_backoff_until: None });
        let crashed_n = (0..desired).filter(|i| crashed[*i as usize]).count();
        prop_assert_eq!(starts(&p), crashed_n);
        prop_assert!(stops(&p).is_empty());
    }
}

/// Tasks on a draining host are replaced like old ones: the replacements start first
/// (within maximum %), and the drained tasks stop while the minimum healthy holds.
#[test]
fn a_draining_hosts_tasks_are_replaced_with_the_rolling_rules() {
    let cfg = DeploymentConfig::default(); // 100 % / 200 %
    let d = deployment("d1", 1, RolloutState::Succeeded, 1);
    let mut tasks = vec![
        task("a", "d1", 1, healthy()),
        task("b", "d1", 1, healthy()),
        task("c", "d1", 1, healthy()),
    ];
    tasks[0].evict = Some(Evict::Draining);
    tasks[1].evict = Some(Evict::Draining);
    let input = |tasks: &[ObservedTask]| {
        plan(PlanInput {
            now: 10,
            desired_count: 3,
            config: &cfg,
            deleting: false,
            deployments: std::slice::from_ref(&d),
            tasks,
            start_backoff_until: None,
        })
    };
    let p = input(&tasks);
    let starts = p
        .actions
        .iter()
        .filter(|a| matches!(a, Action::Start { .. }))
        .count();
    assert_eq!(starts, 2, "two replacements start: {:?}", p.actions);
    assert!(
        !p.actions.iter().any(|a| matches!(a, Action::Stop { .. })),
        "nothing stops before the replacements are healthy (minimum 100 %): {:?}",
        p.actions
    );
    // The replacements are healthy: the drained tasks stop, with the reason.
    tasks.push(task("x", "d1", 1, healthy()));
    tasks.push(task("y", "d1", 1, healthy()));
    let p = input(&tasks);
    let stops: Vec<(&str, &str)> = p
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Stop {
                task_id, reason, ..
            } => Some((task_id.as_str(), reason.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(
        stops,
        [("a", "Host is draining"), ("b", "Host is draining")]
    );
    let why: Vec<Replacement> = p.actions.iter().filter_map(Action::replacement).collect();
    assert_eq!(why, [Replacement::HostDraining, Replacement::HostDraining]);
    assert!(!p.actions.iter().any(|a| matches!(a, Action::Start { .. })));
}

#[test]
fn an_unhealthy_task_is_stopped_with_what_its_check_saw() {
    let deps = [deployment("d1", 1, RolloutState::Succeeded, 0)];
    let cfg = config(100, 200);
    let mut t = task("t1", "d1", 1, TaskState::Running(TaskHealth::Unhealthy));
    t.failing_check = Some("GET /healthz on port 8080 answered 404 (3 times in a row)".into());
    let p = plan(PlanInput {
        now: 20,
        desired_count: 1,
        config: &cfg,
        deleting: false,
        deployments: &deps,
        tasks: &[t],
        start_backoff_until: None,
    });
    let reason = p.actions.iter().find_map(|a| match a {
        Action::Stop { reason, .. } => Some(reason.as_str()),
        _ => None,
    });
    assert_eq!(
        reason,
        Some(
            "Task failed health checks: GET /healthz on port 8080 answered 404 (3 times in a row)"
        )
    );
    assert!(p.actions.iter().any(|a| matches!(a,
        Action::Event(m) if m.contains("task t1 failed its health checks: GET /healthz on port 8080 answered 404"))));
    let why: Vec<Replacement> = p.actions.iter().filter_map(Action::replacement).collect();
    assert_eq!(why, [Replacement::Unhealthy]);
}

#[test]
fn the_last_old_task_deregistered_is_marked_once() {
    let deps = [
        deployment("d1", 1, RolloutState::Succeeded, 0),
        deployment("d2", 2, RolloutState::InProgress, 10),
    ];
    let cfg = config(100, 200);
    let tasks = vec![
        task("o0", "d1", 1, healthy()),
        task("n0", "d2", 2, healthy()),
    ];
    let run = |deps: &[Deployment], tasks: &[ObservedTask]| {
        plan(PlanInput {
            now: 20,
            desired_count: 1,
            config: &cfg,
            deleting: false,
            deployments: deps,
            tasks,
            start_backoff_until: None,
        })
    };
    let marked = |p: &Plan| {
        p.actions.iter().any(|a| {
            matches!(
                a,
                Action::Mark {
                    mark: Mark::OldDeregistered,
                    ..
                }
            )
        })
    };
    // The new task is healthy: the old one is stopped (deregistered) now.
    let p = run(&deps, &tasks);
    assert_eq!(stops(&p), vec!["o0"]);
    assert!(marked(&p), "{:?}", p.actions);
    // Once marked, not again while the old task stops.
    let mut deps2 = deps.clone();
    deps2[1].timeline.first_old_stopped_at = Some(20);
    deps2[1].timeline.old_deregistered_at = Some(20);
    let mut stopping = tasks.clone();
    stopping[0].desired_running = false;
    assert!(!marked(&run(&deps2, &stopping)));
    // A first deployment has no old version to deregister.
    let first = [deployment("d1", 1, RolloutState::InProgress, 0)];
    let p = run(&first, &[task("n0", "d1", 1, healthy())]);
    assert!(!marked(&p));
}

/// Tasks of a host gone unheard get replacements within maximum %, are never stopped from
/// here (the host cannot be told) and do not count as healthy; heard again, the surplus is
/// scaled in from the most crowded hosts first, so the spread is what it was.
#[test]
fn an_unheard_hosts_tasks_are_replaced_without_being_stopped_and_the_surplus_leaves_the_crowded_hosts()
 {
    let cfg = DeploymentConfig::default(); // 100 % / 200 %
    let d = deployment("d1", 1, RolloutState::Succeeded, 1);
    let input = |tasks: &[ObservedTask]| {
        plan(PlanInput {
            now: 10,
            desired_count: 6,
            config: &cfg,
            deleting: false,
            deployments: std::slice::from_ref(&d),
            tasks,
            start_backoff_until: None,
        })
    };
    // 2 / 2 / 2 over hosts A, B, C; C goes unheard.
    let on = |id: &str| {
        let mut t = task(id, "d1", 1, healthy());
        t.host = Some(id[..1].to_uppercase());
        t
    };
    let mut tasks: Vec<ObservedTask> = ["a1", "a2", "b1", "b2", "c1", "c2"]
        .iter()
        .map(|id| on(id))
        .collect();
    tasks[4].evict = Some(Evict::Unreachable);
    tasks[5].evict = Some(Evict::Unreachable);
    let p = input(&tasks);
    assert_eq!(starts(&p), 2, "two replacements start: {:?}", p.actions);
    assert!(stops(&p).is_empty(), "nothing is stopped: {:?}", p.actions);
    // With the replacements healthy (on A and B: 3 / 3 / 2), still nothing stops while C
    // is unheard, and nothing more starts.
    tasks.push(on("a3"));
    tasks.push(on("b3"));
    let p = input(&tasks);
    assert_eq!(starts(&p), 0, "{:?}", p.actions);
    assert!(stops(&p).is_empty(), "{:?}", p.actions);
    // C is heard again: two tasks too many; they leave A and B (3 each), not C (2).
    tasks[4].evict = None;
    tasks[5].evict = None;
    let p = input(&tasks);
    assert_eq!(starts(&p), 0, "{:?}", p.actions);
    let mut stopped: Vec<char> = stops(&p)
        .iter()
        .map(|id| id.chars().next().unwrap())
        .collect();
    stopped.sort();
    assert_eq!(
        stopped,
        ['a', 'b'],
        "one from each crowded host: {:?}",
        p.actions
    );
    // Instead C is lost: its tasks are counted out (exited) and nothing more starts, as
    // their replacements already run.
    let mut lost = tasks.clone();
    for t in lost.iter_mut().filter(|t| t.id.starts_with('c')) {
        t.evict = None;
        t.desired_running = false;
        t.state = TaskState::Exited {
            exit_code: None,
            ever_ran: true,
            detail: Some("Host C was lost".into()),
        };
    }
    let p = input(&lost);
    assert_eq!(starts(&p), 0, "{:?}", p.actions);
    assert!(stops(&p).is_empty(), "{:?}", p.actions);
}

#[test]
fn a_progressive_rollout_holds_old_tasks_below_100_percent_and_its_bake() {
    use crate::rollout::{Phase, Progressive, RolloutProgress, Strategy};
    let plan_p = Progressive {
        strategy: Strategy::Canary {
            percent: 10,
            bake_ms: 1000,
        },
        ..Progressive::default()
    };
    let mut d2 = deployment("d2", 2, RolloutState::InProgress, 10);
    d2.rollout = Some(RolloutProgress::new(plan_p, Some(1), 10));
    // Even with maximum 100 %, the whole new count starts beside the old tasks.
    let cfg = config(50, 100);
    let mut tasks: Vec<ObservedTask> = (0..3)
        .map(|i| task(&format!("o{i}"), "d1", 1, healthy()))
        .collect();
    let run = |d2: &Deployment, tasks: &[ObservedTask]| {
        let deps = [deployment("d1", 1, RolloutState::Succeeded, 0), d2.clone()];
        plan(PlanInput {
            now: 20,
            desired_count: 3,
            config: &cfg,
            deleting: false,
            deployments: &deps,
            tasks,
            start_backoff_until: None,
        })
    };
    let p = run(&d2, &tasks);
    assert_eq!(starts(&p), 3);
    assert!(stops(&p).is_empty());
    for i in 0..3 {
        tasks.push(task(&format!("n{i}"), "d2", 2, healthy()));
    }
    // All new tasks healthy, weight still below 100: old tasks stay, nothing finishes.
    let r = d2.rollout.as_mut().unwrap();
    r.weight = 10;
    r.phase = Phase::Shifting;
    let p = run(&d2, &tasks);
    assert!(stops(&p).is_empty(), "{p:?}");
    assert!(!p.actions.iter().any(|a| matches!(a, Action::Finish { .. })));
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::Event(e) if e.contains("unable"))),
        "holding is not being stuck"
    );
    // A task of a failed (superseded) deployment is not held: it takes no request.
    let mut with_failed = tasks.clone();
    with_failed.push(task("f0", "dx", 9, healthy()));
    let deps = [
        deployment("d1", 1, RolloutState::Succeeded, 0),
        deployment("dx", 9, RolloutState::Failed, 5),
        d2.clone(),
    ];
    let p = plan(PlanInput {
        now: 20,
        desired_count: 3,
        config: &cfg,
        deleting: false,
        deployments: &deps,
        tasks: &with_failed,
        start_backoff_until: None,
    });
    assert_eq!(stops(&p), vec!["f0"]);
    // Every request to the new version: the old tasks go.
    let r = d2.rollout.as_mut().unwrap();
    r.weight = 100;
    r.phase = Phase::Full;
    let p = run(&d2, &tasks);
    assert_eq!(stops(&p).len(), 3);
    // Old tasks gone but the bake is not over: no finish until the phase is done.
    tasks.retain(|t| t.deployment_id == "d2");
    d2.rollout.as_mut().unwrap().phase = Phase::Baking;
    let p = run(&d2, &tasks);
    assert!(!p.actions.iter().any(|a| matches!(a, Action::Finish { .. })));
    d2.rollout.as_mut().unwrap().phase = Phase::Done;
    let p = run(&d2, &tasks);
    assert!(p.actions.iter().any(|a| matches!(
        a,
        Action::Finish {
            state: RolloutState::Succeeded,
            ..
        }
    )));
}
