//! Progressive delivery: requests weighted by version (canary, linear rollouts), sticky
//! versions by cookie, and measurements per (service, version).
//!
//! A service whose configuration has weights gets a [`Weighted`] when compiled: its routable
//! targets grouped by version, one group per version with a weight above 0. A request that
//! is not bound to a version by its cookie is assigned one by a per-service counter `n`:
//! slot `(n mod total) * stride mod total` (`stride` coprime with `total`, so each window of
//! `total` consecutive assignments visits every slot once), then the version whose cumulative
//! weight range holds the slot. Every `total` consecutive fresh assignments thus give each
//! version exactly its weight, spread out rather than in bursts. Versions with weight 0, or
//! not listed, get no new request; their targets are not draining, so in-flight requests
//! finish normally.
//!
//! Targets that have a version carry their version's [`VersionStats`] from the moment they
//! are created (a task's version never changes), so the data path counts without a lookup;
//! the stats are carried across table swaps by (service, version).
//!
//! May call: [`crate::table`] (targets), std.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use http::HeaderValue;
use serde::{Deserialize, Serialize};

use crate::table::{ServiceConfig, Target, VersionWeight};

/// Latency buckets per version: upper bounds 50 µs × 2^(i/4), from 50 µs to about 125 s
/// (each bound 19 % above the previous one). The last bucket also takes everything slower.
pub const LATENCY_BUCKETS: usize = 86;

/// 2^(k/4) × 10^6 for k = 0..3.
const QUARTER_POWERS: [u64; 4] = [1_000_000, 1_189_207, 1_414_214, 1_681_793];

const BOUNDS: [u64; LATENCY_BUCKETS] = {
    let mut b = [0u64; LATENCY_BUCKETS];
    let mut i = 0;
    while i < LATENCY_BUCKETS {
        b[i] = (50 * (1u64 << (i / 4)) * QUARTER_POWERS[i % 4] + 500_000) / 1_000_000;
        i += 1;
    }
    b
};

/// The upper bound (µs, inclusive) of latency bucket `i`; past the last bucket, the last
/// bucket's bound.
pub fn bucket_upper_us(i: usize) -> u64 {
    BOUNDS[i.min(LATENCY_BUCKETS - 1)]
}

/// The bucket a latency of `micros` falls in.
pub fn bucket_index(micros: u64) -> usize {
    BOUNDS
        .partition_point(|&b| b < micros)
        .min(LATENCY_BUCKETS - 1)
}

/// The q-quantile (0 ≤ q ≤ 1, e.g. 0.99) of a histogram of non-cumulative counts in the
/// layout of [`bucket_upper_us`]: the upper bound (µs) of the bucket holding the request of
/// rank ⌈q × count⌉. None when the histogram is empty.
pub fn quantile_us(buckets: &[u64], q: f64) -> Option<u64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0u64;
    for (i, c) in buckets.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return Some(bucket_upper_us(i));
        }
    }
    Some(bucket_upper_us(buckets.len().saturating_sub(1)))
}

/// Counters of one version of one service, kept across table swaps.
#[derive(Debug)]
pub struct VersionStats {
    pub service: String,
    pub version: String,
    /// Responses (the target's, or the ingress' 502/504 after a target failed).
    pub requests: AtomicU64,
    /// Responses by status class: 1xx..5xx.
    pub by_class: [AtomicU64; 5],
    /// Failed connects to this version's targets.
    pub connect_errors: AtomicU64,
    /// Non-cumulative counts per latency bucket (see [`bucket_upper_us`]).
    pub latency: [AtomicU64; LATENCY_BUCKETS],
}

