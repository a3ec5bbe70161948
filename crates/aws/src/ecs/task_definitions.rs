//! ECS task definitions: registering, describing, listing and deregistering, and the
//! mapping of `containerDefinitions` onto a container spec.

use super::*;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub(super) struct PortMappingReq {
    container_port: Option<i64>,
    host_port: Option<i64>,
    protocol: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct KeyValueReq {
    pub(super) name: Option<String>,
    pub(super) value: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct HealthCheckReq {
    command: Option<Vec<String>>,
    interval: Option<i64>,
    timeout: Option<i64>,
    retries: Option<i64>,
    start_period: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub(super) struct ContainerDefReq {
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
    linux_parameters: Option<LinuxParametersReq>,
    user: Option<String>,
    mount_points: Option<Vec<MountPointReq>>,
    depends_on: Option<Vec<DependsOnReq>>,
    volumes_from: Option<Vec<VolumesFromReq>>,
    firelens_configuration: Option<FirelensReq>,
    log_configuration: Option<LogConfigurationReq>,
}

/// `containerDefinitions[].dependsOn[]`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DependsOnReq {
    container_name: Option<String>,
    condition: Option<String>,
}

/// `containerDefinitions[].volumesFrom[]`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct VolumesFromReq {
    source_container: Option<String>,
    read_only: Option<bool>,
}

/// `containerDefinitions[].firelensConfiguration`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct FirelensReq {
    #[serde(rename = "type")]
    kind: Option<String>,
    options: Option<BTreeMap<String, String>>,
}

/// `containerDefinitions[].logConfiguration`: `awsfirelens` sends the output to the task's
/// log router; the other drivers are AWS's (`awslogs` ...) and keep Slipway's own logs.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub(super) struct LogConfigurationReq {
    log_driver: Option<String>,
    options: Option<BTreeMap<String, String>>,
}

/// `containerDefinitions[].linuxParameters`: Slipway maps `initProcessEnabled`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct LinuxParametersReq {
    init_process_enabled: Option<bool>,
}

/// `containerDefinitions[].mountPoints[]`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct MountPointReq {
    source_volume: Option<String>,
    container_path: Option<String>,
    read_only: Option<bool>,
}

/// `volumes[]` of a task definition: Slipway runs Docker volumes
/// (`dockerVolumeConfiguration`, or none given); host paths and EFS are refused.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct VolumeReq {
    name: Option<String>,
    host: Option<Value>,
    efs_volume_configuration: Option<Value>,
    fsx_windows_file_server_volume_configuration: Option<Value>,
}

/// `containerDefinitions[].secrets[]`: `valueFrom` names a Slipway secret, directly or as
/// the name inside a Secrets Manager or SSM parameter ARN.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SecretReq {
    name: Option<String>,
    value_from: Option<String>,
}

