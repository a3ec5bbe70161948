//! ECS clusters: `CreateCluster`, `DescribeClusters`, `ListClusters`, `DeleteCluster`.

use super::*;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CreateClusterReq {
    cluster_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ClusterReq {
    cluster: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DescribeClustersReq {
    clusters: Option<Vec<String>>,
}

pub(super) async fn cluster_json(call: &Call<'_>, c: &Cluster, status: &str) -> AwsResult {
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
    let instances = call.state.app.store().list_hosts().await?.len().max(1);
    Ok(json!({
        "clusterArn": c.arn(call),
        "clusterName": c.name,
        "status": status,
        "registeredContainerInstancesCount": instances,
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

pub(super) async fn create_cluster(call: &Call<'_>, req: CreateClusterReq) -> AwsResult {
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

pub(super) async fn describe_clusters(call: &Call<'_>, req: DescribeClustersReq) -> AwsResult {
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

pub(super) async fn list_clusters(call: &Call<'_>) -> AwsResult {
    let arns: Vec<String> = all_clusters(call)
        .await?
        .iter()
        .map(|c| c.arn(call))
        .collect();
    Ok(json!({ "clusterArns": arns }))
}

pub(super) async fn delete_cluster(call: &Call<'_>, req: ClusterReq) -> AwsResult {
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
