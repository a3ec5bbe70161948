//! `slipway`: the command-line interface and the server, in one binary.
//!
//! `slipway server` runs the control plane (API, controller, store); every other verb is a
//! client of its API. Human output by default, `--json` for machines; the exit code is 0
//! only on success, and errors are one line that names the place and the fix.

mod client;
mod cmd;
mod ingress;
mod output;
mod server;
mod tls;

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
    Server(server::ServerArgs),
    /// Run the ingress (HTTP load balancer) alone; `slipway server` normally starts it.
    Ingress(ingress::IngressArgs),
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
    /// Change a service's desired count.
    Scale(cmd::ops::ScaleArgs),
    /// Replace every task of a service (re-resolving a mutable image tag).
    Restart(cmd::ops::RestartArgs),
    /// Stop a service's tasks and forget it.
    Delete(cmd::ops::DeleteArgs),
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
    /// Access keys of the AWS-compatible API (`aws ecs`/`aws ecr` with --endpoint-url).
    AccessKey {
        #[command(subcommand)]
        cmd: cmd::access_key::AccessKeyCmd,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    if let Command::Ingress(a) = cli.command {
        return match ingress::run(a) {
            Ok(code) => code,
            Err(e) => {
                output::print_error(&e, json);
                ExitCode::FAILURE
            }
        };
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Server(a) => server::run(a).await,
            Command::Ingress(_) => unreachable!("handled before the runtime starts"),
            Command::Login(a) => cmd::login::run(a, json).await,
            Command::Deploy(a) => cmd::deploy::run(a, json).await,
            Command::Status(a) => cmd::status::status(a, json).await,
            Command::Ps(a) => cmd::status::ps(a, json).await,
            Command::Events(a) => cmd::status::events(a, json).await,
            Command::Logs(a) => cmd::ops::logs(a).await,
            Command::Rollback(a) => cmd::ops::rollback(a, json).await,
            Command::Scale(a) => cmd::ops::scale(a, json).await,
            Command::Restart(a) => cmd::ops::restart(a, json).await,
            Command::Delete(a) => cmd::ops::delete(a, json).await,
            Command::Registry { cmd } => cmd::registry::registry(cmd, json).await,
            Command::Repo { cmd } => cmd::registry::repo(cmd, json).await,
            Command::Watch(a) => cmd::watch::run(*a, json).await,
            Command::AccessKey { cmd } => cmd::access_key::run(cmd, json).await,
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
