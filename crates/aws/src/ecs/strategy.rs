//! ECS deployment strategies (the 2025 API): `deploymentConfiguration.strategy` (`ROLLING`,
//! `BLUE_GREEN`, `LINEAR`, `CANARY`), `bakeTimeInMinutes`, `canaryConfiguration` and
//! `linearConfiguration` onto Slipway's progressive delivery plan, and a deployment's
//! progress back in ECS's shapes.
//!
//! What ECS blue/green needs besides the strategy is accepted and ignored, or refused:
//! - `loadBalancers[].advancedConfiguration` (`alternateTargetGroupArn`, listener rules,
//!   role): ignored. Slipway's ingress weights requests between the two versions itself;
//!   there is no second target group to name. A service takes requests when its manifest
//!   gives it ingress routes (`http:`) or it is attached to a target group
//!   (`loadBalancers[]`, see the ELBv2 face).
//! - `lifecycleHooks`: refused when not empty. A hook is a gate (a Lambda function that
//!   may fail the deployment, or a PAUSE until `ContinueServiceDeployment`); ignoring one
//!   would let a rollout run past the check its owner put there. Slipway judges a version
//!   by its analysis and `slipway promote` / `slipway abort` instead.
//! - test traffic (`testListenerRule`): none; `TEST_TRAFFIC_SHIFT` never shows.

use slipway_core::rollout::{self as r, Outcome, Phase, Progressive, RolloutProgress, Strategy};

use super::*;

/// `canaryConfiguration`.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct CanaryReq {
    canary_percent: Option<f64>,
    canary_bake_time_in_minutes: Option<i64>,
}

/// `linearConfiguration`.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct LinearReq {
    step_percent: Option<f64>,
    step_bake_time_in_minutes: Option<i64>,
}

/// The strategy members of a `deploymentConfiguration`.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct StrategyReq {
    strategy: Option<String>,
    bake_time_in_minutes: Option<i64>,
    canary_configuration: Option<CanaryReq>,
    linear_configuration: Option<LinearReq>,
    lifecycle_hooks: Option<Vec<Value>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Rolling,
    BlueGreen,
    Linear,
    Canary,
}

impl Kind {
    fn of(s: &Strategy) -> Kind {
        match s {
            Strategy::Rolling => Kind::Rolling,
            Strategy::BlueGreen => Kind::BlueGreen,
            Strategy::Linear { .. } => Kind::Linear,
            Strategy::Canary { .. } => Kind::Canary,
        }
    }
}

/// The ECS name of a strategy.
pub(super) fn strategy_name(s: &Strategy) -> &'static str {
    match s {
        Strategy::Rolling => "ROLLING",
        Strategy::BlueGreen => "BLUE_GREEN",
        Strategy::Linear { .. } => "LINEAR",
        Strategy::Canary { .. } => "CANARY",
    }
}

/// What a request asks of the strategy, each member checked (names as ECS gives them); the
/// members it leaves out keep the service's values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct StrategyAsk {
    kind: Option<Kind>,
    bake_ms: Option<u64>,
    percent: Option<u32>,
    step_bake_ms: Option<u64>,
    /// `canaryConfiguration` or `linearConfiguration` was given: it names its strategy.
    config_of: Option<Kind>,
}

const FIELD: &str = "deploymentConfiguration";

fn minutes(v: i64, field: &str) -> AwsResult<u64> {
    if (0..=1440).contains(&v) {
        Ok(v as u64 * 60_000)
    } else {
        Err(AwsError::invalid(format!(
            "{FIELD}.{field} must be between 0 and 1440 minutes, got {v}"
        )))
    }
}

/// Requests are weighted in whole percent: ECS's 0.1 steps are refused, not rounded.
fn percent(v: f64, field: &str) -> AwsResult<u32> {
    if v.fract() == 0.0 && (1.0..=100.0).contains(&v) {
        Ok(v as u32)
    } else {
        Err(AwsError::invalid(format!(
            "{FIELD}.{field} must be a whole number from 1 to 100 on Slipway (requests are weighted in whole percent), got {v}"
        )))
    }
}

