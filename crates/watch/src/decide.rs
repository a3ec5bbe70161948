//! The pure decisions of a check: update or not, is the new version healthy yet, what to
//! prune, and what `--once` exits with.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use slipway_runtime::Health;

/// What a check of one service ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The running digest is the registry's.
    UpToDate,
    /// Moved to the new digest, which is healthy.
    Updated,
    /// The new digest failed; the previous one runs again.
    RolledBack,
    /// The new digest failed and so did restoring the previous one.
    RollbackFailed,
    /// The registry still serves a digest that was rolled back; waiting for a new push.
    KnownBad,
    /// Not checked: the service has no running container.
    NotRunning,
    /// The check or the update could not be done; nothing was changed.
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::UpToDate => "up_to_date",
            Outcome::Updated => "updated",
            Outcome::RolledBack => "rolled_back",
            Outcome::RollbackFailed => "rollback_failed",
            Outcome::KnownBad => "known_bad",
            Outcome::NotRunning => "not_running",
            Outcome::Error => "error",
        }
    }
}

/// What to do after the registry answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    UpToDate,
    /// The registry's digest was rolled back before: don't try it again.
    KnownBad,
    Update,
}

/// `running`: the digest the service runs, if known; `failed`: the last rolled-back digest.
pub fn decide(running: Option<&str>, remote: &str, failed: Option<&str>) -> Check {
    if running == Some(remote) {
        Check::UpToDate
    } else if failed == Some(remote) {
        Check::KnownBad
    } else {
        Check::Update
    }
}

/// One container of the service as observed while waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub name: String,
    pub status: String,
    pub exit_code: Option<i64>,
    pub restart_count: i64,
    pub health: Health,
    pub health_output: Option<String>,
    /// Runs the image being rolled out.
    pub on_target: bool,
}

/// The health verdict at one point of the wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not decided yet (why, for the timeout message).
    Wait(String),
    Healthy,
    Failed(String),
}

/// Judges the containers of a service. Without a health check, a container counts as
/// healthy once it has run for `settle` without exiting or restarting.
pub fn judge(obs: &[Observed], has_check: bool, elapsed: Duration, settle: Duration) -> Verdict {
    if obs.is_empty() {
        return Verdict::Wait("no container of the service exists".into());
    }
    for o in obs {
        match o.status.as_str() {
            "exited" | "dead" => {
                return Verdict::Failed(format!(
                    "container {} exited{}",
                    o.name,
                    o.exit_code
                        .map(|c| format!(" with code {c}"))
                        .unwrap_or_default()
                ));
            }
            "restarting" => {
                return Verdict::Failed(format!(
                    "container {} is restarting (last exit code {})",
                    o.name,
                    o.exit_code.unwrap_or(0)
                ));
            }
            _ => {}
        }
        if o.restart_count > 0 && o.on_target {
            return Verdict::Failed(format!(
                "container {} restarted {} time(s)",
                o.name, o.restart_count
            ));
        }
        if o.health == Health::Unhealthy {
            return Verdict::Failed(format!(
                "container {} is unhealthy{}",
                o.name,
                o.health_output
                    .as_deref()
                    .filter(|s| !s.is_empty())
                    .map(|s| format!(" (last probe: {s})"))
                    .unwrap_or_default()
            ));
        }
    }
    if let Some(o) = obs.iter().find(|o| !o.on_target) {
        return Verdict::Wait(format!("container {} still runs the old image", o.name));
    }
    if let Some(o) = obs.iter().find(|o| o.status != "running") {
        return Verdict::Wait(format!("container {} is {}", o.name, o.status));
    }
    if has_check {
        match obs.iter().find(|o| o.health != Health::Healthy) {
            Some(o) => Verdict::Wait(format!("container {} health is starting", o.name)),
            None => Verdict::Healthy,
        }
    } else if elapsed >= settle {
        Verdict::Healthy
    } else {
        Verdict::Wait("running, no health check: waiting to see it stay up".into())
    }
}

/// Splits the newest-first history of images into the ones to keep (the current one and
/// `keep` previous ones) and the ones to prune.
pub fn prune_plan<T: Clone>(history: &[T], keep: usize) -> (Vec<T>, Vec<T>) {
    let n = (keep + 1).min(history.len());
    (history[..n].to_vec(), history[n..].to_vec())
}

