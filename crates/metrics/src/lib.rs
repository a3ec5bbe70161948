//! Slipway's control-plane metrics: the families, what counts in each (one rule each, here),
//! and their exposition in the Prometheus text format (served on the API's `GET /metrics`).
//!
//! Owns the metric families and the rules of counting; calls nothing. The shells report
//! facts to it: the store's commit reports each deployment it ended (through a hook the
//! server installs, see `slipway_store::Store::on_deployment_ended`), the controller each
//! replacement it decided and each reconcile pass, the registry its blobs and manifests, and
//! the server's one request-counting layer each answered request with the operation its face
//! named ([`Operation`]).
//!
//! Counters are per process, as Prometheus expects (several servers sharing one PostgreSQL
//! store each count what they did). One deployment is counted once, by the process whose
//! commit moved it from `IN_PROGRESS` to its outcome: that transition is a compare-and-swap
//! in the store, so it happens once in the whole cluster, whichever of the controller's
//! `Finish` step or a deploy write (a superseded deployment → `FAILED`, the deployment a
//! rollback replaces → `ROLLED_BACK`) made it.
//!
//! The crate: `prometheus` (TiKV's, the most used Rust client) without its protobuf feature,
//! rather than the Prometheus project's `prometheus-client`: the latter writes only the
//! OpenMetrics text format, whose counter families are named without `_total` and which
//! `promtool check metrics` (the Prometheus text-format linter the tests use) rejects,
//! while `prometheus` writes the Prometheus text format 0.0.4 that every scraper reads, and
//! every crate it needs was already in Slipway's dependency tree (no new build time but its
//! own ~10 kLOC). Counting is lock-free: counters, gauges and histogram observations are
//! atomics; a labelled child is found under a shared read lock (readers never wait for each
//! other; a write happens only the first time a label set appears).
//!
//! Label values: deployment outcomes and task states are the words the API and the CLI show
//! (`SUCCEEDED`, `FAILED`, `ROLLED_BACK`; `RUNNING`, `STOPPED`, ...); replacement reasons,
//! faces and registry directions are lower-case words.

use std::borrow::Cow;
use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use slipway_core::model::{Deployment, RolloutState, TaskStatus};
use slipway_core::planner::Replacement;

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// OpenTelemetry's default boundaries of HTTP request durations (seconds): requests and
/// reconcile passes (a pass is a few milliseconds to seconds, like a request).
pub const HTTP_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Boundaries of deployment durations (seconds). A deployment lasts from about a second (a
/// task without health check) through tens of seconds (a health check's interval times its
/// healthy threshold, then the old tasks' deregistration delay, 30 s by default) to minutes
/// (progressive rollouts, bakes) and ends by its timeout (10 minutes past the plan by
/// default, up to hours if set): 1 s to an hour, about ×2 apart.
pub const DEPLOYMENT_BUCKETS: [f64; 13] = [
    1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0,
];

/// Every outcome of a deployment, as labelled.
pub const OUTCOMES: [RolloutState; 3] = [
    RolloutState::Succeeded,
    RolloutState::Failed,
    RolloutState::RolledBack,
];

/// Every task state, as labelled.
pub const TASK_STATES: [TaskStatus; 8] = [
    TaskStatus::Provisioning,
    TaskStatus::Pending,
    TaskStatus::Activating,
    TaskStatus::Running,
    TaskStatus::Deactivating,
    TaskStatus::Stopping,
    TaskStatus::Deprovisioning,
    TaskStatus::Stopped,
];

/// The face a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Face {
    /// The native API (`/api/v1/...`, `/metrics`, `/healthz`, `/readyz`).
    Api,
    /// The AWS-compatible API (ECS, ECR, ELBv2, STS).
    Aws,
    /// The distribution API (`/v2/...`).
    Registry,
    /// The web console (`/ui/...`).
    Console,
}

impl Face {
    pub fn as_str(self) -> &'static str {
        match self {
            Face::Api => "api",
            Face::Aws => "aws",
            Face::Registry => "registry",
            Face::Console => "console",
        }
    }

    /// The face a request to `path` with `method` comes through (on the API listener).
    pub fn of(method: &str, path: &str) -> Face {
        if path.starts_with("/v2") {
            Face::Registry
        } else if path == "/" && method == "POST" {
            Face::Aws
        } else if path == "/ui" || path.starts_with("/ui/") {
            Face::Console
        } else {
            Face::Api
        }
    }
}

/// What a request was, as its face names it: the route's template (`GET
/// /services/{app}/{env}/{name}`) or the AWS action (`ecs:CreateService`) or the registry's
/// route kind (`PUT manifest`). Never a raw path or an id: the label set stays bounded.
/// Faces put it in the response's extensions; the server's counting layer reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub face: Face,
    pub op: Cow<'static, str>,
}

