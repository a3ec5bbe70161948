//! The routing table: its declarative form (what the controller sends and what is persisted)
//! and its compiled form (what the data path reads, swapped atomically).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

use crate::metrics::ServiceStats;
use crate::versions::{VersionStats, Weighted};

/// The whole routing configuration, as pushed by the controller.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingConfig {
    pub services: Vec<ServiceConfig>,
}

/// One routed service: its routes and its targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceConfig {
    /// Service name as it appears in logs and metrics (`app/env/service`).
    pub name: String,
    pub routes: Vec<RouteConfig>,
    pub targets: Vec<TargetConfig>,
    /// Request weights by version. Empty: every routable target takes requests alike (as today).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weights: Vec<VersionWeight>,
    /// With weights: keep each client on the version it was first given, by a cookie.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sticky: bool,
}

/// The share of a service's new requests that one version takes: `weight` out of the sum of
/// the service's weights.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VersionWeight {
    pub version: String,
    pub weight: u32,
}

/// Requests whose host and path match go to the service.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RouteConfig {
    /// Exact host (`shop.example.com`), single-label wildcard (`*.example.com`), or any host.
    #[serde(default)]
    pub host: Option<String>,
    /// Path prefix, matched on segment boundaries (`/users` matches `/users` and `/users/1`).
    pub path: String,
    /// Remove the prefix before forwarding.
    #[serde(default)]
    pub strip_prefix: bool,
}

/// A task's address and whether it still takes new requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetConfig {
    pub id: String,
    pub addr: SocketAddr,
    /// Draining: no new requests; in-flight ones finish.
    #[serde(default)]
    pub draining: bool,
    /// Its host is out of reach (its agent went silent): no new requests, and a safe
    /// request still waiting for its answer is sent to another target (the answer cannot
    /// come back). Implies draining.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unreachable: bool,
    /// The version (task definition revision) the target runs; requests are weighted and
    /// measured per version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// A configuration the ingress refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("route {host}{path} is claimed by both {a} and {b}")]
    Conflict {
        host: String,
        path: String,
        a: String,
        b: String,
    },
    #[error("route path {0:?} must start with '/'")]
    BadPath(String),
    #[error("route host {0:?} is not a valid host name or '*.' wildcard")]
    BadHost(String),
}