impl VersionStats {
    pub fn new(service: &str, version: &str) -> Self {
        Self {
            service: service.to_owned(),
            version: version.to_owned(),
            requests: AtomicU64::new(0),
            by_class: Default::default(),
            connect_errors: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    pub fn observe(&self, status: u16, micros: u64) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
        self.latency[bucket_index(micros)].fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts a response against its target's version, if the target has one.
#[inline]
pub(crate) fn observe(target: &Target, status: u16, micros: u64) {
    if let Some(v) = &target.version_stats {
        v.observe(status, micros);
    }
}

/// Counts a failed connect against its target's version, if the target has one.
#[inline]
pub(crate) fn note_connect_failure(target: &Target) {
    if let Some(v) = &target.version_stats {
        v.connect_errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// One version's measurements as `GET /versions` reports them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionReport {
    pub service: String,
    pub version: String,
    /// Weight in force (0 when the service has weights and this version is not listed or has 0;
    /// None when the service has no weights).
    pub weight: Option<u32>,
    pub requests: u64,
    pub errors_5xx: u64,
    pub connect_errors: u64,
    /// Non-cumulative counts per latency bucket (see bucket_upper_us).
    pub latency: Vec<u64>,
}

/// Every measured version of every service of the table.
pub fn report(table: &crate::table::Table) -> Vec<VersionReport> {
    let mut out = Vec::new();
    for s in &table.services {
        for v in &s.versions {
            out.push(VersionReport {
                service: v.service.clone(),
                version: v.version.clone(),
                weight: s.weighted.as_ref().map(|w| w.weight_of(&v.version)),
                requests: v.requests.load(Ordering::Relaxed),
                errors_5xx: v.by_class[4].load(Ordering::Relaxed),
                connect_errors: v.connect_errors.load(Ordering::Relaxed),
                latency: v
                    .latency
                    .iter()
                    .map(|c| c.load(Ordering::Relaxed))
                    .collect(),
            });
        }
    }
    out
}

/// 32-bit FNV-1a.
pub fn fnv1a32(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The name of a service's version cookie: `slipway-v-` and the FNV-1a hash of the service
/// name in 8 hex digits (services under one host do not share it).
pub fn cookie_name(service: &str) -> String {
    format!("slipway-v-{:08x}", fnv1a32(service.as_bytes()))
}

/// The value of cookie `name` in one `Cookie` header value (`a=1; b=2`), quotes removed.
pub fn find_cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (n, v) = pair.split_once('=')?;
        if n.trim() != name {
            return None;
        }
        let v = v.trim();
        Some(
            v.strip_prefix('"')
                .and_then(|x| x.strip_suffix('"'))
                .unwrap_or(v),
        )
    })
}

/// The value of cookie `name` in a block of header lines (`name: value\r\n` each), as the
/// fast path forwards them; every `Cookie` line is looked at.
pub(crate) fn cookie_in_block<'a>(block: &'a [u8], name: &str) -> Option<&'a str> {
    block.split(|&b| b == b'\n').find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&b| b == b':')?;
        if !line[..colon].eq_ignore_ascii_case(b"cookie") {
            return None;
        }
        find_cookie(std::str::from_utf8(&line[colon + 1..]).ok()?, name)
    })
}

/// Whether `v` can be a cookie value as it is (RFC 6265 §4.1.1 cookie-octets).
fn cookie_safe(v: &str) -> bool {
    !v.is_empty()
        && v.bytes().all(|b| {
            b == 0x21
                || (0x23..=0x2b).contains(&b)
                || (0x2d..=0x3a).contains(&b)
                || (0x3c..=0x5b).contains(&b)
                || (0x5d..=0x7e).contains(&b)
        })
}

/// The routable targets of one version with a weight above 0.
#[derive(Debug)]
pub struct Group {
    pub version: String,
    pub weight: u32,
    /// End (exclusive) of this version's slots among `0..total`.
    end: u64,
    pub targets: Vec<Arc<Target>>,
    pub next: AtomicUsize,
    /// `Set-Cookie` value binding a client to this version (None: the version is no valid
    /// cookie value, or the service is not sticky).
    set_cookie: Option<HeaderValue>,
}

