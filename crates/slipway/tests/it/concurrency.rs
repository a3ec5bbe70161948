//! Many writers through the real server: scales racing deploys, from the CLI, the native API
//! and the `aws` CLI at once. No write may undo another: a deploy is never reverted by a
//! scale that read the service before it, the count is the last accepted scale's, and what
//! runs and what the ingress routes to is the final revision.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::aws::{Aws, aws_cli};
use crate::support::*;

/// A web service whose manifest names no count: a deploy keeps the count a scale set.
/// A server without the per-identity rate limit: these tests race writers as fast as they go
/// from one identity, and what they check is that no write undoes another; at the default
/// limit (100/s, bursts of 200) a round's flood gets `429`s, which `it::access` tests.
fn server() -> Server {
    Server::start_with(&["--rate-limit", "0"])
}

fn manifest(app: &str, image: &str) -> String {
    format!(
        "app: {app}\nservices:\n  web:\n    type: Load Balanced Web Service\n    image:\n      location: {image}\n      port: 8080\n    http:\n      path: /\n      healthcheck: {{path: /healthz, interval: 1s, healthy_threshold: 1}}\n      deregistration_delay: 1s\n    memory: 32\n    stop_timeout: 2s\n"
    )
}

fn detail(s: &Server, app: &str) -> Value {
    s.api_get(&format!("/services/{app}/default/web"))
}

