//! Use cases of load balancing (the ELBv2 model): load balancers, target groups, listeners
//! and rules are records; a service attached to a target group (ECS `loadBalancers[]`) runs
//! a revision whose route and health check the group and the rules forwarding to it give
//! (see [`slipway_core::elb::route_for`]): the ingress routes it exactly as it routes a
//! `slipway.yml` `http:` section.
//!
//! A change of rules, listeners or a group's deregistration delay that changes the route of
//! an attached service starts a deployment of that service in the same transaction (a route
//! is part of a release, as in a manifest: its tasks are replaced by ones with the new
//! route, healthy first, old ones drained); a change that would leave an attached service
//! with nothing forwarding to it is `RESOURCE_IN_USE`.

use slipway_core::elb::{
    ElbObject, ListenerRule, LoadBalancer, TargetGroup, TargetGroupBinding, host_alias,
    path_prefix, route_for,
};
use slipway_core::elb::{Listener, validate_name};
use slipway_core::model::{ContainerSpec, ServiceKey};
use slipway_store::{Batch, ElbRecord, Write, now_ms, random_id};

use crate::retry::retry;
use crate::{App, AppError, ErrorKind, Result};

/// Every ELBv2 object, by kind.
#[derive(Debug, Clone, Default)]
pub struct ElbState {
    pub load_balancers: Vec<ElbRecord>,
    pub target_groups: Vec<ElbRecord>,
    pub listeners: Vec<ElbRecord>,
    pub rules: Vec<ElbRecord>,
}

impl ElbState {
    pub fn load_balancers(&self) -> impl Iterator<Item = &LoadBalancer> {
        self.load_balancers.iter().filter_map(|r| match &r.object {
            ElbObject::LoadBalancer(l) => Some(l),
            _ => None,
        })
    }
    pub fn target_groups(&self) -> impl Iterator<Item = &TargetGroup> {
        self.target_groups.iter().filter_map(|r| match &r.object {
            ElbObject::TargetGroup(t) => Some(t),
            _ => None,
        })
    }
    pub fn listeners(&self) -> impl Iterator<Item = &Listener> {
        self.listeners.iter().filter_map(|r| match &r.object {
            ElbObject::Listener(l) => Some(l),
            _ => None,
        })
    }
    pub fn rules(&self) -> impl Iterator<Item = &ListenerRule> {
        self.rules.iter().filter_map(|r| match &r.object {
            ElbObject::Rule(x) => Some(x),
            _ => None,
        })
    }
    pub fn target_group(&self, resource: &str) -> Option<&TargetGroup> {
        self.target_groups().find(|t| t.resource() == resource)
    }
    /// The load balancers whose listeners (defaults or rules) forward to a target group.
    pub fn load_balancers_of(&self, tg_resource: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for l in self.listeners() {
            let forwards = l.default_target_group.as_deref() == Some(tg_resource)
                || self
                    .rules()
                    .any(|r| r.listener == l.resource() && r.target_group == tg_resource);
            if forwards && !out.contains(&l.load_balancer) {
                out.push(l.load_balancer.clone());
            }
        }
        out
    }
    fn record(&self, resource: &str) -> Option<&ElbRecord> {
        self.load_balancers
            .iter()
            .chain(&self.target_groups)
            .chain(&self.listeners)
            .chain(&self.rules)
            .find(|r| r.object.resource() == resource)
    }
}

fn not_found(code: &'static str, message: String) -> AppError {
    AppError::new(ErrorKind::NotFound, code, message)
}

/// A new target group's settings (its id and creation time are the use case's).
pub type NewTargetGroup = TargetGroup;

impl App {
    /// Every ELBv2 object.
    pub async fn elb_state(&self) -> Result<ElbState> {
        let s = self.store();
        Ok(ElbState {
            load_balancers: s.list_elb("load_balancer").await?,
            target_groups: s.list_elb("target_group").await?,
            listeners: s.list_elb("listener").await?,
            rules: s.list_elb("rule").await?,
        })
    }

