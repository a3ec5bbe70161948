//! `slipway init`: writes a first `slipway.yml` from the Dockerfiles of a source tree, the way
//! `copilot init` starts a Copilot app.
//!
//! Each Dockerfile found (at most [`MAX_DEPTH`] directories down) becomes a service named after
//! its directory (the root Dockerfile's service after the app). The app name, each service's
//! type, its port and its health-check path are asked on the terminal, or taken from defaults
//! with `--yes`; the written manifest is parsed and compiled before it is written, so it
//! always deploys as is. The health-check path defaults to `/healthz` when the service
//! answers it on its port here, or its source mentions it; otherwise to none (a running
//! container counts as healthy), never to a path nobody checked.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;
use slipway_core::manifest::{self, DEFAULT_ENV};
use slipway_core::model::{ServiceKind, validate_name};

mod health;
pub use health::{HEALTH_PATH, default_healthcheck};

/// How many directories below DIR are searched for Dockerfiles.
pub const MAX_DEPTH: usize = 3;
/// Directories never searched (besides hidden ones).
const SKIP_DIRS: &[&str] = &["target", "node_modules"];
/// Service names that mark the app's entry point: with several Dockerfiles, the first of these
/// present is the Load Balanced Web Service.
const WEB_NAMES: &[&str] = &["api", "gateway", "web", "frontend", "app"];
/// The port assumed when a Dockerfile has no `EXPOSE`.
pub const DEFAULT_PORT: u16 = 8080;
const MANIFEST: &str = "slipway.yml";

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The app's source directory; slipway.yml is written there.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Take the defaults without asking (needed when stdin is not a terminal).
    #[arg(short = 'y', long)]
    yes: bool,
    /// App name (default: the directory's name).
    #[arg(long)]
    app: Option<String>,
    /// A service's type, and optionally its Dockerfile (relative to DIR); TYPE is web, backend,
    /// worker or Copilot's name. Repeatable.
    #[arg(long = "service", value_name = "NAME=TYPE[:DOCKERFILE]")]
    services: Vec<String>,
    /// Overwrite an existing slipway.yml.
    #[arg(long)]
    force: bool,
    /// Translate the AWS Copilot workspace in DIR (`copilot/`) instead: its services,
    /// environments and overrides, with comments where Slipway's meaning differs and the
    /// keys it does not apply listed (as warnings on stderr, too).
    #[arg(long, conflicts_with_all = ["app", "services"])]
    from_copilot: bool,
}

/// `slipway init --from-copilot`: writes the workspace's translation as slipway.yml.
fn from_copilot(dir: &Path, target: &Path, json: bool) -> Result<ExitCode> {
    if !dir.join("copilot").is_dir() {
        bail!(
            "{}: no Copilot workspace here (no copilot/ directory); run slipway init --from-copilot in the directory that holds copilot/",
            dir.display()
        );
    }
    let root = if dir == Path::new("") {
        Path::new(".")
    } else {
        dir
    };
    let t = super::copilot::read(root)?;
    super::copilot::print_warnings(root, &t);
    fs::write(target, &t.yaml).with_context(|| format!("writing {}", target.display()))?;
    let services: Vec<&str> = t.manifest.services.keys().map(String::as_str).collect();
    if json {
        crate::output::print_json(&serde_json::json!({
            "file": target.display().to_string(),
            "app": t.app,
            "services": services,
            "environments": t.environments,
            "warnings": super::copilot::warnings_json(root, &t),
        }))?;
    } else {
        println!(
            "wrote {} from the Copilot workspace: app {}, services {}{}; {} key(s) not applied (listed at its top). Deploy it with `slipway deploy -f {}`.",
            target.display(),
            t.app,
            services.join(", "),
            if t.environments.is_empty() {
                String::new()
            } else {
                format!(", environments {}", t.environments.join(", "))
            },
            t.warnings.len(),
            target.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A Dockerfile found under DIR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Relative to DIR, with `/` separators.
    pub path: String,
    /// The first `EXPOSE`d port, if any.
    pub port: Option<u16>,
}

/// One service of the manifest to write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Planned {
    pub name: String,
    #[serde(rename = "type", serialize_with = "kind_name")]
    pub kind: ServiceKind,
    pub port: u16,
    /// `image.build` as written: the Dockerfile's directory, or the Dockerfile's path when it
    /// is not named plainly `Dockerfile`.
    pub build: String,
    /// `http.healthcheck`: the path probed before the service gets traffic; none for a
    /// Worker Service.
    pub healthcheck: Option<String>,
}

fn kind_name<S: serde::Serializer>(k: &ServiceKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(k.as_str())
}

#[derive(Debug, Serialize)]
struct Summary<'a> {
    file: String,
    app: &'a str,
    services: &'a [Planned],
    /// Dockerfiles found but not used (variants of a directory's main Dockerfile).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    skipped: Vec<String>,
}

