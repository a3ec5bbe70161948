//! `slipway run SERVICE`: runs a service's image on this machine's Docker engine in the
//! foreground, with the manifest's variables for an environment, the way the service would
//! run in Slipway. Ctrl-C stops and removes the container; so does its own exit.
//!
//! A service built from source (`image.build`) runs the version its environment runs (or the
//! `--tag` named), pulled from the server's built-in registry.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use futures_util::StreamExt;
use slipway_core::manifest::DEFAULT_ENV;
use slipway_core::model::labels;
use slipway_registry::admin::{PasswordRequest, PasswordResponse};
use slipway_runtime::{DockerRuntime, LocalRun, PullCredentials, registry_host, split_tag};
use slipway_watch::ImageRef;
use slipway_watch::auth::Credentials;
use slipway_watch::registry::RegistryClient;
use tokio::signal::unix::{SignalKind, signal};

use crate::client::{Client, ClientConfig};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The service to run.
    service: String,
    /// The manifest.
    #[arg(short = 'f', long = "file", default_value = "slipway.yml")]
    file: PathBuf,
    /// Environment whose variables (and overrides) apply.
    #[arg(long, default_value = DEFAULT_ENV)]
    env: String,
    /// Run this tag of the manifest's image repository (for a service built from source:
    /// of its repository in the built-in registry; default: the version the environment runs).
    #[arg(long, conflicts_with = "highest_semver")]
    tag: Option<String>,
    /// Run the highest semver tag (`v1.2.3` or `1.2.3`) of the image's repository, as the
    /// registry lists it.
    #[arg(long)]
    highest_semver: bool,
    /// Extra variables from a file of KEY=VALUE lines (docker's --env-file format; repeatable,
    /// later files win). They also supply the service's secrets, which are not injected
    /// locally.
    #[arg(long = "env-file", value_name = "FILE")]
    env_files: Vec<PathBuf>,
    /// Publish the container port on 127.0.0.1:HOSTPORT (default: a free port).
    #[arg(short = 'p', long = "publish", value_name = "HOSTPORT:CONTAINERPORT")]
    publish: Option<String>,
}

