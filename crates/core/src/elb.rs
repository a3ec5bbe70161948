//! Load balancers as the ELBv2 API describes them (load balancers, target groups, listeners,
//! listener rules), and the one rule that turns them into what Slipway's ingress already
//! knows: a service's [`HttpRoute`] and [`HttpHealthCheck`].
//!
//! Slipway's ingress *is* the load balancer: a target group attached to a service (ECS
//! `loadBalancers[]`) gives the service's pinned task definition revision the route its
//! listener rules describe and the target group's health check, exactly as a `slipway.yml`
//! `http:` section would. Pure: no I/O.

use serde::{Deserialize, Serialize};

use crate::model::{HttpHealthCheck, HttpRoute};

/// AWS's defaults for an HTTP target group of an application load balancer.
pub const DEFAULT_INTERVAL_S: u32 = 30;
pub const DEFAULT_TIMEOUT_S: u32 = 5;
pub const DEFAULT_HEALTHY: u32 = 5;
pub const DEFAULT_UNHEALTHY: u32 = 2;
pub const DEFAULT_MATCHER: &str = "200";
pub const DEFAULT_DEREGISTRATION_DELAY_S: u32 = 300;

/// An application load balancer: a name for the ingress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancer {
    pub name: String,
    pub id: String,
    /// `internet-facing` or `internal` (recorded; the ingress answers on its own addresses).
    pub scheme: String,
    pub created_at: i64,
}

impl LoadBalancer {
    /// The resource part of its ARN: `loadbalancer/app/NAME/ID`.
    pub fn resource(&self) -> String {
        format!("loadbalancer/app/{}/{}", self.name, self.id)
    }
}

/// A target group's health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetHealthCheck {
    pub path: String,
    /// `None`: the traffic port (the container port).
    pub port: Option<u16>,
    pub protocol: String,
    pub interval_s: u32,
    pub timeout_s: u32,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    /// `Matcher.HttpCode`: `200`, `200-299` or `200,202`.
    pub matcher: String,
}

impl Default for TargetHealthCheck {
    fn default() -> Self {
        Self {
            path: "/".into(),
            port: None,
            protocol: "HTTP".into(),
            interval_s: DEFAULT_INTERVAL_S,
            timeout_s: DEFAULT_TIMEOUT_S,
            healthy_threshold: DEFAULT_HEALTHY,
            unhealthy_threshold: DEFAULT_UNHEALTHY,
            matcher: DEFAULT_MATCHER.into(),
        }
    }
}

/// A target group: the tasks of the services attached to it are its targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetGroup {
    pub name: String,
    pub id: String,
    pub protocol: String,
    pub port: u16,
    pub target_type: String,
    pub health: TargetHealthCheck,
    pub deregistration_delay_s: u32,
    pub created_at: i64,
}

impl TargetGroup {
    /// The resource part of its ARN: `targetgroup/NAME/ID`.
    pub fn resource(&self) -> String {
        format!("targetgroup/{}/{}", self.name, self.id)
    }

    /// The health check the controller probes for the group's targets.
    pub fn http_health(&self) -> HttpHealthCheck {
        HttpHealthCheck {
            path: self.health.path.clone(),
            port: self.health.port,
            interval_ms: u64::from(self.health.interval_s) * 1000,
            timeout_ms: u64::from(self.health.timeout_s) * 1000,
            healthy_threshold: self.health.healthy_threshold,
            unhealthy_threshold: self.health.unhealthy_threshold,
            success_codes: crate::manifest::parse_success_codes(&self.health.matcher)
                .unwrap_or_else(|_| vec![(200, 200)]),
        }
    }
}

/// A listener of a load balancer; its default action may forward to a target group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    pub id: String,
    /// The load balancer's resource (`loadbalancer/app/NAME/ID`).
    pub load_balancer: String,
    pub port: u16,
    pub protocol: String,
    /// The target group (resource) of its default forward action.
    pub default_target_group: Option<String>,
    pub created_at: i64,
}

impl Listener {
    /// `listener/app/LBNAME/LBID/ID`.
    pub fn resource(&self) -> String {
        format!(
            "listener/{}/{}",
            self.load_balancer
                .strip_prefix("loadbalancer/")
                .unwrap_or(&self.load_balancer),
            self.id
        )
    }
}

/// A listener rule: requests matching its conditions go to its target group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerRule {
    pub id: String,
    /// The listener's resource.
    pub listener: String,
    pub priority: u32,
    /// `path-pattern` values as given.
    #[serde(default)]
    pub paths: Vec<String>,
    /// `host-header` values as given.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// The target group (resource) it forwards to.
    pub target_group: String,
    pub created_at: i64,
}

impl ListenerRule {
    /// `listener-rule/app/LBNAME/LBID/LISTENERID/ID`.
    pub fn resource(&self) -> String {
        format!(
            "listener-rule/{}/{}",
            self.listener
                .strip_prefix("listener/")
                .unwrap_or(&self.listener),
            self.id
        )
    }
}

