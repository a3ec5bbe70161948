//! The `slipway.yml` manifest: parsing, validation and compilation into [`ServiceSpec`]s.
//!
//! Field names follow AWS Copilot's where Copilot has one (`type`, `image.location`,
//! `image.port`, `http.path`, `http.healthcheck`, `count`, `cpu`, `memory`, `variables`,
//! `command`, `deployment`, `environments`). Unknown fields are errors, and every error
//! carries the line and column it refers to, so the CLI can print `file:line:column`.
//!
//! Range checks live in the `Deserialize` impls of small newtypes ([`Count`], [`Port`], ...)
//! so that the YAML parser attaches the location of the offending value to the message.
//!
//! Here: the document's types and parsing; [`compile`] validates a parsed manifest and
//! compiles it per environment; [`fields`] has the larger field types.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

mod compile;
mod fields;
pub mod sidecars;
use compile::*;
pub use compile::{check_platform, check_secret_name, parse_success_codes};
pub use fields::{On, OverrideImage, Storage, VolumeDef};

use crate::model::{
    CircuitBreaker, ContainerSpec, DeploymentConfig, HttpHealthCheck, HttpRoute, PullPolicy,
    SecretDelivery, SecretRef, ServiceKey, ServiceKind, ServiceSpec, validate_name,
};

/// The environment used when `--env` is not given.
pub const DEFAULT_ENV: &str = "default";

/// Upper bound of `count`: one host runs at most this many copies of a service.
pub const MAX_COUNT: u32 = 1000;

/// A manifest error with the place it refers to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ManifestError {
    /// 1-based line and column, when the error can be placed.
    pub line: Option<u64>,
    pub column: Option<u64>,
    pub message: String,
}

impl ManifestError {
    pub(crate) fn unplaced(message: impl Into<String>) -> Self {
        Self {
            line: None,
            column: None,
            message: message.into(),
        }
    }

    pub(crate) fn at(loc: serde_saphyr::Location, message: impl Into<String>) -> Self {
        let (line, column) = (loc.line(), loc.column());
        if line == 0 {
            return Self::unplaced(message);
        }
        Self {
            line: Some(line),
            column: Some(column),
            message: message.into(),
        }
    }

