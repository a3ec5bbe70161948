//! Slipway's AWS-compatible front door: the ECS and ECR subsets over AWS JSON 1.1, and the
//! ELBv2 subset and STS `GetCallerIdentity` over the query protocol, all on `POST /` of the server's API address,
//! authenticated with SigV4 access keys (`slipway access-key create`).
//!
//! One model, two front doors: ECS clusters, task definitions, services and tasks are views
//! of Slipway's own apps, environments, task definition revisions, services, deployments
//! and tasks; ECR repositories and images are the built-in registry's.
//!
//! | ECS | Slipway |
//! | --- | --- |
//! | cluster `C` | app `C`, environment `default` (a manifest's app `A` environment `E` shows as cluster `A-E`, or `A` for `default`) |
//! | service `S` of cluster `C` | service `C/default/S` |
//! | task definition `F:N` | task definition revision `F:N` (a service runs a pinned copy in its own family) |
//! | deployment `ecs-svc/ID` | deployment `ID` |
//!
//! Each answer carries its operation for the request metrics (`ecs:CreateService`; an
//! operation without a permission rule is `FACE:(unknown)`, so callers cannot grow the
//! label set).

mod ecr;
mod ecs;
mod elb;
mod keys;
pub mod sigv4;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::Value;
use slipway_app::App;
use slipway_core::access::Face;
use slipway_registry::Registry;
use slipway_store::{AccessKey, StoreError};

pub use keys::{AccessKeyCreated, AccessKeyInfo, CreateAccessKey, KeyCache};

/// The fixed account id of every ARN.
pub const ACCOUNT_ID: &str = "000000000000";
/// Region used in ARNs when a request does not name one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Shared state of the AWS front door.
#[derive(Clone)]
pub struct AwsState {
    pub app: App,
    pub registry: Registry,
    /// Access keys and SigV4 signing keys kept in memory.
    pub keys: Arc<KeyCache>,
    /// Per-identity request rates (shared with the native API).
    pub limiter: Arc<slipway_api::RateLimiter>,
    /// The address the ingress listens on (`host:port`; `0.0.0.0` for every address):
    /// ELBv2's `DNSName`.
    pub ingress_addr: Option<String>,
}

/// An AWS error: HTTP status, error shape name and message.
#[derive(Debug, Clone)]
pub struct AwsError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
}

impl AwsError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        AwsError {
            status,
            kind,
            message: message.into(),
        }
    }

    pub fn client(kind: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, kind, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::client("InvalidParameterException", message)
    }

    pub fn server(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServerException",
            message,
        )
    }

    fn json_response(&self, request_id: &str) -> Response {
        let body = serde_json::json!({ "__type": self.kind, "message": self.message });
        let mut r = (self.status, body.to_string()).into_response();
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_1_1));
        if let Ok(v) = HeaderValue::from_str(self.kind) {
            h.insert("x-amzn-errortype", v);
        }
        if let Ok(v) = HeaderValue::from_str(request_id) {
            h.insert("x-amzn-requestid", v);
        }
        r
    }
}

impl From<StoreError> for AwsError {
    fn from(e: StoreError) -> Self {
        slipway_app::AppError::from(e).into()
    }
}

/// A use case's error as the AWS APIs name it.
impl From<slipway_app::AppError> for AwsError {
    fn from(e: slipway_app::AppError) -> Self {
        use slipway_app::ErrorKind;
        let kind = match (e.code, e.kind) {
            ("SERVICE_NOT_ACTIVE", _) => "ServiceNotActiveException",
            ("CLUSTER_HAS_SERVICES", _) => "ClusterContainsServicesException",
            ("CLUSTER_HAS_TASKS", _) => "ClusterContainsTasksException",
            ("TASK_DEFINITION_INACTIVE", _) => "ClientException",
            ("VERSION_CONFLICT", _) => "ConflictException",
            (_, ErrorKind::Invalid) => "InvalidParameterException",
            (_, ErrorKind::NotFound) => "ResourceNotFoundException",
            (_, ErrorKind::Conflict | ErrorKind::Unprocessable) => "ClientException",
            (_, ErrorKind::Upstream | ErrorKind::Timeout | ErrorKind::Internal) => {
                tracing::error!(error = %e.message, "the AWS API failed");
                return AwsError::server(e.message);
            }
        };
        AwsError::client(kind, e.message)
    }
}