impl StrategyReq {
    /// Checks the members; `None` when the request says nothing of the strategy.
    pub(super) fn ask(&self) -> AwsResult<Option<StrategyAsk>> {
        if self.lifecycle_hooks.as_ref().is_some_and(|h| !h.is_empty()) {
            return Err(AwsError::invalid(format!(
                "{FIELD}.lifecycleHooks are not supported by Slipway: a version is judged by its analysis of the ingress' measurements (and `slipway promote` / `slipway abort`); leave lifecycleHooks out"
            )));
        }
        if self.strategy.is_none()
            && self.bake_time_in_minutes.is_none()
            && self.canary_configuration.is_none()
            && self.linear_configuration.is_none()
        {
            return Ok(None);
        }
        let kind = match self.strategy.as_deref() {
            None => None,
            Some("ROLLING") => Some(Kind::Rolling),
            Some("BLUE_GREEN") => Some(Kind::BlueGreen),
            Some("LINEAR") => Some(Kind::Linear),
            Some("CANARY") => Some(Kind::Canary),
            Some(other) => {
                return Err(AwsError::invalid(format!(
                    "{FIELD}.strategy must be one of ROLLING, BLUE_GREEN, LINEAR, CANARY, got {other:?}"
                )));
            }
        };
        let mut ask = StrategyAsk {
            kind,
            bake_ms: self
                .bake_time_in_minutes
                .map(|m| minutes(m, "bakeTimeInMinutes"))
                .transpose()?,
            ..StrategyAsk::default()
        };
        if let Some(c) = &self.canary_configuration {
            ask.config_of = Some(Kind::Canary);
            ask.percent = c
                .canary_percent
                .map(|p| percent(p, "canaryConfiguration.canaryPercent"))
                .transpose()?;
            ask.step_bake_ms = c
                .canary_bake_time_in_minutes
                .map(|m| minutes(m, "canaryConfiguration.canaryBakeTimeInMinutes"))
                .transpose()?;
        }
        if let Some(l) = &self.linear_configuration {
            if ask.config_of.is_some() {
                return Err(AwsError::invalid(format!(
                    "{FIELD}: give canaryConfiguration or linearConfiguration, not both"
                )));
            }
            ask.config_of = Some(Kind::Linear);
            ask.percent = l
                .step_percent
                .map(|p| percent(p, "linearConfiguration.stepPercent"))
                .transpose()?;
            ask.step_bake_ms = l
                .step_bake_time_in_minutes
                .map(|m| minutes(m, "linearConfiguration.stepBakeTimeInMinutes"))
                .transpose()?;
        }
        Ok(Some(ask))
    }
}

impl StrategyAsk {
    /// The plan the service has after the request: members left out keep the service's
    /// values (for its strategy; ECS's defaults for another: canary 5 % for 10 minutes,
    /// linear 10 % steps of 6 minutes, no bake after 100 %). Analysis is on, as a manifest
    /// has it, when the service has ingress routes and the plan weights requests or bakes;
    /// its rules are the service's when it has some (a manifest's own thresholds), and a
    /// plan whose analysis a manifest turned off stays without.
    pub(super) fn resolve(
        &self,
        current: &Progressive,
        has_routes: bool,
    ) -> AwsResult<Progressive> {
        let kind = self.kind.unwrap_or(Kind::of(&current.strategy));
        let same = kind == Kind::of(&current.strategy);
        match self.config_of {
            Some(Kind::Canary) if kind != Kind::Canary => {
                return Err(AwsError::invalid(format!(
                    "{FIELD}.canaryConfiguration is only valid with strategy CANARY"
                )));
            }
            Some(Kind::Linear) if kind != Kind::Linear => {
                return Err(AwsError::invalid(format!(
                    "{FIELD}.linearConfiguration is only valid with strategy LINEAR"
                )));
            }
            _ => {}
        }
        let strategy = match (kind, current.strategy) {
            (Kind::Rolling, _) => Strategy::Rolling,
            (Kind::BlueGreen, _) => Strategy::BlueGreen,
            (Kind::Canary, old) => {
                let (p, b) = match old {
                    Strategy::Canary { percent, bake_ms } => (percent, bake_ms),
                    _ => (r::CANARY_PERCENT, r::CANARY_BAKE_MS),
                };
                Strategy::Canary {
                    percent: self.percent.unwrap_or(p),
                    bake_ms: self.step_bake_ms.unwrap_or(b),
                }
            }
            (Kind::Linear, old) => {
                let (p, b) = match old {
                    Strategy::Linear {
                        step_percent,
                        bake_ms,
                    } => (step_percent, bake_ms),
                    _ => (r::LINEAR_STEP_PERCENT, r::LINEAR_BAKE_MS),
                };
                Strategy::Linear {
                    step_percent: self.percent.unwrap_or(p),
                    bake_ms: self.step_bake_ms.unwrap_or(b),
                }
            }
        };
        let bake_ms = self
            .bake_ms
            .unwrap_or(if same { current.bake_ms } else { 0 });
        let turned_off = has_routes && !current.is_plain() && current.analysis.is_none();
        let wanted = slipway_core::rollout::analysis_by_default(&strategy, bake_ms, has_routes)
            && !turned_off;
        Ok(Progressive {
            strategy,
            bake_ms,
            analysis: wanted.then(|| current.analysis.unwrap_or_default()),
            sticky: current.sticky,
        })
    }
}