/// What `--service NAME=TYPE[:DOCKERFILE]` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ServiceFlag {
    name: String,
    kind: ServiceKind,
    dockerfile: Option<String>,
}

pub fn run(a: InitArgs, json: bool) -> Result<ExitCode> {
    let dir = &a.dir;
    if !dir.is_dir() {
        bail!(
            "{}: not a directory; pass the app's source directory (default: the current one)",
            dir.display()
        );
    }
    let target = dir.join(MANIFEST);
    if target.exists() && !a.force {
        bail!(
            "{} already exists; edit it, or pass --force to overwrite it",
            target.display()
        );
    }
    if a.from_copilot {
        return from_copilot(dir, &target, json);
    }
    let interactive = !a.yes;
    if interactive && !io::stdin().is_terminal() {
        bail!(
            "stdin is not a terminal, so slipway init cannot ask its questions; pass --yes to take the defaults (and --app/--service to change them)"
        );
    }
    let flags = a
        .services
        .iter()
        .map(|s| parse_service_flag(s))
        .collect::<Result<Vec<_>>>()?;

    let (found, skipped) = find_dockerfiles(dir)?;
    if found.is_empty() && flags.iter().all(|f| f.dockerfile.is_none()) {
        bail!(
            "no Dockerfile found in {} (searched {MAX_DEPTH} directories deep, skipping hidden directories, target and node_modules); add a Dockerfile for each service (or run slipway init in the app's source directory), or name one with --service NAME=TYPE:path/to/Dockerfile",
            dir.display()
        );
    }

    let mut prompt = interactive.then(|| Prompt::new(io::stdin().lock()));
    let default_app = a
        .app
        .clone()
        .unwrap_or_else(|| normalise_name(&dir_name(dir), "app"));
    let app = match (&a.app, prompt.as_mut()) {
        (None, Some(p)) => p.ask_name("App name", &default_app)?,
        _ => default_app,
    };
    validate_name(&app).map_err(|e| anyhow::anyhow!("app: {e}"))?;

    let mut named = name_services(&app, &found);
    for f in &flags {
        match (&f.dockerfile, named.iter().position(|(n, _)| *n == f.name)) {
            (Some(df), pos) => {
                let path = dir.join(df);
                let text = fs::read_to_string(&path).with_context(|| {
                    format!(
                        "--service {}: cannot read {} (the Dockerfile is relative to {})",
                        f.name,
                        path.display(),
                        dir.display()
                    )
                })?;
                let df = df.trim_start_matches("./").to_owned();
                let entry = Found {
                    path: df,
                    port: exposed_port(&text),
                };
                match pos {
                    Some(i) => named[i].1 = entry,
                    None => named.push((f.name.clone(), entry)),
                }
            }
            (None, Some(_)) => {}
            (None, None) => {
                let known: Vec<&str> = named.iter().map(|(n, _)| n.as_str()).collect();
                bail!(
                    "--service {}: no Dockerfile was found for a service of that name (found: {}); name its Dockerfile: --service {}=TYPE:path/to/Dockerfile",
                    f.name,
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    },
                    f.name
                );
            }
        }
    }
    named.sort_by(|a, b| a.0.cmp(&b.0));

    let names: Vec<&str> = named.iter().map(|(n, _)| n.as_str()).collect();
    let root = named
        .iter()
        .find(|(_, f)| is_root(&f.path))
        .map(|(n, _)| n.as_str());
    let mut kinds = default_kinds(&names, root);
    for f in &flags {
        if let Some(i) = names.iter().position(|n| *n == f.name) {
            kinds[i] = f.kind;
        }
    }

    if let Some(p) = prompt.as_mut() {
        p.say(&format!(
            "Found {} Dockerfile{} in {}:",
            named.len(),
            if named.len() == 1 { "" } else { "s" },
            dir.display()
        ))?;
        for (name, f) in &named {
            p.say(&format!("  {name:<16} {}", f.path))?;
        }
    }
    let mut planned = Vec::new();
    for (i, (name, f)) in named.iter().enumerate() {
        let mut kind = kinds[i];
        let mut port = f.port.unwrap_or(DEFAULT_PORT);
        let build = build_field(&f.path);
        let mut healthcheck = None;
        if let Some(p) = prompt.as_mut() {
            p.say(&format!("\nService {name} ({}):", f.path))?;
            if !flags.iter().any(|fl| fl.name == *name) {
                kind = p.ask_kind(kind)?;
            }
            port = p.ask_port(port)?;
            if kind != ServiceKind::WorkerService {
                let default = default_healthcheck(dir, &build, port);
                healthcheck = p.ask_healthcheck(default.as_deref())?;
            }
        } else if kind != ServiceKind::WorkerService {
            healthcheck = default_healthcheck(dir, &build, port);
        }
        planned.push(Planned {
            name: name.clone(),
            kind,
            port,
            build,
            healthcheck,
        });
    }

    let text = render(&app, &planned);
    // What is written must deploy as is: parse and compile it first.
    let m = manifest::parse(&text)
        .and_then(|m| m.compile(DEFAULT_ENV).map(|_| m))
        .map_err(|e| anyhow::anyhow!("internal error: the manifest slipway init made does not parse ({}); please report it", e.with_file(MANIFEST)))?;
    debug_assert_eq!(m.services.len(), planned.len());
    fs::write(&target, &text).with_context(|| format!("cannot write {}", target.display()))?;

    let shown = target.display().to_string();
    if json {
        crate::output::print_json(&Summary {
            file: shown,
            app: &app,
            services: &planned,
            skipped,
        })?;
    } else {
        println!("Wrote {shown} for app {app}:");
        let width = planned.iter().map(|s| s.name.len()).max().unwrap_or(0);
        for s in &planned {
            println!(
                "  {:<width$}  {:<26} port {:<5}  build {}  health check {}",
                s.name,
                s.kind.as_str(),
                s.port,
                s.build,
                s.healthcheck.as_deref().unwrap_or("none")
            );
        }
        if !skipped.is_empty() {
            println!(
                "Not used (variants of a directory's Dockerfile): {}",
                skipped.join(", ")
            );
        }
        let cd = if dir == Path::new(".") {
            String::new()
        } else {
            format!("cd {} && ", dir.display())
        };
        println!("Next: review {shown}, then run: {cd}slipway deploy");
    }
    Ok(ExitCode::SUCCESS)
}

