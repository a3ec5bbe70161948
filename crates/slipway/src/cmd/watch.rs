//! `slipway watch`: keeps docker compose services on the newest image of their tag, with
//! health checks, rollback and pruning (the job of seed 000's cron scripts and Watchtower).
//! `slipway watch status` shows what the watcher knows.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use slipway_watch::compose::{ComposeCmd, Project};
use slipway_watch::logfile::RotatingWriter;
use slipway_watch::registry::RegistryClient;
use slipway_watch::state::{self, StateStore};
use slipway_watch::{Config, CycleReport, Outcome, Watcher};
use tracing::{debug, info};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::output;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct WatchArgs {
    #[command(subcommand)]
    cmd: Option<WatchCmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum WatchCmd {
    /// Per watched service: the running digest, the last check and its outcome.
    Status(StatusArgs),
}

#[derive(Debug, Args)]
struct StatusArgs {
    /// Where the watcher keeps its state (default: ~/.local/state/slipway/watch).
    #[arg(long, env = "SLIPWAY_WATCH_STATE_DIR")]
    state_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Time between checks in daemon mode.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Check once and exit: 0 nothing to do or updated, 1 error, 2 rolled back, 3 rollback failed.
    #[arg(long)]
    once: bool,
    /// Stop the daemon after this many check cycles (for tests and benchmarks).
    #[arg(long, conflicts_with = "once")]
    cycles: Option<u64>,
    /// A compose project directory (repeatable; default: the current directory).
    #[arg(long = "project", value_name = "DIR")]
    projects: Vec<PathBuf>,
    /// Compose files of one project, as `docker-compose -f` takes them (repeatable).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    files: Vec<PathBuf>,
    /// A watch list file: `projects: [{dir: DIR | files: [..], name:, services: [..]}]`.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Project name when one project is given (default: as compose derives it).
    #[arg(short = 'p', long = "project-name")]
    project_name: Option<String>,
    /// Watch this service too, without the `slipway.watch=true` label (repeatable).
    #[arg(long = "service", value_name = "NAME")]
    services: Vec<String>,
    /// How long a new version may take to become healthy before it is rolled back.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    health_timeout: Duration,
    /// Without a health check: how long a new container must stay up to count as healthy.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    settle: Duration,
    /// Previous images kept per service for rollback; older ones are pruned.
    #[arg(long, default_value_t = 2)]
    keep: usize,
    /// Where the watcher keeps its state (default: ~/.local/state/slipway/watch).
    #[arg(long, env = "SLIPWAY_WATCH_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Also write JSON log lines to this file, rotated at --log-max-bytes.
    #[arg(long)]
    log_file: Option<PathBuf>,
    /// Size cap of the log file (bytes; K, M, G suffixes); one rotated copy (FILE.1) is kept.
    #[arg(long, default_value = "10M", value_parser = parse_bytes)]
    log_max_bytes: u64,
    /// POST a JSON event here on every update and rollback.
    #[arg(long)]
    webhook: Option<String>,
    /// A registry (`host:port`) Docker treats as insecure (as in daemon.json's
    /// `insecure-registries`): HTTPS without verification, then plain HTTP. Loopback
    /// registries always are; every other registry is HTTPS only, verified.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    insecure_registries: Vec<String>,
    /// Per-registry certificates, Docker's layout: DIR/HOST:PORT/ca.crt is trusted for that
    /// registry (`slipway registry ca` prints Slipway's), client.cert + client.key are sent.
    #[arg(
        long,
        value_name = "DIR",
        env = "SLIPWAY_DOCKER_CERTS_D",
        default_value = slipway_watch::tls::DEFAULT_CERTS_D
    )]
    certs_dir: PathBuf,
    /// The compose command.
    #[arg(long, default_value = "docker-compose")]
    compose_command: String,
    /// Timeout of one registry request.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    registry_timeout: Duration,
}

fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&s[..s.len() - 1], 1024),
        Some('M') => (&s[..s.len() - 1], 1024 * 1024),
        Some('G') => (&s[..s.len() - 1], 1024 * 1024 * 1024),
        _ => (s, 1),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 1048576, 512K, 10M)"))?;
    let v = n.saturating_mul(mult);
    if v < 256 {
        return Err("the log cap must be at least 256 bytes".into());
    }
    Ok(v)
}

pub async fn run(a: WatchArgs, json: bool) -> Result<ExitCode> {
    match a.cmd {
        Some(WatchCmd::Status(s)) => status(s, json),
        None => watch(a.run, json).await,
    }
}

