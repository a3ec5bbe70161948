//! The ECS subset (`AmazonEC2ContainerServiceV20141113.*`), mapped onto Slipway's model.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_json::{Map, Value, json};
use slipway_app::{ConfigPatch, EcsServiceChange, RunTasks};
use slipway_core::model::{
    CommandHealthCheck, ContainerSpec, Deployment, PullPolicy, RolloutState, ServiceKey, Task,
    TaskDefinition, TaskHealth, TaskStatus, validate_name,
};
use slipway_store::{ServiceRecord, TaskCount};

use crate::{AwsError, AwsResult, Call, parse, require_write, ts};

/// How long a rolled-back deployment stays in `deployments[]` after it failed.
pub(crate) const FAILED_LINGER_MS: i64 = 20_000;
/// The environment of clusters created through ECS.
const ECS_ENV: &str = "default";
/// Fields of a described task definition that `RegisterTaskDefinition` does not take.
const READ_ONLY_TD: [&str; 9] = [
    "taskDefinitionArn",
    "revision",
    "status",
    "registeredAt",
    "registeredBy",
    "compatibilities",
    "requiresAttributes",
    "deregisteredAt",
    "tags",
];

pub(crate) async fn dispatch(call: &Call<'_>, op: &str, body: &[u8]) -> AwsResult {
    const WRITES: [&str; 12] = [
        "CreateCluster",
        "DeleteCluster",
        "RegisterTaskDefinition",
        "DeregisterTaskDefinition",
        "CreateService",
        "UpdateService",
        "DeleteService",
        "RunTask",
        "StartTask",
        "StopTask",
        "TagResource",
        "UntagResource",
    ];
    if WRITES.contains(&op) {
        require_write(call, "ecs", op)?;
    }
    match op {
        "CreateCluster" => create_cluster(call, parse(body)?).await,
        "DescribeClusters" => describe_clusters(call, parse(body)?).await,
        "ListClusters" => list_clusters(call).await,
        "DeleteCluster" => delete_cluster(call, parse(body)?).await,
        "RegisterTaskDefinition" => register_task_definition(call, body).await,
        "DescribeTaskDefinition" => describe_task_definition(call, parse(body)?).await,
        "ListTaskDefinitions" => list_task_definitions(call, parse(body)?).await,
        "ListTaskDefinitionFamilies" => list_families(call, parse(body)?).await,
        "DeregisterTaskDefinition" => deregister_task_definition(call, parse(body)?).await,
        "CreateService" => create_service(call, parse(body)?).await,
        "UpdateService" => update_service(call, parse(body)?).await,
        "DescribeServices" => describe_services(call, parse(body)?).await,
        "ListServices" => list_services(call, parse(body)?).await,
        "DeleteService" => delete_service(call, parse(body)?).await,
        "ListTasks" => list_tasks(call, parse(body)?).await,
        "ListServiceDeployments" => list_service_deployments(call, parse(body)?).await,
        "DescribeServiceDeployments" => describe_service_deployments(call, parse(body)?).await,
        "DescribeTasks" => describe_tasks(call, parse(body)?).await,
        "RunTask" | "StartTask" => run_task(call, parse(body)?, parse(body)?).await,
        "StopTask" => stop_task(call, parse(body)?).await,
        "TagResource" | "UntagResource" => Err(AwsError::client(
            "UnsupportedFeatureException",
            format!("{op} is not supported by Slipway yet"),
        )),
        _ => Err(AwsError::client(
            "UnknownOperationException",
            format!("unknown ECS operation {op}"),
        )),
    }
}

// ---------------------------------------------------------------- names and ARNs