/// The last component of a directory's path (of its absolute form, for `.`).
fn dir_name(dir: &Path) -> String {
    let abs = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    abs.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Turns any text into a name the manifest accepts: lowercase letters, digits and `-`,
/// starting with a letter, at most 40 characters. `fallback` is used when nothing is left.
pub fn normalise_name(raw: &str, fallback: &str) -> String {
    let mut out = String::new();
    for c in raw.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    let mut out = out.trim_matches('-').to_owned();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out = format!("{fallback}-{out}");
    }
    out.truncate(40);
    let out = out.trim_end_matches('-').to_owned();
    if out.is_empty() {
        fallback.to_owned()
    } else {
        out
    }
}

/// Whether a file name is a Dockerfile: `Dockerfile`, `Dockerfile.*` or `*.Dockerfile`
/// (any case), but not a `.dockerignore` beside one.
pub fn is_dockerfile(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    if n.ends_with(".dockerignore") {
        return false;
    }
    n == "dockerfile"
        || n.starts_with("dockerfile.")
        || (n.ends_with(".dockerfile") && n.len() > 11)
}

/// How a Dockerfile ranks against others of the same directory (lower wins): `Dockerfile`,
/// then production variants, then any other variant (`.dev`, `.test`, ...).
fn rank(file: &str) -> u8 {
    let n = file.to_ascii_lowercase();
    match n.strip_prefix("dockerfile") {
        Some("") => 0,
        Some(".prod" | ".production" | ".release") => 1,
        _ => 2,
    }
}