/// Refuses a configuration whose plan the service cannot run (no ingress routes for a
/// progressive strategy, bakes longer than the deployment timeout), in the model's words.
pub(super) fn check(config: &DeploymentConfig, has_routes: bool) -> AwsResult<()> {
    if config.progressive.is_plain() {
        return Ok(());
    }
    config
        .progressive
        .validate(config.timeout_ms, has_routes)
        .map_err(|m| AwsError::invalid(format!("{FIELD}.strategy: {m}")))
}

/// Whole minutes, rounded up (a manifest may bake for seconds: never shown as no bake).
fn in_minutes(ms: u64) -> u64 {
    ms.div_ceil(60_000)
}

/// `deploymentConfiguration` as `DescribeServices` and `DescribeServiceDeployments` show it:
/// the service's percents and breaker, and `plan`'s strategy.
pub(super) fn configuration_json(config: &DeploymentConfig, plan: &Progressive) -> Value {
    let cb = config.circuit_breaker;
    let mut o = json!({
        "deploymentCircuitBreaker": { "enable": cb.enable, "rollback": cb.rollback },
        "maximumPercent": config.maximum_percent,
        "minimumHealthyPercent": config.minimum_healthy_percent,
        "strategy": strategy_name(&plan.strategy),
    });
    if !plan.is_plain() {
        o["bakeTimeInMinutes"] = json!(in_minutes(plan.bake_ms));
    }
    match plan.strategy {
        Strategy::Canary { percent, bake_ms } => {
            o["canaryConfiguration"] = json!({
                "canaryPercent": f64::from(percent),
                "canaryBakeTimeInMinutes": in_minutes(bake_ms),
            });
        }
        Strategy::Linear {
            step_percent,
            bake_ms,
        } => {
            o["linearConfiguration"] = json!({
                "stepPercent": f64::from(step_percent),
                "stepBakeTimeInMinutes": in_minutes(bake_ms),
            });
        }
        Strategy::Rolling | Strategy::BlueGreen => {}
    }
    o
}

/// Where a rollout stands, in words (`rolloutStateReason` of an IN_PROGRESS deployment,
/// `statusReason` of a service deployment):
/// `CANARY: 5% of production traffic to the new revision; last analysis: pass: …`.
pub(super) fn progress_words(p: &RolloutProgress) -> String {
    let name = strategy_name(&p.plan.strategy);
    let step = match p.phase {
        Phase::Starting => {
            "starting the new revision's tasks; no production traffic to them yet".to_owned()
        }
        Phase::Shifting => format!("{}% of production traffic to the new revision", p.weight),
        Phase::Full if p.weight < 100 => {
            format!("{}% of production traffic to the new revision", p.weight)
        }
        Phase::Full => {
            "100% of production traffic to the new revision; stopping the old revision's tasks"
                .to_owned()
        }
        Phase::Baking => format!(
            "100% of production traffic to the new revision; baking for {}s",
            p.plan.bake_ms / 1000
        ),
        Phase::Done => match &p.failed {
            Some(why) => format!("no production traffic to the new revision: {why}"),
            None => "traffic shift complete".to_owned(),
        },
    };
    let mut s = format!("{name}: {step}");
    if p.promoted && p.failed.is_none() {
        s.push_str(" (promoted)");
    }
    if let Some(v) = &p.last {
        let word = match v.outcome {
            Outcome::Pass => "pass",
            Outcome::Fail => "FAIL",
            Outcome::Inconclusive => "wait",
        };
        s.push_str(&format!("; last analysis: {word}: {}", v.detail));
    }
    s
}

