//! `slipway secret set|ls|rm`: the secret store. Values are read from stdin or a file, sent
//! once to the server and never printed; services use them through `secrets:` in
//! `slipway.yml` (`VARIABLE: secret-name`).

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use slipway_api::secrets::{MAX_SECRET_BYTES, SecretDeleted, SecretVersion, SetSecret};
use slipway_store::SecretInfo;

use crate::client::Client;
use crate::output::{ago, print_json, table};

#[derive(Debug, Subcommand)]
pub enum SecretCmd {
    /// Set a secret (a new version) from stdin or --file; the value is never printed.
    Set(SetArgs),
    /// List secrets: names and versions, never values.
    Ls,
    /// Delete a secret: new deploys cannot use it (running releases keep their version).
    Rm(RmArgs),
}

#[derive(Debug, Args)]
pub struct SetArgs {
    /// The secret's name, e.g. shop/db-password.
    name: String,
    /// Read the value from this file instead of stdin.
    #[arg(long)]
    file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    name: String,
}

pub async fn run(cmd: SecretCmd, json: bool) -> Result<ExitCode> {
    match cmd {
        SecretCmd::Set(a) => {
            slipway_core::manifest::check_secret_name(&a.name).map_err(anyhow::Error::msg)?;
            let value = read_value(&a)?;
            let client = Client::from_env()?;
            let v: SecretVersion = client
                .put(&path(&a.name), &SetSecret { value })
                .await
                .with_context(|| format!("secret {:?} was not set", a.name))?;
            if json {
                print_json(&v)?;
            } else {
                println!("secret {} set (version {})", v.name, v.version);
            }
        }
        SecretCmd::Ls => {
            let client = Client::from_env()?;
            let all: Vec<SecretInfo> = client.get("/secrets").await?;
            if json {
                print_json(&all)?;
            } else if all.is_empty() {
                println!("no secrets yet; `slipway secret set NAME` stores one");
            } else {
                let mut t = table(&["NAME", "VERSION", "VERSIONS", "UPDATED"]);
                for s in &all {
                    t.add_row(vec![
                        s.name.clone(),
                        s.version.to_string(),
                        s.versions.to_string(),
                        ago(s.updated_at),
                    ]);
                }
                println!("{t}");
            }
        }
        SecretCmd::Rm(a) => {
            slipway_core::manifest::check_secret_name(&a.name).map_err(anyhow::Error::msg)?;
            let client = Client::from_env()?;
            let d: SecretDeleted = client.delete(&path(&a.name)).await?;
            if json {
                print_json(&d)?;
            } else if d.deleted {
                println!("secret {} deleted", d.name);
            } else {
                println!("no secret named {}; nothing to delete", d.name);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn path(name: &str) -> String {
    format!("/secrets/{name}")
}

/// The value: the file's or stdin's bytes, without one trailing newline (what `echo` and
/// editors add).
fn read_value(a: &SetArgs) -> Result<String> {
    let mut buf = Vec::new();
    match &a.file {
        Some(f) => {
            buf = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        }
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprintln!("type the value of {}, then Ctrl-D:", a.name);
            }
            stdin
                .lock()
                .take(MAX_SECRET_BYTES as u64 + 2)
                .read_to_end(&mut buf)
                .context("reading the value from stdin")?;
        }
    }
    if buf.ends_with(b"\n") {
        buf.pop();
        if buf.ends_with(b"\r") {
            buf.pop();
        }
    }
    if buf.is_empty() {
        bail!(
            "the value of {} is empty; pipe it in (printf %s VALUE | slipway secret set {}) or use --file",
            a.name,
            a.name
        );
    }
    if buf.len() > MAX_SECRET_BYTES {
        bail!(
            "the value of {} is larger than {MAX_SECRET_BYTES} bytes",
            a.name
        );
    }
    String::from_utf8(buf).with_context(|| format!("the value of {} is not UTF-8 text", a.name))
}
