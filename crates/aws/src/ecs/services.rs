//! ECS services: `CreateService`, `UpdateService`, `DescribeServices`, `ListServices`,
//! `DeleteService`; writes go through the application layer.

use super::*;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct BreakerReq {
    enable: Option<bool>,
    rollback: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DeploymentConfigReq {
    maximum_percent: Option<i64>,
    minimum_healthy_percent: Option<i64>,
    deployment_circuit_breaker: Option<BreakerReq>,
    #[serde(flatten)]
    strategy: StrategyReq,
}

/// What a request asks of the strategy (checked; `None`: nothing).
pub(super) fn strategy_ask(req: Option<&DeploymentConfigReq>) -> AwsResult<Option<StrategyAsk>> {
    match req {
        Some(r) => r.strategy.ask(),
        None => Ok(None),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CreateServiceReq {
    cluster: Option<String>,
    service_name: Option<String>,
    task_definition: Option<String>,
    desired_count: Option<i64>,
    deployment_configuration: Option<DeploymentConfigReq>,
    health_check_grace_period_seconds: Option<i64>,
    placement_strategy: Option<Vec<PlacementStrategyReq>>,
    placement_constraints: Option<Vec<PlacementConstraintReq>>,
    load_balancers: Option<Vec<LoadBalancerReq>>,
}

/// One entry of `loadBalancers[]`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct LoadBalancerReq {
    target_group_arn: Option<String>,
    load_balancer_name: Option<String>,
    container_name: Option<String>,
    container_port: Option<i64>,
}

/// The container name and the host ports of a task definition as registered.
fn container_of(td: &TaskDefinition) -> (String, Vec<u16>) {
    let def = td
        .ecs
        .as_deref()
        .and_then(|e| serde_json::from_str::<Value>(e).ok())
        .and_then(|v| {
            let defs = v.get("containerDefinitions")?.as_array()?.clone();
            // A task of several containers: its main one.
            match &td.container.name {
                Some(n) => defs
                    .into_iter()
                    .find(|d| d.get("name").and_then(Value::as_str) == Some(n.as_str())),
                None => defs.into_iter().next(),
            }
        });
    let name = def
        .as_ref()
        .and_then(|d| d.get("name")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| td.family.clone());
    let ports = def
        .as_ref()
        .and_then(|d| d.get("portMappings")?.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|m| m.get("hostPort")?.as_u64())
        .filter_map(|p| u16::try_from(p).ok().filter(|p| *p > 0))
        .collect();
    (name, ports)
}

/// `loadBalancers[]` checked against the task definition: target group ARNs, container
/// names and ports in range (the application layer checks the ports the container exposes).
fn bindings(
    req: Option<&[LoadBalancerReq]>,
    td: Option<&TaskDefinition>,
) -> AwsResult<Option<Vec<TargetGroupBinding>>> {
    let Some(req) = req else { return Ok(None) };
    let mut out = Vec::new();
    for lb in req {
        if lb.load_balancer_name.is_some() {
            return Err(AwsError::invalid(
                "loadBalancerName is for Classic Load Balancers; give targetGroupArn",
            ));
        }
        let arn = lb
            .target_group_arn
            .as_deref()
            .ok_or_else(|| AwsError::invalid("loadBalancers: targetGroupArn is required"))?;
        let target_group = crate::elb::target_group_of(arn)
            .ok_or_else(|| AwsError::invalid(format!("Invalid target group ARN {arn}")))?;
        let container_name = lb
            .container_name
            .clone()
            .ok_or_else(|| AwsError::invalid("loadBalancers: containerName is required"))?;
        if let Some(td) = td {
            let (name, _) = container_of(td);
            if name != container_name {
                return Err(AwsError::invalid(format!(
                    "The container {container_name} does not exist in the task definition."
                )));
            }
        }
        let container_port = lb
            .container_port
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p > 0)
            .ok_or_else(|| {
                AwsError::invalid("loadBalancers: containerPort must be between 1 and 65535")
            })?;
        out.push(TargetGroupBinding {
            target_group,
            container_name,
            container_port,
        });
    }
    Ok(Some(out))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UpdateServiceReq {
    cluster: Option<String>,
    service: Option<String>,
    task_definition: Option<String>,
    desired_count: Option<i64>,
    force_new_deployment: Option<bool>,
    deployment_configuration: Option<DeploymentConfigReq>,
    health_check_grace_period_seconds: Option<i64>,
    placement_strategy: Option<Vec<PlacementStrategyReq>>,
    placement_constraints: Option<Vec<PlacementConstraintReq>>,
    load_balancers: Option<Vec<LoadBalancerReq>>,
}

/// The configuration change a request asks for (ranges checked here; the rule that a
/// rollout must be able to progress is the application layer's).
pub(super) fn config_patch(
    req: Option<&DeploymentConfigReq>,
    grace: Option<i64>,
) -> AwsResult<ConfigPatch> {
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

pub(super) fn desired(v: Option<i64>) -> AwsResult<Option<u32>> {
    match v {
        None => Ok(None),
        Some(n) if (0..=1000).contains(&n) => Ok(Some(n as u32)),
        Some(n) => Err(AwsError::invalid(format!(
            "desiredCount must be between 0 and 1000 on Slipway, got {n}"
        ))),
    }
}

pub(super) fn rollout(d: &Deployment) -> (&'static str, String) {
    match d.state {
        RolloutState::InProgress => (
            "IN_PROGRESS",
            match &d.rollout {
                Some(p) => progress_words(p),
                None => format!("ECS deployment ecs-svc/{} in progress.", d.id),
            },
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
pub(super) fn ecs_status(t: &Task) -> TaskStatus {
    if t.standalone.is_some() {
        // A standalone task has no load balancer to register with: RUNNING is running.
        return t.last_status;
    }
    service_task_status(t.last_status, t.health)
}

pub(super) fn service_task_status(status: TaskStatus, health: TaskHealth) -> TaskStatus {
    match (status, health) {
        (TaskStatus::Running, TaskHealth::Unknown) => TaskStatus::Activating,
        (s, _) => s,
    }
}

pub(super) fn is_running(status: TaskStatus, health: TaskHealth) -> bool {
    service_task_status(status, health) == TaskStatus::Running
}

pub(super) fn is_pending(status: TaskStatus, health: TaskHealth) -> bool {
    matches!(
        service_task_status(status, health),
        TaskStatus::Provisioning | TaskStatus::Pending | TaskStatus::Activating
    )
}

/// One service as `DescribeServices` shows it.
pub(super) async fn service_json(call: &Call<'_>, c: &Cluster, svc: &ServiceRecord) -> AwsResult {
    let mut out = services_json(call, c, std::slice::from_ref(&svc.key.name)).await?;
    out.remove(&svc.key.name)
        .ok_or_else(|| AwsError::server("the service vanished"))
}

/// Services of a cluster as `DescribeServices` shows them, by name (unknown ones are left
/// out). A fixed number of store reads whatever the number of services: the services, their
/// deployments, their live task counts, their events and the task definitions they run.
pub(super) async fn services_json(
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
    let tds: HashMap<(String, u32), TaskDefinition> = store
        .get_task_definitions(&wanted)
        .await?
        .into_iter()
        .map(|td| ((td.family.clone(), td.revision), td))
        .collect();
    let sources: HashMap<(String, u32), String> = tds
        .iter()
        .map(|(k, td)| (k.clone(), td.source.clone().unwrap_or_else(|| td.id())))
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
        let (placement_strategy, placement_constraints) = placement_json(&svc.placement);
        out.insert(
            key.name.clone(),
            json!({
                "serviceArn": c.service_arn(call, &key.name),
                "serviceName": key.name,
                "clusterArn": c.arn(call),
                "loadBalancers": tds
                    .get(&(key.family(), svc.revision))
                    .map_or_else(|| json!([]), |td| crate::elb::service_load_balancers(call, key, &td.container, &container_of(td).0)),
                "serviceRegistries": [],
                "status": if svc.deleting { "DRAINING" } else { "ACTIVE" },
                "desiredCount": svc.desired_count,
                "runningCount": running,
                "pendingCount": pending,
                "launchType": "EC2",
                "taskDefinition": td_arn(call, &source(key, svc.revision)),
                "deploymentConfiguration": configuration_json(&svc.config, &svc.config.progressive),
                "deployments": deployments,
                "events": events,
                "createdAt": ts(svc.created_at),
                "placementConstraints": placement_constraints,
                "placementStrategy": placement_strategy,
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

pub(super) async fn create_service(call: &Call<'_>, req: CreateServiceReq) -> AwsResult {
    let c = find_cluster(call, req.cluster.as_deref()).await?;
    let name = req
        .service_name
        .ok_or_else(|| AwsError::invalid("serviceName is required"))?;
    check_service_name(&name)?;
    let tdr = req
        .task_definition
        .ok_or_else(|| AwsError::invalid("taskDefinition is required"))?;
    let desired_count = desired(req.desired_count)?.unwrap_or(1);
    let mut patch = config_patch(
        req.deployment_configuration.as_ref(),
        req.health_check_grace_period_seconds,
    )?;
    let ask = strategy_ask(req.deployment_configuration.as_ref())?;
    let placement = placement_of(
        req.placement_strategy.as_deref(),
        req.placement_constraints.as_deref(),
    )?
    .unwrap_or_default();
    let td = find_td(call, &tdr).await?;
    let lb = LoadBalancing {
        load_balancers: bindings(req.load_balancers.as_deref(), Some(&td))?.unwrap_or_default(),
        host_ports: container_of(&td).1,
    };
    let has_routes = td.container.http_route.is_some() || !lb.load_balancers.is_empty();
    let base = DeploymentConfig::default();
    patch.progressive = ask
        .map(|a| a.resolve(&base.progressive, has_routes))
        .transpose()?;
    check(&patch.apply(base)?, has_routes)?;
    let svc = call
        .state
        .app
        .create_ecs_service(&c.key(&name), &td, desired_count, &patch, &placement, &lb)
        .await?;
    Ok(json!({ "service": service_json(call, &c, &svc).await? }))
}

pub(super) async fn update_service(call: &Call<'_>, req: UpdateServiceReq) -> AwsResult {
    let c = find_cluster(call, req.cluster.as_deref()).await?;
    let name = req
        .service
        .as_deref()
        .map(name_of)
        .ok_or_else(|| AwsError::invalid("service is required"))?
        .to_owned();
    let desired_count = desired(req.desired_count)?;
    let mut config = config_patch(
        req.deployment_configuration.as_ref(),
        req.health_check_grace_period_seconds,
    )?;
    let ask = strategy_ask(req.deployment_configuration.as_ref())?;
    let task_definition = match &req.task_definition {
        Some(r) => Some(find_td(call, r).await?),
        None => None,
    };
    let placement = placement_of(
        req.placement_strategy.as_deref(),
        req.placement_constraints.as_deref(),
    )?;
    let load_balancers = bindings(req.load_balancers.as_deref(), task_definition.as_ref())?;
    let host_ports = task_definition
        .as_ref()
        .map(|td| container_of(td).1)
        .unwrap_or_default();
    // The strategy members left out keep the service's; analysis and the check need to
    // know whether the version to run has ingress routes. (The application layer checks
    // again against the service it changes.)
    let store = call.state.app.store();
    let current = match validate_name(&name) {
        Ok(()) => store.get_service(&c.key(&name)).await?,
        Err(_) => None,
    };
    if let Some(svc) = &current {
        let running = match &task_definition {
            Some(td) => Some(td.container.clone()),
            None => store
                .get_task_definition(&svc.key.family(), svc.revision)
                .await?
                .map(|td| td.container),
        };
        let has_routes = running.is_some_and(|c| c.http_route.is_some())
            || load_balancers.as_ref().is_some_and(|l| !l.is_empty())
            || (load_balancers.is_none()
                && store
                    .get_task_definition(&svc.key.family(), svc.revision)
                    .await?
                    .and_then(|td| td.container.http_route)
                    .is_some());
        config.progressive = ask
            .map(|a| a.resolve(&svc.config.progressive, has_routes))
            .transpose()?;
        check(&config.apply(svc.config)?, has_routes)?;
    }
    let change = EcsServiceChange {
        desired_count,
        config,
        task_definition,
        force: req.force_new_deployment.unwrap_or(false),
        placement,
        load_balancers,
        host_ports,
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
pub(super) fn service_error(e: slipway_app::AppError) -> AwsError {
    match e.kind {
        slipway_app::ErrorKind::NotFound => {
            AwsError::client("ServiceNotFoundException", "Service not found.")
        }
        _ => e.into(),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DescribeServicesReq {
    cluster: Option<String>,
    services: Option<Vec<String>>,
}

pub(super) async fn describe_services(call: &Call<'_>, req: DescribeServicesReq) -> AwsResult {
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
pub(super) struct ListServicesReq {
    cluster: Option<String>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

pub(super) async fn list_services(call: &Call<'_>, req: ListServicesReq) -> AwsResult {
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
pub(super) struct DeleteServiceReq {
    cluster: Option<String>,
    service: Option<String>,
    force: Option<bool>,
}

pub(super) async fn delete_service(call: &Call<'_>, req: DeleteServiceReq) -> AwsResult {
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