impl Operation {
    pub fn new(face: Face, op: impl Into<Cow<'static, str>>) -> Self {
        Operation {
            face,
            op: op.into(),
        }
    }
}

/// A request method as a label value: the ones Slipway's routes take, and `OTHER` for any
/// other (so a caller cannot grow the label set).
pub fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        _ => "OTHER",
    }
}

/// The control plane's metric families.
pub struct Metrics {
    registry: Registry,
    deployments: IntCounterVec,
    deployment_duration: HistogramVec,
    tasks: IntGaugeVec,
    replacements: IntCounterVec,
    reconcile: Histogram,
    api_requests: IntCounterVec,
    api_duration: HistogramVec,
    blob_bytes: IntCounterVec,
    manifests_pushed: IntCounter,
    storage: IntGauge,
}

static GLOBAL: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// This process' metrics (what `GET /metrics` serves).
pub fn global() -> &'static Metrics {
    &GLOBAL
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid counter");
    r.register(Box::new(c.clone())).expect("registered once");
    c
}

fn histogram_vec(
    r: &Registry,
    name: &str,
    help: &str,
    buckets: &[f64],
    labels: &[&str],
) -> HistogramVec {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
    .expect("a valid histogram");
    r.register(Box::new(h.clone())).expect("registered once");
    h
}

impl Metrics {
    /// A fresh set of families, every known label set at zero (a series exists before its
    /// first event, so `increase()` sees the first one).
    pub fn new() -> Self {
        let r = Registry::new();
        let deployments = counter_vec(
            &r,
            "slipway_deployments_total",
            "Deployments that ended, by outcome (SUCCEEDED, FAILED, ROLLED_BACK), counted by the server whose write ended them.",
            &["outcome"],
        );
        let deployment_duration = histogram_vec(
            &r,
            "slipway_deployment_duration_seconds",
            "Time from a deployment's start to its outcome, by outcome.",
            &DEPLOYMENT_BUCKETS,
            &["outcome"],
        );
        for o in OUTCOMES {
            deployments.with_label_values(&[o.as_str()]);
            deployment_duration.with_label_values(&[o.as_str()]);
        }
        let tasks = IntGaugeVec::new(
            Opts::new(
                "slipway_tasks",
                "Task records by last status, as the store has them (the stopped ones the store still keeps included).",
            ),
            &["state"],
        )
        .expect("a valid gauge");
        r.register(Box::new(tasks.clone()))
            .expect("registered once");
        for s in TASK_STATES {
            tasks.with_label_values(&[s.as_str()]);
        }
        let replacements = counter_vec(
            &r,
            "slipway_task_replacements_total",
            "Tasks of services the controller stopped, or recorded stopped, to replace them, by reason.",
            &["reason"],
        );
        for why in Replacement::ALL {
            replacements.with_label_values(&[why.as_str()]);
        }
        let reconcile = Histogram::with_opts(
            HistogramOpts::new(
                "slipway_reconcile_duration_seconds",
                "Time of one reconcile pass of the leader's controller (observe, plan and act for the services woken, or all of them).",
            )
            .buckets(HTTP_BUCKETS.to_vec()),
        )
        .expect("a valid histogram");
        r.register(Box::new(reconcile.clone()))
            .expect("registered once");
        let api_requests = counter_vec(
            &r,
            "slipway_api_requests_total",
            "Requests answered on the API listener, by face (api, aws, registry), operation (route template or AWS action) and HTTP status code.",
            &["face", "operation", "code"],
        );
        let api_duration = histogram_vec(
            &r,
            "slipway_api_request_duration_seconds",
            "Time from a request's arrival to its response's head, by face.",
            &HTTP_BUCKETS,
            &["face"],
        );
        let blob_bytes = counter_vec(
            &r,
            "slipway_registry_blob_bytes_total",
            "Bytes of blobs pushed (uploads completed) and pulled (blob bodies served, counted when the response starts), by direction.",
            &["direction"],
        );
        for d in ["push", "pull"] {
            blob_bytes.with_label_values(&[d]);
        }
        let manifests_pushed = IntCounter::new(
            "slipway_registry_manifests_pushed_total",
            "Manifests (and indexes) pushed to the registry.",
        )
        .expect("a valid counter");
        r.register(Box::new(manifests_pushed.clone()))
            .expect("registered once");
        let storage = IntGauge::new(
            "slipway_registry_storage_bytes",
            "Bytes of the blobs the registry stores (their sizes as recorded; the blobs awaiting garbage collection included).",
        )
        .expect("a valid gauge");
        r.register(Box::new(storage.clone()))
            .expect("registered once");
        Metrics {
            registry: r,
            deployments,
            deployment_duration,
            tasks,
            replacements,
            reconcile,
            api_requests,
            api_duration,
            blob_bytes,
            manifests_pushed,
            storage,
        }
    }

