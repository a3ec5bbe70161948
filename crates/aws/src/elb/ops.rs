//! The ELBv2 operations, one function each, called by [`super::dispatch`].

use super::*;

/// `"CreateLoadBalancer"`.
pub(super) async fn create_load_balancer(call: &Call<'_>, p: &Params) -> ElbResult {
    let app = &call.state.app;
    let name = p.required("Name")?;
    if let Some(t) = p.get("Type")
        && t != "application"
    {
        return Err(validation(format!(
            "Type '{t}': Slipway's ingress is an application load balancer"
        )));
    }
    if name == INGRESS_LB {
        return Err(err(
            "DuplicateLoadBalancerName",
            format!("A load balancer with the same name '{name}' exists (Slipway's ingress)"),
        ));
    }
    let scheme = p.get("Scheme").unwrap_or("internet-facing");
    if !matches!(scheme, "internet-facing" | "internal") {
        return Err(validation(format!("Scheme '{scheme}' is not valid")));
    }
    let lb = app
        .create_load_balancer(name, scheme)
        .await
        .map_err(app_error)?;
    Ok(json!({ "LoadBalancers": [lb_json(call, &lb)] }))
}

/// `"CreateTargetGroup"`.
pub(super) async fn create_target_group(call: &Call<'_>, p: &Params) -> ElbResult {
    let app = &call.state.app;
    let name = p.required("Name")?;
    let protocol = p.get("Protocol").unwrap_or("HTTP");
    if !matches!(protocol, "HTTP" | "HTTPS") {
        return Err(validation(format!(
            "Protocol '{protocol}': Slipway's ingress forwards HTTP"
        )));
    }
    let target_type = p.get("TargetType").unwrap_or("instance");
    if !matches!(target_type, "instance" | "ip") {
        return Err(validation(format!(
            "TargetType '{target_type}': Slipway's targets are tasks (instance or ip)"
        )));
    }
    let port: u16 = p
        .number::<u32>("Port")?
        .ok_or_else(|| validation("A port must be specified"))?
        .try_into()
        .ok()
        .filter(|p: &u16| *p > 0)
        .ok_or_else(|| validation("Port must be between 1 and 65535"))?;
    let d = TargetHealthCheck::default();
    let health_port = match p.get("HealthCheckPort") {
        None | Some("traffic-port") => None,
        Some(v) => Some(
            v.parse::<u16>()
                .ok()
                .filter(|x| *x > 0)
                .ok_or_else(|| validation(format!("HealthCheckPort '{v}' is not valid")))?,
        ),
    };
    let range = |k: &str, v: Option<u32>, lo: u32, hi: u32, def: u32| -> ElbResult<u32> {
        let v = v.unwrap_or(def);
        if (lo..=hi).contains(&v) {
            Ok(v)
        } else {
            Err(validation(format!("{k} must be between {lo} and {hi}")))
        }
    };
    let want: NewTargetGroup = TargetGroup {
        name: name.to_owned(),
        id: String::new(),
        protocol: protocol.to_owned(),
        port,
        target_type: target_type.to_owned(),
        health: TargetHealthCheck {
            path: p.get("HealthCheckPath").unwrap_or(&d.path).to_owned(),
            port: health_port,
            protocol: p.get("HealthCheckProtocol").unwrap_or("HTTP").to_owned(),
            interval_s: range(
                "HealthCheckIntervalSeconds",
                p.number("HealthCheckIntervalSeconds")?,
                5,
                300,
                d.interval_s,
            )?,
            timeout_s: range(
                "HealthCheckTimeoutSeconds",
                p.number("HealthCheckTimeoutSeconds")?,
                2,
                120,
                d.timeout_s,
            )?,
            healthy_threshold: range(
                "HealthyThresholdCount",
                p.number("HealthyThresholdCount")?,
                2,
                10,
                d.healthy_threshold,
            )?,
            unhealthy_threshold: range(
                "UnhealthyThresholdCount",
                p.number("UnhealthyThresholdCount")?,
                2,
                10,
                d.unhealthy_threshold,
            )?,
            matcher: p.get("Matcher.HttpCode").unwrap_or(&d.matcher).to_owned(),
        },
        deregistration_delay_s: DEFAULT_DEREGISTRATION_DELAY_S,
        created_at: 0,
    };
    let tg = app.create_target_group(&want).await.map_err(app_error)?;
    let st = app.elb_state().await?;
    let g = Group {
        load_balancers: st.load_balancers_of(&tg.resource()),
        tg,
        service: None,
    };
    Ok(json!({ "TargetGroups": [tg_json(call, &g)] }))
}

