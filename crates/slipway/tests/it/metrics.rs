//! The control plane's Prometheus metrics on a real server: `GET /metrics` needs an
//! identity (any role), its text passes `promtool check metrics` (Debian's `prometheus`
//! package: the Prometheus text-format parser and its naming linter) and is read with the
//! official Python client's parser (`prometheus_client`, Debian's
//! `python3-prometheus-client`), and its counters move by exactly what happened: deploys
//! and their outcomes, the tasks the store has, the requests made.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

/// `GET PATH` with `Authorization: Bearer TOKEN` (as a Prometheus scrape job sends it):
/// `(status, body)`.
fn get(s: &Server, path: &str, token: Option<&str>) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-w", "\n%{http_code}"]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    let out = cmd.arg(format!("{}{path}", s.url)).output().unwrap();
    assert!(out.status.success(), "curl {path}: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_owned())
}

/// Samples by `name{label="value",...}` (labels sorted), read by `prometheus_client`'s
/// text-format parser after `promtool check metrics` passed the text.
type Samples = BTreeMap<String, f64>;

/// Debian's interpreter, where Debian's `python3-prometheus-client` is.
const PYTHON: &str = "/usr/bin/python3";

const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        out.append([s.name, s.labels, s.value])
print(json.dumps(out))
"#;

fn run(cmd: &mut Command, input: &str, what: &str) -> String {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e} (scripts/test.sh installs it)"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what} failed: {}{}\n--- input:\n{input}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn parse(text: &str) -> Samples {
    run(
        Command::new("promtool").args(["check", "metrics"]),
        text,
        "promtool check metrics (Debian's prometheus package)",
    );
    let json = run(
        Command::new(PYTHON).args(["-c", PARSE]),
        text,
        "python3 with prometheus_client (Debian's python3-prometheus-client)",
    );
    let rows: Vec<(String, BTreeMap<String, String>, f64)> = serde_json::from_str(&json).unwrap();
    rows.into_iter()
        .map(|(name, labels, v)| {
            let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            (format!("{name}{{{}}}", l.join(",")), v)
        })
        .collect()
}

fn scrape(s: &Server, token: &str) -> Samples {
    let (code, body) = get(s, "/metrics", Some(token));
    assert_eq!(code, 200, "{body}");
    parse(&body)
}

fn val(m: &Samples, key: &str) -> f64 {
    *m.get(key)
        .unwrap_or_else(|| panic!("no sample {key} in {:#?}", m.keys().collect::<Vec<_>>()))
}

/// How much `key` grew from `a` to `b` (a series absent before counts from 0).
fn delta(a: &Samples, b: &Samples, key: &str) -> f64 {
    val(b, key) - a.get(key).copied().unwrap_or(0.0)
}

fn outcome(o: &str) -> String {
    format!("slipway_deployments_total{{outcome=\"{o}\"}}")
}

fn requests(face: &str, op: &str, code: u16) -> String {
    format!("slipway_api_requests_total{{code=\"{code}\",face=\"{face}\",operation=\"{op}\"}}")
}

/// The service's record as the API has it (deployments, tasks).
fn service(s: &Server, app: &str) -> Value {
    s.api_get(&format!("/services/{app}/default/web"))
}

fn states<'a>(v: &'a Value, list: &str, field: &str) -> Vec<&'a str> {
    v[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x[field].as_str().unwrap())
        .collect()
}

