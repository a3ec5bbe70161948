//! Progressive delivery: how a deployment moves traffic to its version (rolling, canary,
//! linear, blue/green), the analysis rules that judge the new version from the ingress' own
//! measurements, and the pure step function that moves a deployment's request weight.
//!
//! No I/O here. The controller measures (per-version counters of the ingress over an
//! interval), calls [`judge`] and [`RolloutProgress::tick`], writes the deployment record,
//! pushes the weights to the ingress, and rolls back when told to. The planner holds the old
//! tasks while the new version takes less than all requests, and does not finish a
//! deployment before its bake is over (see [`crate::planner`]).
//!
//! Rules (in words, as the docs give them):
//! - a progressive deployment first starts its full count of new tasks, taking no requests
//!   (weight 0); once all are healthy its weight moves to the first step (canary: `percent`;
//!   linear: `step_percent`; blue/green: 100);
//! - a step lasts at least its bake time, and ends only after an analysis interval *passed*
//!   in it (an inconclusive interval is never a pass: the rollout waits, and a rollout that
//!   stays inconclusive runs into the deployment's timeout and fails);
//! - `failures` consecutive bad intervals roll back: the new version's weight goes to 0 at
//!   once, before any task is stopped;
//! - at 100 % the old tasks are stopped; then the final bake (`bake`) runs, judged against
//!   the last measurements of the stable version, or against absolute limits without them.

use serde::{Deserialize, Serialize};

/// How a deployment moves requests to its version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Strategy {
    /// ECS's rolling update: tasks are replaced within minimum/maximum %, every healthy task
    /// takes requests alike.
    #[default]
    Rolling,
    /// `percent` of requests for `bake_ms`, then all.
    Canary { percent: u32, bake_ms: u64 },
    /// `step_percent` more of the requests every `bake_ms`.
    Linear { step_percent: u32, bake_ms: u64 },
    /// No request until every new task is healthy, then all at once.
    BlueGreen,
}

/// ECS's canary defaults: 5 % for 10 minutes.
pub const CANARY_PERCENT: u32 = 5;
pub const CANARY_BAKE_MS: u64 = 10 * 60 * 1000;
/// ECS's linear defaults: 10 % steps of 6 minutes.
pub const LINEAR_STEP_PERCENT: u32 = 10;
pub const LINEAR_BAKE_MS: u64 = 6 * 60 * 1000;

impl Strategy {
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Rolling => "rolling",
            Strategy::Canary { .. } => "canary",
            Strategy::Linear { .. } => "linear",
            Strategy::BlueGreen => "blue_green",
        }
    }

    /// Requests are weighted by version (everything but rolling).
    pub fn is_progressive(&self) -> bool {
        !matches!(self, Strategy::Rolling)
    }

    /// The weight after `weight` (0: the first step).
    pub fn next_weight(&self, weight: u32) -> u32 {
        match *self {
            Strategy::Rolling | Strategy::BlueGreen => 100,
            Strategy::Canary { percent, .. } => {
                if weight == 0 {
                    percent.min(100)
                } else {
                    100
                }
            }
            Strategy::Linear { step_percent, .. } => (weight + step_percent.max(1)).min(100),
        }
    }

    /// How long a step below 100 % lasts at least.
    pub fn step_bake_ms(&self) -> u64 {
        match *self {
            Strategy::Canary { bake_ms, .. } | Strategy::Linear { bake_ms, .. } => bake_ms,
            Strategy::Rolling | Strategy::BlueGreen => 0,
        }
    }

    /// The sum of the bake times of the steps below 100 %.
    pub fn total_step_bake_ms(&self) -> u64 {
        let mut w = 0;
        let mut total = 0u64;
        if !self.is_progressive() {
            return 0;
        }
        loop {
            w = self.next_weight(w);
            if w >= 100 {
                return total;
            }
            total = total.saturating_add(self.step_bake_ms());
        }
    }

    /// Checks percents (1–100).
    pub fn validate(&self) -> Result<(), String> {
        match *self {
            Strategy::Canary { percent, .. } if !(1..=100).contains(&percent) => Err(format!(
                "canary percent must be between 1 and 100, got {percent}"
            )),
            Strategy::Linear { step_percent, .. } if !(1..=100).contains(&step_percent) => Err(
                format!("linear step_percent must be between 1 and 100, got {step_percent}"),
            ),
            _ => Ok(()),
        }
    }
}

