//! `sidecars:` and `logging:` of a service (Copilot's shapes): the other containers of
//! each task and the FireLens log router, with `image.depends_on` ordering the main
//! container after them. Parsed here, checked with their place, compiled onto
//! [`crate::model::Sidecar`]s.

use super::*;
use crate::model::containers::{self, DependencyCondition};
use crate::model::{ContainerDependency, Firelens, LogRouting, Sidecar, VolumeMount};

/// `sidecars.NAME:` — a container beside the main one in every task.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SidecarDef {
    /// The image to run (`registry/repo:tag`); sidecars are not built.
    #[schemars(with = "String")]
    pub image: serde_saphyr::Spanned<String>,
    /// The port it listens on (reached from the task's other containers on localhost).
    #[serde(default)]
    pub port: Option<Port>,
    /// Its stop stops the task (default true).
    #[serde(default)]
    pub essential: Option<bool>,
    /// Containers of the task it starts after: `NAME: start | complete | success | healthy`.
    #[serde(default)]
    #[schemars(with = "Option<BTreeMap<String, String>>")]
    pub depends_on: Option<serde_saphyr::Spanned<BTreeMap<String, String>>>,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// Secrets as environment variables: `VARIABLE: secret-name`.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, SecretSource>")]
    pub secrets: BTreeMap<String, serde_saphyr::Spanned<SecretSource>>,
    /// A container health check run by the engine (what `depends_on: healthy` waits for).
    #[serde(default)]
    pub healthcheck: Option<ContainerHealth>,
    #[serde(default)]
    pub command: Option<StringOrList>,
    #[serde(default)]
    pub entrypoint: Option<StringOrList>,
    #[serde(default)]
    pub cpu: Option<Cpu>,
    #[serde(default)]
    pub memory: Option<Memory>,
    /// Named volumes of `storage.volumes` it mounts.
    #[serde(default)]
    pub mount_points: Vec<SidecarMount>,
}

/// `sidecars.NAME.mount_points[]`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SidecarMount {
    pub source_volume: String,
    pub path: String,
    #[serde(default)]
    pub read_only: Option<bool>,
}

/// `logging:` — a FireLens log router (Copilot's shape) that receives the main container's
/// stdout and stderr through the Fluentd `forward` protocol.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Logging {
    /// The router's image (Fluent Bit or Fluentd); Copilot's default is AWS's Fluent Bit
    /// image, which must then be in the engine already.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub image: Option<serde_saphyr::Spanned<String>>,
    /// Output options passed to the router with each record (`Name: cloudwatch` ...).
    #[serde(default)]
    pub destination: BTreeMap<String, String>,
    /// Adds ECS's metadata to each record (FireLens `enable-ecs-log-metadata`).
    #[serde(default)]
    pub enable_metadata: Option<bool>,
    /// A configuration file inside the router's image (FireLens `config-file-value`).
    #[serde(default)]
    pub config_file: Option<String>,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, SecretSource>")]
    pub secrets: BTreeMap<String, serde_saphyr::Spanned<SecretSource>>,
}

/// Copilot's default log router image.
pub const DEFAULT_ROUTER_IMAGE: &str = "public.ecr.aws/aws-observability/aws-for-fluent-bit:stable";
/// The log router's container name (Copilot's).
pub const ROUTER_NAME: &str = "firelens_log_router";

fn condition(
    field: &str,
    deps: &serde_saphyr::Spanned<BTreeMap<String, String>>,
) -> Result<Vec<ContainerDependency>, ManifestError> {
    deps.value
        .iter()
        .map(|(name, cond)| {
            let condition = DependencyCondition::parse(cond.trim()).ok_or_else(|| {
                ManifestError::at(
                    deps.referenced,
                    format!(
                        "{field}.{name}: {cond:?} is not a condition; write start, complete, success or healthy"
                    ),
                )
            })?;
            Ok(ContainerDependency {
                container: name.clone(),
                condition,
            })
        })
        .collect()
}

/// A `healthcheck:` (of the main container or a sidecar) in Docker's form: a string runs
/// in a shell, a list is a command (`CMD` added unless it starts with `CMD`/`CMD-SHELL`).
pub(super) fn command_health(h: &ContainerHealth) -> crate::model::CommandHealthCheck {
    let test = match &h.command {
        StringOrList::One(s) => vec!["CMD-SHELL".to_owned(), s.clone()],
        StringOrList::Many(v) if v.first().is_some_and(|f| f == "CMD" || f == "CMD-SHELL") => {
            v.clone()
        }
        StringOrList::Many(v) => std::iter::once("CMD".to_owned())
            .chain(v.iter().cloned())
            .collect(),
    };
    crate::model::CommandHealthCheck {
        test,
        interval_ms: h.interval.map_or(2000, Dur::ms),
        timeout_ms: h.timeout.map_or(2000, Dur::ms),
        retries: h.retries.map_or(3, |t| t.0),
        start_period_ms: h.start_period.map_or(0, Dur::ms),
    }
}

