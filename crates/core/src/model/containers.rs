//! The containers of a multi-container task: sidecars beside the main container, the
//! order they start in (`dependsOn` with START / COMPLETE / SUCCESS / HEALTHY), which of
//! them end the task when they stop (`essential`), mounts taken from another container of
//! the task (`volumesFrom`; named volumes are shared by naming them), and the FireLens log
//! router that receives a container's output.
//!
//! Pure: types, their checks and the start order. The runtime creates and starts the
//! containers in [`start_order`]; the controller judges a task by its essential containers.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::ContainerSpec;

/// Default name of the task's main container: the service's name.
pub fn main_container_name<'a>(c: &'a ContainerSpec, service: &'a str) -> &'a str {
    c.name.as_deref().unwrap_or(service)
}

/// A container of a task besides its main one (ECS `containerDefinitions[1..]`, Copilot's
/// `sidecars`). Its `container` holds what every container has (image, command,
/// environment, secrets, limits, health check, `container_depends_on`, mounts, logging);
/// what only a service has (routes, HTTP health, service dependencies, a schedule) stays
/// unset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sidecar {
    pub name: String,
    /// Its stop stops the task (ECS `essential`, default true). A non-essential sidecar may
    /// exit (a migration, a one-shot setup) and the task keeps running.
    pub essential: bool,
    /// Set on the task's log router (ECS `firelensConfiguration`, Copilot `logging`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firelens: Option<Firelens>,
    pub container: ContainerSpec,
}

/// A container that must reach a condition before another starts (ECS `dependsOn`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerDependency {
    pub container: String,
    pub condition: DependencyCondition,
}

/// ECS's dependency conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DependencyCondition {
    /// The container has started.
    Start,
    /// The container ran to completion (any exit code); only for a non-essential container.
    Complete,
    /// The container exited with code 0; only for a non-essential container.
    Success,
    /// The container's health check passed; it must have one.
    Healthy,
}

impl DependencyCondition {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Start => "START",
            Self::Complete => "COMPLETE",
            Self::Success => "SUCCESS",
            Self::Healthy => "HEALTHY",
        }
    }

    /// Parses ECS's (upper case) or Copilot's (lower case) spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "START" => Some(Self::Start),
            "COMPLETE" => Some(Self::Complete),
            "SUCCESS" => Some(Self::Success),
            "HEALTHY" => Some(Self::Healthy),
            _ => None,
        }
    }
}

/// Every mount of another container of the task (ECS `volumesFrom`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumesFrom {
    pub source_container: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

/// The task's log router (ECS `firelensConfiguration`): it listens for Fluentd's `forward`
/// protocol on [`FORWARD_PORT`]; containers whose [`ContainerSpec::logging`] is set send
/// their stdout and stderr to it through the engine's `fluentd` log driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Firelens {
    /// `fluentbit` or `fluentd`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// The port a log router listens on for the `forward` protocol (Fluent Bit's and Fluentd's
/// default).
pub const FORWARD_PORT: u16 = 24224;

/// A container's output sent to the task's log router (ECS `logConfiguration` with the
/// `awsfirelens` driver). The options are the router's (`Name`, `Host`, ...): they travel
/// with each record's tag, as FireLens does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRouting {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// Upper bound of a task's containers (ECS's limit).
pub const MAX_CONTAINERS: usize = 10;

/// Checks a container's name: letters, digits, `-` and `_`, at most 64.
pub fn validate_container_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "container name {name:?} must be 1 to 64 letters, digits, '-' or '_'"
        ))
    }
}

/// One container of a task as the start order sees it.
#[derive(Debug, Clone, Copy)]
pub struct Member<'a> {
    pub name: &'a str,
    pub essential: bool,
    pub spec: &'a ContainerSpec,
    /// The task's main container (the one the service's routes and health are about).
    pub main: bool,
    pub firelens: Option<&'a Firelens>,
}

/// Every container of a task, the main one first.
pub fn members<'a>(c: &'a ContainerSpec, service: &'a str) -> Vec<Member<'a>> {
    let mut out = vec![Member {
        name: main_container_name(c, service),
        essential: true,
        spec: c,
        main: true,
        firelens: None,
    }];
    out.extend(c.sidecars.iter().map(|s| Member {
        name: &s.name,
        essential: s.essential,
        spec: &s.container,
        main: false,
        firelens: s.firelens.as_ref(),
    }));
    out
}

