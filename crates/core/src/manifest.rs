//! The `slipway.yml` manifest: parsing, validation and compilation into [`ServiceSpec`]s.
//!
//! Field names follow AWS Copilot's where Copilot has one (`type`, `image.location`,
//! `image.port`, `http.path`, `http.healthcheck`, `count`, `cpu`, `memory`, `variables`,
//! `command`, `deployment`, `environments`). Unknown fields are errors, and every error
//! carries the line and column it refers to, so the CLI can print `file:line:column`.
//!
//! Range checks live in the `Deserialize` impls of small newtypes ([`Count`], [`Port`], ...)
//! so that the YAML parser attaches the location of the offending value to the message.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

mod fields;
pub use fields::{On, OverrideImage, Storage, VolumeDef};

use crate::model::{
    CircuitBreaker, CommandHealthCheck, ContainerSpec, DeploymentConfig, HttpHealthCheck,
    HttpRoute, PullPolicy, SecretDelivery, SecretRef, ServiceKey, ServiceKind, ServiceSpec,
    validate_name,
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

impl Manifest {
    fn validate(&self) -> Result<(), ManifestError> {
        validate_name(&self.app.value)
            .map_err(|m| ManifestError::at(self.app.referenced, format!("app: {m}")))?;
        if self.services.is_empty() {
            return Err(ManifestError::at(
                self.app.referenced,
                "services: the manifest declares no service",
            ));
        }
        for (name, svc) in &self.services {
            validate_name(name)
                .map_err(|m| ManifestError::unplaced(format!("services.{name}: {m}")))?;
            let image = &svc.image.value;
            let loc = svc.image.referenced;
            match (&image.location, &image.build) {
                (Some(_), Some(_)) => {
                    return Err(ManifestError::at(
                        loc,
                        format!(
                            "services.{name}.image: give either location (an image to pull) or build (a Dockerfile to build), not both"
                        ),
                    ));
                }
                (None, None) => {
                    return Err(ManifestError::at(
                        loc,
                        format!(
                            "services.{name}.image needs location (an image to pull, e.g. registry/repo:tag) or build (a directory with a Dockerfile, e.g. ./{name})"
                        ),
                    ));
                }
                (Some(l), None) if l.value.trim().is_empty() => {
                    return Err(ManifestError::at(
                        l.referenced,
                        format!("services.{name}.image.location is empty"),
                    ));
                }
                (None, Some(b)) => check_build(name, b)?,
                _ => {}
            }
            if let Some(p) = &svc.platform {
                check_platform(&p.value).map_err(|m| {
                    ManifestError::at(p.referenced, format!("services.{name}.platform: {m}"))
                })?;
            }
            if let Some(p) = &svc.placement {
                crate::placement::validate(&p.value).map_err(|m| {
                    ManifestError::at(p.referenced, format!("services.{name}.placement: {m}"))
                })?;
            }
            if svc.kind.0 == ServiceKind::LoadBalancedWebService && image.port.is_none() {
                return Err(ManifestError::at(
                    loc,
                    format!(
                        "services.{name}: a Load Balanced Web Service needs image.port (the port the container listens on)"
                    ),
                ));
            }
            check_secrets(name, &svc.secrets, &svc.variables)?;
            check_secret_mount(name, svc, &svc.secrets)?;
            fields::check_service(name, svc, &self.services)?;
            if let Some(h) = &svc.http {
                check_aliases(&format!("services.{name}.http.alias"), h.alias.as_ref())?;
                if let Some(p) = &h.path
                    && !p.starts_with('/')
                {
                    return Err(ManifestError::unplaced(format!(
                        "services.{name}.http.path must start with '/', got {p:?}"
                    )));
                }
                if let Some(hc) = &h.healthcheck {
                    let path = match hc {
                        HttpHealth::Path(p) => p,
                        HttpHealth::Full(f) => &f.path,
                    };
                    if !path.starts_with('/') {
                        return Err(ManifestError::unplaced(format!(
                            "services.{name}.http.healthcheck must be a path starting with '/', got {path:?}"
                        )));
                    }
                    if image.port.is_none()
                        && !matches!(hc, HttpHealth::Full(HttpHealthFull { port: Some(_), .. }))
                    {
                        return Err(ManifestError::unplaced(format!(
                            "services.{name}.http.healthcheck needs image.port (or healthcheck.port) to probe"
                        )));
                    }
                    if let HttpHealth::Full(HttpHealthFull {
                        success_codes: Some(codes),
                        ..
                    }) = hc
                    {
                        parse_success_codes(codes).map_err(|m| {
                            ManifestError::unplaced(format!(
                                "services.{name}.http.healthcheck.success_codes: {m}"
                            ))
                        })?;
                    }
                }
            }
            if let Some(d) = &svc.deployment {
                check_deploy(name, d, svc.http.is_some())?;
            }
            for k in svc.variables.keys() {
                check_var_name(name, k)?;
            }
        }
        for (env, e) in &self.environments {
            validate_name(env)
                .map_err(|m| ManifestError::unplaced(format!("environments.{env}: {m}")))?;
            for (svc, o) in &e.services {
                if !self.services.contains_key(svc) {
                    return Err(ManifestError::unplaced(format!(
                        "environments.{env}.services.{svc}: no service named {svc:?} is declared under services:"
                    )));
                }
                if let Some(d) = &o.deployment {
                    check_deploy(svc, d, self.services[svc].http.is_some())?;
                }
                fields::check_override(env, svc, o)?;
                for k in o.variables.keys() {
                    check_var_name(svc, k)?;
                }
                let mut vars = self.services[svc].variables.clone();
                vars.extend(o.variables.clone());
                check_secrets(svc, &o.secrets, &vars)?;
                check_secret_mount(svc, &self.services[svc], &o.secrets)?;
                if let Some(h) = &o.http {
                    if self.services[svc].kind.0 != ServiceKind::LoadBalancedWebService {
                        return Err(ManifestError::unplaced(format!(
                            "environments.{env}.services.{svc}.http: only a Load Balanced Web Service has http routes"
                        )));
                    }
                    check_aliases(
                        &format!("environments.{env}.services.{svc}.http.alias"),
                        h.alias.as_ref(),
                    )?;
                }
            }
        }
        fields::check_cycles(&self.services)?;
        Ok(())
    }

    /// Compiles the services of one environment into specs.
    pub fn compile(&self, env: &str) -> Result<Vec<ServiceSpec>, ManifestError> {
        validate_name(env).map_err(|m| ManifestError::unplaced(format!("environment: {m}")))?;
        let overrides = match self.environments.get(env) {
            Some(e) => Some(e),
            None if env == DEFAULT_ENV => None,
            None => {
                let known: Vec<&str> = self.environments.keys().map(String::as_str).collect();
                return Err(ManifestError::unplaced(format!(
                    "environment {env:?} is not declared under environments: (declared: {}); add it or use --env {DEFAULT_ENV}",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                )));
            }
        };
        let mut out = Vec::new();
        for (name, svc) in &self.services {
            let ov = overrides.and_then(|e| e.services.get(name));
            out.push(compile_service(&self.app.value, env, name, svc, ov));
        }
        Ok(out)
    }
}

impl Manifest {
    /// The build of a service whose image is built from source (`image.build`).
    pub fn build_of(&self, service: &str) -> Option<BuildSpec> {
        self.build_in(DEFAULT_ENV, service)
    }

    /// The build of a service in an environment: the environment's `image` override wins.
    pub fn build_in(&self, env: &str, service: &str) -> Option<BuildSpec> {
        let svc = self.services.get(service)?;
        let ov = self
            .environments
            .get(env)
            .and_then(|e| e.services.get(service))
            .and_then(|o| o.image.as_ref());
        let b = match ov {
            Some(o) => o.value.build.as_ref()?,
            None => svc.image.value.build.as_ref()?,
        };
        Some(
            b.value
                .resolve(svc.platform.as_ref().map(|p| p.value.as_str())),
        )
    }

    /// An error about a service's secret reference (`VARIABLE: name`), placed where the
    /// reference is written (an environment's override wins).
    pub fn secret_error(
        &self,
        env: &str,
        service: &str,
        var: &str,
        message: &str,
    ) -> ManifestError {
        let from_env = self
            .environments
            .get(env)
            .and_then(|e| e.services.get(service))
            .and_then(|o| o.secrets.get(var));
        let message = format!("services.{service}.secrets.{var}: {message}");
        match from_env.or_else(|| self.services.get(service)?.secrets.get(var)) {
            Some(s) => match &s.value {
                SecretSource::Full { from, .. } => ManifestError::at(from.referenced, message),
                SecretSource::Name(_) => ManifestError::at(s.referenced, message),
            },
            None => ManifestError::unplaced(message),
        }
    }
}

fn check_aliases(field: &str, alias: Option<&StringOrList>) -> Result<(), ManifestError> {
    for alias in alias
        .cloned()
        .map(StringOrList::into_list)
        .unwrap_or_default()
    {
        let bare = alias.strip_prefix("*.").unwrap_or(&alias);
        let ok = !bare.is_empty()
            && bare
                .split('.')
                .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        if !ok {
            return Err(ManifestError::unplaced(format!(
                "{field}: {alias:?} is not a host name (or a '*.' wildcard)"
            )));
        }
    }
    Ok(())
}

fn check_build(name: &str, b: &serde_saphyr::Spanned<Build>) -> Result<(), ManifestError> {
    let at =
        |m: String| ManifestError::at(b.referenced, format!("services.{name}.image.build: {m}"));
    match &b.value {
        Build::Path(p) if p.trim().is_empty() => Err(at("the path is empty".into())),
        Build::Path(_) => Ok(()),
        Build::Full(f) => {
            for k in f.args.keys() {
                let ok = !k.is_empty()
                    && !k.starts_with(|c: char| c.is_ascii_digit())
                    && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !ok {
                    return Err(at(format!(
                        "args: {k:?} is not a valid build argument name"
                    )));
                }
            }
            if f.context.as_deref().is_some_and(|c| c.trim().is_empty())
                || f.dockerfile.as_deref().is_some_and(|d| d.trim().is_empty())
            {
                return Err(at("context and dockerfile must not be empty".into()));
            }
            Ok(())
        }
    }
}

/// `os/arch[/variant]`, as Docker writes platforms.
pub fn check_platform(p: &str) -> Result<(), String> {
    let parts: Vec<&str> = p.split('/').collect();
    let ok = (2..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|x| !x.is_empty() && x.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{p:?} is not a platform; write it as os/arch, e.g. linux/amd64 or linux/arm64"
        ))
    }
}