/// Finds the Dockerfiles under `dir` (at most [`MAX_DEPTH`] directories down, skipping hidden
/// directories, `target` and `node_modules`). Of several `Dockerfile`/`Dockerfile.*` in one
/// directory only the best ranked is kept; the others are returned second. `X.Dockerfile`
/// files are each their own service. Paths are relative to `dir`, sorted.
pub fn find_dockerfiles(dir: &Path) -> Result<(Vec<Found>, Vec<String>)> {
    let mut files = Vec::new();
    walk(dir, "", 0, &mut files)
        .with_context(|| format!("cannot search {} for Dockerfiles", dir.display()))?;
    files.sort();
    // Per directory, the plain/variant Dockerfiles compete; `X.Dockerfile` do not.
    let mut best: BTreeMap<String, (u8, String)> = BTreeMap::new();
    let mut kept = Vec::new();
    let mut skipped = Vec::new();
    for rel in &files {
        let (parent, file) = rel.rsplit_once('/').unwrap_or(("", rel));
        if file.to_ascii_lowercase().starts_with("dockerfile") {
            let r = rank(file);
            match best.get(parent) {
                Some((br, _)) if *br <= r => skipped.push(rel.clone()),
                Some((_, bpath)) => {
                    skipped.push(bpath.clone());
                    best.insert(parent.to_owned(), (r, rel.clone()));
                }
                None => {
                    best.insert(parent.to_owned(), (r, rel.clone()));
                }
            }
        } else {
            kept.push(rel.clone());
        }
    }
    kept.extend(best.into_values().map(|(_, p)| p));
    kept.sort();
    skipped.sort();
    let mut found = Vec::new();
    for rel in kept {
        let text = fs::read_to_string(dir.join(&rel)).unwrap_or_default();
        found.push(Found {
            port: exposed_port(&text),
            path: rel,
        });
    }
    Ok((found, skipped))
}

fn walk(dir: &Path, rel: &str, depth: usize, out: &mut Vec<String>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let ft = entry.file_type()?;
        let path = entry.path();
        let child = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        if ft.is_dir() {
            if depth < MAX_DEPTH && !name.starts_with('.') && !SKIP_DIRS.contains(&name.as_str()) {
                walk(&path, &child, depth + 1, out)?;
            }
        } else if (ft.is_file() || (ft.is_symlink() && path.is_file())) && is_dockerfile(&name) {
            out.push(child);
        }
    }
    Ok(())
}

/// Names the services: a `X.Dockerfile` after X, any other after its directory, the root
/// Dockerfile after the app. Clashes get `-2`, `-3`, ...
pub fn name_services(app: &str, found: &[Found]) -> Vec<(String, Found)> {
    let mut taken = BTreeSet::new();
    let mut out = Vec::new();
    for f in found {
        let (parent, file) = f.path.rsplit_once('/').unwrap_or(("", &f.path));
        let lower = file.to_ascii_lowercase();
        let base = if lower.ends_with(".dockerfile") && !lower.starts_with("dockerfile") {
            normalise_name(&file[..file.len() - ".dockerfile".len()], "svc")
        } else if parent.is_empty() {
            app.to_owned()
        } else {
            normalise_name(parent.rsplit('/').next().unwrap_or(parent), "svc")
        };
        let mut name = base.clone();
        let mut n = 2;
        while taken.contains(&name) {
            let suffix = format!("-{n}");
            let mut b = base.clone();
            b.truncate(40 - suffix.len());
            name = format!("{}{suffix}", b.trim_end_matches('-'));
            n += 1;
        }
        taken.insert(name.clone());
        out.push((name, f.clone()));
    }
    out
}