#[test]
fn metrics_need_an_identity_parse_and_count_deploys_tasks_and_requests() {
    if !docker() {
        return;
    }
    let s = Server::start();
    // No credentials, or wrong ones: 401, as everywhere on the API.
    assert_eq!(get(&s, "/metrics", None).0, 401);
    assert_eq!(get(&s, "/metrics", Some("not-a-token")).0, 401);
    // Any identity reads them: a reader's token, as a Prometheus scrape job would hold.
    let v = s
        .cli(&[
            "--json",
            "token",
            "create",
            "prometheus",
            "--role",
            "reader",
        ])
        .ok()
        .json();
    let reader = v["token"].as_str().unwrap().to_owned();
    let before = scrape(&s, &reader);
    for o in ["SUCCEEDED", "FAILED", "ROLLED_BACK"] {
        assert_eq!(val(&before, &outcome(o)), 0.0, "a new server counted {o}");
    }

    // A good version, a second good version, then one that exits at once: rolled back by
    // the circuit breaker, and the rollback deployment itself succeeds.
    let app = app_name("metrics");
    s.manifest(&web_manifest(&app, "slipway-hello:v1", 2, ""));
    s.cli(&["deploy"]).ok();
    s.cli(&["deploy", "--image", "web=slipway-hello:v2"]).ok();
    let out = s.cli(&[
        "deploy",
        "--image",
        "web=slipway-hello:exit",
        "--timeout",
        "120s",
    ]);
    assert!(out.stdout.contains("ROLLED_BACK"), "{out:?}");
    // Settled: every deployment ended, two healthy tasks of v2 and nothing else alive.
    let settled = wait_for(Duration::from_secs(90), "the rollback to settle", || {
        let v = service(&s, &app);
        let deps = states(&v, "deployments", "state");
        let live: Vec<&Value> = v["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["last_status"] != "STOPPED")
            .collect();
        let done = !deps.contains(&"IN_PROGRESS")
            && live.len() == 2
            && live
                .iter()
                .all(|t| t["last_status"] == "RUNNING" && t["health"] == "HEALTHY");
        done.then_some(v)
    });
    let after = scrape(&s, &reader);

    // Each deployment counted once, under the outcome the store gives it.
    let deps = states(&settled, "deployments", "state");
    assert_eq!(deps.len(), 4, "v1, v2, exit, the rollback: {deps:?}");
    for o in ["SUCCEEDED", "FAILED", "ROLLED_BACK"] {
        let stored = deps.iter().filter(|d| **d == o).count() as f64;
        assert_eq!(
            delta(&before, &after, &outcome(o)),
            stored,
            "{o}: the counter moved by the deployments that ended so"
        );
    }
    assert_eq!(delta(&before, &after, &outcome("SUCCEEDED")), 3.0);
    assert_eq!(delta(&before, &after, &outcome("ROLLED_BACK")), 1.0);
    assert_eq!(delta(&before, &after, &outcome("FAILED")), 0.0);
    // The duration histogram saw the same deployments, in the bucket bounds pinned.
    for (o, n) in [("SUCCEEDED", 3.0), ("ROLLED_BACK", 1.0)] {
        let count = format!("slipway_deployment_duration_seconds_count{{outcome=\"{o}\"}}");
        assert_eq!(delta(&before, &after, &count), n, "{o}");
        let inf =
            format!("slipway_deployment_duration_seconds_bucket{{le=\"+Inf\",outcome=\"{o}\"}}");
        assert_eq!(val(&after, &inf), n, "{o}");
    }

    // Tasks by state: what the store has.
    let tasks = states(&settled, "tasks", "last_status");
    for st in ["RUNNING", "STOPPED"] {
        let n = tasks.iter().filter(|t| **t == st).count() as f64;
        assert_eq!(
            val(&after, &format!("slipway_tasks{{state=\"{st}\"}}")),
            n,
            "{st}: {tasks:?}"
        );
    }
    assert_eq!(val(&after, "slipway_tasks{state=\"RUNNING\"}"), 2.0);
    // The exit version's tasks were replaced because they exited (each once).
    let exited = settled["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["stop_code"] == "EssentialContainerExited")
        .count() as f64;
    assert!(exited >= 1.0, "{settled:#}");
    assert_eq!(
        delta(
            &before,
            &after,
            "slipway_task_replacements_total{reason=\"exited\"}"
        ),
        exited
    );
    assert!(val(&after, "slipway_reconcile_duration_seconds_count{}") >= 1.0);

    // Requests: exactly the calls made between two scrapes, by route template (the AWS
    // action) and code.
    let cli = crate::aws::aws_cli();
    let aws = cli.as_ref().map(|c| crate::aws::Aws::new(&s, c, &[]));
    let a = scrape(&s, &reader);
    if let Some(aws) = &aws {
        aws.run(&["ecs", "list-clusters"]).ok();
        aws.run(&["sts", "get-caller-identity"]).ok();
    }
    for _ in 0..3 {
        let (code, body) = get(&s, "/api/v1/services", Some(&reader));
        assert_eq!(code, 200, "{body}");
    }
    let task_path = format!("/api/v1/services/{app}/default/web");
    assert_eq!(get(&s, &task_path, Some(&reader)).0, 200);
    assert_eq!(get(&s, "/api/v1/services", None).0, 401);
    assert_eq!(get(&s, "/api/v1/no-such-route", Some(&reader)).0, 404);
    assert_eq!(get(&s, "/v2/", None).0, 401);
    let b = scrape(&s, &reader);
    let mut expected = vec![
        (requests("api", "GET /api/v1/services", 200), 3.0),
        (requests("api", "GET /api/v1/services", 401), 1.0),
        (
            requests("api", "GET /api/v1/services/{app}/{env}/{name}", 200),
            1.0,
        ),
        (requests("api", "(unmatched)", 404), 1.0),
        (requests("registry", "GET /v2/", 401), 1.0),
        // The scrape `a` itself (a scrape's answer counts once it is sent).
        (requests("api", "GET /metrics", 200), 1.0),
    ];
    if aws.is_some() {
        expected.push((requests("aws", "ecs:ListClusters", 200), 1.0));
        expected.push((requests("aws", "sts:GetCallerIdentity", 200), 1.0));
    }
    for (key, n) in &expected {
        assert_eq!(delta(&a, &b, key), *n, "{key}");
    }
    let total = |m: &Samples| {
        m.iter()
            .filter(|(k, _)| k.starts_with("slipway_api_requests_total{"))
            .map(|(_, v)| *v)
            .sum::<f64>()
    };
    assert_eq!(
        total(&b) - total(&a),
        expected.iter().map(|(_, n)| n).sum::<f64>(),
        "no other request was counted"
    );
    // No raw path or id in any label.
    assert!(
        !b.keys().any(|k| k.contains(&app)),
        "an app name leaked into a label"
    );
}

fn skopeo(args: &[&str]) -> Out {
    let o = Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo (Debian's skopeo; scripts/test.sh installs it)");
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// skopeo pushes an image to the built-in registry and pulls it back: the blob bytes pushed
/// and pulled are the sizes of the image's blobs (config and layers), once each, the
/// storage gauge grew by as much, one manifest was pushed, and the distribution API's
/// requests are counted by route template.
#[test]
fn the_registry_counts_blob_bytes_manifests_and_storage() {
    if !docker() {
        return;
    }
    let s = Server::start_with(&["--no-ingress"]);
    let host = s.url.trim_start_matches("http://").to_owned();
    let creds = format!("admin:{}", s.registry_password());
    let image = format!("docker://{host}/metrics/hello:v2");
    let a = scrape(&s, &s.token);
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        &creds,
        "docker-daemon:slipway-hello:v2",
        &image,
    ])
    .ok();
    let raw = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--creds",
        &creds,
        "--raw",
        &image,
    ])
    .ok();
    let manifest: Value = serde_json::from_str(&raw.stdout).unwrap();
    let blobs: f64 = std::iter::once(&manifest["config"])
        .chain(manifest["layers"].as_array().unwrap())
        .map(|b| b["size"].as_f64().unwrap())
        .sum();
    assert!(blobs > 0.0, "{manifest}");
    let pulled_into = tempfile::tempdir().unwrap();
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        &creds,
        &image,
        &format!("dir:{}", pulled_into.path().display()),
    ])
    .ok();
    let b = scrape(&s, &s.token);
    let bytes = |d: &str| format!("slipway_registry_blob_bytes_total{{direction=\"{d}\"}}");
    assert_eq!(delta(&a, &b, &bytes("push")), blobs);
    assert_eq!(delta(&a, &b, &bytes("pull")), blobs);
    assert_eq!(delta(&a, &b, "slipway_registry_storage_bytes{}"), blobs);
    assert_eq!(
        delta(&a, &b, "slipway_registry_manifests_pushed_total{}"),
        1.0
    );
    assert_eq!(
        delta(
            &a,
            &b,
            &requests("registry", "PUT /v2/{name}/manifests/{reference}", 201)
        ),
        1.0
    );
    // Every blob (config and layers) was uploaded to a session and fetched once.
    let n = 1.0 + manifest["layers"].as_array().unwrap().len() as f64;
    assert_eq!(
        delta(
            &a,
            &b,
            &requests("registry", "PUT /v2/{name}/blobs/uploads/{uuid}", 201)
        ),
        n
    );
    assert_eq!(
        delta(
            &a,
            &b,
            &requests("registry", "GET /v2/{name}/blobs/{digest}", 200)
        ),
        n
    );
}