pub(crate) type AwsResult<T = Value> = Result<T, AwsError>;

const JSON_1_1: &str = "application/x-amz-json-1.1";
const ECS_PREFIX: &str = "AmazonEC2ContainerServiceV20141113.";
const ECR_PREFIX: &str = "AmazonEC2ContainerRegistry_V20150921.";

/// What a request is, once authenticated.
pub(crate) struct Call<'a> {
    pub state: &'a AwsState,
    pub key: AccessKey,
    /// Who the key acts as (its owner's role and scope, or the admin's).
    pub who: slipway_core::access::Identity,
    pub region: String,
    /// `scheme://host[:port]` the client used: the registry's address for ECR.
    pub origin: String,
}

impl Call<'_> {
    pub fn arn(&self, service: &str, resource: &str) -> String {
        format!("arn:aws:{service}:{}:{ACCOUNT_ID}:{resource}", self.region)
    }
}

/// The AWS front door: `POST /` (ECS, ECR, ELBv2, STS).
pub fn router(state: AwsState) -> Router {
    Router::new().route("/", post(handle)).with_state(state)
}

/// The native access-key routes under `/api/v1/access-keys`, to be put behind the native
/// API's gate.
pub fn keys_router(state: AwsState) -> Router {
    Router::new()
        .route("/api/v1/access-keys", get(keys::list).post(keys::create))
        .route("/api/v1/access-keys/{id}", delete(keys::revoke))
        .with_state(state)
}

fn request_id() -> String {
    let r = slipway_store::random_id(16);
    format!(
        "{}-{}-{}-{}-{}",
        &r[0..8],
        &r[8..12],
        &r[12..16],
        &r[16..20],
        &r[20..32]
    )
}

pub(crate) enum Protocol {
    Ecs(String),
    Ecr(String),
    Sts,
    /// ELBv2 over the query protocol (`Version=2015-12-01`).
    Elb(String),
    Unknown(String),
}

async fn handle(
    State(state): State<AwsState>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let proto = protocol(&headers, &body);
    let label = operation_label(&proto, &body);
    let mut resp = respond(state, peer, method, uri, headers, body, proto).await;
    resp.extensions_mut().insert(label);
    resp
}

/// The operation of a call for the request metrics: `ecs:CreateService`, `sts:GetCallerIdentity`,
/// ... for operations with a permission rule, `FACE:(unknown)` (or `(unknown)`) for the rest,
/// so a caller cannot grow the label set.
fn operation_label(proto: &Protocol, body: &[u8]) -> slipway_metrics::Operation {
    let label = match (proto, face_op(proto, body)) {
        (Protocol::Unknown(_), _) => "(unknown)".to_owned(),
        (_, (face, op)) => match slipway_core::access::rule(face, &op) {
            Some(r) => format!("{}:{}", face.as_str(), r.op),
            None => format!("{}:(unknown)", face.as_str()),
        },
    };
    slipway_metrics::Operation::new(slipway_metrics::Face::Aws, label)
}

/// Which protocol and operation a request speaks, from its target header or its form body.
fn protocol(headers: &HeaderMap, body: &[u8]) -> Protocol {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match &target {
        Some(t) => {
            if let Some(op) = t.strip_prefix(ECS_PREFIX) {
                Protocol::Ecs(op.to_owned())
            } else if let Some(op) = t.strip_prefix(ECR_PREFIX) {
                Protocol::Ecr(op.to_owned())
            } else {
                Protocol::Unknown(t.clone())
            }
        }
        // STS speaks the query protocol (a form body); a JSON body without a target is a
        // client that forgot X-Amz-Target.
        None if headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("application/x-amz-json")) =>
        {
            Protocol::Unknown("(none)".into())
        }
        // The query protocol: ELBv2 names its version, STS is the rest.
        None => {
            let params = elb::Params::parse(body);
            if params.get("Version") == Some(elb::VERSION) {
                Protocol::Elb(params.get("Action").unwrap_or_default().to_owned())
            } else {
                Protocol::Sts
            }
        }
    }
}