/// Secret names: letters, digits and `/ _ . -` (e.g. `shop/db-password`).
pub fn check_secret_name(n: &str) -> Result<(), String> {
    let ok = !n.is_empty()
        && n.len() <= 200
        && !n.starts_with('/')
        && !n.ends_with('/')
        && !n.contains("//")
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{n:?} is not a secret name (letters, digits, '/', '_', '.', '-', e.g. shop/db-password)"
        ))
    }
}

fn check_secrets(
    svc: &str,
    secrets: &BTreeMap<String, serde_saphyr::Spanned<SecretSource>>,
    variables: &BTreeMap<String, String>,
) -> Result<(), ManifestError> {
    for (var, source) in secrets {
        let field = format!("services.{svc}.secrets.{var}");
        let at = |loc, m: String| ManifestError::at(loc, format!("{field}: {m}"));
        check_var_name(svc, var)?;
        let name_at = match &source.value {
            SecretSource::Name(_) => source.referenced,
            SecretSource::Full { from, delivery } => {
                if let Some(d) = delivery
                    && SecretDelivery::parse(d.value.trim()).is_none()
                {
                    return Err(at(
                        d.referenced,
                        format!(
                            "as: {:?} is not a way to deliver a secret; write `as: file` (the file /run/secrets/{var}) or `as: env` (the environment variable {var})",
                            d.value
                        ),
                    ));
                }
                from.referenced
            }
        };
        check_secret_name(source.value.name()).map_err(|m| at(name_at, m))?;
        if source.value.delivery() == SecretDelivery::Env && variables.contains_key(var) {
            return Err(at(
                name_at,
                format!(
                    "{var} is also set under variables; a variable comes from one place, remove one of them"
                ),
            ));
        }
    }
    Ok(())
}

