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

mod ops;

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

/// ISO 8601 of unix milliseconds (UTC), as AWS writes times.
pub(crate) fn iso(ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(at).to_string()
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
    match op {
        "CreateLoadBalancer" => ops::create_load_balancer(call, &p).await,
        "CreateTargetGroup" => ops::create_target_group(call, &p).await,
        "ModifyTargetGroupAttributes" | "DescribeTargetGroupAttributes" => {
            ops::target_group_attributes(call, &p, op).await
        }
        "CreateListener" => ops::create_listener(call, &p).await,
        "CreateRule" => ops::create_rule(call, &p).await,
        "DescribeLoadBalancers" => ops::describe_load_balancers(call, &p).await,
        "DescribeTargetGroups" => ops::describe_target_groups(call, &p).await,
        "DescribeTargetHealth" => ops::describe_target_health(call, &p).await,
        "DescribeListeners" => ops::describe_listeners(call, &p).await,
        "DescribeRules" => ops::describe_rules(call, &p).await,
        "DeleteLoadBalancer" | "DeleteTargetGroup" | "DeleteListener" | "DeleteRule" => {
            ops::delete(call, &p, op).await
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
