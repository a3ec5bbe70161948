//! Tasks of several containers on the real engine: an app, a stand-in agent (the example
//! app on another port, with a Docker health check) and a log router (examples/logrouter,
//! which decodes Fluentd's forward protocol as Docker's `fluentd` driver sends it), from
//! `slipway.yml` and from `aws ecs register-task-definition`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::aws::{Aws, aws_cli};
use crate::support::*;

/// The app waits for the agent's health (`depends_on: healthy`) and needs it on localhost
/// at start (`HELLO_REQUIRE`: it exits 4 when the agent does not answer); its output goes
/// to the log router.
fn manifest(app: &str, app_env: &str) -> String {
    format!(
        r#"app: {app}
services:
  api:
    type: Load Balanced Web Service
    image:
      location: slipway-hello:v1
      port: 8080
      depends_on:
        agent: healthy
    http:
      path: /
      healthcheck: /healthz
    count: 1
    memory: 32
    deployment:
      failure_threshold: 1
    variables:
      HELLO_SAY: app line
      HELLO_REQUIRE: 127.0.0.1:8126
{app_env}    sidecars:
      agent:
        image: slipway-hello:v1
        port: 8126
        variables:
          PORT: "8126"
          HELLO_START_DELAY_MS: "1500"
        healthcheck:
          command: ["/hello", "check"]
          interval: 1s
          retries: 30
    logging:
      image: slipway-logrouter:v1
      destination:
        Name: stdout
"#
    )
}

/// `docker inspect` of one container of a task, by its name in the task.
fn inspect(task: &str, container: &str) -> Value {
    let out = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=slipway.task={task}"),
            "--filter",
            &format!("label=slipway.container={container}"),
        ])
        .output()
        .unwrap();
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(!id.is_empty(), "no container {container} of task {task}");
    let out = Command::new("docker")
        .args(["inspect", &id])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0].clone()
}

fn started_ms(c: &Value) -> i64 {
    let s = c["State"]["StartedAt"].as_str().unwrap();
    // 2026-12-07T22:10:01.123456789Z: compare within the day, which the test spans.
    let t = s.split('T').nth(1).unwrap().trim_end_matches('Z');
    let (hms, frac) = t.split_once('.').unwrap_or((t, "0"));
    let mut p = hms.split(':').map(|x| x.parse::<i64>().unwrap());
    let (h, m, sec) = (p.next().unwrap(), p.next().unwrap(), p.next().unwrap());
    let ms: i64 = format!("{frac:0<3}")[..3].parse().unwrap();
    ((h * 60 + m) * 60 + sec) * 1000 + ms
}

fn running_task(s: &Server, service: &str) -> Value {
    let tasks = s.cli(&["--json", "ps", service]).ok().json();
    tasks
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["last_status"] == "RUNNING")
        .cloned()
        .unwrap_or_else(|| panic!("no running task: {tasks}"))
}

