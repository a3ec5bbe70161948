//! Deploys, replacement of killed tasks, rolling updates and automatic rollback.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::support::*;

fn healthy_tasks(s: &Server) -> Vec<serde_json::Value> {
    let ps = s.cli(&["--json", "ps", "web"]).ok().json();
    ps.as_array()
        .unwrap()
        .iter()
        .filter(|t| {
            t["health"] == "HEALTHY"
                && t["last_status"] == "RUNNING"
                && t["desired_running"] == true
        })
        .cloned()
        .collect()
}

/// Versions answered by the running containers of the server.
fn versions(s: &Server) -> Vec<String> {
    s.containers()
        .iter()
        .filter(|c| c.running)
        .filter_map(|c| probe(&c.ip, 8080, "/"))
        .map(|(_, body)| {
            serde_json::from_str::<serde_json::Value>(&body).unwrap()["version"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[test]
fn deploy_three_tasks_and_replace_a_killed_one() {
    if !docker() {
        return;
    }
    let s = Server::start();
    s.manifest(&web_manifest(&app_name("kill"), "slipway-hello:v1", 3, ""));
    let out = s.cli(&["deploy"]).ok();
    assert!(out.stdout.contains("SUCCEEDED"), "{out:?}");
    assert!(out.stdout.contains("answers at: http://"), "{out:?}");
    assert_eq!(healthy_tasks(&s).len(), 3);
    assert_eq!(versions(&s), vec!["v1"; 3]);

    let victim = s.containers().into_iter().find(|c| c.running).unwrap();
    let st = std::process::Command::new("docker")
        .args(["kill", &victim.id])
        .output()
        .unwrap();
    assert!(st.status.success());
    // Replaced within 10 s: a new task runs, and three are healthy again.
    wait_for(Duration::from_secs(10), "a replacement task", || {
        let running: Vec<Container> = s.containers().into_iter().filter(|c| c.running).collect();
        (running.len() == 3 && running.iter().all(|c| c.task != victim.task)).then_some(())
    });
    wait_for(Duration::from_secs(10), "three healthy tasks", || {
        (healthy_tasks(&s).len() == 3).then_some(())
    });
    let events = s.cli(&["events", "web"]).ok().stdout;
    assert!(
        events.contains(&format!(
            "task {} stopped: Essential container in task exited (exit code 137)",
            victim.task
        )),
        "{events}"
    );
    // The killed task is recorded with its stop reason.
    let all = s.cli(&["--json", "ps", "web", "--all"]).ok().json();
    let dead = all
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == victim.task.as_str())
        .unwrap();
    assert_eq!(dead["last_status"], "STOPPED");
    assert_eq!(dead["stop_code"], "EssentialContainerExited");
    assert_eq!(dead["exit_code"], 137);
}

#[test]
fn rolling_update_keeps_three_healthy_and_never_more_than_six() {
    if !docker() {
        return;
    }
    let s = Server::start();
    s.manifest(&web_manifest(&app_name("roll"), "slipway-hello:v1", 3, ""));
    s.cli(&["deploy"]).ok();

    // Sample the engine and the tasks' health endpoints while v2 rolls out.
    let stop = Arc::new(AtomicBool::new(false));
    let cluster = s.cluster.clone();
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            // One engine API call per sample (the docker CLI is too slow on a busy machine).
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let engine = rt
                .block_on(slipway_runtime::DockerRuntime::connect())
                .unwrap();
            let started = std::time::Instant::now();
            let mut samples = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let cs = rt.block_on(engine.list(&cluster)).unwrap();
                let running = cs
                    .iter()
                    .filter(|c| c.state != slipway_runtime::ContainerState::Exited)
                    .count();
                let healthy = cs
                    .iter()
                    .filter(|c| c.state == slipway_runtime::ContainerState::Running)
                    .filter_map(|c| c.ip.as_deref())
                    .filter(|ip| probe(ip, 8080, "/healthz").is_some_and(|(st, _)| st == 200))
                    .count();
                samples.push((running, healthy));
                std::thread::sleep(Duration::from_millis(40));
            }
            (samples, started.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let out = s.cli(&["deploy", "--image", "web=slipway-hello:v2"]);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let (samples, elapsed) = sampler.join().unwrap();
    let out = out.ok();
    assert!(out.stdout.contains("SUCCEEDED"), "{out:?}");
    let rate = samples.len() as f64 / elapsed.as_secs_f64();
    eprintln!("{} samples in {:?} ({rate:.1}/s)", samples.len(), elapsed);
    assert!(rate >= 5.0, "sampled only {rate:.1} times per second");
    for (i, (running, healthy)) in samples.iter().enumerate() {
        assert!(
            *healthy >= 3,
            "sample {i}: only {healthy} healthy tasks ({samples:?})"
        );
        assert!(
            *running <= 6,
            "sample {i}: {running} tasks running ({samples:?})"
        );
    }
    assert!(
        samples.iter().any(|(r, _)| *r > 3),
        "the rollout never overlapped old and new tasks: {samples:?}"
    );
    assert_eq!(versions(&s), vec!["v2"; 3]);
    let status = s.cli(&["--json", "status", "web"]).ok().json();
    let d = &status["summary"]["last_deployment"];
    assert_eq!(d["state"], "SUCCEEDED");
    assert!(
        d["timeline"]["first_healthy_at"].is_i64() && d["timeline"]["old_gone_at"].is_i64(),
        "{d}"
    );
    let human = s.cli(&["status", "web"]).ok().stdout;
    assert!(human.contains("old and new both served"), "{human}");
}

fn rolled_back(s: &Server, image: &str) {
    let out = s.cli(&[
        "deploy",
        "--image",
        &format!("web={image}"),
        "--timeout",
        "120s",
    ]);
    assert_ne!(out.code, 0, "a failed deploy must exit non-zero: {out:?}");
    assert!(out.stdout.contains("ROLLED_BACK"), "{out:?}");
    assert!(out.stdout.contains("circuit breaker"), "{out:?}");
    assert!(out.stdout.contains("rolled back to revision 2"), "{out:?}");
    assert_eq!(healthy_tasks(s).len(), 3);
    assert_eq!(versions(s), vec!["v2"; 3]);
}

#[test]
fn bad_versions_are_rolled_back() {
    if !docker() {
        return;
    }
    let s = Server::start();
    s.manifest(&web_manifest(&app_name("rb"), "slipway-hello:v1", 3, ""));
    s.cli(&["deploy"]).ok();
    s.cli(&["deploy", "--image", "web=slipway-hello:v2"]).ok();

    // A container that exits at once.
    rolled_back(&s, "slipway-hello:exit");
    let out = s.cli(&["--json", "ps", "web", "--all"]).ok().json();
    assert!(
        out.as_array().unwrap().iter().any(|t| t["stopped_reason"]
            .as_str()
            .is_some_and(|r| r.contains("exit code 3"))),
        "the exit code is reported: {out}"
    );
    // A container that runs but never passes its health check.
    rolled_back(&s, "slipway-hello:unhealthy");
}

#[test]
fn without_rollback_a_bad_version_fails_and_old_tasks_keep_running() {
    if !docker() {
        return;
    }
    let s = Server::start();
    s.manifest(&web_manifest(
        &app_name("norb"),
        "slipway-hello:v1",
        3,
        "    deployment:\n      rollback: false\n",
    ));
    s.cli(&["deploy"]).ok();
    let before: Vec<String> = s.containers().into_iter().map(|c| c.task).collect();
    let out = s.cli(&[
        "deploy",
        "--image",
        "web=slipway-hello:exit",
        "--timeout",
        "120s",
    ]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("FAILED"), "{out:?}");
    assert!(!out.stdout.contains("ROLLED_BACK"), "{out:?}");
    wait_for(Duration::from_secs(30), "only the old tasks left", || {
        let now: Vec<String> = s
            .containers()
            .into_iter()
            .filter(|c| c.running)
            .map(|c| c.task)
            .collect();
        let mut a = now.clone();
        let mut b = before.clone();
        a.sort();
        b.sort();
        (a == b).then_some(())
    });
    assert_eq!(versions(&s), vec!["v1"; 3]);
    assert_eq!(healthy_tasks(&s).len(), 3);
}

#[test]
fn container_health_check_command_is_used() {
    if !docker() {
        return;
    }
    let s = Server::start();
    // The Dockerfile's HEALTHCHECK, with no HTTP check: health comes from the engine.
    s.manifest(&format!(
        "app: {}\nservices:\n  web:\n    type: backend\n    image:\n      location: slipway-hello:healthcheck\n      port: 8080\n    count: 2\n  worker:\n    type: worker\n    image:\n      location: slipway-hello:v1\n    healthcheck:\n      command: [\"/hello\", \"check\"]\n      interval: 1s\n    count: 1\n",
        app_name("hc")
    ));
    let out = s.cli(&["deploy"]).ok();
    assert_eq!(out.stdout.matches("SUCCEEDED").count(), 2, "{out:?}");
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "--filter",
            &format!("label=slipway.cluster={}", s.cluster),
            "--format",
            "{{.Status}}",
        ])
        .output()
        .unwrap();
    let statuses = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(statuses.matches("(healthy)").count(), 3, "{statuses}");
}
