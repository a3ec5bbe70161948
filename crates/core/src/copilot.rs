//! AWS Copilot workspaces: the translation of a `copilot/` directory into the same
//! [`Manifest`] a `slipway.yml` produces, and the equivalent `slipway.yml` text.
//!
//! Pure: the CLI reads the workspace's files (path relative to the workspace root, and text)
//! and hands them over. What is read:
//! - `copilot/.workspace`: `application:` is the app's name;
//! - `copilot/<service>/manifest.yml`: one service each (Load Balanced Web Service, Backend
//!   Service, Worker Service without its queue, Scheduled Job);
//! - `copilot/environments/<env>/manifest.yml`: each declares a Slipway environment (its
//!   VPC, certificates and load balancer settings are AWS's);
//! - `copilot/<service>/addons/*`, `copilot/pipelines/*`: CloudFormation and CodePipeline,
//!   reported as not applied.
//!
//! The translation writes `slipway.yml` text (with comments where Slipway's meaning differs)
//! and parses it with [`crate::manifest::parse`], so a workspace means exactly what its
//! `slipway init --from-copilot` output means. Every line written remembers the place in the
//! Copilot file it comes from, so an error found by the manifest's validation is reported at
//! `copilot/<service>/manifest.yml:line:column`.
//!
//! Nothing is silently ignored: a key that only means something on AWS (VPCs, security
//! groups, `exec`, `publish`, `taskdef_overrides`, `observability`, ...) or that Slipway does
//! not apply (autoscaling) gives one [`Warning`] per key with its place. Keys Slipway cannot
//! honour and whose absence would change what runs (`sidecars`, `logging`) are errors.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_saphyr::Location;

use crate::manifest::{self, Manifest, ManifestError};
use crate::model::validate_name;

mod fields;
mod node;
mod service;
mod sidecars;
use node::{Node, Origin, Val, Writer, scalar_text};

/// The workspace marker file.
pub const WORKSPACE_FILE: &str = "copilot/.workspace";

/// One file of the workspace: its path relative to the workspace root (`/` separators) and
/// its text.
#[derive(Debug, Clone)]
pub struct WorkspaceFile {
    pub path: String,
    pub text: String,
}

/// A key that is accepted but not applied (or applied differently), with its place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    pub file: String,
    pub line: u64,
    pub column: u64,
    /// The key as a dotted path from the file's root (`network.vpc.security_groups`).
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: warning: {}: {}",
            self.file, self.line, self.column, self.key, self.message
        )
    }
}

/// An error in a Copilot file, with its place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", error.with_file(file))]
pub struct CopilotError {
    pub file: String,
    pub error: ManifestError,
}

/// A translated workspace.
#[derive(Debug, Clone)]
pub struct Translation {
    /// The app's name (`.workspace`'s `application`).
    pub app: String,
    /// What `slipway.yml` would parse to.
    pub manifest: Manifest,
    /// The equivalent `slipway.yml`, with comments.
    pub yaml: String,
    /// Keys not applied, in file order.
    pub warnings: Vec<Warning>,
    /// The workspace's environments.
    pub environments: Vec<String>,
    places: Places,
}

/// Where each line and each manifest path of the written `slipway.yml` comes from.
#[derive(Debug, Clone)]
struct Places {
    files: Vec<String>,
    lines: Vec<Option<Origin>>,
    paths: Vec<(String, Origin)>,
}

impl Translation {
    /// Where an error about the translated manifest comes from: `(file, line, column)`.
    pub fn origin_of(&self, e: &ManifestError) -> Option<(String, u64, u64)> {
        self.places.origin_of(e)
    }

    /// An error about the translated manifest as one line naming `file:line:column` in the
    /// workspace.
    pub fn render(&self, e: &ManifestError) -> String {
        match self.origin_of(e) {
            Some((f, l, c)) if l > 0 => format!("{f}:{l}:{c}: {}", e.message),
            Some((f, _, _)) => format!("{f}: {}", e.message),
            None => format!("copilot/: {}", e.message),
        }
    }
}

