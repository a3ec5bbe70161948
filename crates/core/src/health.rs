//! Task health: turns what the engine and the controller's probes report into
//! [`TaskHealth`].
//!
//! A task is judged by up to two checks: the engine's container health check (Docker
//! `HEALTHCHECK` or the manifest's `healthcheck` command) and an HTTP check the controller
//! probes (`http.healthcheck`). When both exist both must pass (ECS counts a task healthy
//! only when its container check and its target group agree). A task with no check at all
//! counts as healthy once it has kept running for [`NO_CHECK_STABLE_MS`].

use serde::{Deserialize, Serialize};

use crate::model::{HttpHealthCheck, TaskHealth};

/// How long a task without any health check must run before it counts as healthy.
pub const NO_CHECK_STABLE_MS: i64 = 3000;

/// How often a task that has never passed its HTTP check is probed, so a deploy learns of the
/// first success quickly. Failures still need `unhealthy_threshold × interval` to condemn it.
pub const FAST_PROBE_MS: u64 = 200;

/// The engine's view of a container health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EngineHealth {
    /// The container has no health check.
    None,
    Starting,
    Healthy,
    Unhealthy,
}

/// The running tally of HTTP probes of one task.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeState {
    pub successes: u32,
    pub failures: u32,
    /// When the current run of failures began (unix ms).
    pub failing_since: Option<i64>,
    /// The check has passed its healthy threshold and not failed out since.
    pub healthy: bool,
    pub ever_healthy: bool,
    /// The last failure, for reports ("GET /healthz returned 503").
    pub last_failure: Option<String>,
}

impl ProbeState {
    /// Records one probe result taken at `now`.
    pub fn record(&mut self, check: &HttpHealthCheck, now: i64, result: Result<(), String>) {
        match result {
            Ok(()) => {
                self.successes = self.successes.saturating_add(1);
                self.failures = 0;
                self.failing_since = None;
                if self.successes >= check.healthy_threshold {
                    self.healthy = true;
                    self.ever_healthy = true;
                }
            }
            Err(why) => {
                self.successes = 0;
                self.failures = self.failures.saturating_add(1);
                self.failing_since.get_or_insert(now);
                self.last_failure = Some(why);
                if self.failed_out(check, now) {
                    self.healthy = false;
                }
            }
        }
    }

    /// Failures have lasted long enough to call the target unhealthy: at least
    /// `unhealthy_threshold` probes spanning `unhealthy_threshold × interval`.
    pub fn failed_out(&self, check: &HttpHealthCheck, now: i64) -> bool {
        let span = i64::from(check.unhealthy_threshold) * check.interval_ms as i64;
        self.failures >= check.unhealthy_threshold
            && self.failing_since.is_some_and(|since| now - since >= span)
    }

    /// The delay before the next probe of this task.
    pub fn next_probe_in_ms(&self, check: &HttpHealthCheck) -> u64 {
        if self.ever_healthy {
            check.interval_ms
        } else {
            check.interval_ms.min(FAST_PROBE_MS)
        }
    }
}

/// Everything [`assess`] looks at.
#[derive(Debug, Clone, Copy)]
pub struct HealthInputs<'a> {
    pub now: i64,
    /// When the container started running (unix ms).
    pub started_at: i64,
    pub grace_period_ms: u64,
    pub engine: EngineHealth,
    pub http: Option<(&'a HttpHealthCheck, &'a ProbeState)>,
}

/// Judges a running task's health.
pub fn assess(i: HealthInputs<'_>) -> TaskHealth {
    let in_grace = i.now - i.started_at < i.grace_period_ms as i64;
    let engine_bad = i.engine == EngineHealth::Unhealthy;
    let http_bad = i.http.is_some_and(|(c, p)| p.failed_out(c, i.now));
    if (engine_bad || http_bad) && !in_grace {
        return TaskHealth::Unhealthy;
    }
    let engine_ok = matches!(i.engine, EngineHealth::None | EngineHealth::Healthy);
    let http_ok = i.http.is_none_or(|(_, p)| p.healthy);
    let has_check = i.engine != EngineHealth::None || i.http.is_some();
    let stable = has_check || i.now - i.started_at >= NO_CHECK_STABLE_MS;
    if engine_ok && http_ok && stable {
        TaskHealth::Healthy
    } else {
        TaskHealth::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check() -> HttpHealthCheck {
        HttpHealthCheck {
            path: "/healthz".into(),
            port: None,
            interval_ms: 1000,
            timeout_ms: 1000,
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            success_codes: vec![(200, 399)],
        }
    }

    #[test]
    fn becomes_healthy_after_threshold_successes() {
        let c = check();
        let mut p = ProbeState::default();
        p.record(&c, 0, Ok(()));
        assert!(!p.healthy);
        p.record(&c, 200, Ok(()));
        assert!(p.healthy);
    }

    #[test]
    fn failures_must_span_the_threshold_window() {
        let c = check();
        let mut p = ProbeState::default();
        for t in [0, 200, 400, 600] {
            p.record(&c, t, Err("refused".into()));
        }
        assert!(
            !p.failed_out(&c, 600),
            "four quick failures are not yet three intervals"
        );
        p.record(&c, 3000, Err("refused".into()));
        assert!(p.failed_out(&c, 3000));
    }

    #[test]
    fn a_success_resets_the_failure_run() {
        let c = check();
        let mut p = ProbeState::default();
        p.record(&c, 0, Err("x".into()));
        p.record(&c, 1000, Ok(()));
        p.record(&c, 2000, Err("x".into()));
        p.record(&c, 3000, Err("x".into()));
        p.record(&c, 4000, Err("x".into()));
        assert!(!p.failed_out(&c, 4000));
        p.record(&c, 5000, Err("x".into()));
        assert!(p.failed_out(&c, 5000));
    }

    #[test]
    fn assess_combines_checks() {
        let c = check();
        let healthy = ProbeState {
            healthy: true,
            ever_healthy: true,
            ..Default::default()
        };
        let base = HealthInputs {
            now: 10_000,
            started_at: 0,
            grace_period_ms: 0,
            engine: EngineHealth::None,
            http: None,
        };
        assert_eq!(assess(base), TaskHealth::Healthy, "no check and stable");
        assert_eq!(
            assess(HealthInputs { now: 1000, ..base }),
            TaskHealth::Unknown,
            "no check, too young"
        );
        assert_eq!(
            assess(HealthInputs {
                http: Some((&c, &healthy)),
                ..base
            }),
            TaskHealth::Healthy
        );
        assert_eq!(
            assess(HealthInputs {
                http: Some((&c, &healthy)),
                engine: EngineHealth::Starting,
                ..base
            }),
            TaskHealth::Unknown
        );
        assert_eq!(
            assess(HealthInputs {
                engine: EngineHealth::Unhealthy,
                ..base
            }),
            TaskHealth::Unhealthy
        );
        assert_eq!(
            assess(HealthInputs {
                engine: EngineHealth::Unhealthy,
                grace_period_ms: 20_000,
                ..base
            }),
            TaskHealth::Unknown,
            "grace period hides failures"
        );
    }
}
