//! `slipway deploy`, and the wait-and-report loop shared with `rollback` and `restart`.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use slipway_api::types::{DeployOutcome, DeployRequest, DeployResponse, ServiceDetail};
use slipway_core::manifest::DEFAULT_ENV;
use slipway_core::model::{
    Deployment, RolloutState, STOP_TIMEOUT_HINT, ServiceKey, TaskHealth, TaskStatus,
};

use crate::client::{Client, service_path};
use crate::output::duration_ms;

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The manifest. Where no slipway.yml exists but an AWS Copilot workspace (`copilot/`)
    /// does, the workspace is read; -f may also name a directory holding `copilot/`.
    #[arg(short = 'f', long = "file", default_value = "slipway.yml")]
    file: PathBuf,
    /// Environment to deploy (its overrides from `environments:` apply; in a Copilot
    /// workspace, one of its environments).
    #[arg(long, default_value = DEFAULT_ENV)]
    env: String,
    /// Deploy only these services (default: all of the manifest).
    services: Vec<String>,
    /// Use this image for a service instead of the manifest's: SERVICE=REF (repeatable).
    #[arg(long = "image", value_name = "SERVICE=REF")]
    images: Vec<String>,
    /// Return once the deployment is accepted instead of waiting for its outcome.
    #[arg(long)]
    no_wait: bool,
    /// Give up waiting after this long (the deployment goes on in the server).
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Build images for this platform (os/arch) instead of the manifest's `platform`.
    #[arg(long)]
    platform: Option<String>,
    /// Roll out with this strategy instead of the manifest's `deployment.strategy`.
    #[arg(long, value_enum)]
    strategy: Option<StrategyArg>,
    /// Canary: the share of requests the new version takes; linear: each step (1-100).
    #[arg(long, value_name = "PERCENT")]
    percent: Option<u32>,
    /// How long each step below 100 % lasts (canary and linear).
    #[arg(long, value_parser = humantime::parse_duration)]
    step_bake: Option<Duration>,
    /// How long the new version is watched once it takes every request.
    #[arg(long, value_parser = humantime::parse_duration)]
    bake: Option<Duration>,
}

/// `--strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
enum StrategyArg {
    Rolling,
    Canary,
    Linear,
    BlueGreen,
}

/// Applies `--strategy`, `--percent`, `--step-bake` and `--bake` to a compiled spec.
fn apply_strategy(a: &DeployArgs, spec: &mut slipway_core::model::ServiceSpec) -> Result<()> {
    use slipway_core::rollout::{self as r, Strategy};
    if a.strategy.is_none() && (a.percent.is_some() || a.step_bake.is_some()) {
        bail!("--percent and --step-bake go with --strategy canary or --strategy linear");
    }
    if let Some(p) = a.percent
        && !(1..=100).contains(&p)
    {
        bail!("--percent must be between 1 and 100, got {p}");
    }
    let ms = |d: Option<Duration>| d.map(|d| d.as_millis() as u64);
    let routed = spec.container.http_route.is_some();
    let d = &mut spec.deployment;
    let mut prog = d.progressive;
    if let Some(s) = a.strategy {
        prog.strategy = match s {
            StrategyArg::Rolling => Strategy::Rolling,
            StrategyArg::Canary => Strategy::Canary {
                percent: a.percent.unwrap_or(r::CANARY_PERCENT),
                bake_ms: ms(a.step_bake).unwrap_or(r::CANARY_BAKE_MS),
            },
            StrategyArg::Linear => Strategy::Linear {
                step_percent: a.percent.unwrap_or(r::LINEAR_STEP_PERCENT),
                bake_ms: ms(a.step_bake).unwrap_or(r::LINEAR_BAKE_MS),
            },
            StrategyArg::BlueGreen => Strategy::BlueGreen,
        };
    }
    if let Some(b) = ms(a.bake) {
        prog.bake_ms = b;
    }
    if prog.analysis.is_none() && r::analysis_by_default(&prog.strategy, prog.bake_ms, routed) {
        prog.analysis = Some(r::Analysis::default());
    }
    // The default timeout leaves room for the bakes (as the manifest's does).
    d.set_progressive(prog);
    spec.validate()
        .map_err(|m| anyhow::anyhow!("--strategy: {m} (nothing was deployed)"))
}