/// File secrets are mounted at `/run/secrets`: no volume may take that place.
fn check_secret_mount(
    svc: &str,
    service: &Service,
    secrets: &BTreeMap<String, serde_saphyr::Spanned<SecretSource>>,
) -> Result<(), ManifestError> {
    let Some((var, source)) = secrets
        .iter()
        .find(|(_, s)| s.value.delivery() == SecretDelivery::File)
    else {
        return Ok(());
    };
    let dir = crate::model::SECRET_FILES_DIR;
    for (vol, v) in service.storage.iter().flat_map(|s| s.volumes.iter()) {
        let path = v.path.trim().trim_end_matches('/');
        if path == dir || path.starts_with(&format!("{dir}/")) {
            return Err(ManifestError::at(
                source.referenced,
                format!(
                    "services.{svc}.secrets.{var}: file secrets are mounted at {dir}, where volume {vol} is mounted ({}); move the volume elsewhere",
                    v.path.trim()
                ),
            ));
        }
    }
    Ok(())
}

fn check_var_name(svc: &str, k: &str) -> Result<(), ManifestError> {
    let ok = !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ManifestError::unplaced(format!(
            "services.{svc}.variables: {k:?} is not a valid environment variable name (letters, digits, '_')"
        )))
    }
}

fn check_deploy(name: &str, d: &Deploy, has_http: bool) -> Result<(), ManifestError> {
    if d.analysis
        .as_ref()
        .is_some_and(|a| a.enabled != Some(false))
        && !has_http
    {
        return Err(ManifestError::unplaced(format!(
            "services.{name}.deployment.analysis: analysis measures requests through the ingress, and this service has no http routes; remove analysis or add http:"
        )));
    }
    let prog = progressive(d, has_http);
    prog.validate(deploy_timeout_ms(d, &prog), has_http)
        .map_err(|m| ManifestError::unplaced(format!("services.{name}.deployment: {m}")))?;
    let (min, max) = percents(d);
    if min > 100 {
        return Err(ManifestError::unplaced(format!(
            "services.{name}.deployment.minimum_healthy_percent must be at most 100, got {min}"
        )));
    }
    if max < 100 {
        return Err(ManifestError::unplaced(format!(
            "services.{name}.deployment.maximum_percent must be at least 100, got {max}"
        )));
    }
    if min == 100 && max == 100 {
        return Err(ManifestError::unplaced(format!(
            "services.{name}.deployment: minimum_healthy_percent 100 with maximum_percent 100 lets a deploy neither start nor stop a task; raise maximum_percent or lower minimum_healthy_percent"
        )));
    }
    Ok(())
}