    async fn put_new(&self, object: ElbObject) -> Result<()> {
        self.store()
            .commit(Batch::new().write(Write::Elb(ElbRecord { object, version: 0 })))
            .await?;
        Ok(())
    }

    /// `CreateLoadBalancer`: idempotent for the same name and settings; another load
    /// balancer of that name is a `DUPLICATE_LOAD_BALANCER_NAME` conflict.
    pub async fn create_load_balancer(&self, name: &str, scheme: &str) -> Result<LoadBalancer> {
        validate_name("load balancer", name).map_err(AppError::invalid)?;
        retry(|| async {
            let st = self.elb_state().await?;
            if let Some(l) = st.load_balancers().find(|l| l.name == name) {
                if l.scheme == scheme {
                    return Ok(l.clone());
                }
                return Err(AppError::conflict(
                    "DUPLICATE_LOAD_BALANCER_NAME",
                    format!("A load balancer with the same name '{name}' exists, but with different settings"),
                )
                .into());
            }
            let lb = LoadBalancer {
                name: name.to_owned(),
                id: random_id(8),
                scheme: scheme.to_owned(),
                created_at: now_ms(),
            };
            self.put_new(ElbObject::LoadBalancer(lb.clone())).await?;
            Ok(lb)
        })
        .await
    }

    /// `CreateTargetGroup`: idempotent for the same name and settings.
    pub async fn create_target_group(&self, want: &NewTargetGroup) -> Result<TargetGroup> {
        validate_name("target group", &want.name).map_err(AppError::invalid)?;
        let h = &want.health;
        slipway_core::manifest::parse_success_codes(&h.matcher)
            .map_err(|e| AppError::invalid(format!("Matcher HttpCode: {e}")))?;
        if !h.path.starts_with('/') {
            return Err(AppError::invalid("HealthCheckPath must start with '/'"));
        }
        if h.timeout_s >= h.interval_s {
            return Err(AppError::invalid(
                "Health check timeout must be smaller than the interval",
            ));
        }
        retry(|| async {
            let st = self.elb_state().await?;
            if let Some(t) = st.target_groups().find(|t| t.name == want.name) {
                let mut same = want.clone();
                same.id.clone_from(&t.id);
                same.created_at = t.created_at;
                same.deregistration_delay_s = t.deregistration_delay_s;
                if &same == t {
                    return Ok(t.clone());
                }
                return Err(AppError::conflict(
                    "DUPLICATE_TARGET_GROUP_NAME",
                    format!(
                        "A target group with the same name '{}' exists, but with different settings",
                        want.name
                    ),
                )
                .into());
            }
            let mut tg = want.clone();
            tg.id = random_id(8);
            tg.created_at = now_ms();
            self.put_new(ElbObject::TargetGroup(tg.clone())).await?;
            Ok(tg)
        })
        .await
    }

    /// `ModifyTargetGroupAttributes` (`deregistration_delay.timeout_seconds`).
    pub async fn set_deregistration_delay(&self, resource: &str, secs: u32) -> Result<TargetGroup> {
        if secs > 3600 {
            return Err(AppError::invalid(
                "deregistration_delay.timeout_seconds must be between 0 and 3600",
            ));
        }
        retry(|| async {
            let st = self.elb_state().await?;
            let Some(mut rec) = st
                .target_groups
                .iter()
                .find(|r| r.object.resource() == resource)
                .cloned()
            else {
                return Err(not_found(
                    "TARGET_GROUP_NOT_FOUND",
                    "One or more target groups not found".into(),
                )
                .into());
            };
            let ElbObject::TargetGroup(tg) = &mut rec.object else {
                return Err(AppError::internal("a target group record of another kind").into());
            };
            tg.deregistration_delay_s = secs;
            let tg = tg.clone();
            let next = st.with(rec.clone());
            let batch = Batch::new().write(Write::Elb(rec));
            let batch = self
                .reroute(
                    &next,
                    batch,
                    &[resource.to_owned()],
                    &format!("target group {} deregistration delay {secs}s", tg.name),
                )
                .await?;
            self.store().commit(batch).await?;
            Ok(tg)
        })
        .await
    }

