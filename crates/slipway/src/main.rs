//! `slipway`: the command-line interface and the server, in one binary.
//!
//! `slipway server` runs the control plane (API, controller, store); every other verb is a
//! client of its API. Human output by default, `--json` for machines; the exit code is 0
//! only on success, and errors are one line that names the place and the fix.

/// mimalloc instead of glibc's allocator: the ingress allocates and frees small buffers on
/// every request, and glibc spent about 10 % of its CPU in malloc, free and `brk` trimming.
/// Built without transparent huge pages (the `no_thp` feature), which only inflated RSS.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod client;
mod cmd;
mod ingress;
mod limits;
mod lowat;
mod output;
mod server;
mod tls;
mod traces;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Slipway: push code, get healthy containers; never drop a request during a deploy.
#[derive(Debug, Parser)]
#[command(name = "slipway", version, about, propagate_version = true)]
pub struct Cli {
    /// Print machine-readable JSON instead of tables and progress.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the Slipway server (API, controller and state) on this host.
    Server(Box<server::ServerArgs>),
    /// Run the ingress (HTTP load balancer) alone; `slipway server` normally starts it.
    Ingress(ingress::IngressArgs),
    /// Write a first slipway.yml from the Dockerfiles of a source tree (like `copilot init`).
    Init(cmd::init::InitArgs),
    /// Print the JSON Schema of slipway.yml (for editors: `# yaml-language-server: $schema=`).
    Schema,
    /// Remember a server and its token for later commands.
    Login(cmd::login::LoginArgs),
    /// Deploy the services of a manifest and wait for the outcome.
    Deploy(cmd::deploy::DeployArgs),
    /// Show services, or one service in detail with its last deployment's timeline.
    Status(cmd::status::StatusArgs),
    /// List the tasks (containers) of an app or a service.
    Ps(cmd::status::PsArgs),
    /// Show a service's events, newest first.
    Events(cmd::status::EventsArgs),
    /// Print (or follow) the logs of a service's tasks.
    Logs(cmd::ops::LogsArgs),
    /// Roll a service back to its previous successful revision (or --to one).
    Rollback(cmd::ops::RollbackArgs),
    /// Send every request to a canary, linear or blue/green rollout in progress now,
    /// skipping its remaining steps and bakes.
    Promote(cmd::ops::RolloutArgs),
    /// Stop a rollout in progress: requests go back to the stable version at once, then it
    /// is rolled back.
    Abort(cmd::ops::RolloutArgs),
    /// Change a service's desired count.
    Scale(cmd::ops::ScaleArgs),
    /// Replace every task of a service (re-resolving a mutable image tag).
    Restart(cmd::ops::RestartArgs),
    /// Stop a service's tasks and forget it; with --app and no SERVICE, a whole app (or one
    /// of its environments) with its networks.
    Delete(cmd::ops::DeleteArgs),
    /// Run a service's image on this machine's Docker engine in the foreground, with the
    /// manifest's variables; Ctrl-C stops and removes it.
    Run(cmd::run::RunArgs),
    /// Run a command in a running task of a service (`slipway exec web -- CMD ARGS`).
    Exec(cmd::exec::ExecArgs),
    /// Show what `slipway deploy` would change, without changing anything.
    Diff(cmd::diff::DiffArgs),
    /// The built-in registry: credentials for `docker login`.
    Registry {
        #[command(subcommand)]
        cmd: cmd::registry::RegistryCmd,
    },
    /// Repositories of the built-in registry.
    Repo {
        #[command(subcommand)]
        cmd: cmd::registry::RepoCmd,
    },
    /// Keep docker compose services on the newest image of their tag (health-gated, with
    /// rollback); `slipway watch status` shows what it knows.
    Watch(Box<cmd::watch::WatchArgs>),
    /// The apps: `app ls`, `app show APP` (environments, services, routes, URLs).
    App {
        #[command(subcommand)]
        cmd: cmd::apps::AppCmd,
    },
    /// Scheduled Jobs: `job run NAME` (a run now), `job ls` (schedule, next run, history).
    Job {
        #[command(subcommand)]
        cmd: cmd::jobs::JobCmd,
    },
    /// The environments of the apps: `env ls`.
    Env {
        #[command(subcommand)]
        cmd: cmd::apps::EnvCmd,
    },
    /// Secrets injected into services as environment variables (values never printed).
    Secret {
        #[command(subcommand)]
        cmd: cmd::secret::SecretCmd,
    },
    /// Named identities with a role (admin, deployer, reader) and their tokens.
    Token {
        #[command(subcommand)]
        cmd: cmd::token::TokenCmd,
    },
    /// The audit log: every mutating call on every face, who made it and how it ended.
    Audit(cmd::token::AuditArgs),
    /// Access keys of the AWS-compatible API (`aws ecs`/`aws ecr` with --endpoint-url).
    AccessKey {
        #[command(subcommand)]
        cmd: cmd::access_key::AccessKeyCmd,
    },
    /// The hosts of the cluster: join tokens, list, drain, activate, remove.
    Host {
        #[command(subcommand)]
        cmd: cmd::host::HostCmd,
    },
    /// Run this machine's Docker engine as a host of a cluster (connects out to the server).
    Agent(Box<cmd::host::AgentArgs>),
    /// Move tasks of a service to restore its spread over the hosts (after a host joined or
    /// came back), with its rolling rules.
    Rebalance(cmd::host::RebalanceArgs),
}

