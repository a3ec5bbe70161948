//! Deployment strategies through the ECS operations, in process: a real application layer
//! on an in-memory SQLite store (no engine, no controller: a deployment's progress is
//! written as the controller writes it).

use std::sync::Arc;

use async_trait::async_trait;
use slipway_app::App;
use slipway_core::model::{HttpRoute, ServiceKind, ServiceSpec};
use slipway_core::rollout::{Phase, Sample, Strategy};
use slipway_store::secrets::SecretBox;
use slipway_store::{AccessKey, Batch, Store, Write};

use super::*;
use crate::AwsState;

pub(crate) use slipway_app::testing::FixedImages;

/// The registry's identities in these tests: only `admin`, no admin token, no audit.
pub(crate) struct AdminOnly;

#[async_trait]
impl slipway_registry::Identities for AdminOnly {
    async fn is_admin_token(&self, _: &str) -> bool {
        false
    }

    async fn identity(&self, name: &str) -> Option<slipway_core::access::Identity> {
        (name == "admin").then(|| slipway_core::access::Identity::admin("admin"))
    }

    async fn audit(&self, _: slipway_registry::AuditEvent) {}
}

struct Ecs {
    state: AwsState,
    _dir: tempfile::TempDir,
}

impl Ecs {
    async fn new() -> Ecs {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::memory().await.unwrap();
        let app = App::new(
            store,
            Arc::new(FixedImages),
            SecretBox::from_key(&[7u8; 32]).unwrap(),
            "test",
        );
        let registry = slipway_registry::Registry::open(slipway_registry::RegistryConfig::new(
            dir.path().join("registry"),
            Arc::new(AdminOnly),
        ))
        .await
        .unwrap();
        Ecs {
            state: AwsState {
                app,
                registry,
                keys: Default::default(),
                limiter: Arc::new(slipway_api::RateLimiter::new(0)),
                ingress_addr: None,
            },
            _dir: dir,
        }
    }

    async fn call(&self, op: &str, body: Value) -> AwsResult {
        let call = Call {
            state: &self.state,
            key: AccessKey {
                id: "AKIDTEST".into(),
                secret: "secret".into(),
                sealed: None,
                name: None,
                read_only: false,
                created_at: 0,
                revoked_at: None,
                owner: None,
                version: 1,
            },
            who: slipway_core::access::Identity::admin("AKIDTEST"),
            region: "us-east-1".into(),
            origin: "http://127.0.0.1".into(),
        };
        dispatch(&call, op, body.to_string().as_bytes()).await
    }

    async fn ok(&self, op: &str, body: Value) -> Value {
        match self.call(op, body.clone()).await {
            Ok(v) => v,
            Err(e) => panic!("{op} {body}: {} {}", e.kind, e.message),
        }
    }

    async fn service(&self, cluster: &str, name: &str) -> Value {
        let d = self
            .ok(
                "DescribeServices",
                json!({"cluster": cluster, "services": [name]}),
            )
            .await;
        d["services"][0].clone()
    }

    fn store(&self) -> &Store {
        self.state.app.store()
    }

    /// A Load Balanced Web Service with an ingress route, as a manifest deploys it (cluster
    /// `shop`, service `web`); its first deployment is marked done, as the controller would.
    async fn web(&self) -> ServiceKey {
        self.web_with(DeploymentConfig::default()).await
    }

    async fn web_with(&self, deployment: DeploymentConfig) -> ServiceKey {
        let key = ServiceKey::new("shop", "default", "web");
        let mut container = slipway_store::testing::container("slipway-hello:v1");
        container.http_route = Some(HttpRoute {
            path: "/".into(),
            aliases: Vec::new(),
            strip_prefix: false,
            deregistration_delay_ms: 1000,
            allow_shadowing: false,
            target_group: None,
            more_paths: Vec::new(),
        });
        let spec = ServiceSpec {
            key: key.clone(),
            kind: ServiceKind::LoadBalancedWebService,
            desired_count: Some(2),
            container,
            deployment,
            placement: Default::default(),
        };
        self.state
            .app
            .deploy(&[spec], false, &Default::default())
            .await
            .unwrap();
        let mut d = self.newest(&key).await;
        d.state = RolloutState::Succeeded;
        self.save(d).await;
        key
    }

