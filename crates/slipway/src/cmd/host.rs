//! `slipway host join-token|ls|drain|activate|rm` (the hosts of the cluster) and
//! `slipway agent` (run on each host).

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use slipway_api::hosts::{JoinTokenRequest, JoinTokenResponse};
use slipway_app::HostStatus;

use crate::client::Client;
use crate::output::{ago, print_json, table};

#[derive(Debug, Subcommand)]
pub enum HostCmd {
    /// A token for `slipway agent --join-token` (works once; printed once).
    JoinToken(JoinTokenArgs),
    /// The hosts: state, resources used and free, tasks.
    Ls,
    /// Move every task off a host (with the services' rolling rules) and give it no new one.
    Drain(HostArg),
    /// Let a drained host take tasks again.
    Activate(HostArg),
    /// Forget a host and revoke its agent's credential (drain it first, or --force).
    Rm(RmArgs),
}

#[derive(Debug, Args)]
pub struct JoinTokenArgs {
    /// How long the token works (default 1h).
    #[arg(long, value_parser = humantime::parse_duration)]
    ttl: Option<std::time::Duration>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// The host's id (`slipway host ls`).
    host: String,
    /// Remove it even though it runs tasks: they are replaced on other hosts at once, and
    /// stopped on this one if its agent is connected.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
pub struct HostArg {
    /// The host's id (`slipway host ls`).
    host: String,
}

pub async fn run(cmd: HostCmd, json: bool) -> Result<ExitCode> {
    let client = Client::from_env()?;
    match cmd {
        HostCmd::JoinToken(a) => {
            let t: JoinTokenResponse = client
                .post(
                    "/hosts/join-token",
                    &JoinTokenRequest {
                        ttl_secs: a.ttl.map(|d| d.as_secs()),
                    },
                )
                .await?;
            if json {
                print_json(&t)?;
            } else {
                println!("{}", t.token);
                eprintln!(
                    "On the new host (valid once, for {}s): slipway agent --server {} --join-token {}",
                    t.expires_in_secs,
                    client.server(),
                    t.token
                );
            }
        }
        HostCmd::Ls => {
            let list: Vec<HostStatus> = client.get("/hosts").await?;
            if json {
                print_json(&list)?;
                return Ok(ExitCode::SUCCESS);
            }
            let mut t = table(&[
                "HOST",
                "NAME",
                "STATE",
                "AGENT",
                "ATTRIBUTES",
                "CPU",
                "MEMORY MiB",
                "TASKS",
                "LAST SEEN",
            ]);
            for h in &list {
                let attrs = h
                    .attributes
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",");
                t.add_row(vec![
                    h.id.clone(),
                    h.name.clone(),
                    h.state.as_str().to_owned(),
                    if h.local {
                        "server".to_owned()
                    } else if h.connected {
                        "connected".to_owned()
                    } else {
                        "away".to_owned()
                    },
                    attrs,
                    format!("{}/{}", h.cpu_used, h.cpu),
                    format!("{}/{}", h.memory_used, h.memory),
                    h.tasks.to_string(),
                    ago(h.last_seen),
                ]);
            }
            println!("{t}");
        }
        HostCmd::Drain(a) => {
            let h: HostStatus = client
                .post_empty(&format!("/hosts/{}/drain", a.host))
                .await?;
            report(&h, json, "draining: its tasks move to other hosts")?;
        }
        HostCmd::Activate(a) => {
            let h: HostStatus = client
                .post_empty(&format!("/hosts/{}/activate", a.host))
                .await?;
            report(&h, json, "active: it takes tasks again")?;
        }
        HostCmd::Rm(a) => {
            let path = if a.force {
                format!("/hosts/{}?force=true", a.host)
            } else {
                format!("/hosts/{}", a.host)
            };
            let v: serde_json::Value = client.delete(&path).await?;
            if json {
                print_json(&v)?;
            } else {
                println!("{}: removed; its agent's credential is revoked", a.host);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn report(h: &HostStatus, json: bool, what: &str) -> Result<()> {
    if json {
        print_json(h)
    } else {
        println!("{}: {what}", h.id);
        Ok(())
    }
}

/// `slipway agent`: joins (once) and runs this host for the cluster.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The server's URL (`http://HOST:7780`); repeat it, or separate URLs with commas, for
    /// the several servers of a cluster (the agent tries them in turn).
    #[arg(long, env = "SLIPWAY_SERVER", required = true, value_delimiter = ',')]
    server: Vec<String>,
    /// A join token from `slipway host join-token` (needed the first time only).
    #[arg(long, env = "SLIPWAY_JOIN_TOKEN")]
    join_token: Option<String>,
    /// Where the host's identity is kept.
    #[arg(long, default_value = "/var/lib/slipway-agent")]
    data_dir: std::path::PathBuf,
    /// The host's name (default: the engine's).
    #[arg(long)]
    name: Option<String>,
    /// Placement attributes (`--attribute zone=a`, repeatable).
    #[arg(long = "attribute", value_name = "NAME=VALUE", value_parser = crate::server::parse_attribute)]
    attributes: Vec<(String, String)>,
    /// The address the ingress reaches this host's tasks at (default: the address this host
    /// reaches the server from).
    #[arg(long, value_name = "IP")]
    advertise_addr: Option<std::net::IpAddr>,
    /// CPU units (1024 a core) to offer to tasks (default: every core of the engine).
    #[arg(long, value_name = "UNITS")]
    cpu: Option<u64>,
    /// Memory in MiB to offer to tasks (default: all of the engine's; less keeps room for
    /// the rest of the host).
    #[arg(long, value_name = "MIB")]
    memory: Option<u64>,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
}

pub async fn agent(a: AgentArgs) -> Result<ExitCode> {
    crate::server::init_logging(a.log_json);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
        tracing::info!("agent stopping; tasks keep running");
        let _ = stop_tx.send(true);
    });
    slipway_agent::agent::run(
        slipway_agent::agent::AgentOptions {
            servers: a.server,
            data_dir: a.data_dir,
            join_token: a.join_token,
            name: a.name,
            attributes: a.attributes.into_iter().collect(),
            address: a.advertise_addr.map(|ip| ip.to_string()),
            cpu: a.cpu,
            memory: a.memory,
        },
        stop_rx,
    )
    .await
    .context("the agent stopped")?;
    Ok(ExitCode::SUCCESS)
}

/// `slipway rebalance SERVICE`.
#[derive(Debug, Args)]
pub struct RebalanceArgs {
    service: String,
    /// Return once the moves are decided instead of waiting for them.
    #[arg(long)]
    no_wait: bool,
    /// Give up waiting after this long (the moves go on in the server).
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
    timeout: std::time::Duration,
    #[command(flatten)]
    target: super::Target,
}

/// Moves tasks of a service to restore its spread (after a host joined or came back), with
/// the rolling rules; waits until the moved tasks are replaced and the service is healthy.
pub async fn rebalance(a: RebalanceArgs, json: bool) -> Result<ExitCode> {
    use slipway_api::types::ServiceDetail;
    let client = Client::from_env()?;
    let key = a.target.key(&a.service)?;
    let path = crate::client::service_path(&key);
    let r: slipway_app::Rebalance = client
        .post(&format!("{path}/rebalance"), &serde_json::json!({}))
        .await?;
    if !json {
        println!("{}: {}", key.name, r.message);
    }
    if a.no_wait || r.moved.is_empty() {
        if json {
            print_json(&r)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let bar = if json || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        indicatif::ProgressBar::hidden()
    } else {
        let b = indicatif::ProgressBar::new(r.moved.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{spinner} moved {pos}/{len} ({elapsed})")
                .expect("template"),
        );
        b.enable_steady_tick(std::time::Duration::from_millis(120));
        b
    };
    let started = std::time::Instant::now();
    loop {
        let d: ServiceDetail = client.get(&path).await?;
        let moving = r
            .moved
            .iter()
            .filter(|(id, _)| {
                d.tasks.iter().any(|t| {
                    &t.id == id && t.last_status != slipway_core::model::TaskStatus::Stopped
                })
            })
            .count();
        bar.set_position((r.moved.len() - moving) as u64);
        if moving == 0 && d.summary.healthy >= d.summary.desired {
            bar.finish_and_clear();
            break;
        }
        if started.elapsed() > a.timeout {
            bar.finish_and_clear();
            anyhow::bail!(
                "timed out after {:?} with {moving} task(s) still to move; the rebalance goes on in the server (`slipway ps {}` shows it)",
                a.timeout,
                key.name
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    if json {
        print_json(&r)?;
    } else {
        println!("{}: rebalanced ({} task(s) moved)", key.name, r.moved.len());
    }
    Ok(ExitCode::SUCCESS)
}