/// The types `--yes` gives: one service is a Load Balanced Web Service; of several, the one
/// named like an entry point ([`WEB_NAMES`], in that order), else the root Dockerfile's, else
/// the first; the others are Backend Services.
pub fn default_kinds(names: &[&str], root: Option<&str>) -> Vec<ServiceKind> {
    let web = WEB_NAMES
        .iter()
        .find_map(|w| names.iter().position(|n| n == w))
        .or_else(|| root.and_then(|r| names.iter().position(|n| *n == r)))
        .unwrap_or(0);
    (0..names.len())
        .map(|i| {
            if i == web {
                ServiceKind::LoadBalancedWebService
            } else {
                ServiceKind::BackendService
            }
        })
        .collect()
}

/// The first port a Dockerfile `EXPOSE`s: `EXPOSE 3000`, `EXPOSE 80/tcp 443`, or a variable
/// with a default from `ARG`/`ENV` or `${VAR:-default}`.
pub fn exposed_port(dockerfile: &str) -> Option<u16> {
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let mut logical = String::new();
    let mut lines = Vec::new();
    for line in dockerfile.lines() {
        let t = line.trim();
        if t.starts_with('#') {
            continue;
        }
        if let Some(cont) = t.strip_suffix('\\') {
            logical.push_str(cont);
            logical.push(' ');
            continue;
        }
        logical.push_str(t);
        lines.push(std::mem::take(&mut logical));
    }
    for line in lines {
        let mut words = line.split_whitespace();
        let Some(instr) = words.next() else { continue };
        match instr.to_ascii_uppercase().as_str() {
            "ARG" | "ENV" => {
                let rest: Vec<&str> = words.collect();
                if rest.iter().any(|w| w.contains('=')) {
                    for w in rest {
                        if let Some((k, v)) = w.split_once('=') {
                            vars.insert(k.to_owned(), v.trim_matches('"').to_owned());
                        }
                    }
                } else if let [k, v, ..] = rest.as_slice() {
                    vars.insert((*k).to_owned(), v.trim_matches('"').to_owned());
                }
            }
            "EXPOSE" => {
                let first = words.next()?;
                let value = expand(first, &vars)?;
                let port = value.split(['/', '-']).next()?;
                return port.parse::<u16>().ok().filter(|p| *p > 0);
            }
            _ => {}
        }
    }
    None
}

/// Expands `$VAR`, `${VAR}` and `${VAR:-default}` when the whole word is one variable.
fn expand(word: &str, vars: &BTreeMap<String, String>) -> Option<String> {
    let (body, suffix) = match word.find('/') {
        Some(i) => (&word[..i], &word[i..]),
        None => (word, ""),
    };
    let Some(var) = body.strip_prefix('$') else {
        return Some(word.to_owned());
    };
    let var = var
        .strip_prefix('{')
        .and_then(|v| v.strip_suffix('}'))
        .unwrap_or(var);
    let (name, default) = match var.split_once(":-").or_else(|| var.split_once('-')) {
        Some((n, d)) => (n, Some(d)),
        None => (var, None),
    };
    let value = vars
        .get(name)
        .filter(|v| !v.is_empty())
        .cloned()
        .or(default.map(str::to_owned))?;
    Some(format!("{value}{suffix}"))
}

/// Whether a Dockerfile is DIR's own (`Dockerfile` or `Dockerfile.*` at the top), whose
/// service is named after the app.
fn is_root(path: &str) -> bool {
    !path.contains('/') && path.to_ascii_lowercase().starts_with("dockerfile")
}

/// `image.build` for a Dockerfile: its directory (`./api`, `.`) when it is plainly named
/// `Dockerfile`, else its path (`./api/Dockerfile.prod`).
pub fn build_field(path: &str) -> String {
    let rel = |p: &str| {
        if p.starts_with('/') || p.starts_with("../") {
            p.to_owned()
        } else {
            format!("./{p}")
        }
    };
    match path.rsplit_once('/') {
        Some(("", "Dockerfile")) => "/".to_owned(),
        Some((dir, "Dockerfile")) => rel(dir),
        None if path == "Dockerfile" => ".".to_owned(),
        _ => rel(path),
    }
}

