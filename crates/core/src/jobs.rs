//! Scheduled Jobs: what a job's runs are, and [`plan_job`], the pure decision of which run
//! to start (a due tick, a retry) and which to stop (past its timeout).
//!
//! A run is a standalone task of the job's app environment (group `job:NAME`), tagged with
//! the tick it is for and its attempt (`started_by: job:<tick ms>:<attempt>`), so a job's
//! history is its tasks and nothing else needs remembering but the last scheduled tick.
//!
//! Ticks missed while no server led (all were down) are run once, at the latest missed
//! tick, not once per missed tick: a job that was due ten times while the server was down
//! for ten hours runs once when it is back.

use crate::model::{JobSpec, ServiceKey, Standalone, Task, TaskDefinition, TaskStatus};
use crate::schedule::Schedule;

/// The store's meta key of a job's last scheduled tick (written by the scheduler only).
pub fn last_tick_key(job: &ServiceKey) -> String {
    format!("job.last_tick.{job}")
}

/// The group of a job's runs.
pub fn group_of(job: &str) -> String {
    format!("job:{job}")
}

/// The job a run belongs to, from its group.
pub fn job_of(t: &Task) -> Option<&str> {
    t.standalone.as_ref()?.group.strip_prefix("job:")
}

/// Which tick a run is for and which attempt it is (0: the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RunTag {
    pub tick: i64,
    pub attempt: u32,
}

impl RunTag {
    pub fn encode(self) -> String {
        format!("job:{}:{}", self.tick, self.attempt)
    }

    pub fn of(t: &Task) -> Option<RunTag> {
        let s = t.standalone.as_ref()?.started_by.as_deref()?;
        let mut parts = s.strip_prefix("job:")?.split(':');
        let tick = parts.next()?.parse().ok()?;
        let attempt = parts.next()?.parse().ok()?;
        Some(RunTag { tick, attempt })
    }
}

/// A new run of job `job` (its current task definition `td`): a standalone task to start.
pub fn new_run(job: &ServiceKey, td: &TaskDefinition, tag: RunTag, id: String, now: i64) -> Task {
    Task {
        standalone: Some(Box::new(Standalone {
            task_definition: td.id(),
            container: td.container.clone(),
            container_name: job.name.clone(),
            started_by: Some(tag.encode()),
            group: group_of(&job.name),
            overrides: None,
            placement: Default::default(),
        })),
        ..Task::provisioning(
            id,
            ServiceKey::standalone(&job.app, &job.env),
            "standalone".into(),
            td.revision,
            now,
        )
    }
}

/// A run ended and did not succeed (exit code other than 0, or never started).
pub fn failed(t: &Task) -> bool {
    t.last_status == TaskStatus::Stopped && t.exit_code != Some(0)
}

fn live(t: &Task) -> bool {
    t.last_status != TaskStatus::Stopped
}

/// What the job scheduler does for one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobAction {
    /// Start a run; `scheduled` runs also record their tick as the job's last.
    Run { tag: RunTag, scheduled: bool },
    /// Stop a run that went past the job's timeout.
    TimeOut { task_id: String, after_ms: u64 },
}

/// Everything [`plan_job`] needs for one job.
#[derive(Debug, Clone, Copy)]
pub struct JobInput<'a> {
    pub spec: &'a JobSpec,
    pub schedule: &'a Schedule,
    /// The job's runs (live and recent stopped ones).
    pub runs: &'a [Task],
    /// The last tick the scheduler ran (`None` before the first).
    pub last_tick: Option<i64>,
    /// When the job was first deployed: ticks count from there until the first one.
    pub deployed_at: i64,
    pub now: i64,
}

