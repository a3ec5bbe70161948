//! `slipway status`, `slipway ps`, `slipway events`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use slipway_api::types::{ServiceDetail, ServiceSummary};
use slipway_core::model::{Deployment, ServiceEvent, Task, TaskStatus};

use super::Target;
use crate::client::{Client, service_path};
use crate::output::{ago, duration_ms, print_json, short_digest, table};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// One service in detail (default: every service of the app; all apps without a manifest).
    service: Option<String>,
    /// The servers sharing this cluster's database, and which one leads (runs the controller).
    #[arg(long, conflicts_with = "service")]
    servers: bool,
    /// Manifest that names the app (used when --app is not given).
    #[arg(short = 'f', long = "file", default_value = "slipway.yml")]
    file: std::path::PathBuf,
    /// App name (default: the `app:` of the manifest).
    #[arg(long)]
    app: Option<String>,
    /// Environment (default: `default` for SERVICE; every environment of the app without it).
    #[arg(long)]
    env: Option<String>,
}

impl StatusArgs {
    fn target(&self) -> Target {
        Target {
            file: self.file.clone(),
            app: self.app.clone(),
            env: self
                .env
                .clone()
                .unwrap_or_else(|| slipway_core::manifest::DEFAULT_ENV.to_owned()),
        }
    }
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Only this service's tasks.
    service: Option<String>,
    /// Include stopped tasks.
    #[arg(short, long)]
    all: bool,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    service: String,
    /// How many events (at most 100).
    #[arg(long, default_value_t = 20)]
    limit: u32,
    #[command(flatten)]
    target: Target,
}

fn list_path(target: &Target, all_apps_ok: bool) -> Result<String> {
    match target.app() {
        Ok(app) => Ok(format!("/services?app={app}&env={}", target.env)),
        Err(_) if all_apps_ok && target.app.is_none() => Ok("/services".to_owned()),
        Err(e) => Err(e),
    }
}

/// How long both versions were served (both registered in the ingress): from the first
/// healthy new task until the last old task was deregistered.
pub fn both_served_ms(d: &Deployment) -> Option<i64> {
    let tl = &d.timeline;
    tl.first_old_stopped_at?;
    let h = tl.first_healthy_at?;
    // Deployments recorded before deregistration was timed: until the old ones were gone.
    let end = tl.old_deregistered_at.or(tl.old_gone_at)?;
    Some((end - h).max(0))
}

/// How long the old tasks took to stop once deregistered (draining, then SIGTERM and the
/// stop timeout).
pub fn old_stopping_ms(d: &Deployment) -> Option<i64> {
    let tl = &d.timeline;
    Some((tl.old_gone_at? - tl.old_deregistered_at?).max(0))
}

/// The timeline of a deployment, in words.
pub fn timeline(d: &Deployment) -> Vec<(String, String)> {
    let tl = &d.timeline;
    let rel = |t: Option<i64>| t.map_or("-".to_owned(), |t| duration_ms(t - d.created_at));
    let overlap = match (both_served_ms(d), tl.first_healthy_at, tl.old_gone_at) {
        (Some(ms), _, _) => duration_ms(ms),
        (None, Some(_), Some(_)) if tl.first_old_stopped_at.is_none() => {
            "0.0s (no earlier version)".to_owned()
        }
        _ => "-".to_owned(),
    };
    let mut lines = vec![
        ("first healthy new task".into(), rel(tl.first_healthy_at)),
        ("old and new both served".into(), overlap),
        (
            "old tasks stopping (deregistered)".into(),
            old_stopping_ms(d).map_or("-".to_owned(), duration_ms),
        ),
        ("old tasks gone".into(), rel(tl.old_gone_at)),
        ("finished".into(), rel(tl.finished_at)),
    ];
    if let Some(r) = &d.rollout {
        // The weights in force over time: `0 % at 0.0s, 5 % at 4.1s, 100 % at 64.3s`.
        let steps: Vec<String> = r
            .weights
            .iter()
            .map(|w| format!("{} % at {}", w.weight, rel(Some(w.at))))
            .collect();
        lines.insert(
            0,
            (
                format!("{} weights", r.plan.strategy.name()),
                steps.join(", "),
            ),
        );
        if let Some(v) = &r.last {
            lines.insert(
                1,
                (
                    "last analysis".into(),
                    format!(
                        "{} at {} %: {} ({} requests)",
                        match v.outcome {
                            slipway_core::rollout::Outcome::Pass => "pass",
                            slipway_core::rollout::Outcome::Fail => "FAIL",
                            slipway_core::rollout::Outcome::Inconclusive => "wait",
                        },
                        v.weight,
                        v.detail,
                        v.canary.requests
                    ),
                ),
            );
        }
    }
    lines
}

