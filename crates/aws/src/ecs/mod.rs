//! The ECS subset (`AmazonEC2ContainerServiceV20141113.*`), mapped onto Slipway's model: the
//! dispatch of operations, names and ARNs here; one module per kind of resource. A
//! translation: what changes state is a call of the application layer.

mod clusters;
mod deployments;
mod instances;
mod services;
mod strategy;
#[cfg(test)]
pub(crate) mod strategy_flow;
mod task_definitions;
mod tasks;

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_json::{Map, Value, json};
use slipway_app::{ConfigPatch, EcsServiceChange, LoadBalancing, RunTasks};
use slipway_core::elb::TargetGroupBinding;
use slipway_core::model::{
    CommandHealthCheck, ContainerSpec, Deployment, DeploymentConfig, PullPolicy, RolloutState,
    ServiceKey, Task, TaskDefinition, TaskHealth, TaskStatus, VolumeMount, validate_name,
};
use slipway_store::{ServiceRecord, TaskCount};

use crate::{AwsError, AwsResult, Call, parse, ts};
use clusters::*;
use deployments::*;
use instances::*;
use services::*;
use strategy::*;
use task_definitions::*;
use tasks::*;

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
        "ListContainerInstances" => list_container_instances(call, parse(body)?).await,
        "DescribeContainerInstances" => describe_container_instances(call, parse(body)?).await,
        "UpdateContainerInstancesState" => {
            update_container_instances_state(call, parse(body)?).await
        }
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

/// Every ECS operation [`dispatch`] answers (each has a rule in the permission table).
#[cfg(test)]
pub(crate) const OPERATIONS: &[&str] = &[
    "CreateCluster",
    "DescribeClusters",
    "ListClusters",
    "DeleteCluster",
    "RegisterTaskDefinition",
    "DescribeTaskDefinition",
    "ListTaskDefinitions",
    "ListTaskDefinitionFamilies",
    "DeregisterTaskDefinition",
    "CreateService",
    "UpdateService",
    "DescribeServices",
    "ListServices",
    "DeleteService",
    "ListTasks",
    "ListServiceDeployments",
    "DescribeServiceDeployments",
    "DescribeTasks",
    "RunTask",
    "StartTask",
    "StopTask",
    "ListContainerInstances",
    "DescribeContainerInstances",
    "UpdateContainerInstancesState",
    "TagResource",
    "UntagResource",
];

