//! Progressive rollouts on the controller's side: measures each version through the
//! ingress (per-version counters, subtracted over an analysis interval), moves a
//! deployment's weight with [`slipway_core::rollout`]'s pure step function, records it, and
//! pushes the weights to the ingress before anything else happens (a failed version takes no
//! request before the planner starts the rollback). Also computes the weights the routing
//! configuration carries.
//!
//! It may call the store and the ingress; the rules are in the core crate.

use std::collections::HashMap;

use slipway_core::model::{Deployment, RolloutState, ServiceKey, TaskHealth};
use slipway_core::planner::{self, ObservedTask, TaskState};
use slipway_core::rollout::{Phase, Sample};
use slipway_ingress::VersionReport;
use slipway_store::ServiceRecord;

use crate::{Controller, ControllerError};

/// Per-version counters of one service at one moment (the start of an interval).
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub at: i64,
    /// The weight in force when it was taken: a new weight starts a new interval.
    pub weight: u32,
    pub reports: Vec<VersionReport>,
}

/// The difference of two cumulative readings (a counter that went down was reset: the
/// newer reading is the whole difference).
fn delta(now: u64, then: u64) -> u64 {
    if now >= then { now - then } else { now }
}

/// Adds up what `reports` (now) minus `before` (at the interval's start) say about the
/// versions `pick` selects.
fn sample(
    reports: &[VersionReport],
    before: &[VersionReport],
    pick: impl Fn(&str) -> bool,
) -> Sample {
    let mut requests = 0;
    let mut errors = 0;
    let mut latency: Vec<u64> = Vec::new();
    for r in reports.iter().filter(|r| pick(&r.version)) {
        let old = before.iter().find(|b| b.version == r.version);
        let reset = old.is_some_and(|o| r.requests < o.requests);
        let old = old.filter(|_| !reset);
        requests += delta(r.requests, old.map_or(0, |o| o.requests));
        errors += delta(r.errors_5xx, old.map_or(0, |o| o.errors_5xx))
            + delta(r.connect_errors, old.map_or(0, |o| o.connect_errors));
        if latency.len() < r.latency.len() {
            latency.resize(r.latency.len(), 0);
        }
        for (i, n) in r.latency.iter().enumerate() {
            let was = old.and_then(|o| o.latency.get(i)).copied().unwrap_or(0);
            latency[i] += delta(*n, was);
        }
    }
    Sample {
        requests,
        errors,
        p99_us: slipway_ingress::versions::quantile_us(&latency, 0.99),
    }
}

/// The request weights of a service's tasks, by version label (the task's deployment id),
/// given its deployments and its routable tasks as (deployment id, revision). Empty: no
/// weighting (every routable task alike).
///
/// - a progressive deployment in progress takes its weight; the other versions share the
///   rest in proportion to their routable tasks;
/// - a rollback of a progressive deployment (or of one its analysis failed) gives the
///   rolled-back version nothing while the restored version has a routable task (it was cut
///   off; it stays cut off while it stops).
pub(crate) fn weights(
    deployments: &[Deployment],
    routable: &[(String, u32)],
) -> (Vec<(String, u32)>, bool) {
    let Some(t) = planner::target(deployments) else {
        return (Vec::new(), false);
    };
    let mut counts: HashMap<&str, u32> = HashMap::new();
    for (d, _) in routable {
        *counts.entry(d.as_str()).or_default() += 1;
    }
    let ours = |d: &str, rev: u32| planner::is_of(t, d, rev);
    let new_tasks = routable.iter().filter(|(d, r)| ours(d, *r)).count() as u32;
    // The rest of the requests go to the stable version's tasks; tasks of a failed or
    // superseded deployment get none while a stable task can take them.
    let stable = |d: &str| planner::is_stable(deployments, d);
    let old_tasks = routable
        .iter()
        .filter(|(d, r)| !ours(d, *r) && stable(d))
        .count() as u32;
    let any_stable = old_tasks > 0;
    let old_tasks = if any_stable {
        old_tasks
    } else {
        routable.len() as u32 - new_tasks
    };
    let in_progress = t.state == RolloutState::InProgress;
    let mut labels: Vec<(String, u32)> = Vec::new();
    let mut sticky = false;
    match &t.rollout {
        // A progressive rollout, or any rollout its analysis failed (a bake after a rolling
        // update): the weights in force. With nothing else to send requests to, no weights:
        // a bad version serves rather than nothing.
        Some(r)
            if in_progress
                && (r.plan.strategy.is_progressive() || r.failed.is_some())
                && (r.weight >= 100 || old_tasks > 0) =>
        {
            sticky = r.plan.sticky && r.plan.strategy.is_progressive();
            for (label, n) in &counts {
                let rev = routable
                    .iter()
                    .find(|(d, _)| d == label)
                    .map_or(0, |(_, r)| *r);
                let w = if ours(label, rev) {
                    r.weight * n * old_tasks.max(1)
                } else if any_stable && !stable(label) {
                    0
                } else {
                    (100 - r.weight.min(100)) * n * new_tasks.max(1)
                };
                labels.push(((*label).to_owned(), w));
            }
        }
        _ if in_progress && t.rollback_of.is_some() && new_tasks > 0 => {
            let cut = deployments
                .iter()
                .find(|d| Some(&d.id) == t.rollback_of.as_ref())
                .is_some_and(|d| {
                    d.rollout
                        .as_ref()
                        .is_some_and(|r| r.plan.strategy.is_progressive() || r.failed.is_some())
                });
            if !cut {
                return (Vec::new(), false);
            }
            for (label, n) in &counts {
                let rev = routable
                    .iter()
                    .find(|(d, _)| d == label)
                    .map_or(0, |(_, r)| *r);
                labels.push(((*label).to_owned(), if ours(label, rev) { *n } else { 0 }));
            }
        }
        _ => return (Vec::new(), false),
    }
    labels.sort();
    (labels, sticky)
}