fn init_logs(a: &RunArgs, json: bool) -> Result<()> {
    let filter = EnvFilter::try_from_env("SLIPWAY_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info"))
        // The TLS verifier logs its own error line for a certificate it rejects; the
        // watcher's line for that check says the same with the registry and the fix.
        .add_directive(
            "rustls_platform_verifier=off"
                .parse()
                .expect("a valid directive"),
        );
    let stderr = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .boxed()
    };
    let file = match &a.log_file {
        Some(path) => {
            let w = RotatingWriter::open(path, a.log_max_bytes)
                .with_context(|| format!("{}: cannot open the log file", path.display()))?;
            Some(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_ansi(false)
                    .with_writer(move || w.clone())
                    .boxed(),
            )
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(file)
        .try_init()
        .ok();
    Ok(())
}

/// Services a watch list names, per project.
type Listed = HashMap<String, Vec<String>>;

fn projects(a: &RunArgs) -> Result<(Vec<Project>, Listed)> {
    let one = a.projects.len() + usize::from(!a.files.is_empty()) <= 1;
    if a.project_name.is_some() && !one {
        bail!("--project-name names one project; give one --project DIR or one set of -f files");
    }
    let name = a.project_name.as_deref();
    let mut out = Vec::new();
    for dir in &a.projects {
        out.push(Project::from_dir(dir, name)?);
    }
    if !a.files.is_empty() {
        out.push(Project::from_files(&a.files, name)?);
    }
    let mut listed = HashMap::new();
    if let Some(file) = &a.config {
        for (p, services) in slipway_watch::compose::read_watch_file(file)? {
            listed.insert(p.name.clone(), services);
            out.push(p);
        }
    }
    if out.is_empty() {
        let cwd = std::env::current_dir().context("cannot read the current directory")?;
        out.push(Project::from_dir(&cwd, name).context(
            "no compose project given: pass --project DIR or -f FILE, or run where docker-compose.yml is",
        )?);
    }
    let mut names: Vec<&str> = out.iter().map(|p| p.name.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        bail!(
            "two projects are both named {:?}; name them apart (COMPOSE_PROJECT_NAME in their .env)",
            w[0]
        );
    }
    Ok((out, listed))
}

async fn watch(a: RunArgs, json: bool) -> Result<ExitCode> {
    init_logs(&a, json)?;
    let (projects, project_services) = projects(&a)?;
    let state_dir = a.state_dir.clone().unwrap_or_else(state::default_dir);
    let state_dir = std::path::absolute(&state_dir).unwrap_or(state_dir);
    let store = StateStore::open(&state_dir)?;
    let docker = slipway_runtime::DockerRuntime::connect().await?;
    let registry = RegistryClient::new(a.insecure_registries.clone(), a.registry_timeout)
        .with_certs_dir(&a.certs_dir);
    let cfg = Config {
        projects,
        services: a.services.clone(),
        project_services,
        health_timeout: a.health_timeout,
        settle: a.settle,
        keep: a.keep,
        webhook: a.webhook.clone(),
        compose: ComposeCmd::new(&a.compose_command),
    };
    info!(
        projects = ?cfg.projects.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        state_dir = %state_dir.display(),
        once = a.once,
        interval_ms = a.interval.as_millis() as u64,
        "slipway watch started"
    );
    let watcher = Watcher::new(cfg, docker, registry, store);
    if a.once {
        let report = watcher.cycle().await;
        summarize(&report);
        return Ok(ExitCode::from(report.exit_code()));
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot install the SIGTERM handler")?;
    let mut n = 0u64;
    loop {
        let report = watcher.cycle().await;
        summarize(&report);
        n += 1;
        if a.cycles.is_some_and(|c| n >= c) {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(a.interval) => {}
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    info!(cycles = n, "slipway watch stopped");
    Ok(ExitCode::SUCCESS)
}

fn summarize(r: &CycleReport) {
    let count = |o: Outcome| r.services.iter().filter(|s| s.outcome == o).count();
    let (updated, rolled_back, errors) = (
        count(Outcome::Updated),
        count(Outcome::RolledBack) + count(Outcome::RollbackFailed),
        count(Outcome::Error) + r.errors.len(),
    );
    if updated + rolled_back + errors > 0 {
        info!(
            services = r.services.len(),
            updated,
            rolled_back,
            errors,
            images = r.images_checked,
            registry_requests = r.registry_requests,
            "check cycle done"
        );
    } else {
        debug!(
            services = r.services.len(),
            updated,
            rolled_back,
            errors,
            images = r.images_checked,
            registry_requests = r.registry_requests,
            "check cycle done"
        );
    }
}

fn status(a: StatusArgs, json: bool) -> Result<ExitCode> {
    let dir = a.state_dir.unwrap_or_else(state::default_dir);
    let st = state::read(&dir)?;
    if json {
        let rows: Vec<_> = st.services.values().collect();
        output::print_json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    if st.services.is_empty() {
        println!(
            "no service watched yet (state: {}); run `slipway watch` first",
            dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = output::table(&[
        "SERVICE",
        "IMAGE",
        "RUNNING DIGEST",
        "LAST CHECK",
        "OUTCOME",
        "REASON",
    ]);
    for s in st.services.values() {
        t.add_row(vec![
            format!("{}/{}", s.project, s.service),
            s.image.clone(),
            s.running_digest
                .as_deref()
                .map_or_else(|| "-".into(), output::short_digest),
            s.last_check_ms.map_or_else(|| "-".into(), output::ago),
            s.last_outcome.map_or("-", Outcome::as_str).to_owned(),
            s.last_reason.clone().unwrap_or_default(),
        ]);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}