pub async fn run(a: RunArgs, json: bool) -> Result<ExitCode> {
    // Everything that can be wrong with the input is checked before the engine is touched.
    let source = super::copilot::Source::open(&a.file, &a.env, false)?;
    let (shown, manifest) = (&source.shown, &source.manifest);
    let specs = manifest
        .compile(&a.env)
        .map_err(|e| anyhow!("{}", source.render(&e)))?;
    let Some(spec) = specs.into_iter().find(|s| s.key.name == a.service) else {
        let known: Vec<String> = manifest.services.keys().cloned().collect();
        bail!(
            "{shown}: no service named {:?} (services: {})",
            a.service,
            known.join(", ")
        );
    };
    let mut vars: BTreeMap<String, String> = spec.container.environment.clone();
    for f in &a.env_files {
        vars.extend(read_env_file(f)?);
    }
    let publish = match &a.publish {
        Some(p) => Some(parse_publish(p)?),
        None => None,
    };
    if let Some(tag) = &a.tag
        && (tag.is_empty() || tag.contains(['/', '@', ':', ' ']))
    {
        bail!("--tag {tag:?} is not a tag; write it as e.g. --tag v1.2.3");
    }
    let mut image = spec.container.image.clone();
    if image.is_empty() && manifest.build_of(&a.service).is_some() {
        image = built_image(&spec.key, a.tag.is_some() || a.highest_semver).await?;
    }
    if let Some(tag) = &a.tag {
        image = with_tag(&image, tag);
    }
    let server = ClientConfig::load().ok();
    let builtin = server.as_ref().and_then(|c| builtin_registry(&c.server));
    let is_builtin = |image: &str| {
        builtin
            .as_deref()
            .is_some_and(|b| registry_host(image) == Some(b))
    };
    let password = if is_builtin(&image) {
        Some(registry_password(server.as_ref()).await?)
    } else {
        None
    };
    if a.highest_semver {
        let tag = highest_semver_tag(&image, password.as_ref()).await?;
        image = with_tag(&image, &tag);
    }

    let mut rt = DockerRuntime::connect().await?;
    if let (Some(host), Some(pw)) = (registry_host(&image), &password) {
        rt = rt.with_credentials(Arc::new(StaticCredentials {
            host: host.to_owned(),
            username: pw.username.clone(),
            password: pw.password.clone(),
        }));
    }
    if !rt.has_image(&image).await? {
        if !json {
            eprintln!("pulling {image}");
        }
        rt.pull(&image)
            .await
            .with_context(|| format!("cannot pull {image}"))?;
    }
    let container_port = publish.map(|(_, c)| c).or(spec.container.port);
    let host_port = match (publish, container_port) {
        (Some((h, _)), _) => Some(h),
        (None, Some(_)) => Some(free_port()?),
        (None, None) => None,
    };
    let key = &spec.key;
    let mut env: Vec<String> = vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
    env.extend([
        format!("SLIPWAY_APP={}", key.app),
        format!("SLIPWAY_ENV={}", key.env),
        format!("SLIPWAY_SERVICE={}", key.name),
        "SLIPWAY_TASK=local".to_owned(),
    ]);
    let name = format!(
        "slipway-run-{}-{}-{}-{}",
        key.app,
        key.env,
        key.name,
        slipway_store::random_id(3)
    );
    // Listen before the container exists, so a Ctrl-C from here on is ours to handle.
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C")?;
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let id = rt
        .create_local(&LocalRun {
            name: &name,
            image: &image,
            env,
            command: spec.container.command.clone(),
            publish: host_port.zip(container_port),
            labels: HashMap::from([
                (labels::APP.to_owned(), key.app.clone()),
                (labels::ENV.to_owned(), key.env.clone()),
                (labels::SERVICE.to_owned(), key.name.clone()),
            ]),
        })
        .await
        .with_context(|| format!("cannot create a container of {image}"))?;
    let result = async {
        rt.start(&id).await?;
        let url = host_port.map(|p| format!("http://127.0.0.1:{p}"));
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "service": key,
                    "container": name,
                    "image": image,
                    "url": url,
                })
            );
        } else {
            eprintln!(
                "{}: running {image} as container {name}{}",
                key.name,
                url.as_deref()
                    .map(|u| format!("; answers at {u}"))
                    .unwrap_or_default()
            );
        }
        let mut logs = Box::pin(rt.logs(&id, true, None, None));
        let mut exited = Box::pin(rt.wait_exit(&id));
        let mut interrupted = false;
        let code = loop {
            tokio::select! {
                line = logs.next() => match line {
                    Some(Ok(l)) => {
                        let mut out = std::io::stdout().lock();
                        out.write_all(l.as_bytes())?;
                        out.flush()?;
                    }
                    // The log stream ends with the container; its exit code follows.
                    _ => {
                        let code = exited.as_mut().await?;
                        break code;
                    }
                },
                code = &mut exited => {
                    // Print what is left of the logs.
                    while let Ok(Some(Ok(l))) =
                        tokio::time::timeout(Duration::from_secs(2), logs.next()).await
                    {
                        print!("{l}");
                    }
                    break code?;
                },
                _ = int.recv() => { interrupted = true; break 130; }
                _ = term.recv() => { interrupted = true; break 143; }
            }
        };
        if interrupted && !json {
            eprintln!("{}: stopping container {name}", key.name);
        }
        anyhow::Ok((code, interrupted))
    }
    .await;
    // However it ended, the container goes.
    let stop = Duration::from_millis(spec.container.stop_timeout_ms);
    let _ = rt.stop(&id, stop).await;
    let removed = rt.remove(&id).await;
    let (code, interrupted) = result?;
    removed.with_context(|| {
        format!("cannot remove container {name}; remove it with docker rm -f {name}")
    })?;
    if !json && !interrupted {
        eprintln!("{}: container exited with code {code}", key.name);
    }
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