/// The face and operation of a call (as the permission table names them).
fn face_op(proto: &Protocol, body: &[u8]) -> (Face, String) {
    match proto {
        Protocol::Ecs(op) => (Face::Ecs, op.clone()),
        Protocol::Ecr(op) => (Face::Ecr, op.clone()),
        Protocol::Elb(op) => (Face::Elb, op.clone()),
        Protocol::Sts => (
            Face::Sts,
            form_urlencoded::parse(body)
                .find(|(k, _)| k == "Action")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default(),
        ),
        Protocol::Unknown(t) => (Face::Ecs, t.clone()),
    }
}

/// Answers one call: authentication, the permission table, the rate limit, the operation
/// and its audit entry.
async fn respond(
    state: AwsState,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    proto: Protocol,
) -> Response {
    let rid = request_id();
    let source = peer.map_or_else(|| "unknown".to_owned(), |p| p.0.0.to_string());
    let expected_service = match &proto {
        Protocol::Ecs(_) => Some("ecs"),
        Protocol::Ecr(_) => Some("ecr"),
        Protocol::Sts => Some("sts"),
        Protocol::Elb(_) => Some("elasticloadbalancing"),
        Protocol::Unknown(_) => None,
    };
    let auth = authenticate(&state, &method, &uri, &headers, &body, expected_service).await;
    let (key, region) = match auth {
        Ok(k) => k,
        Err(e) => {
            tracing::info!(error = %e.message, kind = e.kind, "AWS API request refused");
            return error_reply(&proto, &e, &rid);
        }
    };
    let origin = {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("127.0.0.1");
        // Behind a TLS-terminating proxy the registry is reached over https.
        let scheme = match headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
        {
            Some("https") => "https",
            _ => "http",
        };
        format!("{scheme}://{host}")
    };
    let (face, op) = face_op(&proto, &body);
    let who = match state.app.key_identity(&key).await {
        Ok(Some(w)) => w,
        Ok(None) => {
            let e = AwsError::new(
                StatusCode::FORBIDDEN,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            );
            return error_reply(&proto, &e, &rid);
        }
        Err(e) => return error_reply(&proto, &AwsError::from(e), &rid),
    };
    let call = Call {
        state: &state,
        key,
        who,
        region,
        origin,
    };
    let rule = match permit(&call, face, &op, &body, &proto).await {
        Ok(r) => r,
        Err(e) => {
            if slipway_core::access::rule(face, &op).is_some_and(|r| r.mutates) {
                audit(&call, &source, face, &op, &body, e.status).await;
            }
            return error_reply(&proto, &e, &rid);
        }
    };
    if let Err(wait) = state.limiter.take(&call.who.name) {
        let mut r = error_reply(
            &proto,
            &AwsError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "ThrottlingException",
                "Rate exceeded (the server's --rate-limit per identity)",
            ),
            &rid,
        );
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        return r;
    }
    let answer = async {
        match proto {
            Protocol::Sts => sts(&call, &body, &rid),
            Protocol::Unknown(t) => AwsError::client(
                "UnknownOperationException",
                format!("unknown X-Amz-Target {t}"),
            )
            .json_response(&rid),
            Protocol::Ecs(op) | Protocol::Ecr(op) if op.is_empty() => {
                AwsError::client("UnknownOperationException", "empty operation name")
                    .json_response(&rid)
            }
            Protocol::Ecs(op) => json_reply(ecs::dispatch(&call, &op, &body).await, &rid),
            Protocol::Ecr(op) => json_reply(ecr::dispatch(&call, &op, &body).await, &rid),
            Protocol::Elb(op) => match elb::dispatch(&call, &op, &body).await {
                Ok(v) => elb::reply(&op, &v, &rid),
                Err(e) => {
                    if e.status.is_server_error() {
                        tracing::error!(error = %e.message, "AWS API request failed");
                    }
                    elb::error(&e, &rid)
                }
            },
        }
    };
    if !rule.mutates {
        return answer.await;
    }
    // The entry rides with the call's first change (see `slipway_store::audit`).
    let pending = audit_entry(&call, &source, face, &op, &body, None);
    let (resp, recorded) = slipway_store::with_pending_audit(pending, answer).await;
    let ok = resp.status().is_success();
    if !recorded || !ok {
        audit(&call, &source, face, &op, &body, resp.status()).await;
    }
    resp
}