/// The deployment timeout: as written, else 10 minutes beyond the rollout's bake times.
fn deploy_timeout_ms(d: &Deploy, prog: &crate::rollout::Progressive) -> u64 {
    d.timeout
        .map_or_else(|| DeploymentConfig::default_timeout_ms(prog), Dur::ms)
}

/// The progressive delivery settings a `deployment:` block asks for.
fn progressive(d: &Deploy, has_http: bool) -> crate::rollout::Progressive {
    use crate::rollout::{self as r, Strategy};
    let strategy = match d.strategy.unwrap_or(StrategyName::Rolling) {
        StrategyName::Rolling => Strategy::Rolling,
        StrategyName::Canary => {
            let c = d.canary.clone().unwrap_or_default();
            Strategy::Canary {
                percent: c.percent.map_or(r::CANARY_PERCENT, |p| p.0),
                bake_ms: c.bake.map_or(r::CANARY_BAKE_MS, Dur::ms),
            }
        }
        StrategyName::Linear => {
            let l = d.linear.clone().unwrap_or_default();
            Strategy::Linear {
                step_percent: l.step_percent.map_or(r::LINEAR_STEP_PERCENT, |p| p.0),
                bake_ms: l.bake.map_or(r::LINEAR_BAKE_MS, Dur::ms),
            }
        }
        StrategyName::BlueGreen => Strategy::BlueGreen,
    };
    let bake_ms = d.bake.map_or(0, Dur::ms);
    let wanted = match &d.analysis {
        Some(a) => a.enabled != Some(false),
        None => r::analysis_by_default(&strategy, bake_ms, has_http),
    };
    let analysis = wanted.then(|| {
        let a = d.analysis.clone().unwrap_or_default();
        let def = r::Analysis::default();
        r::Analysis {
            interval_ms: a.interval.map_or(def.interval_ms, Dur::ms),
            max_error_rate_bp: a.max_error_rate.map(|x| x.0),
            max_p99_ms: a.max_p99.map(Dur::ms),
            min_requests: a.min_requests.unwrap_or(def.min_requests),
            failures: a.failures.map_or(def.failures, |f| f.0),
        }
    });
    r::Progressive {
        strategy,
        bake_ms,
        analysis,
        sticky: d.sticky.unwrap_or(true),
    }
}