/// The image of a service built from source: the one its environment runs, or (when a tag
/// is named) its repository in the built-in registry.
async fn built_image(key: &slipway_core::model::ServiceKey, tag_named: bool) -> Result<String> {
    let field = format!("services.{}.image.build", key.name);
    let cfg = ClientConfig::load().map_err(|e| {
        anyhow!(
            "{field}: the service is built from source, so its images are in the Slipway server's registry, and no server is configured ({e:#})"
        )
    })?;
    let host = builtin_registry(&cfg.server)
        .ok_or_else(|| anyhow!("server address {:?} is not an http(s) URL", cfg.server))?;
    if tag_named {
        return Ok(format!("{host}/{}/{}", key.app, key.name));
    }
    let client = Client::new(cfg)?;
    let detail: Option<slipway_api::types::ServiceDetail> =
        client.get_opt(&crate::client::service_path(key)).await?;
    match detail
        .and_then(|d| d.container)
        .map(|c| c.image)
        .filter(|i| !i.is_empty())
    {
        Some(image) => Ok(image),
        None => bail!(
            "{field}: {} is not deployed in environment {}, so there is no version to run; deploy it (slipway deploy --env {}) or name a version with --tag TAG (slipway repo images {}/{} lists them)",
            key.name,
            key.env,
            key.env,
            key.app,
            key.name
        ),
    }
}

/// The pull credentials of the built-in registry, for the engine.
struct StaticCredentials {
    host: String,
    username: String,
    password: String,
}

impl PullCredentials for StaticCredentials {
    fn credentials_for(&self, registry: &str) -> Option<(String, String)> {
        (registry == self.host).then(|| (self.username.clone(), self.password.clone()))
    }
}

/// `host:port` of the registry built into the server at `server` (an API URL).
fn builtin_registry(server: &str) -> Option<String> {
    let rest = server
        .strip_prefix("http://")
        .or_else(|| server.strip_prefix("https://"))?;
    Some(rest.split('/').next()?.to_owned())
}

async fn registry_password(cfg: Option<&ClientConfig>) -> Result<PasswordResponse> {
    let cfg = cfg.ok_or_else(|| anyhow!("no server configured"))?;
    Client::new(cfg.clone())?
        .post("/registry/password", &PasswordRequest { pull_only: true })
        .await
        .context("cannot get a pull password for the built-in registry")
}

/// `repo:old` → `repo:tag` (a digest is dropped).
fn with_tag(image: &str, tag: &str) -> String {
    let (repo, _) = split_tag(image);
    format!("{repo}:{tag}")
}

/// The highest `[v]MAJOR.MINOR.PATCH` tag of the image's repository.
async fn highest_semver_tag(image: &str, pw: Option<&PasswordResponse>) -> Result<String> {
    let r = ImageRef::parse(image).map_err(|e| anyhow!("--highest-semver: {e}"))?;
    let creds = match pw {
        Some(p) => Some(Credentials {
            username: p.username.clone(),
            password: p.password.clone(),
            source: "the Slipway server".into(),
        }),
        None => slipway_watch::auth::DockerConfig::load_default()
            .ok()
            .and_then(|c| c.credentials(&r.auth_key()).ok().flatten()),
    };
    let client = RegistryClient::new(Vec::<String>::new(), Duration::from_secs(30));
    let tags = client.list_tags(&r, creds.as_ref()).await.map_err(|e| {
        anyhow!(
            "--highest-semver: cannot list the tags of {}: {e}",
            r.name()
        )
    })?;
    pick_highest_semver(&tags).map(str::to_owned).ok_or_else(|| {
        anyhow!(
            "--highest-semver: {} has no semver tag (like v1.2.3 or 1.2.3) among {} tag(s); pass --tag",
            r.name(),
            tags.len()
        )
    })
}

/// `v1.2.3` / `1.2.3` → (1, 2, 3); anything else (pre-releases included) → `None`.
fn semver(tag: &str) -> Option<(u64, u64, u64)> {
    let t = tag.strip_prefix('v').unwrap_or(tag);
    let mut parts = t.split('.');
    let mut next = || -> Option<u64> {
        let p = parts.next()?;
        if p.is_empty()
            || !p.bytes().all(|b| b.is_ascii_digit())
            || (p.len() > 1 && p.starts_with('0'))
        {
            return None;
        }
        p.parse().ok()
    };
    let v = (next()?, next()?, next()?);
    parts.next().is_none().then_some(v)
}