fn parse_kind(s: &str) -> Option<ServiceKind> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "load balanced web service" | "lb" | "lbws" | "web" => {
            Some(ServiceKind::LoadBalancedWebService)
        }
        "2" | "backend service" | "backend" => Some(ServiceKind::BackendService),
        "3" | "worker service" | "worker" => Some(ServiceKind::WorkerService),
        _ => None,
    }
}

fn parse_service_flag(s: &str) -> Result<ServiceFlag> {
    let usage =
        "write it as NAME=TYPE or NAME=TYPE:path/to/Dockerfile, TYPE being web, backend or worker";
    let Some((name, rest)) = s.split_once('=') else {
        bail!("--service {s:?}: {usage}");
    };
    let (kind, dockerfile) = match rest.split_once(':') {
        Some((k, d)) if !d.trim().is_empty() => (k, Some(d.trim().to_owned())),
        Some((k, _)) => (k, None),
        None => (rest, None),
    };
    let name = name.trim();
    validate_name(name).map_err(|e| anyhow::anyhow!("--service {s:?}: service {e}"))?;
    let Some(kind) = parse_kind(kind).filter(|_| !kind.trim().chars().all(|c| c.is_ascii_digit()))
    else {
        bail!("--service {s:?}: unknown service type {kind:?}; {usage}");
    };
    Ok(ServiceFlag {
        name: name.to_owned(),
        kind,
        dockerfile,
    })
}

/// Quotes a YAML scalar when it is not plainly safe.
fn scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '/' | '_' | '-'))
        && !s.starts_with('-');
    if plain {
        s.to_owned()
    } else {
        serde_json::to_string(s).unwrap_or_default()
    }
}

/// The manifest's text, with comments on what to do next.
pub fn render(app: &str, services: &[Planned]) -> String {
    let webs = services
        .iter()
        .filter(|s| s.kind == ServiceKind::LoadBalancedWebService)
        .count();
    let mut y = String::new();
    y.push_str(&format!(
        "\
# slipway.yml, written by `slipway init`. Field names follow AWS Copilot's manifests.
# Editor completion and checks: `slipway schema > .slipway.schema.json`, then make this the
# first line:  # yaml-language-server: $schema=.slipway.schema.json
#
# Next steps:
#   1. Check each service's type, port and health check path below.
#   2. Secrets: store a value once with `slipway secret set {app}/db-password` (it reads stdin)
#      and reference it under a service as `secrets: {{DB_PASSWORD: {app}/db-password}}`.
#   3. Deploy (after `slipway login`): `slipway deploy` builds the images, pushes them to
#      Slipway's registry and rolls the services out; `slipway status` shows them.
app: {app}
services:
"
    ));
    for (i, s) in services.iter().enumerate() {
        if i > 0 {
            y.push('\n');
        }
        y.push_str(&format!("  {}:\n", s.name));
        let note = match s.kind {
            ServiceKind::LoadBalancedWebService => "routed from the ingress at http.path",
            ServiceKind::BackendService => "reachable only from the app's other services",
            ServiceKind::WorkerService => "no port is routed to it",
            ServiceKind::ScheduledJob => "runs on its on.schedule",
        };
        y.push_str(&format!("    type: {}   # {note}\n", s.kind.as_str()));
        y.push_str("    image:\n");
        y.push_str(&format!("      build: {}\n", scalar(&s.build)));
        y.push_str(&format!("      port: {}\n", s.port));
        if s.kind == ServiceKind::LoadBalancedWebService {
            let path = if webs > 1 {
                format!("/{}", s.name)
            } else {
                "/".to_owned()
            };
            y.push_str("    http:\n");
            y.push_str(&format!("      path: {path}\n"));
            if webs > 1 {
                y.push_str(&format!(
                    "      # strip_prefix: true   # forward {path}/x to the service as /x\n"
                ));
            }
            y.push_str(&healthcheck_line(s.healthcheck.as_deref()));
        } else if s.kind == ServiceKind::BackendService {
            match s.healthcheck.as_deref() {
                Some(p) => {
                    y.push_str("    http:\n");
                    y.push_str(&healthcheck_line(Some(p)));
                }
                None => y.push_str(&format!(
                    "    # http: {{healthcheck: {HEALTH_PATH}}}   # none: a running container counts as healthy\n"
                )),
            }
        }
        y.push_str("    count: 1\n");
        y.push_str("    # variables: {LOG_LEVEL: info}\n");
    }
    let first = services.first().map_or("api", |s| s.name.as_str());
    y.push('\n');
    y.push_str(&format!(
        "\
# Environments: overrides deployed with `slipway deploy --env prod`.
# environments:
#   prod:
#     services:
#       {first}:
#         count: 2
"
    ));
    y
}

