//! The ELBv2 subset (`elasticloadbalancing`, the query protocol: a form body with
//! `Action=...&Version=2015-12-01`, XML answers): load balancers, target groups, listeners
//! and rules are records of the application layer, and Slipway's ingress is the load
//! balancer of them all (`DNSName` is the address where it answers). Services deployed from
//! `slipway.yml` with an `http:` route show as target groups of the load balancer
//! [`INGRESS_LB`] (a view: they cannot be changed through ELBv2).

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};
use slipway_app::{ElbState, NewTargetGroup};
use slipway_core::elb::{
    DEFAULT_DEREGISTRATION_DELAY_S, LoadBalancer, TargetGroup, TargetHealthCheck,
};
use slipway_core::model::{ContainerSpec, ServiceKey, TaskHealth, TaskStatus};

use crate::{ACCOUNT_ID, AwsError, Call, xml_escape, xml_response};

/// Every operation [`dispatch`] answers (each has a rule in the permission table).
#[cfg(test)]
pub(crate) const OPERATIONS: &[&str] = &[
    "CreateLoadBalancer",
    "CreateTargetGroup",
    "ModifyTargetGroupAttributes",
    "CreateListener",
    "CreateRule",
    "DescribeLoadBalancers",
    "DescribeTargetGroups",
    "DescribeTargetGroupAttributes",
    "DescribeTargetHealth",
    "DescribeListeners",
    "DescribeRules",
    "DeleteLoadBalancer",
    "DeleteTargetGroup",
    "DeleteListener",
    "DeleteRule",
];

/// The API version of the query protocol.
pub(crate) const VERSION: &str = "2015-12-01";
const NS: &str = "https://elasticloadbalancing.amazonaws.com/doc/2015-12-01/";
/// The load balancer that stands for the ingress in the view of manifest services.
pub(crate) const INGRESS_LB: &str = "slipway-ingress";
const INGRESS_LB_ID: &str = "0000000000000000";
const VPC: &str = "vpc-slipway";

type ElbResult<T = Value> = Result<T, AwsError>;

fn err(kind: &'static str, message: impl Into<String>) -> AwsError {
    AwsError::client(kind, message)
}

fn validation(message: impl Into<String>) -> AwsError {
    err("ValidationError", message)
}

/// A use case's error in ELBv2's words.
fn app_error(e: slipway_app::AppError) -> AwsError {
    use slipway_app::ErrorKind;
    let kind = match (e.code, e.kind) {
        ("DUPLICATE_LOAD_BALANCER_NAME", _) => "DuplicateLoadBalancerName",
        ("DUPLICATE_TARGET_GROUP_NAME", _) => "DuplicateTargetGroupName",
        ("DUPLICATE_LISTENER", _) => "DuplicateListener",
        ("PRIORITY_IN_USE", _) => "PriorityInUse",
        ("RESOURCE_IN_USE", _) => "ResourceInUse",
        ("LOAD_BALANCER_NOT_FOUND", _) => "LoadBalancerNotFound",
        ("TARGET_GROUP_NOT_FOUND", _) => "TargetGroupNotFound",
        ("LISTENER_NOT_FOUND", _) => "ListenerNotFound",
        ("RULE_NOT_FOUND", _) => "RuleNotFound",
        (_, ErrorKind::Invalid) => "ValidationError",
        (_, ErrorKind::NotFound) => "ValidationError",
        (_, ErrorKind::Conflict | ErrorKind::Unprocessable) => "ValidationError",
        _ => return AwsError::server(e.message),
    };
    err(kind, e.message)
}

