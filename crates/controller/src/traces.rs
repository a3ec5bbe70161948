//! A trace per deployment, exported over OTLP when an endpoint is configured.
//!
//! The reconciler is level-triggered and a deployment spans many passes (and possibly a
//! failover to another server), so no span object lives for the whole deployment. Instead
//! the trace id is derived from the deployment id, the root span's id from it too, and each
//! span is emitted once its end is known, by whoever sees that end:
//! - `pull` (image pull and container create on the host) and `task start` (task recorded →
//!   container running): when the starter finishes (`Controller::start_task`);
//! - `health wait` (running → healthy): when the task turns healthy; a task that never did
//!   gets an ERROR one when its deployment ends;
//! - `register` (the routing push that first routes a task): after that push;
//! - `drain` and `stop` of a task the deployment replaces (or of its own tasks when it is
//!   the newest), when the stop finishes;
//! - the root `deployment` span (created → finished, ERROR when FAILED or ROLLED_BACK) when
//!   the deployment reaches its outcome, and on a rolled-back deployment's trace a
//!   `rollback` span (ERROR) covering the rollback deployment, when that one ends.
//!
//! `resolve` (image pinning) is the application layer's and is emitted there. Outcomes are
//! seen after each reconcile pass from the store; a server traces the outcomes it sees
//! after it started leading (a deployment finished under another leader was that one's).
//!
//! Standalone tasks (RunTask, job runs) belong to no deployment and are not traced.
//!
//! May call: the store (reads), slipway-otel.

use slipway_core::model::{Deployment, RolloutState, ServiceKey, Task};
use slipway_otel::{Exporter, Span, SpanId, deployment_trace};

use crate::{Controller, ControllerError, now_ms};

/// The span of a task's start (parent of its pull).
fn task_start_span(task_id: &str) -> SpanId {
    SpanId::from_name(&format!("{task_id}/start"))
}

fn base(span: Span, key: &ServiceKey, deployment_id: &str) -> Span {
    span.attr("slipway.service", key.to_string())
        .attr("slipway.deployment", deployment_id)
}

/// A child of a deployment's root span between two unix-millisecond times.
pub fn child(
    deployment_id: &str,
    key: &ServiceKey,
    name: &'static str,
    span_key: &str,
    start_ms: i64,
    end_ms: i64,
) -> Span {
    let (trace, root) = deployment_trace(deployment_id);
    base(
        Span::between_ms(
            trace,
            SpanId::from_name(&format!("{deployment_id}/{span_key}")),
            Some(root),
            name,
            start_ms,
            end_ms,
        ),
        key,
        deployment_id,
    )
}

impl Controller {
    pub(crate) fn traces(&self) -> &Exporter {
        static OFF: std::sync::OnceLock<Exporter> = std::sync::OnceLock::new();
        self.inner
            .traces
            .get()
            .unwrap_or_else(|| OFF.get_or_init(Exporter::disabled))
    }

    /// Sends deployment traces to `exporter` (call once, right after [`Controller::start`]).
    pub fn trace_to(&self, exporter: Exporter) {
        let _ = self.inner.traces.set(exporter);
    }

    /// The pull span (image pull and container create), a child of the task's start.
    pub(crate) fn trace_pull(
        &self,
        task: &Task,
        image: &str,
        start_ms: i64,
        result: Result<(), &str>,
    ) {
        if !self.traces().enabled() || task.standalone.is_some() {
            return;
        }
        let (trace, _) = deployment_trace(&task.deployment_id);
        let mut span = base(
            Span::between_ms(
                trace,
                SpanId::from_name(&format!("{}/pull", task.id)),
                Some(task_start_span(&task.id)),
                "pull",
                start_ms,
                now_ms(),
            ),
            &task.service,
            &task.deployment_id,
        )
        .attr("slipway.task", task.id.as_str())
        .attr("container.image.name", image);
        if let Err(e) = result {
            span = span.error(e);
        }
        self.traces().export(span);
    }

    /// The task start span: recorded → running (`Ok(started_at)`), or failed to start.
    pub(crate) fn trace_task_start(
        &self,
        task: &Task,
        host: &str,
        digest: Option<&str>,
        result: Result<i64, &str>,
    ) {
        if !self.traces().enabled() || task.standalone.is_some() {
            return;
        }
        let (trace, root) = deployment_trace(&task.deployment_id);
        let mut span = base(
            Span::between_ms(
                trace,
                task_start_span(&task.id),
                Some(root),
                "task start",
                task.created_at,
                *result.as_ref().unwrap_or(&now_ms()),
            ),
            &task.service,
            &task.deployment_id,
        )
        .attr("slipway.task", task.id.as_str())
        .attr("slipway.revision", task.revision)
        .attr("slipway.host", host);
        if let Some(d) = digest {
            span = span.attr("container.image.digest", d);
        }
        if let Err(e) = result {
            span = span.error(e);
        }
        self.traces().export(span);
    }

    /// The health wait span of a task that turned healthy.
    pub(crate) fn trace_healthy(&self, task: &Task, healthy_at: i64) {
        if !self.traces().enabled() || task.standalone.is_some() {
            return;
        }
        let start = task.started_at.unwrap_or(task.created_at);
        self.traces().export(
            child(
                &task.deployment_id,
                &task.service,
                "health wait",
                &format!("{}/health", task.id),
                start,
                healthy_at,
            )
            .attr("slipway.task", task.id.as_str())
            .attr("slipway.outcome", "HEALTHY"),
        );
    }

