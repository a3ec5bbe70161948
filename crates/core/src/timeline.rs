//! A deployment's timeline as a picture's data: how many tasks of the new version and of
//! the older ones were healthy at each moment, the marks of the deployment's [`Timeline`]
//! (first healthy, first old stopped, old deregistered, old gone, finished), and the window
//! in which both versions answered (seed 002's "how long are two versions reachable").
//!
//! Pure: the console draws it; the numbers are the deployment record's and its tasks'.

use crate::model::{Deployment, RolloutState, Task, Timeline};

/// One mark on the time axis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// Unix ms.
    pub at: i64,
    /// The [`Timeline`] field it comes from (`first_healthy_at` ...), or `rolled_back`.
    pub field: &'static str,
    /// In words.
    pub label: String,
}

/// A step function: the count from `at` until the next point's `at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Point {
    pub at: i64,
    pub count: u32,
}

/// The data of one deployment's picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    /// The axis: from the deployment's start to its end (or `now` while it runs).
    pub start: i64,
    pub end: i64,
    /// Healthy tasks of this deployment.
    pub new: Vec<Point>,
    /// Healthy tasks of older deployments of the service.
    pub old: Vec<Point>,
    pub marks: Vec<Mark>,
    /// Both versions answered: from the first new task healthy to the last old one
    /// deregistered (or gone).
    pub overlap: Option<(i64, i64)>,
    /// The highest count of either series (the picture's vertical scale).
    pub peak: u32,
}

/// The marks of a timeline, in time order, with their field names.
pub fn marks(d: &Deployment) -> Vec<Mark> {
    let tl: &Timeline = &d.timeline;
    let mut out: Vec<Mark> = [
        (
            tl.first_healthy_at,
            "first_healthy_at",
            "first new task healthy",
        ),
        (
            tl.first_old_stopped_at,
            "first_old_stopped_at",
            "first old task stopped",
        ),
        (
            tl.old_deregistered_at,
            "old_deregistered_at",
            "last old task deregistered",
        ),
        (tl.old_gone_at, "old_gone_at", "no old task left"),
    ]
    .into_iter()
    .filter_map(|(at, field, label)| {
        at.map(|at| Mark {
            at,
            field,
            label: label.to_owned(),
        })
    })
    .collect();
    if let Some(at) = tl.finished_at {
        let (field, label) = match d.state {
            RolloutState::RolledBack => (
                "rolled_back",
                format!(
                    "rolled back: {}",
                    d.reason.as_deref().unwrap_or("no reason recorded")
                ),
            ),
            s => ("finished_at", format!("ended {}", s.as_str())),
        };
        out.push(Mark { at, field, label });
    }
    out.sort_by_key(|m| m.at);
    out
}

/// The window in which both versions answered, if there was an older version.
pub fn overlap(d: &Deployment) -> Option<(i64, i64)> {
    let tl = &d.timeline;
    let from = tl.first_healthy_at?;
    let to = tl.old_deregistered_at.or(tl.old_gone_at)?;
    (to >= from).then_some((from, to))
}

/// The picture of deployment `d` from the service's task records (`tasks`: this
/// deployment's and older ones', stopped included), at `now`.
pub fn series(d: &Deployment, tasks: &[Task], now: i64) -> Series {
    let start = d.created_at;
    let end = d.timeline.finished_at.unwrap_or(now).max(start);
    let new = steps(tasks.iter().filter(|t| t.deployment_id == d.id), start, end);
    // Older tasks: created before this deployment, of another one.
    let old = steps(
        tasks
            .iter()
            .filter(|t| t.deployment_id != d.id && t.created_at <= d.created_at),
        start,
        end,
    );
    let peak = new
        .iter()
        .chain(old.iter())
        .map(|p| p.count)
        .max()
        .unwrap_or(0)
        .max(d.desired_count);
    Series {
        start,
        end,
        new,
        old,
        marks: marks(d),
        overlap: overlap(d),
        peak,
    }
}