/// Refuses a deploy whose secrets do not exist before anything is built, naming the place in
/// the manifest that refers to them.
async fn check_secrets(
    client: &Client,
    manifest: &slipway_core::manifest::Manifest,
    env: &str,
    specs: &[slipway_core::model::ServiceSpec],
    source: &super::copilot::Source,
) -> Result<()> {
    if specs.iter().all(|s| s.container.secrets.is_empty()) {
        return Ok(());
    }
    let known: Vec<slipway_store::SecretInfo> = client.get("/secrets").await?;
    for s in specs {
        for (var, r) in &s.container.secrets {
            if !known.iter().any(|k| k.name == r.name) {
                let e = manifest.secret_error(
                    env,
                    &s.key.name,
                    var,
                    &format!(
                        "secret {:?} does not exist; set it with `slipway secret set {}` (nothing was deployed)",
                        r.name, r.name
                    ),
                );
                bail!("{}", source.render(&e));
            }
        }
    }
    Ok(())
}

pub async fn run(a: DeployArgs, json: bool) -> Result<ExitCode> {
    let source = super::copilot::Source::open(&a.file, &a.env, true)?;
    let (shown, manifest) = (source.shown.clone(), &source.manifest);
    let mut specs = manifest
        .compile(&a.env)
        .map_err(|e| anyhow::anyhow!("{}", source.render(&e)))?;
    if !a.services.is_empty() {
        for s in &a.services {
            if !specs.iter().any(|x| &x.key.name == s) {
                let known: Vec<&str> = specs.iter().map(|x| x.key.name.as_str()).collect();
                bail!(
                    "{shown}: no service named {s:?} (services: {})",
                    known.join(", ")
                );
            }
        }
        specs.retain(|x| a.services.contains(&x.key.name));
    }
    for o in &a.images {
        let Some((svc, image)) = o.split_once('=') else {
            bail!("--image {o:?}: write it as SERVICE=REF, e.g. --image web=slipway-hello:v2");
        };
        let Some(spec) = specs.iter_mut().find(|x| x.key.name == svc) else {
            bail!("--image {o:?}: {shown} has no service named {svc:?}");
        };
        if image.trim().is_empty() {
            bail!("--image {o:?}: the image reference is empty");
        }
        spec.container.image = image.trim().to_owned();
    }
    if a.strategy.is_some() || a.bake.is_some() || a.percent.is_some() || a.step_bake.is_some() {
        for spec in &mut specs {
            apply_strategy(&a, spec)?;
        }
    }
    if let Some(p) = &a.platform {
        slipway_core::manifest::check_platform(p)
            .map_err(|m| anyhow::anyhow!("--platform: {m}"))?;
    }
    let client = Client::from_env()?;
    check_secrets(&client, manifest, &a.env, &specs, &source).await?;
    // Build and push what the manifest builds from source (unless --image named an image).
    let manifest_dir = source.dir.clone();
    let mut built = Vec::new();
    // Asked for once, and only when a service is built from source.
    let creds = tokio::sync::OnceCell::new();
    // Refuse a build for another platform than the hosts' before building anything.
    let wanted: Vec<(String, String)> = specs
        .iter()
        .filter(|s| s.container.image.is_empty())
        .filter_map(|s| {
            let b = manifest.build_in(&a.env, &s.key.name)?;
            let p = a.platform.clone().or(b.platform)?;
            Some((s.key.name.clone(), p))
        })
        .collect();
    if !wanted.is_empty() {
        let info: serde_json::Value = client.get("/info").await?;
        if let Some(host) = info["platform"].as_str() {
            for (svc, p) in &wanted {
                if p != host {
                    bail!(
                        "services.{svc}: the image would be built for {p} but the hosts run {host}; build for the hosts (--platform {host}, or `platform: {host}` in {shown}); nothing was built or deployed"
                    );
                }
            }
        }
    }
    for spec in &mut specs {
        if !spec.container.image.is_empty() {
            continue;
        }
        let Some(b) = manifest.build_in(&a.env, &spec.key.name) else {
            continue;
        };
        let creds = creds
            .get_or_try_init(|| super::build::registry_creds(&client))
            .await?;
        let out = super::build::build_and_push(
            &client,
            creds,
            &manifest_dir,
            &spec.key.app,
            &spec.key.name,
            &b,
            a.platform.as_deref(),
            false,
        )
        .await?;
        spec.container.image = out.image.clone();
        spec.container.image_digest = Some(out.digest.clone());
        built.push(out);
    }
    REQUEST_SENT.store(true, std::sync::atomic::Ordering::SeqCst);
    let resp: DeployResponse = client
        .post(
            "/deploy",
            &DeployRequest {
                services: specs,
                force: false,
                expect: Default::default(),
            },
        )
        .await
        .context("deploy refused; nothing was changed")?;
    let waits: Vec<Wait> = resp
        .results
        .iter()
        .map(|r| Wait {
            key: r.service.clone(),
            deployment_id: r.deployment_id.clone(),
            outcome: r.outcome,
            running_before: Vec::new(),
        })
        .collect();
    let warnings = source.warnings();
    if a.no_wait {
        if json {
            let mut out = serde_json::to_value(&resp)?;
            if !warnings.is_empty() {
                out["warnings"] = serde_json::to_value(&warnings)?;
            }
            crate::output::print_json(&out)?;
        } else {
            for r in &resp.results {
                println!(
                    "{}: {} (revision {}, deployment {})",
                    r.service.name,
                    outcome_word(r.outcome),
                    r.revision,
                    r.deployment_id.as_deref().unwrap_or("-")
                );
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    wait_and_report(&client, waits, built, &warnings, a.timeout, json).await
}

/// What `wait_and_report` is still waiting for: `(service, deployment id)`, so an
/// interrupted command can say what goes on in the server.
static WAITING: std::sync::Mutex<Vec<(ServiceKey, Option<String>)>> =
    std::sync::Mutex::new(Vec::new());

fn set_waiting(f: impl FnOnce(&mut Vec<(ServiceKey, Option<String>)>)) {
    f(&mut WAITING.lock().unwrap_or_else(|p| p.into_inner()));
}

/// Ctrl-C while a verb waits for an outcome: one line saying what goes on in the server.
/// Returns the exit code (130, as shells report SIGINT).
/// Set once a change request has gone to the server (before that, Ctrl-C deploys nothing).
pub static REQUEST_SENT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn report_interrupt(json: bool) -> u8 {
    let waiting = WAITING.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let what: Vec<String> = waiting
        .iter()
        .map(|(k, d)| match d {
            Some(id) => format!("deployment {id} of {}", k.name),
            None => format!("the change of {}", k.name),
        })
        .collect();
    if json {
        let list: Vec<serde_json::Value> = waiting
            .iter()
            .map(|(k, d)| serde_json::json!({ "service": k, "deployment_id": d }))
            .collect();
        println!(
            "{}",
            serde_json::json!({ "interrupted": true, "goes_on": list })
        );
    } else {
        if std::io::stderr().is_terminal() {
            // Clear the spinner's line.
            eprint!("\r\x1b[2K");
        }
        match waiting.as_slice() {
            [] if !REQUEST_SENT.load(std::sync::atomic::Ordering::SeqCst) => eprintln!(
                "interrupted before anything was sent to the server: nothing was deployed"
            ),
            [] => eprintln!(
                "interrupted: the server may have accepted the request; check with slipway status"
            ),
            [(k, _)] => eprintln!(
                "interrupted: {} goes on in the server; follow it with slipway status {}",
                what[0], k.name
            ),
            _ => eprintln!(
                "interrupted: {} go on in the server; follow them with slipway status",
                what.join(", ")
            ),
        }
    }
    130
}

/// One spelling of a deploy's outcome everywhere: `DEPLOYING`, `SCALED`, `UNCHANGED`.
pub fn outcome_word(o: DeployOutcome) -> &'static str {
    match o {
        DeployOutcome::Deploying => "DEPLOYING",
        DeployOutcome::Scaled => "SCALED",
        DeployOutcome::Unchanged => "UNCHANGED",
    }
}

/// One service to follow to its outcome.
#[derive(Debug, Clone)]
pub struct Wait {
    pub key: ServiceKey,
    pub deployment_id: Option<String>,
    pub outcome: DeployOutcome,
    /// Tasks that ran before the change (a scale in reports each one it stops).
    pub running_before: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    service: ServiceKey,
    outcome: String,
    reason: Option<String>,
    deployment: Option<Deployment>,
    /// The deployment that restored service after a rollback.
    rollback: Option<Deployment>,
    revision: u32,
    healthy: u32,
    desired: u32,
    failed_tasks: Vec<FailedTask>,
    /// Tasks this deployment replaced that did not stop on SIGTERM (killed after their stop
    /// timeout), with the hint.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    killed_after_stop_timeout: Vec<FailedTask>,
    addresses: Vec<String>,
    /// The Host header the route answers to (its first alias), when it has aliases.
    #[serde(skip_serializing_if = "Option::is_none")]
    host_header: Option<String>,
    /// How the app's other services reach a Backend Service (by name on its private network).
    #[serde(skip_serializing_if = "Option::is_none")]
    discovery: Option<String>,
    #[serde(skip)]
    route_path: Option<String>,
}

#[derive(Debug, Serialize)]
struct FailedTask {
    task: String,
    reason: String,
    exit_code: Option<i64>,
    /// Its last output lines (kept after its container is removed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    last_output: Vec<String>,
}

struct Progress {
    bar: Option<ProgressBar>,
    json: bool,
}

impl Progress {
    fn new(json: bool) -> Self {
        let bar = (!json && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template("{spinner} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        Self { bar, json }
    }

    fn line(&self, s: String) {
        if self.json {
            return;
        }
        match &self.bar {
            Some(b) => b.println(s),
            None => println!("{s}"),
        }
    }

    fn status(&self, s: String) {
        if let Some(b) = &self.bar {
            b.set_message(s);
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Follows deployments to their outcome, printing progress; exit 0 only if all succeeded.
pub async fn wait_and_report(
    client: &Client,
    waits: Vec<Wait>,
    builds: Vec<super::build::Built>,
    warnings: &[slipway_core::copilot::Warning],
    timeout: Duration,
    json: bool,
) -> Result<ExitCode> {
    set_waiting(|w| {
        *w = waits
            .iter()
            .map(|x| (x.key.clone(), x.deployment_id.clone()))
            .collect();
    });
    let progress = Progress::new(json);
    let started = Instant::now();
    let mut seen: HashMap<String, (TaskStatus, TaskHealth, bool)> = HashMap::new();
    let mut first = true;
    let mut done: HashMap<usize, Report> = HashMap::new();
    let mut announced_rollback: HashMap<usize, String> = HashMap::new();
    let mut announced_stop: std::collections::HashSet<String> = Default::default();
    // Per followed deployment: rollout weights shown, and the time of the last verdict shown.
    let mut rollout_shown: HashMap<usize, (usize, Option<i64>)> = HashMap::new();
    while done.len() < waits.len() {
        for (i, w) in waits.iter().enumerate() {
            if done.contains_key(&i) {
                continue;
            }
            let Some(detail) = client
                .get_opt::<ServiceDetail>(&service_path(&w.key))
                .await?
            else {
                bail!("service {} disappeared while deploying (deleted?)", w.key);
            };
            // A deploy that changed nothing has nothing to tell about its tasks.
            let tasks = if w.outcome == DeployOutcome::Unchanged {
                &[][..]
            } else {
                &detail.tasks[..]
            };
            for t in tasks {
                if w.running_before.contains(&t.id)
                    && (!t.desired_running || t.last_status == TaskStatus::Stopped)
                    && announced_stop.insert(t.id.clone())
                {
                    progress.line(format!(
                        "{}: task {} stopping: {}",
                        w.key.name,
                        t.id,
                        t.stopped_reason.as_deref().unwrap_or("stopped")
                    ));
                }
                let now = (t.last_status, t.health, t.desired_running);
                match seen.insert(t.id.clone(), now) {
                    None if (!first
                        || w.deployment_id.as_deref() == Some(t.deployment_id.as_str()))
                        && t.last_status != TaskStatus::Stopped =>
                    {
                        progress.line(format!(
                            "{}: task {} started (revision {})",
                            w.key.name, t.id, t.revision
                        ));
                    }
                    Some(before) => {
                        if before.1 != TaskHealth::Healthy
                            && t.health == TaskHealth::Healthy
                            && t.desired_running
                        {
                            progress.line(format!(
                                "{}: task {} healthy (revision {})",
                                w.key.name, t.id, t.revision
                            ));
                        }
                        if before.2 && !t.desired_running && announced_stop.insert(t.id.clone()) {
                            progress.line(format!(
                                "{}: task {} stopping: {}",
                                w.key.name,
                                t.id,
                                t.stopped_reason.as_deref().unwrap_or("stopped")
                            ));
                        }
                    }
                    _ => {}
                }
            }
            let s = &detail.summary;
            progress.status(format!(
                "{}: {}/{} healthy, revision {}",
                w.key.name, s.healthy, s.desired, s.revision
            ));
            match (&w.deployment_id, w.outcome) {
                (Some(id), DeployOutcome::Deploying) => {
                    let Some(d) = find_deployment(client, &detail, id).await? else {
                        continue;
                    };
                    if let Some(r) = &d.rollout {
                        let shown = rollout_shown.entry(i).or_insert((0, None));
                        for m in r.weights.iter().skip(shown.0) {
                            if m.weight > 0 || shown.0 > 0 {
                                progress.line(format!(
                                    "{}: {} {} % of requests to revision {}",
                                    w.key.name,
                                    r.plan.strategy.name(),
                                    m.weight,
                                    d.revision
                                ));
                            }
                        }
                        shown.0 = r.weights.len();
                        if let Some(v) = &r.last
                            && shown.1 != Some(v.at)
                        {
                            shown.1 = Some(v.at);
                            let word = match v.outcome {
                                slipway_core::rollout::Outcome::Pass => "pass",
                                slipway_core::rollout::Outcome::Fail => "FAIL",
                                slipway_core::rollout::Outcome::Inconclusive => "wait",
                            };
                            progress.line(format!(
                                "{}: analysis at {} %: {word}: {} ({} requests to the new version{})",
                                w.key.name,
                                v.weight,
                                v.detail,
                                v.canary.requests,
                                v.stable
                                    .map(|s| format!(", {} to stable", s.requests))
                                    .unwrap_or_default()
                            ));
                        }
                    }
                    if !d.state.is_terminal() {
                        continue;
                    }
                    let rollback = match &d.rolled_back_by {
                        Some(rb) => {
                            if announced_rollback.insert(i, rb.clone()).is_none() {
                                progress.line(format!(
                                    "{}: deployment {} {}: {}; rolling back",
                                    w.key.name,
                                    d.id,
                                    d.state.as_str(),
                                    d.reason.as_deref().unwrap_or("")
                                ));
                            }
                            let Some(r) = find_deployment(client, &detail, rb).await? else {
                                continue;
                            };
                            if !r.state.is_terminal() {
                                continue;
                            }
                            Some(r)
                        }
                        None => None,
                    };
                    set_waiting(|x| x.retain(|(k, _)| k != &w.key));
                    done.insert(i, report(&detail, Some(d), rollback));
                }
                _ => {
                    // Only the count changed (or nothing): wait until it is met.
                    if s.running == s.desired && s.healthy == s.desired {
                        let mut r = report(&detail, None, None);
                        r.outcome = if w.outcome == DeployOutcome::Unchanged {
                            "UNCHANGED".into()
                        } else {
                            "SCALED".into()
                        };
                        set_waiting(|x| x.retain(|(k, _)| k != &w.key));
                        done.insert(i, r);
                    }
                }
            }
        }
        first = false;
        if done.len() < waits.len() {
            if started.elapsed() > timeout {
                progress.finish();
                bail!(
                    "timed out after {} waiting for the deployment; it goes on in the server: follow it with `slipway status`",
                    humantime::format_duration(timeout)
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    progress.finish();
    let mut reports: Vec<Report> = (0..waits.len()).filter_map(|i| done.remove(&i)).collect();
    // Routed services answer through the ingress.
    let info: serde_json::Value = client.get("/info").await.unwrap_or_default();
    if let Some(base) = info["ingress_url"].as_str() {
        for r in &mut reports {
            if let Some(path) = r.route_path.take() {
                r.addresses = vec![format!("{base}{path}")];
            }
        }
    } else {
        for r in &mut reports {
            r.host_header = None;
        }
    }
    let ok = reports
        .iter()
        .all(|r| matches!(r.outcome.as_str(), "SUCCEEDED" | "UNCHANGED" | "SCALED"));
    if json {
        let mut out = serde_json::json!({ "succeeded": ok, "results": reports });
        if !builds.is_empty() {
            out["builds"] = serde_json::to_value(&builds)?;
        }
        if !warnings.is_empty() {
            out["warnings"] = serde_json::to_value(warnings)?;
        }
        crate::output::print_json(&out)?;
    } else {
        for r in &mut reports {
            print_report(r, started.elapsed());
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn find_deployment(
    client: &Client,
    detail: &ServiceDetail,
    id: &str,
) -> Result<Option<Deployment>> {
    if let Some(d) = detail.deployments.iter().find(|d| d.id == id) {
        return Ok(Some(d.clone()));
    }
    client
        .get_opt::<Deployment>(&format!("/deployments/{id}"))
        .await
}

fn report(detail: &ServiceDetail, d: Option<Deployment>, rollback: Option<Deployment>) -> Report {
    let s = &detail.summary;
    let port = detail.container.as_ref().and_then(|c| c.port);
    let addresses = detail
        .tasks
        .iter()
        .filter(|t| t.desired_running && t.health == TaskHealth::Healthy)
        .filter_map(|t| {
            t.address.as_ref().map(|a| match port {
                Some(p) => format!("http://{a}:{p}"),
                None => a.clone(),
            })
        })
        .collect();
    let failed_tasks = d
        .as_ref()
        .filter(|d| d.state != RolloutState::Succeeded)
        .map(|d| {
            detail
                .tasks
                .iter()
                .filter(|t| t.deployment_id == d.id && t.stopped_reason.is_some())
                .map(|t| FailedTask {
                    task: t.id.clone(),
                    reason: t.stopped_reason.clone().unwrap_or_default(),
                    exit_code: t.exit_code,
                    last_output: t
                        .exit
                        .as_ref()
                        .map(|e| e.last_output.clone())
                        .unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    let killed_after_stop_timeout = d
        .as_ref()
        .map(|d| {
            detail
                .tasks
                .iter()
                .filter(|t| t.deployment_id != d.id && t.stopped_at >= Some(d.created_at))
                .filter(|t| {
                    t.stopped_reason
                        .as_deref()
                        .is_some_and(|r| r.contains(STOP_TIMEOUT_HINT))
                })
                .map(|t| FailedTask {
                    task: t.id.clone(),
                    reason: t.stopped_reason.clone().unwrap_or_default(),
                    exit_code: t.exit_code,
                    last_output: Vec::new(),
                })
                .collect()
        })
        .unwrap_or_default();
    Report {
        service: s.service.clone(),
        outcome: d
            .as_ref()
            .map_or("SUCCEEDED", |d| d.state.as_str())
            .to_owned(),
        reason: d.as_ref().and_then(|d| d.reason.clone()),
        deployment: d,
        rollback,
        revision: s.revision,
        healthy: s.healthy,
        desired: s.desired,
        failed_tasks,
        killed_after_stop_timeout,
        addresses,
        discovery: (s.kind == slipway_core::model::ServiceKind::BackendService)
            .then(|| {
                let k = &s.service;
                port.map(|p| {
                    format!(
                        "http://{}:{p} (or {}.{}.{}.internal)",
                        k.name, k.name, k.env, k.app
                    )
                })
            })
            .flatten(),
        route_path: detail
            .container
            .as_ref()
            .and_then(|c| c.http_route.as_ref())
            .map(|r| r.path.clone()),
        host_header: detail
            .container
            .as_ref()
            .and_then(|c| c.http_route.as_ref())
            .and_then(|r| r.aliases.first())
            .map(|a| match a.strip_prefix("*.") {
                // A wildcard answers any name under it.
                Some(domain) => format!("www.{domain}"),
                None => a.clone(),
            }),
    }
}

/// How many of a failed task's last output lines a deploy's summary shows.
const FAILED_OUTPUT_LINES: usize = 5;

fn print_report(r: &Report, elapsed: Duration) {
    let mark = if matches!(r.outcome.as_str(), "SUCCEEDED" | "UNCHANGED" | "SCALED") {
        "✔"
    } else {
        "✘"
    };
    let name = &r.service.name;
    match &r.deployment {
        Some(d) => {
            println!(
                "{mark} {name}: {} (deployment {}, revision {}) after {}",
                r.outcome,
                d.id,
                d.revision,
                duration_ms(elapsed.as_millis() as i64)
            );
            if d.state == RolloutState::Succeeded {
                let tl = &d.timeline;
                let mut parts = Vec::new();
                if let Some(h) = tl.first_healthy_at {
                    parts.push(format!(
                        "first healthy task after {}",
                        duration_ms(h - d.created_at)
                    ));
                }
                if let Some(ms) = super::status::both_served_ms(d) {
                    parts.push(format!(
                        "old and new versions both served for {}",
                        duration_ms(ms)
                    ));
                }
                if let Some(ms) = super::status::old_stopping_ms(d) {
                    parts.push(format!(
                        "old tasks stopping after deregistration for {}",
                        duration_ms(ms)
                    ));
                }
                if let (Some(g), Some(_)) = (tl.old_gone_at, tl.first_old_stopped_at) {
                    parts.push(format!(
                        "old tasks gone after {}",
                        duration_ms(g - d.created_at)
                    ));
                }
                if !parts.is_empty() {
                    println!("  {}", parts.join("; "));
                }
                for f in &r.killed_after_stop_timeout {
                    println!("  old task {} was {STOP_TIMEOUT_HINT}", f.task);
                }
            } else {
                if let Some(reason) = &r.reason {
                    println!("  reason: {reason}");
                }
                for f in r.failed_tasks.iter().take(5) {
                    println!("  task {}: {}", f.task, f.reason);
                    let skip = f.last_output.len().saturating_sub(FAILED_OUTPUT_LINES);
                    for line in &f.last_output[skip..] {
                        println!("    | {line}");
                    }
                }
                if let Some(f) = r.failed_tasks.first()
                    && !f.last_output.is_empty()
                {
                    println!("  (more with `slipway logs {name} --task {}`)", f.task);
                }
                if r.failed_tasks.len() > 5 {
                    println!("  ... and {} more failed tasks", r.failed_tasks.len() - 5);
                }
                if let Some(rb) = &r.rollback {
                    println!(
                        "  rolled back to revision {} (deployment {} {}); {}/{} tasks healthy",
                        rb.revision,
                        rb.id,
                        rb.state.as_str(),
                        r.healthy,
                        r.desired
                    );
                }
            }
        }
        None => println!(
            "{mark} {name}: {} (revision {}), {}/{} tasks healthy",
            r.outcome, r.revision, r.healthy, r.desired
        ),
    }
    if let Some(d) = &r.discovery {
        println!("  the app's other services reach it at {d}");
    } else if !r.addresses.is_empty() {
        match &r.host_header {
            Some(h) => println!("  answers at: {} (Host: {h})", r.addresses.join(" ")),
            None => println!("  answers at: {}", r.addresses.join(" ")),
        }
    }
}