/// The `http.healthcheck` line: the path, or a commented-out suggestion when there is none.
fn healthcheck_line(path: Option<&str>) -> String {
    match path {
        Some(p) => format!(
            "      healthcheck: {}   # answers 2xx/3xx once the service is ready\n",
            scalar(p)
        ),
        None => format!(
            "      # healthcheck: {HEALTH_PATH}   # none: a running container counts as healthy; add a path that answers 2xx/3xx once ready\n"
        ),
    }
}

/// Plain prompts on stderr, answers from stdin.
struct Prompt<R> {
    input: R,
}

impl<R: BufRead> Prompt<R> {
    fn new(input: R) -> Self {
        Prompt { input }
    }

    fn say(&mut self, line: &str) -> Result<()> {
        writeln!(io::stderr(), "{line}")?;
        Ok(())
    }

    /// One answer; empty means the default. End of input is an error.
    fn ask(&mut self, question: &str) -> Result<String> {
        let mut err = io::stderr();
        write!(err, "{question}: ")?;
        err.flush()?;
        let mut line = String::new();
        if self.input.read_line(&mut line)? == 0 {
            bail!("no answer to {question:?} (stdin closed); pass --yes to take the defaults");
        }
        Ok(line.trim().to_owned())
    }

    fn ask_name(&mut self, what: &str, default: &str) -> Result<String> {
        loop {
            let a = self.ask(&format!("{what} [{default}]"))?;
            if a.is_empty() {
                return Ok(default.to_owned());
            }
            match validate_name(&a) {
                Ok(()) => return Ok(a),
                Err(e) => self.say(&format!("  {e}"))?,
            }
        }
    }

    fn ask_kind(&mut self, default: ServiceKind) -> Result<ServiceKind> {
        let n = match default {
            ServiceKind::LoadBalancedWebService => 1,
            ServiceKind::BackendService => 2,
            ServiceKind::WorkerService | ServiceKind::ScheduledJob => 3,
        };
        self.say("  1) Load Balanced Web Service  2) Backend Service  3) Worker Service")?;
        loop {
            let a = self.ask(&format!("  Type [{n}]"))?;
            if a.is_empty() {
                return Ok(default);
            }
            match parse_kind(&a) {
                Some(k) => return Ok(k),
                None => self.say("  answer 1, 2, 3, web, backend or worker")?,
            }
        }
    }

    /// A path starting with `/`, or `none`.
    fn ask_healthcheck(&mut self, default: Option<&str>) -> Result<Option<String>> {
        loop {
            let a = self.ask(&format!(
                "  Health check path (or none) [{}]",
                default.unwrap_or("none")
            ))?;
            match a.as_str() {
                "" => return Ok(default.map(str::to_owned)),
                "none" | "-" => return Ok(None),
                p if p.starts_with('/') && !p.contains(char::is_whitespace) => {
                    return Ok(Some(p.to_owned()));
                }
                _ => self.say("  a path starts with '/' (e.g. /healthz), or answer none")?,
            }
        }
    }

    fn ask_port(&mut self, default: u16) -> Result<u16> {
        loop {
            let a = self.ask(&format!("  Port [{default}]"))?;
            if a.is_empty() {
                return Ok(default);
            }
            match a.parse::<u16>() {
                Ok(p) if p > 0 => return Ok(p),
                _ => self.say("  a port is a number from 1 to 65535")?,
            }
        }
    }
}

#[cfg(test)]
mod tests;