    /// Renders the error as one line naming `file:line:column`.
    pub fn with_file(&self, file: &str) -> String {
        match (self.line, self.column) {
            (Some(l), Some(c)) => format!("{file}:{l}:{c}: {}", self.message),
            _ => format!("{file}: {}", self.message),
        }
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{l}:{c}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

/// A parsed `slipway.yml`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The app's name: lowercase letters, digits and '-', starting with a letter.
    #[schemars(with = "String", pattern(crate::schema::NAME_PATTERN))]
    pub app: serde_saphyr::Spanned<String>,
    /// The app's services, by name.
    #[schemars(extend("propertyNames" = crate::schema::name_rule(), "minProperties" = 1))]
    pub services: BTreeMap<String, Service>,
    /// Per-environment overrides (`slipway deploy --env NAME`), by environment name.
    #[serde(default)]
    #[schemars(extend("propertyNames" = crate::schema::name_rule()))]
    pub environments: BTreeMap<String, Environment>,
}

/// One service as written in the manifest.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Load Balanced Web Service (routed by the ingress), Backend Service or Worker Service.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// The image to run: `location` (pull) or `build` (build from source), and its port.
    #[schemars(with = "Image")]
    pub image: serde_saphyr::Spanned<Image>,
    /// Ingress route and HTTP health check (Load Balanced Web Service).
    #[serde(default)]
    pub http: Option<Http>,
    /// A container health check run by the engine.
    #[serde(default)]
    pub healthcheck: Option<ContainerHealth>,
    /// Desired number of tasks. Without it a new service starts one task and an existing
    /// service keeps its count (as `slipway scale` set it).
    #[serde(default)]
    pub count: Option<Count>,
    /// CPU units, 1024 = one core.
    #[serde(default)]
    pub cpu: Option<Cpu>,
    /// Memory limit in MiB.
    #[serde(default)]
    pub memory: Option<Memory>,
    /// Environment variables.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// Overrides the image's command: a string (split on spaces) or a list.
    #[serde(default)]
    pub command: Option<StringOrList>,
    /// Overrides the image's entrypoint: a string (split on spaces) or a list.
    #[serde(default)]
    pub entrypoint: Option<StringOrList>,
    /// The user the process runs as: `name`, `uid` or `uid:gid`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub user: Option<serde_saphyr::Spanned<String>>,
    /// Named volumes (`storage.volumes.NAME: {path, read_only}`), kept across deploys.
    #[serde(default)]
    pub storage: Option<Storage>,
    /// Services of this app whose tasks must be healthy before this service's first tasks
    /// start (on its first deploy).
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub depends_on: Option<serde_saphyr::Spanned<Vec<String>>>,
    /// Scheduled Job: when it runs (`on: {schedule: "@every 1h"}` or a cron expression, UTC).
    #[serde(default)]
    pub on: Option<On>,
    /// Scheduled Job: how many times a failed run is run again (default 0).
    #[serde(default)]
    pub retries: Option<JobRetries>,
    /// Scheduled Job: a run still going after this long is stopped (and counts as failed).
    #[serde(default)]
    pub timeout: Option<Dur>,
    /// Rolling update and circuit breaker settings.
    #[serde(default)]
    pub deployment: Option<Deploy>,
    /// How long a task may take to stop before it is killed (default 30s).
    #[serde(default)]
    pub stop_timeout: Option<Dur>,
    /// Run Docker's init as PID 1: it passes SIGTERM on to the process and reaps zombies
    /// (a process without a SIGTERM handler as PID 1 ignores SIGTERM and is killed after
    /// `stop_timeout`). ECS `linuxParameters.initProcessEnabled`.
    #[serde(default)]
    pub init: Option<bool>,
    /// Values from the secret store: `VARIABLE: secret-name` (an environment variable), or
    /// `NAME: {from: secret-name, as: file}` (the file `/run/secrets/NAME` on an in-memory
    /// mount, which `docker inspect` does not show) or `as: env`.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, SecretSource>")]
    pub secrets: BTreeMap<String, serde_saphyr::Spanned<SecretSource>>,
    /// The platform images are built for (`linux/amd64`); Copilot's `platform`.
    #[serde(default)]
    #[schemars(
        with = "Option<String>",
        pattern(r"^[A-Za-z0-9_]+/[A-Za-z0-9_]+(/[A-Za-z0-9_]+)?$")
    )]
    pub platform: Option<serde_saphyr::Spanned<String>>,
    /// How tasks are placed on the cluster's hosts (ECS's strategies and constraints):
    /// `strategy: [{type: spread, field: attribute:zone}]`,
    /// `constraints: [{type: distinctInstance}, {type: memberOf, expression: "attribute:zone == a"}]`.
    #[serde(default)]
    #[schemars(with = "Option<crate::placement::Placement>")]
    pub placement: Option<serde_saphyr::Spanned<crate::placement::Placement>>,
    /// Containers beside the main one in every task, by name (Copilot's `sidecars`): they
    /// share the task's network (`localhost`) and start before the main container when
    /// `image.depends_on` says so.
    #[serde(default)]
    pub sidecars: BTreeMap<String, sidecars::SidecarDef>,
    /// A FireLens log router beside the main container that receives its output
    /// (Copilot's `logging`).
    #[serde(default)]
    pub logging: Option<sidecars::Logging>,
}

/// `image:` — where the service's image comes from: a `location` to pull, or a `build` to
/// build from source (exactly one of the two).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// An image to pull: `registry/repo:tag` or `...@sha256:...`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub location: Option<serde_saphyr::Spanned<String>>,
    /// Build the image from source: a directory, a Dockerfile path, or the full form.
    #[serde(default)]
    #[schemars(with = "Option<Build>")]
    pub build: Option<serde_saphyr::Spanned<Build>>,
    /// The port the container listens on.
    #[serde(default)]
    pub port: Option<Port>,
    /// When to pull the image: `missing` (default) or `always`.
    #[serde(default)]
    pub pull: Option<PullPolicy>,
    /// Sidecars the main container starts after: `NAME: start | complete | success |
    /// healthy` (Copilot's `image.depends_on`).
    #[serde(default)]
    #[schemars(with = "Option<BTreeMap<String, String>>")]
    pub depends_on: Option<serde_saphyr::Spanned<BTreeMap<String, String>>>,
}

/// `secrets.NAME:` — a secret name (delivered as an environment variable), or
/// `{from: secret-name, as: env | file}`.
#[derive(Debug, Clone)]
pub enum SecretSource {
    Name(String),
    Full {
        from: serde_saphyr::Spanned<String>,
        /// `env` or `file` as written (checked by validation, so the error is placed).
        delivery: Option<serde_saphyr::Spanned<String>>,
    },
}