/// Runs a verb that waits for a deployment; Ctrl-C stops the waiting (not the deployment),
/// says what goes on in the server, and exits with 130 at once.
async fn interruptible(
    verb: impl std::future::Future<Output = anyhow::Result<ExitCode>>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    tokio::select! {
        r = verb => r,
        _ = tokio::signal::ctrl_c() => {
            let code = cmd::deploy::report_interrupt(json);
            // Nothing of this process needs to finish: leave without waiting for it.
            std::process::exit(i32::from(code));
        }
    }
}

fn main() -> ExitCode {
    // reqwest is built with rustls but no default crypto provider: every HTTP client in this
    // process (API client, controller probes) uses ring, as the server's own TLS does.
    let _ = rustls::crypto::ring::default_provider().install_default();
    output::exit_quietly_on_closed_stdout();
    let cli = Cli::parse();
    let json = cli.json;
    // Verbs that need no async runtime.
    let result = match cli.command {
        Command::Ingress(a) => ingress::run(a),
        Command::Init(a) => cmd::init::run(a, json),
        Command::Schema => cmd::schema::run(),
        command => return run_async(command, json),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            output::print_error(&e, json);
            ExitCode::FAILURE
        }
    }
}

fn run_async(command: Command, json: bool) -> ExitCode {
    // The agent's work is a few connections and timers on every host: one thread is enough,
    // and each worker thread costs memory (its stack, the allocator's heap of its own).
    let mut builder = match command {
        Command::Agent(_) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match command {
            Command::Server(a) => server::run(*a).await,
            Command::Agent(a) => cmd::host::agent(*a).await,
            Command::Host { cmd } => cmd::host::run(cmd, json).await,
            Command::Rebalance(a) => cmd::host::rebalance(a, json).await,
            Command::Ingress(_) | Command::Init(_) | Command::Schema => {
                unreachable!("handled before the runtime starts")
            }
            Command::Login(a) => cmd::login::run(a, json).await,
            Command::Deploy(a) => interruptible(cmd::deploy::run(a, json), json).await,
            Command::Status(a) => cmd::status::status(a, json).await,
            Command::Ps(a) => cmd::status::ps(a, json).await,
            Command::Events(a) => cmd::status::events(a, json).await,
            Command::Logs(a) => cmd::ops::logs(a).await,
            Command::Rollback(a) => {
                cmd::deploy::REQUEST_SENT.store(true, std::sync::atomic::Ordering::SeqCst);
                interruptible(cmd::ops::rollback(a, json), json).await
            }
            Command::Promote(a) => {
                cmd::deploy::REQUEST_SENT.store(true, std::sync::atomic::Ordering::SeqCst);
                interruptible(cmd::ops::promote(a, json), json).await
            }
            Command::Abort(a) => {
                cmd::deploy::REQUEST_SENT.store(true, std::sync::atomic::Ordering::SeqCst);
                interruptible(cmd::ops::abort(a, json), json).await
            }
            Command::Scale(a) => {
                cmd::deploy::REQUEST_SENT.store(true, std::sync::atomic::Ordering::SeqCst);
                interruptible(cmd::ops::scale(a, json), json).await
            }
            Command::Restart(a) => {
                cmd::deploy::REQUEST_SENT.store(true, std::sync::atomic::Ordering::SeqCst);
                interruptible(cmd::ops::restart(a, json), json).await
            }
            Command::Delete(a) => cmd::ops::delete(a, json).await,
            Command::Run(a) => cmd::run::run(a, json).await,
            Command::Exec(a) => cmd::exec::run(a, json).await,
            Command::Diff(a) => cmd::diff::run(a, json).await,
            Command::Registry { cmd } => cmd::registry::registry(cmd, json).await,
            Command::Repo { cmd } => cmd::registry::repo(cmd, json).await,
            Command::Watch(a) => cmd::watch::run(*a, json).await,
            Command::AccessKey { cmd } => cmd::access_key::run(cmd, json).await,
            Command::Token { cmd } => cmd::token::run(cmd, json).await,
            Command::Audit(a) => cmd::token::audit(a, json).await,
            Command::Secret { cmd } => cmd::secret::run(cmd, json).await,
            Command::App { cmd } => cmd::apps::app(cmd, json).await,
            Command::Env { cmd } => cmd::apps::env(cmd, json).await,
            Command::Job { cmd } => cmd::jobs::run(cmd, json).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            output::print_error(&e, json);
            ExitCode::FAILURE
        }
    }
}
