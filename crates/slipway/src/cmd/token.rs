//! `slipway token create|ls|revoke` (named identities with a role) and `slipway audit` (the
//! record of every mutating call).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Subcommand};
use slipway_api::identities::{CreateToken, TokenCreated, TokenInfo};
use slipway_store::AuditEntry;

use crate::client::Client;
use crate::output::{ago, print_json, table};

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create an identity with a role; its token is printed once.
    Create(CreateArgs),
    /// List identities (never their tokens).
    Ls,
    /// Revoke an identity: its token, its access keys and its registry passwords stop
    /// working at once.
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The identity's name (who or what uses it: `ci-shop`, `alice`).
    name: String,
    /// `admin` (everything), `deployer` (deploy, scale, rollback, restart, run, push and
    /// pull images; no secrets' values, hosts or credentials) or `reader` (read only).
    #[arg(long, value_parser = ["admin", "deployer", "reader"])]
    role: String,
    /// Limit changes to this app (repeatable; default every app).
    #[arg(long = "app", value_name = "APP")]
    apps: Vec<String>,
    /// Limit changes to this environment (repeatable; default every environment).
    #[arg(long = "env", value_name = "ENV")]
    envs: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The identity's name.
    name: String,
}

pub async fn run(cmd: TokenCmd, json: bool) -> Result<ExitCode> {
    let client = Client::from_env()?;
    match cmd {
        TokenCmd::Create(a) => {
            let t: TokenCreated = client
                .post(
                    "/tokens",
                    &CreateToken {
                        name: a.name,
                        role: a.role,
                        apps: a.apps,
                        envs: a.envs,
                    },
                )
                .await?;
            if json {
                print_json(&t)?;
            } else {
                println!("{}", t.token);
                eprintln!(
                    "identity {} ({}{}): the token is shown only now; use it as SLIPWAY_TOKEN",
                    t.info.name,
                    t.info.role,
                    scope(&t.info)
                );
            }
        }
        TokenCmd::Ls => {
            let list: Vec<TokenInfo> = client.get("/tokens").await?;
            if json {
                print_json(&list)?;
            } else if list.is_empty() {
                println!(
                    "no identities yet besides admin; `slipway token create NAME --role R` makes one"
                );
            } else {
                let mut t = table(&["NAME", "ROLE", "SCOPE", "CREATED", "STATUS"]);
                for i in &list {
                    t.add_row(vec![
                        i.name.clone(),
                        i.role.to_string(),
                        match scope(i).strip_prefix(", ") {
                            Some(s) => s.to_owned(),
                            None => "everything".into(),
                        },
                        ago(i.created_at),
                        match i.revoked_at {
                            Some(at) => format!("revoked {}", ago(at)),
                            None => "active".into(),
                        },
                    ]);
                }
                println!("{t}");
            }
        }
        TokenCmd::Revoke(a) => {
            let i: TokenInfo = client.delete(&format!("/tokens/{}", a.name)).await?;
            if json {
                print_json(&i)?;
            } else {
                println!("revoked identity {} (its access keys too)", i.name);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn scope(i: &TokenInfo) -> String {
    let mut s = String::new();
    if !i.apps.is_empty() {
        s.push_str(&format!(", app {}", i.apps.join(",")));
    }
    if !i.envs.is_empty() {
        s.push_str(&format!(", env {}", i.envs.join(",")));
    }
    s
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only entries newer than this (`10m`, `2h`, `7d`).
    #[arg(long, value_parser = humantime::parse_duration)]
    since: Option<Duration>,
    /// Only this identity's entries.
    #[arg(long)]
    identity: Option<String>,
}

/// `slipway audit`: every page of the log, oldest first.
pub async fn audit(a: AuditArgs, json: bool) -> Result<ExitCode> {
    let client = Client::from_env()?;
    let since = a.since.map_or(0, |d| {
        slipway_store::now_ms().saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    });
    let mut all: Vec<AuditEntry> = Vec::new();
    let mut after = 0i64;
    loop {
        let mut path = format!("/audit?since={since}&after={after}");
        if let Some(i) = &a.identity {
            let encoded: String = i
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-._".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            path.push_str(&format!("&identity={encoded}"));
        }
        let page: Vec<AuditEntry> = client.get(&path).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        all.extend(page);
    }
    if json {
        print_json(&all)?;
    } else if all.is_empty() {
        println!("no audit entries match");
    } else {
        let mut t = table(&[
            "WHEN",
            "IDENTITY",
            "SOURCE",
            "FACE",
            "OPERATION",
            "TARGET",
            "OUTCOME",
        ]);
        for e in &all {
            t.add_row(vec![
                ago(e.at),
                e.identity.clone(),
                e.source.clone(),
                e.face.clone(),
                e.operation.clone(),
                e.target.clone(),
                e.outcome.clone(),
            ]);
        }
        println!("{t}");
    }
    Ok(ExitCode::SUCCESS)
}