/// `--once` exit code: 0 nothing to do or updated; 2 something was rolled back; 3 a
/// rollback failed; 1 an error (a check, an update or a compose file).
pub fn exit_code(outcomes: &[Outcome], other_errors: usize) -> u8 {
    if outcomes.contains(&Outcome::RollbackFailed) {
        3
    } else if outcomes.contains(&Outcome::RolledBack) {
        2
    } else if other_errors > 0 || outcomes.contains(&Outcome::Error) {
        1
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(status: &str, health: Health) -> Observed {
        Observed {
            name: "p_web_1".into(),
            status: status.into(),
            exit_code: None,
            restart_count: 0,
            health,
            health_output: None,
            on_target: true,
        }
    }

    #[test]
    fn decisions() {
        assert_eq!(decide(Some("a"), "a", None), Check::UpToDate);
        assert_eq!(decide(Some("a"), "b", None), Check::Update);
        assert_eq!(decide(None, "b", None), Check::Update);
        assert_eq!(decide(Some("a"), "b", Some("b")), Check::KnownBad);
        // A digest that failed once but is running now is simply up to date.
        assert_eq!(decide(Some("b"), "b", Some("b")), Check::UpToDate);
    }

    #[test]
    fn health_verdicts() {
        let s = Duration::from_secs(5);
        let z = Duration::ZERO;
        assert!(matches!(judge(&[], true, z, s), Verdict::Wait(_)));
        assert_eq!(
            judge(&[c("running", Health::Healthy)], true, z, s),
            Verdict::Healthy
        );
        assert!(matches!(
            judge(&[c("running", Health::Starting)], true, z, s),
            Verdict::Wait(_)
        ));
        let mut u = c("running", Health::Unhealthy);
        u.health_output = Some("503".into());
        match judge(&[u], true, z, s) {
            Verdict::Failed(r) => assert!(r.contains("unhealthy") && r.contains("503"), "{r}"),
            v => panic!("{v:?}"),
        }
        let mut e = c("exited", Health::None);
        e.exit_code = Some(3);
        match judge(&[e], false, z, s) {
            Verdict::Failed(r) => assert!(r.contains("code 3"), "{r}"),
            v => panic!("{v:?}"),
        }
        let mut r = c("running", Health::None);
        r.restart_count = 2;
        assert!(matches!(judge(&[r], false, s, s), Verdict::Failed(_)));
        // No health check: healthy only after the settle time.
        assert!(matches!(
            judge(&[c("running", Health::None)], false, z, s),
            Verdict::Wait(_)
        ));
        assert_eq!(
            judge(&[c("running", Health::None)], false, s, s),
            Verdict::Healthy
        );
        // Every container must be on the new image and healthy.
        let mut old = c("running", Health::Healthy);
        old.on_target = false;
        assert!(matches!(
            judge(&[c("running", Health::Healthy), old], true, z, s),
            Verdict::Wait(_)
        ));
    }

    #[test]
    fn pruning_keeps_current_and_n_previous() {
        let h = ["d4", "d3", "d2", "d1"];
        assert_eq!(prune_plan(&h, 2), (vec!["d4", "d3", "d2"], vec!["d1"]));
        assert_eq!(prune_plan(&h, 0), (vec!["d4"], vec!["d3", "d2", "d1"]));
        assert_eq!(prune_plan(&h[..1], 2), (vec!["d4"], vec![]));
    }

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(&[], 0), 0);
        assert_eq!(
            exit_code(&[Outcome::UpToDate, Outcome::Updated, Outcome::KnownBad], 0),
            0
        );
        assert_eq!(exit_code(&[Outcome::Updated, Outcome::Error], 0), 1);
        assert_eq!(exit_code(&[Outcome::UpToDate], 1), 1);
        assert_eq!(exit_code(&[Outcome::Error, Outcome::RolledBack], 0), 2);
        assert_eq!(
            exit_code(&[Outcome::RolledBack, Outcome::RollbackFailed], 0),
            3
        );
    }
}