impl SecretSource {
    /// The secret's name.
    pub fn name(&self) -> &str {
        match self {
            SecretSource::Name(n) => n,
            SecretSource::Full { from, .. } => &from.value,
        }
    }

    /// How it is delivered (`env` unless `as: file`; an unknown `as` is refused earlier).
    pub fn delivery(&self) -> SecretDelivery {
        match self {
            SecretSource::Full {
                delivery: Some(d), ..
            } => SecretDelivery::parse(d.value.trim()).unwrap_or_default(),
            _ => SecretDelivery::Env,
        }
    }

    /// A reference to the current version of the secret.
    fn reference(&self) -> SecretRef {
        SecretRef::latest(self.name()).delivered(self.delivery())
    }
}

impl<'de> Deserialize<'de> for SecretSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        const EXPECTED: &str = "a secret name, or {from: secret-name, as: env | file}";
        impl<'de> de::Visitor<'de> for V {
            type Value = SecretSource;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(EXPECTED)
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<SecretSource, E> {
                Ok(SecretSource::Name(v.to_owned()))
            }

            fn visit_map<A: de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<SecretSource, A::Error> {
                let (mut from, mut delivery) = (None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "from" if from.is_none() => from = Some(map.next_value()?),
                        "as" if delivery.is_none() => delivery = Some(map.next_value()?),
                        "from" | "as" => return Err(de::Error::duplicate_field("from or as")),
                        other => return Err(de::Error::unknown_field(other, &["from", "as"])),
                    }
                }
                let from = from.ok_or_else(|| {
                    de::Error::custom(
                        "missing `from` (the secret's name): write {from: secret-name, as: env | file}",
                    )
                })?;
                Ok(SecretSource::Full { from, delivery })
            }
        }
        d.deserialize_any(V)
    }
}

/// `image.build:` — a directory holding a `Dockerfile`, a Dockerfile path (Copilot's
/// `build: ./api/Dockerfile`), or the full form.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Build {
    Path(String),
    Full(BuildFull),
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BuildFull {
    /// The build context (default: the Dockerfile's directory).
    #[serde(default)]
    pub context: Option<String>,
    /// The Dockerfile (default: `Dockerfile` in the context).
    #[serde(default)]
    pub dockerfile: Option<String>,
    /// `--build-arg`s.
    #[serde(default)]
    pub args: BTreeMap<String, String>,
    /// The stage to build (`--target`).
    #[serde(default)]
    pub target: Option<String>,
}

/// A service's build, resolved: paths are relative to the manifest's directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildSpec {
    pub context: String,
    /// Relative to `context`.
    pub dockerfile: String,
    pub args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub platform: Option<String>,
}

impl Build {
    /// Resolves the short and full forms. A short form whose last component looks like a
    /// Dockerfile (`Dockerfile`, `Dockerfile.dev`, `api.Dockerfile`) names the Dockerfile and
    /// its directory is the context; anything else names the context directory.
    pub fn resolve(&self, platform: Option<&str>) -> BuildSpec {
        fn is_dockerfile(path: &str) -> bool {
            let last = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
            last.starts_with("dockerfile") || last.ends_with(".dockerfile")
        }
        fn parent(path: &str) -> (String, String) {
            match path.rsplit_once('/') {
                Some((dir, file)) if !dir.is_empty() => (dir.to_owned(), file.to_owned()),
                Some((_, file)) => ("/".to_owned(), file.to_owned()),
                None => (".".to_owned(), path.to_owned()),
            }
        }
        let (context, dockerfile, args, target) = match self {
            Build::Path(p) if is_dockerfile(p) => {
                let (dir, file) = parent(p.trim_end_matches('/'));
                (dir, file, BTreeMap::new(), None)
            }
            Build::Path(p) => (
                p.trim_end_matches('/').to_owned(),
                "Dockerfile".to_owned(),
                BTreeMap::new(),
                None,
            ),
            Build::Full(f) => {
                let (context, dockerfile) = match (&f.context, &f.dockerfile) {
                    (Some(c), Some(d)) => {
                        // Copilot writes the Dockerfile relative to the manifest; make it
                        // relative to the context when it lies inside it.
                        let c = c.trim_end_matches('/').to_owned();
                        let d = d.trim_start_matches("./");
                        let cc = c.trim_start_matches("./");
                        let rel = if cc == "." || cc.is_empty() {
                            d.to_owned()
                        } else {
                            d.strip_prefix(&format!("{cc}/")).unwrap_or(d).to_owned()
                        };
                        (c, rel)
                    }
                    (Some(c), None) => (c.trim_end_matches('/').to_owned(), "Dockerfile".into()),
                    (None, Some(d)) => parent(d),
                    (None, None) => (".".to_owned(), "Dockerfile".to_owned()),
                };
                (context, dockerfile, f.args.clone(), f.target.clone())
            }
        };
        BuildSpec {
            context: if context.is_empty() {
                ".".into()
            } else {
                context
            },
            dockerfile,
            args,
            target,
            platform: platform.map(str::to_owned),
        }
    }
}

