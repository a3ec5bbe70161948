//! `slipway job run NAME` (a run of a Scheduled Job now) and `slipway job ls` (the jobs of
//! an app environment: schedule, next run, and the history of their runs).

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};
use slipway_app::JobView;
use slipway_core::model::{Task, TaskStatus};

use crate::client::Client;
use crate::output::{ago, print_json, table};

use super::Target;

#[derive(Debug, Subcommand)]
pub enum JobCmd {
    /// Run a Scheduled Job now, outside its schedule (its retries apply).
    Run(RunArgs),
    /// The Scheduled Jobs: schedule, next run and the history of their runs.
    Ls(LsArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The job (a service of type Scheduled Job).
    job: String,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    #[command(flatten)]
    target: Target,
}

fn outcome(t: &Task) -> String {
    match (t.last_status, t.exit_code) {
        (TaskStatus::Stopped, Some(0)) => "succeeded".into(),
        (TaskStatus::Stopped, Some(c)) => format!("failed (exit code {c})"),
        (TaskStatus::Stopped, None) => "failed".into(),
        (s, _) => s.as_str().to_ascii_lowercase(),
    }
}

pub async fn run(cmd: JobCmd, json: bool) -> Result<ExitCode> {
    let client = Client::from_env()?;
    match cmd {
        JobCmd::Run(a) => {
            let key = a.target.key(&a.job)?;
            slipway_core::model::validate_name(&a.job).map_err(|e| anyhow::anyhow!("job: {e}"))?;
            let t: Task = client
                .post(
                    &format!("/jobs/{}/{}/{}/run", key.app, key.env, key.name),
                    &serde_json::json!({}),
                )
                .await?;
            if json {
                print_json(&t)?;
            } else {
                println!(
                    "{}: run {} started; follow it with slipway job ls or slipway ps --all",
                    key.name, t.id
                );
            }
        }
        JobCmd::Ls(a) => {
            let app = a.target.app()?;
            let jobs: Vec<JobView> = client
                .get(&format!("/jobs?app={app}&env={}", a.target.env))
                .await?;
            if json {
                print_json(&jobs)?;
                return Ok(ExitCode::SUCCESS);
            }
            if jobs.is_empty() {
                println!("No Scheduled Job in {app}/{}.", a.target.env);
                return Ok(ExitCode::SUCCESS);
            }
            for j in &jobs {
                let next = j.next_run_at.map_or("-".to_owned(), |n| {
                    let now = slipway_controller::now_ms();
                    if n <= now {
                        "due now".to_owned()
                    } else {
                        format!("in {}", crate::output::duration_ms(n - now))
                    }
                });
                println!(
                    "{}  schedule {}  retries {}{}  next run {next}",
                    j.job.name,
                    j.schedule,
                    j.retries,
                    j.timeout_ms
                        .map(|t| format!("  timeout {}", crate::output::duration_ms(t as i64)))
                        .unwrap_or_default(),
                );
                if j.runs.is_empty() {
                    println!("  no run yet");
                    continue;
                }
                let mut t = table(&["  RUN", "ATTEMPT", "STARTED", "OUTCOME", "REASON"]);
                for r in &j.runs {
                    t.add_row(vec![
                        format!("  {}", r.task.id),
                        r.attempt.to_string(),
                        r.task
                            .started_at
                            .or(Some(r.task.created_at))
                            .map(ago)
                            .unwrap_or_default(),
                        outcome(&r.task),
                        r.task.stopped_reason.clone().unwrap_or_default(),
                    ]);
                }
                println!("{t}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