/// The app environment a mutating call acts on: its cluster's (`clusterName` for
/// CreateCluster). `None` when the call names no cluster that exists (the call itself
/// then fails) or acts on no app (task definitions are shared).
pub(crate) async fn scope_target(call: &Call<'_>, op: &str, body: &[u8]) -> Option<crate::Target> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    if op == "CreateCluster" {
        let name = v
            .get("clusterName")
            .and_then(|x| x.as_str())
            .unwrap_or("default");
        return Some(crate::Target::App(
            name.to_owned(),
            Some(ECS_ENV.to_owned()),
        ));
    }
    if [
        "RegisterTaskDefinition",
        "DeregisterTaskDefinition",
        "TagResource",
        "UntagResource",
    ]
    .contains(&op)
    {
        return None;
    }
    let c = find_cluster(call, v.get("cluster").and_then(|x| x.as_str())).await;
    Some(match c {
        Ok(c) => crate::Target::App(c.app, Some(c.env)),
        // A cluster that does not exist: nothing of another app can be touched, but a
        // scoped identity is not told more than that it may not.
        Err(_) => crate::Target::App(
            v.get("cluster")
                .and_then(|x| x.as_str())
                .unwrap_or("default")
                .to_owned(),
            None,
        ),
    })
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
                "stopTimeout": 7,
                "linuxParameters": {"initProcessEnabled": true}
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
        assert!(
            c.init,
            "linuxParameters.initProcessEnabled is Docker's init"
        );
    }

    #[test]
    fn entry_point_command_user_and_docker_volumes_map_onto_the_container() {
        let r = req(json!({
            "family": "box",
            "containerDefinitions": [{
                "name": "box", "image": "busybox",
                "entryPoint": ["/bin/busybox", "sh", "-c"],
                "command": ["echo hi"],
                "user": "1000:1000",
                "mountPoints": [{"sourceVolume": "data", "containerPath": "/data", "readOnly": true}]
            }],
            "volumes": [{"name": "data", "dockerVolumeConfiguration": {"scope": "shared", "autoprovision": true}}]
        }));
        let c = to_container(&r).unwrap();
        assert_eq!(
            c.entrypoint,
            Some(vec!["/bin/busybox".to_owned(), "sh".into(), "-c".into()])
        );
        assert_eq!(c.command, Some(vec!["echo hi".to_owned()]));
        assert_eq!(c.user.as_deref(), Some("1000:1000"));
        assert_eq!(
            c.volumes,
            vec![VolumeMount {
                name: "data".into(),
                path: "/data".into(),
                read_only: true
            }]
        );
        // And back, as DescribeTaskDefinition shows a manifest deploy's revision.
        let td = TaskDefinition {
            family: "box".into(),
            revision: 1,
            container: c,
            created_at: 0,
            source: None,
            ecs: None,
            deregistered_at: None,
            version: 0,
        };
        let d = synthesized(&td);
        let def = &d["containerDefinitions"][0];
        assert_eq!(def["entryPoint"], json!(["/bin/busybox", "sh", "-c"]));
        assert_eq!(def["user"], "1000:1000");
        assert_eq!(def["mountPoints"][0]["sourceVolume"], "data");
        assert_eq!(def["mountPoints"][0]["readOnly"], true);
        assert_eq!(d["volumes"][0]["name"], "data");

        for v in [
            // A host path, EFS, an unknown source volume, a relative path, a bad user.
            json!({"volumes": [{"name": "d", "host": {"sourcePath": "/srv"}}], "mp": [{"sourceVolume": "d", "containerPath": "/d"}]}),
            json!({"volumes": [{"name": "d", "efsVolumeConfiguration": {"fileSystemId": "fs-1"}}], "mp": []}),
            json!({"volumes": [], "mp": [{"sourceVolume": "d", "containerPath": "/d"}]}),
            json!({"volumes": [{"name": "d"}], "mp": [{"sourceVolume": "d", "containerPath": "d"}]}),
            json!({"volumes": [], "mp": [], "user": "a b"}),
        ] {
            let r = req(json!({
                "family": "f",
                "containerDefinitions": [{"name": "a", "image": "b", "mountPoints": v["mp"], "user": v.get("user")}],
                "volumes": v["volumes"],
            }));
            let e = to_container(&r).unwrap_err();
            assert_eq!(e.kind, "ClientException", "{v}");
        }
    }

    #[test]
    fn several_container_definitions_map_onto_sidecars_and_back() {
        let r = req(json!({
            "family": "f",
            "containerDefinitions": [
                {"name": "log_router", "image": "router", "firelensConfiguration": {"type": "fluentbit", "options": {"a": "b"}}},
                {"name": "app", "image": "app", "portMappings": [{"containerPort": 8080}],
                 "dependsOn": [{"containerName": "agent", "condition": "HEALTHY"}],
                 "logConfiguration": {"logDriver": "awsfirelens", "options": {"Name": "stdout"}}},
                {"name": "agent", "image": "agent", "essential": false,
                 "healthCheck": {"command": ["CMD", "true"]}, "volumesFrom": [{"sourceContainer": "app", "readOnly": true}]}
            ]
        }));
        let c = to_container(&r).unwrap();
        // The essential container with a port is the main one, the others in written order.
        assert_eq!(c.name.as_deref(), Some("app"));
        assert_eq!(c.port, Some(8080));
        let names: Vec<&str> = c.sidecars.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, vec!["log_router", "agent"]);
        assert!(c.sidecars[0].firelens.is_some() && !c.sidecars[1].essential);
        assert_eq!(c.container_depends_on[0].container, "agent");
        assert_eq!(c.logging.as_ref().unwrap().options["Name"], "stdout");
        assert_eq!(
            c.sidecars[1].container.volumes_from[0].source_container,
            "app"
        );
        let td = TaskDefinition {
            family: "f".into(),
            revision: 1,
            container: c,
            created_at: 0,
            source: None,
            ecs: None,
            deregistered_at: None,
            version: 0,
        };
        let d = synthesized(&td);
        let defs = d["containerDefinitions"].as_array().unwrap();
        let names: Vec<&str> = defs.iter().map(|d| d["name"].as_str().unwrap()).collect();
        assert_eq!(names, vec!["app", "log_router", "agent"]);
        assert_eq!(defs[0]["dependsOn"][0]["condition"], "HEALTHY");
        assert_eq!(defs[0]["logConfiguration"]["logDriver"], "awsfirelens");
        assert_eq!(defs[1]["firelensConfiguration"]["type"], "fluentbit");
        assert_eq!(defs[2]["essential"], false);
        // Lowercase conditions are not ECS's.
        let r = req(json!({
            "family": "f",
            "containerDefinitions": [
                {"name": "app", "image": "app", "dependsOn": [{"containerName": "b", "condition": "start"}]},
                {"name": "b", "image": "b"}
            ]
        }));
        assert_eq!(to_container(&r).unwrap_err().kind, "ClientException");
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
