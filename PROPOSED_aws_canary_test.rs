// PROPOSED for crates/slipway/tests/it/aws.rs (not compiled here: the controller does not
// build on branch ecs-strategy). It uses only that file's helpers (`Aws`, `aws_cli`,
// `wait_stable`, `container_defs`) and `crate::support::*` (`docker`, `Server`, `wait_for`,
// `app_name`); paste it at the end of aws.rs.
//
// Why it holds at 20 %: analysis is on by default for a service with a route, and with no
// request through the ingress an interval is never a pass, so the canary waits at its first
// step until `slipway promote` (no timing assumption; the waits below are only upper bounds).

/// `aws ecs update-service --deployment-configuration` with the 2025 strategy members on a
/// web service that has an ingress route: the strategy is echoed, the deployment shows its
/// step in `rolloutStateReason`, `statusReason` and `lifecycleStage`, and bad values and a
/// service without routes are refused with InvalidParameterException.
#[test]
fn ecs_canary_strategy_shows_its_progress() {
    if !docker() {
        return;
    }
    let Some(cli) = aws_cli() else { return };
    let s = Server::start();
    let aws = Aws::new(&s, &cli, &[]);
    let app = app_name("canary");
    // ECS services get ingress routes from a manifest (loadBalancers are ignored).
    s.manifest(&format!(
        "app: {app}\nservices:\n  web:\n    type: Load Balanced Web Service\n    image:\n      location: slipway-hello:v1\n      port: 8080\n    http:\n      path: /\n      healthcheck: {{path: /healthz, interval: 1s, healthy_threshold: 1}}\n      deregistration_delay: 1s\n    count: 2\n    memory: 32\n    stop_timeout: 2s\n"
    ));
    s.cli(&["deploy"]).ok();
    wait_stable(&aws, &app, "web");

    let describe = |aws: &Aws<'_>| -> Value {
        aws.json(&[
            "ecs",
            "describe-services",
            "--cluster",
            &app,
            "--services",
            "web",
        ])["services"][0]
            .clone()
    };

    // Bad values are refused, naming the field, and change nothing.
    for (conf, field) in [
        (
            r#"{"strategy":"CANARY","canaryConfiguration":{"canaryPercent":2.5}}"#,
            "canaryPercent",
        ),
        (
            r#"{"strategy":"CANARY","canaryConfiguration":{"canaryPercent":0}}"#,
            "canaryPercent",
        ),
        (
            r#"{"strategy":"LINEAR","linearConfiguration":{"stepPercent":101}}"#,
            "stepPercent",
        ),
    ] {
        let out = aws.run(&[
            "ecs",
            "update-service",
            "--cluster",
            &app,
            "--service",
            "web",
            "--deployment-configuration",
            conf,
        ]);
        assert_ne!(out.code, 0, "{conf}: {out:#?}");
        assert!(
            out.stderr.contains("InvalidParameterException") && out.stderr.contains(field),
            "{conf}: {out:#?}"
        );
    }
    let svc = describe(&aws);
    assert_eq!(svc["deploymentConfiguration"]["strategy"], "ROLLING", "{svc}");
    assert_eq!(svc["deployments"].as_array().unwrap().len(), 1, "{svc}");

    // A canary of 20 % with no step bake; a new deployment of the same revision.
    let updated = aws.json(&[
        "ecs",
        "update-service",
        "--cluster",
        &app,
        "--service",
        "web",
        "--force-new-deployment",
        "--deployment-configuration",
        r#"{"strategy":"CANARY","canaryConfiguration":{"canaryPercent":20,"canaryBakeTimeInMinutes":0},"bakeTimeInMinutes":0,"maximumPercent":200,"minimumHealthyPercent":100}"#,
    ]);
    let dc = &updated["service"]["deploymentConfiguration"];
    assert_eq!(dc["strategy"], "CANARY", "{dc}");
    assert_eq!(dc["bakeTimeInMinutes"], 0, "{dc}");
    assert_eq!(dc["canaryConfiguration"]["canaryPercent"], 20.0, "{dc}");
    assert_eq!(dc["canaryConfiguration"]["canaryBakeTimeInMinutes"], 0, "{dc}");

    // Its new tasks start without traffic, then it takes 20 % and waits for analysis.
    let svc = wait_for(Duration::from_secs(120), "the canary at 20 %", || {
        let svc = describe(&aws);
        let reason = svc["deployments"][0]["rolloutStateReason"]
            .as_str()?
            .to_owned();
        reason
            .starts_with("CANARY: 20% of production traffic to the new revision")
            .then_some(svc)
    });
    let deployments = svc["deployments"].as_array().unwrap();
    assert_eq!(deployments.len(), 2, "old tasks take the other 80 %: {svc}");
    assert_eq!(deployments[0]["status"], "PRIMARY");
    assert_eq!(deployments[0]["rolloutState"], "IN_PROGRESS");
    assert_eq!(deployments[1]["status"], "ACTIVE");
    assert!(deployments[1]["runningCount"].as_u64().unwrap() >= 1, "{svc}");

    let listed = aws.json(&[
        "ecs",
        "list-service-deployments",
        "--cluster",
        &app,
        "--service",
        "web",
    ]);
    let brief = &listed["serviceDeployments"][0];
    assert_eq!(brief["status"], "IN_PROGRESS", "{listed}");
    assert!(
        brief["statusReason"]
            .as_str()
            .unwrap()
            .starts_with("CANARY: 20% of production traffic"),
        "{listed}"
    );
    let arn = brief["serviceDeploymentArn"].as_str().unwrap().to_owned();
    let sd = |aws: &Aws<'_>| -> Value {
        aws.json(&[
            "ecs",
            "describe-service-deployments",
            "--service-deployment-arns",
            &arn,
        ])["serviceDeployments"][0]
            .clone()
    };
    let d = sd(&aws);
    assert_eq!(d["lifecycleStage"], "PRODUCTION_TRAFFIC_SHIFT", "{d}");
    assert_eq!(d["deploymentConfiguration"]["strategy"], "CANARY", "{d}");
    assert_eq!(
        d["deploymentConfiguration"]["canaryConfiguration"]["canaryPercent"],
        20.0,
        "{d}"
    );

    // Promoted, it takes every request and completes.
    s.cli(&["promote", "web", "--app", &app]).ok();
    wait_stable(&aws, &app, "web");
    let svc = describe(&aws);
    assert_eq!(svc["deployments"].as_array().unwrap().len(), 1, "{svc}");
    assert_eq!(svc["deployments"][0]["rolloutState"], "COMPLETED", "{svc}");
    let d = sd(&aws);
    assert_eq!(d["status"], "SUCCESSFUL", "{d}");
    assert_eq!(d["lifecycleStage"], "CLEAN_UP", "{d}");

    // An ECS service has no ingress route: a progressive strategy is refused and no
    // service is created.
    aws.json(&[
        "ecs",
        "register-task-definition",
        "--family",
        "plain",
        "--container-definitions",
        &container_defs("plain", "slipway-hello:v1"),
    ]);
    let out = aws.run(&[
        "ecs",
        "create-service",
        "--service-name",
        "plain",
        "--task-definition",
        "plain",
        "--deployment-configuration",
        r#"{"strategy":"CANARY"}"#,
    ]);
    assert_ne!(out.code, 0, "{out:#?}");
    assert!(
        out.stderr.contains("InvalidParameterException")
            && out.stderr.contains("needs ingress routes"),
        "{out:#?}"
    );
    let services = aws.json(&["ecs", "list-services"]);
    assert_eq!(services["serviceArns"], json!([]), "{services}");
}
