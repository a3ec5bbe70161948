//! ECS container instances: Slipway's hosts. `ListContainerInstances`,
//! `DescribeContainerInstances`, `UpdateContainerInstancesState` (ACTIVE / DRAINING); and the
//! placement fields of `CreateService`, `UpdateService` and `RunTask`. Every ECS cluster of
//! a Slipway cluster (an app environment) runs on the same hosts, so each lists them all.

use slipway_app::HostStatus;
use slipway_core::placement::{Constraint, HostState, Placement, Strategy};

use super::*;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PlacementStrategyReq {
    #[serde(rename = "type")]
    kind: Option<String>,
    field: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PlacementConstraintReq {
    #[serde(rename = "type")]
    kind: Option<String>,
    expression: Option<String>,
}

/// The placement a request gives (`None` when it gives neither field).
pub(super) fn placement_of(
    strategy: Option<&[PlacementStrategyReq]>,
    constraints: Option<&[PlacementConstraintReq]>,
) -> AwsResult<Option<Placement>> {
    if strategy.is_none() && constraints.is_none() {
        return Ok(None);
    }
    let mut p = Placement::default();
    for s in strategy.unwrap_or_default() {
        let field = || {
            s.field.clone().ok_or_else(|| {
                AwsError::invalid("placementStrategy[].field is required for spread and binpack")
            })
        };
        p.strategy.push(match s.kind.as_deref() {
            Some("spread") => Strategy::Spread { field: field()? },
            Some("binpack") => Strategy::Binpack { field: field()? },
            Some("random") => Strategy::Random,
            other => {
                return Err(AwsError::invalid(format!(
                    "placementStrategy[].type must be spread, binpack or random, got {}",
                    other.unwrap_or("nothing")
                )));
            }
        });
    }
    for c in constraints.unwrap_or_default() {
        p.constraints.push(match c.kind.as_deref() {
            Some("distinctInstance") => Constraint::DistinctInstance,
            Some("memberOf") => Constraint::MemberOf {
                expression: c.expression.clone().ok_or_else(|| {
                    AwsError::invalid("placementConstraints[].expression is required for memberOf")
                })?,
            },
            other => {
                return Err(AwsError::invalid(format!(
                    "placementConstraints[].type must be distinctInstance or memberOf, got {}",
                    other.unwrap_or("nothing")
                )));
            }
        });
    }
    slipway_core::placement::validate(&p).map_err(AwsError::invalid)?;
    Ok(Some(p))
}

/// A placement as `DescribeServices` shows it.
pub(super) fn placement_json(p: &Placement) -> (Value, Value) {
    let strategy: Vec<Value> = p
        .strategy
        .iter()
        .map(|s| match s {
            Strategy::Spread { field } => json!({"type": "spread", "field": field}),
            Strategy::Binpack { field } => json!({"type": "binpack", "field": field}),
            Strategy::Random => json!({"type": "random"}),
        })
        .collect();
    let constraints: Vec<Value> = p
        .constraints
        .iter()
        .map(|c| match c {
            Constraint::DistinctInstance => json!({"type": "distinctInstance"}),
            Constraint::MemberOf { expression } => {
                json!({"type": "memberOf", "expression": expression})
            }
        })
        .collect();
    (Value::from(strategy), Value::from(constraints))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListContainerInstancesReq {
    cluster: Option<String>,
    status: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DescribeContainerInstancesReq {
    cluster: Option<String>,
    container_instances: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UpdateContainerInstancesStateReq {
    cluster: Option<String>,
    container_instances: Option<Vec<String>>,
    status: Option<String>,
}

fn instance_arn(call: &Call<'_>, c: &Cluster, host: &str) -> String {
    call.arn("ecs", &format!("container-instance/{}/{host}", c.name))
}

/// ECS's status of a host: a lost host stays ACTIVE with its agent disconnected, as on ECS.
fn ecs_state(h: &HostStatus) -> &'static str {
    match h.state {
        HostState::Draining => "DRAINING",
        HostState::Active | HostState::Lost => "ACTIVE",
    }
}

fn instance_json(call: &Call<'_>, c: &Cluster, h: &HostStatus) -> Value {
    let resources = |cpu: u64, memory: u64| {
        json!([
            {"name": "CPU", "type": "INTEGER", "integerValue": cpu, "doubleValue": 0.0, "longValue": 0},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": memory, "doubleValue": 0.0, "longValue": 0},
        ])
    };
    let mut attributes: Vec<Value> = h
        .attributes
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    attributes.push(
        json!({"name": "ecs.os-type", "value": h.platform.split('/').next().unwrap_or("linux")}),
    );
    if let Some(arch) = h.platform.split('/').nth(1) {
        attributes.push(json!({"name": "ecs.cpu-architecture", "value": arch}));
    }
    json!({
        "containerInstanceArn": instance_arn(call, c, &h.id),
        "ec2InstanceId": h.id,
        "version": 1,
        "versionInfo": {"agentVersion": env!("CARGO_PKG_VERSION")},
        "status": ecs_state(h),
        "agentConnected": h.connected,
        "runningTasksCount": h.tasks,
        "pendingTasksCount": 0,
        "registeredResources": resources(h.cpu, h.memory),
        "remainingResources": resources(
            h.cpu.saturating_sub(h.cpu_used),
            h.memory.saturating_sub(h.memory_used),
        ),
        "attributes": attributes,
        "registeredAt": ts(h.last_seen),
        "tags": [],
    })
}

/// The hosts named by `refs` (ARNs or ids); unknown ones as ECS `failures`.
fn pick<'a>(
    call: &Call<'_>,
    c: &Cluster,
    hosts: &'a [HostStatus],
    refs: &[String],
) -> (Vec<&'a HostStatus>, Vec<Value>) {
    let mut found = Vec::new();
    let mut failures = Vec::new();
    for r in refs {
        match hosts.iter().find(|h| h.id == name_of(r)) {
            Some(h) => found.push(h),
            None => failures.push(json!({
                "arn": if r.starts_with("arn:") { r.clone() } else { instance_arn(call, c, r) },
                "reason": "MISSING",
            })),
        }
    }
    (found, failures)
}

pub(super) async fn list_container_instances(
    call: &Call<'_>,
    req: ListContainerInstancesReq,
) -> AwsResult {
    let c = find_cluster(call, req.cluster.as_deref()).await?;
    let want = match req.status.as_deref() {
        None => None,
        Some(s @ ("ACTIVE" | "DRAINING")) => Some(s),
        Some(s @ ("REGISTERING" | "DEREGISTERING" | "REGISTRATION_FAILED")) => Some(s),
        Some(other) => {
            return Err(AwsError::invalid(format!(
                "status must be ACTIVE, DRAINING, REGISTERING, DEREGISTERING or REGISTRATION_FAILED, got {other}"
            )));
        }
    };
    let hosts = call.state.app.host_statuses().await?;
    let arns: Vec<String> = hosts
        .iter()
        .filter(|h| want.is_none_or(|w| w == ecs_state(h)))
        .map(|h| instance_arn(call, &c, &h.id))
        .collect();
    Ok(json!({ "containerInstanceArns": arns }))
}

pub(super) async fn describe_container_instances(
    call: &Call<'_>,
    req: DescribeContainerInstancesReq,
) -> AwsResult {
    let c = find_cluster(call, req.cluster.as_deref()).await?;
    let refs = req
        .container_instances
        .ok_or_else(|| AwsError::invalid("containerInstances is required"))?;
    let hosts = call.state.app.host_statuses().await?;
    let (found, failures) = pick(call, &c, &hosts, &refs);
    let list: Vec<Value> = found.iter().map(|h| instance_json(call, &c, h)).collect();
    Ok(json!({ "containerInstances": list, "failures": failures }))
}

pub(super) async fn update_container_instances_state(
    call: &Call<'_>,
    req: UpdateContainerInstancesStateReq,
) -> AwsResult {
    let c = find_cluster(call, req.cluster.as_deref()).await?;
    let refs = req
        .container_instances
        .ok_or_else(|| AwsError::invalid("containerInstances is required"))?;
    let drain = match req.status.as_deref() {
        Some("DRAINING") => true,
        Some("ACTIVE") => false,
        other => {
            return Err(AwsError::invalid(format!(
                "status must be ACTIVE or DRAINING, got {}",
                other.unwrap_or("nothing")
            )));
        }
    };
    let hosts = call.state.app.host_statuses().await?;
    let (found, failures) = pick(call, &c, &hosts, &refs);
    let ids: Vec<String> = found.iter().map(|h| h.id.clone()).collect();
    for id in &ids {
        if drain {
            call.state.app.drain_host(id).await?;
        } else {
            call.state.app.activate_host(id).await?;
        }
    }
    let hosts = call.state.app.host_statuses().await?;
    let list: Vec<Value> = hosts
        .iter()
        .filter(|h| ids.contains(&h.id))
        .map(|h| instance_json(call, &c, h))
        .collect();
    Ok(json!({ "containerInstances": list, "failures": failures }))
}