/// The log router of a task, if it has one.
pub fn log_router(c: &ContainerSpec) -> Option<&Sidecar> {
    c.sidecars.iter().find(|s| s.firelens.is_some())
}

/// The dependencies of a member, with the implicit one ECS adds: a container whose output
/// goes to the log router starts after the router has started.
pub fn dependencies_of(task: &ContainerSpec, m: &Member<'_>) -> Vec<ContainerDependency> {
    let mut deps = m.spec.container_depends_on.clone();
    if m.spec.logging.is_some()
        && let Some(router) = log_router(task)
        && router.name != m.name
        && !deps.iter().any(|d| d.container == router.name)
    {
        deps.push(ContainerDependency {
            container: router.name.clone(),
            condition: DependencyCondition::Start,
        });
    }
    deps
}

/// The order a task's containers start in: each after the containers it depends on, else
/// in their written order (the main container first among equals). Its reverse is the stop
/// order. Errors name a cycle or an unknown container.
pub fn start_order<'a>(c: &'a ContainerSpec, service: &'a str) -> Result<Vec<&'a str>, String> {
    let ms = members(c, service);
    let names: Vec<&str> = ms.iter().map(|m| m.name).collect();
    let deps: Vec<Vec<ContainerDependency>> = ms.iter().map(|m| dependencies_of(c, m)).collect();
    for (m, ds) in ms.iter().zip(&deps) {
        for d in ds {
            if !names.contains(&d.container.as_str()) {
                return Err(format!(
                    "container {}: dependsOn names container {:?}, which the task does not have",
                    m.name, d.container
                ));
            }
        }
    }
    let mut done: Vec<&str> = Vec::with_capacity(ms.len());
    while done.len() < ms.len() {
        let next = ms.iter().zip(&deps).find(|(m, ds)| {
            !done.contains(&m.name) && ds.iter().all(|d| done.contains(&d.container.as_str()))
        });
        match next {
            Some((m, _)) => done.push(m.name),
            None => {
                let mut left: Vec<&str> = names
                    .iter()
                    .copied()
                    .filter(|n| !done.contains(n))
                    .collect();
                left.sort_unstable();
                return Err(format!(
                    "dependsOn has a cycle among containers {}",
                    left.join(", ")
                ));
            }
        }
    }
    Ok(done)
}

/// Checks the containers of a task: unique names, known dependencies without a cycle,
/// conditions that can be met, at most one log router.
pub fn validate_task_containers(c: &ContainerSpec, service: &str) -> Result<(), String> {
    let ms = members(c, service);
    if ms.len() > MAX_CONTAINERS {
        return Err(format!(
            "a task has at most {MAX_CONTAINERS} containers, got {}",
            ms.len()
        ));
    }
    let mut seen = BTreeSet::new();
    for m in &ms {
        validate_container_name(m.name)?;
        if !seen.insert(m.name) {
            return Err(format!(
                "container name {:?} is used twice in the task",
                m.name
            ));
        }
    }
    let routers = c.sidecars.iter().filter(|s| s.firelens.is_some()).count();
    if routers > 1 {
        return Err("a task has at most one log router (firelensConfiguration)".into());
    }
    for s in &c.sidecars {
        let sc = &s.container;
        if !sc.sidecars.is_empty() || sc.name.is_some() {
            return Err(format!("container {}: a sidecar has no sidecars", s.name));
        }
        if sc.http_route.is_some() || sc.http_health.is_some() || sc.job.is_some() {
            return Err(format!(
                "container {}: routes, HTTP health checks and schedules belong to the main container",
                s.name
            ));
        }
        if !sc.depends_on.is_empty() {
            return Err(format!(
                "container {}: service dependencies belong to the main container",
                s.name
            ));
        }
        if sc
            .secrets
            .values()
            .any(|r| r.delivery == super::SecretDelivery::File)
        {
            return Err(format!(
                "container {}: a sidecar takes its secrets as environment variables, not files",
                s.name
            ));
        }
        if sc.image.trim().is_empty() {
            return Err(format!("container {}: image is empty", s.name));
        }
        if let Some(f) = &s.firelens
            && !matches!(f.kind.as_str(), "fluentbit" | "fluentd")
        {
            return Err(format!(
                "container {}: firelensConfiguration type must be fluentbit or fluentd, got {:?}",
                s.name, f.kind
            ));
        }
        sc.validate_runtime()
            .map_err(|e| format!("container {}: {e}", s.name))?;
    }
    if c.sidecars.is_empty() && (!c.container_depends_on.is_empty() || c.logging.is_some()) {
        let what = if c.logging.is_some() {
            "logs to a log router"
        } else {
            "has dependsOn"
        };
        return Err(format!(
            "container {}: {what}, but the task has no other container",
            main_container_name(c, service)
        ));
    }
    if c.logging.is_some() && log_router(c).is_none() {
        return Err(format!(
            "container {}: its logs go to the log router, but no container has firelensConfiguration",
            main_container_name(c, service)
        ));
    }
    for m in &ms {
        if m.spec.logging.is_some() && m.firelens.is_some() {
            return Err(format!(
                "container {}: the log router cannot send its own output to itself",
                m.name
            ));
        }
        for d in &m.spec.container_depends_on {
            if d.container == m.name {
                return Err(format!("container {}: dependsOn names itself", m.name));
            }
            let Some(target) = ms.iter().find(|t| t.name == d.container) else {
                continue; // start_order names it
            };
            match d.condition {
                DependencyCondition::Healthy if target.spec.healthcheck.is_none() => {
                    return Err(format!(
                        "container {}: dependsOn {} HEALTHY, but {} has no health check",
                        m.name, d.container, d.container
                    ));
                }
                DependencyCondition::Complete | DependencyCondition::Success
                    if target.essential =>
                {
                    return Err(format!(
                        "container {}: dependsOn {} {}, but an essential container must not exit; mark {} essential: false",
                        m.name,
                        d.container,
                        d.condition.as_str(),
                        d.container
                    ));
                }
                _ => {}
            }
        }
        for vf in &m.spec.volumes_from {
            if vf.source_container == m.name {
                return Err(format!("container {}: volumesFrom names itself", m.name));
            }
            if !ms.iter().any(|t| t.name == vf.source_container) {
                return Err(format!(
                    "container {}: volumesFrom names container {:?}, which the task does not have",
                    m.name, vf.source_container
                ));
            }
        }
    }
    start_order(c, service)?;
    Ok(())
}