/// Whether the caller may call `op` (the permission table) on its target (a scoped
/// identity changes only its apps: the ECS cluster's app, the ECR repository).
pub(crate) async fn permit(
    call: &Call<'_>,
    face: Face,
    op: &str,
    body: &[u8],
    proto: &Protocol,
) -> Result<&'static slipway_core::access::Rule, AwsError> {
    let denied = |d: slipway_core::access::Denied| {
        AwsError::client(
            "AccessDeniedException",
            format!(
                "User: arn:aws:iam::{ACCOUNT_ID}:user/{} is not authorized to perform: {}:{op}: {d}",
                call.who.name,
                face.as_str()
            ),
        )
    };
    let rule = match call.who.check(face, op) {
        Ok(r) => r,
        Err(slipway_core::access::Denied::NoRule { .. }) => {
            return Err(match proto {
                Protocol::Sts => AwsError::client(
                    "InvalidAction",
                    format!(
                        "Could not find operation {op} for version 2011-06-15 (Slipway's STS answers GetCallerIdentity only)"
                    ),
                ),
                Protocol::Elb(_) => AwsError::client(
                    "InvalidAction",
                    format!("Could not find operation {op} for version 2015-12-01"),
                ),
                Protocol::Unknown(t) => AwsError::client(
                    "UnknownOperationException",
                    format!("unknown X-Amz-Target {t}"),
                ),
                _ if op.is_empty() => {
                    AwsError::client("UnknownOperationException", "empty operation name")
                }
                _ => AwsError::client(
                    "UnknownOperationException",
                    format!("unknown {} operation {op}", face.as_str().to_uppercase()),
                ),
            });
        }
        Err(d) => return Err(denied(d)),
    };
    // Load balancers, target groups, listeners and rules are shared by every app (a change
    // may start deployments of any attached service): a scoped identity changes none.
    if rule.mutates && call.who.scoped() && face == Face::Elb {
        return Err(denied(slipway_core::access::Denied::Scope {
            who: call.who.name.clone(),
            scope: call.who.describe_scope(),
            target: "load balancers, target groups, listeners and rules (shared by every app)"
                .into(),
        }));
    }
    if rule.mutates && call.who.scoped() {
        let scope = match face {
            Face::Ecs => ecs::scope_target(call, op, body).await,
            Face::Ecr => ecr::scope_target(body),
            _ => None,
        };
        match scope {
            Some(Target::App(app, env)) => {
                call.who.may_change(&app, env.as_deref()).map_err(denied)?
            }
            Some(Target::Repo(repo)) => call.who.may_change_repo(&repo).map_err(denied)?,
            None => {}
        }
    }
    Ok(rule)
}

/// What a mutating call acts on, for scopes and the audit log.
pub(crate) enum Target {
    App(String, Option<String>),
    Repo(String),
}

/// The audit entry of an AWS call answered with `status` (`None`: recorded with the call's
/// change): its target is the body's resource names, never the body.
fn audit_entry(
    call: &Call<'_>,
    source: &str,
    face: Face,
    op: &str,
    body: &[u8],
    status: Option<StatusCode>,
) -> slipway_store::AuditEntry {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let target = if face == Face::Elb {
        elb::audit_target(body)
    } else {
        json_target(&v)
    };
    slipway_api::audit_entry(&call.who, source, face.as_str(), op, &target, status)
}

