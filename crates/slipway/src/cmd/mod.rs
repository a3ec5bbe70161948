//! The client verbs.

pub mod access_key;
pub mod apps;
pub mod build;
pub mod copilot;
pub mod delete_app;
pub mod deploy;
pub mod diff;
pub mod exec;
pub mod host;
pub mod init;
pub mod jobs;
pub mod login;
pub mod ops;
pub mod registry;
pub mod run;
pub mod schema;
pub mod secret;
pub mod status;
pub mod token;
pub mod watch;

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::Args;
use slipway_core::manifest::{self, DEFAULT_ENV};
use slipway_core::model::ServiceKey;

/// How a verb names a service: `SERVICE` plus the app (from `--app`, else the manifest) and
/// the environment.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// Manifest that names the app (used when --app is not given).
    #[arg(short = 'f', long = "file", default_value = "slipway.yml")]
    pub file: PathBuf,
    /// App name (default: the `app:` of the manifest).
    #[arg(long)]
    pub app: Option<String>,
    /// Environment.
    #[arg(long, default_value = DEFAULT_ENV)]
    pub env: String,
}

impl Target {
    /// The app name: `--app`, else the manifest's `app:`.
    pub fn app(&self) -> Result<String> {
        if let Some(a) = &self.app {
            return Ok(a.clone());
        }
        app_from_manifest(&self.file)
    }

    pub fn key(&self, service: &str) -> Result<ServiceKey> {
        Ok(ServiceKey::new(self.app()?, self.env.clone(), service))
    }
}

/// Reads and parses a manifest, with errors as `file:line:column: message`.
pub fn read_manifest(path: &Path) -> Result<(String, manifest::Manifest)> {
    let shown = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => bail!(
            "{shown}: cannot read the manifest ({e}); pass its path with -f or run from the app's directory"
        ),
    };
    match manifest::parse(&text) {
        Ok(m) => Ok((shown, m)),
        Err(e) => bail!("{}", e.with_file(&shown)),
    }
}

pub(crate) fn app_from_manifest(path: &Path) -> Result<String> {
    if let Some(root) = copilot::workspace_root(path) {
        return Ok(copilot::read(&root)?.app);
    }
    if !path.exists() {
        bail!(
            "no app given: pass --app NAME, or run where {} is (or point -f at it)",
            path.display()
        );
    }
    Ok(read_manifest(path)?.1.app.value.clone())
}
