//! `slipway logs`, `rollback`, `scale`, `restart`, `delete`.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;
use futures_util::StreamExt;
use slipway_api::types::{
    ActionResponse, DeployOutcome, RollbackRequest, ScaleRequest, ServiceDetail,
};

use slipway_core::model::{Deployment, RolloutState, ServiceKey};

use super::Target;
use super::deploy::{Wait, wait_and_report};
use crate::client::{Client, service_path};

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The service (default: every service of the app, lines prefixed `service/task`).
    service: Option<String>,
    /// Every service of the app (the same as leaving SERVICE out).
    #[arg(long, conflicts_with = "service")]
    all: bool,
    /// Keep printing new lines (like `docker logs -f`).
    #[arg(short = 'f', long)]
    follow: bool,
    /// Only lines newer than this (e.g. 10m).
    #[arg(long, value_parser = humantime::parse_duration)]
    since: Option<Duration>,
    /// Only the last N lines of each task.
    #[arg(long)]
    tail: Option<u32>,
    /// Only this task of SERVICE, also after it stopped (then its last output, kept when its
    /// container was removed); `slipway ps SERVICE --all` lists the tasks.
    #[arg(
        long,
        value_name = "ID",
        requires = "service",
        conflicts_with = "previous"
    )]
    task: Option<String>,
    /// Only the task the newest replacement replaced: SERVICE's most recently stopped task.
    #[arg(long, requires = "service")]
    previous: bool,
    /// Only this container of SERVICE's tasks of several containers (a sidecar, the log
    /// router `firelens_log_router`); the main container when left out.
    #[arg(long, value_name = "NAME", requires = "service")]
    container: Option<String>,
    /// Manifest that names the app (here `-f` means --follow, so the manifest is --file only).
    #[arg(long = "file", default_value = "slipway.yml")]
    file: std::path::PathBuf,
    /// App name (default: the `app:` of the manifest).
    #[arg(long)]
    app: Option<String>,
    /// Environment.
    #[arg(long, default_value = slipway_core::manifest::DEFAULT_ENV)]
    env: String,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    service: String,
    /// Roll back to this revision (default: the previous successful one).
    #[arg(long = "to")]
    to: Option<u32>,
    /// Change the service only if it is still at this version (`slipway status SERVICE
    /// --json` shows `summary.version`); otherwise fail and say what changed since.
    #[arg(long, value_name = "VERSION")]
    expect_version: Option<u64>,
    /// Return once the change is accepted instead of waiting for its outcome.
    #[arg(long)]
    no_wait: bool,
    /// Give up waiting after this long (the change goes on in the server).
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, Args)]
pub struct RolloutArgs {
    service: String,
    /// Return once the change is accepted instead of waiting for its outcome.
    #[arg(long)]
    no_wait: bool,
    /// Give up waiting after this long (the change goes on in the server).
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    service: String,
    /// The new desired count (0 to 1000).
    #[arg(allow_negative_numbers = true)]
    count: i64,
    /// Change the service only if it is still at this version (`slipway status SERVICE
    /// --json` shows `summary.version`); otherwise fail and say what changed since.
    #[arg(long, value_name = "VERSION")]
    expect_version: Option<u64>,
    /// Return once the change is accepted instead of waiting for its outcome.
    #[arg(long)]
    no_wait: bool,
    /// Give up waiting after this long (the change goes on in the server).
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, Args)]
pub struct RestartArgs {
    service: String,
    /// Change the service only if it is still at this version (`slipway status SERVICE
    /// --json` shows `summary.version`); otherwise fail and say what changed since.
    #[arg(long, value_name = "VERSION")]
    expect_version: Option<u64>,
    /// Return once the change is accepted instead of waiting for its outcome.
    #[arg(long)]
    no_wait: bool,
    /// Give up waiting after this long (the change goes on in the server).
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The service to delete; leave it out and pass --app to delete every service of an app.
    pub(crate) service: Option<String>,
    /// Return once the deletion is accepted instead of waiting until everything is gone.
    #[arg(long)]
    pub(crate) no_wait: bool,
    /// Give up waiting after this long (the deletion goes on in the server).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub(crate) timeout: Duration,
    /// Manifest that names the app (used for SERVICE when --app is not given).
    #[arg(short = 'f', long = "file", default_value = "slipway.yml")]
    pub(crate) file: std::path::PathBuf,
    /// App name (default for SERVICE: the `app:` of the manifest).
    #[arg(long)]
    pub(crate) app: Option<String>,
    /// Environment (default: `default` for SERVICE; every environment for a whole app).
    #[arg(long)]
    pub(crate) env: Option<String>,
    /// Delete a whole app without asking.
    #[arg(long)]
    pub(crate) yes: bool,
    /// Delete SERVICE only if it is still at this version.
    #[arg(long, value_name = "VERSION", requires = "service")]
    pub(crate) expect_version: Option<u64>,
}