/// Records the audit entry of an AWS call answered with `status`.
async fn audit(
    call: &Call<'_>,
    source: &str,
    face: Face,
    op: &str,
    body: &[u8],
    status: StatusCode,
) {
    let e = audit_entry(call, source, face, op, body, Some(status));
    slipway_api::audit(&call.state.app, e).await;
}

/// The error of a request in its protocol's shape.
fn error_reply(proto: &Protocol, e: &AwsError, rid: &str) -> Response {
    match proto {
        Protocol::Sts => sts_error(e, rid),
        Protocol::Elb(_) => elb::error(e, rid),
        _ => e.json_response(rid),
    }
}

/// The resource names of a JSON request body, for the audit log.
fn json_target(v: &Value) -> String {
    [
        "cluster",
        "clusterName",
        "service",
        "serviceName",
        "family",
        "taskDefinition",
        "task",
        "repositoryName",
    ]
    .iter()
    .filter_map(|k| v.get(k).and_then(Value::as_str).map(|x| format!("{k}={x}")))
    .collect::<Vec<_>>()
    .join(" ")
}

fn json_reply(r: AwsResult, rid: &str) -> Response {
    match r {
        Ok(mut v) => {
            // Absent members are left out, not null (`nextToken` on the last page).
            if let Value::Object(m) = &mut v {
                m.retain(|_, x| !x.is_null());
            }
            let mut resp = (StatusCode::OK, v.to_string()).into_response();
            let h = resp.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_1_1));
            if let Ok(v) = HeaderValue::from_str(rid) {
                h.insert("x-amzn-requestid", v);
            }
            resp
        }
        Err(e) => {
            if e.status.is_server_error() {
                tracing::error!(error = %e.message, "AWS API request failed");
            }
            e.json_response(rid)
        }
    }
}

/// Parses a JSON 1.1 request body (empty means `{}`) into `T`.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> AwsResult<T> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        AwsError::client(
            "SerializationException",
            format!("the body is not JSON: {e}"),
        )
    })?;
    if !v.is_object() {
        return Err(AwsError::client(
            "SerializationException",
            "the body must be a JSON object",
        ));
    }
    serde_json::from_value(v).map_err(|e| AwsError::client("SerializationException", e.to_string()))
}

/// Verifies the SigV4 signature; returns the key and the region of its scope.
async fn authenticate(
    state: &AwsState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    expected_service: Option<&str>,
) -> Result<(AccessKey, String), AwsError> {
    let forbidden = |kind: &'static str, m: String| AwsError::new(StatusCode::FORBIDDEN, kind, m);
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            forbidden(
                "MissingAuthenticationTokenException",
                "Missing Authentication Token".into(),
            )
        })?;
    let auth = sigv4::parse_authorization(value)
        .map_err(|e| forbidden("IncompleteSignatureException", e.to_string()))?;
    if let Some(svc) = expected_service
        && auth.service != svc
    {
        return Err(forbidden(
            "InvalidSignatureException",
            format!(
                "Credential should be scoped to correct service: '{svc}', not '{}'",
                auth.service
            ),
        ));
    }
    let req = sigv4::Request {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        headers: headers
            .iter()
            .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect(),
        body,
    };
    let now = slipway_store::now_ms() / 1000;
    let key = state
        .keys
        .access_key(&state.app, &auth.access_key)
        .await?
        .filter(|k| k.revoked_at.is_none())
        .ok_or_else(|| {
            forbidden(
                "UnrecognizedClientException",
                "The security token included in the request is invalid.".into(),
            )
        })?;
    let amz_date = sigv4::check_date(&req, &auth, now).map_err(|e| match e {
        sigv4::SigError::Expired(_) => forbidden("InvalidSignatureException", e.to_string()),
        _ => forbidden("IncompleteSignatureException", e.to_string()),
    })?;
    let signing = state
        .keys
        .signing_key(&key, &auth.date, &auth.region, &auth.service);
    sigv4::verify_with_key(&req, &auth, amz_date, &signing)
        .map_err(|e| forbidden("InvalidSignatureException", e.to_string()))?;
    Ok((key, auth.region))
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn xml_response(status: StatusCode, body: String, rid: &str) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    if let Ok(v) = HeaderValue::from_str(rid) {
        r.headers_mut().insert("x-amzn-requestid", v);
    }
    r
}

