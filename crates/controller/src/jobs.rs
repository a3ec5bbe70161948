//! The job scheduler: once a second, for every Scheduled Job, start the runs that are due
//! (a tick of its schedule, a retry of a failed run) and stop runs past their timeout, as
//! [`slipway_core::jobs::plan_job`] decides. It runs inside the controller, so only on the
//! leading server; runs are standalone tasks, started and reaped by the standalone path.
//!
//! The last scheduled tick of each job is kept in the store (meta `job.last_tick.KEY`),
//! written in the same batch as the run it starts, so a tick runs once even across a
//! failover. Ticks missed while no server led run once, at the latest.

use std::time::Duration;

use slipway_core::jobs::{JobAction, JobInput, job_of, last_tick_key, new_run, plan_job};
use slipway_core::model::{ServiceKey, ServiceKind, StopCode, TaskStatus};
use slipway_core::schedule::Schedule;
use slipway_store::{Batch, ServiceRecord, Write};
use tokio::sync::watch;

use crate::{Controller, ControllerError, now_ms};

/// How often the scheduler looks.
const PASS: Duration = Duration::from_secs(1);

impl Controller {
    pub(crate) async fn run_jobs(
        self,
        beat: slipway_supervise::Beat,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(PASS) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return;
            }
            if let Err(e) = self.jobs_pass().await {
                tracing::warn!(error = %e, "job scheduler pass failed; trying again");
            }
            beat.progress();
        }
    }

    async fn jobs_pass(&self) -> Result<(), ControllerError> {
        let jobs: Vec<ServiceRecord> = self
            .inner
            .store
            .list_services(None)
            .await?
            .into_iter()
            .filter(|s| s.kind == ServiceKind::ScheduledJob && !s.deleting)
            .collect();
        for job in &jobs {
            self.job_pass(job).await?;
        }
        Ok(())
    }

    async fn job_pass(&self, job: &ServiceRecord) -> Result<(), ControllerError> {
        let store = &self.inner.store;
        let key = &job.key;
        let Some(td) = store
            .get_task_definition(&key.family(), job.revision)
            .await?
        else {
            return Ok(());
        };
        let Some(spec) = td.container.job.clone() else {
            return Ok(());
        };
        let Ok(schedule) = Schedule::parse(&spec.schedule) else {
            return Ok(());
        };
        let standalone = ServiceKey::standalone(&key.app, &key.env);
        let runs: Vec<_> = store
            .list_tasks(&standalone, true)
            .await?
            .into_iter()
            .filter(|t| job_of(t) == Some(key.name.as_str()))
            .collect();
        let meta = last_tick_key(key);
        let last_tick = store.get_meta(&meta).await?.and_then(|v| v.parse().ok());
        let now = now_ms();
        let actions = plan_job(JobInput {
            spec: &spec,
            schedule: &schedule,
            runs: &runs,
            last_tick,
            deployed_at: job.created_at,
            now,
        });
        for a in actions {
            match a {
                JobAction::Run { tag, scheduled } => {
                    let task = new_run(key, &td, tag, slipway_store::random_id(16), now);
                    let why = if tag.attempt == 0 {
                        format!("for its schedule ({})", spec.schedule)
                    } else {
                        format!(
                            "again after a failed run (retry {} of {})",
                            tag.attempt, spec.retries
                        )
                    };
                    let mut batch = Batch::new()
                        .write(Write::Task(task.clone()))
                        .notify(&standalone);
                    if scheduled {
                        batch = batch.write(Write::Meta {
                            key: meta.clone(),
                            value: tag.tick.to_string(),
                        });
                    }
                    let batch = batch.event(
                        key,
                        now,
                        format!("(service {}) started run {} {why}.", key.name, task.id),
                    );
                    store.commit(batch).await?;
                    tracing::info!(job = %key, task = %task.id, tick = tag.tick, attempt = tag.attempt, "job run");
                }
                JobAction::TimeOut { task_id, after_ms } => {
                    let Some(mut t) = runs.iter().find(|r| r.id == task_id).cloned() else {
                        continue;
                    };
                    let after = format!("{}s", after_ms as f64 / 1000.0);
                    t.desired_running = false;
                    t.stop_code = Some(StopCode::UserInitiated);
                    t.stopped_reason = Some(format!("Job run timed out after {after} (timeout)"));
                    if t.last_status != TaskStatus::Provisioning {
                        t.last_status = TaskStatus::Stopping;
                    }
                    self.save_task(&mut t).await?;
                    self.event(
                        key,
                        now,
                        format!(
                            "(service {}) run {task_id} ran past its timeout ({after}): stopping it.",
                            key.name
                        ),
                    )
                    .await?;
                    self.wake(&standalone);
                }
            }
        }
        Ok(())
    }
}
