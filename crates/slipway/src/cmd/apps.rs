//! `slipway app ls`, `slipway app show APP` and `slipway env ls`: what is deployed, by app
//! and environment, with each service's route and the URLs it answers at.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};
use slipway_app::{AppDetail, AppSummary, EnvSummary};

use crate::client::Client;
use crate::output::{print_json, table};

#[derive(Debug, Subcommand)]
pub enum AppCmd {
    /// The apps: their environments and services.
    Ls,
    /// One app: each environment's services, their tasks, routes and URLs.
    Show(ShowArgs),
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The app (default: the `app:` of ./slipway.yml).
    app: Option<String>,
    /// The manifest that names the app when APP is not given.
    #[arg(short = 'f', long = "file", default_value = "slipway.yml")]
    file: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum EnvCmd {
    /// The environments (of --app, else of ./slipway.yml's app, else of every app).
    Ls(EnvLsArgs),
}

#[derive(Debug, Args)]
pub struct EnvLsArgs {
    /// Only this app's environments.
    #[arg(long)]
    app: Option<String>,
    /// The manifest that names the app when --app is not given (every app without one).
    #[arg(short = 'f', long = "file", default_value = "slipway.yml")]
    file: PathBuf,
}

pub async fn app(cmd: AppCmd, json: bool) -> Result<ExitCode> {
    let client = Client::from_env()?;
    match cmd {
        AppCmd::Ls => {
            let apps: Vec<AppSummary> = client.get("/apps").await?;
            if json {
                print_json(&apps)?;
            } else if apps.is_empty() {
                println!("no app deployed");
            } else {
                let mut t = table(&["APP", "ENVIRONMENTS", "SERVICES"]);
                for a in &apps {
                    t.add_row(vec![
                        a.app.clone(),
                        a.environments.join(", "),
                        a.services.join(", "),
                    ]);
                }
                println!("{t}");
            }
        }
        AppCmd::Show(a) => {
            let name = match a.app {
                Some(n) => n,
                None => super::app_from_manifest(&a.file)?,
            };
            slipway_core::model::validate_name(&name).map_err(|e| anyhow::anyhow!("app: {e}"))?;
            let d: AppDetail = client.get(&format!("/apps/{name}")).await?;
            if json {
                print_json(&d)?;
                return Ok(ExitCode::SUCCESS);
            }
            println!("app {}", d.app);
            for e in &d.environments {
                println!("\nenvironment {}", e.env);
                let mut t = table(&["SERVICE", "TYPE", "TASKS", "REVISION", "ROUTE", "URL"]);
                for s in &e.services {
                    let route = s.route.as_ref().map_or("-".to_owned(), |r| {
                        if r.aliases.is_empty() {
                            r.path.clone()
                        } else {
                            format!("{} {}", r.aliases.join(","), r.path)
                        }
                    });
                    t.add_row(vec![
                        if s.deleting {
                            format!("{} (deleting)", s.name)
                        } else {
                            s.name.clone()
                        },
                        s.kind.as_str().to_owned(),
                        format!("{}/{} healthy", s.healthy, s.desired),
                        s.revision.to_string(),
                        route,
                        if s.urls.is_empty() {
                            "-".to_owned()
                        } else {
                            s.urls.join("\n")
                        },
                    ]);
                }
                println!("{t}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn env(cmd: EnvCmd, json: bool) -> Result<ExitCode> {
    let client = Client::from_env()?;
    let EnvCmd::Ls(a) = cmd;
    let app = match a.app {
        Some(n) => Some(n),
        None if a.file.exists() => Some(super::app_from_manifest(&a.file)?),
        None => None,
    };
    let path = match &app {
        Some(n) => {
            slipway_core::model::validate_name(n).map_err(|e| anyhow::anyhow!("--app: {e}"))?;
            format!("/envs?app={n}")
        }
        None => "/envs".to_owned(),
    };
    let envs: Vec<EnvSummary> = client.get(&path).await?;
    if json {
        print_json(&envs)?;
    } else if envs.is_empty() {
        println!("no environment deployed");
    } else {
        let mut t = table(&["APP", "ENVIRONMENT", "SERVICES", "TASKS"]);
        for e in &envs {
            t.add_row(vec![
                e.app.clone(),
                e.env.clone(),
                e.services.join(", "),
                format!("{}/{} healthy", e.healthy, e.desired),
            ]);
        }
        println!("{t}");
    }
    Ok(ExitCode::SUCCESS)
}