/// The form parameters of a query-protocol request.
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub(crate) fn parse(body: &[u8]) -> Params {
        Params(form_urlencoded::parse(body).into_owned().collect())
    }

    pub(crate) fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str())
    }

    fn required(&self, k: &str) -> ElbResult<&str> {
        self.get(k)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| validation(format!("{k} is required")))
    }

    fn number<T: std::str::FromStr>(&self, k: &str) -> ElbResult<Option<T>> {
        self.get(k)
            .map(|v| {
                v.parse()
                    .map_err(|_| validation(format!("{k} '{v}' is not a valid number")))
            })
            .transpose()
    }

    /// `PREFIX.member.N` values in the order of N.
    pub(crate) fn list(&self, prefix: &str) -> Vec<String> {
        let head = format!("{prefix}.member.");
        let mut v: Vec<(u32, String)> = self
            .0
            .iter()
            .filter_map(|(k, v)| {
                let n = k.strip_prefix(&head)?.parse().ok()?;
                Some((n, v.clone()))
            })
            .collect();
        v.sort();
        v.into_iter().map(|(_, v)| v).collect()
    }

    /// The indexes N of `PREFIX.member.N.*` in order.
    fn members(&self, prefix: &str) -> Vec<u32> {
        let head = format!("{prefix}.member.");
        let mut v: Vec<u32> = self
            .0
            .iter()
            .filter_map(|(k, _)| k.strip_prefix(&head)?.split('.').next()?.parse().ok())
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

/// The resource part of an ELBv2 ARN (`targetgroup/NAME/ID`), any region.
pub(crate) fn resource_of(arn: &str) -> Option<&str> {
    let rest = arn.strip_prefix("arn:aws:elasticloadbalancing:")?;
    let (_region, rest) = rest.split_once(':')?;
    let (account, resource) = rest.split_once(':')?;
    (account == ACCOUNT_ID && !resource.is_empty()).then_some(resource)
}

/// The resource of a target group ARN, or `None` when it is not one.
pub(crate) fn target_group_of(arn: &str) -> Option<String> {
    resource_of(arn)
        .filter(|r| r.starts_with("targetgroup/") && r.split('/').count() == 3)
        .map(str::to_owned)
}

impl Call<'_> {
    pub(crate) fn elb_arn(&self, resource: &str) -> String {
        self.arn("elasticloadbalancing", resource)
    }
}

/// A hash of a service key: the id of its target group in the view.
fn view_id(key: &ServiceKey) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn ingress_lb() -> LoadBalancer {
    LoadBalancer {
        name: INGRESS_LB.into(),
        id: INGRESS_LB_ID.into(),
        scheme: "internet-facing".into(),
        created_at: 0,
    }
}

/// A target group as the describe calls show it, with its load balancers (resources).
struct Group {
    tg: TargetGroup,
    load_balancers: Vec<String>,
    /// Set for the view of a manifest service.
    service: Option<ServiceKey>,
}

/// The view of a manifest service with a route: a target group of the ingress.
fn view_group(key: &ServiceKey, c: &ContainerSpec) -> Option<Group> {
    let route = c.http_route.as_ref()?;
    if route.target_group.is_some() {
        return None;
    }
    let mut name: String = format!("{}-{}-{}", key.app, key.env, key.name)
        .chars()
        .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '-' })
        .take(32)
        .collect();
    while name.ends_with('-') {
        name.pop();
    }
    let health = match &c.http_health {
        Some(h) => TargetHealthCheck {
            path: h.path.clone(),
            port: h.port,
            protocol: "HTTP".into(),
            interval_s: (h.interval_ms / 1000).max(1) as u32,
            timeout_s: (h.timeout_ms / 1000).max(1) as u32,
            healthy_threshold: h.healthy_threshold,
            unhealthy_threshold: h.unhealthy_threshold,
            matcher: h
                .success_codes
                .iter()
                .map(|(a, b)| {
                    if a == b {
                        a.to_string()
                    } else {
                        format!("{a}-{b}")
                    }
                })
                .collect::<Vec<_>>()
                .join(","),
        },
        None => TargetHealthCheck::default(),
    };
    Some(Group {
        tg: TargetGroup {
            name,
            id: view_id(key),
            protocol: "HTTP".into(),
            port: c.port.unwrap_or(80),
            target_type: "ip".into(),
            health,
            deregistration_delay_s: (route.deregistration_delay_ms / 1000) as u32,
            created_at: 0,
        },
        load_balancers: vec![ingress_lb().resource()],
        service: Some(key.clone()),
    })
}

/// Every target group: the records and the view of manifest services.
async fn groups(call: &Call<'_>, st: &ElbState) -> ElbResult<Vec<Group>> {
    let mut out: Vec<Group> = st
        .target_groups()
        .map(|t| Group {
            tg: t.clone(),
            load_balancers: st.load_balancers_of(&t.resource()),
            service: None,
        })
        .collect();
    let store = call.state.app.store();
    for svc in store.list_services(None).await? {
        if svc.deleting {
            continue;
        }
        if let Some(td) = store
            .get_task_definition(&svc.key.family(), svc.revision)
            .await?
            && let Some(g) = view_group(&svc.key, &td.container)
        {
            out.push(g);
        }
    }
    Ok(out)
}