/// `"ModifyTargetGroupAttributes" | "DescribeTargetGroupAttributes"`.
pub(super) async fn target_group_attributes(call: &Call<'_>, p: &Params, op: &str) -> ElbResult {
    let app = &call.state.app;
    let arn = p.required("TargetGroupArn")?;
    let res = target_group_of(arn)
        .ok_or_else(|| validation(format!("'{arn}' is not a valid target group ARN")))?;
    let mut delay = None;
    if op == "ModifyTargetGroupAttributes" {
        for n in p.members("Attributes") {
            let key = p.get(&format!("Attributes.member.{n}.Key")).unwrap_or("");
            let value = p.get(&format!("Attributes.member.{n}.Value")).unwrap_or("");
            match key {
                "deregistration_delay.timeout_seconds" => {
                    delay = Some(value.parse::<u32>().map_err(|_| {
                        validation(format!(
                            "deregistration_delay.timeout_seconds '{value}' is not a number"
                        ))
                    })?);
                }
                other => {
                    return Err(validation(format!(
                        "attribute '{other}' is not supported by Slipway (deregistration_delay.timeout_seconds is)"
                    )));
                }
            }
        }
    }
    let secs = match delay {
        Some(d) => {
            app.set_deregistration_delay(&res, d)
                .await
                .map_err(app_error)?
                .deregistration_delay_s
        }
        None => {
            let st = app.elb_state().await?;
            let all = groups(call, &st).await?;
            all.iter()
                .find(|g| g.tg.resource() == res)
                .map(|g| g.tg.deregistration_delay_s)
                .ok_or_else(|| err("TargetGroupNotFound", "One or more target groups not found"))?
        }
    };
    Ok(json!({ "Attributes": [
        { "Key": "deregistration_delay.timeout_seconds", "Value": secs.to_string() },
        { "Key": "stickiness.enabled", "Value": "false" },
        { "Key": "load_balancing.algorithm.type", "Value": "round_robin" },
    ] }))
}

/// `"CreateListener"`.
pub(super) async fn create_listener(call: &Call<'_>, p: &Params) -> ElbResult {
    let app = &call.state.app;
    let arn = p.required("LoadBalancerArn")?;
    let lb = resource_of(arn)
        .filter(|r| r.starts_with("loadbalancer/app/"))
        .ok_or_else(|| validation(format!("'{arn}' is not a valid load balancer ARN")))?;
    if lb == ingress_lb().resource() {
        return Err(err(
            "OperationNotPermitted",
            "The ingress' own load balancer shows the routes of slipway.yml; create a load balancer for listeners",
        ));
    }
    let port: u16 = p
        .number::<u32>("Port")?
        .and_then(|x| u16::try_from(x).ok())
        .unwrap_or(80);
    let protocol = p.get("Protocol").unwrap_or("HTTP");
    if !matches!(protocol, "HTTP" | "HTTPS") {
        return Err(validation(format!(
            "Protocol '{protocol}': Slipway's ingress listens for HTTP"
        )));
    }
    let tg = default_forward(p, "DefaultActions")?;
    let l = app
        .create_listener(lb, port, protocol, tg.as_deref())
        .await
        .map_err(app_error)?;
    Ok(json!({ "Listeners": [listener_json(call, &l)] }))
}

/// `"CreateRule"`.
pub(super) async fn create_rule(call: &Call<'_>, p: &Params) -> ElbResult {
    let app = &call.state.app;
    let arn = p.required("ListenerArn")?;
    let listener = resource_of(arn)
        .filter(|r| r.starts_with("listener/app/"))
        .ok_or_else(|| validation(format!("'{arn}' is not a valid listener ARN")))?;
    let priority: u32 = p
        .number("Priority")?
        .ok_or_else(|| validation("Priority is required"))?;
    let mut paths = Vec::new();
    let mut hosts = Vec::new();
    for n in p.members("Conditions") {
        let field = p.get(&format!("Conditions.member.{n}.Field")).unwrap_or("");
        let mut values = p.list(&format!("Conditions.member.{n}.Values"));
        match field {
            "path-pattern" => {
                values.extend(p.list(&format!("Conditions.member.{n}.PathPatternConfig.Values")));
                paths.extend(values);
            }
            "host-header" => {
                values.extend(p.list(&format!("Conditions.member.{n}.HostHeaderConfig.Values")));
                hosts.extend(values);
            }
            other => {
                return Err(validation(format!(
                    "condition field '{other}' is not supported by Slipway (path-pattern and host-header are)"
                )));
            }
        }
    }
    let tg = default_forward(p, "Actions")?
        .ok_or_else(|| validation("A rule needs a forward action"))?;
    let r = app
        .create_rule(listener, priority, &paths, &hosts, &tg)
        .await
        .map_err(app_error)?;
    Ok(json!({ "Rules": [rule_json(call, &r)] }))
}