/// From `slipway.yml`: the app starts after its agent is healthy and reaches it on
/// localhost; its lines arrive at the log router through the forward protocol (and are
/// still in `slipway logs`); `ps` shows each container; a version whose app crashes
/// while the sidecars are healthy is ROLLED_BACK with one line naming the app container
/// and its exit code; stopping a task stops the app before its sidecars.
#[test]
fn a_three_container_task_from_slipway_yml() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let app = app_name("side");
    s.manifest(&manifest(&app, ""));
    let out = s.cli(&["deploy", "--timeout", "120s"]).ok();
    assert!(out.stdout.contains("SUCCEEDED"), "{out:?}");

    let task = running_task(&s, "api");
    let id = task["id"].as_str().unwrap().to_owned();
    let names: Vec<&str> = task["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["api", "agent", "firelens_log_router"], "{task}");
    let agent = &task["containers"][1];
    assert_eq!(agent["last_status"], "RUNNING", "{task}");
    assert_eq!(agent["health"], "HEALTHY", "{task}");
    let ps = s.cli(&["ps", "api"]).ok();
    assert!(
        ps.stdout.contains("agent RUNNING HEALTHY"),
        "ps shows each container: {ps:?}"
    );

    // It answers through the ingress.
    let ingress = s.ingress();
    let (st, body) = probe_host(&ingress, "x.test", "/").expect("the ingress answers");
    assert_eq!(st, 200, "{body}");

    // The app started after the agent was listening (the agent sleeps 1.5 s first), and
    // reached it on localhost.
    let app_c = inspect(&id, "api");
    let agent_c = inspect(&id, "agent");
    assert!(
        started_ms(&app_c) >= started_ms(&agent_c) + 1500,
        "the app started {} ms after the agent",
        started_ms(&app_c) - started_ms(&agent_c)
    );
    let logs = wait_for(Duration::from_secs(30), "the app's own lines", || {
        let o = s.cli(&["logs", "api", "--tail", "100"]);
        (o.code == 0 && o.stdout.contains("app line")).then_some(o.stdout)
    });
    assert!(logs.contains("127.0.0.1:8126 answers"), "{logs}");
    assert_eq!(
        app_c["HostConfig"]["LogConfig"]["Type"], "fluentd",
        "{app_c}"
    );

    // Its lines arrive at the router, decoded from the forward protocol, with FireLens's tag.
    let tag = format!("api-firelens-{id}");
    let routed = wait_for(Duration::from_secs(30), "lines at the log router", || {
        let o = s.cli(&["logs", "api", "--container", "firelens_log_router"]);
        (o.code == 0 && o.stdout.contains(&format!("router: {tag} stdout app line")))
            .then_some(o.stdout)
    });
    assert!(routed.contains("router: listening on 24224"), "{routed}");
    // An unknown container is named with the ones there are.
    let bad = s.cli(&["logs", "api", "--container", "nope"]);
    assert_ne!(bad.code, 0);
    assert!(
        bad.stderr.contains("agent, api, firelens_log_router"),
        "{bad:?}"
    );

    // A version whose app crashes at start while its sidecars are healthy.
    s.manifest(&manifest(&app, "      HELLO_EXIT_AT_START: \"3\"\n"));
    let out = s.cli(&["deploy", "--timeout", "180s"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("ROLLED_BACK"), "{out:?}");
    assert!(
        out.stdout.contains(
            "essential container api exited with code 3 while agent (HEALTHY) and firelens_log_router (RUNNING) kept running"
        ),
        "one line names the app container, its exit code and the healthy sidecars: {out:?}"
    );
    // The old version runs on.
    let task = running_task(&s, "api");
    assert_eq!(task["id"], id.as_str(), "{task}");

    // Stopping the task: the app stops before its sidecars, the network holder last.
    let order = die_order(&id, 4, || {
        s.cli(&["scale", "api", "0"]).ok();
    });
    assert_eq!(
        order,
        vec!["api", "firelens_log_router", "agent", "holder"],
        "stop order"
    );
    gone(&id);
}

/// The containers of `task`, in the order they die while `stop` runs (the first `n`).
fn die_order(task: &str, n: usize, stop: impl FnOnce()) -> Vec<String> {
    let mut events = Command::new("docker")
        .args([
            "events",
            "--filter",
            &format!("label=slipway.task={task}"),
            "--filter",
            "event=die",
            "--format",
            "{{index .Actor.Attributes \"slipway.container\"}}",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // `docker events` subscribes before it prints anything; give it its start.
    std::thread::sleep(Duration::from_millis(500));
    stop();
    let mut order = Vec::new();
    let mut lines = BufReader::new(events.stdout.take().unwrap()).lines();
    while order.len() < n {
        match lines.next() {
            Some(Ok(l)) => order.push(l),
            _ => break,
        }
    }
    let _ = events.kill();
    let _ = events.wait();
    order
}

/// Waits until no container of `task` is left.
fn gone(task: &str) {
    wait_for(
        Duration::from_secs(30),
        "the task's containers to go",
        || {
            let o = Command::new("docker")
                .args([
                    "ps",
                    "-aq",
                    "--filter",
                    &format!("label=slipway.task={task}"),
                ])
                .output()
                .unwrap();
            o.stdout.is_empty().then_some(())
        },
    );
}

fn container_defs(app_image: &str) -> String {
    json!([
        {
            "name": "app",
            "image": app_image,
            "essential": true,
            "memory": 32,
            "portMappings": [{"containerPort": 8080}],
            "environment": [
                {"name": "HELLO_SAY", "value": "ecs app line"},
                {"name": "HELLO_REQUIRE", "value": "127.0.0.1:8126"}
            ],
            "dependsOn": [{"containerName": "datadog-agent", "condition": "HEALTHY"}],
            "logConfiguration": {"logDriver": "awsfirelens", "options": {"Name": "stdout"}}
        },
        {
            "name": "datadog-agent",
            "image": "slipway-hello:v1",
            "essential": true,
            "environment": [
                {"name": "PORT", "value": "8126"},
                {"name": "HELLO_START_DELAY_MS", "value": "1500"}
            ],
            "healthCheck": {"command": ["CMD", "/hello", "check"], "interval": 5, "retries": 10}
        },
        {
            "name": "log_router",
            "image": "slipway-logrouter:v1",
            "essential": true,
            "firelensConfiguration": {"type": "fluentbit"}
        }
    ])
    .to_string()
}

/// From the ECS API: `register-task-definition` with three container definitions
/// (`dependsOn`, `firelensConfiguration`, `logConfiguration` `awsfirelens`), a service
/// of it, `describe-tasks` with each container; bad definitions are refused with ECS's
/// error shape and register nothing.
#[test]
fn a_three_container_task_from_the_ecs_api() {
    if !docker() {
        return;
    }
    let Some(cli) = aws_cli() else { return };
    let s = Server::start();
    let aws = Aws::new(&s, &cli, &[]);
    aws.run(&["ecs", "create-cluster", "--cluster-name", "side"]);
    let reg = aws.run(&[
        "ecs",
        "register-task-definition",
        "--family",
        "side",
        "--container-definitions",
        &container_defs("slipway-hello:v1"),
    ]);
    assert_eq!(reg.code, 0, "{reg:?}");
    let out = aws.run(&[
        "ecs",
        "create-service",
        "--cluster",
        "side",
        "--service-name",
        "web",
        "--task-definition",
        "side",
        "--desired-count",
        "1",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let wait = aws.run(&[
        "ecs",
        "wait",
        "services-stable",
        "--cluster",
        "side",
        "--services",
        "web",
    ]);
    assert_eq!(wait.code, 0, "{wait:?}");
    let list = aws.run(&[
        "ecs",
        "list-tasks",
        "--cluster",
        "side",
        "--service-name",
        "web",
    ]);
    let arn = serde_json::from_str::<Value>(&list.stdout).unwrap()["taskArns"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let d = aws.run(&[
        "ecs",
        "describe-tasks",
        "--cluster",
        "side",
        "--tasks",
        &arn,
    ]);
    let d: Value = serde_json::from_str(&d.stdout).unwrap();
    let containers = d["tasks"][0]["containers"].as_array().unwrap().clone();
    let names: Vec<&str> = containers
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["app", "datadog-agent", "log_router"], "{d}");
    assert_eq!(containers[1]["healthStatus"], "HEALTHY", "{d}");
    assert!(
        containers.iter().all(|c| c["lastStatus"] == "RUNNING"),
        "{d}"
    );
    // The app's lines at the router.
    let task = arn.rsplit('/').next().unwrap().to_owned();
    let router = inspect(&task, "log_router");
    let id = router["Id"].as_str().unwrap().to_owned();
    wait_for(
        Duration::from_secs(30),
        "the app's lines at the router",
        || {
            let o = Command::new("docker").args(["logs", &id]).output().unwrap();
            String::from_utf8_lossy(&o.stdout)
                .contains(&format!("router: app-firelens-{task} stdout ecs app line"))
                .then_some(())
        },
    );
    assert!(
        started_ms(&inspect(&task, "app")) >= started_ms(&inspect(&task, "datadog-agent")) + 1500
    );

    // A revision whose app crashes at start beside healthy sidecars: the circuit breaker
    // rolls the service back, and the stopped tasks say which container ended them.
    let mut crash: Value = serde_json::from_str(&container_defs("slipway-hello:v1")).unwrap();
    crash[0]["environment"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "HELLO_EXIT_AT_START", "value": "3"}));
    let reg = aws.run(&[
        "ecs",
        "register-task-definition",
        "--family",
        "side",
        "--container-definitions",
        &crash.to_string(),
    ]);
    assert_eq!(reg.code, 0, "{reg:?}");
    let up = aws.run(&[
        "ecs",
        "update-service",
        "--cluster",
        "side",
        "--service",
        "web",
        "--task-definition",
        "side:2",
        "--deployment-configuration",
        "deploymentCircuitBreaker={enable=true,rollback=true},maximumPercent=200,minimumHealthyPercent=100",
    ]);
    assert_eq!(up.code, 0, "{up:?}");
    wait_for(
        Duration::from_secs(240),
        "the broken revision to be rolled back",
        || {
            let l = aws.run(&[
                "ecs",
                "list-service-deployments",
                "--cluster",
                "side",
                "--service",
                "web",
                "--status",
                "ROLLBACK_SUCCESSFUL",
            ]);
            let v: Value = serde_json::from_str(&l.stdout).ok()?;
            (!v["serviceDeployments"].as_array()?.is_empty()).then_some(())
        },
    );
    let stopped = aws.run(&[
        "ecs",
        "list-tasks",
        "--cluster",
        "side",
        "--service-name",
        "web",
        "--desired-status",
        "STOPPED",
    ]);
    let stopped: Value = serde_json::from_str(&stopped.stdout).unwrap();
    let arns: Vec<&str> = stopped["taskArns"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(!arns.is_empty(), "{stopped}");
    let mut args = vec!["ecs", "describe-tasks", "--cluster", "side", "--tasks"];
    args.extend(arns.iter().copied());
    let d: Value = serde_json::from_str(&aws.run(&args).stdout).unwrap();
    let reasons: Vec<&str> = d["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["stoppedReason"].as_str())
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains(
            "essential container app exited with code 3 while datadog-agent (HEALTHY) and log_router (RUNNING) kept running"
        )),
        "{reasons:?}"
    );
    // The first revision runs again.
    let list = aws.run(&[
        "ecs",
        "list-tasks",
        "--cluster",
        "side",
        "--service-name",
        "web",
    ]);
    let running: Value = serde_json::from_str(&list.stdout).unwrap();
    let arn = running["taskArns"][0].as_str().unwrap().to_owned();
    let d = aws.run(&[
        "ecs",
        "describe-tasks",
        "--cluster",
        "side",
        "--tasks",
        &arn,
    ]);
    let d: Value = serde_json::from_str(&d.stdout).unwrap();
    assert!(
        d["tasks"][0]["taskDefinitionArn"]
            .as_str()
            .unwrap()
            .ends_with("task-definition/side:1"),
        "{d}"
    );
    let task = arn.rsplit('/').next().unwrap().to_owned();

    // Scaled to 0: the app stops first, the sidecars after it, the holder last.
    let order = die_order(&task, 4, || {
        let o = aws.run(&[
            "ecs",
            "update-service",
            "--cluster",
            "side",
            "--service",
            "web",
            "--desired-count",
            "0",
        ]);
        assert_eq!(o.code, 0, "{o:?}");
    });
    assert_eq!(order, vec!["app", "log_router", "datadog-agent", "holder"]);
    gone(&task);

    // Bad definitions: ECS's error shape, nothing registered.
    let defs: Value = serde_json::from_str(&container_defs("slipway-hello:v1")).unwrap();
    let mut cycle = defs.clone();
    cycle[1]["dependsOn"] = json!([{"containerName": "app", "condition": "START"}]);
    let mut twice = defs.clone();
    twice[2]["name"] = json!("app");
    for (bad, says) in [
        (
            cycle,
            "dependsOn has a cycle among containers app, datadog-agent",
        ),
        (twice, "container name \"app\" is used twice in the task"),
    ] {
        let out = aws.run(&[
            "ecs",
            "register-task-definition",
            "--family",
            "side",
            "--container-definitions",
            &bad.to_string(),
        ]);
        assert_ne!(out.code, 0, "{out:?}");
        assert!(
            out.stderr.contains("(ClientException)") && out.stderr.contains(says),
            "{out:?}"
        );
    }
    let fams = aws.run(&["ecs", "list-task-definitions", "--family-prefix", "side"]);
    let fams: Value = serde_json::from_str(&fams.stdout).unwrap();
    assert_eq!(
        fams["taskDefinitionArns"].as_array().unwrap().len(),
        2,
        "the two good revisions only: {fams}"
    );
}

/// A `dependsOn` cycle in `slipway.yml` is refused with its place, before anything runs.
#[test]
fn a_dependency_cycle_in_slipway_yml_is_refused_with_its_place() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let app = app_name("sidebad");
    let text = manifest(&app, "").replace(
        "        port: 8126\n",
        "        port: 8126\n        depends_on:\n          api: start\n",
    );
    s.manifest(&text);
    let out = s.cli(&["deploy"]);
    assert_ne!(out.code, 0, "{out:?}");
    let line = out.stderr.lines().next().unwrap_or_default();
    assert!(
        line.starts_with("error: slipway.yml:22:16: ")
            && line.contains("dependsOn has a cycle among containers agent, api"),
        "{out:?}"
    );
    let list = s.cli(&["--json", "status"]);
    assert!(
        !list.stdout.contains(&app),
        "nothing was deployed: {list:?}"
    );
}