/// The target group ARN a service's current container is attached to, with the container
/// name and port (ECS `loadBalancers[]`): its ELBv2 attachment, or its view.
pub(crate) fn service_load_balancers(
    call: &Call<'_>,
    key: &ServiceKey,
    c: &ContainerSpec,
    container_name: &str,
) -> Value {
    let Some(route) = &c.http_route else {
        return json!([]);
    };
    match &route.target_group {
        Some(b) => json!([{
            "targetGroupArn": call.elb_arn(&b.target_group),
            "containerName": b.container_name,
            "containerPort": b.container_port,
        }]),
        None => match view_group(key, c) {
            Some(g) => json!([{
                "targetGroupArn": call.elb_arn(&g.tg.resource()),
                "containerName": container_name,
                "containerPort": c.port,
            }]),
            None => json!([]),
        },
    }
}

/// `host[:port]` where the ingress answers: its address, or when it listens on every
/// address, the host the client reached the API at with the ingress' port.
fn dns_name(call: &Call<'_>) -> String {
    let Some(addr) = &call.state.ingress_addr else {
        return "127.0.0.1".into();
    };
    let (host, port) = match addr.rsplit_once(':') {
        Some((h, p)) => (h, p),
        None => (addr.as_str(), "80"),
    };
    let host = if matches!(host, "0.0.0.0" | "[::]" | "::") {
        let origin = call
            .origin
            .trim_start_matches("http://")
            .trim_start_matches("https://");
        match origin.rsplit_once(':') {
            Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h.to_owned(),
            _ => origin.to_owned(),
        }
    } else {
        host.to_owned()
    };
    if port == "80" {
        host
    } else {
        format!("{host}:{port}")
    }
}

/// ISO 8601 of unix milliseconds (UTC).
pub(crate) fn iso(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60,
        ms.rem_euclid(1000)
    )
}

fn lb_json(call: &Call<'_>, lb: &LoadBalancer) -> Value {
    json!({
        "LoadBalancerArn": call.elb_arn(&lb.resource()),
        "DNSName": dns_name(call),
        "CanonicalHostedZoneId": "Z0000000SLIPWAY",
        "CreatedTime": iso(lb.created_at),
        "LoadBalancerName": lb.name,
        "Scheme": lb.scheme,
        "VpcId": VPC,
        "State": { "Code": "active" },
        "Type": "application",
        "AvailabilityZones": [],
        "SecurityGroups": [],
        "IpAddressType": "ipv4",
    })
}

fn tg_json(call: &Call<'_>, g: &Group) -> Value {
    let t = &g.tg;
    json!({
        "TargetGroupArn": call.elb_arn(&t.resource()),
        "TargetGroupName": t.name,
        "Protocol": t.protocol,
        "Port": t.port,
        "VpcId": VPC,
        "HealthCheckProtocol": t.health.protocol,
        "HealthCheckPort": t.health.port.map_or_else(|| "traffic-port".to_owned(), |p| p.to_string()),
        "HealthCheckEnabled": true,
        "HealthCheckIntervalSeconds": t.health.interval_s,
        "HealthCheckTimeoutSeconds": t.health.timeout_s,
        "HealthyThresholdCount": t.health.healthy_threshold,
        "UnhealthyThresholdCount": t.health.unhealthy_threshold,
        "HealthCheckPath": t.health.path,
        "Matcher": { "HttpCode": t.health.matcher },
        "LoadBalancerArns": g.load_balancers.iter().map(|r| call.elb_arn(r)).collect::<Vec<_>>(),
        "TargetType": t.target_type,
        "ProtocolVersion": "HTTP1",
        "IpAddressType": "ipv4",
    })
}

fn forward(call: &Call<'_>, tg: &str) -> Value {
    json!({
        "Type": "forward",
        "TargetGroupArn": call.elb_arn(tg),
        "Order": 1,
        "ForwardConfig": { "TargetGroups": [{ "TargetGroupArn": call.elb_arn(tg), "Weight": 1 }] },
    })
}