/// Healthy counts of `tasks` over [start, end]: +1 when a task became healthy, -1 when it
/// stopped (a task stopped without ever being healthy never counts).
fn steps<'a>(tasks: impl Iterator<Item = &'a Task>, start: i64, end: i64) -> Vec<Point> {
    let mut changes: Vec<(i64, i32)> = Vec::new();
    for t in tasks {
        let Some(up) = t.healthy_at else { continue };
        let down = t.stopped_at.filter(|s| *s >= up);
        if down.is_some_and(|s| s <= start) || up > end {
            continue;
        }
        changes.push((up.max(start), 1));
        if let Some(s) = down.filter(|s| *s <= end) {
            changes.push((s, -1));
        }
    }
    changes.sort();
    let mut out = vec![Point {
        at: start,
        count: 0,
    }];
    let mut count: i64 = 0;
    for (at, delta) in changes {
        count += i64::from(delta);
        let c = count.max(0) as u32;
        match out.last_mut() {
            Some(last) if last.at == at => last.count = c,
            _ => out.push(Point { at, count: c }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ServiceKey, Task};

    fn dep(state: RolloutState, timeline: Timeline) -> Deployment {
        Deployment {
            id: "d2".into(),
            service: ServiceKey::new("a", "e", "s"),
            revision: 2,
            desired_count: 2,
            state,
            reason: Some("circuit breaker: 2 tasks failed in a row".into()),
            failed_tasks: 0,
            rollback_of: None,
            rolled_back_by: None,
            created_at: 1_000,
            updated_at: 1_000,
            timeline,
            rollout: None,
            version: 1,
        }
    }

    fn task(id: &str, dep: &str, created: i64, healthy: Option<i64>, stopped: Option<i64>) -> Task {
        let mut t = Task::provisioning(
            id.into(),
            ServiceKey::new("a", "e", "s"),
            dep.into(),
            1,
            created,
        );
        t.healthy_at = healthy;
        t.stopped_at = stopped;
        t
    }

    #[test]
    fn a_rolling_deploy_hands_over_from_old_to_new() {
        let d = dep(
            RolloutState::Succeeded,
            Timeline {
                first_healthy_at: Some(2_000),
                first_old_stopped_at: Some(2_100),
                old_deregistered_at: Some(3_000),
                old_gone_at: Some(3_500),
                finished_at: Some(4_000),
            },
        );
        let tasks = vec![
            task("o1", "d1", 0, Some(100), Some(2_200)),
            task("o2", "d1", 0, Some(100), Some(3_500)),
            task("n1", "d2", 1_100, Some(2_000), None),
            task("n2", "d2", 1_100, Some(2_900), None),
            // Never healthy: never counted.
            task("n0", "d2", 1_050, None, Some(1_500)),
            // Started after the deployment: not an older version's.
            task("x", "d3", 5_000, Some(5_100), None),
        ];
        let s = series(&d, &tasks, 9_999);
        assert_eq!((s.start, s.end), (1_000, 4_000));
        let pts = |v: &[Point]| v.iter().map(|p| (p.at, p.count)).collect::<Vec<_>>();
        assert_eq!(pts(&s.new), vec![(1_000, 0), (2_000, 1), (2_900, 2)]);
        assert_eq!(pts(&s.old), vec![(1_000, 2), (2_200, 1), (3_500, 0)]);
        assert_eq!(s.overlap, Some((2_000, 3_000)));
        assert_eq!(s.peak, 2);
        let fields: Vec<_> = s.marks.iter().map(|m| m.field).collect();
        assert_eq!(
            fields,
            [
                "first_healthy_at",
                "first_old_stopped_at",
                "old_deregistered_at",
                "old_gone_at",
                "finished_at"
            ]
        );
    }

    #[test]
    fn a_rolled_back_deploy_says_why_and_has_no_overlap_without_a_healthy_new_task() {
        let d = dep(
            RolloutState::RolledBack,
            Timeline {
                finished_at: Some(3_000),
                ..Timeline::default()
            },
        );
        let s = series(&d, &[task("o1", "d1", 0, Some(100), None)], 9_999);
        assert_eq!(s.overlap, None);
        let last = s.marks.last().unwrap();
        assert_eq!(last.field, "rolled_back");
        assert!(last.label.contains("circuit breaker"), "{}", last.label);
        assert_eq!(
            s.old.iter().map(|p| (p.at, p.count)).collect::<Vec<_>>(),
            vec![(1_000, 1)]
        );
    }

    #[test]
    fn a_running_deploy_ends_its_axis_now() {
        let d = dep(RolloutState::InProgress, Timeline::default());
        let s = series(&d, &[], 7_000);
        assert_eq!((s.start, s.end), (1_000, 7_000));
        assert_eq!(
            s.new,
            vec![Point {
                at: 1_000,
                count: 0
            }]
        );
        assert!(s.marks.is_empty());
        assert_eq!(s.peak, 2, "the desired count sets the scale");
    }
}