    /// `CreateListener`: one listener per port of a load balancer.
    pub async fn create_listener(
        &self,
        lb: &str,
        port: u16,
        protocol: &str,
        default_target_group: Option<&str>,
    ) -> Result<Listener> {
        if port == 0 {
            return Err(AppError::invalid("Port must be between 1 and 65535"));
        }
        retry(|| async {
            let st = self.elb_state().await?;
            if !st.load_balancers().any(|l| l.resource() == lb) {
                return Err(not_found(
                    "LOAD_BALANCER_NOT_FOUND",
                    "One or more load balancers not found".into(),
                )
                .into());
            }
            if let Some(tg) = default_target_group
                && st.target_group(tg).is_none()
            {
                return Err(not_found(
                    "TARGET_GROUP_NOT_FOUND",
                    "One or more target groups not found".into(),
                )
                .into());
            }
            if let Some(l) = st
                .listeners()
                .find(|l| l.load_balancer == lb && l.port == port)
            {
                if l.protocol == protocol
                    && l.default_target_group.as_deref() == default_target_group
                {
                    return Ok(l.clone());
                }
                return Err(AppError::conflict(
                    "DUPLICATE_LISTENER",
                    "A listener already exists on this port for this load balancer",
                )
                .into());
            }
            let l = Listener {
                id: random_id(8),
                load_balancer: lb.to_owned(),
                port,
                protocol: protocol.to_owned(),
                default_target_group: default_target_group.map(str::to_owned),
                created_at: now_ms(),
            };
            let rec = ElbRecord {
                object: ElbObject::Listener(l.clone()),
                version: 0,
            };
            let next = st.with(rec.clone());
            let mut batch = Batch::new().write(Write::Elb(rec));
            if let Some(tg) = default_target_group {
                let listeners: Vec<Listener> = next.listeners().cloned().collect();
                let rules: Vec<ListenerRule> = next.rules().cloned().collect();
                check_group_routes(&st, tg, &listeners, &rules)?;
                batch = self
                    .reroute(
                        &next,
                        batch,
                        &[tg.to_owned()],
                        "a listener forwards to its target group",
                    )
                    .await?;
            }
            self.store().commit(batch).await?;
            Ok(l)
        })
        .await
    }

    /// `CreateRule`: path-pattern and host-header conditions, a forward action.
    pub async fn create_rule(
        &self,
        listener: &str,
        priority: u32,
        paths: &[String],
        hosts: &[String],
        target_group: &str,
    ) -> Result<ListenerRule> {
        if !(1..=50_000).contains(&priority) {
            return Err(AppError::invalid("Priority must be between 1 and 50000"));
        }
        if paths.is_empty() && hosts.is_empty() {
            return Err(AppError::invalid(
                "A rule needs a path-pattern or host-header condition",
            ));
        }
        for p in paths {
            path_prefix(p).map_err(AppError::invalid)?;
        }
        for h in hosts {
            host_alias(h).map_err(AppError::invalid)?;
        }
        retry(|| async {
            let st = self.elb_state().await?;
            if !st.listeners().any(|l| l.resource() == listener) {
                return Err(not_found(
                    "LISTENER_NOT_FOUND",
                    "One or more listeners not found".into(),
                )
                .into());
            }
            if st.target_group(target_group).is_none() {
                return Err(not_found(
                    "TARGET_GROUP_NOT_FOUND",
                    "One or more target groups not found".into(),
                )
                .into());
            }
            if st
                .rules()
                .any(|r| r.listener == listener && r.priority == priority)
            {
                return Err(AppError::conflict(
                    "PRIORITY_IN_USE",
                    format!("Priority '{priority}' is currently in use"),
                )
                .into());
            }
            let r = ListenerRule {
                id: random_id(8),
                listener: listener.to_owned(),
                priority,
                paths: paths.to_vec(),
                hosts: hosts.to_vec(),
                target_group: target_group.to_owned(),
                created_at: now_ms(),
            };
            let rec = ElbRecord {
                object: ElbObject::Rule(r.clone()),
                version: 0,
            };
            let next = st.with(rec.clone());
            let listeners: Vec<Listener> = next.listeners().cloned().collect();
            let rules: Vec<ListenerRule> = next.rules().cloned().collect();
            check_group_routes(&st, target_group, &listeners, &rules)?;
            let batch = Batch::new().write(Write::Elb(rec));
            let batch = self
                .reroute(
                    &next,
                    batch,
                    &[target_group.to_owned()],
                    "a listener rule forwards to its target group",
                )
                .await?;
            self.store().commit(batch).await?;
            Ok(r)
        })
        .await
    }