/// `http:` — routing and the HTTP health check of a Load Balanced Web Service.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Http {
    /// The ingress' path prefix routed to the service (default `/`; longest prefix wins).
    #[serde(default)]
    pub path: Option<String>,
    /// The HTTP health check: a path, or the full form.
    #[serde(default)]
    pub healthcheck: Option<HttpHealth>,
    /// Host names routed to the service (exact or `*.` wildcard).
    #[serde(default)]
    pub alias: Option<StringOrList>,
    /// Remove the path prefix before forwarding.
    #[serde(default)]
    pub strip_prefix: Option<bool>,
    /// How long stopping tasks may finish in-flight requests.
    #[serde(default)]
    pub deregistration_delay: Option<Dur>,
    /// Let this route take requests from another app's shorter route (e.g. `/users` under
    /// another app's `/`); without it such a deploy is refused.
    #[serde(default)]
    pub allow_shadowing: Option<bool>,
}

/// `http.healthcheck:` — a path, or the full form.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum HttpHealth {
    Path(String),
    Full(HttpHealthFull),
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpHealthFull {
    pub path: String,
    #[serde(default)]
    pub port: Option<Port>,
    #[serde(default)]
    pub success_codes: Option<String>,
    #[serde(default)]
    pub healthy_threshold: Option<Threshold>,
    #[serde(default)]
    pub unhealthy_threshold: Option<Threshold>,
    #[serde(default)]
    pub interval: Option<Dur>,
    #[serde(default)]
    pub timeout: Option<Dur>,
    #[serde(default)]
    pub grace_period: Option<Dur>,
}

/// `healthcheck:` — a container health check run by the engine.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContainerHealth {
    pub command: StringOrList,
    #[serde(default)]
    pub interval: Option<Dur>,
    #[serde(default)]
    pub timeout: Option<Dur>,
    #[serde(default)]
    pub retries: Option<Threshold>,
    #[serde(default)]
    pub start_period: Option<Dur>,
}

/// `deployment:` — rolling update and circuit breaker settings.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Deploy {
    /// Copilot's shorthand: `default` (min 100 / max 200) or `recreate` (min 0 / max 100).
    #[serde(default)]
    pub rolling: Option<Rolling>,
    #[serde(default)]
    pub minimum_healthy_percent: Option<Percent>,
    #[serde(default)]
    pub maximum_percent: Option<Percent>,
    #[serde(default)]
    pub rollback: Option<bool>,
    #[serde(default)]
    pub circuit_breaker: Option<bool>,
    #[serde(default)]
    pub failure_threshold: Option<Threshold>,
    #[serde(default)]
    pub timeout: Option<Dur>,
    /// How requests move to the new version: `rolling` (the default), `canary`, `linear`
    /// or `blue_green`.
    #[serde(default)]
    pub strategy: Option<StrategyName>,
    /// `strategy: canary`: the share of requests and how long it lasts (5 %, 10m).
    #[serde(default)]
    pub canary: Option<CanaryConf>,
    /// `strategy: linear`: the step and how long each lasts (10 %, 6m).
    #[serde(default)]
    pub linear: Option<LinearConf>,
    /// Watched time after the new version takes every request (default 0).
    #[serde(default)]
    pub bake: Option<Dur>,
    /// Keep a client on one version during a rollout, by a cookie (default true).
    #[serde(default)]
    pub sticky: Option<bool>,
    /// Judge the new version from the ingress' measurements (on by default for canary,
    /// linear, blue/green and a bake, on services with http routes).
    #[serde(default)]
    pub analysis: Option<AnalysisConf>,
}