    /// Register spans for the targets a routing push made routable for the first time.
    pub(crate) async fn trace_registered(
        &self,
        before: Option<&slipway_ingress::RoutingConfig>,
        after: &slipway_ingress::RoutingConfig,
        pushed_from_ms: i64,
    ) {
        if !self.traces().enabled() {
            return;
        }
        let routed = |cfg: &slipway_ingress::RoutingConfig, id: &str| {
            cfg.services
                .iter()
                .flat_map(|s| s.targets.iter())
                .any(|t| t.id == id && !t.draining)
        };
        let now = now_ms();
        for svc in &after.services {
            for t in svc.targets.iter().filter(|t| !t.draining) {
                if before.is_some_and(|b| routed(b, &t.id)) {
                    continue;
                }
                let Some(dep) = &t.version else { continue };
                let Ok(Some(task)) = self.inner.store.get_task(&t.id).await else {
                    continue;
                };
                // Targets routed before this controller started (the first push after a
                // start or failover lists them all) were registered then.
                if task.healthy_at.is_none_or(|h| h < self.inner.started_at) {
                    continue;
                }
                self.traces().export(
                    child(
                        dep,
                        &task.service,
                        "register",
                        &format!("{}/register", t.id),
                        pushed_from_ms,
                        now,
                    )
                    .attr("slipway.task", t.id.as_str())
                    .attr("slipway.target", t.addr.to_string()),
                );
            }
        }
    }

    /// The deployment a task's drain and stop belong to: the service's newest deployment
    /// (the one replacing the task), or the task's own.
    pub(crate) async fn stop_trace_owner(&self, key: &ServiceKey, task: &Task) -> String {
        match self.inner.store.list_deployments(key, 1).await {
            Ok(d) if !d.is_empty() => d[0].id.clone(),
            _ => task.deployment_id.clone(),
        }
    }

    /// Root spans (and rollback spans) of the deployments of `key` that reached their
    /// outcome since this controller started and were not traced yet.
    pub(crate) async fn trace_outcomes(&self, key: &ServiceKey) -> Result<(), ControllerError> {
        if !self.traces().enabled() {
            return Ok(());
        }
        let started = self.inner.started_at;
        let deployments = self.inner.store.list_deployments(key, 5).await?;
        let fresh: Vec<&Deployment> = deployments
            .iter()
            .filter(|d| {
                d.state.is_terminal()
                    && d.timeline.finished_at.is_some_and(|f| f >= started)
                    && !self.local().traced.contains(&d.id)
            })
            .collect();
        if fresh.is_empty() {
            return Ok(());
        }
        let tasks = self.inner.store.list_tasks(key, true).await?;
        for d in fresh {
            self.local().traced.insert(d.id.clone());
            let digest = self
                .inner
                .store
                .get_task_definition(&key.family(), d.revision)
                .await?
                .and_then(|td| td.container.image_digest);
            self.trace_deployment(d, &tasks, digest.as_deref());
            if let Some(failed) = &d.rollback_of
                && let Ok(Some(f)) = self.inner.store.get_deployment(failed).await
            {
                let end = d.timeline.finished_at.unwrap_or(d.updated_at);
                self.traces().export(
                    child(&f.id, key, "rollback", "rollback", d.created_at, end)
                        .attr("slipway.rollback.deployment", d.id.as_str())
                        .attr("slipway.rollback.revision", d.revision)
                        .attr("slipway.rollback.outcome", d.state.as_str())
                        .error(format!(
                            "rolled back: {}",
                            f.reason.as_deref().unwrap_or("the deployment failed")
                        )),
                );
            }
        }
        let mut l = self.local();
        if l.traced.len() > 10_000 {
            l.traced.clear();
        }
        Ok(())
    }

    fn trace_deployment(&self, d: &Deployment, tasks: &[Task], digest: Option<&str>) {
        let finished = d.timeline.finished_at.unwrap_or(d.updated_at);
        // Tasks that never turned healthy: their health wait failed.
        for t in tasks
            .iter()
            .filter(|t| t.deployment_id == d.id && t.healthy_at.is_none())
        {
            let Some(start) = t.started_at else { continue };
            let end = t.stopped_at.unwrap_or(finished);
            let why = t
                .stopped_reason
                .clone()
                .unwrap_or_else(|| "never passed its health checks".into());
            self.traces().export(
                child(
                    &d.id,
                    &d.service,
                    "health wait",
                    &format!("{}/health", t.id),
                    start,
                    end,
                )
                .attr("slipway.task", t.id.as_str())
                .attr("slipway.outcome", "UNHEALTHY")
                .error(why),
            );
        }
        let (trace, root) = deployment_trace(&d.id);
        let mut span = base(
            Span::between_ms(trace, root, None, "deployment", d.created_at, finished),
            &d.service,
            &d.id,
        )
        .attr("slipway.revision", d.revision)
        .attr("slipway.desired_count", d.desired_count)
        .attr("slipway.outcome", d.state.as_str());
        if let Some(digest) = digest {
            span = span.attr("container.image.digest", digest);
        }
        if let Some(of) = &d.rollback_of {
            span = span.attr("slipway.rollback_of", of.as_str());
        }
        if let Some(by) = &d.rolled_back_by {
            span = span.attr("slipway.rolled_back_by", by.as_str());
        }
        if let Some(first) = d.timeline.first_healthy_at {
            span = span.attr("slipway.first_healthy_ms", first - d.created_at);
        }
        if matches!(d.state, RolloutState::Failed | RolloutState::RolledBack) {
            span = span.error(d.reason.clone().unwrap_or_else(|| d.state.as_str().into()));
        }
        self.traces().export(span);
    }
}
