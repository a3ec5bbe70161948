//! Task placement across the hosts of a cluster, with ECS's semantics: constraints filter
//! the hosts a task may run on, resources are reserved (a host is never overcommitted), and
//! strategies, in order, pick among the hosts left.
//!
//! - Strategies: `spread` over a field (`host`, or `attribute:NAME`: the values with the
//!   fewest tasks of the service first), `binpack` on `cpu` or `memory` (the host with the
//!   least of it left first), `random`. Later strategies break the ties of earlier ones; the
//!   last ties go to the host with the fewest tasks of the service, then by id.
//! - Constraints: `distinctInstance` (at most one task of the service per host) and
//!   `memberOf` with an expression (`attribute:zone == a`, `!=`, `in [a, b]`, `not in [..]`,
//!   `exists`, combined with `and` / `or`; `and` binds tighter).
//! - A task that fits nowhere is not placed, with ECS's reason: `RESOURCE:MEMORY`,
//!   `RESOURCE:CPU`, `CONSTRAINT:distinctInstance`, `CONSTRAINT:memberOf`, or no usable host.
//!
//! Pure: randomness comes in as a seed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a host is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HostState {
    /// Takes new tasks.
    #[default]
    Active,
    /// Being emptied: takes no new task, its tasks move elsewhere.
    Draining,
    /// Its agent stopped answering: its tasks are replaced elsewhere.
    Lost,
}

impl Placement {
    pub fn is_empty(&self) -> bool {
        self.strategy.is_empty() && self.constraints.is_empty()
    }
}

impl HostState {
    pub fn as_str(self) -> &'static str {
        match self {
            HostState::Active => "ACTIVE",
            HostState::Draining => "DRAINING",
            HostState::Lost => "LOST",
        }
    }
}

/// A host as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostView {
    pub id: String,
    pub state: HostState,
    /// `zone=a` and the like.
    pub attributes: BTreeMap<String, String>,
    /// CPU units (1024 per core) and MiB the host offers to tasks.
    pub cpu: u64,
    pub memory: u64,
    /// Reserved by the tasks placed on it.
    pub cpu_used: u64,
    pub memory_used: u64,
    /// Tasks of the service being placed that run (or are being placed) there.
    pub service_tasks: u32,
}

/// How a service's tasks are placed (ECS `placementStrategy` / `placementConstraints`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub strategy: Vec<Strategy>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<Constraint>,
}

/// One placement strategy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Strategy {
    /// Even out the tasks of the service over the values of `field` (`host` or
    /// `attribute:NAME`).
    Spread {
        field: String,
    },
    /// Fill the hosts with the least `field` (`cpu` or `memory`) left first.
    Binpack {
        field: String,
    },
    Random,
}

/// One placement constraint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type")]
pub enum Constraint {
    /// At most one task of the service per host.
    #[serde(rename = "distinctInstance")]
    DistinctInstance,
    /// Only hosts whose attributes satisfy `expression`.
    #[serde(rename = "memberOf")]
    MemberOf { expression: String },
}

/// What one task needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Need {
    pub cpu: u64,
    pub memory: u64,
}

impl Need {
    /// What a task of this container reserves on its host: its cpu units and memory (MiB).
    pub fn of(c: &crate::model::ContainerSpec) -> Need {
        Need {
            cpu: u64::from(c.cpu.unwrap_or(0)),
            memory: u64::from(c.memory.unwrap_or(0)),
        }
    }
}

/// Why a task could not be placed (ECS's words).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unplaced {
    #[error("RESOURCE:MEMORY (no host has {0} MiB free)")]
    Memory(u64),
    #[error("RESOURCE:CPU (no host has {0} CPU units free)")]
    Cpu(u64),
    #[error("CONSTRAINT:distinctInstance (every usable host runs a task of the service)")]
    DistinctInstance,
    #[error("CONSTRAINT:memberOf (no host matches {0})")]
    MemberOf(String),
    #[error("no ACTIVE host")]
    NoHost,
}