/// `slipway scale` read the whole service and wrote it back: a deploy that committed in
/// between was undone (the service's revision went back). Scales now change only the
/// count, by compare-and-swap. This test fails on builds before versioned records (run it
/// with `SLIPWAY_TEST_BIN=<old slipway>`).
#[test]
fn a_scale_racing_a_deploy_cannot_revert_it() {
    if !docker() {
        return;
    }
    let s = server();
    let app = app_name("race");
    s.manifest(&manifest(&app, "slipway-hello:v1"));
    s.cli(&["deploy"]).ok();
    let path = format!("/services/{app}/default/web/scale");
    for round in 0..12 {
        let image = if round % 2 == 0 { "v2" } else { "v1" };
        let stop = AtomicBool::new(false);
        let (out, scales) = std::thread::scope(|scope| {
            let scalers: Vec<_> = (0..6)
                .map(|i| {
                    let (s, stop, path) = (&s, &stop, &path);
                    scope.spawn(move || {
                        let mut n = 0;
                        while !stop.load(Ordering::SeqCst) {
                            let body = json!({ "count": 1 + (i + n) % 2 });
                            let (st, resp) = api_call(s, "POST", path, Some(&body), &[]);
                            assert_eq!(st, 200, "scale: {resp}");
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            let out = s.cli(&[
                "deploy",
                "--no-wait",
                "--image",
                &format!("web=slipway-hello:{image}"),
            ]);
            // Keep scaling a moment after the deploy was accepted.
            std::thread::sleep(Duration::from_millis(100));
            stop.store(true, Ordering::SeqCst);
            let scales: u32 = scalers.into_iter().map(|h| h.join().unwrap()).sum();
            (out, scales)
        });
        out.ok();
        let d = detail(&s, &app);
        let current = d["summary"]["revision"].as_u64().unwrap();
        let newest = &d["deployments"][0];
        assert_eq!(
            current,
            newest["revision"].as_u64().unwrap(),
            "round {round}: after {scales} scales raced the deploy, the service runs revision {current} but its newest deployment {} is revision {}: a scale undid the deploy",
            newest["id"],
            newest["revision"]
        );
    }
}

/// 200 concurrent `slipway scale` calls interleaved with 20 deploys of alternating images,
/// half through `slipway deploy`, half through `aws ecs update-service`. Afterwards every
/// deploy's revision is the current one or was superseded by a later deploy, the count is
/// the last accepted scale's, and the tasks that run and the routes of the ingress are the
/// final revision's.
#[test]
fn two_hundred_scales_and_twenty_deploys_from_every_face_end_consistent() {
    if !docker() {
        return;
    }
    let Some(cli) = aws_cli() else { return };
    let s = server();
    let aws = Aws::new(&s, &cli, &[]);
    let app = app_name("storm");
    s.manifest(&manifest(&app, "slipway-hello:v1"));
    s.cli(&["deploy"]).ok();
    s.manifest(&manifest(&app, "slipway-hello:v2"));
    s.cli(&["deploy"]).ok();
    let family = format!("{app}-default-web");

    let scale_results = std::sync::Mutex::new(Vec::<(u64, u32)>::new());
    let deploy_ids = std::sync::Mutex::new(Vec::<String>::new());
    std::thread::scope(|scope| {
        // 200 scales from 10 threads, counts 1 to 3.
        for t in 0..10u32 {
            let s = &s;
            let scale_results = &scale_results;
            scope.spawn(move || {
                for i in 0..20u32 {
                    let count = 1 + (t + i) % 3;
                    let out = s
                        .cli(&["--json", "scale", "web", &count.to_string(), "--no-wait"])
                        .ok()
                        .json();
                    let version = out["version"].as_u64().unwrap();
                    scale_results.lock().unwrap().push((version, count));
                }
            });
        }
        // 20 deploys, alternating images, spread over the scales: even ones through the
        // CLI, odd ones through the ECS API (the revisions the CLI registered).
        let s = &s;
        let aws = &aws;
        let deploy_ids = &deploy_ids;
        let family = &family;
        let app = &app;
        scope.spawn(move || {
            for i in 0..20 {
                let v = if i % 2 == 0 { 1 } else { 2 };
                let id = if i % 4 < 2 {
                    let out = s
                        .cli(&[
                            "--json",
                            "deploy",
                            "--no-wait",
                            "--image",
                            &format!("web=slipway-hello:v{v}"),
                        ])
                        .ok()
                        .json();
                    out["results"][0]["deployment_id"]
                        .as_str()
                        .map(str::to_owned)
                } else {
                    let out = aws.json(&[
                        "ecs",
                        "update-service",
                        "--cluster",
                        app,
                        "--service",
                        "web",
                        "--task-definition",
                        &format!("{family}:{v}"),
                    ]);
                    out["service"]["deployments"][0]["id"]
                        .as_str()
                        .map(|id| id.trim_start_matches("ecs-svc/").to_owned())
                };
                // A deploy of what already runs starts nothing; every other one is recorded.
                if let Some(id) = id {
                    deploy_ids.lock().unwrap().push(id);
                }
                std::thread::sleep(Duration::from_millis(150));
            }
        });
    });
    let scales = scale_results.into_inner().unwrap();
    let deploys = deploy_ids.into_inner().unwrap();
    assert_eq!(scales.len(), 200);
    assert!(deploys.len() >= 10, "deploys started: {deploys:?}");

    let d = detail(&s, &app);
    let current = d["summary"]["revision"].as_u64().unwrap();
    // The count is the last accepted scale's: the one that produced the highest version.
    let (_, last_count) = scales.iter().max_by_key(|(v, _)| *v).unwrap();
    assert_eq!(
        d["summary"]["desired"].as_u64().unwrap(),
        u64::from(*last_count),
        "the desired count is the last accepted scale's"
    );
    // Every deploy's revision is the current one, or it was superseded by a later deploy.
    let all = s.api_get(&format!("/services/{app}/default/web"))["deployments"].clone();
    assert_eq!(all[0]["revision"].as_u64().unwrap(), current);
    let mut by_id: BTreeMap<String, Value> = BTreeMap::new();
    for id in &deploys {
        let dep = s.api_get(&format!("/deployments/{id}"));
        by_id.insert(id.clone(), dep);
    }
    let newest_id = all[0]["id"].as_str().unwrap();
    for (id, dep) in &by_id {
        if id == newest_id {
            // The newest deployment is the service's revision (checked above).
            continue;
        }
        // Every other one was replaced by a later deploy: superseded while it rolled out,
        // or finished before the later one started. None failed for another reason.
        let replaced_by = match dep["state"].as_str().unwrap() {
            "SUCCEEDED" => None,
            "FAILED" => {
                let reason = dep["reason"].as_str().unwrap_or("");
                Some(
                    reason
                        .strip_prefix("superseded by deployment ")
                        .unwrap_or_else(|| {
                            panic!("deployment {id} failed for another reason: {reason}")
                        })
                        .to_owned(),
                )
            }
            other => panic!("deployment {id} is {other} although a later one exists: {dep}"),
        };
        let later = replaced_by.unwrap_or_else(|| newest_id.to_owned());
        let later_dep = s.api_get(&format!("/deployments/{later}"));
        assert!(
            later_dep["created_at"].as_i64() > dep["created_at"].as_i64(),
            "deployment {id} was replaced by {later}, which is not later"
        );
    }

    // The last deployment finishes, and then exactly the final revision runs and is routed.
    let desired = d["summary"]["desired"].as_u64().unwrap() as usize;
    let last_id = all[0]["id"].as_str().unwrap().to_owned();
    wait_for(
        Duration::from_secs(240),
        "the last deployment to succeed",
        || {
            let dep = s.api_get(&format!("/deployments/{last_id}"));
            assert_ne!(dep["state"], "FAILED", "{dep}");
            (dep["state"] == "SUCCEEDED").then_some(())
        },
    );
    let running = wait_for(
        Duration::from_secs(60),
        "only the final revision's tasks to run",
        || {
            let cs: Vec<Container> = s.containers().into_iter().filter(|c| c.running).collect();
            (cs.len() == desired && cs.iter().all(|c| c.revision == current.to_string()))
                .then_some(cs)
        },
    );
    let routes: Value = serde_json::from_str(
        &std::fs::read_to_string(s.data_dir().join("ingress/ingress-routes.json")).unwrap(),
    )
    .unwrap();
    let svc = routes["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == format!("{app}/default/web"))
        .expect("the service is routed");
    let mut routed: Vec<String> = svc["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["draining"] != true)
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    routed.sort();
    let mut tasks: Vec<String> = running.iter().map(|c| c.task.clone()).collect();
    tasks.sort();
    assert_eq!(
        routed, tasks,
        "the ingress routes to the final revision's tasks"
    );
    // ...and what answers through it is the final revision's image.
    let image = d["container"]["image"].as_str().unwrap().to_owned();
    let version = image.rsplit(':').next().unwrap().to_owned();
    for _ in 0..20 {
        let (status, body) =
            probe_host(&s.ingress(), "localhost", "/").expect("the ingress answers");
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["version"], version.as_str(), "answered by {body}");
    }
}