fn pick_highest_semver(tags: &[String]) -> Option<&str> {
    tags.iter()
        .filter_map(|t| semver(t).map(|v| (v, t)))
        // Equal versions: prefer the `v` form for a stable answer.
        .max_by(|a, b| {
            a.0.cmp(&b.0)
                .then(a.1.starts_with('v').cmp(&b.1.starts_with('v')))
        })
        .map(|(_, t)| t.as_str())
}

/// Reads docker's env-file format: `KEY=VALUE` lines, `#` comments and blank lines ignored,
/// a bare `KEY` takes its value from this process' environment (if set).
pub fn read_env_file(path: &Path) -> Result<BTreeMap<String, String>> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{shown}: cannot read the env file"))?;
    parse_env_file(&text).map_err(|(line, msg)| anyhow!("{shown}:{line}: {msg}"))
}

fn parse_env_file(text: &str) -> Result<BTreeMap<String, String>, (usize, String)> {
    let mut out = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = match line.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (line.trim_end(), None),
        };
        if k.is_empty()
            || k.contains(char::is_whitespace)
            || !k
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err((
                i + 1,
                format!(
                    "{:?} is not a KEY=VALUE line (KEY: letters, digits and _, not starting with a digit)",
                    raw.trim()
                ),
            ));
        }
        match v {
            Some(v) => {
                out.insert(k.to_owned(), v.to_owned());
            }
            None => {
                if let Ok(v) = std::env::var(k) {
                    out.insert(k.to_owned(), v);
                }
            }
        }
    }
    Ok(out)
}

fn parse_publish(p: &str) -> Result<(u16, u16)> {
    let parse = |s: &str| s.parse::<u16>().ok().filter(|n| *n > 0);
    match p
        .split_once(':')
        .and_then(|(h, c)| Some((parse(h)?, parse(c)?)))
    {
        Some(v) => Ok(v),
        None => bail!("-p {p:?}: write it as HOSTPORT:CONTAINERPORT, e.g. -p 8080:8080"),
    }
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(l.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semver_tags() {
        assert_eq!(semver("v1.2.3"), Some((1, 2, 3)));
        assert_eq!(semver("10.0.1"), Some((10, 0, 1)));
        for bad in [
            "latest",
            "v1.2",
            "1.2.3.4",
            "v1.2.3-rc1",
            "01.2.3",
            "v",
            "1..2",
        ] {
            assert_eq!(semver(bad), None, "{bad}");
        }
        let tags: Vec<String> = ["latest", "v1.9.0", "1.10.0", "v1.2.3", "2.0.0-rc1", "main"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(pick_highest_semver(&tags), Some("1.10.0"));
        assert_eq!(pick_highest_semver(&["latest".to_owned()]), None);
    }

    #[test]
    fn env_files() {
        let m = parse_env_file("# comment\n\nA=1\nB = x\nC=with=equals\nD=\n").unwrap_err();
        assert_eq!(m.0, 4, "B = x has a space in its key");
        let m = parse_env_file("# comment\n\nA=1\nC=with=equals\nD=\n  E=spaced \n").unwrap();
        assert_eq!(m["A"], "1");
        assert_eq!(m["C"], "with=equals");
        assert_eq!(m["D"], "");
        assert_eq!(m["E"], "spaced ");
        assert_eq!(parse_env_file("1X=2").unwrap_err().0, 1);
    }

    #[test]
    fn tags_and_ports() {
        assert_eq!(
            with_tag("127.0.0.1:5000/a/b:v1", "v2"),
            "127.0.0.1:5000/a/b:v2"
        );
        assert_eq!(with_tag("hello", "v2"), "hello:v2");
        assert_eq!(parse_publish("8081:8080").unwrap(), (8081, 8080));
        assert!(parse_publish("8080").is_err());
        assert!(parse_publish("0:8080").is_err());
        assert_eq!(
            builtin_registry("http://127.0.0.1:4000").as_deref(),
            Some("127.0.0.1:4000")
        );
    }
}