    async fn newest(&self, key: &ServiceKey) -> Deployment {
        self.store()
            .list_deployments(key, 10)
            .await
            .unwrap()
            .into_iter()
            .next()
            .unwrap()
    }

    async fn save(&self, d: Deployment) {
        self.store()
            .commit(Batch::new().write(Write::Deployment(d)))
            .await
            .unwrap();
    }

    async fn config(&self, key: &ServiceKey) -> DeploymentConfig {
        self.store().get_service(key).await.unwrap().unwrap().config
    }
}

const TEN_MINUTES: u64 = 600_000;

#[tokio::test]
async fn a_canary_through_update_service_and_its_progress_in_ecs_shapes() {
    let ecs = Ecs::new().await;
    let key = ecs.web().await;
    let out = ecs
        .ok(
            "UpdateService",
            json!({
                "cluster": "shop", "service": "web", "forceNewDeployment": true,
                "deploymentConfiguration": {
                    "strategy": "CANARY", "bakeTimeInMinutes": 2,
                    "canaryConfiguration": {"canaryPercent": 20, "canaryBakeTimeInMinutes": 0}
                }
            }),
        )
        .await;
    let dc = &out["service"]["deploymentConfiguration"];
    assert_eq!(dc["strategy"], "CANARY", "{dc}");
    assert_eq!(dc["bakeTimeInMinutes"], 2);
    assert_eq!(
        dc["canaryConfiguration"],
        json!({"canaryPercent": 20.0, "canaryBakeTimeInMinutes": 0})
    );
    // The model has the plan, analysis on (the service has a route), the timeout stretched
    // by the bake as a manifest's is.
    let config = ecs.config(&key).await;
    let p = config.progressive;
    assert_eq!(
        p.strategy,
        Strategy::Canary {
            percent: 20,
            bake_ms: 0
        }
    );
    assert_eq!(p.bake_ms, 120_000);
    assert!(p.analysis.is_some());
    assert_eq!(config.timeout_ms, TEN_MINUTES + 120_000);

    // The new deployment is planned from it and starts its tasks without traffic.
    let mut d = ecs.newest(&key).await;
    let r = d.rollout.clone().expect("a progressive deployment");
    assert_eq!(
        (r.phase, r.weight, r.stable_revision),
        (Phase::Starting, 0, Some(1))
    );
    let svc = ecs.service("shop", "web").await;
    let primary = &svc["deployments"][0];
    assert_eq!(primary["rolloutState"], "IN_PROGRESS");
    assert_eq!(
        primary["rolloutStateReason"],
        "CANARY: starting the new revision's tasks; no production traffic to them yet"
    );

    // The controller moved it to 20 % and judged an interval.
    let mut r = r;
    r.tick(1_000, true, false, None);
    r.last = Some(slipway_core::rollout::Verdict {
        at: 61_000,
        weight: 20,
        outcome: slipway_core::rollout::Outcome::Pass,
        canary: Sample {
            requests: 100,
            errors: 0,
            p99_us: Some(2000),
        },
        stable: None,
        detail: "error rate 0.0 % vs stable 0.0 %, p99 2.0 ms vs stable 1.9 ms".into(),
    });
    d.rollout = Some(r);
    ecs.save(d.clone()).await;
    let svc = ecs.service("shop", "web").await;
    assert_eq!(
        svc["deployments"][0]["rolloutStateReason"],
        "CANARY: 20% of production traffic to the new revision; last analysis: pass: error rate 0.0 % vs stable 0.0 %, p99 2.0 ms vs stable 1.9 ms"
    );
    let listed = ecs
        .ok(
            "ListServiceDeployments",
            json!({"cluster": "shop", "service": "web"}),
        )
        .await;
    let brief = &listed["serviceDeployments"][0];
    assert_eq!(brief["status"], "IN_PROGRESS");
    assert!(
        brief["statusReason"]
            .as_str()
            .unwrap()
            .starts_with("CANARY: 20% of production traffic"),
        "{brief}"
    );
    let arn = brief["serviceDeploymentArn"].as_str().unwrap().to_owned();
    let described = ecs
        .ok(
            "DescribeServiceDeployments",
            json!({"serviceDeploymentArns": [arn]}),
        )
        .await;
    let sd = &described["serviceDeployments"][0];
    assert_eq!(sd["lifecycleStage"], "PRODUCTION_TRAFFIC_SHIFT", "{sd}");
    assert_eq!(sd["deploymentConfiguration"]["strategy"], "CANARY");
    assert_eq!(
        sd["deploymentConfiguration"]["canaryConfiguration"]["canaryPercent"],
        20.0
    );
    // The first deployment ran as a rolling update: no stage, strategy ROLLING.
    let first = listed["serviceDeployments"][1]["serviceDeploymentArn"]
        .as_str()
        .unwrap()
        .to_owned();
    let described = ecs
        .ok(
            "DescribeServiceDeployments",
            json!({"serviceDeploymentArns": [first]}),
        )
        .await;
    let sd = &described["serviceDeployments"][0];
    assert!(sd.get("lifecycleStage").is_none(), "{sd}");
    assert_eq!(sd["deploymentConfiguration"]["strategy"], "ROLLING");

    // Bad input changes nothing.
    for (body, field) in [
        (
            json!({"strategy": "CANARY", "canaryConfiguration": {"canaryPercent": 2.5}}),
            "canaryConfiguration.canaryPercent",
        ),
        (
            json!({"canaryConfiguration": {"canaryPercent": 0}}),
            "canaryConfiguration.canaryPercent",
        ),
        (
            json!({"strategy": "LINEAR", "linearConfiguration": {"stepPercent": 101}}),
            "linearConfiguration.stepPercent",
        ),
    ] {
        let e = ecs
            .call(
                "UpdateService",
                json!({"cluster": "shop", "service": "web", "deploymentConfiguration": body}),
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind, "InvalidParameterException", "{body}");
        assert!(e.message.contains(field), "{body}: {}", e.message);
    }
    assert_eq!(ecs.config(&key).await, config);
    assert_eq!(ecs.newest(&key).await.id, d.id, "no deployment started");

    // Only one member: the rest of the canary stays.
    ecs.ok(
        "UpdateService",
        json!({"cluster": "shop", "service": "web",
               "deploymentConfiguration": {"canaryConfiguration": {"canaryPercent": 50}}}),
    )
    .await;
    let p = ecs.config(&key).await.progressive;
    assert_eq!(
        (p.strategy, p.bake_ms),
        (
            Strategy::Canary {
                percent: 50,
                bake_ms: 0
            },
            120_000
        )
    );
}