/// `deployment.strategy`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StrategyName {
    Rolling,
    Canary,
    Linear,
    BlueGreen,
}

/// `deployment.canary`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CanaryConf {
    #[serde(default)]
    pub percent: Option<TrafficPercent>,
    #[serde(default)]
    pub bake: Option<Dur>,
}

/// `deployment.linear`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LinearConf {
    #[serde(default)]
    pub step_percent: Option<TrafficPercent>,
    #[serde(default)]
    pub bake: Option<Dur>,
}

/// `deployment.analysis`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnalysisConf {
    /// `false` turns analysis off (steps then advance on time alone).
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub interval: Option<Dur>,
    /// An absolute ceiling on the new version's error rate (`2%`, or a number of percent);
    /// default: the stable version's + 1 percentage point.
    #[serde(default)]
    pub max_error_rate: Option<Rate>,
    /// An absolute ceiling on the new version's p99 latency; default: 1.5 × stable's.
    #[serde(default)]
    pub max_p99: Option<Dur>,
    /// Fewer requests to the new version in an interval: inconclusive (default 20).
    #[serde(default)]
    pub min_requests: Option<u32>,
    /// Bad intervals in a row that roll back (default 3).
    #[serde(default)]
    pub failures: Option<Threshold>,
}

/// A rate in percent (`1.5%` or `1.5`), kept in basis points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate(pub u32);

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(f64),
            Text(String),
        }
        let v = match Raw::deserialize(d)? {
            Raw::Num(n) => Some(n),
            Raw::Text(t) => t.trim().trim_end_matches('%').trim().parse::<f64>().ok(),
        };
        match v {
            Some(p) if (0.0..=100.0).contains(&p) => Ok(Rate((p * 100.0).round() as u32)),
            _ => Err(de::Error::custom(
                "a rate must be a percentage between 0 and 100, like 1% or 0.5%",
            )),
        }
    }
}

impl JsonSchema for Rate {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Rate".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "a percentage, like 1% or 0.5",
            "type": ["string", "number"],
        })
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Rolling {
    Default,
    Recreate,
}

/// `environments.NAME:` — per-environment overrides.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    #[serde(default)]
    pub services: BTreeMap<String, Override>,
}

/// What an environment may change in a service.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Override {
    #[serde(default)]
    pub count: Option<Count>,
    #[serde(default)]
    pub cpu: Option<Cpu>,
    #[serde(default)]
    pub memory: Option<Memory>,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, SecretSource>")]
    pub secrets: BTreeMap<String, serde_saphyr::Spanned<SecretSource>>,
    #[serde(default)]
    pub http: Option<OverrideHttp>,
    #[serde(default)]
    pub deployment: Option<Deploy>,
    /// Replaces the service's image source (`location` or `build`) in this environment.
    #[serde(default)]
    #[schemars(with = "Option<OverrideImage>")]
    pub image: Option<serde_saphyr::Spanned<OverrideImage>>,
    /// How long a task may take to stop before it is killed, in this environment.
    #[serde(default)]
    pub stop_timeout: Option<Dur>,
}

/// What an environment may change in a service's `http:`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OverrideHttp {
    /// Replaces the service's host names in this environment.
    #[serde(default)]
    pub alias: Option<StringOrList>,
}

/// Service type, with Copilot's names and short aliases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind(pub ServiceKind);

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let kind = match s.to_ascii_lowercase().as_str() {
            "load balanced web service" | "lb" | "lbws" | "web" => {
                ServiceKind::LoadBalancedWebService
            }
            "backend service" | "backend" => ServiceKind::BackendService,
            "worker service" | "worker" => ServiceKind::WorkerService,
            "scheduled job" | "job" => ServiceKind::ScheduledJob,
            _ => {
                return Err(de::Error::custom(format!(
                    "unknown service type {s:?}; use \"Load Balanced Web Service\" (web), \"Backend Service\" (backend), \"Worker Service\" (worker) or \"Scheduled Job\" (job)"
                )));
            }
        };
        Ok(Kind(kind))
    }
}

/// A string or a list of strings (`command: "a b"` or `command: [a, b]`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(untagged)]
pub enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl StringOrList {
    /// The items as written (a single string is one item).
    pub fn into_list(self) -> Vec<String> {
        match self {
            StringOrList::One(s) => vec![s],
            StringOrList::Many(v) => v,
        }
    }

    pub(crate) fn into_vec(self) -> Vec<String> {
        match self {
            StringOrList::One(s) => s.split_whitespace().map(str::to_owned).collect(),
            StringOrList::Many(v) => v,
        }
    }
}

