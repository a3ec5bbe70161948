//! ECS service deployments: `ListServiceDeployments`, `DescribeServiceDeployments`.

use super::*;

/// How many deployments of a service are kept (the store trims to this many).
pub(super) const DEPLOYMENTS_KEPT: u32 = 50;

pub(super) fn service_deployment_arn(
    call: &Call<'_>,
    c: &Cluster,
    service: &str,
    id: &str,
) -> String {
    call.arn(
        "ecs",
        &format!("service-deployment/{}/{service}/{id}", c.name),
    )
}

/// Slipway has no service revisions of its own: a deployment's revision is its task
/// definition revision in the service's family.
pub(super) fn service_revision_arn(
    call: &Call<'_>,
    c: &Cluster,
    service: &str,
    revision: u32,
) -> String {
    call.arn(
        "ecs",
        &format!("service-revision/{}/{service}/{revision}", c.name),
    )
}

/// ECS `ServiceDeploymentStatus` of a deployment (its rollback, when it was rolled back,
/// is part of it as on ECS).
pub(super) fn deployment_status(d: &Deployment, rollback: Option<&Deployment>) -> &'static str {
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

pub(super) fn deployment_brief(
    call: &Call<'_>,
    c: &Cluster,
    d: &Deployment,
    all: &[Deployment],
) -> Value {
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
    // A progressive deployment under way says where it stands.
    match (&d.reason, &d.rollout) {
        (Some(r), _) => o["statusReason"] = json!(r),
        (None, Some(p)) if d.state == RolloutState::InProgress => {
            o["statusReason"] = json!(progress_words(p));
        }
        _ => {}
    }
    o
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CreatedAtReq {
    before: Option<f64>,
    after: Option<f64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListServiceDeploymentsReq {
    cluster: Option<String>,
    service: Option<String>,
    status: Option<Vec<String>>,
    created_at: Option<CreatedAtReq>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

pub(super) const DEPLOYMENT_STATUSES: [&str; 9] = [
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
pub(super) async fn list_service_deployments(
    call: &Call<'_>,
    req: ListServiceDeploymentsReq,
) -> AwsResult {
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
pub(super) struct DescribeServiceDeploymentsReq {
    service_deployment_arns: Option<Vec<String>>,
}

/// `DescribeServiceDeployments`: deployments by ARN
/// (`…:service-deployment/CLUSTER/SERVICE/ID`); unknown ones are failures (MISSING).
pub(super) async fn describe_service_deployments(
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
        // The strategy this deployment runs (the service's may have changed since).
        o["deploymentConfiguration"] = configuration_json(&svc.config, &plan_of(&d));
        if let Some(stage) = lifecycle_stage(&d) {
            o["lifecycleStage"] = json!(stage);
        }
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
                "reason": rollback_reason(&d).unwrap_or_default(),
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