/// The state of one container of a task, as `status`, `ps` and `DescribeTasks` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStatus {
    pub name: String,
    /// The engine's id (`None` until created).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub essential: bool,
    /// `PENDING`, `RUNNING` or `STOPPED`.
    pub last_status: String,
    /// `HEALTHY`, `UNHEALTHY` or `UNKNOWN` (no health check, or not judged yet).
    pub health: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
}

/// One sentence about the containers of a task that ended because `ended` (an essential
/// container) exited with `exit_code`, naming the others still running and their health:
/// "essential container app exited with code 3 while agent (HEALTHY) and log_router
/// (RUNNING) kept running".
pub fn ended_story(ended: &str, exit_code: Option<i64>, others: &[ContainerStatus]) -> String {
    let code = match exit_code {
        Some(c) => format!("exited with code {c}"),
        None => "exited".to_owned(),
    };
    let running: Vec<String> = others
        .iter()
        .filter(|o| o.name != ended && o.last_status == "RUNNING")
        .map(|o| {
            if o.health == "UNKNOWN" {
                format!("{} (RUNNING)", o.name)
            } else {
                format!("{} ({})", o.name, o.health)
            }
        })
        .collect();
    match running.len() {
        0 => format!("essential container {ended} {code}"),
        1 => format!(
            "essential container {ended} {code} while {} kept running",
            running[0]
        ),
        n => format!(
            "essential container {ended} {code} while {} and {} kept running",
            running[..n - 1].join(", "),
            running[n - 1]
        ),
    }
}