/// One stored ELBv2 object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ElbObject {
    LoadBalancer(LoadBalancer),
    TargetGroup(TargetGroup),
    Listener(Listener),
    Rule(ListenerRule),
}

impl ElbObject {
    pub fn kind(&self) -> &'static str {
        match self {
            ElbObject::LoadBalancer(_) => "load_balancer",
            ElbObject::TargetGroup(_) => "target_group",
            ElbObject::Listener(_) => "listener",
            ElbObject::Rule(_) => "rule",
        }
    }

    /// Its name where names are unique per kind (load balancers, target groups), else its
    /// resource.
    pub fn name(&self) -> String {
        match self {
            ElbObject::LoadBalancer(l) => l.name.clone(),
            ElbObject::TargetGroup(t) => t.name.clone(),
            ElbObject::Listener(l) => l.resource(),
            ElbObject::Rule(r) => r.resource(),
        }
    }

    /// The resource part of its ARN: its key.
    pub fn resource(&self) -> String {
        match self {
            ElbObject::LoadBalancer(l) => l.resource(),
            ElbObject::TargetGroup(t) => t.resource(),
            ElbObject::Listener(l) => l.resource(),
            ElbObject::Rule(r) => r.resource(),
        }
    }

    pub fn created_at(&self) -> i64 {
        match self {
            ElbObject::LoadBalancer(l) => l.created_at,
            ElbObject::TargetGroup(t) => t.created_at,
            ElbObject::Listener(l) => l.created_at,
            ElbObject::Rule(r) => r.created_at,
        }
    }
}

/// What a service's `loadBalancers[]` entry binds: recorded on the route of the service's
/// pinned revision, so a rollback restores it with the rest of the release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetGroupBinding {
    /// The target group's resource (`targetgroup/NAME/ID`).
    pub target_group: String,
    pub container_name: String,
    pub container_port: u16,
}

/// Checks a load balancer or target group name as AWS does: 1 to 32 letters, digits and
/// hyphens, not starting or ending with a hyphen.
pub fn validate_name(kind: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{kind} name '{name}' must have 1 to 32 characters: letters, digits and hyphens, not beginning or ending with a hyphen"
        ))
    }
}

/// The ingress path prefix of an ALB `path-pattern` value. The ingress matches prefixes on
/// segment boundaries, so `/users`, `/users*` and `/users/*` all become `/users` (which
/// matches `/users` and `/users/...`), and `*` or `/*` becomes `/`. Wildcards anywhere
/// but at the end, and `?`, have no prefix form and are refused.
pub fn path_prefix(pattern: &str) -> Result<String, String> {
    let p = pattern.trim();
    if !p.starts_with('/') && p != "*" {
        return Err(format!("path pattern '{pattern}' must start with '/'"));
    }
    let bare = p.trim_end_matches('*');
    if bare.contains('*') || bare.contains('?') {
        return Err(format!(
            "path pattern '{pattern}': Slipway's ingress routes by path prefix; a wildcard is allowed only at the end (/users*, /users/*)"
        ));
    }
    let bare = bare.trim_end_matches('/');
    Ok(if bare.is_empty() {
        "/".into()
    } else {
        bare.to_owned()
    })
}

/// The ingress host of an ALB `host-header` value: an exact name or a `*.` wildcard.
pub fn host_alias(value: &str) -> Result<String, String> {
    let v = value.trim().to_ascii_lowercase();
    let bare = v.strip_prefix("*.").unwrap_or(&v);
    let ok = !bare.is_empty()
        && bare
            .split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    if ok {
        Ok(v)
    } else {
        Err(format!(
            "host header '{value}': Slipway's ingress matches an exact host name or a '*.' wildcard of one label"
        ))
    }
}