/// `"DescribeLoadBalancers"`.
pub(super) async fn describe_load_balancers(call: &Call<'_>, p: &Params) -> ElbResult {
    let app = &call.state.app;
    let st = app.elb_state().await?;
    let mut all: Vec<LoadBalancer> = vec![ingress_lb()];
    all.extend(st.load_balancers().cloned());
    let arns = p.list("LoadBalancerArns");
    let names = p.list("Names");
    let mut out = Vec::new();
    if !arns.is_empty() {
        for a in &arns {
            let lb = resource_of(a)
                .and_then(|r| all.iter().find(|l| l.resource() == r))
                .ok_or_else(|| {
                    err(
                        "LoadBalancerNotFound",
                        format!("Load balancers '[{a}]' not found"),
                    )
                })?;
            out.push(lb_json(call, lb));
        }
    } else if !names.is_empty() {
        for n in &names {
            let lb = all.iter().find(|l| &l.name == n).ok_or_else(|| {
                err(
                    "LoadBalancerNotFound",
                    format!("Load balancers '[{n}]' not found"),
                )
            })?;
            out.push(lb_json(call, lb));
        }
    } else {
        out = all.iter().map(|l| lb_json(call, l)).collect();
    }
    Ok(json!({ "LoadBalancers": out }))
}

/// `"DescribeTargetGroups"`.
pub(super) async fn describe_target_groups(call: &Call<'_>, p: &Params) -> ElbResult {
    let app = &call.state.app;
    let st = app.elb_state().await?;
    let all = groups(call, &st).await?;
    let arns = p.list("TargetGroupArns");
    let names = p.list("Names");
    let lb = p.get("LoadBalancerArn");
    let mut out = Vec::new();
    if !arns.is_empty() {
        for a in &arns {
            let g = resource_of(a)
                .and_then(|r| all.iter().find(|g| g.tg.resource() == r))
                .ok_or_else(|| {
                    err(
                        "TargetGroupNotFound",
                        format!("Target groups '[{a}]' not found"),
                    )
                })?;
            out.push(tg_json(call, g));
        }
    } else if !names.is_empty() {
        for n in &names {
            let g = all.iter().find(|g| &g.tg.name == n).ok_or_else(|| {
                err(
                    "TargetGroupNotFound",
                    format!("One or more target groups not found: '{n}'"),
                )
            })?;
            out.push(tg_json(call, g));
        }
    } else if let Some(a) = lb {
        let r = known_load_balancer(&st, a)?;
        out = all
            .iter()
            .filter(|g| g.load_balancers.iter().any(|x| x == r))
            .map(|g| tg_json(call, g))
            .collect();
    } else {
        out = all.iter().map(|g| tg_json(call, g)).collect();
    }
    Ok(json!({ "TargetGroups": out }))
}

/// `"DescribeTargetHealth"`.
pub(super) async fn describe_target_health(call: &Call<'_>, p: &Params) -> ElbResult {
    let app = &call.state.app;
    let arn = p.required("TargetGroupArn")?;
    let st = app.elb_state().await?;
    let all = groups(call, &st).await?;
    let g = resource_of(arn)
        .and_then(|r| all.iter().find(|g| g.tg.resource() == r))
        .ok_or_else(|| {
            err(
                "TargetGroupNotFound",
                format!("Target groups '[{arn}]' not found"),
            )
        })?;
    let keys = match &g.service {
        Some(k) => vec![k.clone()],
        None => app.services_of_target_group(&g.tg.resource()).await?,
    };
    let store = app.store();
    let mut out = Vec::new();
    for k in keys {
        let svc = store.get_service(&k).await?;
        let port = match &svc {
            Some(s) => store
                .get_task_definition(&k.family(), s.revision)
                .await?
                .and_then(|t| t.container.port),
            None => None,
        };
        for t in store.list_tasks(&k, false).await? {
            let (state, reason, description) = if !t.desired_running {
                if t.last_status == TaskStatus::Stopped {
                    continue;
                }
                (
                    "draining",
                    Some("Target.DeregistrationInProgress"),
                    Some("Target deregistration is in progress"),
                )
            } else {
                match (t.last_status, t.health) {
                    (TaskStatus::Running, TaskHealth::Healthy) => ("healthy", None, None),
                    (TaskStatus::Running, TaskHealth::Unhealthy) => (
                        "unhealthy",
                        Some("Target.FailedHealthChecks"),
                        Some("Health checks failed"),
                    ),
                    (TaskStatus::Stopped, _) => continue,
                    _ => (
                        "initial",
                        Some("Elb.RegistrationInProgress"),
                        Some("Target registration is in progress"),
                    ),
                }
            };
            let Some(ip) = t.address.clone() else {
                continue;
            };
            out.push(json!({
                "Target": { "Id": ip, "Port": port.unwrap_or(g.tg.port) },
                "HealthCheckPort": g.tg.health.port.or(port).unwrap_or(g.tg.port).to_string(),
                "TargetHealth": { "State": state, "Reason": reason, "Description": description },
            }));
        }
    }
    Ok(json!({ "TargetHealthDescriptions": out }))
}