/// Verdict rules over one interval of the ingress' measurements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Analysis {
    pub interval_ms: u64,
    /// An absolute ceiling on the new version's error rate, in basis points (100 = 1 %).
    /// Unset: the stable version's rate + 1 percentage point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_rate_bp: Option<u32>,
    /// An absolute ceiling on the new version's p99 latency. Unset: 1.5 × the stable
    /// version's p99 (and at least [`P99_SLACK_US`] above it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p99_ms: Option<u64>,
    /// Fewer requests to the new version in an interval: inconclusive.
    pub min_requests: u32,
    /// This many bad intervals in a row roll back.
    pub failures: u32,
}

impl Default for Analysis {
    fn default() -> Self {
        Self {
            interval_ms: 60_000,
            max_error_rate_bp: None,
            max_p99_ms: None,
            min_requests: 20,
            failures: 3,
        }
    }
}

/// Latencies this close to the stable version's are never a regression: on a p99 of a few
/// milliseconds, 1.5 × is within the noise of a loaded host, and the version that takes most
/// of the requests (a linear step past 50 %) is the one a saturated host slows down (seen
/// here: 51 ms against 0.8 ms for the same build at 90 % / 10 % on a busy 2-core machine).
/// `analysis.max_p99` sets a tighter absolute bound.
pub const P99_SLACK_US: u64 = 100_000;

/// Error rate allowed above the stable version's, in basis points (1 percentage point).
pub const ERROR_RATE_SLACK_BP: u64 = 100;

/// Progressive delivery settings of a service (or of one deploy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progressive {
    pub strategy: Strategy,
    /// Watched time after the new version takes every request (all strategies).
    pub bake_ms: u64,
    /// Judge the new version from the ingress' measurements (None: steps advance on time).
    pub analysis: Option<Analysis>,
    /// Keep a client on one version by a cookie.
    pub sticky: bool,
}

impl Default for Progressive {
    fn default() -> Self {
        Self {
            strategy: Strategy::Rolling,
            bake_ms: 0,
            analysis: None,
            sticky: true,
        }
    }
}

/// Analysis is on by default for a progressive strategy or a bake, on a service with ingress
/// routes (the one rule the manifest, the CLI's flags and the ECS API all follow).
pub fn analysis_by_default(strategy: &Strategy, bake_ms: u64, has_routes: bool) -> bool {
    has_routes && (strategy.is_progressive() || bake_ms > 0)
}

impl Progressive {
    /// The deployment timeout when none is chosen: `base` (10 minutes) beyond the bakes.
    pub fn default_timeout_ms(&self, base: u64) -> u64 {
        base.saturating_add(self.total_bake_ms())
    }

    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Plain rolling without a bake: nothing of this module applies.
    pub fn is_plain(&self) -> bool {
        !self.strategy.is_progressive() && self.bake_ms == 0
    }

    /// Bake times a deployment cannot finish before.
    pub fn total_bake_ms(&self) -> u64 {
        self.strategy
            .total_step_bake_ms()
            .saturating_add(self.bake_ms)
    }

    /// Checks the settings against the deployment timeout and whether the service has
    /// ingress routes (weights and analysis need them).
    pub fn validate(&self, timeout_ms: u64, has_routes: bool) -> Result<(), String> {
        self.strategy.validate()?;
        if let Some(a) = &self.analysis {
            if a.interval_ms < 1000 {
                return Err("analysis interval must be at least 1s".to_owned());
            }
            if a.failures == 0 {
                return Err("analysis failures must be at least 1".to_owned());
            }
            if a.max_error_rate_bp.is_some_and(|b| b > 10_000) {
                return Err("analysis max_error_rate must be between 0 and 100%".to_owned());
            }
        }
        if !has_routes && (self.strategy.is_progressive() || self.analysis.is_some()) {
            return Err(format!(
                "strategy {} with analysis needs ingress routes (http:), and this service has none; use strategy rolling",
                self.strategy.name()
            ));
        }
        let bake = self.total_bake_ms();
        if bake >= timeout_ms {
            return Err(format!(
                "the bake times add up to {}s, which is not shorter than the deployment timeout ({}s); raise deployment.timeout or shorten the bake",
                bake / 1000,
                timeout_ms / 1000
            ));
        }
        Ok(())
    }
}