fn percents(d: &Deploy) -> (u32, u32) {
    let (dmin, dmax) = match d.rolling {
        Some(Rolling::Recreate) => (0, 100),
        _ => (100, 200),
    };
    (
        d.minimum_healthy_percent.map_or(dmin, |p| p.0),
        d.maximum_percent.map_or(dmax, |p| p.0),
    )
}

/// Parses ALB-style matchers: `200`, `200,204`, `200-299`.
pub fn parse_success_codes(s: &str) -> Result<Vec<(u16, u16)>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        let parse = |x: &str| -> Result<u16, String> {
            x.trim()
                .parse::<u16>()
                .ok()
                .filter(|c| (100..=599).contains(c))
                .ok_or_else(|| format!("{x:?} is not an HTTP status code (100-599)"))
        };
        let range = match part.split_once('-') {
            Some((a, b)) => (parse(a)?, parse(b)?),
            None => {
                let c = parse(part)?;
                (c, c)
            }
        };
        if range.0 > range.1 {
            return Err(format!("range {part:?} is reversed"));
        }
        out.push(range);
    }
    Ok(out)
}

fn compile_service(
    app: &str,
    env: &str,
    name: &str,
    svc: &Service,
    ov: Option<&Override>,
) -> ServiceSpec {
    let mut environment = svc.variables.clone();
    let mut secrets: BTreeMap<String, SecretRef> = svc
        .secrets
        .iter()
        .map(|(k, v)| (k.clone(), v.value.reference()))
        .collect();
    if let Some(o) = ov {
        environment.extend(o.variables.clone());
        for (k, v) in &o.secrets {
            let r = v.value.reference();
            if r.delivery == SecretDelivery::Env {
                environment.remove(k);
            }
            secrets.insert(k.clone(), r);
        }
        // An environment's variable replaces a secret variable of the same name (a file
        // secret is no variable).
        for k in o.variables.keys() {
            if secrets
                .get(k)
                .is_some_and(|r| r.delivery == SecretDelivery::Env)
            {
                secrets.remove(k);
            }
        }
    }
    let image = &svc.image.value;
    let deploy = ov
        .and_then(|o| o.deployment.clone())
        .or_else(|| svc.deployment.clone())
        .unwrap_or_default();
    let (min, max) = percents(&deploy);
    let prog = progressive(&deploy, svc.http.is_some());
    let grace = svc
        .http
        .as_ref()
        .and_then(|h| match &h.healthcheck {
            Some(HttpHealth::Full(f)) => f.grace_period,
            _ => None,
        })
        .map_or(0, Dur::ms);
    let deployment = DeploymentConfig {
        minimum_healthy_percent: min,
        maximum_percent: max,
        circuit_breaker: CircuitBreaker {
            enable: deploy.circuit_breaker.unwrap_or(true),
            rollback: deploy.rollback.unwrap_or(true),
            threshold: deploy.failure_threshold.map(|t| t.0),
        },
        health_check_grace_period_ms: grace,
        timeout_ms: deploy_timeout_ms(&deploy, &prog),
        progressive: prog,
    };
    let http_health = svc
        .http
        .as_ref()
        .and_then(|h| h.healthcheck.as_ref())
        .map(|hc| match hc {
            HttpHealth::Path(p) => HttpHealthCheck {
                path: p.clone(),
                port: None,
                interval_ms: HTTP_HEALTH_INTERVAL_MS,
                timeout_ms: HTTP_HEALTH_TIMEOUT_MS,
                healthy_threshold: HTTP_HEALTHY_THRESHOLD,
                unhealthy_threshold: HTTP_UNHEALTHY_THRESHOLD,
                success_codes: vec![(200, 399)],
            },
            HttpHealth::Full(f) => HttpHealthCheck {
                path: f.path.clone(),
                port: f.port.map(|p| p.0 as u16),
                interval_ms: f.interval.map_or(HTTP_HEALTH_INTERVAL_MS, Dur::ms).max(100),
                timeout_ms: f.timeout.map_or(HTTP_HEALTH_TIMEOUT_MS, Dur::ms).max(50),
                healthy_threshold: f.healthy_threshold.map_or(HTTP_HEALTHY_THRESHOLD, |t| t.0),
                unhealthy_threshold: f
                    .unhealthy_threshold
                    .map_or(HTTP_UNHEALTHY_THRESHOLD, |t| t.0),
                success_codes: f
                    .success_codes
                    .as_deref()
                    .map(|c| parse_success_codes(c).unwrap_or_else(|_| vec![(200, 399)]))
                    .unwrap_or_else(|| vec![(200, 399)]),
            },
        });
    let healthcheck = svc.healthcheck.as_ref().map(|h| {
        let test = match &h.command {
            StringOrList::One(s) => vec!["CMD-SHELL".to_owned(), s.clone()],
            StringOrList::Many(v) if v.first().is_some_and(|f| f == "CMD" || f == "CMD-SHELL") => {
                v.clone()
            }
            StringOrList::Many(v) => std::iter::once("CMD".to_owned())
                .chain(v.iter().cloned())
                .collect(),
        };
        CommandHealthCheck {
            test,
            interval_ms: h.interval.map_or(2000, Dur::ms),
            timeout_ms: h.timeout.map_or(2000, Dur::ms),
            retries: h.retries.map_or(3, |t| t.0),
            start_period_ms: h.start_period.map_or(0, Dur::ms),
        }
    });
    ServiceSpec {
        key: ServiceKey::new(app, env, name),
        kind: svc.kind.0,
        desired_count: if svc.kind.0 == ServiceKind::ScheduledJob {
            Some(0)
        } else {
            ov.and_then(|o| o.count).or(svc.count).map(|c| c.0)
        },
        container: ContainerSpec {
            // A built image is named by `slipway deploy` once it is pushed.
            image: match ov.and_then(|o| o.image.as_ref()) {
                Some(o) => o.value.location.as_ref(),
                None => image.location.as_ref(),
            }
            .map(|l| l.value.trim().to_owned())
            .unwrap_or_default(),
            image_digest: None,
            pull: image.pull.unwrap_or_default(),
            port: image.port.map(|p| p.0 as u16),
            secrets,
            command: svc.command.clone().map(StringOrList::into_vec),
            environment,
            cpu: ov.and_then(|o| o.cpu).or(svc.cpu).map(|c| c.0),
            memory: ov.and_then(|o| o.memory).or(svc.memory).map(|m| m.0),
            healthcheck,
            http_health,
            stop_timeout_ms: ov
                .and_then(|o| o.stop_timeout)
                .or(svc.stop_timeout)
                .map_or(DEFAULT_STOP_TIMEOUT_MS, Dur::ms),
            init: svc.init.unwrap_or(false),
            http_route: (svc.kind.0 == ServiceKind::LoadBalancedWebService).then(|| {
                let h = svc.http.as_ref();
                HttpRoute {
                    path: h
                        .and_then(|h| h.path.clone())
                        .unwrap_or_else(|| "/".to_owned()),
                    aliases: ov
                        .and_then(|o| o.http.as_ref())
                        .and_then(|h| h.alias.clone())
                        .or_else(|| h.and_then(|h| h.alias.clone()))
                        .map(StringOrList::into_list)
                        .unwrap_or_default(),
                    strip_prefix: h.and_then(|h| h.strip_prefix).unwrap_or(false),
                    deregistration_delay_ms: h
                        .and_then(|h| h.deregistration_delay)
                        .map_or(DEFAULT_DEREGISTRATION_DELAY_MS, Dur::ms),
                    allow_shadowing: h.and_then(|h| h.allow_shadowing).unwrap_or(false),
                    target_group: None,
                    more_paths: Vec::new(),
                }
            }),
            entrypoint: svc.entrypoint.clone().map(StringOrList::into_vec),
            user: svc.user.as_ref().map(|u| u.value.trim().to_owned()),
            volumes: fields::volumes(svc),
            job: fields::job(svc),
            depends_on: svc
                .depends_on
                .as_ref()
                .map(|d| d.value.clone())
                .unwrap_or_default(),
        },
        deployment,
        placement: svc
            .placement
            .as_ref()
            .map(|p| p.value.clone())
            .unwrap_or_default(),
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