/// Two servers on one PostgreSQL database: a deployment superseded by a deploy written
/// through the standby is counted FAILED there, the ones the leader's controller finishes
/// are counted SUCCEEDED there, and across both servers each deployment is counted once.
#[test]
fn several_servers_count_each_deployment_once() {
    if !docker() {
        return;
    }
    let Some(db) = crate::standby::fresh_database() else {
        return;
    };
    let shared = crate::standby::Shared::new();
    let a = crate::standby::start(&shared, &db, None);
    let b = crate::standby::start(&shared, &db, Some(&a));
    let (leader, standby) = wait_for(Duration::from_secs(30), "a leader", || {
        let id = crate::standby::leader(&a)?;
        Some(if id == crate::standby::server_id(&a) {
            (&a, &b)
        } else {
            (&b, &a)
        })
    });
    let app = app_name("metricsha");
    standby.manifest(&web_manifest(&app, "slipway-hello:v1", 1, ""));
    standby.cli(&["deploy"]).ok();
    // v2 starts serving only after a minute: still in progress when v3 supersedes it
    // through the standby.
    standby.manifest(&web_manifest(
        &app,
        "slipway-hello:v2",
        1,
        "    variables:\n      HELLO_START_DELAY_MS: \"60000\"\n",
    ));
    standby.cli(&["deploy", "--no-wait"]).ok();
    standby.manifest(&web_manifest(&app, "slipway-hello:v3", 1, ""));
    standby.cli(&["deploy"]).ok();
    let settled = wait_for(Duration::from_secs(60), "every deployment ended", || {
        let v = service(standby, &app);
        (!states(&v, "deployments", "state").contains(&"IN_PROGRESS")).then_some(v)
    });
    let deps = states(&settled, "deployments", "state");
    assert_eq!(deps, ["SUCCEEDED", "FAILED", "SUCCEEDED"], "{settled:#}");
    let (l, s) = (
        scrape(leader, &leader.token),
        scrape(standby, &standby.token),
    );
    // The superseded deployment: by the server whose deploy wrote it.
    assert_eq!(val(&s, &outcome("FAILED")), 1.0);
    assert_eq!(val(&l, &outcome("FAILED")), 0.0);
    // The controller's outcomes: by the leader only.
    assert_eq!(val(&l, &outcome("SUCCEEDED")), 2.0);
    assert_eq!(val(&s, &outcome("SUCCEEDED")), 0.0);
    assert!(val(&l, "slipway_reconcile_duration_seconds_count{}") > 0.0);
    assert_eq!(val(&s, "slipway_reconcile_duration_seconds_count{}"), 0.0);
}