fn listener_json(call: &Call<'_>, l: &slipway_core::elb::Listener) -> Value {
    let actions = match &l.default_target_group {
        Some(tg) => json!([forward(call, tg)]),
        None => json!([{
            "Type": "fixed-response",
            "Order": 1,
            "FixedResponseConfig": { "StatusCode": "404", "ContentType": "text/plain" },
        }]),
    };
    json!({
        "ListenerArn": call.elb_arn(&l.resource()),
        "LoadBalancerArn": call.elb_arn(&l.load_balancer),
        "Port": l.port,
        "Protocol": l.protocol,
        "DefaultActions": actions,
    })
}

fn rule_json(call: &Call<'_>, r: &slipway_core::elb::ListenerRule) -> Value {
    let mut conditions = Vec::new();
    if !r.paths.is_empty() {
        conditions.push(json!({
            "Field": "path-pattern",
            "Values": r.paths,
            "PathPatternConfig": { "Values": r.paths },
        }));
    }
    if !r.hosts.is_empty() {
        conditions.push(json!({
            "Field": "host-header",
            "Values": r.hosts,
            "HostHeaderConfig": { "Values": r.hosts },
        }));
    }
    json!({
        "RuleArn": call.elb_arn(&r.resource()),
        "Priority": r.priority.to_string(),
        "Conditions": conditions,
        "Actions": [forward(call, &r.target_group)],
        "IsDefault": false,
    })
}

/// Renders a JSON value as the query protocol's XML: objects as elements, arrays as
/// `<member>` lists, null left out.
fn xml(v: &Value, out: &mut String) {
    match v {
        Value::Null => {}
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => out.push_str(&xml_escape(s)),
        Value::Array(a) => {
            for x in a {
                out.push_str("<member>");
                xml(x, out);
                out.push_str("</member>");
            }
        }
        Value::Object(m) => {
            for (k, x) in m {
                if x.is_null() {
                    continue;
                }
                out.push_str(&format!("<{k}>"));
                xml(x, out);
                out.push_str(&format!("</{k}>"));
            }
        }
    }
}

pub(crate) fn reply(op: &str, result: &Value, rid: &str) -> Response {
    let mut body = String::new();
    xml(result, &mut body);
    xml_response(
        StatusCode::OK,
        format!(
            "<{op}Response xmlns=\"{NS}\"><{op}Result>{body}</{op}Result><ResponseMetadata><RequestId>{rid}</RequestId></ResponseMetadata></{op}Response>"
        ),
        rid,
    )
}

pub(crate) fn error(e: &AwsError, rid: &str) -> Response {
    let code = match e.kind {
        "UnrecognizedClientException" => "InvalidClientTokenId",
        "InvalidSignatureException" => "SignatureDoesNotMatch",
        "AccessDeniedException" => "AccessDenied",
        "UnknownOperationException" => "InvalidAction",
        "ThrottlingException" => "Throttling",
        other => other,
    };
    let kind = if e.status.is_server_error() {
        "Receiver"
    } else {
        "Sender"
    };
    xml_response(
        e.status,
        format!(
            "<ErrorResponse xmlns=\"{NS}\"><Error><Type>{kind}</Type><Code>{code}</Code><Message>{}</Message></Error><RequestId>{rid}</RequestId></ErrorResponse>",
            xml_escape(&e.message)
        ),
        rid,
    )
}

/// What a mutating call names, for the audit log.
pub(crate) fn audit_target(body: &[u8]) -> String {
    let p = Params::parse(body);
    [
        "Name",
        "LoadBalancerArn",
        "TargetGroupArn",
        "ListenerArn",
        "RuleArn",
    ]
    .iter()
    .filter_map(|k| p.get(k).map(|v| format!("{k}={v}")))
    .collect::<Vec<_>>()
    .join(" ")
}