impl Places {
    /// The line of `slipway.yml` the error names, else the manifest path
    /// (`services.api.http`) its message starts with.
    fn origin_of(&self, e: &ManifestError) -> Option<(String, u64, u64)> {
        let by_line = e.line.and_then(|l| {
            let l = usize::try_from(l).ok()?.min(self.lines.len());
            self.lines[..l].iter().rev().find_map(|o| *o)
        });
        let by_path = || {
            let head = e.message.split([':', ' ']).next().unwrap_or("");
            self.paths
                .iter()
                .filter(|(p, _)| head == p || head.starts_with(&format!("{p}.")))
                .max_by_key(|(p, _)| p.len())
                .map(|(_, o)| *o)
        };
        let o = by_line.or_else(by_path)?;
        Some((self.files[o.file].clone(), o.line, o.column))
    }
}

/// The service types Slipway runs, by their Copilot names.
const TYPES: &[&str] = &[
    "Load Balanced Web Service",
    "Backend Service",
    "Worker Service",
    "Scheduled Job",
];

/// Translates a Copilot workspace.
pub fn translate(files: &[WorkspaceFile]) -> Result<Translation, CopilotError> {
    let mut files: Vec<&WorkspaceFile> = files.iter().collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let mut cx = Cx {
        files: files.iter().map(|f| f.path.clone()).collect(),
        warnings: Vec::new(),
        w: Writer::default(),
    };
    let ws = files
        .iter()
        .position(|f| f.path == WORKSPACE_FILE)
        .ok_or_else(|| CopilotError {
            file: WORKSPACE_FILE.into(),
            error: ManifestError::unplaced(
                "not found: a Copilot workspace has copilot/.workspace (written by `copilot app init`) naming its application",
            ),
        })?;
    let app = cx.app_name(ws, &files[ws].text)?;

    let mut services: Vec<(usize, String, Node)> = Vec::new();
    // Each environment, and where it is declared (its manifest, else a service's override).
    let mut envs: BTreeMap<String, (usize, Location)> = BTreeMap::new();
    for (i, f) in files.iter().enumerate() {
        let parts: Vec<&str> = f.path.split('/').collect();
        match parts.as_slice() {
            ["copilot", ".workspace"] => {}
            ["copilot", "environments", env, "manifest.yml"] => {
                let root = cx.parse(i, &f.text)?;
                let (name, at) = cx.environment(i, env, &root)?;
                envs.insert(name, (i, at));
            }
            ["copilot", "environments", ..] => {}
            ["copilot", "pipelines", ..] | ["copilot", "buildspec.yml"] => cx.warn_file(
                i,
                "pipelines",
                "a Copilot pipeline (CodePipeline) is not run by Slipway; run `slipway deploy` from your CI instead",
            ),
            ["copilot", _, "addons", ..] => cx.warn_file(
                i,
                "addons",
                "CloudFormation addons are not applied; create what they describe (tables, buckets, ...) yourself",
            ),
            ["copilot", dir, "manifest.yml"] => {
                let root = cx.parse(i, &f.text)?;
                let name = match root.get("name") {
                    Some((_, n)) => match n.scalar() {
                        Some(s) => s,
                        None => return Err(cx.err(i, n.at, "name: must be the service's name")),
                    },
                    None => (*dir).to_owned(),
                };
                validate_name(&name).map_err(|m| {
                    let at = root.get("name").map_or(root.at, |(_, n)| n.at);
                    cx.err(i, at, format!("name: {m}"))
                })?;
                if let Some((j, _, _)) = services.iter().find(|(_, n, _)| n == &name) {
                    let at = root.get("name").map_or(root.at, |(_, n)| n.at);
                    return Err(cx.err(
                        i,
                        at,
                        format!(
                            "name: the service {name:?} is also declared by {}",
                            cx.files[*j]
                        ),
                    ));
                }
                for (k, _) in root.get("environments").map_or(&[][..], |(_, e)| e.entries()) {
                    envs.entry(k.name.clone()).or_insert((i, k.at));
                }
                services.push((i, name, root));
            }
            _ => {}
        }
    }
    if services.is_empty() {
        return Err(CopilotError {
            file: "copilot/".into(),
            error: ManifestError::unplaced(
                "the workspace declares no service (no copilot/<service>/manifest.yml)",
            ),
        });
    }
    for (env, (i, at)) in &envs {
        validate_name(env).map_err(|m| cx.err(*i, *at, format!("environment {env:?}: {m}")))?;
    }

    cx.w.kv(0, "app", &scalar_text(&app), None);
    cx.w.open(0, "services", None);
    for (i, name, root) in &services {
        cx.service(*i, name, root, &app)?;
    }
    if !envs.is_empty() {
        cx.w.open(0, "environments", None);
        for env in envs.keys() {
            cx.environment_overrides(env, &services, &app)?;
        }
    }

    cx.warnings
        .sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    let mut header = Writer::default();
    header.comment(
        0,
        &format!(
            "Slipway's reading of the Copilot workspace of {app:?} (`slipway init --from-copilot`).\nComments mark where Slipway's meaning differs from Copilot's."
        ),
    );
    if !cx.warnings.is_empty() {
        header.comment(0, "Not applied (AWS-only, or not supported by Slipway):");
        for w in &cx.warnings {
            header.comment(
                0,
                &format!(
                    "  {}:{}:{} {}: {}",
                    w.file, w.line, w.column, w.key, w.message
                ),
            );
        }
    }
    let yaml = format!("{}{}", header.text, cx.w.text);
    let mut lines = header.lines;
    lines.extend(cx.w.lines.iter().copied());
    let places = Places {
        files: cx.files,
        lines,
        paths: std::mem::take(&mut cx.w.paths),
    };
    let manifest = manifest::parse(&yaml).map_err(|e| {
        let (file, line, column) = places.origin_of(&e).unwrap_or(("copilot/".into(), 0, 0));
        CopilotError {
            file,
            error: ManifestError {
                line: (line > 0).then_some(line),
                column: (line > 0).then_some(column),
                message: e.message.clone(),
            },
        }
    })?;
    Ok(Translation {
        app,
        manifest,
        yaml,
        warnings: cx.warnings,
        environments: envs.keys().cloned().collect(),
        places,
    })
}

