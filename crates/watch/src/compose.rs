//! docker compose projects, driven through the compose CLI itself: `config` to read the
//! merged, interpolated model (and to report a broken file exactly as compose would), and
//! `up -d --no-deps SERVICE` with a generated override file that pins the image, so the
//! recreated containers are exactly what `docker-compose up -d` makes (labels, networks,
//! volumes, ports, environment) and `docker-compose ps` keeps showing them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

/// The label that opts a compose service in.
pub const WATCH_LABEL: &str = "slipway.watch";

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("{0}")]
    NoFile(String),
    #[error("cannot run `{cmd}` ({reason}); install docker-compose or pass --compose-command")]
    Spawn { cmd: String, reason: String },
    #[error("`{cmd}` failed: {output}")]
    Failed { cmd: String, output: String },
    #[error("`{cmd}` timed out after {secs}s")]
    Timeout { cmd: String, secs: u64 },
    #[error("cannot read the output of `{cmd}`: {reason}")]
    Parse { cmd: String, reason: String },
}

/// One compose project: its files and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub name: String,
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
}

/// Compose v1's project-name normalisation: lowercase, only `[-_a-z0-9]`.
pub fn normalize_name(name: &str) -> String {
    name.to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_')
        .collect()
}

/// `COMPOSE_PROJECT_NAME` from the environment or the project's `.env` file.
fn name_from_env(dir: &Path) -> Option<String> {
    if let Ok(n) = std::env::var("COMPOSE_PROJECT_NAME")
        && !n.trim().is_empty()
    {
        return Some(n);
    }
    let text = std::fs::read_to_string(dir.join(".env")).ok()?;
    text.lines().find_map(|l| {
        let v = l.trim().strip_prefix("COMPOSE_PROJECT_NAME=")?;
        let v = v.trim().trim_matches('"').trim_matches('\'');
        (!v.is_empty()).then(|| v.to_owned())
    })
}

impl Project {
    /// The project in a directory: its `docker-compose.yml` (or `.yaml`, `compose.yml`,
    /// `compose.yaml`) plus `docker-compose.override.yml` when present, as compose picks them.
    pub fn from_dir(dir: &Path, name: Option<&str>) -> Result<Project, ComposeError> {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
        if !dir.is_dir() {
            return Err(ComposeError::NoFile(format!(
                "{}: not a directory (--project takes the directory of a compose project)",
                dir.display()
            )));
        }
        let main = [
            "docker-compose.yml",
            "docker-compose.yaml",
            "compose.yml",
            "compose.yaml",
        ]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            ComposeError::NoFile(format!(
                "{}: no docker-compose.yml (or compose.yml) in this directory",
                dir.display()
            ))
        })?;
        let mut files = vec![main];
        for o in [
            "docker-compose.override.yml",
            "docker-compose.override.yaml",
        ] {
            if dir.join(o).is_file() {
                files.push(dir.join(o));
                break;
            }
        }
        Ok(Self::named(dir, files, name))
    }

    /// A project made of explicit files (`-f a.yml -f b.yml`); its directory is the first
    /// file's, as compose has it.
    pub fn from_files(files: &[PathBuf], name: Option<&str>) -> Result<Project, ComposeError> {
        let mut abs = Vec::new();
        for f in files {
            let a = std::path::absolute(f).unwrap_or_else(|_| f.clone());
            if !a.is_file() {
                return Err(ComposeError::NoFile(format!(
                    "{}: compose file not found",
                    a.display()
                )));
            }
            abs.push(a);
        }
        let dir = abs
            .first()
            .and_then(|f| f.parent())
            .map(Path::to_path_buf)
            .ok_or_else(|| ComposeError::NoFile("no compose file given".into()))?;
        Ok(Self::named(dir, abs, name))
    }

    fn named(dir: PathBuf, files: Vec<PathBuf>, name: Option<&str>) -> Project {
        let raw = name
            .map(str::to_owned)
            .or_else(|| name_from_env(&dir))
            .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default();
        let mut name = normalize_name(&raw);
        if name.is_empty() {
            name = "default".into();
        }
        Project { name, dir, files }
    }
}

/// Whether a compose service declares a health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthDecl {
    /// Not in the compose file: the image's `HEALTHCHECK` applies, if any.
    Unspecified,
    Defined,
    Disabled,
}

/// A service of the merged compose model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceDef {
    pub name: String,
    pub image: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub health: HealthDecl,
}

impl ServiceDef {
    /// Opted in with `slipway.watch=true` (or `1`, `yes`).
    pub fn watched_by_label(&self) -> bool {
        self.labels
            .get(WATCH_LABEL)
            .is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
    }
}

/// The merged model: services and the file format version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Model {
    pub version: Option<String>,
    pub services: Vec<ServiceDef>,
}