/// A service's weighted assignment of requests to versions.
#[derive(Debug)]
pub struct Weighted {
    /// Versions with weight above 0, in configuration order.
    pub groups: Vec<Group>,
    total: u64,
    stride: u64,
    /// Fresh assignments so far; carried across table swaps.
    counter: Arc<AtomicU64>,
    /// The version cookie's name, when the service is sticky.
    cookie: Option<String>,
    /// The weights as configured (duplicates summed).
    weights: Vec<VersionWeight>,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl Weighted {
    /// Groups `active` (the service's routable targets) by the versions `cfg` weights.
    /// `counter` continues the previous table's count for the service, if any.
    pub fn compile(
        cfg: &ServiceConfig,
        active: &[Arc<Target>],
        counter: Option<Arc<AtomicU64>>,
    ) -> Self {
        let mut weights: Vec<VersionWeight> = Vec::with_capacity(cfg.weights.len());
        for w in &cfg.weights {
            match weights.iter_mut().find(|x| x.version == w.version) {
                Some(x) => x.weight = x.weight.saturating_add(w.weight),
                None => weights.push(w.clone()),
            }
        }
        let cookie = cfg.sticky.then(|| cookie_name(&cfg.name));
        let mut groups = Vec::new();
        let mut end = 0u64;
        for w in weights.iter().filter(|w| w.weight > 0) {
            end += u64::from(w.weight);
            let set_cookie = match &cookie {
                Some(name) if cookie_safe(&w.version) => HeaderValue::from_str(&format!(
                    "{name}={}; Path=/; HttpOnly; SameSite=Lax",
                    w.version
                ))
                .ok(),
                Some(_) => {
                    tracing::warn!(service = %cfg.name, version = %w.version, "version is not a valid cookie value: clients are not kept on it");
                    None
                }
                None => None,
            };
            groups.push(Group {
                version: w.version.clone(),
                weight: w.weight,
                end,
                targets: active
                    .iter()
                    .filter(|t| t.version.as_deref() == Some(w.version.as_str()))
                    .cloned()
                    .collect(),
                next: AtomicUsize::new(0),
                set_cookie,
            });
        }
        let total = end;
        // A stride near total × 0.618 (coprime with total) spreads each version's slots
        // evenly over the cycle.
        let mut stride = ((total as f64 * 0.618).round() as u64).max(1);
        while total > 1 && gcd(stride, total) != 1 {
            stride += 1;
        }
        Self {
            groups,
            total,
            stride,
            counter: counter.unwrap_or_default(),
            cookie,
            weights,
        }
    }

    /// The counter to carry into the next table.
    pub fn counter(&self) -> &Arc<AtomicU64> {
        &self.counter
    }

    /// The version cookie's name, when the service is sticky.
    pub fn cookie(&self) -> Option<&str> {
        self.cookie.as_deref()
    }

    /// The weight in force for `version` (0 when not listed).
    pub fn weight_of(&self, version: &str) -> u32 {
        self.weights
            .iter()
            .find(|w| w.version == version)
            .map_or(0, |w| w.weight)
    }

    /// The weights as configured.
    pub fn weights(&self) -> &[VersionWeight] {
        &self.weights
    }

    /// The group of slot `slot` (< total).
    fn group_of_slot(&self, slot: u64) -> usize {
        self.groups.partition_point(|g| g.end <= slot)
    }

    /// The next fresh assignment: an index into `groups` (None when no version has weight).
    pub fn assign(&self) -> Option<usize> {
        if self.total == 0 {
            return None;
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let slot = (n % self.total) * self.stride % self.total;
        Some(self.group_of_slot(slot))
    }

    /// Picks a target: the version of `cookie` when it has weight and `try_pick` finds a
    /// target in it that is not passively down, otherwise the version assigned by weight, otherwise any other version with
    /// weight. `try_pick(targets, next, pass)` is the data path's choice within a group; pass 0
    /// skips passively failed targets, pass 1 fails open, and every group gets pass 0 before
    /// any gets pass 1.
    pub(crate) fn pick(
        &self,
        cookie: Option<&str>,
        mut try_pick: impl FnMut(&[Arc<Target>], &AtomicUsize, usize) -> Option<Arc<Target>>,
    ) -> Option<Arc<Target>> {
        // A bound client whose version's targets are all passively down is assigned afresh
        // rather than sent there (the fail-open pass comes after every version's first).
        if let Some(v) = cookie
            && let Some(g) = self.groups.iter().find(|g| g.version == v)
            && let Some(t) = try_pick(&g.targets, &g.next, 0)
        {
            return Some(t);
        }
        let first = self.assign()?;
        let n = self.groups.len();
        for pass in 0..2 {
            for i in 0..n {
                let g = &self.groups[(first + i) % n];
                if let Some(t) = try_pick(&g.targets, &g.next, pass) {
                    return Some(t);
                }
            }
        }
        None
    }

    /// The `Set-Cookie` value for a response from `target`, when the service is sticky and
    /// the request's cookie (`cookie`) did not already name the target's version.
    pub(crate) fn set_cookie(&self, cookie: Option<&str>, target: &Target) -> Option<&HeaderValue> {
        self.cookie.as_ref()?;
        let version = target.version.as_deref()?;
        if cookie == Some(version) {
            return None;
        }
        self.groups
            .iter()
            .find(|g| g.version == version)?
            .set_cookie
            .as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(id: &str, port: u16, version: &str) -> Arc<Target> {
        Arc::new(Target::with_version(
            id,
            ([127, 0, 0, 1], port).into(),
            Some(version.to_owned()),
            None,
        ))
    }

    fn weighted(weights: &[(&str, u32)], sticky: bool) -> (Weighted, Vec<Arc<Target>>) {
        let targets: Vec<Arc<Target>> = weights
            .iter()
            .enumerate()
            .map(|(i, (v, _))| target(&format!("t{i}"), 1000 + i as u16, v))
            .collect();
        let cfg = ServiceConfig {
            name: "app/env/web".into(),
            routes: Vec::new(),
            targets: Vec::new(),
            weights: weights
                .iter()
                .map(|(v, w)| VersionWeight {
                    version: (*v).into(),
                    weight: *w,
                })
                .collect(),
            sticky,
        };
        (Weighted::compile(&cfg, &targets, None), targets)
    }

    /// Versions of `n` consecutive picks (no cookie, every target pickable).
    fn picks(w: &Weighted, n: usize) -> Vec<String> {
        (0..n)
            .map(|_| {
                w.pick(None, |ts, _, _| ts.first().cloned())
                    .unwrap()
                    .version
                    .clone()
                    .unwrap()
            })
            .collect()
    }

    fn count(v: &[String], version: &str) -> usize {
        v.iter().filter(|x| *x == version).count()
    }

    #[test]
    fn assignment_is_exact_over_every_cycle() {
        for (a, b) in [(95, 5), (10, 90), (50, 50), (1, 99), (3, 4)] {
            let (w, _) = weighted(&[("a", a), ("b", b)], false);
            let total = (a + b) as usize;
            // Any window of `total` consecutive assignments, not only those from 0.
            let got = picks(&w, total * 7 + 13);
            for start in [0, 1, 13, total * 3 + 5] {
                let window = &got[start..start + total];
                assert_eq!(count(window, "a"), a as usize, "{a}/{b} from {start}");
                assert_eq!(count(window, "b"), b as usize, "{a}/{b} from {start}");
            }
        }
    }

    #[test]
    fn a_small_weight_is_spread_over_the_cycle_not_bunched() {
        let (w, _) = weighted(&[("stable", 95), ("canary", 5)], false);
        let got = picks(&w, 100);
        let at: Vec<usize> = (0..100).filter(|&i| got[i] == "canary").collect();
        assert_eq!(at.len(), 5);
        // Apart (the golden-ratio stride), not five in a row as plain slot order would give.
        assert!(at.windows(2).all(|p| p[1] - p[0] >= 5), "{at:?}");
    }

    #[test]
    fn weight_zero_and_unlisted_versions_get_nothing() {
        let (w, _) = weighted(&[("old", 0), ("new", 100)], false);
        let got = picks(&w, 300);
        assert_eq!(count(&got, "new"), 300);
        assert_eq!(w.weight_of("old"), 0);
        assert_eq!(w.weight_of("other"), 0);
        // Nothing has weight: no target at all.
        let (w, _) = weighted(&[("a", 0)], false);
        assert!(w.pick(None, |ts, _, _| ts.first().cloned()).is_none());
    }

    #[test]
    fn an_unpickable_version_falls_back_to_others_with_weight_and_never_to_weight_zero() {
        let (w, targets) = weighted(&[("a", 50), ("b", 50), ("z", 0)], false);
        // Version b's target is never pickable (down, or tried already).
        let got: Vec<_> = (0..100)
            .map(|_| {
                w.pick(None, |ts, _, _| {
                    ts.first()
                        .filter(|t| t.version.as_deref() != Some("b"))
                        .cloned()
                })
            })
            .collect();
        assert!(
            got.iter()
                .all(|t| t.as_ref().unwrap().version.as_deref() == Some("a"))
        );
        // With a gone too, z (weight 0) still gets nothing.
        let none = w.pick(None, |ts, _, _| {
            ts.first()
                .filter(|t| t.version.as_deref() == Some("z"))
                .cloned()
        });
        assert!(none.is_none());
        assert_eq!(targets.len(), 3);
    }

    #[test]
    fn a_cookie_version_with_weight_is_kept_without_advancing_the_count() {
        let (w, _) = weighted(&[("a", 90), ("b", 10)], true);
        for _ in 0..50 {
            let t = w.pick(Some("b"), |ts, _, _| ts.first().cloned()).unwrap();
            assert_eq!(t.version.as_deref(), Some("b"));
            assert!(
                w.set_cookie(Some("b"), &t).is_none(),
                "bound: no new cookie"
            );
        }
        assert_eq!(w.counter().load(Ordering::Relaxed), 0);
        // A cookie naming a version without weight is assigned afresh, and told so.
        let t = w
            .pick(Some("gone"), |ts, _, _| ts.first().cloned())
            .unwrap();
        assert_eq!(w.counter().load(Ordering::Relaxed), 1);
        let v = t.version.clone().unwrap();
        let set = w.set_cookie(Some("gone"), &t).unwrap().to_str().unwrap();
        assert_eq!(
            set,
            format!(
                "{}={v}; Path=/; HttpOnly; SameSite=Lax",
                cookie_name("app/env/web")
            )
        );
        // Not sticky: no cookie ever.
        let (w, _) = weighted(&[("a", 90), ("b", 10)], false);
        let t = w.pick(None, |ts, _, _| ts.first().cloned()).unwrap();
        assert!(w.set_cookie(None, &t).is_none());
    }

    #[test]
    fn cookies_are_found_among_others_and_across_headers() {
        let name = cookie_name("app/env/web");
        assert!(name.starts_with("slipway-v-") && name.len() == 18, "{name}");
        assert_ne!(name, cookie_name("app/env/api"));
        // FNV-1a test vectors.
        assert_eq!(fnv1a32(b""), 0x811c9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9cf968);
        let h = format!("a=1; {name}=v7; b=2");
        assert_eq!(find_cookie(&h, &name), Some("v7"));
        assert_eq!(find_cookie(&format!("{name}=\"v8\""), &name), Some("v8"));
        assert_eq!(find_cookie("a=1; b=2", &name), None);
        assert_eq!(find_cookie(&format!("x{name}=v9"), &name), None);
        let block = format!(
            "Host: a\r\nCookie: a=1; b=2\r\nAccept: */*\r\ncookie: c=3; {name}=v3\r\nx-forwarded-for: 1.2.3.4\r\n"
        );
        assert_eq!(cookie_in_block(block.as_bytes(), &name), Some("v3"));
        assert_eq!(cookie_in_block(b"Host: a\r\nX-Cookie: z\r\n", &name), None);
    }

    #[test]
    fn buckets_tell_close_latencies_apart() {
        assert_eq!(bucket_upper_us(0), 50);
        assert!(bucket_upper_us(LATENCY_BUCKETS - 1) >= 120_000_000);
        for i in 1..LATENCY_BUCKETS {
            assert!(bucket_upper_us(i) > bucket_upper_us(i - 1));
            // 2^(1/4) = 1.189, and rounding to whole µs at the low end.
            assert!(bucket_upper_us(i) as f64 / bucket_upper_us(i - 1) as f64 <= 1.21);
        }
        assert_ne!(bucket_index(1_000), bucket_index(1_500));
        assert_ne!(bucket_index(300_000), bucket_index(450_000));
        assert_eq!(bucket_index(0), 0);
        assert_eq!(bucket_index(50), 0);
        assert_eq!(bucket_index(51), 1);
        assert_eq!(bucket_index(u64::MAX), LATENCY_BUCKETS - 1);
        for us in [1, 50, 999, 1_000, 1_500, 50_000, 300_000, 7_777_777] {
            let i = bucket_index(us);
            assert!(us <= bucket_upper_us(i));
            assert!(i == 0 || us > bucket_upper_us(i - 1));
        }
    }

    #[test]
    fn quantiles_of_known_histograms() {
        assert_eq!(quantile_us(&[0; LATENCY_BUCKETS], 0.99), None);
        assert_eq!(quantile_us(&[], 0.5), None);
        let mut h = [0u64; LATENCY_BUCKETS];
        // 98 requests at 1 ms, 2 at 400 ms.
        h[bucket_index(1_000)] = 98;
        h[bucket_index(400_000)] = 2;
        assert_eq!(
            quantile_us(&h, 0.5),
            Some(bucket_upper_us(bucket_index(1_000)))
        );
        assert_eq!(
            quantile_us(&h, 0.98),
            Some(bucket_upper_us(bucket_index(1_000)))
        );
        assert_eq!(
            quantile_us(&h, 0.99),
            Some(bucket_upper_us(bucket_index(400_000)))
        );
        assert_eq!(
            quantile_us(&h, 1.0),
            Some(bucket_upper_us(bucket_index(400_000)))
        );
        assert_eq!(
            quantile_us(&h, 0.0),
            Some(bucket_upper_us(bucket_index(1_000)))
        );
        let p99 = quantile_us(&h, 0.99).unwrap();
        assert!((400_000..480_000).contains(&p99), "{p99}");
        // The difference of two snapshots, as the controller computes it.
        let s = VersionStats::new("s", "v");
        for _ in 0..10 {
            s.observe(200, 2_000);
        }
        let before: Vec<u64> = s
            .latency
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        for _ in 0..10 {
            s.observe(500, 60_000);
        }
        let after: Vec<u64> = s
            .latency
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let delta: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
        let p50 = quantile_us(&delta, 0.5).unwrap();
        assert!((60_000..72_000).contains(&p50), "{p50}");
        assert_eq!(s.requests.load(Ordering::Relaxed), 20);
        assert_eq!(s.by_class[4].load(Ordering::Relaxed), 10);
    }
}