pub(super) fn secret_name_from(value_from: &str) -> &str {
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
pub(super) struct RegisterReq {
    family: Option<String>,
    container_definitions: Option<Vec<ContainerDefReq>>,
    cpu: Option<String>,
    memory: Option<String>,
    network_mode: Option<String>,
    requires_compatibilities: Option<Vec<String>>,
    execution_role_arn: Option<String>,
    task_role_arn: Option<String>,
    volumes: Option<Vec<VolumeReq>>,
}

pub(super) fn check_family(f: &str) -> AwsResult<()> {
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

/// The ContainerSpec Slipway runs for a task definition: its main container (the first
/// essential one with a port mapping, else the first essential one) with the others as its
/// sidecars, in their written order.
pub(super) fn to_container(req: &RegisterReq) -> AwsResult<ContainerSpec> {
    let defs = req.container_definitions.as_deref().unwrap_or_default();
    let mut main = container_of(req)?;
    let main_at = main_index(defs);
    if defs.len() == 1 {
        return Ok(main);
    }
    let bad = |m: String| AwsError::client("ClientException", m);
    main.name = defs[main_at].name.clone();
    for (i, d) in defs.iter().enumerate() {
        let c = container_def(req, d)?;
        if i == main_at {
            main.container_depends_on = c.container_depends_on;
            main.volumes_from = c.volumes_from;
            main.logging = c.logging;
            if d.firelens_configuration.is_some() {
                return Err(bad(format!(
                    "container {}: the log router cannot be the task's main container; give the app a port mapping",
                    d.name.as_deref().unwrap_or_default()
                )));
            }
            continue;
        }
        let name = d.name.clone().unwrap_or_default();
        main.sidecars.push(slipway_core::model::Sidecar {
            firelens: d
                .firelens_configuration
                .as_ref()
                .map(|f| slipway_core::model::Firelens {
                    kind: f.kind.clone().unwrap_or_default(),
                    options: f.options.clone().unwrap_or_default(),
                }),
            name,
            essential: d.essential.unwrap_or(true),
            container: c,
        });
    }
    slipway_core::model::containers::validate_task_containers(&main, "task").map_err(bad)?;
    Ok(main)
}

fn main_index(defs: &[ContainerDefReq]) -> usize {
    let essential = |d: &&ContainerDefReq| d.essential.unwrap_or(true);
    defs.iter()
        .position(|d| essential(&d) && d.port_mappings.as_deref().is_some_and(|p| !p.is_empty()))
        .or_else(|| defs.iter().position(|d| essential(&d)))
        .unwrap_or(0)
}

/// The main container alone, after the checks of the whole list.
fn container_of(req: &RegisterReq) -> AwsResult<ContainerSpec> {
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
    container_def(req, &defs[main_index(defs)])
}

/// One container definition onto a container spec.
fn container_def(req: &RegisterReq, d: &ContainerDefReq) -> AwsResult<ContainerSpec> {
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
    let command = d.command.clone().filter(|c| !c.is_empty());
    let memory = num(d.memory.or(d.memory_reservation), "memory", 6, 1 << 20)?
        .or(task_num(&req.memory, "memory")?);
    let c = ContainerSpec {
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
        init: d
            .linux_parameters
            .as_ref()
            .and_then(|l| l.init_process_enabled)
            .unwrap_or(false),
        http_route: None,
        entrypoint: d.entry_point.clone().filter(|e| !e.is_empty()),
        user: d.user.clone().filter(|u| !u.is_empty()),
        volumes: mounts(req, d)?,
        depends_on: Vec::new(),
        job: None,
        container_depends_on: dependencies(d)?,
        volumes_from: d
            .volumes_from
            .iter()
            .flatten()
            .map(|v| slipway_core::model::VolumesFrom {
                source_container: v.source_container.clone().unwrap_or_default(),
                read_only: v.read_only.unwrap_or(false),
            })
            .collect(),
        logging: d
            .log_configuration
            .as_ref()
            .filter(|l| l.log_driver.as_deref() == Some("awsfirelens"))
            .map(|l| slipway_core::model::LogRouting {
                options: l.options.clone().unwrap_or_default(),
            }),
        ..ContainerSpec::default()
    };
    c.validate_runtime()
        .map_err(|m| AwsError::client("ClientException", m))?;
    Ok(c)
}

/// `dependsOn` with ECS's conditions.
fn dependencies(d: &ContainerDefReq) -> AwsResult<Vec<slipway_core::model::ContainerDependency>> {
    let mut out = Vec::new();
    for dep in d.depends_on.iter().flatten() {
        let (Some(name), Some(cond)) = (
            dep.container_name.as_deref().filter(|s| !s.is_empty()),
            dep.condition.as_deref(),
        ) else {
            return Err(AwsError::client(
                "ClientException",
                "dependsOn needs a containerName and a condition",
            ));
        };
        let condition = slipway_core::model::DependencyCondition::parse(cond)
            .filter(|_| cond == cond.to_ascii_uppercase())
            .ok_or_else(|| {
                AwsError::client(
                    "ClientException",
                    format!(
                        "dependsOn condition {cond:?} must be START, COMPLETE, SUCCESS or HEALTHY"
                    ),
                )
            })?;
        out.push(slipway_core::model::ContainerDependency {
            container: name.to_owned(),
            condition,
        });
    }
    Ok(out)
}

/// `mountPoints` onto the task's Docker volumes.
fn mounts(req: &RegisterReq, d: &ContainerDefReq) -> AwsResult<Vec<VolumeMount>> {
    let bad = |m: String| AwsError::client("ClientException", m);
    let volumes = req.volumes.as_deref().unwrap_or_default();
    for v in volumes {
        let name = v.name.as_deref().unwrap_or_default();
        if v.host.is_some()
            || v.efs_volume_configuration.is_some()
            || v.fsx_windows_file_server_volume_configuration.is_some()
        {
            return Err(bad(format!(
                "volume {name:?}: only Docker volumes (dockerVolumeConfiguration) are supported, not host paths, EFS or FSx"
            )));
        }
    }
    let mut out = Vec::new();
    for m in d.mount_points.iter().flatten() {
        let (Some(src), Some(path)) = (
            m.source_volume.as_deref().filter(|s| !s.is_empty()),
            m.container_path.as_deref().filter(|s| !s.is_empty()),
        ) else {
            return Err(bad(
                "mountPoints need a sourceVolume and a containerPath".into()
            ));
        };
        if !volumes.iter().any(|v| v.name.as_deref() == Some(src)) {
            return Err(bad(format!(
                "Invalid 'sourceVolume' in mountPoints: no volume named {src:?} in volumes"
            )));
        }
        out.push(VolumeMount {
            name: src.to_owned(),
            path: path.to_owned(),
            read_only: m.read_only.unwrap_or(false),
        });
    }
    Ok(out)
}

/// The registration as echoed: read-only fields dropped, ECS defaults filled in.
pub(super) fn normalized(raw: &Value) -> Value {
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
pub(super) fn synthesized(td: &TaskDefinition) -> Value {
    let c = &td.container;
    let main = slipway_core::model::containers::main_container_name(c, &td.family);
    let mut defs = vec![container_json(main, true, c)];
    let mut volumes: Vec<Value> = Vec::new();
    let mut add_volumes = |c: &ContainerSpec| {
        for v in &c.volumes {
            if !volumes.iter().any(|x| x["name"] == v.name.as_str()) {
                volumes.push(json!({"name": v.name, "dockerVolumeConfiguration": {"scope": "shared", "autoprovision": true, "driver": "local"}}));
            }
        }
    };
    add_volumes(c);
    for sc in &c.sidecars {
        let mut d = container_json(&sc.name, sc.essential, &sc.container);
        if let Some(f) = &sc.firelens {
            d["firelensConfiguration"] = json!({"type": f.kind, "options": f.options});
        }
        defs.push(d);
        add_volumes(&sc.container);
    }
    json!({
        "family": td.family,
        "containerDefinitions": defs,
        "networkMode": "bridge",
        "volumes": volumes,
        "placementConstraints": [],
    })
}

/// One container of a synthesized task definition.
fn container_json(name: &str, essential: bool, c: &ContainerSpec) -> Value {
    let mut def = json!({
        "name": name,
        "image": c.image,
        "cpu": c.cpu.unwrap_or(0),
        "essential": essential,
        "portMappings": c.port.map(|p| vec![json!({"containerPort": p, "hostPort": 0, "protocol": "tcp"})]).unwrap_or_default(),
        "environment": c.environment.iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>(),
        "mountPoints": c.volumes
            .iter()
            .map(|v| json!({"sourceVolume": v.name, "containerPath": v.path, "readOnly": v.read_only}))
            .collect::<Vec<_>>(),
        "volumesFrom": c.volumes_from
            .iter()
            .map(|v| json!({"sourceContainer": v.source_container, "readOnly": v.read_only}))
            .collect::<Vec<_>>(),
        "stopTimeout": c.stop_timeout_ms / 1000,
    });
    if let Some(m) = c.memory {
        def["memory"] = json!(m);
    }
    if c.init {
        def["linuxParameters"] = json!({"initProcessEnabled": true});
    }
    if let Some(cmd) = &c.command {
        def["command"] = json!(cmd);
    }
    if let Some(ep) = &c.entrypoint {
        def["entryPoint"] = json!(ep);
    }
    if let Some(u) = &c.user {
        def["user"] = json!(u);
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
    if !c.container_depends_on.is_empty() {
        def["dependsOn"] = json!(
            c.container_depends_on
                .iter()
                .map(|d| json!({"containerName": d.container, "condition": d.condition.as_str()}))
                .collect::<Vec<_>>()
        );
    }
    if let Some(l) = &c.logging {
        def["logConfiguration"] = json!({"logDriver": "awsfirelens", "options": l.options});
    }
    def
}

pub(super) fn td_arn(call: &Call<'_>, id: &str) -> String {
    call.arn("ecs", &format!("task-definition/{id}"))
}

pub(super) fn td_json(call: &Call<'_>, td: &TaskDefinition) -> Value {
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
pub(super) async fn find_td(call: &Call<'_>, r: &str) -> AwsResult<TaskDefinition> {
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

pub(super) async fn register_task_definition(call: &Call<'_>, body: &[u8]) -> AwsResult {
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
pub(super) struct TdReq {
    task_definition: Option<String>,
}

pub(super) async fn describe_task_definition(call: &Call<'_>, req: TdReq) -> AwsResult {
    let r = req
        .task_definition
        .ok_or_else(|| AwsError::client("ClientException", "taskDefinition is required."))?;
    let td = find_td(call, &r).await?;
    Ok(json!({ "taskDefinition": td_json(call, &td), "tags": [] }))
}

pub(super) async fn deregister_task_definition(call: &Call<'_>, req: TdReq) -> AwsResult {
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
pub(super) struct ListTdReq {
    family_prefix: Option<String>,
    status: Option<String>,
    sort: Option<String>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

/// One page of an ECS list (`maxResults` 1 to 100).
pub(super) fn page<T: Clone>(
    items: &[T],
    max: Option<i64>,
    token: Option<&str>,
) -> AwsResult<(Vec<T>, Option<String>)> {
    crate::page(items, max, token, 100)
}

pub(super) fn status_filter(s: Option<&str>) -> AwsResult<Option<bool>> {
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

pub(super) async fn list_task_definitions(call: &Call<'_>, req: ListTdReq) -> AwsResult {
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

pub(super) async fn list_families(call: &Call<'_>, req: ListTdReq) -> AwsResult {
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
