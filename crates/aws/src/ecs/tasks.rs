//! ECS tasks: `ListTasks`, `DescribeTasks`, `RunTask`/`StartTask`, `StopTask`.

use super::*;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListTasksReq {
    cluster: Option<String>,
    service_name: Option<String>,
    family: Option<String>,
    started_by: Option<String>,
    desired_status: Option<String>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

/// The task definition (`family:revision`) a task runs, by its record.
pub(super) async fn task_source(call: &Call<'_>, t: &Task) -> AwsResult<String> {
    match &t.standalone {
        Some(s) => Ok(s.task_definition.clone()),
        None => Ok(call.state.app.source_of(&t.service, t.revision).await?),
    }
}

pub(super) fn started_by(t: &Task) -> Option<String> {
    match &t.standalone {
        Some(s) => s.started_by.clone(),
        None => Some(format!("ecs-svc/{}", t.deployment_id)),
    }
}

pub(super) async fn list_tasks(call: &Call<'_>, req: ListTasksReq) -> AwsResult {
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
pub(super) struct DescribeTasksReq {
    cluster: Option<String>,
    tasks: Option<Vec<String>>,
}

pub(super) async fn describe_tasks(call: &Call<'_>, req: DescribeTasksReq) -> AwsResult {
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

/// The name of a task definition's main container (of a task of several, the one it
/// names; else its first container definition).
pub(super) fn container_name_of(td: &TaskDefinition) -> String {
    if let Some(n) = &td.container.name {
        return n.clone();
    }
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

pub(super) async fn task_json(call: &Call<'_>, c: &Cluster, t: &Task) -> AwsResult {
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
        // ECS shows the bare digest (a pin from a registry is `repo@sha256:…`).
        let bare = d.rsplit_once('@').map_or(d.as_str(), |(_, x)| x);
        container["imageDigest"] = json!(bare);
    }
    if let Some(x) = t.exit_code {
        container["exitCode"] = json!(x);
    }
    if let Some(r) = &t.stopped_reason {
        container["reason"] = json!(r);
    }
    // A task of several containers: the main one as above, then the others as the
    // engine last showed them.
    let mut containers = vec![container];
    for s in t.containers.iter().filter(|s| s.name != container_name) {
        let mut o = json!({
            "containerArn": call.arn("ecs", &format!("container/{}/{}/{}", c.name, t.id, s.name)),
            "taskArn": task_arn,
            "name": s.name,
            "lastStatus": s.last_status,
            "healthStatus": s.health,
            "essential": s.essential,
            "networkBindings": [],
            "networkInterfaces": [],
        });
        if let Some(x) = s.exit_code {
            o["exitCode"] = json!(x);
        }
        containers.push(o);
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
        "containers": containers,
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
    if let Some(h) = &t.host {
        o["containerInstanceArn"] =
            json!(call.arn("ecs", &format!("container-instance/{}/{h}", c.name)));
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
pub(super) struct ContainerOverrideReq {
    name: Option<String>,
    command: Option<Vec<String>>,
    environment: Option<Vec<KeyValueReq>>,
    cpu: Option<i64>,
    memory: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct OverridesReq {
    container_overrides: Option<Vec<ContainerOverrideReq>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub(super) struct RunTaskReq {
    cluster: Option<String>,
    task_definition: Option<String>,
    count: Option<i64>,
    started_by: Option<String>,
    group: Option<String>,
    overrides: Option<OverridesReq>,
    launch_type: Option<String>,
    /// StartTask's: one task on each of these hosts.
    container_instances: Option<Vec<String>>,
    placement_strategy: Option<Vec<PlacementStrategyReq>>,
    placement_constraints: Option<Vec<PlacementConstraintReq>>,
}

/// Applies `containerOverrides` (command, environment, cpu, memory) to the container.
pub(super) fn apply_overrides(
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

/// `RunTask` (placed by its placement rules) and `StartTask` (one task on each container
/// instance named): runs a task definition revision outside any service. The tasks are not
/// replaced when they stop.
pub(super) async fn run_task(call: &Call<'_>, req: RunTaskReq, raw: Value) -> AwsResult {
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
            placement: placement_of(
                req.placement_strategy.as_deref(),
                req.placement_constraints.as_deref(),
            )?
            .unwrap_or_default(),
            hosts: req
                .container_instances
                .iter()
                .flatten()
                .map(|r| name_of(r).to_owned())
                .collect(),
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
pub(super) struct StopTaskReq {
    cluster: Option<String>,
    task: Option<String>,
    reason: Option<String>,
}

pub(super) async fn stop_task(call: &Call<'_>, req: StopTaskReq) -> AwsResult {
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
