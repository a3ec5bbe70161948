//! ELBv2 with the real `aws` CLI: seed 001's post-deploy test through the load balancer, an
//! ALB set up with the CLI alone in front of two ECS services (routing, target health, a
//! rolling deploy under load), and bad input answered in AWS's error shape with nothing
//! changed.

use std::time::Duration;

use serde_json::{Value, json};

use crate::aws::{Aws, aws_cli, wait_stable};
use crate::support::*;

/// A container definition of the example app answering `version` on port 8080.
fn defs(name: &str, image: &str, version: &str) -> String {
    json!([{
        "name": name,
        "image": image,
        "essential": true,
        "memory": 32,
        "cpu": 10,
        "environment": [{"name": "HELLO_VERSION", "value": version}],
        "portMappings": [{"containerPort": 8080, "hostPort": 80}]
    }])
    .to_string()
}

fn register(aws: &Aws<'_>, family: &str, container: &str, version: &str) -> String {
    aws.json(&[
        "ecs",
        "register-task-definition",
        "--family",
        family,
        "--container-definitions",
        &defs(container, "slipway-hello:v1", version),
    ])["taskDefinition"]["taskDefinitionArn"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A target group probing `/healthz` every 5 s (AWS's smallest interval), healthy after 2.
fn target_group(aws: &Aws<'_>, name: &str, port: &str) -> String {
    let tg = aws.json(&[
        "elbv2",
        "create-target-group",
        "--name",
        name,
        "--protocol",
        "HTTP",
        "--port",
        port,
        "--vpc-id",
        "vpc-0123456789",
        "--target-type",
        "ip",
        "--health-check-path",
        "/healthz",
        "--health-check-interval-seconds",
        "5",
        "--health-check-timeout-seconds",
        "2",
        "--healthy-threshold-count",
        "2",
        "--unhealthy-threshold-count",
        "2",
        "--matcher",
        "HttpCode=200-299",
    ]);
    let g = &tg["TargetGroups"][0];
    assert_eq!(g["TargetGroupName"], name, "{tg}");
    assert_eq!(g["HealthCheckPath"], "/healthz");
    assert_eq!(g["Matcher"]["HttpCode"], "200-299");
    let arn = g["TargetGroupArn"].as_str().unwrap().to_owned();
    assert!(
        arn.starts_with(&format!(
            "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/{name}/"
        )),
        "{arn}"
    );
    let attrs = aws.json(&[
        "elbv2",
        "modify-target-group-attributes",
        "--target-group-arn",
        &arn,
        "--attributes",
        "Key=deregistration_delay.timeout_seconds,Value=5",
    ]);
    assert!(
        attrs["Attributes"]
            .as_array()
            .unwrap()
            .contains(&json!({"Key": "deregistration_delay.timeout_seconds", "Value": "5"})),
        "{attrs}"
    );
    arn
}

fn load_balancer(aws: &Aws<'_>, name: &str) -> (String, String) {
    let lb = aws.json(&[
        "elbv2",
        "create-load-balancer",
        "--name",
        name,
        "--subnets",
        "subnet-a",
        "subnet-b",
    ]);
    let l = &lb["LoadBalancers"][0];
    let arn = l["LoadBalancerArn"].as_str().unwrap().to_owned();
    assert!(
        arn.starts_with(&format!(
            "arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/app/{name}/"
        )),
        "{arn}"
    );
    assert_eq!(l["State"]["Code"], "active");
    (arn, l["DNSName"].as_str().unwrap().to_owned())
}

fn listener(aws: &Aws<'_>, lb: &str, default_tg: &str) -> String {
    let l = aws.json(&[
        "elbv2",
        "create-listener",
        "--load-balancer-arn",
        lb,
        "--protocol",
        "HTTP",
        "--port",
        "80",
        "--default-actions",
        &format!("Type=forward,TargetGroupArn={default_tg}"),
    ]);
    l["Listeners"][0]["ListenerArn"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[allow(clippy::too_many_arguments)]
fn create_service(
    aws: &Aws<'_>,
    cluster: &str,
    name: &str,
    td: &str,
    count: &str,
    tg: &str,
    container: &str,
    port: &str,
) -> Out {
    aws.run(&[
        "ecs",
        "create-service",
        "--cluster",
        cluster,
        "--service-name",
        name,
        "--task-definition",
        td,
        "--desired-count",
        count,
        "--health-check-grace-period-seconds",
        "10",
        "--load-balancers",
        &format!("targetGroupArn={tg},containerName={container},containerPort={port}"),
    ])
}

/// Seed 001's test of the deployment, verbatim after its variables.
const SEED_001_TEST: &str = r#"
configure_aws_cli(){
	aws --version
	aws configure set default.region us-east-1
	aws configure set default.output json
}
configure_aws_cli

# test the deployment

TARGET_GROUP_ARN=$(aws ecs describe-services --cluster $ECS_CLUSTER_NAME --services $ECS_SERVICE_NAME | jq -r '.services[0].loadBalancers[0].targetGroupArn')
ELB_ARN=$(aws elbv2 describe-target-groups --target-group-arns $TARGET_GROUP_ARN | jq -r '.TargetGroups[0].LoadBalancerArns[0]')
ELB_DNS_NAME=$(aws elbv2 describe-load-balancers --load-balancer-arns $ELB_ARN | jq -r '.LoadBalancers[0].DNSName')
curl http://$ELB_DNS_NAME | grep "Hello World!"
"#;

fn seed_test(aws: &Aws<'_>, cluster: &str, service: &str) -> Out {
    aws.sh(&format!(
        "export ECS_CLUSTER_NAME={cluster}\nexport ECS_SERVICE_NAME={service}\n{SEED_001_TEST}"
    ))
}

#[test]
fn elb_seed_001_tests_the_deployment_through_the_load_balancer() {
    if !docker() {
        return;
    }
    let Some(cli) = aws_cli() else { return };
    let s = Server::start();
    let aws = Aws::new(&s, &cli, &["--name", "circleci"]);

    // The seed's set-up: an ALB whose listener forwards to the service's target group.
    let (lb, dns) = load_balancer(&aws, "sample-webapp-alb");
    assert_eq!(dns, s.ingress(), "DNSName is where the ingress answers");
    let tg = target_group(&aws, "sample-webapp-tg", "80");
    listener(&aws, &lb, &tg);
    aws.json(&[
        "ecs",
        "create-cluster",
        "--cluster-name",
        "sample-webapp-cluster",
    ]);
    let td = register(
        &aws,
        "sample-webapp-task-family",
        "go-sample-webapp",
        "Hello World!",
    );
    let created = create_service(
        &aws,
        "sample-webapp-cluster",
        "sample-webapp-service",
        &td,
        "2",
        &tg,
        "go-sample-webapp",
        "8080",
    )
    .ok()
    .json();
    assert_eq!(
        created["service"]["loadBalancers"],
        json!([{"targetGroupArn": tg, "containerName": "go-sample-webapp", "containerPort": 8080}])
    );
    assert_eq!(created["service"]["healthCheckGracePeriodSeconds"], 10);
    wait_stable(&aws, "sample-webapp-cluster", "sample-webapp-service");

    let out = seed_test(&aws, "sample-webapp-cluster", "sample-webapp-service");
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(
        out.stdout.contains("\"version\":\"Hello World!\""),
        "{out:#?}"
    );

    // A service deployed from slipway.yml shows with its target group of the ingress, and
    // the same test passes through it.
    let app = app_name("seed");
    s.manifest(&format!(
        "app: {app}\nservices:\n  web:\n    type: Load Balanced Web Service\n    image:\n      location: slipway-hello:v1\n      port: 8080\n    http:\n      path: /\n      alias: hello.example.com\n      healthcheck: /healthz\n    variables:\n      HELLO_VERSION: \"Hello World!\"\n    count: 1\n    memory: 32\n"
    ));
    s.cli(&["deploy"]).ok();
    let d = aws.json(&[
        "ecs",
        "describe-services",
        "--cluster",
        &app,
        "--services",
        "web",
    ]);
    let view = d["services"][0]["loadBalancers"][0].clone();
    assert_eq!(view["containerPort"], 8080, "{d}");
    let view_tg = view["targetGroupArn"].as_str().unwrap();
    let groups = aws.json(&[
        "elbv2",
        "describe-target-groups",
        "--target-group-arns",
        view_tg,
    ]);
    assert_eq!(
        groups["TargetGroups"][0]["LoadBalancerArns"][0],
        "arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/app/slipway-ingress/0000000000000000",
        "{groups}"
    );
    let health = aws.json(&[
        "elbv2",
        "describe-target-health",
        "--target-group-arn",
        view_tg,
    ]);
    assert_eq!(
        health["TargetHealthDescriptions"][0]["TargetHealth"]["State"], "healthy",
        "{health}"
    );
    // Through the host alias of its route (curl's Host header names it).
    let out = aws.sh(&format!(
        "export ECS_CLUSTER_NAME={app}\nexport ECS_SERVICE_NAME=web\n{}",
        SEED_001_TEST.replace(
            "curl http://$ELB_DNS_NAME",
            "curl -H 'Host: hello.example.com' http://$ELB_DNS_NAME"
        )
    ));
    assert_eq!(out.code, 0, "{out:#?}");
    // Every group shows, with its load balancer.
    let all = aws.json(&["elbv2", "describe-target-groups"]);
    assert_eq!(all["TargetGroups"].as_array().unwrap().len(), 2, "{all}");
}

fn versions_via(addr: &str, path: &str) -> Option<String> {
    let (status, body) = probe_host(addr, "shop.example.com", path)?;
    (status == 200).then(|| {
        serde_json::from_str::<Value>(&body).unwrap()["version"]
            .as_str()
            .unwrap()
            .to_owned()
    })
}

#[test]
fn elb_alb_set_up_with_the_cli_routes_checks_health_and_rolls_without_drops() {
    if !docker() {
        return;
    }
    let Some(cli) = aws_cli() else { return };
    let s = Server::start();
    let aws = Aws::new(&s, &cli, &["--name", "ci"]);

    let (lb, dns) = load_balancer(&aws, "shop-alb");
    let users_tg = target_group(&aws, "users-tg", "8080");
    let api_tg = target_group(&aws, "api-tg", "8080");
    let l = listener(&aws, &lb, &api_tg);
    let rule = aws.json(&[
        "elbv2",
        "create-rule",
        "--listener-arn",
        &l,
        "--priority",
        "10",
        "--conditions",
        "Field=path-pattern,Values=/users*,/accounts/*",
        "--actions",
        &format!("Type=forward,TargetGroupArn={users_tg}"),
    ]);
    assert_eq!(rule["Rules"][0]["Priority"], "10", "{rule}");
    assert_eq!(
        rule["Rules"][0]["Conditions"][0]["Values"],
        json!(["/users*", "/accounts/*"])
    );

    aws.json(&["ecs", "create-cluster", "--cluster-name", "shop"]);
    let users1 = register(&aws, "users", "users", "users-v1");
    let api1 = register(&aws, "api", "api", "api-v1");
    create_service(
        &aws, "shop", "users", &users1, "2", &users_tg, "users", "8080",
    )
    .ok();
    create_service(&aws, "shop", "api", &api1, "1", &api_tg, "api", "8080").ok();
    wait_stable(&aws, "shop", "users");
    wait_stable(&aws, "shop", "api");

    // Routing: /users to the users service, the rest to the listener's default.
    wait_for(Duration::from_secs(30), "routes through the ALB", || {
        (versions_via(&dns, "/users").as_deref() == Some("users-v1")
            && versions_via(&dns, "/users/7").as_deref() == Some("users-v1")
            && versions_via(&dns, "/accounts/7").as_deref() == Some("users-v1")
            && versions_via(&dns, "/").as_deref() == Some("api-v1"))
        .then_some(())
    });

    // Target health: both users tasks healthy, at their addresses and port.
    let health = aws.json(&[
        "elbv2",
        "describe-target-health",
        "--target-group-arn",
        &users_tg,
    ]);
    let targets = health["TargetHealthDescriptions"].as_array().unwrap();
    assert_eq!(targets.len(), 2, "{health}");
    for t in targets {
        assert_eq!(t["TargetHealth"]["State"], "healthy", "{health}");
        assert_eq!(t["Target"]["Port"], 8080);
    }
    // The describe calls agree with each other.
    let groups = aws.json(&[
        "elbv2",
        "describe-target-groups",
        "--load-balancer-arn",
        &lb,
    ]);
    let mut names: Vec<&str> = groups["TargetGroups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["TargetGroupName"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["api-tg", "users-tg"], "{groups}");
    let listeners = aws.json(&["elbv2", "describe-listeners", "--load-balancer-arn", &lb]);
    assert_eq!(
        listeners["Listeners"][0]["DefaultActions"][0]["TargetGroupArn"],
        api_tg.as_str()
    );
    let rules = aws.json(&["elbv2", "describe-rules", "--listener-arn", &l]);
    let rules = rules["Rules"].as_array().unwrap();
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[1]["IsDefault"], true);
    let svc = aws.json(&[
        "ecs",
        "describe-services",
        "--cluster",
        "shop",
        "--services",
        "users",
    ]);
    assert_eq!(
        svc["services"][0]["loadBalancers"][0]["targetGroupArn"],
        users_tg.as_str()
    );

    // A rolling deploy of users under load through the ALB drops nothing.
    let users2 = register(&aws, "users", "users", "users-v2");
    let load = Load::start(&format!("http://{dns}/users"), 4, Duration::from_secs(240));
    std::thread::sleep(Duration::from_secs(1));
    let updated = aws.json(&[
        "ecs",
        "update-service",
        "--cluster",
        "shop",
        "--service",
        "users",
        "--task-definition",
        &users2,
    ]);
    // The new task definition keeps the service's target group.
    assert_eq!(
        updated["service"]["loadBalancers"][0]["targetGroupArn"],
        users_tg.as_str()
    );
    wait_stable(&aws, "shop", "users");
    wait_for(Duration::from_secs(60), "only users-v2 answers", || {
        let d = aws.json(&[
            "ecs",
            "describe-services",
            "--cluster",
            "shop",
            "--services",
            "users",
        ]);
        (d["services"][0]["deployments"].as_array().unwrap().len() == 1
            && (0..10).all(|_| versions_via(&dns, "/users").as_deref() == Some("users-v2")))
        .then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    let report = load.stop();
    assert_eq!(report.errors + report.non_2xx, 0, "{report:#?}");
    assert!(report.versions.contains_key("users-v1"), "{report:#?}");
    assert!(report.versions.contains_key("users-v2"), "{report:#?}");
    wait_for(
        Duration::from_secs(30),
        "two healthy users-v2 targets",
        || {
            let h = aws.json(&[
                "elbv2",
                "describe-target-health",
                "--target-group-arn",
                &users_tg,
            ]);
            let t = h["TargetHealthDescriptions"].as_array().unwrap().clone();
            (t.len() == 2 && t.iter().all(|t| t["TargetHealth"]["State"] == "healthy"))
                .then_some(())
        },
    );
    // The api service never moved.
    assert_eq!(versions_via(&dns, "/").as_deref(), Some("api-v1"));

    // A change of the group reaches the attached service as a deployment (its route is part
    // of its release); taking away the only rule forwarding to it is refused.
    let before = aws.json(&[
        "ecs",
        "describe-services",
        "--cluster",
        "shop",
        "--services",
        "users",
    ]);
    aws.json(&[
        "elbv2",
        "modify-target-group-attributes",
        "--target-group-arn",
        &users_tg,
        "--attributes",
        "Key=deregistration_delay.timeout_seconds,Value=3",
    ]);
    let after = aws.json(&[
        "ecs",
        "describe-services",
        "--cluster",
        "shop",
        "--services",
        "users",
    ]);
    assert_ne!(
        before["services"][0]["deployments"][0]["id"], after["services"][0]["deployments"][0]["id"],
        "{after}"
    );
    assert!(
        after["services"][0]["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["message"]
                .as_str()
                .unwrap()
                .contains("target group users-tg deregistration delay 3s")),
        "{after}"
    );
    wait_stable(&aws, "shop", "users");
    // A new rule forwarding another path to the group: the service answers there too once
    // its new tasks (with the new route) are healthy.
    assert_eq!(versions_via(&dns, "/people").as_deref(), Some("api-v1"));
    aws.json(&[
        "elbv2",
        "create-rule",
        "--listener-arn",
        &l,
        "--priority",
        "20",
        "--conditions",
        "Field=path-pattern,Values=/people*",
        "--actions",
        &format!("Type=forward,TargetGroupArn={users_tg}"),
    ]);
    wait_stable(&aws, "shop", "users");
    wait_for(Duration::from_secs(60), "/people routed to users", || {
        (versions_via(&dns, "/people").as_deref() == Some("users-v2")).then_some(())
    });
    // Deleting the first rule takes /users and /accounts from the service (the listener's
    // default answers them again); deleting the last rule forwarding to it is refused.
    let rule_arn = rule["Rules"][0]["RuleArn"].as_str().unwrap();
    aws.run(&["elbv2", "delete-rule", "--rule-arn", rule_arn])
        .ok();
    wait_stable(&aws, "shop", "users");
    wait_for(
        Duration::from_secs(60),
        "/users back to the default",
        || (versions_via(&dns, "/users").as_deref() == Some("api-v1")).then_some(()),
    );
    let people = aws.json(&["elbv2", "describe-rules", "--listener-arn", &l]);
    let people_arn = people["Rules"][0]["RuleArn"].as_str().unwrap();
    let out = aws.run(&["elbv2", "delete-rule", "--rule-arn", people_arn]);
    assert_ne!(out.code, 0, "{out:#?}");
    assert!(out.stderr.contains("(ResourceInUse)"), "{out:#?}");
    assert_eq!(versions_via(&dns, "/people").as_deref(), Some("users-v2"));
}

/// The aws CLI failed with this AWS error code.
#[track_caller]
fn fails_with(out: &Out, code: &str) {
    assert_ne!(out.code, 0, "{out:#?}");
    assert!(
        out.stderr.contains(&format!("({code})")),
        "wanted {code}: {out:#?}"
    );
}

#[test]
fn elb_bad_input_gets_aws_errors_and_changes_nothing() {
    if !docker() {
        return;
    }
    let Some(cli) = aws_cli() else { return };
    let s = Server::start();
    let aws = Aws::new(&s, &cli, &["--name", "ci"]);
    let (lb, _) = load_balancer(&aws, "bad-alb");
    let tg = target_group(&aws, "bad-tg", "8080");
    let l = listener(&aws, &lb, &tg);
    let other_port = target_group(&aws, "other-port-tg", "9999");
    aws.json(&[
        "elbv2",
        "create-rule",
        "--listener-arn",
        &l,
        "--priority",
        "5",
        "--conditions",
        "Field=path-pattern,Values=/other",
        "--actions",
        &format!("Type=forward,TargetGroupArn={other_port}"),
    ]);
    aws.json(&["ecs", "create-cluster", "--cluster-name", "bad"]);
    let td = register(&aws, "web", "web", "v1");
    let before = (
        aws.json(&["elbv2", "describe-load-balancers"]),
        aws.json(&["elbv2", "describe-target-groups"]),
        aws.json(&["elbv2", "describe-rules", "--listener-arn", &l]),
    );

    // A container port the container does not expose.
    let out = create_service(&aws, "bad", "web", &td, "1", &tg, "web", "9090");
    fails_with(&out, "InvalidParameterException");
    assert!(out.stderr.contains("9090"), "{out:#?}");
    // A target group sending to a port the container does not expose.
    let out = create_service(&aws, "bad", "web", &td, "1", &other_port, "web", "8080");
    fails_with(&out, "InvalidParameterException");
    assert!(out.stderr.contains("9999"), "{out:#?}");
    // A container the task definition does not have.
    let out = create_service(&aws, "bad", "web", &td, "1", &tg, "nope", "8080");
    fails_with(&out, "InvalidParameterException");
    // An unknown target group.
    let unknown = tg.replace("bad-tg", "no-such-tg");
    let out = create_service(&aws, "bad", "web", &td, "1", &unknown, "web", "8080");
    fails_with(&out, "InvalidParameterException");
    let out = aws.run(&[
        "elbv2",
        "describe-target-groups",
        "--target-group-arns",
        &unknown,
    ]);
    fails_with(&out, "TargetGroupNotFound");
    let out = aws.run(&[
        "elbv2",
        "describe-target-health",
        "--target-group-arn",
        &unknown,
    ]);
    fails_with(&out, "TargetGroupNotFound");
    let out = aws.run(&[
        "elbv2",
        "describe-load-balancers",
        "--load-balancer-arns",
        &lb.replace("bad-alb", "no-alb"),
    ]);
    fails_with(&out, "LoadBalancerNotFound");
    // A load balancer name taken (with other settings), and a name AWS refuses.
    let out = aws.run(&[
        "elbv2",
        "create-load-balancer",
        "--name",
        "bad-alb",
        "--scheme",
        "internal",
    ]);
    fails_with(&out, "DuplicateLoadBalancerName");
    let out = aws.run(&["elbv2", "create-load-balancer", "--name", "bad_name"]);
    fails_with(&out, "ValidationError");
    // A path pattern the ingress cannot route, a priority in use, a group in use.
    let rule = |priority: &str, path: &str| {
        aws.run(&[
            "elbv2",
            "create-rule",
            "--listener-arn",
            &l,
            "--priority",
            priority,
            "--conditions",
            &format!("Field=path-pattern,Values={path}"),
            "--actions",
            &format!("Type=forward,TargetGroupArn={tg}"),
        ])
    };
    fails_with(&rule("7", "/a/*/b"), "ValidationError");
    fails_with(&rule("5", "/x"), "PriorityInUse");
    let out = aws.run(&["elbv2", "delete-target-group", "--target-group-arn", &tg]);
    fails_with(&out, "ResourceInUse");
    // An identity scoped to an app reads load balancers but changes none (they are shared).
    s.cli(&[
        "token", "create", "ci-bad", "--role", "deployer", "--app", "bad",
    ])
    .ok();
    let scoped = Aws::new(&s, &cli, &["--for", "ci-bad"]);
    scoped.json(&[
        "elbv2",
        "describe-target-groups",
        "--target-group-arns",
        &tg,
    ]);
    let out = scoped.run(&[
        "elbv2",
        "modify-target-group-attributes",
        "--target-group-arn",
        &tg,
        "--attributes",
        "Key=deregistration_delay.timeout_seconds,Value=1",
    ]);
    fails_with(&out, "AccessDenied");

    // Nothing changed.
    let after = (
        aws.json(&["elbv2", "describe-load-balancers"]),
        aws.json(&["elbv2", "describe-target-groups"]),
        aws.json(&["elbv2", "describe-rules", "--listener-arn", &l]),
    );
    assert_eq!(before, after);
    let listed = aws.json(&["ecs", "list-services", "--cluster", "bad"]);
    assert_eq!(listed["serviceArns"], json!([]), "{listed}");
    assert!(s.containers().is_empty());

    // Deleting the load balancer takes its listeners and rules; then the groups go.
    aws.run(&["elbv2", "delete-load-balancer", "--load-balancer-arn", &lb])
        .ok();
    let out = aws.run(&["elbv2", "describe-listeners", "--listener-arns", &l]);
    fails_with(&out, "ListenerNotFound");
    aws.run(&["elbv2", "delete-target-group", "--target-group-arn", &tg])
        .ok();
    aws.run(&[
        "elbv2",
        "delete-target-group",
        "--target-group-arn",
        &other_port,
    ])
    .ok();
    let left = aws.json(&["elbv2", "describe-target-groups"]);
    assert_eq!(left["TargetGroups"], json!([]), "{left}");
}

/// A service attached to a target group has ingress routes, so the ECS progressive
/// strategies work for it: a canary through the ALB takes its share, then is promoted.
#[test]
fn elb_canary_of_a_service_attached_to_a_target_group() {
    if !docker() {
        return;
    }
    let Some(cli) = aws_cli() else { return };
    let s = Server::start();
    let aws = Aws::new(&s, &cli, &[]);
    let (lb, dns) = load_balancer(&aws, "canary-alb");
    let tg = target_group(&aws, "web-tg", "8080");
    listener(&aws, &lb, &tg);
    aws.json(&["ecs", "create-cluster", "--cluster-name", "shop"]);
    let v1 = register(&aws, "web", "web", "v1");
    let canary = r#"{"strategy":"CANARY","canaryConfiguration":{"canaryPercent":20,"canaryBakeTimeInMinutes":0},"bakeTimeInMinutes":0,"maximumPercent":200,"minimumHealthyPercent":100}"#;
    // Refused without a load balancer, accepted with one.
    let out = aws.run(&[
        "ecs",
        "create-service",
        "--cluster",
        "shop",
        "--service-name",
        "web",
        "--task-definition",
        &v1,
        "--deployment-configuration",
        canary,
    ]);
    fails_with(&out, "InvalidParameterException");
    let created = aws.json(&[
        "ecs",
        "create-service",
        "--cluster",
        "shop",
        "--service-name",
        "web",
        "--task-definition",
        &v1,
        "--desired-count",
        "2",
        "--deployment-configuration",
        canary,
        "--load-balancers",
        &format!("targetGroupArn={tg},containerName=web,containerPort=8080"),
    ]);
    assert_eq!(
        created["service"]["deploymentConfiguration"]["strategy"],
        "CANARY"
    );
    wait_stable(&aws, "shop", "web");

    let v2 = register(&aws, "web", "web", "v2");
    let load = Load::start(&format!("http://{dns}/"), 2, Duration::from_secs(180));
    aws.json(&[
        "ecs",
        "update-service",
        "--cluster",
        "shop",
        "--service",
        "web",
        "--task-definition",
        &v2,
    ]);
    wait_for(Duration::from_secs(120), "the canary at 20 %", || {
        let d = aws.json(&[
            "ecs",
            "describe-services",
            "--cluster",
            "shop",
            "--services",
            "web",
        ]);
        d["services"][0]["deployments"][0]["rolloutStateReason"]
            .as_str()?
            .starts_with("CANARY: 20% of production traffic to the new revision")
            .then_some(())
    });
    wait_for(
        Duration::from_secs(30),
        "both versions through the ALB",
        || {
            let seen: std::collections::BTreeSet<String> =
                (0..40).filter_map(|_| versions_via(&dns, "/")).collect();
            (seen.len() == 2).then_some(())
        },
    );
    s.cli(&["promote", "web", "--app", "shop"]).ok();
    wait_stable(&aws, "shop", "web");
    wait_for(Duration::from_secs(60), "only v2 answers", || {
        (0..10)
            .all(|_| versions_via(&dns, "/").as_deref() == Some("v2"))
            .then_some(())
    });
    let report = load.stop();
    assert_eq!(report.errors + report.non_2xx, 0, "{report:#?}");
}