macro_rules! ranged {
    ($(#[$doc:meta])* $name:ident, $lo:expr, $hi:expr, $what:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name(pub u32);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let v = i64::deserialize(d)?;
                if !($lo..=$hi).contains(&v) {
                    return Err(de::Error::custom(format!(
                        "{} must be between {} and {}, got {}",
                        $what, $lo, $hi, v
                    )));
                }
                Ok($name(v as u32))
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "description": format!("{}: {} to {}", $what, $lo, $hi),
                    "type": "integer",
                    "minimum": $lo,
                    "maximum": $hi,
                })
            }
        }
    };
}

ranged!(
    /// Desired number of tasks.
    Count, 0, 1000, "count");
ranged!(
    /// A TCP port.
    Port, 1, 65535, "port");
ranged!(
    /// CPU units (1024 = one core).
    Cpu, 1, 1024 * 64, "cpu (CPU units, 1024 = one core)");
ranged!(
    /// Memory in MiB (Docker refuses less than 6 MiB).
    Memory, 6, 1024 * 1024, "memory (MiB)");
ranged!(
    /// A percentage of the desired count.
    Percent, 0, 1000, "percent");
ranged!(
    /// How many times a failed run of a Scheduled Job is run again.
    JobRetries, 0, crate::model::MAX_JOB_RETRIES as i64, "retries");
ranged!(
    /// A share of requests, in percent.
    TrafficPercent, 1, 100, "percent");
ranged!(
    /// A count of checks or failures.
    Threshold, 1, 200, "threshold");

/// A duration written as `500ms`, `2s`, `1m` or a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(s) => Ok(Dur(Duration::from_secs(s))),
            Raw::Text(t) => humantime::parse_duration(t.trim()).map(Dur).map_err(|e| {
                de::Error::custom(format!(
                    "invalid duration {t:?} ({e}); write it like 500ms, 10s or 5m"
                ))
            }),
        }
    }
}

impl Dur {
    fn ms(self) -> u64 {
        self.0.as_millis().min(u128::from(u64::MAX)) as u64
    }
}

/// Default HTTP health check: fast enough for quick deploys, tolerant of one slow answer.
pub const HTTP_HEALTH_INTERVAL_MS: u64 = 1000;
pub const HTTP_HEALTH_TIMEOUT_MS: u64 = 1000;
pub const HTTP_HEALTHY_THRESHOLD: u32 = 2;
pub const HTTP_UNHEALTHY_THRESHOLD: u32 = 3;
pub const DEFAULT_STOP_TIMEOUT_MS: u64 = 30_000;
/// ALB's default is 300 s; draining ends as soon as a task is idle, so a shorter bound suits
/// fast deploys without cutting real requests short.
pub const DEFAULT_DEREGISTRATION_DELAY_MS: u64 = 30_000;

/// Parses manifest text. Errors carry the line and column of the offending node.
pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
    let manifest: Manifest = serde_saphyr::from_str(text).map_err(yaml_error)?;
    manifest.validate()?;
    Ok(manifest)
}

/// A YAML parser's error as a [`ManifestError`], placed where the parser says.
pub(crate) fn yaml_error(e: serde_saphyr::Error) -> ManifestError {
    let message = clean_message(&e.without_snippet().to_string());
    match e.location() {
        Some(loc) => ManifestError::at(loc, message),
        None => ManifestError::unplaced(message),
    }
}

/// serde-saphyr renders "at line X column Y" into its messages; we print the place once, in
/// front, so drop it from the text.
fn clean_message(msg: &str) -> String {
    let first = msg.lines().next().unwrap_or(msg).trim();
    let stripped = match first.find(" at line ") {
        Some(i) => &first[..i],
        None => first,
    };
    let stripped = stripped.trim_start_matches("error: ").trim();
    if stripped.is_empty() {
        first.to_owned()
    } else {
        stripped.to_owned()
    }
}

/// A JSON rendering of a manifest error, for `--json` output.
#[derive(Debug, Serialize)]
pub struct ErrorReport<'a> {
    pub file: &'a str,
    pub line: Option<u64>,
    pub column: Option<u64>,
    pub message: &'a str,
}

#[cfg(test)]
mod tests;