    /// A deployment moved from `IN_PROGRESS` to its outcome by a commit of this process
    /// (the store's hook calls this once per such transition; anything else is ignored).
    pub fn deployment_ended(&self, d: &Deployment) {
        if !d.state.is_terminal() {
            return;
        }
        let outcome = d.state.as_str();
        self.deployments.with_label_values(&[outcome]).inc();
        let end = d.timeline.finished_at.unwrap_or(d.updated_at);
        let secs = (end - d.created_at).max(0) as f64 / 1000.0;
        self.deployment_duration
            .with_label_values(&[outcome])
            .observe(secs);
    }

    /// A task the controller stopped (or recorded stopped) to replace it.
    pub fn task_replaced(&self, why: Replacement) {
        self.replacements.with_label_values(&[why.as_str()]).inc();
    }

    /// One reconcile pass took `took`.
    pub fn reconcile_pass(&self, took: Duration) {
        self.reconcile.observe(took.as_secs_f64());
    }

    /// A request answered with `code` after `took`.
    pub fn api_request(&self, op: &Operation, code: u16, took: Duration) {
        let face = op.face.as_str();
        let code = code.to_string();
        self.api_requests
            .with_label_values(&[face, op.op.as_ref(), code.as_str()])
            .inc();
        self.api_duration
            .with_label_values(&[face])
            .observe(took.as_secs_f64());
    }

    /// The task records by last status, as the store counted them now (states not listed
    /// are set to zero).
    pub fn set_tasks(&self, counts: &[(TaskStatus, u64)]) {
        for s in TASK_STATES {
            let n = counts
                .iter()
                .filter(|(x, _)| *x == s)
                .map(|(_, n)| *n)
                .sum::<u64>();
            self.tasks
                .with_label_values(&[s.as_str()])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// A blob upload of `bytes` completed.
    pub fn blob_pushed(&self, bytes: u64) {
        self.blob_bytes.with_label_values(&["push"]).inc_by(bytes);
    }

    /// A blob body of `bytes` is being served.
    pub fn blob_pulled(&self, bytes: u64) {
        self.blob_bytes.with_label_values(&["pull"]).inc_by(bytes);
    }

    pub fn manifest_pushed(&self) {
        self.manifests_pushed.inc();
    }

    /// The registry stores blobs of `bytes` in all now.
    pub fn set_registry_storage(&self, bytes: u64) {
        self.storage.set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// The exposition: every family in the Prometheus text format ([`CONTENT_TYPE`]),
    /// sorted by name, then by labels.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Writing into a Vec fails only on a metric the registry would not have taken.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            return format!("# error: {e}\n");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_core::model::{ServiceKey, Timeline};

    fn dep(state: RolloutState, created: i64, finished: i64) -> Deployment {
        Deployment {
            id: "d-1".into(),
            service: ServiceKey::new("a", "e", "s"),
            revision: 1,
            desired_count: 1,
            state,
            reason: None,
            failed_tasks: 0,
            rollback_of: None,
            rolled_back_by: None,
            created_at: created,
            updated_at: finished,
            timeline: Timeline {
                finished_at: Some(finished),
                ..Timeline::default()
            },
            rollout: None,
            version: 1,
        }
    }

    #[test]
    fn a_deployment_counts_under_its_outcome_with_its_duration_and_in_progress_not_at_all() {
        let m = Metrics::new();
        m.deployment_ended(&dep(RolloutState::InProgress, 0, 5_000));
        m.deployment_ended(&dep(RolloutState::RolledBack, 1_000, 13_500));
        let out = m.render();
        assert!(out.contains("slipway_deployments_total{outcome=\"ROLLED_BACK\"} 1\n"));
        assert!(out.contains("slipway_deployments_total{outcome=\"SUCCEEDED\"} 0\n"));
        assert!(out.contains(
            "slipway_deployment_duration_seconds_bucket{outcome=\"ROLLED_BACK\",le=\"20\"} 1\n"
        ));
        assert!(out.contains(
            "slipway_deployment_duration_seconds_bucket{outcome=\"ROLLED_BACK\",le=\"10\"} 0\n"
        ));
        assert!(
            out.contains("slipway_deployment_duration_seconds_sum{outcome=\"ROLLED_BACK\"} 12.5\n")
        );
        assert!(!out.contains("IN_PROGRESS"));
    }

    #[test]
    fn task_states_not_counted_are_zero() {
        let m = Metrics::new();
        m.set_tasks(&[(TaskStatus::Running, 3)]);
        m.set_tasks(&[(TaskStatus::Stopped, 2)]);
        let out = m.render();
        assert!(out.contains("slipway_tasks{state=\"RUNNING\"} 0\n"));
        assert!(out.contains("slipway_tasks{state=\"STOPPED\"} 2\n"));
    }
}