/// What the ingress measured for one version over one interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    pub requests: u64,
    /// 5xx answers and failed connections.
    pub errors: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_us: Option<u64>,
}

impl Sample {
    /// Error rate in basis points.
    pub fn error_rate_bp(&self) -> u64 {
        (self.errors * 10_000)
            .checked_div(self.requests)
            .unwrap_or(0)
    }
}

/// The verdict of one interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    Fail,
    Inconclusive,
}

/// One interval's measurements and verdict, as recorded on the deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub at: i64,
    /// The new version's weight over the interval.
    #[serde(default)]
    pub weight: u32,
    pub outcome: Outcome,
    pub canary: Sample,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable: Option<Sample>,
    /// The measurements in words (`error rate 19.8 % vs stable 0.1 %`).
    pub detail: String,
}

fn pct(bp: u64) -> String {
    format!("{}.{} %", bp / 100, (bp % 100) / 10)
}

fn ms(us: u64) -> String {
    if us >= 10_000 {
        format!("{} ms", us / 1000)
    } else {
        format!("{}.{} ms", us / 1000, (us % 1000) / 100)
    }
}

/// Judges the new version's interval against the stable version's (or against absolute
/// limits when there is no stable measurement with enough requests).
pub fn judge(a: &Analysis, canary: &Sample, stable: Option<&Sample>) -> (Outcome, String) {
    if canary.requests < u64::from(a.min_requests) {
        return (
            Outcome::Inconclusive,
            format!(
                "inconclusive: {} requests to the new version (at least {} needed)",
                canary.requests, a.min_requests
            ),
        );
    }
    let stable = stable.filter(|s| s.requests >= u64::from(a.min_requests));
    let rate = canary.error_rate_bp();
    let stable_rate = stable.map(Sample::error_rate_bp);
    let max_rate = match a.max_error_rate_bp {
        Some(m) => u64::from(m),
        None => stable_rate.unwrap_or(0) + ERROR_RATE_SLACK_BP,
    };
    let vs_rate = match stable_rate {
        Some(s) => format!("error rate {} vs stable {}", pct(rate), pct(s)),
        None => format!("error rate {} (limit {})", pct(rate), pct(max_rate)),
    };
    if rate > max_rate {
        return (Outcome::Fail, vs_rate);
    }
    let p99 = canary.p99_us;
    let stable_p99 = stable.and_then(|s| s.p99_us);
    let max_p99 = match (a.max_p99_ms, stable_p99) {
        (Some(m), _) => Some(m * 1000),
        (None, Some(s)) => Some((s + s / 2).max(s + P99_SLACK_US)),
        (None, None) => None,
    };
    let vs_p99 = match (p99, stable_p99) {
        (Some(c), Some(s)) => format!("p99 {} vs stable {}", ms(c), ms(s)),
        (Some(c), None) => format!("p99 {}", ms(c)),
        (None, _) => "no latency measured".to_owned(),
    };
    if let (Some(c), Some(m)) = (p99, max_p99)
        && c > m
    {
        return (Outcome::Fail, format!("{vs_p99} (limit {})", ms(m)));
    }
    (Outcome::Pass, format!("{vs_rate}, {vs_p99}"))
}

/// Where a progressive deployment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// New tasks are starting; they take no requests (progressive strategies).
    #[default]
    Starting,
    /// The new version takes `weight` % of the requests.
    Shifting,
    /// The new version takes every request; old tasks are being stopped.
    Full,
    /// Every request, old tasks gone: the final bake.
    Baking,
    /// Nothing left to wait for: the deployment may finish.
    Done,
}

/// A weight that took effect, for the deployment's timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightMark {
    pub at: i64,
    pub weight: u32,
}