    /// `Delete*`: a load balancer goes with its listeners and their rules, a listener with
    /// its rules; a target group that a listener, a rule or a live service uses is
    /// `RESOURCE_IN_USE`. `kind` is what the caller asked to delete.
    pub async fn delete_elb(&self, kind: &str, resource: &str) -> Result<()> {
        retry(|| async {
            let st = self.elb_state().await?;
            let rec = st
                .record(resource)
                .filter(|r| r.object.kind() == kind)
                .cloned();
            let Some(rec) = rec else {
                return Err(match kind {
                    "load_balancer" => not_found(
                        "LOAD_BALANCER_NOT_FOUND",
                        "One or more load balancers not found".into(),
                    ),
                    "target_group" => not_found(
                        "TARGET_GROUP_NOT_FOUND",
                        "One or more target groups not found".into(),
                    ),
                    "listener" => not_found(
                        "LISTENER_NOT_FOUND",
                        "One or more listeners not found".into(),
                    ),
                    _ => not_found("RULE_NOT_FOUND", "One or more rules not found".into()),
                }
                .into());
            };
            let mut gone: Vec<&ElbRecord> = vec![&rec];
            match &rec.object {
                ElbObject::LoadBalancer(lb) => {
                    for l in &st.listeners {
                        if let ElbObject::Listener(x) = &l.object
                            && x.load_balancer == lb.resource()
                        {
                            gone.push(l);
                            gone.extend(st.rules.iter().filter(|r| {
                                matches!(&r.object, ElbObject::Rule(y) if y.listener == x.resource())
                            }));
                        }
                    }
                }
                ElbObject::Listener(l) => gone.extend(st.rules.iter().filter(
                    |r| matches!(&r.object, ElbObject::Rule(y) if y.listener == l.resource()),
                )),
                ElbObject::TargetGroup(tg) => {
                    let res = tg.resource();
                    let forwarded = st
                        .listeners()
                        .any(|l| l.default_target_group.as_deref() == Some(res.as_str()))
                        || st.rules().any(|r| r.target_group == res);
                    if forwarded {
                        return Err(AppError::conflict(
                            "RESOURCE_IN_USE",
                            format!("Target group '{}' is currently in use by a listener or a rule", res),
                        )
                        .into());
                    }
                    if let Some(k) = self.services_of_target_group(&res).await?.first() {
                        return Err(AppError::conflict(
                            "RESOURCE_IN_USE",
                            format!("Target group '{}' is currently in use by service {k}", res),
                        )
                        .into());
                    }
                }
                ElbObject::Rule(_) => {}
            }
            // The groups that lose a forward: their services take their new route.
            let mut groups: Vec<String> = Vec::new();
            for r in &gone {
                match &r.object {
                    ElbObject::Listener(l) => groups.extend(l.default_target_group.clone()),
                    ElbObject::Rule(x) => groups.push(x.target_group.clone()),
                    _ => {}
                }
            }
            let resources: Vec<String> = gone.iter().map(|r| r.object.resource()).collect();
            let next = st.without(&resources);
            let mut batch = Batch::new();
            for r in gone {
                batch = batch.write(Write::RemoveElb {
                    resource: r.object.resource(),
                    version: r.version,
                });
            }
            let batch = self
                .reroute(&next, batch, &groups, "a listener or rule was deleted")
                .await?;
            self.store().commit(batch).await?;
            Ok(())
        })
        .await
    }

