//! The exposition pinned: names, HELP and TYPE lines, labels and bucket bounds from a fixed
//! state. A change to any of them must change `tests/golden/metrics.txt` with it (dashboards
//! and alerts depend on them); to rewrite the file after a deliberate change:
//! `UPDATE_GOLDEN=1 cargo test -p slipway-metrics --test golden`, then review its diff.
//! The text is also linted by `promtool check metrics` (Debian's `prometheus` package;
//! scripts/test.sh installs it), which checks the Prometheus naming conventions.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use slipway_core::model::{Deployment, RolloutState, ServiceKey, TaskStatus, Timeline};
use slipway_core::planner::Replacement;
use slipway_metrics::{Face, Metrics, Operation};

fn ended(id: &str, state: RolloutState, secs: i64) -> Deployment {
    Deployment {
        id: id.into(),
        service: ServiceKey::new("shop", "prod", "web"),
        revision: 2,
        desired_count: 3,
        state,
        reason: None,
        failed_tasks: 0,
        rollback_of: None,
        rolled_back_by: None,
        created_at: 1_000_000,
        updated_at: 1_000_000 + secs * 1000,
        timeline: Timeline {
            finished_at: Some(1_000_000 + secs * 1000),
            ..Timeline::default()
        },
        rollout: None,
        version: 3,
    }
}

/// Every family touched at least once, with values that land in distinct buckets.
fn fixed_state() -> Metrics {
    let m = Metrics::new();
    m.deployment_ended(&ended("d-1", RolloutState::Succeeded, 12));
    m.deployment_ended(&ended("d-2", RolloutState::Succeeded, 45));
    m.deployment_ended(&ended("d-3", RolloutState::Failed, 90));
    m.deployment_ended(&ended("d-4", RolloutState::RolledBack, 400));
    m.set_tasks(&[(TaskStatus::Running, 3), (TaskStatus::Stopped, 2)]);
    m.task_replaced(Replacement::Unhealthy);
    m.task_replaced(Replacement::Exited);
    m.task_replaced(Replacement::Exited);
    m.reconcile_pass(Duration::from_millis(3));
    m.reconcile_pass(Duration::from_millis(200));
    let api = |op: &'static str| Operation::new(Face::Api, op);
    m.api_request(&api("GET /metrics"), 401, Duration::from_millis(1));
    m.api_request(&api("GET /metrics"), 200, Duration::from_millis(20));
    m.api_request(&api("POST /api/v1/deploy"), 200, Duration::from_millis(60));
    m.api_request(
        &Operation::new(Face::Aws, "ecs:CreateService"),
        200,
        Duration::from_millis(30),
    );
    m.api_request(
        &Operation::new(Face::Registry, "PUT /v2/{name}/manifests/{reference}"),
        201,
        Duration::from_millis(8),
    );
    m.blob_pushed(1024);
    m.blob_pulled(2048);
    m.manifest_pushed();
    m.set_registry_storage(4096);
    m
}

fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/metrics.txt")
}

#[test]
fn the_exposition_matches_the_golden_file() {
    let text = fixed_state().render();
    let path = golden_path();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; write it with UPDATE_GOLDEN=1 cargo test -p slipway-metrics --test golden",
            path.display()
        )
    });
    if text != want {
        let diff: Vec<String> = want
            .lines()
            .zip(text.lines())
            .filter(|(a, b)| a != b)
            .take(10)
            .map(|(a, b)| format!("- {a}\n+ {b}"))
            .collect();
        panic!(
            "the exposition changed ({} lines now, {} pinned); first differences:\n{}\n\
             if deliberate: UPDATE_GOLDEN=1 cargo test -p slipway-metrics --test golden",
            text.lines().count(),
            want.lines().count(),
            diff.join("\n")
        );
    }
}

#[test]
fn the_exposition_passes_promtool() {
    let text = fixed_state().render();
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("promtool: {e}; install Debian's `prometheus` package (scripts/test.sh does)")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