impl Unplaced {
    /// The short reason (`RESOURCE:MEMORY`).
    pub fn code(&self) -> &'static str {
        match self {
            Unplaced::Memory(_) => "RESOURCE:MEMORY",
            Unplaced::Cpu(_) => "RESOURCE:CPU",
            Unplaced::DistinctInstance => "CONSTRAINT:distinctInstance",
            Unplaced::MemberOf(_) => "CONSTRAINT:memberOf",
            Unplaced::NoHost => "NO_HOST",
        }
    }
}

/// Checks a placement as a manifest or an API request gives it.
pub fn validate(p: &Placement) -> Result<(), String> {
    for s in &p.strategy {
        match s {
            Strategy::Spread { field } => {
                if field != "host"
                    && field != "instanceId"
                    && field
                        .strip_prefix("attribute:")
                        .is_none_or(|a| a.trim().is_empty())
                {
                    return Err(format!(
                        "spread field {field:?} must be `host` or `attribute:NAME`"
                    ));
                }
            }
            Strategy::Binpack { field } => {
                if field != "cpu" && field != "memory" {
                    return Err(format!("binpack field {field:?} must be `cpu` or `memory`"));
                }
            }
            Strategy::Random => {}
        }
    }
    for c in &p.constraints {
        if let Constraint::MemberOf { expression } = c {
            Expr::parse(expression)?;
        }
    }
    Ok(())
}

/// Picks the host for one task of a service, or says why none fits.
pub fn place(hosts: &[HostView], need: Need, p: &Placement, seed: u64) -> Result<String, Unplaced> {
    let mut usable: Vec<&HostView> = hosts
        .iter()
        .filter(|h| h.state == HostState::Active)
        .collect();
    if usable.is_empty() {
        return Err(Unplaced::NoHost);
    }
    for c in &p.constraints {
        match c {
            Constraint::DistinctInstance => {
                usable.retain(|h| h.service_tasks == 0);
                if usable.is_empty() {
                    return Err(Unplaced::DistinctInstance);
                }
            }
            Constraint::MemberOf { expression } => {
                let e =
                    Expr::parse(expression).map_err(|_| Unplaced::MemberOf(expression.clone()))?;
                usable.retain(|h| e.eval(&h.attributes));
                if usable.is_empty() {
                    return Err(Unplaced::MemberOf(expression.clone()));
                }
            }
        }
    }
    usable.retain(|h| h.memory.saturating_sub(h.memory_used) >= need.memory);
    if usable.is_empty() {
        return Err(Unplaced::Memory(need.memory));
    }
    usable.retain(|h| h.cpu.saturating_sub(h.cpu_used) >= need.cpu);
    if usable.is_empty() {
        return Err(Unplaced::Cpu(need.cpu));
    }
    let strategies: Vec<Strategy> = if p.strategy.is_empty() {
        vec![Strategy::Spread {
            field: "host".into(),
        }]
    } else {
        p.strategy.clone()
    };
    // Tasks of the service per value of a spread field, over every ACTIVE host (ECS counts
    // a zone's tasks wherever they run in it, not only on hosts that pass this task's
    // filters).
    let active: Vec<&HostView> = hosts
        .iter()
        .filter(|h| h.state == HostState::Active)
        .collect();
    let mut key: Vec<(Vec<i128>, &HostView)> = usable
        .into_iter()
        .map(|h| {
            let mut k = Vec::with_capacity(strategies.len() + 1);
            for s in &strategies {
                k.push(match s {
                    Strategy::Spread { field } => {
                        let value = field_value(h, field);
                        active
                            .iter()
                            .filter(|o| field_value(o, field) == value)
                            .map(|o| i128::from(o.service_tasks))
                            .sum()
                    }
                    Strategy::Binpack { field } => {
                        let (total, used) = if field == "cpu" {
                            (h.cpu, h.cpu_used)
                        } else {
                            (h.memory, h.memory_used)
                        };
                        i128::from(total.saturating_sub(used))
                    }
                    Strategy::Random => i128::from(mix(seed, &h.id)),
                });
            }
            k.push(i128::from(h.service_tasks));
            (k, h)
        })
        .collect();
    key.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
    Ok(key[0].1.id.clone())
}