    /// The live services whose current revision is attached to a target group.
    pub async fn services_of_target_group(&self, resource: &str) -> Result<Vec<ServiceKey>> {
        let mut out = Vec::new();
        for svc in self.store().list_services(None).await? {
            if svc.deleting {
                continue;
            }
            let td = self
                .store()
                .get_task_definition(&svc.key.family(), svc.revision)
                .await?;
            if td
                .and_then(|t| t.container.http_route)
                .and_then(|r| r.target_group)
                .is_some_and(|b| b.target_group == resource)
            {
                out.push(svc.key);
            }
        }
        Ok(out)
    }

    /// The container a service runs when attached to `bindings` (ECS `loadBalancers[]`;
    /// `None`: the attachment of `current`, the container it runs now, is kept): its route
    /// from the rules forwarding to the group, the group's health check and deregistration
    /// delay. Refuses a port the container does not expose, an unknown group, a group no
    /// listener forwards to, and a route another service holds. Writes nothing.
    pub async fn attach_target_groups(
        &self,
        key: &ServiceKey,
        container: ContainerSpec,
        host_ports: &[u16],
        bindings: Option<&[TargetGroupBinding]>,
        current: Option<&ContainerSpec>,
    ) -> Result<ContainerSpec> {
        let binding = match bindings {
            Some([]) => None,
            Some([b]) => Some(b.clone()),
            Some(_) => {
                return Err(AppError::invalid(
                    "loadBalancers: Slipway attaches a service to one target group (its tasks have one route)",
                ));
            }
            None => current
                .and_then(|c| c.http_route.as_ref())
                .and_then(|r| r.target_group.clone()),
        };
        if binding.is_none() {
            return Ok(container);
        }
        let st = self.elb_state().await?;
        self.attach_with(&st, key, container, host_ports, bindings, current)
            .await
    }

    /// [`Self::attach_target_groups`] against `st` (the ELBv2 objects as they are, or as a
    /// change would leave them).
    async fn attach_with(
        &self,
        st: &ElbState,
        key: &ServiceKey,
        mut container: ContainerSpec,
        host_ports: &[u16],
        bindings: Option<&[TargetGroupBinding]>,
        current: Option<&ContainerSpec>,
    ) -> Result<ContainerSpec> {
        let binding = match bindings {
            Some([b]) => Some(b.clone()),
            Some(_) => None,
            None => current
                .and_then(|c| c.http_route.as_ref())
                .and_then(|r| r.target_group.clone()),
        };
        let Some(b) = binding else {
            return Ok(container);
        };
        let tg = st.target_group(&b.target_group).ok_or_else(|| {
            AppError::invalid(format!(
                "The target group {} does not exist",
                b.target_group
            ))
        })?;
        // Ports are checked when the attachment is asked (a kept one was checked then).
        let exposed = container.port;
        if bindings.is_some() && exposed != Some(b.container_port) {
            return Err(AppError::invalid(format!(
                "The container {} did not have a container port {} defined (it exposes {})",
                b.container_name,
                b.container_port,
                exposed.map_or_else(|| "no port".to_owned(), |p| p.to_string())
            )));
        }
        if bindings.is_some() && tg.port != b.container_port && !host_ports.contains(&tg.port) {
            return Err(AppError::invalid(format!(
                "target group {} sends to port {}, which container {} does not expose (it exposes {})",
                tg.name, tg.port, b.container_name, b.container_port
            )));
        }
        let listeners: Vec<Listener> = st.listeners().cloned().collect();
        let rules: Vec<ListenerRule> = st.rules().cloned().collect();
        let route = route_for(tg, &listeners, &rules, b.clone())
            .map_err(AppError::invalid)?
            .ok_or_else(|| {
                AppError::new(
                    ErrorKind::Invalid,
                    "NOT_FORWARDED",
                    format!(
                        "The target group with targetGroupArn {} does not have an associated load balancer (no listener or rule forwards to it)",
                        b.target_group
                    ),
                )
            })?;
        self.check_route_claims(&[(key.clone(), route.clone())])
            .await?;
        container.http_route = Some(route);
        container.http_health = Some(tg.http_health());
        Ok(container)
    }
}