/// ECS `lifecycleStage` of a service deployment. Slipway's phases are not all ECS's stages
/// and come in another order (the old tasks stop before the final bake); the mapping:
///
/// | Slipway | ECS |
/// | --- | --- |
/// | `Starting` (new tasks start, weight 0) | `SCALE_UP` |
/// | `Shifting` (weight 1–99 %) | `PRODUCTION_TRAFFIC_SHIFT` |
/// | `Full` below 100 % (not reached by the model) | `PRODUCTION_TRAFFIC_SHIFT` |
/// | `Full` (100 %, old tasks stopping) | `POST_PRODUCTION_TRAFFIC_SHIFT` |
/// | `Baking` (the bake after 100 %) | `BAKE_TIME` |
/// | `Done`, and a SUCCESSFUL deployment | `CLEAN_UP` |
///
/// None (the member is left out) for a rolling deployment without a bake, whose tasks are
/// replaced as ECS's rolling update does, and for a deployment that failed or was rolled
/// back (its `status` and `rollback` say what happened).
pub(super) fn lifecycle_stage(d: &Deployment) -> Option<&'static str> {
    let p = d.rollout.as_ref()?;
    Some(match d.state {
        RolloutState::Succeeded => "CLEAN_UP",
        RolloutState::Failed | RolloutState::RolledBack => return None,
        RolloutState::InProgress if p.failed.is_some() => return None,
        RolloutState::InProgress => match p.phase {
            Phase::Starting => "SCALE_UP",
            Phase::Shifting => "PRODUCTION_TRAFFIC_SHIFT",
            Phase::Full if p.weight < 100 => "PRODUCTION_TRAFFIC_SHIFT",
            Phase::Full => "POST_PRODUCTION_TRAFFIC_SHIFT",
            Phase::Baking => "BAKE_TIME",
            Phase::Done => "CLEAN_UP",
        },
    })
}

/// Why a deployment was rolled back: its analysis' verdict when analysis failed it.
pub(super) fn rollback_reason(d: &Deployment) -> Option<String> {
    let p = d.rollout.as_ref();
    let failed = p.and_then(|p| p.failed.as_deref());
    // Analysis cuts a version off with its last verdict's detail; an abort says who.
    let by_analysis = p.and_then(|p| p.last.as_ref()).is_some_and(|v| {
        v.outcome == Outcome::Fail && failed.is_some_and(|f| f.starts_with(v.detail.as_str()))
    });
    match (failed, &d.reason) {
        (Some(f), _) if by_analysis => Some(format!("analysis failed: {f}")),
        (_, Some(r)) => Some(r.clone()),
        (Some(f), None) => Some(f.to_owned()),
        (None, None) => None,
    }
}