/// `"DescribeListeners"`.
pub(super) async fn describe_listeners(call: &Call<'_>, p: &Params) -> ElbResult {
    let app = &call.state.app;
    let st = app.elb_state().await?;
    let arns = p.list("ListenerArns");
    let lb = p.get("LoadBalancerArn");
    if arns.is_empty() && lb.is_none() {
        return Err(validation(
            "You must specify either listener ARNs or a load balancer ARN",
        ));
    }
    let mut out = Vec::new();
    if let Some(a) = lb {
        let r = known_load_balancer(&st, a)?;
        out = st
            .listeners()
            .filter(|l| l.load_balancer == r)
            .map(|l| listener_json(call, l))
            .collect();
    }
    for a in &arns {
        let l = resource_of(a)
            .and_then(|r| st.listeners().find(|l| l.resource() == r))
            .ok_or_else(|| err("ListenerNotFound", format!("Listeners '[{a}]' not found")))?;
        out.push(listener_json(call, l));
    }
    Ok(json!({ "Listeners": out }))
}

/// `"DescribeRules"`.
pub(super) async fn describe_rules(call: &Call<'_>, p: &Params) -> ElbResult {
    let app = &call.state.app;
    let st = app.elb_state().await?;
    let arns = p.list("RuleArns");
    let mut out = Vec::new();
    if let Some(a) = p.get("ListenerArn") {
        let l = resource_of(a)
            .and_then(|r| st.listeners().find(|l| l.resource() == r))
            .ok_or_else(|| err("ListenerNotFound", format!("Listener '{a}' not found")))?;
        let mut rules: Vec<_> = st.rules().filter(|r| r.listener == l.resource()).collect();
        rules.sort_by_key(|r| r.priority);
        out = rules.into_iter().map(|r| rule_json(call, r)).collect();
        // The listener's default rule comes last.
        let actions = listener_json(call, l)["DefaultActions"].clone();
        out.push(json!({
            "RuleArn": call.elb_arn(&format!("listener-rule/{}/default", l.resource().trim_start_matches("listener/"))),
            "Priority": "default",
            "Conditions": [],
            "Actions": actions,
            "IsDefault": true,
        }));
    } else if arns.is_empty() {
        return Err(validation(
            "You must specify either listener ARN or rule ARNs",
        ));
    }
    for a in &arns {
        let r = resource_of(a)
            .and_then(|x| st.rules().find(|r| r.resource() == x))
            .ok_or_else(|| err("RuleNotFound", format!("Rules '[{a}]' not found")))?;
        out.push(rule_json(call, r));
    }
    Ok(json!({ "Rules": out }))
}

/// `"DeleteLoadBalancer" | "DeleteTargetGroup" | "DeleteListener" | "DeleteRule"`.
pub(super) async fn delete(call: &Call<'_>, p: &Params, op: &str) -> ElbResult {
    let app = &call.state.app;
    let (field, kind) = match op {
        "DeleteLoadBalancer" => ("LoadBalancerArn", "load_balancer"),
        "DeleteTargetGroup" => ("TargetGroupArn", "target_group"),
        "DeleteListener" => ("ListenerArn", "listener"),
        _ => ("RuleArn", "rule"),
    };
    let arn = p.required(field)?;
    let res = resource_of(arn).ok_or_else(|| validation(format!("'{arn}' is not a valid ARN")))?;
    if res == ingress_lb().resource()
        || res.starts_with("targetgroup/") && is_view(call, res).await?
    {
        return Err(err(
            "OperationNotPermitted",
            "This is the view of a slipway.yml service; change its http: section instead",
        ));
    }
    match app.delete_elb(kind, res).await {
        // Deleting a load balancer that is gone succeeds, as on AWS.
        Err(e) if kind == "load_balancer" && e.code == "LOAD_BALANCER_NOT_FOUND" => {}
        r => r.map_err(app_error)?,
    }
    Ok(json!({}))
}

/// The resource of load balancer ARN `a` (the ingress' own or one of `st`), or
/// `LoadBalancerNotFound`.
fn known_load_balancer<'a>(st: &ElbState, a: &'a str) -> ElbResult<&'a str> {
    resource_of(a)
        .filter(|r| {
            *r == ingress_lb().resource() || st.load_balancers().any(|l| l.resource() == *r)
        })
        .ok_or_else(|| {
            err(
                "LoadBalancerNotFound",
                format!("Load balancer '{a}' not found"),
            )
        })
}