impl RoutingConfig {
    /// Checks paths, hosts and that no two services claim the same host and path.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut seen: HashMap<(Option<String>, String), &str> = HashMap::new();
        for s in &self.services {
            for r in &s.routes {
                if !r.path.starts_with('/') {
                    return Err(ConfigError::BadPath(r.path.clone()));
                }
                if let Some(h) = &r.host {
                    let bare = h.strip_prefix("*.").unwrap_or(h);
                    let ok = !bare.is_empty()
                        && bare.split('.').all(|l| {
                            !l.is_empty()
                                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                        });
                    if !ok {
                        return Err(ConfigError::BadHost(h.clone()));
                    }
                }
                let key = (
                    r.host.as_ref().map(|h| h.to_ascii_lowercase()),
                    normalize(&r.path),
                );
                if let Some(other) = seen.insert(key.clone(), &s.name)
                    && other != s.name
                {
                    return Err(ConfigError::Conflict {
                        host: key.0.unwrap_or_default(),
                        path: key.1,
                        a: other.to_owned(),
                        b: s.name.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}

fn normalize(path: &str) -> String {
    if path.len() > 1 {
        path.trim_end_matches('/').to_owned()
    } else {
        path.to_owned()
    }
}

/// Live state of one target, kept across table swaps (in-flight counts, passive health).
#[derive(Debug)]
pub struct Target {
    pub id: String,
    pub addr: SocketAddr,
    pub authority: String,
    pub draining: AtomicBool,
    pub in_flight: AtomicUsize,
    /// Consecutive connect failures.
    pub connect_failures: AtomicU32,
    /// Passively marked down until this time (ms since the ingress started).
    pub down_until: AtomicU64,
    pub requests: AtomicU64,
    /// Turns true when the target starts draining: upgraded connections (WebSockets) close.
    pub drain_signal: tokio::sync::watch::Sender<bool>,
    /// True while the target's host is out of reach: requests waiting for its answer give
    /// up on it (and safe ones go to another target).
    pub unreachable: tokio::sync::watch::Sender<bool>,
    /// Idle connections to this target (see [`crate::upstream`]).
    pub idle: std::sync::Mutex<Vec<crate::upstream::Conn>>,
    /// Idle connections of the HTTP/1.1 fast path (see [`crate::fast`]).
    pub raw_idle: std::sync::Mutex<Vec<tokio::net::TcpStream>>,
    /// The version the target runs (it never changes: a new version is a new target).
    pub version: Option<String>,
    /// Its version's counters (see [`crate::versions`]).
    pub version_stats: Option<Arc<VersionStats>>,
}

impl Target {
    pub fn new(id: &str, addr: SocketAddr) -> Self {
        Self::with_version(id, addr, None, None)
    }

    /// A target running `version`, counted in `stats`.
    pub fn with_version(
        id: &str,
        addr: SocketAddr,
        version: Option<String>,
        stats: Option<Arc<VersionStats>>,
    ) -> Self {
        Self {
            id: id.to_owned(),
            addr,
            authority: addr.to_string(),
            draining: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            connect_failures: AtomicU32::new(0),
            down_until: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            drain_signal: tokio::sync::watch::channel(false).0,
            unreachable: tokio::sync::watch::channel(false).0,
            idle: std::sync::Mutex::new(Vec::new()),
            raw_idle: std::sync::Mutex::new(Vec::new()),
            version,
            version_stats: stats,
        }
    }
}

/// A compiled service.
#[derive(Debug)]
pub struct Service {
    pub name: String,
    /// Targets taking new requests.
    pub active: Vec<Arc<Target>>,
    pub next: AtomicUsize,
    pub stats: Arc<ServiceStats>,
    /// The assignment of requests to versions, when the service has weights.
    pub weighted: Option<Box<Weighted>>,
    /// Counters of the service's versions (those weighted or run by a target).
    pub versions: Vec<Arc<VersionStats>>,
}

#[derive(Debug)]
struct CompiledRoute {
    path: String,
    strip_prefix: bool,
    service: usize,
}

/// Routes for one host kind, indexed by the first path segment of their prefix: a path can
/// only match prefixes that share its first segment, or `/`. Each list is sorted longest
/// prefix first, so lookups cost the same with 1 or 1000 routes on other segments.
#[derive(Debug, Default)]
struct RouteList {
    by_segment: HashMap<String, Vec<CompiledRoute>>,
    root: Vec<CompiledRoute>,
}

/// The first segment of an absolute path (`/a/b` → `a`, `/` → ``).
fn first_segment(path: &str) -> &str {
    let rest = path.strip_prefix('/').unwrap_or(path);
    rest.split('/').next().unwrap_or("")
}

impl RouteList {
    fn push(&mut self, route: CompiledRoute) {
        // `/` matches every path (and so does the empty prefix that `//` normalises to).
        if route.path == "/" || route.path.is_empty() {
            self.root.push(route);
        } else {
            self.by_segment
                .entry(first_segment(&route.path).to_owned())
                .or_default()
                .push(route);
        }
    }

    fn sort(&mut self) {
        for list in self
            .by_segment
            .values_mut()
            .chain(std::iter::once(&mut self.root))
        {
            list.sort_by_key(|r| std::cmp::Reverse(r.path.len()));
        }
    }

    fn find(&self, path: &str) -> Option<&CompiledRoute> {
        self.by_segment
            .get(first_segment(path))
            .and_then(|l| l.iter().find(|r| prefix_matches(&r.path, path)))
            .or_else(|| self.root.first())
    }
}

/// The compiled table: routes by host kind, each indexed by first path segment.
#[derive(Debug, Default)]
pub struct Table {
    pub services: Vec<Arc<Service>>,
    exact: HashMap<String, RouteList>,
    wildcard: HashMap<String, RouteList>,
    any: RouteList,
    /// Targets no longer routable whose in-flight requests may still run.
    pub draining: Vec<Arc<Target>>,
    /// Those of `draining` whose host is out of reach.
    pub unreachable: Vec<Arc<Target>>,
}

/// What a request matched.
pub struct Match<'a> {
    pub service: &'a Arc<Service>,
    /// The path to forward (prefix removed when the route strips it).
    pub path: std::borrow::Cow<'a, str>,
    /// The route's path prefix that matched.
    pub route: &'a str,
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    let prefix = prefix.trim_end_matches('/');
    path == prefix || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

impl Table {
    /// Compiles a configuration, reusing live target state from `previous` so in-flight
    /// counts and passive health survive the swap.
    pub fn compile(cfg: &RoutingConfig, previous: &Table) -> Table {
        let mut old_targets: HashMap<&str, &Arc<Target>> = HashMap::new();
        let mut old_stats: HashMap<&str, &Arc<ServiceStats>> = HashMap::new();
        let mut old_versions: HashMap<(&str, &str), &Arc<VersionStats>> = HashMap::new();
        let mut old_counters: HashMap<&str, &Arc<AtomicU64>> = HashMap::new();
        for s in &previous.services {
            old_stats.insert(&s.name, &s.stats);
            for v in &s.versions {
                old_versions.insert((&v.service, &v.version), v);
            }
            if let Some(w) = &s.weighted {
                old_counters.insert(&s.name, w.counter());
            }
            for t in &s.active {
                old_targets.insert(&t.id, t);
            }
        }
        for t in previous.all_targets() {
            old_targets.entry(&t.id).or_insert(t);
        }
        let mut table = Table::default();
        let mut draining = Vec::new();
        let mut unreachable = Vec::new();
        for (i, s) in cfg.services.iter().enumerate() {
            // Versions measured: those weighted, then those targets run.
            let mut versions: Vec<Arc<VersionStats>> = Vec::new();
            let named = s
                .weights
                .iter()
                .map(|w| w.version.as_str())
                .chain(s.targets.iter().filter_map(|t| t.version.as_deref()));
            for v in named {
                if !versions.iter().any(|x| x.version == v) {
                    versions.push(old_versions.get(&(s.name.as_str(), v)).map_or_else(
                        || Arc::new(VersionStats::new(&s.name, v)),
                        |x| Arc::clone(x),
                    ));
                }
            }
            let mut active = Vec::new();
            for t in &s.targets {
                let vstats = t
                    .version
                    .as_deref()
                    .and_then(|v| versions.iter().find(|x| x.version == v))
                    .cloned();
                // A task's version never changes: another version at the same id and
                // address is another target (and counted apart).
                let same_stats = |e: &Target| match (&e.version_stats, &vstats) {
                    (None, None) => true,
                    (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                    _ => false,
                };
                let target = match old_targets.get(t.id.as_str()) {
                    Some(existing)
                        if existing.addr == t.addr
                            && existing.version == t.version
                            && same_stats(existing) =>
                    {
                        Arc::clone(existing)
                    }
                    _ => Arc::new(Target::with_version(
                        &t.id,
                        t.addr,
                        t.version.clone(),
                        vstats,
                    )),
                };
                // The shared draining flags are not touched here: the table being
                // compiled is not serving yet (see `Table::undrain` and `Table::drain`).
                if t.unreachable {
                    unreachable.push(Arc::clone(&target));
                    draining.push(target);
                } else if t.draining {
                    draining.push(target);
                } else {
                    active.push(target);
                }
            }
            let stats = old_stats
                .get(s.name.as_str())
                .map_or_else(|| Arc::new(ServiceStats::default()), |s| Arc::clone(s));
            let weighted = (!s.weights.is_empty()).then(|| {
                let counter = old_counters.get(s.name.as_str()).map(|c| Arc::clone(c));
                Box::new(Weighted::compile(s, &active, counter))
            });
            table.services.push(Arc::new(Service {
                name: s.name.clone(),
                active,
                next: AtomicUsize::new(0),
                stats,
                weighted,
                versions,
            }));
            for r in &s.routes {
                let route = CompiledRoute {
                    path: normalize(&r.path),
                    strip_prefix: r.strip_prefix,
                    service: i,
                };
                match r.host.as_deref().map(str::to_ascii_lowercase) {
                    Some(h) if h.starts_with("*.") => table
                        .wildcard
                        .entry(h[2..].to_owned())
                        .or_default()
                        .push(route),
                    Some(h) => table.exact.entry(h).or_default().push(route),
                    None => table.any.push(route),
                }
            }
        }
        for list in table
            .exact
            .values_mut()
            .chain(table.wildcard.values_mut())
            .chain(std::iter::once(&mut table.any))
        {
            list.sort();
        }
        table.draining = draining;
        table.unreachable = unreachable;
        table
    }

    /// Clears the draining flag of every routable target of this table. Called before the
    /// table is published: the serving table has such a target among its draining ones (or
    /// not at all), so no request can pick it early.
    pub fn undrain(&self) {
        for t in self.services.iter().flat_map(|s| s.active.iter()) {
            t.draining.store(false, Ordering::SeqCst);
            t.drain_signal
                .send_if_modified(|d| std::mem::replace(d, false));
        }
        for t in self.all_targets() {
            if !self.unreachable.iter().any(|u| Arc::ptr_eq(u, t)) {
                t.unreachable
                    .send_if_modified(|u| std::mem::replace(u, false));
            }
        }
    }

    /// Sets the draining flag of this table's draining targets. Called once the table is
    /// published: flagged earlier, a target would stop taking requests while the table still
    /// serving listed it as routable, perhaps as its service's only target, before its
    /// replacement (in this table) could take them.
    pub fn drain(&self) {
        for t in &self.draining {
            t.draining.store(true, Ordering::SeqCst);
            t.drain_signal
                .send_if_modified(|d| !std::mem::replace(d, true));
        }
        for t in &self.unreachable {
            t.unreachable
                .send_if_modified(|u| !std::mem::replace(u, true));
        }
    }

    /// Every target known to the table, routable or draining.
    pub fn all_targets(&self) -> impl Iterator<Item = &Arc<Target>> {
        self.services
            .iter()
            .flat_map(|s| s.active.iter())
            .chain(self.draining.iter())
    }

    /// Finds the service for a host (without port) and path.
    pub fn route<'a>(&'a self, host: &str, path: &'a str) -> Option<Match<'a>> {
        let host: std::borrow::Cow<'_, str> = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            host.to_ascii_lowercase().into()
        } else {
            host.into()
        };
        let found = self
            .exact
            .get(host.as_ref())
            .and_then(|l| l.find(path))
            .or_else(|| {
                host.split_once('.')
                    .and_then(|(_, parent)| self.wildcard.get(parent))
                    .and_then(|l| l.find(path))
            })
            .or_else(|| self.any.find(path))?;
        let service = &self.services[found.service];
        let path = if found.strip_prefix && found.path != "/" {
            let rest = &path[found.path.len()..];
            if rest.is_empty() {
                std::borrow::Cow::Borrowed("/")
            } else {
                std::borrow::Cow::Borrowed(rest)
            }
        } else {
            std::borrow::Cow::Borrowed(path)
        };
        Some(Match {
            service,
            path,
            route: &found.path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn segment() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["a", "b", "ab", "api", "v1", ""]).prop_map(str::to_owned)
    }

    fn abs_path() -> impl Strategy<Value = String> {
        (prop::collection::vec(segment(), 0..4), any::<bool>()).prop_map(|(segs, slash)| {
            let mut p = format!("/{}", segs.join("/"));
            if slash && p.len() > 1 {
                p.push('/');
            }
            p
        })
    }

    proptest! {
        /// The segment index finds exactly what a scan of every route, longest first, finds.
        #[test]
        fn indexed_lookup_equals_a_linear_scan(
            prefixes in prop::collection::btree_set(abs_path(), 0..12),
            paths in prop::collection::vec(abs_path(), 1..20),
        ) {
            let routes: Vec<CompiledRoute> = prefixes
                .iter()
                .map(|p| normalize(p))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .enumerate()
                .map(|(i, path)| CompiledRoute { path, strip_prefix: false, service: i })
                .collect();
            let mut list = RouteList::default();
            for r in &routes {
                list.push(CompiledRoute { path: r.path.clone(), strip_prefix: false, service: r.service });
            }
            list.sort();
            let mut linear: Vec<&CompiledRoute> = routes.iter().collect();
            linear.sort_by_key(|r| std::cmp::Reverse(r.path.len()));
            for path in &paths {
                let want = linear.iter().find(|r| prefix_matches(&r.path, path)).map(|r| r.service);
                prop_assert_eq!(list.find(path).map(|r| r.service), want, "path {}", path);
            }
        }
    }

    fn svc(
        name: &str,
        routes: &[(Option<&str>, &str, bool)],
        targets: &[(&str, &str, bool)],
    ) -> ServiceConfig {
        ServiceConfig {
            name: name.into(),
            routes: routes
                .iter()
                .map(|(h, p, s)| RouteConfig {
                    host: h.map(str::to_owned),
                    path: (*p).into(),
                    strip_prefix: *s,
                })
                .collect(),
            targets: targets
                .iter()
                .map(|(id, a, d)| TargetConfig {
                    id: (*id).into(),
                    addr: a.parse().unwrap(),
                    draining: *d,
                    unreachable: false,
                    version: None,
                })
                .collect(),
            weights: Vec::new(),
            sticky: false,
        }
    }

    fn cfg() -> RoutingConfig {
        RoutingConfig {
            services: vec![
                svc(
                    "api",
                    &[(None, "/", false)],
                    &[("a1", "127.0.0.1:1", false)],
                ),
                svc(
                    "users",
                    &[(None, "/users", false)],
                    &[("u1", "127.0.0.1:2", false)],
                ),
                svc(
                    "products",
                    &[(None, "/products/", true)],
                    &[("p1", "127.0.0.1:3", false), ("p2", "127.0.0.1:4", true)],
                ),
                svc("admin", &[(Some("admin.example.com"), "/", false)], &[]),
                svc("tenant", &[(Some("*.example.com"), "/", false)], &[]),
            ],
        }
    }

    #[test]
    fn longest_prefix_on_segment_boundaries() {
        let t = Table::compile(&cfg(), &Table::default());
        let name = |h: &str, p: &str| {
            t.route(h, p)
                .map(|m| (m.service.name.clone(), m.path.into_owned()))
        };
        assert_eq!(name("x", "/users"), Some(("users".into(), "/users".into())));
        assert_eq!(
            name("x", "/users/7"),
            Some(("users".into(), "/users/7".into()))
        );
        assert_eq!(name("x", "/usersx"), Some(("api".into(), "/usersx".into())));
        assert_eq!(
            name("x", "/products/9"),
            Some(("products".into(), "/9".into())),
            "prefix stripped"
        );
        assert_eq!(
            name("x", "/products"),
            Some(("products".into(), "/".into()))
        );
        assert_eq!(
            name("admin.example.com", "/users"),
            Some(("admin".into(), "/users".into())),
            "exact host wins"
        );
        assert_eq!(
            name("a.example.com", "/"),
            Some(("tenant".into(), "/".into()))
        );
        assert_eq!(
            name("a.b.example.com", "/"),
            Some(("api".into(), "/".into())),
            "wildcard is one label"
        );
    }

    #[test]
    fn no_route_without_catch_all() {
        let mut c = cfg();
        c.services.remove(0);
        let t = Table::compile(&c, &Table::default());
        assert!(t.route("x", "/").is_none());
    }

    #[test]
    fn draining_targets_are_not_routable_and_state_survives_swaps() {
        let t1 = Table::compile(&cfg(), &Table::default());
        let products = t1.services.iter().find(|s| s.name == "products").unwrap();
        assert_eq!(products.active.len(), 1);
        products.active[0].in_flight.fetch_add(2, Ordering::SeqCst);
        let mut c = cfg();
        c.services[2].targets[0].draining = true;
        let t2 = Table::compile(&c, &t1);
        let p = t2.services.iter().find(|s| s.name == "products").unwrap();
        assert!(p.active.is_empty());
        let p1 = t2.all_targets().find(|t| t.id == "p1").unwrap();
        assert_eq!(
            p1.in_flight.load(Ordering::SeqCst),
            2,
            "in-flight count carried over"
        );
        assert!(
            !p1.draining.load(Ordering::SeqCst),
            "compiling a table changes nothing the serving table's requests see"
        );
        t2.undrain();
        t2.drain();
        assert!(p1.draining.load(Ordering::SeqCst));
        assert!(*p1.drain_signal.borrow());
        // Routable again in a later table: the flag is cleared before that table serves.
        let t3 = Table::compile(&cfg(), &t2);
        t3.undrain();
        assert!(!p1.draining.load(Ordering::SeqCst));
        assert!(!*p1.drain_signal.borrow());
    }

    #[test]
    fn version_stats_survive_swaps_and_a_new_version_is_a_new_target() {
        let mut c = cfg();
        c.services[0].targets[0].version = Some("v1".into());
        c.services[0].targets.push(TargetConfig {
            id: "a2".into(),
            addr: "127.0.0.1:5".parse().unwrap(),
            draining: false,
            unreachable: false,
            version: Some("v2".into()),
        });
        c.services[0].weights = vec![VersionWeight {
            version: "v1".into(),
            weight: 90,
        }];
        let t1 = Table::compile(&c, &Table::default());
        let api = &t1.services[0];
        let names: Vec<&str> = api.versions.iter().map(|v| v.version.as_str()).collect();
        assert_eq!(names, ["v1", "v2"]);
        let a1 = Arc::clone(&api.active[0]);
        let v1 = Arc::clone(a1.version_stats.as_ref().unwrap());
        assert!(Arc::ptr_eq(&v1, &api.versions[0]));
        v1.observe(503, 1_000);
        let w = api.weighted.as_ref().unwrap();
        assert_eq!((w.weight_of("v1"), w.weight_of("v2")), (90, 0));
        assert_eq!(w.groups.len(), 1, "v2 (not listed) takes no requests");
        assert_eq!(w.assign(), Some(0));
        assert!(t1.services[1].versions.is_empty());
        assert!(t1.services[1].weighted.is_none());
        assert!(t1.services[1].active[0].version_stats.is_none());

        // Same configuration: same targets, same counters (the assignment count too).
        let t2 = Table::compile(&c, &t1);
        let api2 = &t2.services[0];
        assert!(Arc::ptr_eq(&api2.active[0], &a1));
        assert!(Arc::ptr_eq(&api2.versions[0], &v1));
        assert_eq!(v1.by_class[4].load(Ordering::Relaxed), 1);
        let w2 = api2.weighted.as_ref().unwrap();
        assert!(Arc::ptr_eq(w2.counter(), w.counter()));

        // a1 now runs v2 at the same address: another target, counted with v2.
        c.services[0].targets[0].version = Some("v2".into());
        let t3 = Table::compile(&c, &t2);
        let api3 = &t3.services[0];
        let a1_new = &api3.active[0];
        assert!(!Arc::ptr_eq(a1_new, &a1));
        assert_eq!(a1_new.version.as_deref(), Some("v2"));
        assert_eq!(a1_new.version_stats.as_ref().unwrap().version, "v2");
        // v1 is still weighted, so still reported, with its counts.
        assert!(Arc::ptr_eq(&api3.versions[0], &v1));
        // A version neither weighted nor run is no longer reported.
        c.services[0].weights.clear();
        let t4 = Table::compile(&c, &t3);
        let names: Vec<&str> = t4.services[0]
            .versions
            .iter()
            .map(|v| v.version.as_str())
            .collect();
        assert_eq!(names, ["v2"]);
        assert!(t4.services[0].weighted.is_none());
    }

    #[test]
    fn conflicts_are_rejected() {
        let mut c = cfg();
        c.services
            .push(svc("other", &[(None, "/users/", false)], &[]));
        assert!(matches!(c.validate(), Err(ConfigError::Conflict { .. })));
        let mut c = cfg();
        c.services.push(svc("bad", &[(None, "users", false)], &[]));
        assert_eq!(c.validate(), Err(ConfigError::BadPath("users".into())));
        assert!(cfg().validate().is_ok());
    }
}