/// The ingress route of a target group: what the listener rules forwarding to it (and the
/// listeners whose default action forwards to it) describe. `None` when nothing forwards
/// to it: every path prefix of those rules, on their hosts. A group is forwarded to either for
/// any host or for named hosts (the hosts of a route apply to all its paths).
pub fn route_for(
    tg: &TargetGroup,
    listeners: &[Listener],
    rules: &[ListenerRule],
    binding: TargetGroupBinding,
) -> Result<Option<HttpRoute>, String> {
    let res = tg.resource();
    let mut paths: Vec<String> = Vec::new();
    let mut hosts: Vec<String> = Vec::new();
    let mut any_host = false;
    if listeners
        .iter()
        .any(|l| l.default_target_group.as_deref() == Some(res.as_str()))
    {
        paths.push("/".into());
        any_host = true;
    }
    for r in rules.iter().filter(|r| r.target_group == res) {
        if r.paths.is_empty() {
            paths.push("/".into());
        }
        for p in &r.paths {
            paths.push(path_prefix(p)?);
        }
        if r.hosts.is_empty() {
            any_host = true;
        }
        for h in &r.hosts {
            hosts.push(host_alias(h)?);
        }
    }
    if paths.is_empty() {
        return Ok(None);
    }
    paths.sort();
    paths.dedup();
    hosts.sort();
    hosts.dedup();
    if any_host && !hosts.is_empty() {
        return Err(format!(
            "target group {} is forwarded to both for any host and for host headers {}: Slipway routes a target group either for any host or for named hosts",
            tg.name,
            hosts.join(", ")
        ));
    }
    let path = paths.remove(0);
    Ok(Some(HttpRoute {
        path,
        more_paths: paths,
        aliases: hosts,
        strip_prefix: false,
        deregistration_delay_ms: u64::from(tg.deregistration_delay_s) * 1000,
        allow_shadowing: false,
        target_group: Some(binding),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tg() -> TargetGroup {
        TargetGroup {
            name: "users".into(),
            id: "0123456789abcdef".into(),
            protocol: "HTTP".into(),
            port: 8080,
            target_type: "ip".into(),
            health: TargetHealthCheck::default(),
            deregistration_delay_s: 5,
            created_at: 0,
        }
    }

    fn binding() -> TargetGroupBinding {
        TargetGroupBinding {
            target_group: tg().resource(),
            container_name: "web".into(),
            container_port: 8080,
        }
    }

    fn rule(paths: &[&str], hosts: &[&str]) -> ListenerRule {
        ListenerRule {
            id: "r1".into(),
            listener: "listener/app/lb/1/l1".into(),
            priority: 10,
            paths: paths.iter().map(|s| s.to_string()).collect(),
            hosts: hosts.iter().map(|s| s.to_string()).collect(),
            target_group: tg().resource(),
            created_at: 0,
        }
    }

    #[test]
    fn path_patterns_become_prefixes() {
        for (p, want) in [
            ("/users", "/users"),
            ("/users*", "/users"),
            ("/users/*", "/users"),
            ("/users/", "/users"),
            ("/*", "/"),
            ("*", "/"),
            ("/", "/"),
        ] {
            assert_eq!(path_prefix(p).unwrap(), want, "{p}");
        }
        for bad in ["/a/*/b", "/a?", "users"] {
            assert!(path_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hosts_are_exact_or_one_label_wildcards() {
        assert_eq!(host_alias("API.example.com").unwrap(), "api.example.com");
        assert_eq!(host_alias("*.example.com").unwrap(), "*.example.com");
        assert!(host_alias("api-*.example.com").is_err());
    }

    #[test]
    fn rules_make_the_route_and_the_group_the_health_check() {
        let r = route_for(&tg(), &[], &[rule(&["/users*"], &[])], binding())
            .unwrap()
            .unwrap();
        assert_eq!(r.path, "/users");
        assert!(r.aliases.is_empty());
        assert_eq!(r.deregistration_delay_ms, 5000);
        assert_eq!(r.target_group, Some(binding()));
        let r = route_for(&tg(), &[], &[rule(&[], &["a.example.com"])], binding())
            .unwrap()
            .unwrap();
        assert_eq!((r.path.as_str(), r.aliases.len()), ("/", 1));
        let two = route_for(&tg(), &[], &[rule(&["/b*", "/a", "/a/*"], &[])], binding())
            .unwrap()
            .unwrap();
        assert_eq!(two.paths().collect::<Vec<_>>(), ["/a", "/b"]);
        assert!(
            route_for(
                &tg(),
                &[],
                &[rule(&["/a"], &[]), rule(&["/b"], &["x.example.com"])],
                binding()
            )
            .unwrap_err()
            .contains("any host")
        );
        assert_eq!(route_for(&tg(), &[], &[], binding()).unwrap(), None);
        let l = Listener {
            id: "l1".into(),
            load_balancer: "loadbalancer/app/lb/1".into(),
            port: 80,
            protocol: "HTTP".into(),
            default_target_group: Some(tg().resource()),
            created_at: 0,
        };
        assert_eq!(l.resource(), "listener/app/lb/1/l1");
        assert_eq!(rule(&[], &[]).resource(), "listener-rule/app/lb/1/l1/r1");
        let r = route_for(&tg(), &[l], &[], binding()).unwrap().unwrap();
        assert_eq!(r.path, "/");
        let mut g = tg();
        g.health.matcher = "200-299".into();
        g.health.interval_s = 5;
        let h = g.http_health();
        assert_eq!((h.interval_ms, h.success_codes), (5000, vec![(200, 299)]));
    }

    #[test]
    fn names_follow_aws() {
        assert!(validate_name("load balancer", "my-alb-1").is_ok());
        for bad in ["", "-a", "a-", "a_b", &"x".repeat(33)] {
            assert!(validate_name("load balancer", bad).is_err(), "{bad}");
        }
    }
}