impl App {
    /// Adds to `batch` a deployment of every live service attached to one of `groups`
    /// whose route or health check would change with the ELBv2 objects as `next` has them
    /// (a route is part of a release: the new one rolls out as a deploy does). Refuses a
    /// change that leaves such a service with nothing forwarding to it.
    async fn reroute(
        &self,
        next: &ElbState,
        mut batch: Batch,
        groups: &[String],
        why: &str,
    ) -> Result<Batch> {
        let mut keys: Vec<ServiceKey> = Vec::new();
        for g in groups {
            for k in self.services_of_target_group(g).await? {
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
        }
        for key in keys {
            let svc = self.service(&key).await?;
            let Some(td) = self
                .store()
                .get_task_definition(&key.family(), svc.revision)
                .await?
            else {
                continue;
            };
            let container = self
                .attach_with(next, &key, td.container.clone(), &[], None, Some(&td.container))
                .await
                .map_err(|e| {
                    if e.code == "NOT_FORWARDED" {
                        AppError::conflict(
                            "RESOURCE_IN_USE",
                            format!(
                                "service {key} is attached to the target group and nothing else would forward to it; detach the service first (update-service --load-balancers '[]')"
                            ),
                        )
                    } else {
                        e
                    }
                })?;
            if container == td.container {
                continue;
            }
            batch = self.start_deployment(
                batch,
                &key,
                Some(&svc),
                svc.kind,
                svc.desired_count,
                svc.config,
                svc.placement.clone(),
                slipway_store::RevisionChoice::Register {
                    container: Box::new(container),
                    source: td.source.clone(),
                    ecs: td.ecs.clone(),
                },
                format!(
                    "(service {}) deployment ecs-svc/{{id}} started: {why} (revision {{revision}}).",
                    key.name
                ),
            );
        }
        Ok(batch)
    }
}

impl ElbState {
    /// The state with `r` added (or replacing the object of the same resource).
    fn with(&self, r: ElbRecord) -> ElbState {
        let mut next = self.without(&[r.object.resource()]);
        match r.object.kind() {
            "load_balancer" => next.load_balancers.push(r),
            "target_group" => next.target_groups.push(r),
            "listener" => next.listeners.push(r),
            _ => next.rules.push(r),
        }
        next
    }

    /// The state without the objects of `resources`.
    fn without(&self, resources: &[String]) -> ElbState {
        let keep = |v: &Vec<ElbRecord>| -> Vec<ElbRecord> {
            v.iter()
                .filter(|r| !resources.contains(&r.object.resource()))
                .cloned()
                .collect()
        };
        ElbState {
            load_balancers: keep(&self.load_balancers),
            target_groups: keep(&self.target_groups),
            listeners: keep(&self.listeners),
            rules: keep(&self.rules),
        }
    }
}

/// Refuses a listener or rule after which the group's forwards could not be one route.
fn check_group_routes(
    st: &ElbState,
    tg: &str,
    listeners: &[Listener],
    rules: &[ListenerRule],
) -> Result<()> {
    if let Some(g) = st.target_group(tg) {
        let b = TargetGroupBinding {
            target_group: tg.to_owned(),
            container_name: String::new(),
            container_port: g.port,
        };
        route_for(g, listeners, rules, b).map_err(AppError::invalid)?;
    }
    Ok(())
}