/// A progressive deployment's plan and where it stands (kept on the deployment record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutProgress {
    pub plan: Progressive,
    pub phase: Phase,
    /// Percent of requests to the new version now.
    pub weight: u32,
    /// The revision the new version is compared with (and takes the rest of the requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_revision: Option<u32>,
    /// When the current phase or weight began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
    /// An interval passed since `since`.
    #[serde(default)]
    pub passed: bool,
    /// Bad intervals in a row.
    #[serde(default)]
    pub bad_intervals: u32,
    /// The stable version's last measurement with traffic (the final bake's reference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Sample>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<Verdict>,
    /// Weights over time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weights: Vec<WeightMark>,
    /// Set by `slipway promote`: the rest of the steps and bakes are skipped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub promoted: bool,
    /// Set when analysis failed the new version or a user aborted: why. The new version
    /// takes no request any more, and the planner rolls back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

/// What the controller must do after a tick.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tick {
    /// The weight changed: push the routing configuration.
    pub weight_changed: bool,
    /// Events to record (in words).
    pub events: Vec<String>,
    /// Roll back, for this reason (the weight is already 0).
    pub rollback: Option<String>,
}

impl RolloutProgress {
    /// A deployment's progress at its creation. `stable`: the revision serving now (None on a
    /// service's first deployment, which takes every request at once).
    pub fn new(plan: Progressive, stable: Option<u32>, now: i64) -> Self {
        let first = stable.is_none() || !plan.strategy.is_progressive();
        let weight = if first { 100 } else { 0 };
        Self {
            plan,
            phase: if first { Phase::Full } else { Phase::Starting },
            weight,
            stable_revision: stable,
            since: Some(now),
            passed: false,
            bad_intervals: 0,
            baseline: None,
            last: None,
            weights: vec![WeightMark { at: now, weight }],
            promoted: false,
            failed: None,
        }
    }

    /// Old tasks must keep running (they take the rest of the requests).
    pub fn holds_old(&self) -> bool {
        self.weight < 100
    }

    /// The deployment may not finish yet.
    pub fn holds_finish(&self) -> bool {
        self.phase != Phase::Done
    }

    /// An analysis interval is due at `now`.
    pub fn interval_due(&self, now: i64) -> bool {
        let from = match (&self.last, self.since) {
            (Some(v), Some(s)) => v.at.max(s),
            (Some(v), None) => v.at,
            (None, s) => s.unwrap_or(0),
        };
        self.plan.analysis.is_some()
            && matches!(self.phase, Phase::Shifting | Phase::Full | Phase::Baking)
            && now - from >= self.interval_ms() as i64
    }

    fn interval_ms(&self) -> u64 {
        self.plan.analysis.map_or(u64::MAX, |a| a.interval_ms)
    }

    fn set_weight(&mut self, weight: u32, now: i64, t: &mut Tick) {
        if weight != self.weight {
            self.weight = weight;
            self.weights.push(WeightMark { at: now, weight });
            t.weight_changed = true;
        }
        self.since = Some(now);
        self.passed = false;
    }

    /// `slipway promote`: every request to the new version now, no more bakes.
    pub fn promote(&mut self, now: i64) -> Tick {
        let mut t = Tick::default();
        self.promoted = true;
        if self.weight < 100 {
            self.set_weight(100, now, &mut t);
            self.phase = Phase::Full;
        } else if self.phase == Phase::Baking {
            self.phase = Phase::Done;
        }
        t.events
            .push("promoted: every request goes to the new version; bakes skipped".to_owned());
        t
    }

    /// `slipway abort` (or a failed analysis): no request to the new version from now on.
    pub fn cut_off(&mut self, now: i64, reason: String) -> Tick {
        let mut t = Tick::default();
        if self.stable_revision.is_some() {
            self.set_weight(0, now, &mut t);
        }
        self.phase = Phase::Done;
        self.failed = Some(reason.clone());
        t.rollback = Some(reason);
        t
    }