struct Cx {
    files: Vec<String>,
    warnings: Vec<Warning>,
    w: Writer,
}

fn origin(file: usize, at: Location) -> Option<Origin> {
    Some(Origin {
        file,
        line: at.line(),
        column: at.column(),
    })
}

/// What a service type becomes in `slipway.yml`.
fn kind_of(t: &str) -> Option<&'static str> {
    TYPES.iter().copied().find(|k| *k == t)
}

/// AWS-only keys of a service manifest, and why they do not apply.
fn aws_only(key: &str) -> Option<&'static str> {
    Some(match key {
        "network" => {
            "AWS networking (VPC placement, security groups, Service Connect) does not apply: an app environment's services share a private network and reach each other by name"
        }
        "exec" => "ECS Exec is not needed: `slipway exec` opens a shell in any task",
        "publish" => "SNS topics are not created; publish to a broker you run",
        "subscribe" => "SQS queues are not created: a Worker Service runs without its queue",
        "taskdef_overrides" => "CloudFormation task definition overrides are not applied",
        "observability" => "AWS X-Ray tracing is not set up",
        "nlb" => "a Network Load Balancer is not created; the ingress routes HTTP only",
        "env_file" => "the S3 environment file is not read; move its variables to `variables:`",
        _ => return None,
    })
}

impl Cx {
    fn err(&self, file: usize, at: Location, message: impl Into<String>) -> CopilotError {
        CopilotError {
            file: self.files[file].clone(),
            error: ManifestError::at(at, message),
        }
    }

    fn warn(&mut self, file: usize, at: Location, key: &str, message: impl Into<String>) {
        self.warnings.push(Warning {
            file: self.files[file].clone(),
            line: at.line(),
            column: at.column(),
            key: key.to_owned(),
            message: message.into(),
        });
    }

    fn warn_file(&mut self, file: usize, key: &str, message: &str) {
        self.warnings.push(Warning {
            file: self.files[file].clone(),
            line: 1,
            column: 1,
            key: key.to_owned(),
            message: message.to_owned(),
        });
    }

    /// One warning per leaf key under `node` (a list or scalar is one leaf).
    fn warn_leaves(&mut self, file: usize, path: &str, at: Location, node: &Node, why: &str) {
        if node.is_map() && !node.entries().is_empty() {
            for (k, v) in node.entries() {
                self.warn_leaves(file, &format!("{path}.{}", k.name), k.at, v, why);
            }
        } else {
            self.warn(file, at, path, why);
        }
    }