/// What `sidecars:`, `logging:` and `image.depends_on` compile to.
#[derive(Debug, Default)]
pub(super) struct Compiled {
    /// The sidecars, the log router last.
    pub sidecars: Vec<Sidecar>,
    /// The main container's dependencies.
    pub depends_on: Vec<ContainerDependency>,
    /// Whether the main container's output goes to the router.
    pub logging: Option<LogRouting>,
}

/// The sidecars of service `name` and what the main container gets.
pub(super) fn compile(name: &str, svc: &Service) -> Result<Compiled, ManifestError> {
    let mut out = Vec::new();
    for (sname, d) in &svc.sidecars {
        let field = format!("services.{name}.sidecars.{sname}");
        containers::validate_container_name(sname)
            .map_err(|m| ManifestError::at(d.image.referenced, format!("{field}: {m}")))?;
        check_secrets(name, &d.secrets, &d.variables)?;
        let mut c = crate::model::ContainerSpec {
            image: d.image.value.trim().to_owned(),
            port: d.port.map(|p| p.0 as u16),
            environment: d.variables.clone(),
            secrets: d
                .secrets
                .iter()
                .map(|(k, v)| (k.clone(), v.value.reference()))
                .collect(),
            healthcheck: d.healthcheck.as_ref().map(command_health),
            command: d.command.clone().map(StringOrList::into_vec),
            entrypoint: d.entrypoint.clone().map(StringOrList::into_vec),
            cpu: d.cpu.map(|c| c.0),
            memory: d.memory.map(|m| m.0),
            stop_timeout_ms: DEFAULT_STOP_TIMEOUT_MS,
            volumes: d
                .mount_points
                .iter()
                .map(|m| VolumeMount {
                    name: m.source_volume.clone(),
                    path: m.path.trim().to_owned(),
                    read_only: m.read_only.unwrap_or(false),
                })
                .collect(),
            ..Default::default()
        };
        if let Some(deps) = &d.depends_on {
            c.container_depends_on = condition(&format!("{field}.depends_on"), deps)?;
        }
        for m in &c.volumes {
            let declared = svc.storage.iter().any(|s| s.volumes.contains_key(&m.name));
            if !declared {
                return Err(ManifestError::at(
                    d.image.referenced,
                    format!(
                        "{field}.mount_points: volume {:?} is not in services.{name}.storage.volumes; declare it there",
                        m.name
                    ),
                ));
            }
        }
        out.push(Sidecar {
            name: sname.clone(),
            essential: d.essential.unwrap_or(true),
            firelens: None,
            container: c,
        });
    }
    let mut logging = None;
    if let Some(l) = &svc.logging {
        check_secrets(name, &l.secrets, &l.variables)?;
        let mut options = l.destination.clone();
        if l.enable_metadata.unwrap_or(true) {
            options.insert("enable-ecs-log-metadata".into(), "true".into());
        }
        if let Some(f) = &l.config_file {
            options.insert("config-file-type".into(), "file".into());
            options.insert("config-file-value".into(), f.clone());
        }
        let mut router = crate::model::containers::sidecar(
            ROUTER_NAME,
            l.image
                .as_ref()
                .map_or(DEFAULT_ROUTER_IMAGE, |i| i.value.trim()),
        );
        router.container.environment = l.variables.clone();
        router.container.secrets = l
            .secrets
            .iter()
            .map(|(k, v)| (k.clone(), v.value.reference()))
            .collect();
        router.container.stop_timeout_ms = DEFAULT_STOP_TIMEOUT_MS;
        router.firelens = Some(Firelens {
            kind: "fluentbit".into(),
            options: options.clone(),
        });
        out.push(router);
        logging = Some(LogRouting {
            options: l.destination.clone(),
        });
    }
    let main_deps = match &svc.image.value.depends_on {
        Some(deps) => condition(&format!("services.{name}.image.depends_on"), deps)?,
        None => Vec::new(),
    };
    Ok(Compiled {
        sidecars: out,
        depends_on: main_deps,
        logging,
    })
}

/// Checks the task's containers together (names, dependencies, conditions), placed at the
/// service's `image`.
pub(super) fn check(name: &str, svc: &Service) -> Result<(), ManifestError> {
    let c = compile(name, svc)?;
    if c.sidecars.is_empty() && c.depends_on.is_empty() {
        return Ok(());
    }
    let main = crate::model::ContainerSpec {
        image: "main".into(),
        sidecars: c.sidecars,
        container_depends_on: c.depends_on,
        logging: c.logging,
        ..Default::default()
    };
    containers::validate_task_containers(&main, name).map_err(|m| {
        let at = svc
            .sidecars
            .values()
            .next()
            .map_or(svc.image.referenced, |s| s.image.referenced);
        ManifestError::at(at, format!("services.{name}: {m}"))
    })
}
