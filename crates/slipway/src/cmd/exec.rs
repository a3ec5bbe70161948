//! `slipway exec SERVICE -- CMD [ARGS...]`: runs a command in one running task of a service,
//! through the server, and exits with the command's exit code.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;
use slipway_api::types::{ExecRequest, ExecResponse};

use super::Target;
use crate::client::{Client, service_path};

#[derive(Debug, Args)]
pub struct ExecArgs {
    service: String,
    /// Run it in this task (default: the oldest healthy one; `slipway ps` lists them).
    #[arg(long)]
    task: Option<String>,
    #[command(flatten)]
    target: Target,
    /// The command and its arguments, after `--` (no shell is involved).
    #[arg(last = true, required = true, value_name = "CMD")]
    cmd: Vec<String>,
}

pub async fn run(a: ExecArgs, json: bool) -> Result<ExitCode> {
    if a.cmd.first().is_none_or(|c| c.trim().is_empty()) {
        bail!("no command given: pass it after --, e.g. slipway exec web -- /hello check");
    }
    let client = Client::from_env()?;
    let key = a.target.key(&a.service)?;
    let r: ExecResponse = client
        .post(
            &format!("{}/exec", service_path(&key)),
            &ExecRequest {
                cmd: a.cmd.clone(),
                task: a.task.clone(),
            },
        )
        .await?;
    if json {
        crate::output::print_json(&r)?;
    } else {
        let mut out = std::io::stdout().lock();
        out.write_all(r.output.as_bytes())?;
        out.flush()?;
        if r.truncated {
            eprintln!("(output cut at 1 MiB)");
        }
    }
    // The command's own exit code; a command that did not report one counts as failed.
    let code = r.exit_code.unwrap_or(1);
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}