pub async fn logs(a: LogsArgs) -> Result<ExitCode> {
    let client = Client::from_env()?;
    let target = Target {
        file: a.file.clone(),
        app: a.app.clone(),
        env: a.env.clone(),
    };
    let mut q = vec![format!("follow={}", a.follow)];
    if let Some(s) = a.since {
        q.push(format!("since={}", s.as_secs()));
    }
    if let Some(t) = a.tail {
        q.push(format!("tail={t}"));
    }
    if let Some(t) = &a.task {
        if t.is_empty() || !t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            anyhow::bail!(
                "--task {t:?}: a task id is letters and digits; `slipway ps SERVICE --all` lists them"
            );
        }
        q.push(format!("task={t}"));
    }
    if a.previous {
        q.push("previous=true".to_owned());
    }
    if let Some(c) = &a.container {
        if let Err(m) = slipway_core::model::containers::validate_container_name(c) {
            anyhow::bail!("--container: {m}");
        }
        q.push(format!("container={c}"));
    }
    let path = match a.service.as_deref().filter(|_| !a.all) {
        Some(service) => {
            let key = target.key(service)?;
            format!("{}/logs?{}", service_path(&key), q.join("&"))
        }
        None => format!(
            "/logs?app={}&env={}&{}",
            target.app()?,
            target.env,
            q.join("&")
        ),
    };
    let resp = client.stream(&path).await?;
    let mut body = resp.bytes_stream();
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = body.next().await {
        out.write_all(&chunk?)?;
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn follow(
    client: &Client,
    r: ActionResponse,
    no_wait: bool,
    timeout: Duration,
    json: bool,
    running_before: Vec<String>,
) -> Result<ExitCode> {
    if no_wait {
        if json {
            crate::output::print_json(&r)?;
        } else {
            println!("{}: {}", r.service.name, r.message);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let outcome = if r.deployment_id.is_some() {
        DeployOutcome::Deploying
    } else {
        DeployOutcome::Scaled
    };
    wait_and_report(
        client,
        vec![Wait {
            key: r.service,
            deployment_id: r.deployment_id,
            outcome,
            running_before,
        }],
        Vec::new(),
        &[],
        timeout,
        json,
    )
    .await
}

pub async fn rollback(a: RollbackArgs, json: bool) -> Result<ExitCode> {
    let client = Client::from_env()?;
    let key = a.target.key(&a.service)?;
    let body = RollbackRequest { revision: a.to };
    let wait = (a.no_wait, a.timeout, json);
    change_and_follow(&client, &key, "rollback", &body, a.expect_version, wait).await
}

/// Posts one change of a service (`verb`: its path under the service) and follows the
/// deployment it starts to its outcome (`wait`: no_wait, timeout, json).
async fn change_and_follow<B: serde::Serialize>(
    client: &Client,
    key: &ServiceKey,
    verb: &str,
    body: &B,
    expect: Option<u64>,
    (no_wait, timeout, json): (bool, Duration, bool),
) -> Result<ExitCode> {
    let r: ActionResponse = client
        .post_if(&format!("{}/{verb}", service_path(key)), body, expect)
        .await?;
    if !json && !no_wait {
        println!("{}: {}", key.name, r.message);
    }
    follow(client, r, no_wait, timeout, json, Vec::new()).await
}

/// `slipway promote`: the rollout in progress takes every request now; waits for its outcome.
pub async fn promote(a: RolloutArgs, json: bool) -> Result<ExitCode> {
    let client = Client::from_env()?;
    let key = a.target.key(&a.service)?;
    let wait = (a.no_wait, a.timeout, json);
    change_and_follow(&client, &key, "promote", &serde_json::json!({}), None, wait).await
}

/// `slipway abort`: the rollout in progress takes no request any more and is rolled back;
/// succeeds once the stable version serves alone again.
pub async fn abort(a: RolloutArgs, json: bool) -> Result<ExitCode> {
    let client = Client::from_env()?;
    let key = a.target.key(&a.service)?;
    let r: ActionResponse = client
        .post(
            &format!("{}/abort", service_path(&key)),
            &serde_json::json!({}),
        )
        .await?;
    let Some(id) = r.deployment_id.clone().filter(|_| !a.no_wait) else {
        if json {
            crate::output::print_json(&r)?;
        } else {
            println!("{}: {}", key.name, r.message);
        }
        return Ok(ExitCode::SUCCESS);
    };
    if !json {
        println!("{}: {}", key.name, r.message);
    }
    let started = Instant::now();
    loop {
        let d: Deployment = client.get(&format!("/deployments/{id}")).await?;
        let back = match &d.rolled_back_by {
            Some(rb) => Some(
                client
                    .get::<Deployment>(&format!("/deployments/{rb}"))
                    .await?,
            ),
            None => None,
        };
        let settled = d.state.is_terminal() && back.as_ref().is_none_or(|b| b.state.is_terminal());
        if settled {
            let ok = back
                .as_ref()
                .is_some_and(|b| b.state == RolloutState::Succeeded);
            if json {
                crate::output::print_json(&serde_json::json!({
                    "succeeded": ok, "deployment": d, "rollback": back,
                }))?;
            } else {
                match &back {
                    Some(b) => println!(
                        "{} {}: deployment {} {}; revision {} serves again (deployment {} {})",
                        if ok { "✔" } else { "✘" },
                        key.name,
                        d.id,
                        d.state.as_str(),
                        b.revision,
                        b.id,
                        b.state.as_str()
                    ),
                    None => println!(
                        "✘ {}: deployment {} {}: {}",
                        key.name,
                        d.id,
                        d.state.as_str(),
                        d.reason.as_deref().unwrap_or("")
                    ),
                }
            }
            return Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        if started.elapsed() > a.timeout {
            anyhow::bail!(
                "timed out after {} waiting for the rollback; it goes on in the server: follow it with `slipway status {}`",
                humantime::format_duration(a.timeout),
                key.name
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub async fn scale(a: ScaleArgs, json: bool) -> Result<ExitCode> {
    if !(0..=1000).contains(&a.count) {
        bail!("count must be between 0 and 1000, got {}", a.count);
    }
    let client = Client::from_env()?;
    let key = a.target.key(&a.service)?;
    // The tasks running now: a scale in reports each one it stops.
    let running_before = client
        .get_opt::<ServiceDetail>(&service_path(&key))
        .await?
        .map(|d| {
            d.tasks
                .into_iter()
                .filter(|t| t.desired_running)
                .map(|t| t.id)
                .collect()
        })
        .unwrap_or_default();
    let r: ActionResponse = client
        .post_if(
            &format!("{}/scale", service_path(&key)),
            &ScaleRequest {
                count: a.count as u32,
            },
            a.expect_version,
        )
        .await?;
    follow(&client, r, a.no_wait, a.timeout, json, running_before).await
}

pub async fn restart(a: RestartArgs, json: bool) -> Result<ExitCode> {
    let client = Client::from_env()?;
    let key = a.target.key(&a.service)?;
    let wait = (a.no_wait, a.timeout, json);
    let body = serde_json::json!({});
    change_and_follow(&client, &key, "restart", &body, a.expect_version, wait).await
}

pub async fn delete(a: DeleteArgs, json: bool) -> Result<ExitCode> {
    let Some(service) = a.service.clone() else {
        return super::delete_app::run(a, json).await;
    };
    let target = Target {
        file: a.file.clone(),
        app: a.app.clone(),
        env: a
            .env
            .clone()
            .unwrap_or_else(|| slipway_core::manifest::DEFAULT_ENV.to_owned()),
    };
    let client = Client::from_env()?;
    let key = target.key(&service)?;
    let path = service_path(&key);
    let r: ActionResponse = client.delete_if(&path, a.expect_version).await?;
    if !a.no_wait {
        let started = Instant::now();
        while client.get_opt::<ServiceDetail>(&path).await?.is_some() {
            if started.elapsed() > a.timeout {
                bail!("timed out waiting for {key} to be deleted; it goes on in the server");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    if json {
        crate::output::print_json(&r)?;
    } else {
        println!(
            "{}: {}",
            key.name,
            if a.no_wait { "deleting" } else { "deleted" }
        );
    }
    Ok(ExitCode::SUCCESS)
}