/// Which runs to start and stop now.
pub fn plan_job(i: JobInput<'_>) -> Vec<JobAction> {
    let mut out = Vec::new();
    if let Some(to) = i.spec.timeout_ms {
        for r in i.runs.iter().filter(|r| r.desired_running && live(r)) {
            if r.started_at.is_some_and(|s| i.now - s > to as i64) {
                out.push(JobAction::TimeOut {
                    task_id: r.id.clone(),
                    after_ms: to,
                });
            }
        }
    }
    // Retry the newest tick's last attempt when it failed and nothing of that tick runs.
    let tagged: Vec<(RunTag, &Task)> = i
        .runs
        .iter()
        .filter_map(|r| RunTag::of(r).map(|t| (t, r)))
        .collect();
    if let Some((newest, _)) = tagged.iter().max_by_key(|(t, _)| *t) {
        let of_tick: Vec<&(RunTag, &Task)> = tagged
            .iter()
            .filter(|(t, _)| t.tick == newest.tick)
            .collect();
        let last = of_tick.iter().max_by_key(|(t, _)| t.attempt).expect("one");
        if !of_tick.iter().any(|(_, r)| live(r))
            && failed(last.1)
            && last.0.attempt < i.spec.retries
        {
            out.push(JobAction::Run {
                tag: RunTag {
                    tick: newest.tick,
                    attempt: last.0.attempt + 1,
                },
                scheduled: false,
            });
        }
    }
    let from = i.last_tick.unwrap_or(i.deployed_at);
    if let Some(tick) = i.schedule.latest_due(from, i.now) {
        out.push(JobAction::Run {
            tag: RunTag { tick, attempt: 0 },
            scheduled: true,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ContainerSpec, TaskDefinition};

    fn td() -> TaskDefinition {
        let c: ContainerSpec = serde_json::from_value(serde_json::json!({
            "image": "x", "pull": "missing", "port": null, "command": null,
            "environment": {}, "cpu": null, "memory": null, "healthcheck": null,
            "http_health": null, "stop_timeout_ms": 1000, "http_route": null
        }))
        .unwrap();
        TaskDefinition {
            family: "a-default-nightly".into(),
            revision: 3,
            container: c,
            created_at: 0,
            source: None,
            ecs: None,
            deregistered_at: None,
            version: 0,
        }
    }

    fn run(tick: i64, attempt: u32, status: TaskStatus, exit: Option<i64>) -> Task {
        let key = ServiceKey::new("a", "default", "nightly");
        let mut t = new_run(
            &key,
            &td(),
            RunTag { tick, attempt },
            format!("t{tick}-{attempt}"),
            tick,
        );
        t.last_status = status;
        t.exit_code = exit;
        t.started_at = Some(tick);
        if status == TaskStatus::Stopped {
            t.desired_running = false;
        }
        t
    }

    fn plan(spec: &JobSpec, runs: &[Task], last: Option<i64>, now: i64) -> Vec<JobAction> {
        let s = Schedule::parse(&spec.schedule).unwrap();
        plan_job(JobInput {
            spec,
            schedule: &s,
            runs,
            last_tick: last,
            deployed_at: 0,
            now,
        })
    }

    fn spec(retries: u32, timeout: Option<u64>) -> JobSpec {
        JobSpec {
            schedule: "@every 10s".into(),
            retries,
            timeout_ms: timeout,
        }
    }

    #[test]
    fn a_run_is_tagged_and_grouped() {
        let r = run(10_000, 2, TaskStatus::Provisioning, None);
        assert_eq!(
            RunTag::of(&r),
            Some(RunTag {
                tick: 10_000,
                attempt: 2
            })
        );
        assert_eq!(job_of(&r), Some("nightly"));
        assert!(r.service.is_standalone());
    }

    #[test]
    fn due_ticks_run_once() {
        let s = spec(0, None);
        assert_eq!(plan(&s, &[], None, 9_000), vec![]);
        let due = |tick| JobAction::Run {
            tag: RunTag { tick, attempt: 0 },
            scheduled: true,
        };
        assert_eq!(plan(&s, &[], None, 10_500), vec![due(10_000)]);
        // The server was down for 95 s: one run, for the latest tick.
        assert_eq!(plan(&s, &[], Some(10_000), 105_000), vec![due(100_000)]);
        assert_eq!(plan(&s, &[], Some(100_000), 105_000), vec![]);
    }

    #[test]
    fn failed_runs_are_retried_as_configured() {
        let s = spec(2, None);
        let retry = |attempt| JobAction::Run {
            tag: RunTag {
                tick: 10_000,
                attempt,
            },
            scheduled: false,
        };
        let first = run(10_000, 0, TaskStatus::Stopped, Some(3));
        assert_eq!(
            plan(&s, std::slice::from_ref(&first), Some(10_000), 11_000),
            vec![retry(1)]
        );
        // Still running: no retry yet.
        let second = run(10_000, 1, TaskStatus::Running, None);
        assert_eq!(
            plan(&s, &[first.clone(), second], Some(10_000), 11_000),
            vec![]
        );
        let second = run(10_000, 1, TaskStatus::Stopped, Some(1));
        assert_eq!(
            plan(&s, &[first.clone(), second.clone()], Some(10_000), 11_000),
            vec![retry(2)]
        );
        // Out of retries.
        let third = run(10_000, 2, TaskStatus::Stopped, Some(1));
        assert_eq!(
            plan(
                &s,
                &[first.clone(), second.clone(), third],
                Some(10_000),
                11_000
            ),
            vec![]
        );
        // A success is not retried; a run that never started is.
        let ok = run(10_000, 0, TaskStatus::Stopped, Some(0));
        assert_eq!(plan(&s, &[ok], Some(10_000), 11_000), vec![]);
        let never = run(10_000, 0, TaskStatus::Stopped, None);
        assert_eq!(plan(&s, &[never], Some(10_000), 11_000), vec![retry(1)]);
    }

    #[test]
    fn runs_past_the_timeout_are_stopped() {
        let s = spec(0, Some(5_000));
        let r = run(10_000, 0, TaskStatus::Running, None);
        assert_eq!(
            plan(&s, std::slice::from_ref(&r), Some(10_000), 14_000),
            vec![]
        );
        assert_eq!(
            plan(&s, &[r], Some(10_000), 15_001),
            vec![JobAction::TimeOut {
                task_id: "t10000-0".into(),
                after_ms: 5_000
            }]
        );
    }
}