pub async fn status(a: StatusArgs, json: bool) -> Result<ExitCode> {
    let client = Client::from_env()?;
    if a.servers {
        return servers(&client, json).await;
    }
    let target = a.target();
    if let Some(svc) = &a.service {
        let key = target.key(svc)?;
        let detail: ServiceDetail = client.get(&service_path(&key)).await?;
        if json {
            print_json(&detail)?;
            return Ok(ExitCode::SUCCESS);
        }
        let s = &detail.summary;
        println!("service:   {} ({})", key, s.kind.as_str());
        println!(
            "tasks:     {} desired, {} running, {} healthy",
            s.desired, s.running, s.healthy
        );
        println!(
            "revision:  {}:{} image {} {}",
            key.family(),
            s.revision,
            s.image.as_deref().unwrap_or("-"),
            s.image_digest
                .as_deref()
                .map(short_digest)
                .unwrap_or_default()
        );
        let c = &detail.config;
        println!(
            "rollout:   minimum healthy {}%, maximum {}%, circuit breaker {}{}",
            c.minimum_healthy_percent,
            c.maximum_percent,
            if c.circuit_breaker.enable {
                "on"
            } else {
                "off"
            },
            if c.circuit_breaker.rollback {
                " with rollback"
            } else {
                ""
            }
        );
        if s.deleting {
            println!("state:     being deleted");
        }
        if let Some(d) = &s.last_deployment {
            println!(
                "last deployment: {} {} (revision {}, started {}){}",
                d.id,
                d.state.as_str(),
                d.revision,
                ago(d.created_at),
                d.reason
                    .as_ref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            );
            for (k, v) in timeline(d) {
                println!("  {k:<34} {v}");
            }
        }
        println!();
        print_tasks(
            &detail
                .tasks
                .iter()
                .filter(|t| t.last_status != TaskStatus::Stopped)
                .cloned()
                .collect::<Vec<_>>(),
            detail.container.as_ref().and_then(|c| c.port),
        );
        return Ok(ExitCode::SUCCESS);
    }
    // Without --env, every environment of the app: what `status` in an app's directory asks.
    let path = match (&a.env, target.app()) {
        (None, Ok(app)) => format!("/services?app={app}"),
        _ => list_path(&target, true)?,
    };
    let list: Vec<ServiceSummary> = client.get(&path).await?;
    if json {
        print_json(&list)?;
        return Ok(ExitCode::SUCCESS);
    }
    if list.is_empty() {
        println!("No services. Deploy one with `slipway deploy`.");
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = table(&[
        "SERVICE",
        "APP",
        "ENV",
        "DESIRED",
        "RUNNING",
        "HEALTHY",
        "REVISION",
        "IMAGE",
        "LAST DEPLOYMENT",
    ]);
    for s in &list {
        t.add_row(vec![
            s.service.name.clone(),
            s.service.app.clone(),
            s.service.env.clone(),
            s.desired.to_string(),
            s.running.to_string(),
            s.healthy.to_string(),
            s.revision.to_string(),
            s.image.clone().unwrap_or_default(),
            s.last_deployment
                .as_ref()
                .map(|d| format!("{} {}", d.state.as_str(), ago(d.updated_at)))
                .unwrap_or_default(),
        ]);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}

fn print_tasks(tasks: &[Task], port: Option<u16>) {
    if tasks.is_empty() {
        println!("No tasks.");
        return;
    }
    // Tasks of several containers get a column with each container's state.
    let several = tasks.iter().any(|t| !t.containers.is_empty());
    let mut head = vec![
        "TASK",
        "SERVICE",
        "REVISION",
        "STATUS",
        "HEALTH",
        "ADDRESS",
        "STARTED",
        "STOPPED REASON",
    ];
    if several {
        head.insert(5, "CONTAINERS");
    }
    let mut t = table(&head);
    for task in tasks {
        let mut row = vec![
            task.id.clone(),
            match &task.standalone {
                Some(_) => slipway_core::jobs::job_of(task)
                    .map_or("(standalone)".to_owned(), |j| format!("{j} (job run)")),
                None => task.service.name.clone(),
            },
            match &task.standalone {
                Some(s) => s.task_definition.clone(),
                None => task.revision.to_string(),
            },
            task.last_status.as_str().to_owned(),
            task.health.as_str().to_owned(),
            task.address
                .as_ref()
                .map(|a| port.map_or(a.clone(), |p| format!("{a}:{p}")))
                .unwrap_or_default(),
            task.started_at.map(ago).unwrap_or_default(),
            match (&task.stopped_reason, task.exit_code) {
                (Some(r), Some(code)) if !r.contains("exit code") => {
                    format!("{r} (exit code {code})")
                }
                (Some(r), _) => r.clone(),
                _ => String::new(),
            },
        ];
        if several {
            row.insert(5, containers_cell(&task.containers));
        }
        t.add_row(row);
    }
    println!("{t}");
}

/// `app RUNNING, agent RUNNING HEALTHY, setup STOPPED (exit 0)`.
fn containers_cell(cs: &[slipway_core::model::ContainerStatus]) -> String {
    cs.iter()
        .map(|c| {
            let mut s = format!("{} {}", c.name, c.last_status);
            if c.health != "UNKNOWN" {
                s.push(' ');
                s.push_str(&c.health);
            }
            if let Some(code) = c.exit_code {
                s.push_str(&format!(" (exit {code})"));
            }
            s
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn ps(a: PsArgs, json: bool) -> Result<ExitCode> {
    let client = Client::from_env()?;
    let keys = match &a.service {
        Some(s) => vec![a.target.key(s)?],
        None => {
            let list: Vec<ServiceSummary> = client.get(&list_path(&a.target, false)?).await?;
            list.into_iter().map(|s| s.service).collect()
        }
    };
    let mut tasks = Vec::new();
    let mut port = None;
    let mut envs: Vec<(String, String)> = Vec::new();
    for k in keys {
        let d: ServiceDetail = client.get(&service_path(&k)).await?;
        port = port.or(d.container.as_ref().and_then(|c| c.port));
        tasks.extend(
            d.tasks
                .into_iter()
                .filter(|t| a.all || t.last_status != TaskStatus::Stopped),
        );
        if !envs.iter().any(|(app, env)| *app == k.app && *env == k.env) {
            envs.push((k.app.clone(), k.env.clone()));
        }
    }
    // Standalone tasks (ECS RunTask) of the app environment, unless one service was asked.
    if a.service.is_none() {
        if let Ok(app) = a.target.app() {
            let here = (app.to_owned(), a.target.env.clone());
            if !envs.contains(&here) {
                envs.push(here);
            }
        }
        for (app, env) in envs {
            let list: Vec<Task> = client
                .get(&format!("/tasks?app={app}&env={env}&all={}", a.all))
                .await?;
            tasks.extend(list);
        }
    }
    if json {
        print_json(&tasks)?;
    } else {
        print_tasks(&tasks, port);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn events(a: EventsArgs, json: bool) -> Result<ExitCode> {
    let client = Client::from_env()?;
    let key = a.target.key(&a.service)?;
    let events: Vec<ServiceEvent> = client
        .get(&format!("{}/events?limit={}", service_path(&key), a.limit))
        .await?;
    if json {
        print_json(&events)?;
        return Ok(ExitCode::SUCCESS);
    }
    for e in &events {
        println!("{:>12}  {}", ago(e.created_at), e.message);
    }
    Ok(ExitCode::SUCCESS)
}

/// `slipway status --servers`: the servers of the cluster, the leader first.
async fn servers(client: &Client, json: bool) -> Result<ExitCode> {
    let mut list: Vec<slipway_store::ServerInfo> = client.get("/servers").await?;
    list.sort_by_key(|s| (!s.leader, std::cmp::Reverse(s.seen_at)));
    if json {
        print_json(&list)?;
        return Ok(ExitCode::SUCCESS);
    }
    let now = slipway_store::now_ms();
    let mut t = table(&["SERVER", "ROLE", "API", "INGRESS", "STARTED", "LAST SEEN"]);
    for s in &list {
        // Heartbeats come every 2 s: a server silent for 10 s is down or cut off.
        let role = match (s.leader, now - s.seen_at > 10_000) {
            (true, _) => "leader",
            (false, false) => "standby",
            (false, true) => "unreachable",
        };
        t.add_row(vec![
            s.id.clone(),
            role.to_owned(),
            s.api_url.clone(),
            if s.ingress.is_empty() {
                "-".to_owned()
            } else {
                s.ingress.clone()
            },
            ago(s.started_at),
            ago(s.seen_at),
        ]);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}
