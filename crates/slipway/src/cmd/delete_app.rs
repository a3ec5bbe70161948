//! `slipway delete --app NAME [--env NAME]`: deletes every service of an app (or of one of
//! its environments) with their tasks, routes and networks. Deleting what does not exist is
//! not an error.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use slipway_api::types::{DeleteAppResponse, ServiceSummary};
use slipway_core::model::validate_name;

use super::ops::DeleteArgs;
use crate::client::Client;

pub async fn run(a: DeleteArgs, json: bool) -> Result<ExitCode> {
    let Some(app) = a.app.clone() else {
        bail!(
            "name what to delete: slipway delete SERVICE, or slipway delete --app NAME [--env NAME] for a whole app"
        );
    };
    validate_name(&app).map_err(|e| anyhow::anyhow!("--app {app:?}: {e}"))?;
    if let Some(e) = &a.env {
        validate_name(e).map_err(|err| anyhow::anyhow!("--env {e:?}: {err}"))?;
    }
    let what = match &a.env {
        Some(e) => format!("app {app} in environment {e}"),
        None => format!("app {app} (every environment)"),
    };
    let client = Client::from_env()?;
    let mut list = format!("/services?app={app}");
    if let Some(e) = &a.env {
        list.push_str(&format!("&env={e}"));
    }
    let existing: Vec<ServiceSummary> = client.get(&list).await?;
    if !a.yes && !existing.is_empty() {
        if !std::io::stdin().is_terminal() {
            bail!(
                "this deletes {} service(s) of {what}; pass --yes to confirm (nothing was deleted)",
                existing.len()
            );
        }
        let names: Vec<String> = existing
            .iter()
            .map(|s| format!("{}/{}", s.service.env, s.service.name))
            .collect();
        eprint!("delete {what}: {}? [y/N] ", names.join(", "));
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            bail!("not confirmed; nothing was deleted");
        }
    }
    let path = match &a.env {
        Some(e) => format!("/apps/{app}?env={e}"),
        None => format!("/apps/{app}"),
    };
    let first: DeleteAppResponse = client.delete(&path).await?;
    let mut networks = first.networks.clone();
    if !first.services.is_empty() && !a.no_wait {
        let started = Instant::now();
        loop {
            let left: Vec<ServiceSummary> = client.get(&list).await?;
            if left.is_empty() {
                break;
            }
            if started.elapsed() > a.timeout {
                let names: Vec<&str> = left.iter().map(|s| s.service.name.as_str()).collect();
                bail!(
                    "timed out after {} waiting for {} to be deleted (left: {}); it goes on in the server",
                    humantime::format_duration(a.timeout),
                    what,
                    names.join(", ")
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        // The last service's network normally goes with it; this removes any left over.
        let again: DeleteAppResponse = client.delete(&path).await?;
        networks.extend(again.networks);
    }
    let nothing = first.services.is_empty() && networks.is_empty();
    if json {
        crate::output::print_json(&serde_json::json!({
            "app": app,
            "env": a.env,
            "services": first.services,
            "networks": networks,
            "deleted": !a.no_wait,
            "message": if nothing { "nothing to delete".to_owned() } else { first.message.clone() },
        }))?;
    } else if nothing {
        println!("nothing to delete");
    } else {
        for s in &first.services {
            println!(
                "{}/{}: {}",
                s.env,
                s.name,
                if a.no_wait { "deleting" } else { "deleted" }
            );
        }
        for n in &networks {
            println!("network {n}: removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}