/// The plan a deployment runs (a deployment without one replaces tasks as a rolling update).
pub(super) fn plan_of(d: &Deployment) -> Progressive {
    d.rollout.as_ref().map(|p| p.plan).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_core::model::Timeline;
    use slipway_core::rollout::{Analysis, Sample};

    fn ask(v: Value) -> AwsResult<Option<StrategyAsk>> {
        serde_json::from_value::<StrategyReq>(v).unwrap().ask()
    }

    /// The plan a request gives a service that has none yet.
    fn plan(v: Value, has_routes: bool) -> AwsResult<Progressive> {
        ask(v)?
            .unwrap()
            .resolve(&Progressive::default(), has_routes)
    }

    #[test]
    fn each_strategy_with_ecs_defaults() {
        assert_eq!(ask(json!({"maximumPercent": 200})).unwrap(), None);
        let p = plan(json!({"strategy": "CANARY"}), true).unwrap();
        assert_eq!(
            p.strategy,
            Strategy::Canary {
                percent: 5,
                bake_ms: 600_000
            }
        );
        assert_eq!(p.bake_ms, 0);
        assert_eq!(p.analysis, Some(Analysis::default()));
        let p = plan(json!({"strategy": "LINEAR"}), true).unwrap();
        assert_eq!(
            p.strategy,
            Strategy::Linear {
                step_percent: 10,
                bake_ms: 360_000
            }
        );
        let p = plan(json!({"strategy": "BLUE_GREEN"}), true).unwrap();
        assert_eq!((p.strategy, p.bake_ms), (Strategy::BlueGreen, 0));
        assert!(p.analysis.is_some());
        let p = plan(json!({"strategy": "ROLLING"}), true).unwrap();
        assert!(p.is_plain() && p.analysis.is_none(), "{p:?}");
        // A bake after a rolling update is judged when there are routes, and only waited
        // for without.
        let p = plan(json!({"strategy": "ROLLING", "bakeTimeInMinutes": 3}), true).unwrap();
        assert_eq!((p.strategy, p.bake_ms), (Strategy::Rolling, 180_000));
        assert!(p.analysis.is_some());
        let p = plan(json!({"bakeTimeInMinutes": 3}), false).unwrap();
        assert_eq!(
            (p.strategy, p.bake_ms, p.analysis),
            (Strategy::Rolling, 180_000, None)
        );
    }

    #[test]
    fn explicit_values() {
        let p = plan(
            json!({"strategy": "CANARY", "bakeTimeInMinutes": 2,
                   "canaryConfiguration": {"canaryPercent": 20.0, "canaryBakeTimeInMinutes": 0}}),
            true,
        )
        .unwrap();
        assert_eq!(
            p.strategy,
            Strategy::Canary {
                percent: 20,
                bake_ms: 0
            }
        );
        assert_eq!(p.bake_ms, 120_000);
        let p = plan(
            json!({"strategy": "LINEAR",
                   "linearConfiguration": {"stepPercent": 25, "stepBakeTimeInMinutes": 1}}),
            true,
        )
        .unwrap();
        assert_eq!(
            p.strategy,
            Strategy::Linear {
                step_percent: 25,
                bake_ms: 60_000
            }
        );
        // Only one member: the others keep the service's values.
        let current = p;
        let p = ask(json!({"linearConfiguration": {"stepPercent": 50}}))
            .unwrap()
            .unwrap()
            .resolve(&current, true)
            .unwrap();
        assert_eq!(
            p.strategy,
            Strategy::Linear {
                step_percent: 50,
                bake_ms: 60_000
            }
        );
        // A manifest's analysis rules and stickiness are kept; analysis it turned off stays
        // off.
        let custom = Progressive {
            analysis: Some(Analysis {
                failures: 7,
                ..Analysis::default()
            }),
            sticky: false,
            ..current
        };
        let p = ask(json!({"strategy": "CANARY"}))
            .unwrap()
            .unwrap()
            .resolve(&custom, true)
            .unwrap();
        assert_eq!((p.analysis.map(|a| a.failures), p.sticky), (Some(7), false));
        let off = Progressive {
            analysis: None,
            ..current
        };
        let p = ask(json!({"strategy": "CANARY"}))
            .unwrap()
            .unwrap()
            .resolve(&off, true)
            .unwrap();
        assert_eq!(p.analysis, None);
    }

    #[test]
    fn bad_input_names_the_field() {
        for (v, field) in [
            (
                json!({"strategy": "CANARY", "canaryConfiguration": {"canaryPercent": 2.5}}),
                "canaryConfiguration.canaryPercent",
            ),
            (
                json!({"strategy": "CANARY", "canaryConfiguration": {"canaryPercent": 0}}),
                "canaryConfiguration.canaryPercent",
            ),
            (
                json!({"strategy": "CANARY", "canaryConfiguration": {"canaryPercent": 101}}),
                "canaryConfiguration.canaryPercent",
            ),
            (
                json!({"strategy": "LINEAR", "linearConfiguration": {"stepPercent": 0.5}}),
                "linearConfiguration.stepPercent",
            ),
            (
                json!({"strategy": "LINEAR", "linearConfiguration": {"stepBakeTimeInMinutes": -1}}),
                "linearConfiguration.stepBakeTimeInMinutes",
            ),
            (
                json!({"strategy": "CANARY", "canaryConfiguration": {"canaryBakeTimeInMinutes": 1441}}),
                "canaryConfiguration.canaryBakeTimeInMinutes",
            ),
            (json!({"bakeTimeInMinutes": -5}), "bakeTimeInMinutes"),
            (json!({"strategy": "canary"}), "strategy"),
            (
                json!({"lifecycleHooks": [{"hookTargetArn": "arn:aws:lambda:x", "lifecycleStages": ["PRE_SCALE_UP"]}]}),
                "lifecycleHooks",
            ),
        ] {
            let e = ask(v.clone()).unwrap_err();
            assert_eq!(e.kind, "InvalidParameterException", "{v}");
            assert!(
                e.message
                    .starts_with(&format!("deploymentConfiguration.{field} ")),
                "{v}: {}",
                e.message
            );
        }
        // A configuration of another strategy than the one the service will have.
        let e = plan(
            json!({"strategy": "LINEAR", "canaryConfiguration": {"canaryPercent": 5}}),
            true,
        )
        .unwrap_err();
        assert!(
            e.message
                .contains("canaryConfiguration is only valid with strategy CANARY"),
            "{}",
            e.message
        );
        let e = plan(json!({"linearConfiguration": {"stepPercent": 5}}), true).unwrap_err();
        assert!(
            e.message.contains("only valid with strategy LINEAR"),
            "{}",
            e.message
        );
        // An empty list of hooks is no hook.
        assert!(ask(json!({"lifecycleHooks": []})).unwrap().is_none());
    }

    #[test]
    fn a_progressive_plan_needs_routes_and_time() {
        let mut c = DeploymentConfig {
            progressive: plan(json!({"strategy": "CANARY"}), false).unwrap(),
            ..DeploymentConfig::default()
        };
        let e = check(&c, false).unwrap_err();
        assert_eq!(e.kind, "InvalidParameterException");
        assert_eq!(
            e.message,
            "deploymentConfiguration.strategy: strategy canary with analysis needs ingress routes (http:), and this service has none; use strategy rolling"
        );
        c.progressive = plan(json!({"strategy": "LINEAR"}), true).unwrap();
        let e = check(&c, true).unwrap_err();
        assert!(
            e.message
                .contains("not shorter than the deployment timeout"),
            "{}",
            e.message
        );
        c.timeout_ms = 10 * 60_000 + c.progressive.total_bake_ms();
        assert!(check(&c, true).is_ok());
        assert!(check(&DeploymentConfig::default(), false).is_ok());
    }

    #[test]
    fn configuration_echoes_as_set() {
        let c = DeploymentConfig::default();
        let o = configuration_json(&c, &c.progressive);
        assert_eq!(o["strategy"], "ROLLING");
        assert!(o.get("bakeTimeInMinutes").is_none() && o.get("canaryConfiguration").is_none());
        assert_eq!(o["maximumPercent"], 200);
        let p = plan(
            json!({"strategy": "CANARY", "bakeTimeInMinutes": 2,
                   "canaryConfiguration": {"canaryPercent": 20, "canaryBakeTimeInMinutes": 0}}),
            true,
        )
        .unwrap();
        let o = configuration_json(&c, &p);
        assert_eq!(o["strategy"], "CANARY");
        assert_eq!(o["bakeTimeInMinutes"], 2);
        assert_eq!(
            o["canaryConfiguration"],
            json!({"canaryPercent": 20.0, "canaryBakeTimeInMinutes": 0})
        );
        assert!(o.get("linearConfiguration").is_none());
        let p = plan(json!({"strategy": "LINEAR"}), true).unwrap();
        let o = configuration_json(&c, &p);
        assert_eq!(
            o["linearConfiguration"],
            json!({"stepPercent": 10.0, "stepBakeTimeInMinutes": 6})
        );
        // A manifest's bake of seconds shows as a minute, not as none.
        let p = Progressive {
            bake_ms: 5000,
            ..Progressive::default()
        };
        assert_eq!(configuration_json(&c, &p)["bakeTimeInMinutes"], 1);
    }

    fn deployment(rollout: Option<RolloutProgress>, state: RolloutState) -> Deployment {
        Deployment {
            id: "d2".into(),
            service: ServiceKey::new("shop", "default", "web"),
            revision: 2,
            desired_count: 2,
            state,
            reason: None,
            failed_tasks: 0,
            rollback_of: None,
            rolled_back_by: None,
            created_at: 0,
            updated_at: 0,
            timeline: Timeline::default(),
            rollout,
            version: 1,
        }
    }

    fn canary() -> RolloutProgress {
        let plan = plan(
            json!({"strategy": "CANARY", "bakeTimeInMinutes": 1,
                   "canaryConfiguration": {"canaryPercent": 5, "canaryBakeTimeInMinutes": 0}}),
            true,
        )
        .unwrap();
        RolloutProgress::new(plan, Some(1), 0)
    }

    fn sample(requests: u64, errors: u64, p99_us: u64) -> Sample {
        Sample {
            requests,
            errors,
            p99_us: Some(p99_us),
        }
    }

    #[test]
    fn progress_in_words_and_lifecycle_stages() {
        let mut p = canary();
        let stage = |p: &RolloutProgress| {
            lifecycle_stage(&deployment(Some(p.clone()), RolloutState::InProgress))
        };
        assert_eq!(stage(&p), Some("SCALE_UP"));
        assert_eq!(
            progress_words(&p),
            "CANARY: starting the new revision's tasks; no production traffic to them yet"
        );
        p.tick(1000, true, false, None);
        assert_eq!((p.phase, p.weight), (Phase::Shifting, 5));
        assert_eq!(stage(&p), Some("PRODUCTION_TRAFFIC_SHIFT"));
        // An interval passes: the step's words carry the verdict (the bake of the step is 0,
        // so the same tick moves on to 100 %).
        let before = p.clone();
        p.tick(
            61_000,
            true,
            false,
            Some((sample(100, 0, 2000), Some(sample(1000, 0, 1900)))),
        );
        let mut shifting = before;
        shifting.last = p.last.clone();
        assert_eq!(
            progress_words(&shifting),
            "CANARY: 5% of production traffic to the new revision; last analysis: pass: error rate 0.0 % vs stable 0.0 %, p99 2.0 ms vs stable 1.9 ms"
        );
        assert_eq!((p.phase, p.weight), (Phase::Full, 100));
        assert_eq!(stage(&p), Some("POST_PRODUCTION_TRAFFIC_SHIFT"));
        assert!(progress_words(&p).starts_with(
            "CANARY: 100% of production traffic to the new revision; stopping the old revision's tasks"
        ));
        p.tick(62_000, true, true, None);
        assert_eq!(p.phase, Phase::Baking);
        assert_eq!(stage(&p), Some("BAKE_TIME"));
        assert!(
            progress_words(&p).starts_with(
                "CANARY: 100% of production traffic to the new revision; baking for 60s"
            ),
            "{}",
            progress_words(&p)
        );
        p.tick(200_000, true, true, None);
        assert_eq!(p.phase, Phase::Done);
        assert_eq!(stage(&p), Some("CLEAN_UP"));
        let done = deployment(Some(p.clone()), RolloutState::Succeeded);
        assert_eq!(lifecycle_stage(&done), Some("CLEAN_UP"));
        // No stage for a plain rolling deployment, nor for a failed one.
        assert_eq!(
            lifecycle_stage(&deployment(None, RolloutState::InProgress)),
            None
        );
        assert_eq!(
            lifecycle_stage(&deployment(Some(p), RolloutState::RolledBack)),
            None
        );
        // In DescribeServices: an IN_PROGRESS deployment says where it stands.
        let d = deployment(Some(shifting), RolloutState::InProgress);
        let (state, reason) = rollout(&d);
        assert_eq!(state, "IN_PROGRESS");
        assert!(
            reason.starts_with("CANARY: 5% of production traffic"),
            "{reason}"
        );
        let (_, plain) = rollout(&deployment(None, RolloutState::InProgress));
        assert_eq!(plain, "ECS deployment ecs-svc/d2 in progress.");
    }

    #[test]
    fn a_rollback_by_analysis_says_so() {
        let mut p = canary();
        p.tick(0, true, false, None);
        let bad = Some((sample(50, 10, 1000), Some(sample(950, 1, 1000))));
        for i in 1..=3 {
            p.tick(i * 61_000, true, false, bad);
        }
        let why = p.failed.clone().expect("cut off");
        assert_eq!(p.weight, 0);
        let mut d = deployment(Some(p.clone()), RolloutState::RolledBack);
        d.reason = Some(why.clone());
        assert_eq!(
            rollback_reason(&d).as_deref(),
            Some("analysis failed: error rate 20.0 % vs stable 0.1 % over 3 intervals")
        );
        // An abort is no analysis' verdict.
        let mut aborted = canary();
        aborted.tick(0, true, false, None);
        aborted.tick(61_000, true, false, bad);
        aborted.cut_off(62_000, "aborted by ci".into());
        let mut d = deployment(Some(aborted), RolloutState::RolledBack);
        d.reason = Some("aborted by ci".into());
        assert_eq!(rollback_reason(&d).as_deref(), Some("aborted by ci"));
        // A circuit breaker's rollback keeps its reason.
        let mut d = deployment(None, RolloutState::RolledBack);
        d.reason = Some("circuit breaker: 3 tasks failed in a row (threshold 3)".into());
        assert_eq!(rollback_reason(&d), d.reason);
        let words = progress_words(&p);
        assert!(
            words.starts_with(
                "CANARY: no production traffic to the new revision: error rate 20.0 %"
            ),
            "{words}"
        );
    }
}