/// The last path segment of an ARN, or the input when it is a name.
fn name_of(s: &str) -> &str {
    if s.starts_with("arn:") {
        s.rsplit('/').next().unwrap_or(s)
    } else {
        s
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Cluster {
    name: String,
    app: String,
    env: String,
}

impl Cluster {
    fn arn(&self, call: &Call<'_>) -> String {
        call.arn("ecs", &format!("cluster/{}", self.name))
    }

    fn key(&self, service: &str) -> ServiceKey {
        ServiceKey::new(&self.app, &self.env, service)
    }

    fn service_arn(&self, call: &Call<'_>, service: &str) -> String {
        call.arn("ecs", &format!("service/{}/{service}", self.name))
    }

    fn task_arn(&self, call: &Call<'_>, id: &str) -> String {
        call.arn("ecs", &format!("task/{}/{id}", self.name))
    }
}

/// The cluster name of a Slipway app environment.
fn cluster_name(app: &str, env: &str) -> String {
    if env == ECS_ENV {
        app.to_owned()
    } else {
        format!("{app}-{env}")
    }
}

async fn created_clusters(call: &Call<'_>) -> AwsResult<Vec<String>> {
    Ok(call
        .state
        .app
        .store()
        .list_clusters()
        .await?
        .into_iter()
        .map(|c| c.name)
        .collect())
}

/// Every cluster: `default`, the ones created through ECS and one per app environment that
/// has services (a created cluster wins over an app environment of the same name).
async fn all_clusters(call: &Call<'_>) -> AwsResult<Vec<Cluster>> {
    let mut out: BTreeMap<String, Cluster> = BTreeMap::new();
    let mut names = created_clusters(call).await?;
    names.push("default".into());
    for name in names {
        out.entry(name.clone()).or_insert(Cluster {
            app: name.clone(),
            env: ECS_ENV.into(),
            name,
        });
    }
    for svc in call.state.app.store().list_services(None).await? {
        let name = cluster_name(&svc.key.app, &svc.key.env);
        out.entry(name.clone()).or_insert(Cluster {
            name,
            app: svc.key.app.clone(),
            env: svc.key.env.clone(),
        });
    }
    Ok(out.into_values().collect())
}

async fn find_cluster(call: &Call<'_>, cluster: Option<&str>) -> AwsResult<Cluster> {
    let name = name_of(cluster.unwrap_or("default"));
    let store = call.state.app.store();
    // Clusters created through ECS (and `default`) first: one keyed read.
    if name == "default" || store.get_cluster(name).await?.is_some() {
        return Ok(Cluster {
            name: name.to_owned(),
            app: name.to_owned(),
            env: ECS_ENV.into(),
        });
    }
    // An app environment's cluster is `APP` (environment `default`) or `APP-ENV`: look at
    // the services of each app the name can be, not at every service, in the order
    // `all_clusters` gives a name to (apps sorted: `shop`/`prod` before `shop-prod`).
    let mut candidates: Vec<(&str, &str)> = name
        .match_indices('-')
        .map(|(i, _)| (&name[..i], &name[i + 1..]))
        .collect();
    candidates.push((name, ECS_ENV));
    for (app, env) in candidates {
        if validate_name(app).is_err() || cluster_name(app, env) != name {
            continue;
        }
        if store.has_services(app, env).await? {
            return Ok(Cluster {
                name: name.to_owned(),
                app: app.to_owned(),
                env: env.to_owned(),
            });
        }
    }
    Err(AwsError::client(
        "ClusterNotFoundException",
        "Cluster not found.",
    ))
}

fn check_service_name(name: &str) -> AwsResult<()> {
    validate_name(name).map_err(|e| {
        AwsError::invalid(format!(
            "serviceName: {e} (Slipway service names are DNS labels of at most 40 characters)"
        ))
    })
}

// ---------------------------------------------------------------- clusters

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateClusterReq {
    cluster_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClusterReq {
    cluster: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeClustersReq {
    clusters: Option<Vec<String>>,
}

async fn cluster_json(call: &Call<'_>, c: &Cluster, status: &str) -> AwsResult {
    let mut services = 0;
    let mut running = 0;
    let mut pending = 0;
    let mut keys = vec![ServiceKey::standalone(&c.app, &c.env)];
    for svc in call.state.app.store().list_services(Some(&c.app)).await? {
        if svc.key.env != c.env {
            continue;
        }
        if !svc.deleting {
            services += 1;
        }
        keys.push(svc.key);
    }
    for key in &keys {
        for t in call.state.app.store().list_tasks(key, false).await? {
            match ecs_status(&t) {
                TaskStatus::Running => running += 1,
                TaskStatus::Provisioning | TaskStatus::Pending | TaskStatus::Activating => {
                    pending += 1
                }
                _ => {}
            }
        }
    }
    Ok(json!({
        "clusterArn": c.arn(call),
        "clusterName": c.name,
        "status": status,
        "registeredContainerInstancesCount": 1,
        "runningTasksCount": running,
        "pendingTasksCount": pending,
        "activeServicesCount": services,
        "statistics": [],
        "tags": [],
        "settings": [{"name": "containerInsights", "value": "disabled"}],
        "capacityProviders": [],
        "defaultCapacityProviderStrategy": [],
    }))
}

async fn create_cluster(call: &Call<'_>, req: CreateClusterReq) -> AwsResult {
    let name = req.cluster_name.unwrap_or_else(|| "default".into());
    validate_name(&name).map_err(|e| {
        AwsError::invalid(format!(
            "clusterName: {e} (Slipway cluster names are DNS labels of at most 40 characters)"
        ))
    })?;
    let existing = all_clusters(call).await?;
    let c = match existing.into_iter().find(|c| c.name == name) {
        Some(c) => c,
        None => {
            call.state.app.create_cluster(&name).await?;
            Cluster {
                app: name.clone(),
                env: ECS_ENV.into(),
                name,
            }
        }
    };
    Ok(json!({ "cluster": cluster_json(call, &c, "ACTIVE").await? }))
}

async fn describe_clusters(call: &Call<'_>, req: DescribeClustersReq) -> AwsResult {
    let wanted = req.clusters.unwrap_or_else(|| vec!["default".into()]);
    if wanted.len() > 100 {
        return Err(AwsError::invalid("clusters can have at most 100 items."));
    }
    let all = all_clusters(call).await?;
    let mut clusters = Vec::new();
    let mut failures = Vec::new();
    for w in &wanted {
        match all.iter().find(|c| c.name == name_of(w)) {
            Some(c) => clusters.push(cluster_json(call, c, "ACTIVE").await?),
            None => failures.push(json!({
                "arn": call.arn("ecs", &format!("cluster/{}", name_of(w))),
                "reason": "MISSING",
            })),
        }
    }
    Ok(json!({ "clusters": clusters, "failures": failures }))
}

async fn list_clusters(call: &Call<'_>) -> AwsResult {
    let arns: Vec<String> = all_clusters(call)
        .await?
        .iter()
        .map(|c| c.arn(call))
        .collect();
    Ok(json!({ "clusterArns": arns }))
}

async fn delete_cluster(call: &Call<'_>, req: ClusterReq) -> AwsResult {
    let c = find_cluster(
        call,
        Some(
            req.cluster
                .as_deref()
                .ok_or_else(|| AwsError::invalid("cluster is required"))?,
        ),
    )
    .await?;
    call.state
        .app
        .delete_cluster(&c.name, &c.app, &c.env)
        .await?;
    Ok(json!({ "cluster": cluster_json(call, &c, "INACTIVE").await? }))
}

// ---------------------------------------------------------------- task definitions

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct PortMappingReq {
    container_port: Option<i64>,
    host_port: Option<i64>,
    protocol: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyValueReq {
    name: Option<String>,
    value: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HealthCheckReq {
    command: Option<Vec<String>>,
    interval: Option<i64>,
    timeout: Option<i64>,
    retries: Option<i64>,
    start_period: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct ContainerDefReq {
    name: Option<String>,
    image: Option<String>,
    essential: Option<bool>,
    cpu: Option<i64>,
    memory: Option<i64>,
    memory_reservation: Option<i64>,
    port_mappings: Option<Vec<PortMappingReq>>,
    environment: Option<Vec<KeyValueReq>>,
    secrets: Option<Vec<SecretReq>>,
    command: Option<Vec<String>>,
    entry_point: Option<Vec<String>>,
    health_check: Option<HealthCheckReq>,
    stop_timeout: Option<i64>,
    start_timeout: Option<i64>,
}

/// `containerDefinitions[].secrets[]`: `valueFrom` names a Slipway secret, directly or as
/// the name inside a Secrets Manager or SSM parameter ARN.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SecretReq {
    name: Option<String>,
    value_from: Option<String>,
}

fn secret_name_from(value_from: &str) -> &str {
    if let Some((_, rest)) = value_from.split_once(":secret:") {
        // Secrets Manager appends a six-character suffix to ARNs: `name-AbCdEf`.
        return match rest.rsplit_once('-') {
            Some((name, suffix)) if suffix.len() == 6 => name,
            _ => rest,
        };
    }
    if let Some((_, rest)) = value_from.split_once(":parameter/") {
        return rest;
    }
    value_from
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct RegisterReq {
    family: Option<String>,
    container_definitions: Option<Vec<ContainerDefReq>>,
    cpu: Option<String>,
    memory: Option<String>,
    network_mode: Option<String>,
    requires_compatibilities: Option<Vec<String>>,
    execution_role_arn: Option<String>,
    task_role_arn: Option<String>,
}

fn check_family(f: &str) -> AwsResult<()> {
    if f.is_empty()
        || f.len() > 255
        || !f
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(AwsError::client(
            "ClientException",
            format!(
                "Family contains invalid characters or is too long: {f:?} (up to 255 letters, numbers, hyphens and underscores)"
            ),
        ));
    }
    Ok(())
}

/// The ContainerSpec Slipway runs for a task definition: its first essential container.
fn to_container(req: &RegisterReq) -> AwsResult<ContainerSpec> {
    let defs = req
        .container_definitions
        .as_deref()
        .filter(|d| !d.is_empty())
        .ok_or_else(|| AwsError::client("ClientException", "Container list cannot be empty."))?;
    for d in defs {
        if d.name.as_deref().is_none_or(str::is_empty) {
            return Err(AwsError::client(
                "ClientException",
                "Container.name should not be null or empty.",
            ));
        }
        if d.image.as_deref().is_none_or(|i| i.trim().is_empty()) {
            return Err(AwsError::client(
                "ClientException",
                "Container.image should not be null or empty.",
            ));
        }
    }
    if !defs.iter().any(|d| d.essential.unwrap_or(true)) {
        return Err(AwsError::client(
            "ClientException",
            "A task definition must have at least one essential container.",
        ));
    }
    let d = defs
        .iter()
        .find(|d| d.essential.unwrap_or(true))
        .expect("checked above");
    let num = |v: Option<i64>, what: &str, lo: i64, hi: i64| -> AwsResult<Option<u32>> {
        match v {
            None => Ok(None),
            Some(x) if (lo..=hi).contains(&x) => Ok(Some(x as u32)),
            Some(x) => Err(AwsError::client(
                "ClientException",
                format!("{what} must be between {lo} and {hi}, got {x}"),
            )),
        }
    };
    let task_num = |v: &Option<String>, what: &str| -> AwsResult<Option<u32>> {
        match v {
            None => Ok(None),
            Some(s) => s.trim().parse::<u32>().map(Some).map_err(|_| {
                AwsError::client(
                    "ClientException",
                    format!("task {what} {s:?} must be a number (CPU units or MiB)"),
                )
            }),
        }
    };
    let port = match d.port_mappings.as_deref().and_then(|p| p.first()) {
        Some(p) => Some(
            p.container_port
                .filter(|c| (1..=65535).contains(c))
                .ok_or_else(|| {
                    AwsError::client(
                        "ClientException",
                        "portMappings.containerPort must be between 1 and 65535",
                    )
                })? as u16,
        ),
        None => None,
    };
    let mut environment = BTreeMap::new();
    for kv in d.environment.iter().flatten() {
        let Some(name) = kv.name.clone().filter(|n| !n.is_empty()) else {
            return Err(AwsError::client(
                "ClientException",
                "environment variables need a name",
            ));
        };
        environment.insert(name, kv.value.clone().unwrap_or_default());
    }
    let mut secrets = BTreeMap::new();
    for sr in d.secrets.iter().flatten() {
        let (Some(name), Some(from)) = (
            sr.name.clone().filter(|n| !n.is_empty()),
            sr.value_from.as_deref().filter(|v| !v.is_empty()),
        ) else {
            return Err(AwsError::client(
                "ClientException",
                "secrets need a name and a valueFrom",
            ));
        };
        let secret = secret_name_from(from);
        slipway_core::manifest::check_secret_name(secret)
            .map_err(|m| AwsError::client("ClientException", format!("secrets.valueFrom: {m}")))?;
        secrets.insert(name, slipway_core::model::SecretRef::latest(secret));
    }
    let healthcheck = match &d.health_check {
        None => None,
        Some(h) => {
            let cmd = h.command.clone().unwrap_or_default();
            if !matches!(cmd.first().map(String::as_str), Some("CMD" | "CMD-SHELL")) {
                return Err(AwsError::client(
                    "ClientException",
                    "healthCheck.command must start with CMD or CMD-SHELL",
                ));
            }
            let secs = |v: Option<i64>, d: i64, lo: i64, hi: i64, what: &str| -> AwsResult<u64> {
                let x = v.unwrap_or(d);
                if (lo..=hi).contains(&x) {
                    Ok(x as u64 * 1000)
                } else {
                    Err(AwsError::client(
                        "ClientException",
                        format!("healthCheck.{what} must be between {lo} and {hi}, got {x}"),
                    ))
                }
            };
            Some(CommandHealthCheck {
                test: cmd,
                interval_ms: secs(h.interval, 30, 5, 300, "interval")?,
                timeout_ms: secs(h.timeout, 5, 2, 120, "timeout")?,
                retries: secs(h.retries, 3, 1, 10, "retries")? as u32 / 1000,
                start_period_ms: secs(h.start_period, 0, 0, 300, "startPeriod")?,
            })
        }
    };
    let command = match (&d.entry_point, &d.command) {
        (Some(ep), cmd) if !ep.is_empty() => {
            let mut all = ep.clone();
            all.extend(cmd.clone().unwrap_or_default());
            Some(all)
        }
        (_, cmd) => cmd.clone().filter(|c| !c.is_empty()),
    };
    let memory = num(d.memory.or(d.memory_reservation), "memory", 6, 1 << 20)?
        .or(task_num(&req.memory, "memory")?);
    Ok(ContainerSpec {
        image: d.image.clone().unwrap_or_default().trim().to_owned(),
        image_digest: None,
        pull: PullPolicy::Missing,
        port,
        command,
        environment,
        secrets,
        // A container's `cpu` is a relative share on ECS (CpuShares), not a limit: only the
        // task-level `cpu` (a hard limit, as on Fargate) becomes Slipway's CPU limit.
        cpu: {
            num(d.cpu, "cpu", 0, 1 << 20)?;
            task_num(&req.cpu, "cpu")?
        },
        memory,
        healthcheck,
        http_health: None,
        stop_timeout_ms: num(d.stop_timeout, "stopTimeout", 0, 3600)?.unwrap_or(30) as u64 * 1000,
        http_route: None,
    })
}

/// The registration as echoed: read-only fields dropped, ECS defaults filled in.
fn normalized(raw: &Value) -> Value {
    let mut o = raw.as_object().cloned().unwrap_or_default();
    for k in READ_ONLY_TD {
        o.remove(k);
    }
    if let Some(Value::Array(defs)) = o.get_mut("containerDefinitions") {
        for d in defs.iter_mut() {
            if let Value::Object(m) = d {
                m.entry("cpu").or_insert(json!(0));
                m.entry("essential").or_insert(json!(true));
                m.entry("portMappings").or_insert(json!([]));
                m.entry("environment").or_insert(json!([]));
                m.entry("mountPoints").or_insert(json!([]));
                m.entry("volumesFrom").or_insert(json!([]));
                if let Some(Value::Array(pms)) = m.get_mut("portMappings") {
                    for p in pms.iter_mut() {
                        if let Value::Object(pm) = p {
                            pm.entry("protocol").or_insert(json!("tcp"));
                        }
                    }
                }
            }
        }
    }
    o.entry("volumes").or_insert(json!([]));
    o.entry("placementConstraints").or_insert(json!([]));
    Value::Object(o)
}

/// A task definition of a manifest deploy, described in ECS terms.
fn synthesized(td: &TaskDefinition) -> Value {
    let c = &td.container;
    let mut def = json!({
        "name": td.family,
        "image": c.image,
        "cpu": c.cpu.unwrap_or(0),
        "essential": true,
        "portMappings": c.port.map(|p| vec![json!({"containerPort": p, "hostPort": 0, "protocol": "tcp"})]).unwrap_or_default(),
        "environment": c.environment.iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>(),
        "mountPoints": [],
        "volumesFrom": [],
        "stopTimeout": c.stop_timeout_ms / 1000,
    });
    if let Some(m) = c.memory {
        def["memory"] = json!(m);
    }
    if let Some(cmd) = &c.command {
        def["command"] = json!(cmd);
    }
    if let Some(h) = &c.healthcheck {
        def["healthCheck"] = json!({
            "command": h.test,
            "interval": h.interval_ms / 1000,
            "timeout": h.timeout_ms / 1000,
            "retries": h.retries,
            "startPeriod": h.start_period_ms / 1000,
        });
    }
    json!({
        "family": td.family,
        "containerDefinitions": [def],
        "networkMode": "bridge",
        "volumes": [],
        "placementConstraints": [],
    })
}

fn td_arn(call: &Call<'_>, id: &str) -> String {
    call.arn("ecs", &format!("task-definition/{id}"))
}

fn td_json(call: &Call<'_>, td: &TaskDefinition) -> Value {
    let mut o: Map<String, Value> = td
        .ecs
        .as_deref()
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_else(|| synthesized(td).as_object().cloned().unwrap_or_default());
    o.insert("taskDefinitionArn".into(), json!(td_arn(call, &td.id())));
    o.insert("family".into(), json!(td.family));
    o.insert("revision".into(), json!(td.revision));
    o.insert(
        "status".into(),
        json!(if td.deregistered_at.is_some() {
            "INACTIVE"
        } else {
            "ACTIVE"
        }),
    );
    o.insert("compatibilities".into(), json!(["EC2"]));
    o.insert("requiresAttributes".into(), json!([]));
    o.insert("registeredAt".into(), ts(td.created_at));
    o.insert(
        "registeredBy".into(),
        json!(format!("arn:aws:iam::{}:root", crate::ACCOUNT_ID)),
    );
    if let Some(d) = td.deregistered_at {
        o.insert("deregisteredAt".into(), ts(d));
    }
    Value::Object(o)
}

/// Resolves `family`, `family:revision` or an ARN.
async fn find_td(call: &Call<'_>, r: &str) -> AwsResult<TaskDefinition> {
    let s = match r.split_once("task-definition/") {
        Some((_, rest)) if r.starts_with("arn:") => rest,
        _ => r,
    };
    let not_found = || AwsError::client("ClientException", "Unable to describe task definition.");
    if let Some((family, rev)) = s.rsplit_once(':') {
        let rev: u32 = rev.parse().map_err(|_| not_found())?;
        return call
            .state
            .app
            .store()
            .get_task_definition(family, rev)
            .await?
            .ok_or_else(not_found);
    }
    let all: Vec<TaskDefinition> = call
        .state
        .app
        .store()
        .list_task_definitions()
        .await?
        .into_iter()
        .filter(|t| t.family == s && t.deregistered_at.is_none())
        .collect();
    all.iter()
        .rfind(|t| t.source.is_none())
        .or(all.last())
        .cloned()
        .ok_or_else(not_found)
}

async fn register_task_definition(call: &Call<'_>, body: &[u8]) -> AwsResult {
    let req: RegisterReq = parse(body)?;
    let raw: Value = parse(body)?;
    let family = req
        .family
        .clone()
        .ok_or_else(|| AwsError::client("ClientException", "Family cannot be empty."))?;
    check_family(&family)?;
    let container = to_container(&req)?;
    let mut echo = normalized(&raw);
    echo["family"] = json!(family);
    let td = call
        .state
        .app
        .register_task_definition(&family, container, Some(echo.to_string()))
        .await?;
    Ok(
        json!({ "taskDefinition": td_json(call, &td), "tags": raw.get("tags").cloned().unwrap_or(json!([])) }),
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TdReq {
    task_definition: Option<String>,
}

async fn describe_task_definition(call: &Call<'_>, req: TdReq) -> AwsResult {
    let r = req
        .task_definition
        .ok_or_else(|| AwsError::client("ClientException", "taskDefinition is required."))?;
    let td = find_td(call, &r).await?;
    Ok(json!({ "taskDefinition": td_json(call, &td), "tags": [] }))
}

async fn deregister_task_definition(call: &Call<'_>, req: TdReq) -> AwsResult {
    let r = req
        .task_definition
        .ok_or_else(|| AwsError::client("ClientException", "taskDefinition is required."))?;
    if !name_of(&r).contains(':') {
        return Err(AwsError::client(
            "ClientException",
            "A revision must be specified: family:revision or its ARN.",
        ));
    }
    let td = find_td(call, &r).await?;
    let td = call
        .state
        .app
        .deregister_task_definition(&td.family, td.revision)
        .await?;
    Ok(json!({ "taskDefinition": td_json(call, &td) }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListTdReq {
    family_prefix: Option<String>,
    status: Option<String>,
    sort: Option<String>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

fn page<T: Clone>(
    items: &[T],
    max: Option<i64>,
    token: Option<&str>,
) -> AwsResult<(Vec<T>, Option<String>)> {
    let start: usize = match token {
        None => 0,
        Some(t) => t
            .parse()
            .map_err(|_| AwsError::invalid("nextToken is not valid"))?,
    };
    let max = match max {
        None => 100,
        Some(m) if (1..=100).contains(&m) => m as usize,
        Some(m) => {
            return Err(AwsError::invalid(format!(
                "maxResults must be between 1 and 100, got {m}"
            )));
        }
    };
    let end = (start + max).min(items.len());
    let slice = items.get(start..end).unwrap_or_default().to_vec();
    Ok((slice, (end < items.len()).then(|| end.to_string())))
}

fn status_filter(s: Option<&str>) -> AwsResult<Option<bool>> {
    match s {
        None | Some("ACTIVE") => Ok(Some(true)),
        Some("INACTIVE") => Ok(Some(false)),
        Some("ALL") => Ok(None),
        Some("DELETE_IN_PROGRESS") => Ok(Some(false)),
        Some(o) => Err(AwsError::invalid(format!(
            "status must be ACTIVE, INACTIVE or DELETE_IN_PROGRESS, got {o}"
        ))),
    }
}

async fn list_task_definitions(call: &Call<'_>, req: ListTdReq) -> AwsResult {
    let active = status_filter(req.status.as_deref())?;
    let mut tds: Vec<TaskDefinition> = call
        .state
        .app
        .store()
        .list_task_definitions()
        .await?
        .into_iter()
        .filter(|t| t.source.is_none())
        .filter(|t| {
            req.family_prefix
                .as_deref()
                .is_none_or(|p| t.family.starts_with(p))
        })
        .filter(|t| active.is_none_or(|a| a == t.deregistered_at.is_none()))
        .collect();
    match req.sort.as_deref() {
        None | Some("ASC") => {}
        Some("DESC") => tds.reverse(),
        Some(o) => {
            return Err(AwsError::invalid(format!(
                "sort must be ASC or DESC, got {o}"
            )));
        }
    }
    let arns: Vec<String> = tds.iter().map(|t| td_arn(call, &t.id())).collect();
    let (arns, next) = page(&arns, req.max_results, req.next_token.as_deref())?;
    Ok(json!({ "taskDefinitionArns": arns, "nextToken": next }))
}

async fn list_families(call: &Call<'_>, req: ListTdReq) -> AwsResult {
    let active = status_filter(req.status.as_deref())?;
    let mut fams: BTreeMap<String, bool> = BTreeMap::new();
    for t in call.state.app.store().list_task_definitions().await? {
        if t.source.is_some() {
            continue;
        }
        if req
            .family_prefix
            .as_deref()
            .is_some_and(|p| !t.family.starts_with(p))
        {
            continue;
        }
        *fams.entry(t.family.clone()).or_default() |= t.deregistered_at.is_none();
    }
    let names: Vec<String> = fams
        .into_iter()
        .filter(|(_, any_active)| active.is_none_or(|a| a == *any_active))
        .map(|(f, _)| f)
        .collect();
    let (names, next) = page(&names, req.max_results, req.next_token.as_deref())?;
    Ok(json!({ "families": names, "nextToken": next }))
}

// ---------------------------------------------------------------- services

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BreakerReq {
    enable: Option<bool>,
    rollback: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeploymentConfigReq {
    maximum_percent: Option<i64>,
    minimum_healthy_percent: Option<i64>,
    deployment_circuit_breaker: Option<BreakerReq>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateServiceReq {
    cluster: Option<String>,
    service_name: Option<String>,
    task_definition: Option<String>,
    desired_count: Option<i64>,
    deployment_configuration: Option<DeploymentConfigReq>,
    health_check_grace_period_seconds: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateServiceReq {
    cluster: Option<String>,
    service: Option<String>,
    task_definition: Option<String>,
    desired_count: Option<i64>,
    force_new_deployment: Option<bool>,
    deployment_configuration: Option<DeploymentConfigReq>,
    health_check_grace_period_seconds: Option<i64>,
}

/// The configuration change a request asks for (ranges checked here; the rule that a
/// rollout must be able to progress is the application layer's).
fn config_patch(req: Option<&DeploymentConfigReq>, grace: Option<i64>) -> AwsResult<ConfigPatch> {
    let mut p = ConfigPatch::default();
    if let Some(r) = req {
        if let Some(m) = r.maximum_percent {
            if !(100..=1000).contains(&m) {
                return Err(AwsError::invalid(format!(
                    "maximumPercent must be between 100 and 1000, got {m}"
                )));
            }
            p.maximum_percent = Some(m as u32);
        }
        if let Some(m) = r.minimum_healthy_percent {
            if !(0..=100).contains(&m) {
                return Err(AwsError::invalid(format!(
                    "minimumHealthyPercent must be between 0 and 100, got {m}"
                )));
            }
            p.minimum_healthy_percent = Some(m as u32);
        }
        if let Some(b) = &r.deployment_circuit_breaker {
            p.circuit_breaker = Some((b.enable.unwrap_or(false), b.rollback.unwrap_or(false)));
        }
    }
    if let Some(g) = grace {
        if !(0..=2_147_483_647).contains(&g) {
            return Err(AwsError::invalid(
                "healthCheckGracePeriodSeconds must be between 0 and 2147483647",
            ));
        }
        p.health_check_grace_period_ms = Some(g as u64 * 1000);
    }
    Ok(p)
}

fn desired(v: Option<i64>) -> AwsResult<Option<u32>> {
    match v {
        None => Ok(None),
        Some(n) if (0..=1000).contains(&n) => Ok(Some(n as u32)),
        Some(n) => Err(AwsError::invalid(format!(
            "desiredCount must be between 0 and 1000 on Slipway, got {n}"
        ))),
    }
}

fn rollout(d: &Deployment) -> (&'static str, String) {
    match d.state {
        RolloutState::InProgress => (
            "IN_PROGRESS",
            format!("ECS deployment ecs-svc/{} in progress.", d.id),
        ),
        RolloutState::Succeeded => (
            "COMPLETED",
            format!("ECS deployment ecs-svc/{} completed.", d.id),
        ),
        RolloutState::Failed | RolloutState::RolledBack => (
            "FAILED",
            d.reason
                .clone()
                .unwrap_or_else(|| format!("ECS deployment ecs-svc/{} failed.", d.id)),
        ),
    }
}

/// The ECS `lastStatus` of a task: a running container whose health is not known yet is
/// still ACTIVATING (ECS registers and checks a task before it counts as RUNNING), so
/// `runningCount` and `aws ecs wait services-stable` count only tasks that are serving.
fn ecs_status(t: &Task) -> TaskStatus {
    if t.standalone.is_some() {
        // A standalone task has no load balancer to register with: RUNNING is running.
        return t.last_status;
    }
    service_task_status(t.last_status, t.health)
}

fn service_task_status(status: TaskStatus, health: TaskHealth) -> TaskStatus {
    match (status, health) {
        (TaskStatus::Running, TaskHealth::Unknown) => TaskStatus::Activating,
        (s, _) => s,
    }
}

fn is_running(status: TaskStatus, health: TaskHealth) -> bool {
    service_task_status(status, health) == TaskStatus::Running
}

fn is_pending(status: TaskStatus, health: TaskHealth) -> bool {
    matches!(
        service_task_status(status, health),
        TaskStatus::Provisioning | TaskStatus::Pending | TaskStatus::Activating
    )
}

/// One service as `DescribeServices` shows it.
async fn service_json(call: &Call<'_>, c: &Cluster, svc: &ServiceRecord) -> AwsResult {
    let mut out = services_json(call, c, std::slice::from_ref(&svc.key.name)).await?;
    out.remove(&svc.key.name)
        .ok_or_else(|| AwsError::server("the service vanished"))
}

/// Services of a cluster as `DescribeServices` shows them, by name (unknown ones are left
/// out). A fixed number of store reads whatever the number of services: the services, their
/// deployments, their live task counts, their events and the task definitions they run.
async fn services_json(
    call: &Call<'_>,
    c: &Cluster,
    names: &[String],
) -> AwsResult<HashMap<String, Value>> {
    let store = &call.state.app.store();
    let views = store.service_views(&c.app, &c.env, names, 10, 100).await?;
    let mut wanted: Vec<(String, u32)> = Vec::new();
    for v in &views {
        let family = v.record.key.family();
        wanted.push((family.clone(), v.record.revision));
        for d in &v.deployments {
            wanted.push((family.clone(), d.revision));
        }
    }
    wanted.sort();
    wanted.dedup();
    let sources: HashMap<(String, u32), String> = store
        .get_task_definitions(&wanted)
        .await?
        .into_iter()
        .map(|td| {
            let src = td.source.clone().unwrap_or_else(|| td.id());
            ((td.family, td.revision), src)
        })
        .collect();
    let source = |key: &ServiceKey, revision: u32| -> String {
        let family = key.family();
        sources
            .get(&(family.clone(), revision))
            .cloned()
            .unwrap_or_else(|| format!("{family}:{revision}"))
    };
    let now = slipway_store::now_ms();
    let mut out = HashMap::with_capacity(views.len());
    for v in views {
        let svc = &v.record;
        let key = &svc.key;
        let deps = &v.deployments;
        let primary = deps.first();
        // Tasks of each deployment; a rollback deployment owns the tasks of its revision
        // that it adopted.
        let owner = |t: &TaskCount| -> String {
            match primary {
                Some(p) if p.rollback_of.is_some() && t.revision == p.revision => p.id.clone(),
                _ => t.deployment_id.clone(),
            }
        };
        let mut by_dep: HashMap<String, Vec<&TaskCount>> = HashMap::new();
        for t in &v.tasks {
            by_dep.entry(owner(t)).or_default().push(t);
        }
        let sum = |list: &[&TaskCount], f: &dyn Fn(&TaskCount) -> bool| -> usize {
            list.iter().filter(|t| f(t)).map(|t| t.count as usize).sum()
        };
        let mut deployments = Vec::new();
        for (i, d) in deps.iter().enumerate() {
            let live = by_dep.get(&d.id).map(Vec::as_slice).unwrap_or_default();
            let is_primary = i == 0;
            // A rolled-back deployment stays listed (rolloutState FAILED) while the rollback
            // runs and for a short while after: Slipway's rollback adopts the tasks of the
            // previous revision, so it can finish at once, and pollers must still see the
            // failure.
            let rolled_back_now = primary.is_some_and(|p| {
                p.state == RolloutState::InProgress
                    && p.rollback_of.as_deref() == Some(d.id.as_str())
            }) || (d.state == RolloutState::RolledBack
                && d.timeline
                    .finished_at
                    .is_some_and(|f| now - f < FAILED_LINGER_MS));
            if !is_primary && live.is_empty() && !rolled_back_now {
                continue;
            }
            let (state, reason) = rollout(d);
            let running = sum(live, &|t| is_running(t.last_status, t.health));
            let pending = sum(live, &|t| is_pending(t.last_status, t.health));
            let desired = if is_primary {
                svc.desired_count as usize
            } else {
                sum(live, &|t| t.desired_running)
            };
            deployments.push(json!({
                "id": format!("ecs-svc/{}", d.id),
                "status": if is_primary { "PRIMARY" } else { "ACTIVE" },
                "taskDefinition": td_arn(call, &source(key, d.revision)),
                "desiredCount": desired,
                "pendingCount": pending,
                "runningCount": running,
                "failedTasks": d.failed_tasks,
                "createdAt": ts(d.created_at),
                "updatedAt": ts(d.updated_at),
                "launchType": "EC2",
                "rolloutState": state,
                "rolloutStateReason": reason,
            }));
        }
        let all: Vec<&TaskCount> = v.tasks.iter().collect();
        let running = sum(&all, &|t| is_running(t.last_status, t.health));
        let pending = sum(&all, &|t| is_pending(t.last_status, t.health));
        let events: Vec<Value> = v
            .events
            .iter()
            .map(|e| json!({ "id": e.id.to_string(), "createdAt": ts(e.created_at), "message": e.message }))
            .collect();
        let cb = svc.config.circuit_breaker;
        out.insert(
            key.name.clone(),
            json!({
                "serviceArn": c.service_arn(call, &key.name),
                "serviceName": key.name,
                "clusterArn": c.arn(call),
                "loadBalancers": [],
                "serviceRegistries": [],
                "status": if svc.deleting { "DRAINING" } else { "ACTIVE" },
                "desiredCount": svc.desired_count,
                "runningCount": running,
                "pendingCount": pending,
                "launchType": "EC2",
                "taskDefinition": td_arn(call, &source(key, svc.revision)),
                "deploymentConfiguration": {
                    "deploymentCircuitBreaker": { "enable": cb.enable, "rollback": cb.rollback },
                    "maximumPercent": svc.config.maximum_percent,
                    "minimumHealthyPercent": svc.config.minimum_healthy_percent,
                },
                "deployments": deployments,
                "events": events,
                "createdAt": ts(svc.created_at),
                "placementConstraints": [],
                "placementStrategy": [],
                "schedulingStrategy": "REPLICA",
                "deploymentController": { "type": "ECS" },
                "healthCheckGracePeriodSeconds": svc.config.health_check_grace_period_ms / 1000,
                "createdBy": format!("arn:aws:iam::{}:root", crate::ACCOUNT_ID),
                "enableECSManagedTags": false,
                "propagateTags": "NONE",
                "enableExecuteCommand": false,
            }),
        );
    }
    Ok(out)
}

async fn create_service(call: &Call<'_>, req: CreateServiceReq) -> AwsResult {
    let c = find_cluster(call, req.cluster.as_deref()).await?;
    let name = req
        .service_name
        .ok_or_else(|| AwsError::invalid("serviceName is required"))?;
    check_service_name(&name)?;
    let tdr = req
        .task_definition
        .ok_or_else(|| AwsError::invalid("taskDefinition is required"))?;
    let desired_count = desired(req.desired_count)?.unwrap_or(1);
    let patch = config_patch(
        req.deployment_configuration.as_ref(),
        req.health_check_grace_period_seconds,
    )?;
    let td = find_td(call, &tdr).await?;
    let svc = call
        .state
        .app
        .create_ecs_service(&c.key(&name), &td, desired_count, &patch)
        .await?;
    Ok(json!({ "service": service_json(call, &c, &svc).await? }))
}

async fn update_service(call: &Call<'_>, req: UpdateServiceReq) -> AwsResult {
    let c = find_cluster(call, req.cluster.as_deref()).await?;
    let name = req
        .service
        .as_deref()
        .map(name_of)
        .ok_or_else(|| AwsError::invalid("service is required"))?
        .to_owned();
    let change = EcsServiceChange {
        desired_count: desired(req.desired_count)?,
        config: config_patch(
            req.deployment_configuration.as_ref(),
            req.health_check_grace_period_seconds,
        )?,
        task_definition: match &req.task_definition {
            Some(r) => Some(find_td(call, r).await?),
            None => None,
        },
        force: req.force_new_deployment.unwrap_or(false),
    };
    let svc = call
        .state
        .app
        .update_ecs_service(&c.key(&name), &change)
        .await
        .map_err(service_error)?;
    Ok(json!({ "service": service_json(call, &c, &svc).await? }))
}

/// A use case's error about a service, in ECS's words.
fn service_error(e: slipway_app::AppError) -> AwsError {
    match e.kind {
        slipway_app::ErrorKind::NotFound => {
            AwsError::client("ServiceNotFoundException", "Service not found.")
        }
        _ => e.into(),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeServicesReq {
    cluster: Option<String>,
    services: Option<Vec<String>>,
}

async fn describe_services(call: &Call<'_>, req: DescribeServicesReq) -> AwsResult {
    let names = req.services.unwrap_or_default();
    if names.is_empty() {
        return Err(AwsError::invalid("Services cannot be empty."));
    }
    if names.len() > 10 {
        return Err(AwsError::invalid("services can have at most 10 items."));
    }
    let c = find_cluster(call, req.cluster.as_deref()).await?;
    let wanted: Vec<String> = names
        .iter()
        .map(|n| name_of(n))
        .filter(|n| validate_name(n).is_ok())
        .map(str::to_owned)
        .collect();
    let found = services_json(call, &c, &wanted).await?;
    let mut services = Vec::new();
    let mut failures = Vec::new();
    for n in &names {
        let name = name_of(n);
        // A service named twice is described twice, as ECS does.
        match found.get(name) {
            Some(v) => services.push(v.clone()),
            None => failures.push(json!({ "arn": c.service_arn(call, name), "reason": "MISSING" })),
        }
    }
    Ok(json!({ "services": services, "failures": failures }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListServicesReq {
    cluster: Option<String>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

async fn list_services(call: &Call<'_>, req: ListServicesReq) -> AwsResult {
    let c = find_cluster(call, req.cluster.as_deref()).await?;
    let arns: Vec<String> = call
        .state
        .app
        .store()
        .list_services(Some(&c.app))
        .await?
        .into_iter()
        .filter(|s| s.key.env == c.env && !s.deleting)
        .map(|s| c.service_arn(call, &s.key.name))
        .collect();
    let (arns, next) = page(
        &arns,
        req.max_results.or(Some(10)),
        req.next_token.as_deref(),
    )?;
    Ok(json!({ "serviceArns": arns, "nextToken": next }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteServiceReq {
    cluster: Option<String>,
    service: Option<String>,
    force: Option<bool>,
}

async fn delete_service(call: &Call<'_>, req: DeleteServiceReq) -> AwsResult {
    let c = find_cluster(call, req.cluster.as_deref()).await?;
    let name = req
        .service
        .as_deref()
        .map(name_of)
        .ok_or_else(|| AwsError::invalid("service is required"))?
        .to_owned();
    let (_, svc) = call
        .state
        .app
        .delete_service(&c.key(&name), None, true, req.force.unwrap_or(false))
        .await
        .map_err(service_error)?;
    Ok(json!({ "service": service_json(call, &c, &svc).await? }))
}

// ---------------------------------------------------------------- service deployments

/// How many deployments of a service are kept (the store trims to this many).
const DEPLOYMENTS_KEPT: u32 = 50;

fn service_deployment_arn(call: &Call<'_>, c: &Cluster, service: &str, id: &str) -> String {
    call.arn(
        "ecs",
        &format!("service-deployment/{}/{service}/{id}", c.name),
    )
}

/// Slipway has no service revisions of its own: a deployment's revision is its task
/// definition revision in the service's family.
fn service_revision_arn(call: &Call<'_>, c: &Cluster, service: &str, revision: u32) -> String {
    call.arn(
        "ecs",
        &format!("service-revision/{}/{service}/{revision}", c.name),
    )
}

/// ECS `ServiceDeploymentStatus` of a deployment (its rollback, when it was rolled back,
/// is part of it as on ECS).
fn deployment_status(d: &Deployment, rollback: Option<&Deployment>) -> &'static str {
    match (d.state, rollback) {
        (RolloutState::InProgress, _) if d.rollback_of.is_some() => "ROLLBACK_IN_PROGRESS",
        (RolloutState::InProgress, _) => "IN_PROGRESS",
        (RolloutState::Succeeded, _) if d.rollback_of.is_some() => "ROLLBACK_SUCCESSFUL",
        (RolloutState::Succeeded, _) => "SUCCESSFUL",
        (_, Some(r)) => match r.state {
            RolloutState::InProgress => "ROLLBACK_IN_PROGRESS",
            RolloutState::Succeeded => "ROLLBACK_SUCCESSFUL",
            _ => "ROLLBACK_FAILED",
        },
        (RolloutState::Failed | RolloutState::RolledBack, None) => "STOPPED",
    }
}

fn deployment_brief(call: &Call<'_>, c: &Cluster, d: &Deployment, all: &[Deployment]) -> Value {
    let rollback = d
        .rolled_back_by
        .as_deref()
        .and_then(|id| all.iter().find(|x| x.id == id));
    let mut o = json!({
        "serviceDeploymentArn": service_deployment_arn(call, c, &d.service.name, &d.id),
        "serviceArn": c.service_arn(call, &d.service.name),
        "clusterArn": c.arn(call),
        "createdAt": ts(d.created_at),
        "startedAt": ts(d.created_at),
        "targetServiceRevisionArn": service_revision_arn(call, c, &d.service.name, d.revision),
        "status": deployment_status(d, rollback),
    });
    if let Some(f) = d.timeline.finished_at {
        o["finishedAt"] = ts(f);
    }
    if let Some(r) = &d.reason {
        o["statusReason"] = json!(r);
    }
    o
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreatedAtReq {
    before: Option<f64>,
    after: Option<f64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListServiceDeploymentsReq {
    cluster: Option<String>,
    service: Option<String>,
    status: Option<Vec<String>>,
    created_at: Option<CreatedAtReq>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

const DEPLOYMENT_STATUSES: [&str; 9] = [
    "PENDING",
    "SUCCESSFUL",
    "STOPPED",
    "STOP_REQUESTED",
    "IN_PROGRESS",
    "ROLLBACK_REQUESTED",
    "ROLLBACK_IN_PROGRESS",
    "ROLLBACK_SUCCESSFUL",
    "ROLLBACK_FAILED",
];

/// `ListServiceDeployments`: a service's deployments, newest first.
async fn list_service_deployments(call: &Call<'_>, req: ListServiceDeploymentsReq) -> AwsResult {
    let c = find_cluster(call, req.cluster.as_deref()).await?;
    let name = req
        .service
        .as_deref()
        .map(name_of)
        .ok_or_else(|| AwsError::invalid("service is required"))?;
    if let Some(bad) = req
        .status
        .iter()
        .flatten()
        .find(|s| !DEPLOYMENT_STATUSES.contains(&s.as_str()))
    {
        return Err(AwsError::invalid(format!(
            "status must be one of {}, got {bad}",
            DEPLOYMENT_STATUSES.join(", ")
        )));
    }
    let svc = match validate_name(name) {
        Ok(()) => call.state.app.store().get_service(&c.key(name)).await?,
        Err(_) => None,
    }
    .ok_or_else(|| AwsError::client("ServiceNotFoundException", "Service not found."))?;
    let all = call
        .state
        .app
        .store()
        .list_deployments(&svc.key, DEPLOYMENTS_KEPT)
        .await?;
    let in_range = |d: &Deployment| {
        let at = d.created_at as f64 / 1000.0;
        req.created_at
            .as_ref()
            .is_none_or(|r| r.before.is_none_or(|b| at <= b) && r.after.is_none_or(|a| at >= a))
    };
    let briefs: Vec<Value> = all
        .iter()
        .filter(|d| in_range(d))
        .map(|d| deployment_brief(call, &c, d, &all))
        .filter(|b| {
            req.status.as_ref().is_none_or(|want| {
                want.iter()
                    .any(|s| b["status"].as_str() == Some(s.as_str()))
            })
        })
        .collect();
    let (page_items, next) = page(
        &briefs,
        req.max_results.or(Some(20)),
        req.next_token.as_deref(),
    )?;
    Ok(json!({ "serviceDeployments": page_items, "nextToken": next }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeServiceDeploymentsReq {
    service_deployment_arns: Option<Vec<String>>,
}

/// `DescribeServiceDeployments`: deployments by ARN
/// (`…:service-deployment/CLUSTER/SERVICE/ID`); unknown ones are failures (MISSING).
async fn describe_service_deployments(
    call: &Call<'_>,
    req: DescribeServiceDeploymentsReq,
) -> AwsResult {
    let arns = req.service_deployment_arns.unwrap_or_default();
    if arns.is_empty() || arns.len() > 20 {
        return Err(AwsError::invalid(
            "serviceDeploymentArns must have between 1 and 20 items.",
        ));
    }
    let store = &call.state.app.store();
    let mut out = Vec::new();
    let mut failures = Vec::new();
    for arn in &arns {
        let parts: Vec<&str> = arn
            .split_once(":service-deployment/")
            .map(|(_, rest)| rest.split('/').collect())
            .unwrap_or_default();
        let [cluster, service, id] = parts[..] else {
            failures.push(json!({ "arn": arn, "reason": "MISSING" }));
            continue;
        };
        let found = match (
            find_cluster(call, Some(cluster)).await,
            validate_name(service),
        ) {
            (Ok(c), Ok(())) => match store.get_service(&c.key(service)).await? {
                Some(svc) => match store.get_deployment(id).await? {
                    Some(d) if d.service == svc.key => Some((c, svc, d)),
                    _ => None,
                },
                None => None,
            },
            _ => None,
        };
        let Some((c, svc, d)) = found else {
            failures.push(json!({ "arn": arn, "reason": "MISSING" }));
            continue;
        };
        let all = store.list_deployments(&svc.key, DEPLOYMENTS_KEPT).await?;
        let tasks = store.list_tasks(&svc.key, false).await?;
        let counts = |dep: &Deployment, requested: u32| {
            let live: Vec<&Task> = tasks.iter().filter(|t| t.deployment_id == dep.id).collect();
            json!({
                "arn": service_revision_arn(call, &c, service, dep.revision),
                "requestedTaskCount": requested,
                "runningTaskCount": live.iter().filter(|t| is_running(t.last_status, t.health)).count(),
                "pendingTaskCount": live.iter().filter(|t| is_pending(t.last_status, t.health)).count(),
            })
        };
        // Sources: the older deployments that still have tasks, or the one just before.
        let older: Vec<&Deployment> = all.iter().filter(|x| x.created_at < d.created_at).collect();
        let mut sources: Vec<Value> = older
            .iter()
            .filter(|x| tasks.iter().any(|t| t.deployment_id == x.id))
            .map(|x| {
                let live = tasks
                    .iter()
                    .filter(|t| t.deployment_id == x.id && t.desired_running)
                    .count();
                counts(x, live as u32)
            })
            .collect();
        if sources.is_empty()
            && let Some(prev) = older.first()
        {
            sources.push(counts(prev, 0));
        }
        let mut o = deployment_brief(call, &c, &d, &all);
        let requested = if all.first().is_some_and(|p| p.id == d.id) {
            svc.desired_count
        } else {
            d.desired_count
        };
        o["updatedAt"] = ts(d.updated_at);
        o["sourceServiceRevisions"] = json!(sources);
        o["targetServiceRevision"] = counts(&d, requested);
        o["deploymentConfiguration"] = json!({
            "deploymentCircuitBreaker": {
                "enable": svc.config.circuit_breaker.enable,
                "rollback": svc.config.circuit_breaker.rollback,
            },
            "maximumPercent": svc.config.maximum_percent,
            "minimumHealthyPercent": svc.config.minimum_healthy_percent,
        });
        let cb = svc.config.circuit_breaker;
        let breaker_status = if !cb.enable {
            "DISABLED"
        } else if d.rolled_back_by.is_some()
            || (d.state == RolloutState::Failed
                && d.failed_tasks >= cb.threshold_for(d.desired_count))
        {
            "TRIGGERED"
        } else if d.state == RolloutState::InProgress {
            "MONITORING"
        } else {
            "MONITORING_COMPLETE"
        };
        o["deploymentCircuitBreaker"] = json!({
            "status": breaker_status,
            "failureCount": d.failed_tasks,
            "threshold": cb.threshold_for(d.desired_count),
        });
        if let Some(r) = d
            .rolled_back_by
            .as_deref()
            .and_then(|id| all.iter().find(|x| x.id == id))
        {
            o["rollback"] = json!({
                "reason": d.reason.clone().unwrap_or_default(),
                "startedAt": ts(r.created_at),
                "serviceRevisionArn": service_revision_arn(call, &c, service, r.revision),
            });
        }
        if d.state.is_terminal()
            && d.state != RolloutState::Succeeded
            && let Some(f) = d.timeline.finished_at
        {
            o["stoppedAt"] = ts(f);
        }
        out.push(o);
    }
    Ok(json!({ "serviceDeployments": out, "failures": failures }))
}

// ---------------------------------------------------------------- tasks

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListTasksReq {
    cluster: Option<String>,
    service_name: Option<String>,
    family: Option<String>,
    started_by: Option<String>,
    desired_status: Option<String>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

/// The task definition (`family:revision`) a task runs, by its record.
async fn task_source(call: &Call<'_>, t: &Task) -> AwsResult<String> {
    match &t.standalone {
        Some(s) => Ok(s.task_definition.clone()),
        None => Ok(call.state.app.source_of(&t.service, t.revision).await?),
    }
}

fn started_by(t: &Task) -> Option<String> {
    match &t.standalone {
        Some(s) => s.started_by.clone(),
        None => Some(format!("ecs-svc/{}", t.deployment_id)),
    }
}

async fn list_tasks(call: &Call<'_>, req: ListTasksReq) -> AwsResult {
    let c = find_cluster(call, req.cluster.as_deref()).await?;
    let want_running = match req.desired_status.as_deref() {
        None | Some("RUNNING") => true,
        Some("STOPPED") => false,
        Some(o) => {
            return Err(AwsError::invalid(format!(
                "desiredStatus must be RUNNING or STOPPED, got {o}"
            )));
        }
    };
    if req.service_name.is_some() && (req.family.is_some() || req.started_by.is_some()) {
        return Err(AwsError::invalid(
            "serviceName may not be specified with family or startedBy",
        ));
    }
    let mut keys: Vec<ServiceKey> = Vec::new();
    for svc in call.state.app.store().list_services(Some(&c.app)).await? {
        if svc.key.env != c.env {
            continue;
        }
        if req
            .service_name
            .as_deref()
            .is_some_and(|s| name_of(s) != svc.key.name)
        {
            continue;
        }
        keys.push(svc.key);
    }
    // Standalone tasks (RunTask) belong to no service.
    if req.service_name.is_none() {
        keys.push(ServiceKey::standalone(&c.app, &c.env));
    }
    let mut arns = Vec::new();
    for key in &keys {
        for t in call
            .state
            .app
            .store()
            .list_tasks(key, !want_running)
            .await?
        {
            if t.desired_running != want_running {
                continue;
            }
            if let Some(f) = &req.started_by
                && started_by(&t).as_deref() != Some(f.as_str())
            {
                continue;
            }
            if let Some(f) = &req.family {
                let src = task_source(call, &t).await?;
                if src.rsplit_once(':').map(|x| x.0) != Some(f.as_str()) {
                    continue;
                }
            }
            arns.push(c.task_arn(call, &t.id));
        }
    }
    let (arns, next) = page(&arns, req.max_results, req.next_token.as_deref())?;
    Ok(json!({ "taskArns": arns, "nextToken": next }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeTasksReq {
    cluster: Option<String>,
    tasks: Option<Vec<String>>,
}

async fn describe_tasks(call: &Call<'_>, req: DescribeTasksReq) -> AwsResult {
    let ids = req.tasks.unwrap_or_default();
    if ids.is_empty() {
        return Err(AwsError::invalid("Tasks cannot be empty."));
    }
    if ids.len() > 100 {
        return Err(AwsError::invalid("tasks can have at most 100 items."));
    }
    let c = find_cluster(call, req.cluster.as_deref()).await?;
    let mut tasks = Vec::new();
    let mut failures = Vec::new();
    for r in &ids {
        let id = name_of(r);
        match call.state.app.store().get_task(id).await? {
            Some(t) if t.service.app == c.app && t.service.env == c.env => {
                tasks.push(task_json(call, &c, &t).await?)
            }
            _ => failures.push(json!({ "arn": c.task_arn(call, id), "reason": "MISSING" })),
        }
    }
    Ok(json!({ "tasks": tasks, "failures": failures }))
}

/// The name of a task definition's container (its first container definition).
fn container_name_of(td: &TaskDefinition) -> String {
    td.ecs
        .as_deref()
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .and_then(|v| {
            v["containerDefinitions"][0]["name"]
                .as_str()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| td.family.clone())
}

async fn task_json(call: &Call<'_>, c: &Cluster, t: &Task) -> AwsResult {
    // What the task runs: a standalone task carries its container; a service task's is
    // its service's revision.
    let (source, container_name, image, digest) = match &t.standalone {
        Some(s) => (
            s.task_definition.clone(),
            s.container_name.clone(),
            Some(s.container.image.clone()),
            s.container.image_digest.clone(),
        ),
        None => {
            let td = call
                .state
                .app
                .store()
                .get_task_definition(&t.service.family(), t.revision)
                .await?;
            let source = td
                .as_ref()
                .map(|d| d.source.clone().unwrap_or_else(|| d.id()))
                .unwrap_or_else(|| format!("{}:{}", t.service.family(), t.revision));
            let name = td
                .as_ref()
                .map(container_name_of)
                .unwrap_or_else(|| t.service.family());
            (
                source,
                name,
                td.as_ref().map(|d| d.container.image.clone()),
                td.as_ref().and_then(|d| d.container.image_digest.clone()),
            )
        }
    };
    let task_arn = c.task_arn(call, &t.id);
    let status = ecs_status(t);
    let mut container = json!({
        "containerArn": call.arn("ecs", &format!("container/{}/{}/{}", c.name, t.id, container_name)),
        "taskArn": task_arn,
        "name": container_name,
        "image": image,
        "lastStatus": status.as_str(),
        "healthStatus": t.health.as_str(),
        "networkBindings": [],
        "networkInterfaces": [],
    });
    if let Some(d) = digest {
        container["imageDigest"] = json!(d);
    }
    if let Some(x) = t.exit_code {
        container["exitCode"] = json!(x);
    }
    if let Some(r) = &t.stopped_reason {
        container["reason"] = json!(r);
    }
    let (group, overrides) = match &t.standalone {
        Some(s) => (
            s.group.clone(),
            s.overrides
                .as_deref()
                .and_then(|o| serde_json::from_str::<Value>(o).ok())
                .unwrap_or_else(|| json!({ "containerOverrides": [] })),
        ),
        None => (
            format!("service:{}", t.service.name),
            json!({ "containerOverrides": [] }),
        ),
    };
    let mut o = json!({
        "taskArn": task_arn,
        "clusterArn": c.arn(call),
        "taskDefinitionArn": td_arn(call, &source),
        "lastStatus": status.as_str(),
        "desiredStatus": if t.desired_running { "RUNNING" } else { "STOPPED" },
        "healthStatus": t.health.as_str(),
        "containers": [container],
        "group": group,
        "createdAt": ts(t.created_at),
        "launchType": "EC2",
        "attachments": [],
        "overrides": overrides,
        "version": 1,
    });
    if let Some(by) = started_by(t) {
        o["startedBy"] = json!(by);
    }
    if let Some(s) = t.started_at {
        o["startedAt"] = ts(s);
    }
    if let Some(s) = t.stopped_at {
        o["stoppedAt"] = ts(s);
    }
    if let Some(s) = t.stop_code {
        o["stopCode"] = json!(s.as_str());
    }
    if let Some(r) = &t.stopped_reason {
        o["stoppedReason"] = json!(r);
    }
    Ok(o)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerOverrideReq {
    name: Option<String>,
    command: Option<Vec<String>>,
    environment: Option<Vec<KeyValueReq>>,
    cpu: Option<i64>,
    memory: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OverridesReq {
    container_overrides: Option<Vec<ContainerOverrideReq>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct RunTaskReq {
    cluster: Option<String>,
    task_definition: Option<String>,
    count: Option<i64>,
    started_by: Option<String>,
    group: Option<String>,
    overrides: Option<OverridesReq>,
    launch_type: Option<String>,
    /// StartTask's: the one host of a Slipway cluster is always meant.
    container_instances: Option<Vec<String>>,
}

/// Applies `containerOverrides` (command, environment, cpu, memory) to the container.
fn apply_overrides(
    mut spec: ContainerSpec,
    name: &str,
    overrides: Option<&OverridesReq>,
) -> AwsResult<ContainerSpec> {
    let list = overrides
        .and_then(|o| o.container_overrides.as_deref())
        .unwrap_or_default();
    for o in list {
        let Some(n) = o.name.as_deref() else {
            return Err(AwsError::invalid("containerOverrides[].name is required"));
        };
        if n != name {
            return Err(AwsError::invalid(format!(
                "Override for container named {n} is not a container in the TaskDefinition."
            )));
        }
        if let Some(cmd) = &o.command {
            spec.command = Some(cmd.clone());
        }
        for kv in o.environment.as_deref().unwrap_or_default() {
            let Some(k) = kv.name.as_deref().filter(|k| !k.is_empty()) else {
                return Err(AwsError::invalid(
                    "containerOverrides[].environment[].name is required",
                ));
            };
            spec.environment
                .insert(k.to_owned(), kv.value.clone().unwrap_or_default());
        }
        if let Some(cpu) = o.cpu {
            spec.cpu = Some(u32::try_from(cpu).map_err(|_| {
                AwsError::invalid(format!(
                    "containerOverrides[].cpu must not be negative, got {cpu}"
                ))
            })?);
        }
        if let Some(m) = o.memory {
            if m < 6 {
                return Err(AwsError::invalid(format!(
                    "containerOverrides[].memory must be at least 6 MiB, got {m}"
                )));
            }
            spec.memory = Some(u32::try_from(m).unwrap_or(u32::MAX));
        }
    }
    Ok(spec)
}

/// `RunTask` (and `StartTask`: a Slipway cluster is one host): runs a task definition
/// revision `count` times, outside any service. The tasks are not replaced when they stop.
async fn run_task(call: &Call<'_>, req: RunTaskReq, raw: Value) -> AwsResult {
    let c = find_cluster(call, req.cluster.as_deref()).await?;
    let tdr = req
        .task_definition
        .as_deref()
        .ok_or_else(|| AwsError::invalid("taskDefinition is required"))?;
    let count = match req.count {
        None => 1,
        Some(n) if (1..=10).contains(&n) => n as usize,
        Some(n) => {
            return Err(AwsError::invalid(format!(
                "count must be between 1 and 10, got {n}"
            )));
        }
    };
    if let Some(by) = &req.started_by
        && (by.len() > 128
            || !by
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_'))
    {
        return Err(AwsError::invalid(
            "startedBy may have up to 128 letters (uppercase and lowercase), numbers, hyphens, and underscores",
        ));
    }
    let td = match find_td(call, tdr).await {
        Ok(td) => td,
        Err(e) if e.kind == "ClientException" => {
            return Err(AwsError::client(
                "ClientException",
                "TaskDefinition not found.",
            ));
        }
        Err(e) => return Err(e),
    };
    // What the revision runs (its source when it is a service's pinned copy).
    let source = td.source.clone().unwrap_or_else(|| td.id());
    let family = source.rsplit_once(':').map_or(source.as_str(), |x| x.0);
    let group = req
        .group
        .clone()
        .unwrap_or_else(|| format!("family:{family}"));
    let container_name = container_name_of(&td);
    let spec = apply_overrides(
        td.container.clone(),
        &container_name,
        req.overrides.as_ref(),
    )?;
    // `overrides` is echoed as given.
    let overrides = raw
        .get("overrides")
        .filter(|o| o.is_object())
        .map(Value::to_string);
    let started = call
        .state
        .app
        .run_tasks(RunTasks {
            key: ServiceKey::standalone(&c.app, &c.env),
            td: td.clone(),
            container: spec,
            container_name,
            started_by: req.started_by.clone(),
            group,
            overrides,
            count,
        })
        .await?;
    let mut tasks = Vec::with_capacity(started.len());
    for t in &started {
        tasks.push(task_json(call, &c, t).await?);
    }
    Ok(json!({ "tasks": tasks, "failures": [] }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StopTaskReq {
    cluster: Option<String>,
    task: Option<String>,
    reason: Option<String>,
}

async fn stop_task(call: &Call<'_>, req: StopTaskReq) -> AwsResult {
    let c = find_cluster(call, req.cluster.as_deref()).await?;
    let id = req
        .task
        .as_deref()
        .map(name_of)
        .ok_or_else(|| AwsError::invalid("task is required"))?;
    if req.reason.as_ref().is_some_and(|r| r.len() > 255) {
        return Err(AwsError::invalid("reason may be up to 255 characters"));
    }
    let not_found = || AwsError::invalid("The referenced task was not found.");
    match call.state.app.store().get_task(id).await? {
        Some(t) if t.service.app == c.app && t.service.env == c.env => {}
        _ => return Err(not_found()),
    }
    let reason = req
        .reason
        .as_deref()
        .filter(|r| !r.is_empty())
        .unwrap_or("Task stopped by user");
    let t = call
        .state
        .app
        .stop_task(id, reason)
        .await?
        .ok_or_else(not_found)?;
    Ok(json!({ "task": task_json(call, &c, &t).await? }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> RegisterReq {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn container_definitions_map_onto_a_container_spec() {
        let r = req(json!({
            "family": "web",
            "containerDefinitions": [{
                "name": "web", "image": "slipway-hello:v1", "memory": 200, "cpu": 10,
                "portMappings": [{"containerPort": 8080, "hostPort": 80}],
                "environment": [{"name": "A", "value": "1"}],
                "command": ["serve"],
                "healthCheck": {"command": ["CMD", "/hello", "check"], "interval": 5},
                "stopTimeout": 7
            }]
        }));
        let c = to_container(&r).unwrap();
        assert_eq!(c.image, "slipway-hello:v1");
        assert_eq!(c.port, Some(8080));
        assert_eq!(c.memory, Some(200));
        assert_eq!(c.cpu, None, "a container's cpu is a share, not a limit");
        assert_eq!(c.environment.get("A").map(String::as_str), Some("1"));
        assert_eq!(c.command, Some(vec!["serve".to_owned()]));
        let h = c.healthcheck.unwrap();
        assert_eq!((h.interval_ms, h.timeout_ms, h.retries), (5000, 5000, 3));
        assert_eq!(c.stop_timeout_ms, 7000);
    }

    #[test]
    fn bad_container_definitions_are_client_errors() {
        for v in [
            json!({"family": "f", "containerDefinitions": []}),
            json!({"family": "f", "containerDefinitions": [{"name": "a"}]}),
            json!({"family": "f", "containerDefinitions": [{"image": "a"}]}),
            json!({"family": "f", "containerDefinitions": [{"name": "a", "image": "b", "essential": false}]}),
            json!({"family": "f", "containerDefinitions": [{"name": "a", "image": "b", "healthCheck": {"command": ["curl"]}}]}),
            json!({"family": "f", "containerDefinitions": [{"name": "a", "image": "b", "portMappings": [{"containerPort": 0}]}]}),
        ] {
            let e = to_container(&req(v.clone())).unwrap_err();
            assert_eq!(e.kind, "ClientException", "{v}");
        }
        assert!(check_family("web_1-x").is_ok());
        assert!(check_family("web:1").is_err());
    }

    #[test]
    fn registrations_echo_defaults_and_drop_read_only_fields() {
        let n = normalized(&json!({
            "family": "f", "revision": 4, "status": "ACTIVE", "compatibilities": ["EC2"],
            "containerDefinitions": [{"name": "a", "image": "b", "portMappings": [{"containerPort": 80}]}]
        }));
        assert!(n.get("revision").is_none() && n.get("status").is_none());
        let d = &n["containerDefinitions"][0];
        assert_eq!(d["cpu"], 0);
        assert_eq!(d["essential"], true);
        assert_eq!(d["environment"], json!([]));
        assert_eq!(d["mountPoints"], json!([]));
        assert_eq!(d["portMappings"][0]["protocol"], "tcp");
        assert_eq!(n["volumes"], json!([]));
    }

    #[test]
    fn names() {
        assert_eq!(name_of("arn:aws:ecs:us-east-1:0:service/c/web"), "web");
        assert_eq!(name_of("web"), "web");
        assert_eq!(cluster_name("shop", "default"), "shop");
        assert_eq!(cluster_name("shop", "prod"), "shop-prod");
    }
}
