//! `slipway login`: checks a server and token, then remembers them.

use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::client::{Client, ClientConfig, config_path};

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The server's API URL, e.g. http://127.0.0.1:7780.
    #[arg(long)]
    server: String,
    /// File holding the token (the server writes DATA_DIR/admin.token).
    #[arg(long)]
    token_file: PathBuf,
}

pub async fn run(a: LoginArgs, json: bool) -> Result<ExitCode> {
    let token = std::fs::read_to_string(&a.token_file)
        .with_context(|| format!("cannot read the token file {}", a.token_file.display()))?
        .trim()
        .to_owned();
    if token.is_empty() {
        bail!(
            "{} is empty; point --token-file at DATA_DIR/admin.token",
            a.token_file.display()
        );
    }
    let cfg = ClientConfig {
        server: a.server.trim_end_matches('/').to_owned(),
        token,
    };
    // Check before saving, so a wrong server or token is caught now.
    let client = Client::new(cfg.clone())?;
    let _: Vec<slipway_api::types::ServiceSummary> = client.get("/services").await?;
    let path = config_path().context("cannot locate the config directory (HOME is not set)")?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)?;
        f.write_all(serde_json::to_string_pretty(&cfg)?.as_bytes())?;
    }
    if json {
        println!(
            "{}",
            serde_json::json!({ "server": cfg.server, "config": path })
        );
    } else {
        println!("Logged in to {} (saved in {})", cfg.server, path.display());
    }
    Ok(ExitCode::SUCCESS)
}