impl Controller {
    /// One step of the target deployment's rollout, before the planner runs: measure when an
    /// interval is due, move the weight, record it, push it. `deployments` is updated with
    /// what was written.
    pub(crate) async fn advance_rollout(
        &self,
        svc: &ServiceRecord,
        deployments: &mut [Deployment],
        observed: &[ObservedTask],
        now: i64,
    ) -> Result<(), ControllerError> {
        let key = &svc.key;
        let Some(t) = planner::target(deployments) else {
            return Ok(());
        };
        if t.state != RolloutState::InProgress {
            return Ok(());
        }
        let Some(before) = t.rollout.clone() else {
            return Ok(());
        };
        if before.phase == Phase::Done {
            return Ok(());
        }
        let t_id = t.id.clone();
        let live =
            |x: &&ObservedTask| x.desired_running && !matches!(x.state, TaskState::Exited { .. });
        let healthy = |x: &ObservedTask| {
            x.state == TaskState::Running(TaskHealth::Healthy) && x.evict.is_none()
        };
        let new_ready = observed
            .iter()
            .filter(live)
            .filter(|x| planner::is_of(t, &x.deployment_id, x.revision) && healthy(x))
            .count() as u32
            >= svc.desired_count;
        let old_gone = !observed.iter().any(|x| {
            !matches!(x.state, TaskState::Exited { .. })
                && !planner::is_of(t, &x.deployment_id, x.revision)
        });
        let measured = if before.interval_due(now) {
            let interval = before
                .plan
                .analysis
                .map_or(60_000, |a| a.interval_ms as i64);
            self.measure(key, &t_id, before.weight, interval, now).await
        } else {
            None
        };
        let mut r = before.clone();
        let tick = r.tick(now, new_ready, old_gone, measured);
        if r == before && tick.events.is_empty() {
            return Ok(());
        }
        let Some(d) = deployments.iter_mut().find(|d| d.id == t_id) else {
            return Ok(());
        };
        let mut updated = d.clone();
        updated.rollout = Some(r);
        updated.updated_at = now;
        match self.save_deployment(&mut updated).await {
            Ok(()) => *d = updated,
            // Someone else moved it (a promote, an abort, a new deploy): the next pass sees it.
            Err(ControllerError::Store(e)) if e.is_conflict() => return Ok(()),
            Err(e) => return Err(e),
        }
        for e in tick.events {
            self.event(
                key,
                now,
                format!("(service {}) deployment {t_id}: {e}", key.name),
            )
            .await?;
        }
        if tick.weight_changed {
            // The new weights reach the ingress before anything else happens.
            self.sync_ingress(true).await;
            self.local().snapshots.remove(&t_id);
            if let Some(w) = d.rollout.as_ref().map(|r| r.weight) {
                self.snapshot(key, &t_id, w, now).await;
            }
        }
        Ok(())
    }

    /// The ingress' version counters of `key` now (None: no ingress, or it did not answer).
    async fn counters(&self, key: &ServiceKey) -> Option<Vec<VersionReport>> {
        let ingress = self.inner.ingress.as_ref()?;
        let name = key.to_string();
        match ingress.versions().await {
            Ok(all) => Some(all.into_iter().filter(|r| r.service == name).collect()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the ingress' version counters");
                None
            }
        }
    }

    /// Starts an interval: keeps the version counters of `key` as they are now.
    async fn snapshot(&self, key: &ServiceKey, deployment: &str, weight: u32, now: i64) {
        if let Some(reports) = self.counters(key).await {
            let snap = Snapshot {
                at: now,
                weight,
                reports,
            };
            self.local().snapshots.insert(deployment.to_owned(), snap);
        }
    }