    /// One step. `new_ready`: every new task is healthy; `old_gone`: no old task is left;
    /// `measured`: this interval's samples (new version, stable version) when an interval
    /// was due and the ingress answered.
    pub fn tick(
        &mut self,
        now: i64,
        new_ready: bool,
        old_gone: bool,
        measured: Option<(Sample, Option<Sample>)>,
    ) -> Tick {
        let mut t = Tick::default();
        if self.failed.is_some() {
            return t;
        }
        if let (Some((canary, stable)), Some(a)) = (measured, self.plan.analysis) {
            let stable = stable.or(self.baseline);
            let (outcome, detail) = judge(&a, &canary, stable.as_ref());
            if let Some(s) = stable.filter(|s| s.requests >= u64::from(a.min_requests))
                && matches!(self.phase, Phase::Shifting | Phase::Full)
            {
                self.baseline = Some(s);
            }
            match outcome {
                Outcome::Pass => {
                    self.bad_intervals = 0;
                    self.passed = true;
                }
                Outcome::Fail => self.bad_intervals += 1,
                Outcome::Inconclusive => {}
            }
            let word = match outcome {
                Outcome::Pass => "pass",
                Outcome::Fail => "FAIL",
                Outcome::Inconclusive => "wait",
            };
            t.events.push(format!(
                "analysis at {} %: {word}: {detail} ({} requests)",
                self.weight, canary.requests
            ));
            self.last = Some(Verdict {
                at: now,
                weight: self.weight,
                outcome,
                canary,
                stable,
                detail: detail.clone(),
            });
            if outcome == Outcome::Fail && self.bad_intervals >= a.failures {
                let reason = format!("{detail} over {} intervals", self.bad_intervals);
                let mut cut = self.cut_off(now, reason);
                t.weight_changed |= cut.weight_changed;
                t.rollback = cut.rollback.take();
                return t;
            }
        }
        let elapsed = now - self.since.unwrap_or(now);
        let judged = self.plan.analysis.is_none() || self.passed || self.promoted;
        match self.phase {
            Phase::Starting => {
                if new_ready {
                    let w = self.plan.strategy.next_weight(0);
                    self.set_weight(w, now, &mut t);
                    self.phase = if w >= 100 {
                        Phase::Full
                    } else {
                        Phase::Shifting
                    };
                    t.events.push(format!(
                        "{}: {w} % of requests to the new version",
                        self.plan.strategy.name()
                    ));
                }
            }
            Phase::Shifting => {
                if elapsed >= self.plan.strategy.step_bake_ms() as i64 && judged {
                    let w = self.plan.strategy.next_weight(self.weight);
                    self.set_weight(w, now, &mut t);
                    if w >= 100 {
                        self.phase = Phase::Full;
                    }
                    t.events
                        .push(format!("{w} % of requests to the new version"));
                }
            }
            Phase::Full => {
                if old_gone {
                    self.since = Some(now);
                    self.passed = false;
                    if self.plan.bake_ms == 0 || self.promoted {
                        self.phase = Phase::Done;
                    } else {
                        self.phase = Phase::Baking;
                        t.events
                            .push(format!("baking for {}s at 100 %", self.plan.bake_ms / 1000));
                    }
                }
            }
            Phase::Baking => {
                // Without traffic the bake proves nothing, but a version nobody calls
                // cannot fail users either: after the bake with no failed interval, done.
                let clean = self.bad_intervals == 0;
                if (elapsed >= self.plan.bake_ms as i64 && clean) || self.promoted {
                    self.phase = Phase::Done;
                    t.events.push("bake over".to_owned());
                }
            }
            Phase::Done => {}
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(requests: u64, errors: u64, p99_ms: u64) -> Sample {
        Sample {
            requests,
            errors,
            p99_us: Some(p99_ms * 1000),
        }
    }

    #[test]
    fn verdicts() {
        let a = Analysis::default();
        // Too few requests: never a pass.
        assert_eq!(
            judge(&a, &s(5, 0, 1), Some(&s(500, 0, 1))).0,
            Outcome::Inconclusive
        );
        assert_eq!(judge(&a, &s(0, 0, 0), None).0, Outcome::Inconclusive);
        // 20 % errors vs 0.1 %.
        let (o, d) = judge(&a, &s(100, 20, 1), Some(&s(1000, 1, 1)));
        assert_eq!(o, Outcome::Fail);
        assert_eq!(d, "error rate 20.0 % vs stable 0.1 %");
        // Within one percentage point.
        assert_eq!(
            judge(&a, &s(100, 1, 1), Some(&s(1000, 1, 1))).0,
            Outcome::Pass
        );
        assert_eq!(
            judge(&a, &s(100, 2, 1), Some(&s(1000, 1, 1))).0,
            Outcome::Fail
        );
        // Latency: 300 ms more fails, a few ms more does not.
        let (o, d) = judge(&a, &s(100, 0, 302), Some(&s(1000, 0, 2)));
        assert_eq!(o, Outcome::Fail, "{d}");
        assert!(d.starts_with("p99 302 ms vs stable 2.0 ms"), "{d}");
        assert_eq!(
            judge(&a, &s(100, 0, 3), Some(&s(1000, 0, 2))).0,
            Outcome::Pass
        );
        // The busier version on a saturated host (seen at 90 % / 10 %): not a regression.
        assert_eq!(
            judge(&a, &s(400, 0, 51), Some(&s(44, 0, 1))).0,
            Outcome::Pass
        );
        assert_eq!(
            judge(&a, &s(100, 0, 600), Some(&s(1000, 0, 400))).0,
            Outcome::Pass
        );
        assert_eq!(
            judge(&a, &s(100, 0, 601), Some(&s(1000, 0, 400))).0,
            Outcome::Fail
        );
        // Absolute limits.
        let abs = Analysis {
            max_error_rate_bp: Some(500),
            max_p99_ms: Some(100),
            ..a
        };
        assert_eq!(judge(&abs, &s(100, 5, 50), None).0, Outcome::Pass);
        assert_eq!(judge(&abs, &s(100, 6, 50), None).0, Outcome::Fail);
        assert_eq!(judge(&abs, &s(100, 0, 150), None).0, Outcome::Fail);
        // A stable version with too few requests is no reference.
        assert_eq!(
            judge(&a, &s(100, 1, 900), Some(&s(3, 0, 1))).0,
            Outcome::Pass
        );
    }

    fn canary(bake_ms: u64, final_bake: u64) -> RolloutProgress {
        let plan = Progressive {
            strategy: Strategy::Canary {
                percent: 5,
                bake_ms,
            },
            bake_ms: final_bake,
            analysis: Some(Analysis {
                interval_ms: 1000,
                ..Analysis::default()
            }),
            sticky: true,
        };
        RolloutProgress::new(plan, Some(1), 0)
    }

    #[test]
    fn a_good_canary_goes_through_its_steps() {
        let mut r = canary(3000, 2000);
        assert!(r.holds_old() && r.holds_finish());
        assert_eq!(r.tick(500, false, false, None), Tick::default());
        let t = r.tick(1000, true, false, None);
        assert!(t.weight_changed);
        assert_eq!((r.phase, r.weight), (Phase::Shifting, 5));
        // Bake time passed but no interval passed yet: wait.
        assert!(!r.tick(4500, true, false, None).weight_changed);
        assert!(r.interval_due(4500));
        let t = r.tick(4500, true, false, Some((s(50, 0, 1), Some(s(950, 0, 1)))));
        assert!(t.weight_changed, "{t:?}");
        assert_eq!((r.phase, r.weight), (Phase::Full, 100));
        assert!(!r.holds_old());
        r.tick(5000, true, true, None);
        assert_eq!(r.phase, Phase::Baking);
        r.tick(6000, true, true, Some((s(1000, 0, 1), None)));
        assert!(r.holds_finish());
        r.tick(7000, true, true, None);
        assert_eq!(r.phase, Phase::Done);
        assert!(!r.holds_finish());
        let ws: Vec<u32> = r.weights.iter().map(|w| w.weight).collect();
        assert_eq!(ws, vec![0, 5, 100]);
    }

    #[test]
    fn a_bad_canary_is_cut_off_after_its_failures() {
        let mut r = canary(60_000, 0);
        r.tick(0, true, false, None);
        let bad = Some((s(50, 10, 1), Some(s(950, 1, 1))));
        assert!(r.tick(1000, true, false, bad).rollback.is_none());
        // An inconclusive interval neither resets nor counts.
        r.tick(2000, true, false, Some((s(3, 0, 1), Some(s(950, 1, 1)))));
        assert!(r.tick(3000, true, false, bad).rollback.is_none());
        let t = r.tick(4000, true, false, bad);
        assert_eq!(
            t.rollback.as_deref(),
            Some("error rate 20.0 % vs stable 0.1 % over 3 intervals")
        );
        assert!(t.weight_changed);
        assert_eq!(r.weight, 0);
        assert!(!r.holds_finish());
    }

    #[test]
    fn no_traffic_never_promotes() {
        let mut r = canary(1000, 0);
        r.tick(0, true, false, None);
        for i in 1..100 {
            let t = r.tick(i * 1000, true, false, Some((s(0, 0, 0), Some(s(0, 0, 0)))));
            assert!(!t.weight_changed && t.rollback.is_none());
        }
        assert_eq!((r.phase, r.weight), (Phase::Shifting, 5));
    }

    #[test]
    fn linear_steps_and_totals() {
        let l = Strategy::Linear {
            step_percent: 30,
            bake_ms: 1000,
        };
        let mut w = 0;
        let mut seen = vec![];
        while w < 100 {
            w = l.next_weight(w);
            seen.push(w);
        }
        assert_eq!(seen, vec![30, 60, 90, 100]);
        assert_eq!(l.total_step_bake_ms(), 3000);
        let d = Strategy::Linear {
            step_percent: LINEAR_STEP_PERCENT,
            bake_ms: LINEAR_BAKE_MS,
        };
        assert_eq!(d.total_step_bake_ms(), 9 * LINEAR_BAKE_MS);
        assert_eq!(Strategy::BlueGreen.total_step_bake_ms(), 0);
        let p = Progressive {
            strategy: l,
            bake_ms: 5000,
            analysis: None,
            sticky: true,
        };
        assert!(p.validate(8000, true).is_err());
        assert!(p.validate(9000, true).is_ok());
        assert!(p.validate(9000, false).is_err());
        let bad = Strategy::Canary {
            percent: 0,
            bake_ms: 0,
        };
        assert!(bad.validate().is_err());
        assert!(
            Strategy::Canary {
                percent: 101,
                bake_ms: 0
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn blue_green_goes_from_nothing_to_everything() {
        let plan = Progressive {
            strategy: Strategy::BlueGreen,
            ..Progressive::default()
        };
        let mut r = RolloutProgress::new(plan, Some(1), 0);
        assert_eq!((r.phase, r.weight), (Phase::Starting, 0));
        r.tick(10, false, false, None);
        assert_eq!(r.weight, 0, "no request before every new task is healthy");
        assert!(r.tick(20, true, false, None).weight_changed);
        assert_eq!((r.phase, r.weight), (Phase::Full, 100));
        r.tick(30, true, true, None);
        assert_eq!(r.phase, Phase::Done);
    }

    #[test]
    fn the_bake_after_a_rolling_update_is_watched_too() {
        let plan = Progressive {
            strategy: Strategy::Rolling,
            bake_ms: 60_000,
            analysis: Some(Analysis {
                interval_ms: 1000,
                failures: 2,
                ..Analysis::default()
            }),
            sticky: true,
        };
        let mut r = RolloutProgress::new(plan, Some(1), 0);
        assert_eq!(
            (r.phase, r.weight),
            (Phase::Full, 100),
            "rolling: no weights"
        );
        assert!(!r.holds_old());
        // While both versions serve, the stable one's measurements become the reference.
        r.tick(1000, false, false, Some((s(100, 0, 2), Some(s(100, 0, 2)))));
        assert_eq!(r.baseline, Some(s(100, 0, 2)));
        r.tick(2000, true, true, None);
        assert_eq!(r.phase, Phase::Baking);
        // Alone now, it is judged against that reference.
        let bad = Some((s(100, 20, 2), None));
        assert!(r.tick(3000, true, true, bad).rollback.is_none());
        let t = r.tick(4000, true, true, bad);
        assert_eq!(
            t.rollback.as_deref(),
            Some("error rate 20.0 % vs stable 0.0 % over 2 intervals")
        );
        assert_eq!(r.phase, Phase::Done);
        assert!(r.failed.is_some());
    }

    #[test]
    fn promote_skips_the_rest_and_the_first_deployment_takes_everything() {
        let mut r = canary(600_000, 600_000);
        r.tick(0, true, false, None);
        let t = r.promote(10);
        assert!(t.weight_changed);
        r.tick(20, true, true, None);
        assert_eq!(r.phase, Phase::Done);
        let first = RolloutProgress::new(canary(1, 0).plan, None, 0);
        assert_eq!((first.weight, first.phase), (100, Phase::Full));
    }
}