fn sts_error(e: &AwsError, rid: &str) -> Response {
    // STS names its errors differently from the JSON services.
    let code = match e.kind {
        "UnrecognizedClientException" => "InvalidClientTokenId",
        "InvalidSignatureException" => "SignatureDoesNotMatch",
        other => other,
    };
    xml_response(
        e.status,
        format!(
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{}</Message></Error><RequestId>{rid}</RequestId></ErrorResponse>",
            xml_escape(&e.message)
        ),
        rid,
    )
}

/// STS over the query protocol: only `GetCallerIdentity`.
fn sts(call: &Call<'_>, body: &[u8], rid: &str) -> Response {
    let params: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let action = params
        .iter()
        .find(|(k, _)| k == "Action")
        .map(|(_, v)| v.as_str());
    match action {
        Some("GetCallerIdentity") => {
            let user = &call.who.name;
            xml_response(
                StatusCode::OK,
                format!(
                    "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><GetCallerIdentityResult><Arn>arn:aws:iam::{ACCOUNT_ID}:user/{}</Arn><UserId>{}</UserId><Account>{ACCOUNT_ID}</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>{rid}</RequestId></ResponseMetadata></GetCallerIdentityResponse>",
                    xml_escape(user),
                    xml_escape(&call.key.id)
                ),
                rid,
            )
        }
        other => sts_error(
            &AwsError::client(
                "InvalidAction",
                format!(
                    "Could not find operation {} for version 2011-06-15 (Slipway's STS answers GetCallerIdentity only)",
                    other.unwrap_or("(none)")
                ),
            ),
            rid,
        ),
    }
}

/// Epoch seconds (fractional) from unix milliseconds: the JSON 1.1 timestamp format.
/// One page of `items` as the AWS list calls give it: `nextToken` is the offset of the next
/// page, `maxResults` from 1 to `limit` (default `limit`).
pub(crate) fn page<T: Clone>(
    items: &[T],
    max: Option<i64>,
    token: Option<&str>,
    limit: usize,
) -> AwsResult<(Vec<T>, Option<String>)> {
    let start: usize = match token {
        None => 0,
        Some(t) => t
            .parse()
            .map_err(|_| AwsError::invalid("nextToken is not valid"))?,
    };
    let max = match max {
        None => limit,
        Some(m) if m >= 1 && (m as u64) <= limit as u64 => m as usize,
        Some(m) => {
            return Err(AwsError::invalid(format!(
                "maxResults must be between 1 and {limit}, got {m}"
            )));
        }
    };
    let end = start.saturating_add(max).min(items.len());
    let slice = items.get(start..end).unwrap_or_default().to_vec();
    Ok((slice, (end < items.len()).then(|| end.to_string())))
}

pub(crate) fn ts(ms: i64) -> Value {
    serde_json::json!(ms as f64 / 1000.0)
}

#[cfg(test)]
mod permission_tests {
    use slipway_core::access::{Face, RULES, rule};

    /// Every operation the ECS and ECR dispatchers answer has a rule, and every rule of
    /// those faces names an operation they answer: a new operation without a rule fails
    /// here (and is refused to everyone at run time).
    #[test]
    fn every_aws_operation_has_exactly_one_rule() {
        for (face, ops) in [
            (Face::Ecs, crate::ecs::OPERATIONS),
            (Face::Ecr, crate::ecr::OPERATIONS),
            (Face::Sts, &["GetCallerIdentity"][..]),
            (Face::Elb, crate::elb::OPERATIONS),
        ] {
            for op in ops {
                assert!(
                    rule(face, op).is_some(),
                    "{face:?} {op} has no permission rule"
                );
            }
            for r in RULES.iter().filter(|r| r.face == face) {
                assert!(
                    ops.contains(&r.op),
                    "{face:?} {} has a rule but no dispatcher answers it",
                    r.op
                );
            }
        }
    }
}