/// Parses the output of `docker-compose config`.
pub fn parse_model(yaml: &str) -> Result<Model, String> {
    let v: Value = serde_saphyr::from_str(yaml).map_err(|e| e.to_string())?;
    let version = match v.get("version") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let mut services = Vec::new();
    if let Some(Value::Object(map)) = v.get("services") {
        for (name, s) in map {
            let image = s.get("image").and_then(Value::as_str).map(str::to_owned);
            let mut labels = BTreeMap::new();
            match s.get("labels") {
                Some(Value::Object(m)) => {
                    for (k, v) in m {
                        let v = match v {
                            Value::String(s) => s.clone(),
                            Value::Null => String::new(),
                            other => other.to_string(),
                        };
                        labels.insert(k.clone(), v);
                    }
                }
                Some(Value::Array(a)) => {
                    for item in a.iter().filter_map(Value::as_str) {
                        let (k, v) = item.split_once('=').unwrap_or((item, ""));
                        labels.insert(k.to_owned(), v.to_owned());
                    }
                }
                _ => {}
            }
            let health = match s.get("healthcheck") {
                None | Some(Value::Null) => HealthDecl::Unspecified,
                Some(h) => {
                    let disabled = h.get("disable").and_then(Value::as_bool) == Some(true)
                        || match h.get("test") {
                            Some(Value::Array(t)) => {
                                t.first().and_then(Value::as_str) == Some("NONE")
                            }
                            Some(Value::String(t)) => t.trim().is_empty() || t == "NONE",
                            _ => false,
                        };
                    if disabled {
                        HealthDecl::Disabled
                    } else if h.get("test").is_some() {
                        HealthDecl::Defined
                    } else {
                        HealthDecl::Unspecified
                    }
                }
            };
            services.push(ServiceDef {
                name: name.clone(),
                image,
                labels,
                health,
            });
        }
    }
    Ok(Model { version, services })
}

/// The override file that pins services to images.
pub fn override_yaml(version: Option<&str>, pins: &BTreeMap<String, String>) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut out =
        String::from("# Written by slipway watch: pins watched services to image digests.\n");
    if let Some(v) = version {
        out.push_str(&format!("version: {}\n", q(v)));
    }
    out.push_str("services:\n");
    for (svc, image) in pins {
        out.push_str(&format!("  {}:\n    image: {}\n", q(svc), q(image)));
    }
    out
}

/// How to run compose (`docker-compose`, or `docker compose`).
#[derive(Debug, Clone)]
pub struct ComposeCmd {
    program: Vec<String>,
}

impl Default for ComposeCmd {
    fn default() -> Self {
        ComposeCmd {
            program: vec!["docker-compose".into()],
        }
    }
}

impl ComposeCmd {
    pub fn new(command: &str) -> ComposeCmd {
        let program: Vec<String> = command.split_whitespace().map(str::to_owned).collect();
        if program.is_empty() {
            ComposeCmd::default()
        } else {
            ComposeCmd { program }
        }
    }