/// A sidecar with just an image: the start of a test's or a parser's sidecar.
pub fn sidecar(name: &str, image: &str) -> Sidecar {
    Sidecar {
        name: name.to_owned(),
        essential: true,
        firelens: None,
        container: ContainerSpec {
            image: image.to_owned(),
            stop_timeout_ms: 30_000,
            ..ContainerSpec::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::CommandHealthCheck;

    fn dep(container: &str, condition: DependencyCondition) -> ContainerDependency {
        ContainerDependency {
            container: container.into(),
            condition,
        }
    }

    fn check() -> CommandHealthCheck {
        CommandHealthCheck {
            test: vec!["CMD".into(), "/hello".into(), "check".into()],
            interval_ms: 1000,
            timeout_ms: 1000,
            retries: 3,
            start_period_ms: 0,
        }
    }

    fn three() -> ContainerSpec {
        let mut agent = sidecar("agent", "agent:1");
        agent.container.healthcheck = Some(check());
        let mut router = sidecar("log_router", "router:1");
        router.firelens = Some(Firelens {
            kind: "fluentbit".into(),
            options: BTreeMap::new(),
        });
        ContainerSpec {
            image: "app:1".into(),
            name: Some("app".into()),
            container_depends_on: vec![dep("agent", DependencyCondition::Healthy)],
            logging: Some(LogRouting::default()),
            sidecars: vec![agent, router],
            ..ContainerSpec::default()
        }
    }

    #[test]
    fn the_app_starts_after_the_agent_and_the_log_router() {
        let c = three();
        validate_task_containers(&c, "api").unwrap();
        assert_eq!(
            start_order(&c, "api").unwrap(),
            vec!["agent", "log_router", "app"]
        );
        // The implicit dependency on the router is a START one.
        let ms = members(&c, "api");
        let deps = dependencies_of(&c, &ms[0]);
        assert_eq!(deps[1], dep("log_router", DependencyCondition::Start));
    }

    #[test]
    fn a_task_without_dependencies_starts_in_written_order() {
        let mut c = three();
        c.container_depends_on.clear();
        c.logging = None;
        assert_eq!(
            start_order(&c, "api").unwrap(),
            vec!["app", "agent", "log_router"]
        );
    }

    #[test]
    fn cycles_duplicates_and_unmeetable_conditions_are_refused() {
        let mut c = three();
        c.sidecars[0].container.container_depends_on = vec![dep("app", DependencyCondition::Start)];
        let e = validate_task_containers(&c, "api").unwrap_err();
        assert_eq!(e, "dependsOn has a cycle among containers agent, app");

        let mut c = three();
        c.sidecars[1].name = "agent".into();
        let e = validate_task_containers(&c, "api").unwrap_err();
        assert_eq!(e, "container name \"agent\" is used twice in the task");

        let mut c = three();
        c.sidecars[0].container.healthcheck = None;
        let e = validate_task_containers(&c, "api").unwrap_err();
        assert!(e.contains("agent has no health check"), "{e}");

        let mut c = three();
        c.container_depends_on = vec![dep("agent", DependencyCondition::Success)];
        let e = validate_task_containers(&c, "api").unwrap_err();
        assert!(e.contains("mark agent essential: false"), "{e}");
        c.sidecars[0].essential = false;
        validate_task_containers(&c, "api").unwrap();

        let mut c = three();
        c.container_depends_on = vec![dep("nope", DependencyCondition::Start)];
        let e = validate_task_containers(&c, "api").unwrap_err();
        assert!(e.contains("\"nope\", which the task does not have"), "{e}");

        let mut c = three();
        c.volumes_from = vec![VolumesFrom {
            source_container: "nope".into(),
            read_only: true,
        }];
        let e = validate_task_containers(&c, "api").unwrap_err();
        assert!(e.contains("volumesFrom names container \"nope\""), "{e}");
        c.volumes_from[0].source_container = "agent".into();
        validate_task_containers(&c, "api").unwrap();

        let mut c = three();
        c.sidecars[1].firelens = None;
        let e = validate_task_containers(&c, "api").unwrap_err();
        assert!(e.contains("no container has firelensConfiguration"), "{e}");
    }

    #[test]
    fn the_story_names_the_container_its_code_and_the_healthy_sidecars() {
        let st = |name: &str, status: &str, health: &str| ContainerStatus {
            name: name.into(),
            id: None,
            essential: true,
            last_status: status.into(),
            health: health.into(),
            exit_code: None,
        };
        let others = [
            st("app", "STOPPED", "UNKNOWN"),
            st("agent", "RUNNING", "HEALTHY"),
            st("log_router", "RUNNING", "UNKNOWN"),
        ];
        assert_eq!(
            ended_story("app", Some(3), &others),
            "essential container app exited with code 3 while agent (HEALTHY) and log_router (RUNNING) kept running"
        );
        assert_eq!(
            ended_story("app", None, &others[..1]),
            "essential container app exited"
        );
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_container_name("log_router").is_ok());
        assert!(validate_container_name("datadog-agent").is_ok());
        assert!(validate_container_name("").is_err());
        assert!(validate_container_name("a b").is_err());
        assert!(validate_container_name(&"a".repeat(65)).is_err());
    }
}