    /// The new version's and the others' measurements since the interval began, when a
    /// whole interval has passed at this weight; otherwise starts one and says nothing.
    async fn measure(
        &self,
        key: &ServiceKey,
        deployment: &str,
        weight: u32,
        interval: i64,
        now: i64,
    ) -> Option<(Sample, Option<Sample>)> {
        let snap = self.local().snapshots.get(deployment).cloned();
        let Some(snap) = snap.filter(|s| s.weight == weight) else {
            self.snapshot(key, deployment, weight, now).await;
            return None;
        };
        if now - snap.at < interval {
            return None;
        }
        let reports = self.counters(key).await?;
        let canary = sample(&reports, &snap.reports, |v| v == deployment);
        let stable = sample(&reports, &snap.reports, |v| v != deployment);
        let next = Snapshot {
            at: now,
            weight,
            reports,
        };
        self.local().snapshots.insert(deployment.to_owned(), next);
        Some((canary, (stable.requests > 0).then_some(stable)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_core::rollout::{Progressive, RolloutProgress, Strategy};

    fn dep(id: &str, rev: u32, state: RolloutState, at: i64) -> Deployment {
        Deployment {
            id: id.into(),
            service: ServiceKey::new("a", "e", "s"),
            revision: rev,
            desired_count: 2,
            state,
            reason: None,
            failed_tasks: 0,
            rollback_of: None,
            rolled_back_by: None,
            created_at: at,
            updated_at: at,
            timeline: Default::default(),
            rollout: None,
            version: 1,
        }
    }

    #[test]
    fn weights_follow_the_rollout() {
        let mut d2 = dep("d2", 2, RolloutState::InProgress, 2);
        let plan = Progressive {
            strategy: Strategy::Canary {
                percent: 5,
                bake_ms: 1000,
            },
            ..Progressive::default()
        };
        let mut r = RolloutProgress::new(plan, Some(1), 2);
        r.weight = 5;
        d2.rollout = Some(r);
        let deps = vec![dep("d1", 1, RolloutState::Succeeded, 1), d2.clone()];
        let tasks: Vec<(String, u32)> = vec![
            ("d1".into(), 1),
            ("d1".into(), 1),
            ("d2".into(), 2),
            ("d2".into(), 2),
        ];
        let (w, sticky) = weights(&deps, &tasks);
        assert!(sticky);
        let total: u32 = w.iter().map(|x| x.1).sum();
        let d2w = w.iter().find(|x| x.0 == "d2").unwrap().1;
        assert_eq!(d2w * 100, total * 5, "{w:?}");
        // A superseded canary's tasks take nothing while the stable version's can.
        let mut d3 = d2.clone();
        d3.id = "d3".into();
        d3.revision = 3;
        d3.created_at = 3;
        let mut superseded = d2.clone();
        superseded.state = RolloutState::Failed;
        let deps3 = vec![dep("d1", 1, RolloutState::Succeeded, 1), superseded, d3];
        let mut with_old_canary = tasks.clone();
        with_old_canary.push(("d3".into(), 3));
        let (w, _) = weights(&deps3, &with_old_canary);
        assert_eq!(w.iter().find(|x| x.0 == "d2").unwrap().1, 0, "{w:?}");
        let total: u32 = w.iter().map(|x| x.1).sum();
        assert_eq!(
            w.iter().find(|x| x.0 == "d3").unwrap().1 * 100,
            total * 5,
            "{w:?}"
        );
        // Rolling: no weights.
        let deps = vec![
            dep("d1", 1, RolloutState::Succeeded, 1),
            dep("d2", 2, RolloutState::InProgress, 2),
        ];
        assert!(weights(&deps, &tasks).0.is_empty());
        // Rollback of a cut-off canary: the rolled-back version gets nothing.
        let mut failed = d2.clone();
        failed.state = RolloutState::RolledBack;
        let mut back = dep("d3", 1, RolloutState::InProgress, 3);
        back.rollback_of = Some("d2".into());
        let deps = vec![dep("d1", 1, RolloutState::Succeeded, 1), failed, back];
        let (w, _) = weights(&deps, &tasks);
        assert_eq!(w, vec![("d1".into(), 2), ("d2".into(), 0)]);
    }

    #[test]
    fn samples_are_differences() {
        let rep = |v: &str, req: u64, e: u64, lat: Vec<u64>| VersionReport {
            service: "s".into(),
            version: v.into(),
            weight: None,
            requests: req,
            errors_5xx: e,
            connect_errors: 0,
            latency: lat,
        };
        let before = vec![
            rep("a", 10, 1, vec![10, 0, 0]),
            rep("b", 5, 0, vec![5, 0, 0]),
        ];
        let now = vec![
            rep("a", 110, 21, vec![10, 100, 0]),
            rep("b", 3, 0, vec![3, 0, 0]),
        ];
        let a = sample(&now, &before, |v| v == "a");
        assert_eq!((a.requests, a.errors), (100, 20));
        assert_eq!(
            a.p99_us,
            slipway_ingress::versions::quantile_us(&[0, 100, 0], 0.99)
        );
        // b's counter went down: it was reset, the new reading is the difference.
        let b = sample(&now, &before, |v| v == "b");
        assert_eq!(b.requests, 3);
    }
}
