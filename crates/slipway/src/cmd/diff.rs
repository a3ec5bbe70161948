//! `slipway diff`: what `slipway deploy` would change, without changing anything.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use serde_json::Value;
use slipway_api::types::{DeployRequest, DiffResponse};
use slipway_core::diff::DiffStatus;
use slipway_core::manifest::DEFAULT_ENV;
use slipway_core::model::ServiceSpec;

use crate::client::Client;

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The manifest.
    #[arg(short = 'f', long = "file", default_value = "slipway.yml")]
    file: PathBuf,
    /// Environment to compare (its overrides from `environments:` apply).
    #[arg(long, default_value = DEFAULT_ENV)]
    env: String,
    /// Compare only these services (default: all of the manifest).
    services: Vec<String>,
    /// Exit with 1 when there are changes (and 0 when there are none), like `git diff
    /// --exit-code`.
    #[arg(long)]
    exit_code: bool,
}

/// The specs a deploy of `file` in `env` sends, limited to `only` when not empty.
pub fn compile_specs(
    file: &std::path::Path,
    env: &str,
    only: &[String],
) -> Result<Vec<ServiceSpec>> {
    let source = super::copilot::Source::open(file, env, false)?;
    let shown = &source.shown;
    let mut specs = source
        .manifest
        .compile(env)
        .map_err(|e| anyhow!("{}", source.render(&e)))?;
    for s in only {
        if !specs.iter().any(|x| &x.key.name == s) {
            let known: Vec<&str> = specs.iter().map(|x| x.key.name.as_str()).collect();
            bail!(
                "{shown}: no service named {s:?} (services: {})",
                known.join(", ")
            );
        }
    }
    if !only.is_empty() {
        specs.retain(|x| only.contains(&x.key.name));
    }
    Ok(specs)
}

pub async fn run(a: DiffArgs, json: bool) -> Result<ExitCode> {
    let mut specs = compile_specs(&a.file, &a.env, &a.services)?;
    let client = Client::from_env()?;
    // Services built from source: their version is known without building. One the
    // registry has is compared like any image; one it lacks would be built by a deploy.
    let super::copilot::Source {
        manifest,
        dir: manifest_dir,
        ..
    } = super::copilot::Source::open(&a.file, &a.env, false)?;
    let mut to_build: Vec<ToBuild> = Vec::new();
    // Asked for once, and only when a service is built from source.
    let creds = tokio::sync::OnceCell::new();
    for spec in &mut specs {
        let Some(b) = manifest.build_in(&a.env, &spec.key.name) else {
            continue;
        };
        let creds = creds
            .get_or_try_init(|| super::build::registry_creds(&client))
            .await?;
        let found = super::build::locate(
            &client,
            creds,
            &manifest_dir,
            &spec.key.app,
            &spec.key.name,
            &b,
            None,
        )
        .await?;
        match found.digest {
            Some(d) => {
                spec.container.image = found.image;
                spec.container.image_digest = Some(d);
            }
            None => {
                let exists = client
                    .get_opt::<Value>(&crate::client::service_path(&spec.key))
                    .await?
                    .is_some_and(|d| !d["summary"]["deleting"].as_bool().unwrap_or(false));
                to_build.push(ToBuild {
                    service: spec.key.name.clone(),
                    image: found.image,
                    new: !exists,
                });
            }
        }
    }
    specs.retain(|s| !to_build.iter().any(|b| b.service == s.key.name));
    if specs.is_empty() {
        return print_builds_only(&to_build, json, a.exit_code);
    }
    let resp: DiffResponse = client
        .post(
            "/diff",
            &DeployRequest {
                services: specs,
                force: false,
                expect: Default::default(),
            },
        )
        .await
        .context("cannot compare with the server")?;
    let changed = !to_build.is_empty()
        || resp
            .results
            .iter()
            .any(|r| r.diff.status != DiffStatus::Unchanged);
    if json {
        crate::output::print_json(&serde_json::json!({
            "changed": changed,
            "results": resp.results,
            "builds": builds_json(&to_build),
        }))?;
    } else if !changed {
        println!("no changes");
    } else {
        print_new_versions(&to_build);
        for r in &resp.results {
            let d = &r.diff;
            let name = &d.service.name;
            match d.status {
                DiffStatus::Unchanged => {
                    println!("= {name}: no changes");
                    continue;
                }
                DiffStatus::New => println!("+ {name}: new service"),
                DiffStatus::Changed if d.new_deployment => {
                    println!("~ {name}: a deploy starts a new deployment")
                }
                DiffStatus::Changed => println!("~ {name}: changes apply without a new deployment"),
            }
            if let Some(n) = &r.note {
                println!("    ({n})");
            }
            for c in &d.changes {
                match (&c.old, &c.new) {
                    (None, Some(n)) => println!("    + {}: {}", c.path, show(n)),
                    (Some(o), None) => println!("    - {}: {}", c.path, show(o)),
                    (Some(o), Some(n)) => {
                        println!("    ~ {}: {} → {}", c.path, show(o), show(n))
                    }
                    (None, None) => {}
                }
            }
        }
    }
    Ok(if a.exit_code && changed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// A service built from source whose version the registry does not have yet.
struct ToBuild {
    service: String,
    image: String,
    /// The service does not exist yet.
    new: bool,
}

fn builds_json(to_build: &[ToBuild]) -> Value {
    Value::Array(
        to_build
            .iter()
            .map(|b| serde_json::json!({"service": b.service, "image": b.image, "new": b.new}))
            .collect(),
    )
}

/// Services a deploy would build (their new version is not in the registry yet): `+` for a
/// service that does not exist yet, `~` for a new version of one that does.
fn print_new_versions(to_build: &[ToBuild]) {
    for b in to_build {
        if b.new {
            println!(
                "+ {}: new service; a deploy builds and pushes {} and starts its first deployment",
                b.service, b.image
            );
        } else {
            println!(
                "~ {}: a deploy builds and pushes a new version, {}, and starts a new deployment",
                b.service, b.image
            );
        }
    }
}

fn print_builds_only(to_build: &[ToBuild], json: bool, exit_code: bool) -> Result<ExitCode> {
    if json {
        crate::output::print_json(&serde_json::json!({
            "changed": true,
            "results": [],
            "builds": builds_json(to_build),
        }))?;
    } else {
        print_new_versions(to_build);
    }
    Ok(if exit_code {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