    async fn run(
        &self,
        project: &Project,
        extra_files: &[&Path],
        args: &[&str],
        timeout: Duration,
    ) -> Result<String, ComposeError> {
        let mut cmd = tokio::process::Command::new(&self.program[0]);
        cmd.args(&self.program[1..]).args(["-p", &project.name]);
        cmd.arg("--project-directory").arg(&project.dir);
        for f in project
            .files
            .iter()
            .map(PathBuf::as_path)
            .chain(extra_files.iter().copied())
        {
            cmd.arg("-f").arg(f);
        }
        cmd.args(args)
            .current_dir(&project.dir)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let shown = format!(
            "{} -p {} {}",
            self.program.join(" "),
            project.name,
            args.join(" ")
        );
        let out = match tokio::time::timeout(timeout, cmd.output()).await {
            Err(_) => {
                return Err(ComposeError::Timeout {
                    cmd: shown,
                    secs: timeout.as_secs(),
                });
            }
            Ok(Err(e)) => {
                return Err(ComposeError::Spawn {
                    cmd: shown,
                    reason: e.to_string(),
                });
            }
            Ok(Ok(o)) => o,
        };
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stderr);
            let text: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            return Err(ComposeError::Failed {
                cmd: shown,
                output: text.join(" | ").chars().take(800).collect(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The merged model of a project (`config`); a broken file is an error with compose's words.
    pub async fn model(&self, project: &Project) -> Result<Model, ComposeError> {
        let out = self
            .run(project, &[], &["config"], Duration::from_secs(60))
            .await?;
        parse_model(&out).map_err(|reason| ComposeError::Parse {
            cmd: "docker-compose config".into(),
            reason,
        })
    }

    /// Recreates one service's containers with the override applied (`up -d --no-deps`).
    pub async fn up_service(
        &self,
        project: &Project,
        override_file: &Path,
        service: &str,
        timeout: Duration,
    ) -> Result<(), ComposeError> {
        self.run(
            project,
            &[override_file],
            &["up", "-d", "--no-deps", "--no-build", service],
            timeout,
        )
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_from_config_output() {
        let yaml = r#"
services:
  web:
    image: 127.0.0.1:5000/team/web:stable
    labels:
      slipway.watch: "true"
    healthcheck:
      test: ["CMD", "/hello", "check"]
      interval: 1s
  worker:
    image: worker:v1
    labels:
    - slipway.watch=yes
    - other
    healthcheck:
      disable: true
  db:
    build: .
version: '3.9'
"#;
        let m = parse_model(yaml).unwrap();
        assert_eq!(m.version.as_deref(), Some("3.9"));
        let web = m.services.iter().find(|s| s.name == "web").unwrap();
        assert!(web.watched_by_label());
        assert_eq!(web.health, HealthDecl::Defined);
        assert_eq!(web.image.as_deref(), Some("127.0.0.1:5000/team/web:stable"));
        let worker = m.services.iter().find(|s| s.name == "worker").unwrap();
        assert!(worker.watched_by_label());
        assert_eq!(worker.labels.get("other").map(String::as_str), Some(""));
        assert_eq!(worker.health, HealthDecl::Disabled);
        let db = m.services.iter().find(|s| s.name == "db").unwrap();
        assert!(!db.watched_by_label());
        assert_eq!(db.image, None);
        assert_eq!(db.health, HealthDecl::Unspecified);
    }

    #[test]
    fn override_pins_are_quoted_yaml() {
        let pins = BTreeMap::from([("web".to_owned(), "r/a@sha256:ab".to_owned())]);
        let y = override_yaml(Some("2.4"), &pins);
        let m = parse_model(&y).unwrap();
        assert_eq!(m.version.as_deref(), Some("2.4"));
        assert_eq!(m.services[0].image.as_deref(), Some("r/a@sha256:ab"));
    }

    #[test]
    fn project_names_follow_compose() {
        assert_eq!(normalize_name("My App.v2"), "myappv2");
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("Shop_Front");
        std::fs::create_dir(&dir).unwrap();
        assert!(Project::from_dir(&dir, None).is_err());
        std::fs::write(dir.join("docker-compose.yml"), "services: {}\n").unwrap();
        std::fs::write(dir.join("docker-compose.override.yml"), "services: {}\n").unwrap();
        let p = Project::from_dir(&dir, None).unwrap();
        assert_eq!(p.files.len(), 2);
        if std::env::var_os("COMPOSE_PROJECT_NAME").is_none() {
            assert_eq!(p.name, "shop_front");
        }
        assert_eq!(Project::from_dir(&dir, Some("X-1")).unwrap().name, "x-1");
    }
}

/// A watch list file (`slipway watch --config FILE`): projects and, per project, services
/// watched without the label. Relative paths are relative to the file.
///
/// ```yaml
/// projects:
///   - dir: /srv/shop
///     services: [web, worker]
///   - files: [blog/docker-compose.yml, blog/prod.yml]
///     name: blog
/// ```
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WatchFile {
    projects: Vec<WatchEntry>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WatchEntry {
    dir: Option<PathBuf>,
    #[serde(default)]
    files: Vec<PathBuf>,
    name: Option<String>,
    #[serde(default)]
    services: Vec<String>,
}

/// Reads a watch list file: each project with the services it names.
pub fn read_watch_file(path: &Path) -> Result<Vec<(Project, Vec<String>)>, ComposeError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ComposeError::NoFile(format!("{shown}: cannot read the watch list ({e})")))?;
    let file: WatchFile =
        serde_saphyr::from_str(&text).map_err(|e| ComposeError::NoFile(format!("{shown}: {e}")))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut out = Vec::new();
    for (i, e) in file.projects.into_iter().enumerate() {
        let project = match (&e.dir, e.files.is_empty()) {
            (Some(d), true) => Project::from_dir(&base.join(d), e.name.as_deref())?,
            (None, false) => {
                let files: Vec<PathBuf> = e.files.iter().map(|f| base.join(f)).collect();
                Project::from_files(&files, e.name.as_deref())?
            }
            _ => {
                return Err(ComposeError::NoFile(format!(
                    "{shown}: projects[{i}] needs either `dir:` or `files:`"
                )));
            }
        };
        out.push((project, e.services));
    }
    Ok(out)
}

#[cfg(test)]
mod watch_file_tests {
    use super::*;

    #[test]
    fn watch_list_file() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("shop")).unwrap();
        std::fs::write(d.path().join("shop/compose.yml"), "services: {}\n").unwrap();
        std::fs::write(d.path().join("b.yml"), "services: {}\n").unwrap();
        let list = d.path().join("watch.yml");
        std::fs::write(
            &list,
            "projects:\n  - dir: shop\n    services: [web]\n  - files: [b.yml]\n    name: Blog\n",
        )
        .unwrap();
        let got = read_watch_file(&list).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0.name, "shop");
        assert_eq!(got[0].1, ["web"]);
        assert_eq!(got[1].0.name, "blog");
        assert!(got[1].1.is_empty());
        std::fs::write(&list, "projects:\n  - name: x\n").unwrap();
        let e = read_watch_file(&list).unwrap_err().to_string();
        assert!(e.contains("needs either `dir:` or `files:`"), "{e}");
        std::fs::write(&list, "projects:\n  - dir: shop\n    sevices: [web]\n").unwrap();
        assert!(
            read_watch_file(&list)
                .unwrap_err()
                .to_string()
                .contains("sevices")
        );
    }
}