#[tokio::test]
async fn linear_stretches_the_timeout_and_rolling_gives_it_back() {
    let ecs = Ecs::new().await;
    let key = ecs.web().await;
    let out = ecs
        .ok(
            "UpdateService",
            json!({"cluster": "shop", "service": "web",
                   "deploymentConfiguration": {"strategy": "LINEAR"}}),
        )
        .await;
    assert_eq!(
        out["service"]["deploymentConfiguration"]["linearConfiguration"],
        json!({"stepPercent": 10.0, "stepBakeTimeInMinutes": 6})
    );
    assert_eq!(
        out["service"]["deploymentConfiguration"]["bakeTimeInMinutes"],
        0
    );
    // Nine steps below 100 % of six minutes each.
    assert_eq!(ecs.config(&key).await.timeout_ms, TEN_MINUTES + 9 * 360_000);
    ecs.ok(
        "UpdateService",
        json!({"cluster": "shop", "service": "web",
               "deploymentConfiguration": {"strategy": "ROLLING"}}),
    )
    .await;
    let c = ecs.config(&key).await;
    assert!(c.progressive.is_plain(), "{c:?}");
    assert_eq!(c.timeout_ms, TEN_MINUTES);
    let svc = ecs.service("shop", "web").await;
    assert_eq!(svc["deploymentConfiguration"]["strategy"], "ROLLING");
    assert!(
        svc["deploymentConfiguration"]
            .get("linearConfiguration")
            .is_none()
    );
}

