//! Scheduled Jobs as users see them: `slipway job run NAME` (a run now, outside the
//! schedule) and `slipway job ls` (each job's schedule, next tick and run history). The
//! scheduling itself is the controller's (`slipway_core::jobs::plan_job`).

use serde::{Deserialize, Serialize};
use slipway_core::jobs::{RunTag, job_of, last_tick_key, new_run};
use slipway_core::model::{ServiceKey, ServiceKind, Task};
use slipway_core::schedule::Schedule;
use slipway_store::{Batch, ServiceRecord, Write, now_ms, random_id};

use crate::{App, AppError, Result};

/// One job: its schedule, when it runs next and its runs, newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobView {
    pub job: ServiceKey,
    pub schedule: String,
    pub retries: u32,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// The next tick of the schedule (unix ms).
    pub next_run_at: Option<i64>,
    /// The runs kept (the live ones and the recent stopped ones), newest first.
    pub runs: Vec<JobRun>,
}

/// One run of a job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRun {
    /// The run's task (a standalone task of the app environment).
    pub task: Task,
    /// The tick it is for (unix ms; the time asked for a `job run`).
    pub tick: i64,
    /// 0 for the first attempt, then the retries.
    pub attempt: u32,
}

impl App {
    async fn job_record(&self, key: &ServiceKey) -> Result<ServiceRecord> {
        match self.store().get_service(key).await? {
            Some(s) if s.kind == ServiceKind::ScheduledJob && !s.deleting => Ok(s),
            Some(s) if s.kind != ServiceKind::ScheduledJob => Err(AppError::invalid(format!(
                "{} is a {}, not a Scheduled Job",
                key.name,
                s.kind.as_str()
            ))),
            _ => Err(AppError::not_found(format!("job {key}"))),
        }
    }

    /// Starts a run of a job now (its retries apply), outside its schedule.
    pub async fn run_job(&self, key: &ServiceKey) -> Result<Task> {
        let job = self.job_record(key).await?;
        let td = self
            .store()
            .get_task_definition(&key.family(), job.revision)
            .await?
            .ok_or_else(|| AppError::not_found(format!("the task definition of job {key}")))?;
        let now = now_ms();
        let task = new_run(
            key,
            &td,
            RunTag {
                tick: now,
                attempt: 0,
            },
            random_id(16),
            now,
        );
        let standalone = ServiceKey::standalone(&key.app, &key.env);
        let out = self
            .store()
            .commit(
                Batch::new()
                    .write(Write::Task(task.clone()))
                    .notify(&standalone)
                    .event(
                        key,
                        now,
                        format!("(service {}) started run {} on request.", key.name, task.id),
                    ),
            )
            .await?;
        Ok(Task {
            version: out.first().map_or(0, |o| o.version()),
            ..task
        })
    }

    /// The jobs of an app environment with their history.
    pub async fn list_jobs(&self, app: &str, env: &str) -> Result<Vec<JobView>> {
        let store = self.store();
        let tasks = store
            .list_tasks(&ServiceKey::standalone(app, env), true)
            .await?;
        let mut out = Vec::new();
        for s in store.list_services(Some(app)).await? {
            if s.key.env != env || s.kind != ServiceKind::ScheduledJob {
                continue;
            }
            let Some(spec) = store
                .get_task_definition(&s.key.family(), s.revision)
                .await?
                .and_then(|td| td.container.job)
            else {
                continue;
            };
            let last: Option<i64> = store
                .get_meta(&last_tick_key(&s.key))
                .await?
                .and_then(|v| v.parse().ok());
            let next_run_at = Schedule::parse(&spec.schedule)
                .ok()
                .and_then(|sch| sch.next_after(last.unwrap_or(s.created_at)));
            let mut runs: Vec<JobRun> = tasks
                .iter()
                .filter(|t| job_of(t) == Some(s.key.name.as_str()))
                .filter_map(|t| {
                    RunTag::of(t).map(|tag| JobRun {
                        task: t.clone(),
                        tick: tag.tick,
                        attempt: tag.attempt,
                    })
                })
                .collect();
            runs.sort_by_key(|r| std::cmp::Reverse(r.task.created_at));
            out.push(JobView {
                job: s.key.clone(),
                schedule: spec.schedule,
                retries: spec.retries,
                timeout_ms: spec.timeout_ms,
                next_run_at: if s.deleting { None } else { next_run_at },
                runs,
            });
        }
        Ok(out)
    }
}