pub(crate) async fn dispatch(call: &Call<'_>, op: &str, body: &[u8]) -> ElbResult {
    let p = Params::parse(body);
    if let Some(v) = p.get("Version")
        && v != VERSION
    {
        return Err(validation(format!(
            "Version {v} is not supported; Slipway's ELBv2 speaks {VERSION}"
        )));
    }
    let app = &call.state.app;
    match op {
        "CreateLoadBalancer" => {
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
                    format!(
                        "A load balancer with the same name '{name}' exists (Slipway's ingress)"
                    ),
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
        "CreateTargetGroup" => {
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
            let health_port =
                match p.get("HealthCheckPort") {
                    None | Some("traffic-port") => None,
                    Some(v) => Some(v.parse::<u16>().ok().filter(|x| *x > 0).ok_or_else(|| {
                        validation(format!("HealthCheckPort '{v}' is not valid"))
                    })?),
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
        "ModifyTargetGroupAttributes" | "DescribeTargetGroupAttributes" => {
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
                        .ok_or_else(|| {
                            err("TargetGroupNotFound", "One or more target groups not found")
                        })?
                }
            };
            Ok(json!({ "Attributes": [
                { "Key": "deregistration_delay.timeout_seconds", "Value": secs.to_string() },
                { "Key": "stickiness.enabled", "Value": "false" },
                { "Key": "load_balancing.algorithm.type", "Value": "round_robin" },
            ] }))
        }
        "CreateListener" => {
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
            let tg = default_forward(&p, "DefaultActions")?;
            let l = app
                .create_listener(lb, port, protocol, tg.as_deref())
                .await
                .map_err(app_error)?;
            Ok(json!({ "Listeners": [listener_json(call, &l)] }))
        }
        "CreateRule" => {
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
                        values.extend(
                            p.list(&format!("Conditions.member.{n}.PathPatternConfig.Values")),
                        );
                        paths.extend(values);
                    }
                    "host-header" => {
                        values.extend(
                            p.list(&format!("Conditions.member.{n}.HostHeaderConfig.Values")),
                        );
                        hosts.extend(values);
                    }
                    other => {
                        return Err(validation(format!(
                            "condition field '{other}' is not supported by Slipway (path-pattern and host-header are)"
                        )));
                    }
                }
            }
            let tg = default_forward(&p, "Actions")?
                .ok_or_else(|| validation("A rule needs a forward action"))?;
            let r = app
                .create_rule(listener, priority, &paths, &hosts, &tg)
                .await
                .map_err(app_error)?;
            Ok(json!({ "Rules": [rule_json(call, &r)] }))
        }
        "DescribeLoadBalancers" => {
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
        "DescribeTargetGroups" => {
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
                let r = resource_of(a)
                    .filter(|r| {
                        *r == ingress_lb().resource()
                            || st.load_balancers().any(|l| l.resource() == *r)
                    })
                    .ok_or_else(|| {
                        err(
                            "LoadBalancerNotFound",
                            format!("Load balancer '{a}' not found"),
                        )
                    })?;
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
        "DescribeTargetHealth" => {
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
        "DescribeListeners" => {
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
                let r = resource_of(a)
                    .filter(|r| {
                        *r == ingress_lb().resource()
                            || st.load_balancers().any(|l| l.resource() == *r)
                    })
                    .ok_or_else(|| {
                        err(
                            "LoadBalancerNotFound",
                            format!("Load balancer '{a}' not found"),
                        )
                    })?;
                out = st
                    .listeners()
                    .filter(|l| l.load_balancer == r)
                    .map(|l| listener_json(call, l))
                    .collect();
            }
            for a in &arns {
                let l = resource_of(a)
                    .and_then(|r| st.listeners().find(|l| l.resource() == r))
                    .ok_or_else(|| {
                        err("ListenerNotFound", format!("Listeners '[{a}]' not found"))
                    })?;
                out.push(listener_json(call, l));
            }
            Ok(json!({ "Listeners": out }))
        }
        "DescribeRules" => {
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
        "DeleteLoadBalancer" | "DeleteTargetGroup" | "DeleteListener" | "DeleteRule" => {
            let (field, kind) = match op {
                "DeleteLoadBalancer" => ("LoadBalancerArn", "load_balancer"),
                "DeleteTargetGroup" => ("TargetGroupArn", "target_group"),
                "DeleteListener" => ("ListenerArn", "listener"),
                _ => ("RuleArn", "rule"),
            };
            let arn = p.required(field)?;
            let res = resource_of(arn)
                .ok_or_else(|| validation(format!("'{arn}' is not a valid ARN")))?;
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
        other => Err(err(
            "InvalidAction",
            format!("Could not find operation {other} for version {VERSION}"),
        )),
    }
}

async fn is_view(call: &Call<'_>, res: &str) -> ElbResult<bool> {
    let st = call.state.app.elb_state().await?;
    if st.target_group(res).is_some() {
        return Ok(false);
    }
    Ok(groups(call, &st)
        .await?
        .iter()
        .any(|g| g.service.is_some() && g.tg.resource() == res))
}

/// The target group (resource) of the forward action among `PREFIX.member.N`.
fn default_forward(p: &Params, prefix: &str) -> ElbResult<Option<String>> {
    let mut found = None;
    for n in p.members(prefix) {
        let ty = p.get(&format!("{prefix}.member.{n}.Type")).unwrap_or("");
        if ty != "forward" {
            return Err(validation(format!(
                "action type '{ty}' is not supported by Slipway (forward is)"
            )));
        }
        let arn = p
            .get(&format!("{prefix}.member.{n}.TargetGroupArn"))
            .map(str::to_owned)
            .or_else(|| {
                p.get(&format!(
                    "{prefix}.member.{n}.ForwardConfig.TargetGroups.member.1.TargetGroupArn"
                ))
                .map(str::to_owned)
            })
            .ok_or_else(|| validation("A forward action needs a TargetGroupArn"))?;
        if p.get(&format!(
            "{prefix}.member.{n}.ForwardConfig.TargetGroups.member.2.TargetGroupArn"
        ))
        .is_some()
        {
            return Err(validation(
                "weighted forwards to several target groups are not supported by Slipway (its rollouts weigh versions of one service)",
            ));
        }
        let res = target_group_of(&arn)
            .ok_or_else(|| validation(format!("'{arn}' is not a valid target group ARN")))?;
        if found.replace(res).is_some() {
            return Err(validation("only one forward action is supported"));
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_parse_to_resources_in_any_region() {
        assert_eq!(
            resource_of(
                "arn:aws:elasticloadbalancing:eu-west-1:000000000000:targetgroup/users/0123"
            ),
            Some("targetgroup/users/0123")
        );
        assert_eq!(
            target_group_of("arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/u/1"),
            Some("targetgroup/u/1".to_owned())
        );
        assert_eq!(
            target_group_of(
                "arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/app/a/1"
            ),
            None
        );
        assert_eq!(
            resource_of("arn:aws:ecs:us-east-1:000000000000:service/a/b"),
            None
        );
        assert_eq!(
            resource_of("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/u/1"),
            None
        );
    }

    #[test]
    fn query_lists_and_members_in_order() {
        let p = Params::parse(
            b"Action=CreateRule&Conditions.member.2.Field=host-header&Conditions.member.1.Field=path-pattern&Conditions.member.1.Values.member.2=%2Fb&Conditions.member.1.Values.member.1=%2Fa&Names.member.10=z&Names.member.2=y",
        );
        assert_eq!(p.members("Conditions"), vec![1, 2]);
        assert_eq!(p.list("Conditions.member.1.Values"), vec!["/a", "/b"]);
        assert_eq!(p.list("Names"), vec!["y", "z"]);
        let f = Params::parse(
            b"Actions.member.1.Type=forward&Actions.member.1.TargetGroupArn=arn%3Aaws%3Aelasticloadbalancing%3Aus-east-1%3A000000000000%3Atargetgroup%2Fu%2F1",
        );
        assert_eq!(
            default_forward(&f, "Actions").unwrap(),
            Some("targetgroup/u/1".to_owned())
        );
        let bad = Params::parse(b"Actions.member.1.Type=redirect");
        assert_eq!(
            default_forward(&bad, "Actions").unwrap_err().kind,
            "ValidationError"
        );
    }

    #[test]
    fn xml_renders_members_and_leaves_out_null() {
        let mut s = String::new();
        xml(
            &json!({"A": [{"B": 1, "C": null}], "D": "x<y", "E": true}),
            &mut s,
        );
        assert_eq!(
            s,
            "<A><member><B>1</B></member></A><D>x&lt;y</D><E>true</E>"
        );
    }

    #[test]
    fn iso_times() {
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso(1_796_644_800_123), "2026-12-07T12:00:00.123Z");
    }

    #[test]
    fn views_of_manifest_services_have_stable_ids() {
        let k = ServiceKey::new("shop", "default", "api");
        assert_eq!(view_id(&k), view_id(&k));
        assert_ne!(
            view_id(&k),
            view_id(&ServiceKey::new("shop", "prod", "api"))
        );
    }
}