    fn parse(&self, file: usize, text: &str) -> Result<Node, CopilotError> {
        let root: Node = serde_saphyr::from_str(text).map_err(|e| CopilotError {
            file: self.files[file].clone(),
            error: manifest::yaml_error(e),
        })?;
        if !root.is_map() {
            return Err(self.err(
                file,
                root.at,
                "a Copilot manifest is a mapping of keys (name:, type:, ...)",
            ));
        }
        Ok(root)
    }

    fn app_name(&self, file: usize, text: &str) -> Result<String, CopilotError> {
        let root = self.parse(file, text)?;
        let Some((k, v)) = root.get("application") else {
            return Err(self.err(
                file,
                root.at,
                "application: missing (the workspace's app name, as `copilot app init` writes it)",
            ));
        };
        let name = v
            .scalar()
            .ok_or_else(|| self.err(file, k.at, "application: must be the app's name"))?;
        validate_name(&name).map_err(|m| self.err(file, v.at, format!("application: {m}")))?;
        Ok(name)
    }

    /// An environment manifest: its name; everything else in it is AWS's.
    fn environment(
        &mut self,
        file: usize,
        dir: &str,
        root: &Node,
    ) -> Result<(String, Location), CopilotError> {
        let mut name = dir.to_owned();
        let mut name_at = Location::UNKNOWN;
        for (k, v) in root.entries() {
            match k.name.as_str() {
                "name" => {
                    name = v.scalar().ok_or_else(|| {
                        self.err(file, v.at, "name: must be the environment's name")
                    })?;
                    name_at = v.at;
                    validate_name(&name).map_err(|m| self.err(file, v.at, format!("name: {m}")))?;
                }
                "type" => {
                    if v.scalar().as_deref() != Some("Environment") {
                        return Err(self.err(
                            file,
                            v.at,
                            format!(
                                "type: an environment manifest has type: Environment, got {}",
                                v.flow()
                            ),
                        ));
                    }
                }
                other => {
                    let why = match other {
                        "network" => {
                            "the environment's VPC, subnets and security groups are AWS's: Slipway gives each app environment its own private network"
                        }
                        "http" => {
                            "the environment's load balancer (certificates, ingress rules, access logs, SSL policy) is AWS's: Slipway's ingress and its TLS are set on the server"
                        }
                        "cdn" => "CloudFront is not set up",
                        "observability" => {
                            "Container Insights is not set up: Slipway's status, logs and events cover the tasks"
                        }
                        _ => "not an environment setting Slipway applies",
                    };
                    self.warn_leaves(file, other, k.at, v, why);
                }
            }
        }
        Ok((name, name_at))
    }
}

/// How a key of an environment's override is named in a warning.
fn env_prefix(env: Option<&str>) -> String {
    env.map(|e| format!("environments.{e}."))
        .unwrap_or_default()
}

/// Appends the entries of `extra` to the mapping in `into` (or makes it).
fn merge(into: &mut Option<(node::Key, Node)>, key: node::Key, extra: Node) {
    if extra.entries().is_empty() {
        return;
    }
    match into {
        Some((
            _,
            Node {
                val: Val::Map(m), ..
            },
        )) => m.extend(extra.entries().iter().cloned()),
        Some(_) => {}
        None => *into = Some((key, extra)),
    }
}

/// A Copilot secret reference as a Slipway secret name: an SSM parameter name or ARN, or a
/// Secrets Manager name or ARN, without the leading `/` (`/copilot/shop/test/secrets/db` →
/// `copilot/shop/test/secrets/db`).
pub fn secret_name(copilot: &str) -> String {
    let s = copilot.trim();
    let s = if s.starts_with("arn:") {
        let parts: Vec<&str> = s.splitn(6, ':').collect();
        let resource = parts.get(5).copied().unwrap_or(s);
        if let Some(p) = resource.strip_prefix("parameter") {
            p.to_owned()
        } else if let Some(name) = resource.strip_prefix("secret:") {
            // Secrets Manager appends '-' and six random characters to a secret's ARN.
            let name = name.split(':').next().unwrap_or(name);
            match name.rsplit_once('-') {
                Some((base, tail)) if tail.len() == 6 => base.to_owned(),
                _ => name.to_owned(),
            }
        } else {
            resource.to_owned()
        }
    } else {
        s.to_owned()
    };
    s.trim_start_matches('/').to_owned()
}

#[cfg(test)]
mod tests;