#[tokio::test]
async fn without_routes_a_progressive_strategy_is_refused_and_nothing_changes() {
    let ecs = Ecs::new().await;
    ecs.ok("CreateCluster", json!({"clusterName": "backend"}))
        .await;
    ecs.ok(
        "RegisterTaskDefinition",
        json!({"family": "api", "containerDefinitions": [{"name": "api", "image": "slipway-hello:v1", "memory": 32}]}),
    )
    .await;
    for strategy in ["CANARY", "LINEAR", "BLUE_GREEN"] {
        let e = ecs
            .call(
                "CreateService",
                json!({"cluster": "backend", "serviceName": "api", "taskDefinition": "api",
                       "deploymentConfiguration": {"strategy": strategy}}),
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind, "InvalidParameterException");
        assert!(
            e.message.starts_with("deploymentConfiguration.strategy: ")
                && e.message.contains("needs ingress routes"),
            "{}",
            e.message
        );
    }
    let key = ServiceKey::new("backend", "default", "api");
    assert!(ecs.store().get_service(&key).await.unwrap().is_none());
    // A rolling update with a bake is fine (waited for, not judged); the bake shows.
    let out = ecs
        .ok(
            "CreateService",
            json!({"cluster": "backend", "serviceName": "api", "taskDefinition": "api",
                   "deploymentConfiguration": {"strategy": "ROLLING", "bakeTimeInMinutes": 5}}),
        )
        .await;
    assert_eq!(
        out["service"]["deploymentConfiguration"]["bakeTimeInMinutes"],
        5
    );
    let c = ecs.config(&key).await;
    assert_eq!(
        (c.progressive.bake_ms, c.progressive.analysis, c.timeout_ms),
        (300_000, None, TEN_MINUTES + 300_000)
    );
    let e = ecs
        .call(
            "UpdateService",
            json!({"cluster": "backend", "service": "api",
                   "deploymentConfiguration": {"strategy": "CANARY"}}),
        )
        .await
        .unwrap_err();
    assert!(e.message.contains("needs ingress routes"), "{}", e.message);
    assert_eq!(ecs.config(&key).await, c);
}

#[tokio::test]
async fn a_chosen_timeout_is_kept_and_must_outlast_the_bakes() {
    let ecs = Ecs::new().await;
    let key = ecs
        .web_with(DeploymentConfig {
            timeout_ms: 3 * TEN_MINUTES,
            ..DeploymentConfig::default()
        })
        .await;
    // Canary's 10 minutes fit in 30.
    ecs.ok(
        "UpdateService",
        json!({"cluster": "shop", "service": "web",
               "deploymentConfiguration": {"strategy": "CANARY"}}),
    )
    .await;
    let c = ecs.config(&key).await;
    assert_eq!(c.timeout_ms, 3 * TEN_MINUTES);
    // Linear's nine steps of six minutes do not.
    let e = ecs
        .call(
            "UpdateService",
            json!({"cluster": "shop", "service": "web",
                   "deploymentConfiguration": {"strategy": "LINEAR"}}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, "InvalidParameterException");
    assert!(
        e.message
            .contains("not shorter than the deployment timeout"),
        "{}",
        e.message
    );
    assert_eq!(ecs.config(&key).await, c);
}

#[tokio::test]
async fn a_new_task_definition_without_routes_cannot_run_a_canary() {
    let ecs = Ecs::new().await;
    let key = ecs.web().await;
    ecs.ok(
        "UpdateService",
        json!({"cluster": "shop", "service": "web",
               "deploymentConfiguration": {"strategy": "CANARY"}}),
    )
    .await;
    let before = ecs.newest(&key).await.id;
    ecs.ok(
        "RegisterTaskDefinition",
        json!({"family": "web2", "containerDefinitions": [{"name": "web", "image": "slipway-hello:v2", "memory": 32}]}),
    )
    .await;
    let e = ecs
        .call(
            "UpdateService",
            json!({"cluster": "shop", "service": "web", "taskDefinition": "web2"}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, "InvalidParameterException");
    assert!(e.message.contains("needs ingress routes"), "{}", e.message);
    assert_eq!(ecs.newest(&key).await.id, before, "no deployment started");
}