/// Which tasks a rebalance moves: how many off each host so that the service's tasks are
/// spread again by its first `spread` strategy (`host` when it has no strategy). Greedy:
/// one task at a time leaves the fullest group for where placement would put it, while that
/// lowers the imbalance; a move that would not is not made. Refused for placements that
/// keep no balance (binpack, random).
pub fn rebalance(
    hosts: &[HostView],
    need: Need,
    p: &Placement,
) -> Result<BTreeMap<String, u32>, String> {
    let field = match p.strategy.first() {
        None => "host".to_owned(),
        Some(Strategy::Spread { field }) => field.clone(),
        Some(Strategy::Binpack { .. }) => {
            return Err("a binpack placement keeps no balance to restore".into());
        }
        Some(Strategy::Random) => {
            return Err("a random placement keeps no balance to restore".into());
        }
    };
    let mut view = hosts.to_vec();
    let group = |view: &[HostView], h: &HostView| -> u32 {
        view.iter()
            .filter(|o| o.state == HostState::Active || o.id == h.id)
            .filter(|o| field_value(o, &field) == field_value(h, &field))
            .map(|o| o.service_tasks)
            .sum()
    };
    let mut moves: BTreeMap<String, u32> = BTreeMap::new();
    let total: u32 = view.iter().map(|h| h.service_tasks).sum();
    for _ in 0..total {
        // The fullest group's fullest host gives a task.
        let Some(src) = view
            .iter()
            .filter(|h| h.service_tasks > 0)
            .max_by(|a, b| {
                group(&view, a)
                    .cmp(&group(&view, b))
                    .then(a.service_tasks.cmp(&b.service_tasks))
                    .then(b.id.cmp(&a.id))
            })
            .map(|h| h.id.clone())
        else {
            break;
        };
        let before = view.clone();
        let s = view
            .iter_mut()
            .find(|h| h.id == src)
            .expect("picked from view");
        s.service_tasks -= 1;
        s.cpu_used = s.cpu_used.saturating_sub(need.cpu);
        s.memory_used = s.memory_used.saturating_sub(need.memory);
        let src_after = group(&view, view.iter().find(|h| h.id == src).expect("in view"));
        let Ok(dst) = place(&view, need, p, 0) else {
            view = before;
            break;
        };
        let d = view
            .iter()
            .find(|h| h.id == dst)
            .expect("placed on a host of view");
        if dst == src || group(&view, d) >= src_after {
            view = before;
            break;
        }
        let d = view
            .iter_mut()
            .find(|h| h.id == dst)
            .expect("placed on a host of view");
        d.service_tasks += 1;
        d.cpu_used += need.cpu;
        d.memory_used += need.memory;
        *moves.entry(src).or_default() += 1;
    }
    // A host that both gave and took (possible across groups) moves only the difference.
    for h in hosts {
        let now = view
            .iter()
            .find(|v| v.id == h.id)
            .map_or(0, |v| v.service_tasks);
        if let Some(m) = moves.get_mut(&h.id) {
            *m = h.service_tasks.saturating_sub(now);
        }
    }
    moves.retain(|_, n| *n > 0);
    Ok(moves)
}

/// The value of a spread field on a host (`None`: the host has no such attribute; such
/// hosts count as one group, as ECS does).
fn field_value<'a>(h: &'a HostView, field: &str) -> Option<&'a str> {
    match field.strip_prefix("attribute:") {
        Some(a) => h.attributes.get(a.trim()).map(String::as_str),
        None => Some(h.id.as_str()),
    }
}

/// A stable pseudo-random number for (seed, host).
fn mix(seed: u64, id: &str) -> u32 {
    let mut x = seed ^ 0x9e37_79b9_7f4a_7c15;
    for b in id.bytes() {
        x = (x ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    x ^= x >> 33;
    (x.wrapping_mul(0xff51_afd7_ed55_8ccd) >> 32) as u32
}

/// A `memberOf` expression.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
}

impl Expr {
    fn parse(s: &str) -> Result<Expr, String> {
        let err = || {
            format!(
                "placement expression {s:?}: use attribute:NAME == VALUE, !=, in [A, B], not in [A, B] or exists, joined by and / or"
            )
        };
        let mut ors = Vec::new();
        for alt in split_words(s, "or") {
            let mut ands = Vec::new();
            for term in split_words(&alt, "and") {
                let t = term.trim();
                let (attr, rest) = t.split_once(char::is_whitespace).ok_or_else(err)?;
                let attr = attr.strip_prefix("attribute:").ok_or_else(err)?.to_owned();
                if attr.is_empty() {
                    return Err(err());
                }
                let rest = rest.trim();
                let list = |r: &str| -> Result<Vec<String>, String> {
                    let inner = r
                        .trim()
                        .strip_prefix('[')
                        .and_then(|r| r.strip_suffix(']'))
                        .ok_or_else(err)?;
                    Ok(inner
                        .split(',')
                        .map(|v| v.trim().to_owned())
                        .filter(|v| !v.is_empty())
                        .collect())
                };
                ands.push(if let Some(v) = rest.strip_prefix("==") {
                    Expr::Eq(attr, v.trim().to_owned())
                } else if let Some(v) = rest.strip_prefix("!=") {
                    Expr::Ne(attr, v.trim().to_owned())
                } else if let Some(r) = rest.strip_prefix("not in") {
                    Expr::NotIn(attr, list(r)?)
                } else if let Some(r) = rest.strip_prefix("in") {
                    Expr::In(attr, list(r)?)
                } else if rest == "exists" {
                    Expr::Exists(attr)
                } else {
                    return Err(err());
                });
            }
            ors.push(Expr::And(ands));
        }
        if ors.is_empty() {
            return Err(err());
        }
        Ok(Expr::Or(ors))
    }

    fn eval(&self, attrs: &BTreeMap<String, String>) -> bool {
        match self {
            Expr::Or(v) => v.iter().any(|e| e.eval(attrs)),
            Expr::And(v) => v.iter().all(|e| e.eval(attrs)),
            Expr::Eq(a, v) => attrs.get(a) == Some(v),
            Expr::Ne(a, v) => attrs.get(a) != Some(v),
            Expr::In(a, vs) => attrs.get(a).is_some_and(|x| vs.contains(x)),
            Expr::NotIn(a, vs) => attrs.get(a).is_none_or(|x| !vs.contains(x)),
            Expr::Exists(a) => attrs.contains_key(a),
        }
    }
}

/// Splits on a keyword standing alone (`a == x and b == y`), outside brackets.
fn split_words(s: &str, word: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut depth = 0;
    let tokens: Vec<&str> = s.split_whitespace().collect();
    for t in tokens {
        depth += t.matches('[').count() as i32 - t.matches(']').count() as i32;
        if depth == 0 && t == word {
            parts.push(String::new());
            continue;
        }
        let last = parts.last_mut().expect("one part at least");
        if !last.is_empty() {
            last.push(' ');
        }
        last.push_str(t);
    }
    parts.retain(|p| !p.is_empty());
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_tasks(mut h: HostView, n: u32) -> HostView {
        h.service_tasks = n;
        h.memory_used = u64::from(n) * 32;
        h
    }

    #[test]
    fn rebalance_moves_tasks_to_a_new_host_and_leaves_a_balanced_service_alone() {
        let need = Need { cpu: 0, memory: 32 };
        let p = Placement::default();
        // A third host joined a service of 6 on two hosts: 1 moves off each.
        let hosts = [
            with_tasks(host("a", "a", 1024), 3),
            with_tasks(host("b", "a", 1024), 3),
            host("c", "b", 1024),
        ];
        let moves = rebalance(&hosts, need, &p).unwrap();
        assert_eq!(moves, BTreeMap::from([("a".into(), 1), ("b".into(), 1)]));
        // Balanced (7 on 3, off by one at most): nothing moves, whichever host has 3.
        for fullest in ["a", "b", "c"] {
            let hosts: Vec<HostView> = ["a", "b", "c"]
                .iter()
                .map(|id| with_tasks(host(id, "a", 1024), if *id == fullest { 3 } else { 2 }))
                .collect();
            assert_eq!(rebalance(&hosts, need, &p).unwrap(), BTreeMap::new());
        }
        // All on one host of three: 4 of 6 move.
        let hosts = [
            with_tasks(host("a", "a", 1024), 6),
            host("b", "a", 1024),
            host("c", "b", 1024),
        ];
        assert_eq!(
            rebalance(&hosts, need, &p).unwrap(),
            BTreeMap::from([("a".into(), 4)])
        );
    }

    proptest::proptest! {
        /// Spread by host, any start: a rebalance moves no more tasks than a host has, and
        /// once the moved tasks are placed again the spread is within one.
        #[test]
        fn rebalance_by_host_ends_within_one(counts in proptest::collection::vec(0u32..12, 1..6)) {
            let need = Need { cpu: 0, memory: 32 };
            let p = Placement::default();
            let hosts: Vec<HostView> = counts
                .iter()
                .enumerate()
                .map(|(i, n)| with_tasks(host(&format!("h{i}"), "a", 1024), *n))
                .collect();
            let moves = rebalance(&hosts, need, &p).unwrap();
            let mut after = hosts.clone();
            for h in &mut after {
                let m = moves.get(&h.id).copied().unwrap_or(0);
                proptest::prop_assert!(m <= h.service_tasks);
                h.service_tasks -= m;
                h.memory_used -= u64::from(m) * 32;
            }
            let moved: u32 = moves.values().sum();
            place_n(&mut after, moved as usize, need, &p);
            let max = after.iter().map(|h| h.service_tasks).max().unwrap();
            let min = after.iter().map(|h| h.service_tasks).min().unwrap();
            proptest::prop_assert!(max - min <= 1, "{:?} -> {:?}", counts, after.iter().map(|h| h.service_tasks).collect::<Vec<_>>());
            let total: u32 = after.iter().map(|h| h.service_tasks).sum();
            proptest::prop_assert_eq!(total, counts.iter().sum::<u32>());
        }
    }

    #[test]
    fn rebalance_by_zone_respects_resources_and_refuses_binpack() {
        let need = Need { cpu: 0, memory: 32 };
        let zone = Placement {
            strategy: vec![Strategy::Spread {
                field: "attribute:zone".into(),
            }],
            constraints: vec![],
        };
        // Zone a runs 6, zone b none: 3 move to zone b.
        let hosts = [
            with_tasks(host("a1", "a", 1024), 3),
            with_tasks(host("a2", "a", 1024), 3),
            host("b1", "b", 1024),
        ];
        let moves = rebalance(&hosts, need, &zone).unwrap();
        assert_eq!(moves.values().sum::<u32>(), 3, "{moves:?}");
        // Zone b has room for one only: one moves.
        let hosts = [
            with_tasks(host("a1", "a", 1024), 3),
            with_tasks(host("a2", "a", 1024), 3),
            host("b1", "b", 40),
        ];
        assert_eq!(
            rebalance(&hosts, need, &zone)
                .unwrap()
                .values()
                .sum::<u32>(),
            1
        );
        let pack = Placement {
            strategy: vec![Strategy::Binpack {
                field: "memory".into(),
            }],
            constraints: vec![],
        };
        assert!(rebalance(&hosts, need, &pack).is_err());
    }

    fn host(id: &str, zone: &str, memory: u64) -> HostView {
        HostView {
            id: id.into(),
            state: HostState::Active,
            attributes: [("zone".to_owned(), zone.to_owned())].into(),
            cpu: 2048,
            memory,
            cpu_used: 0,
            memory_used: 0,
            service_tasks: 0,
        }
    }

    /// Places `n` tasks one after the other, as the controller does.
    fn place_n(
        hosts: &mut [HostView],
        n: usize,
        need: Need,
        p: &Placement,
    ) -> Vec<Result<String, Unplaced>> {
        (0..n)
            .map(|i| {
                let r = place(hosts, need, p, i as u64);
                if let Ok(id) = &r {
                    let h = hosts.iter_mut().find(|h| &h.id == id).unwrap();
                    h.service_tasks += 1;
                    h.cpu_used += need.cpu;
                    h.memory_used += need.memory;
                }
                r
            })
            .collect()
    }

    fn spread(field: &str) -> Strategy {
        Strategy::Spread {
            field: field.into(),
        }
    }

    #[test]
    fn spread_by_zone_splits_evenly_over_zones() {
        let mut hosts = vec![
            host("h1", "a", 1024),
            host("h2", "a", 1024),
            host("h3", "b", 1024),
        ];
        let p = Placement {
            strategy: vec![spread("attribute:zone"), spread("host")],
            constraints: vec![],
        };
        let placed = place_n(&mut hosts, 6, Need { cpu: 0, memory: 32 }, &p);
        assert!(placed.iter().all(Result::is_ok));
        let zone_b = hosts.iter().find(|h| h.id == "h3").unwrap().service_tasks;
        assert_eq!(zone_b, 3, "zone b gets half");
        assert_eq!(hosts[0].service_tasks + hosts[1].service_tasks, 3);
        assert!(hosts[0].service_tasks.abs_diff(hosts[1].service_tasks) <= 1);
    }

    #[test]
    fn binpack_on_memory_fills_one_host_first() {
        let mut hosts = vec![
            host("h1", "a", 512),
            host("h2", "a", 256),
            host("h3", "b", 1024),
        ];
        let p = Placement {
            strategy: vec![Strategy::Binpack {
                field: "memory".into(),
            }],
            constraints: vec![],
        };
        let placed = place_n(&mut hosts, 4, Need { cpu: 0, memory: 64 }, &p);
        // The host with the least memory left takes tasks until it is full.
        assert!(placed.iter().all(|r| r.as_deref() == Ok("h2")));
        let more = place_n(&mut hosts, 1, Need { cpu: 0, memory: 64 }, &p);
        assert_eq!(
            more[0].as_deref(),
            Ok("h1"),
            "h2 is full; the next least is h1"
        );
    }

    #[test]
    fn distinct_instance_leaves_the_rest_unplaced_with_the_reason() {
        let mut hosts = vec![
            host("h1", "a", 1024),
            host("h2", "a", 1024),
            host("h3", "b", 1024),
        ];
        let p = Placement {
            strategy: vec![],
            constraints: vec![Constraint::DistinctInstance],
        };
        let placed = place_n(&mut hosts, 4, Need::default(), &p);
        assert_eq!(placed.iter().filter(|r| r.is_ok()).count(), 3);
        assert_eq!(placed[3], Err(Unplaced::DistinctInstance));
        assert_eq!(
            placed[3].as_ref().unwrap_err().code(),
            "CONSTRAINT:distinctInstance"
        );
    }

    #[test]
    fn resources_are_never_overcommitted() {
        let mut hosts = vec![host("h1", "a", 100), host("h2", "b", 100)];
        let placed = place_n(
            &mut hosts,
            5,
            Need { cpu: 0, memory: 40 },
            &Placement::default(),
        );
        assert_eq!(placed.iter().filter(|r| r.is_ok()).count(), 4);
        assert_eq!(placed[4], Err(Unplaced::Memory(40)));
        let too_big = place(
            &hosts,
            Need {
                cpu: 4096,
                memory: 50,
            },
            &Placement::default(),
            0,
        );
        assert_eq!(
            too_big.unwrap_err().code(),
            "RESOURCE:MEMORY",
            "memory checked first"
        );
        let mut roomy = vec![host("h1", "a", 1000)];
        let cpu = place(
            &roomy,
            Need {
                cpu: 4096,
                memory: 1,
            },
            &Placement::default(),
            0,
        );
        assert_eq!(cpu, Err(Unplaced::Cpu(4096)));
        roomy[0].state = HostState::Draining;
        assert_eq!(
            place(&roomy, Need::default(), &Placement::default(), 0),
            Err(Unplaced::NoHost),
            "a draining host takes no task"
        );
    }

    #[test]
    fn member_of_expressions() {
        let hosts = vec![
            host("h1", "a", 1024),
            host("h2", "b", 1024),
            host("h3", "c", 1024),
        ];
        let only = |e: &str| {
            let p = Placement {
                strategy: vec![],
                constraints: vec![Constraint::MemberOf {
                    expression: e.into(),
                }],
            };
            let mut hs = hosts.clone();
            let mut got: Vec<String> = place_n(&mut hs, 6, Need::default(), &p)
                .into_iter()
                .map(|r| r.unwrap())
                .collect();
            got.sort();
            got.dedup();
            got
        };
        assert_eq!(only("attribute:zone == b"), ["h2"]);
        assert_eq!(only("attribute:zone != b"), ["h1", "h3"]);
        assert_eq!(only("attribute:zone in [a, c]"), ["h1", "h3"]);
        assert_eq!(only("attribute:zone not in [a, c]"), ["h2"]);
        assert_eq!(
            only("attribute:zone == a or attribute:zone == c"),
            ["h1", "h3"]
        );
        assert_eq!(
            only("attribute:zone exists and attribute:zone != a"),
            ["h2", "h3"]
        );
        let none = Placement {
            strategy: vec![],
            constraints: vec![Constraint::MemberOf {
                expression: "attribute:zone == z".into(),
            }],
        };
        assert_eq!(
            place(&hosts, Need::default(), &none, 0).unwrap_err().code(),
            "CONSTRAINT:memberOf"
        );
        assert!(validate(&none).is_ok());
        for bad in [
            "zone == a",
            "attribute:zone",
            "attribute:zone ~ a",
            "attribute:zone in a",
        ] {
            let p = Placement {
                strategy: vec![],
                constraints: vec![Constraint::MemberOf {
                    expression: bad.into(),
                }],
            };
            assert!(validate(&p).is_err(), "{bad}");
        }
    }

    #[test]
    fn random_is_seeded_and_the_default_spreads_by_host() {
        let hosts = vec![
            host("h1", "a", 1024),
            host("h2", "a", 1024),
            host("h3", "b", 1024),
        ];
        let p = Placement {
            strategy: vec![Strategy::Random],
            constraints: vec![],
        };
        let a = place(&hosts, Need::default(), &p, 7);
        assert_eq!(a, place(&hosts, Need::default(), &p, 7));
        let picks: std::collections::BTreeSet<String> = (0..50)
            .map(|s| place(&hosts, Need::default(), &p, s).unwrap())
            .collect();
        assert!(picks.len() > 1, "random picks differ with the seed");
        let mut hs = hosts.clone();
        place_n(&mut hs, 6, Need::default(), &Placement::default());
        assert!(hs.iter().all(|h| h.service_tasks == 2), "{hs:?}");
    }
}
