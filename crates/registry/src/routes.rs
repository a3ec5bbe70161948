//! The distribution API (`/v2/...`) and the token endpoint (`/v2/token`).
//!
//! Repository names contain slashes, so one catch-all route parses the path itself, from
//! the right: `<name>/manifests/<ref>`, `<name>/blobs/<digest>`, `<name>/blobs/uploads/[<id>]`,
//! `<name>/tags/list`, `<name>/referrers/<digest>`.
//!
//! Here: routing, authentication and authorization of each request, the token endpoint,
//! discovery (catalog, tags, referrers) and shared helpers; [`blobs`] has blobs and uploads,
//! [`manifests`] manifests.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Value, json};
use slipway_core::access::{Face, Identity};

use crate::Registry;
use crate::auth::{self, Action, AuditEvent, Claims, Rights};
use crate::db::{NewManifest, PutManifestError};
use crate::error::{Code, OciError};
use crate::names::{Algorithm, Digest, validate_name, validate_tag};
use crate::storage::WriteError;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

type Result<T, E = OciError> = std::result::Result<T, E>;

/// The most `?tag=` parameters one manifest push takes (the spec asks for at least 10);
/// beyond it the push is refused with `414`.
pub const MAX_TAG_PARAMS: usize = 100;

mod blobs;
mod manifests;

use blobs::*;
use manifests::*;

pub fn router(reg: Registry) -> Router {
    Router::new()
        .route("/v2", any(dispatch))
        .route("/v2/", any(dispatch))
        .route("/v2/{*rest}", any(dispatch))
        .with_state(reg)
}

async fn dispatch(
    State(reg): State<Registry>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let source = peer.map_or_else(|| "unknown".to_owned(), |p| p.0.0.to_string());
    let op = operation(&method, uri.path());
    let mut resp = match handle(&reg, &source, &method, &uri, &headers, body).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(%method, path = uri.path(), code = e.code.as_str(), message = %e.message, "registry error");
            e.into_response()
        }
    };
    resp.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    resp.extensions_mut().insert(op);
    resp
}

/// The operation of a request, for the request metrics: its method and the template of
/// its route (`PUT /v2/{name}/manifests/{reference}`), never the repository or digest.
fn operation(method: &Method, path: &str) -> slipway_metrics::Operation {
    let template = match Route::parse(path) {
        None => "(unknown)",
        Some(Route::Ping) => "/v2/",
        Some(Route::Token) => "/v2/token",
        Some(Route::Catalog) => "/v2/_catalog",
        Some(Route::Tags(_)) => "/v2/{name}/tags/list",
        Some(Route::Manifest(..)) => "/v2/{name}/manifests/{reference}",
        Some(Route::Blob(..)) => "/v2/{name}/blobs/{digest}",
        Some(Route::Uploads(_)) => "/v2/{name}/blobs/uploads/",
        Some(Route::Upload(..)) => "/v2/{name}/blobs/uploads/{uuid}",
        Some(Route::Referrers(..)) => "/v2/{name}/referrers/{digest}",
    };
    let method = slipway_metrics::method_label(method.as_str());
    slipway_metrics::Operation::new(
        slipway_metrics::Face::Registry,
        format!("{method} {template}"),
    )
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Route<'a> {
    Ping,
    Token,
    Catalog,
    Tags(&'a str),
    Manifest(&'a str, &'a str),
    Blob(&'a str, &'a str),
    Uploads(&'a str),
    Upload(&'a str, &'a str),
    Referrers(&'a str, &'a str),
}

impl<'a> Route<'a> {
    fn parse(path: &'a str) -> Option<Route<'a>> {
        let p = path.strip_prefix("/v2")?;
        if p.is_empty() || p == "/" {
            return Some(Route::Ping);
        }
        let p = p.strip_prefix('/')?;
        match p {
            "token" => return Some(Route::Token),
            "_catalog" => return Some(Route::Catalog),
            _ => {}
        }
        if let Some(name) = p.strip_suffix("/tags/list") {
            return Some(Route::Tags(name));
        }
        if let Some(name) = p
            .strip_suffix("/blobs/uploads/")
            .or_else(|| p.strip_suffix("/blobs/uploads"))
        {
            return Some(Route::Uploads(name));
        }
        let (prefix, last) = p.rsplit_once('/')?;
        if let Some(name) = prefix.strip_suffix("/blobs/uploads") {
            return Some(Route::Upload(name, last));
        }
        if let Some(name) = prefix.strip_suffix("/manifests") {
            return Some(Route::Manifest(name, last));
        }
        if let Some(name) = prefix.strip_suffix("/blobs") {
            return Some(Route::Blob(name, last));
        }
        if let Some(name) = prefix.strip_suffix("/referrers") {
            return Some(Route::Referrers(name, last));
        }
        None
    }

    fn name(&self) -> Option<&'a str> {
        match *self {
            Route::Ping | Route::Token | Route::Catalog => None,
            Route::Tags(n)
            | Route::Manifest(n, _)
            | Route::Blob(n, _)
            | Route::Uploads(n)
            | Route::Upload(n, _)
            | Route::Referrers(n, _) => Some(n),
        }
    }
}

/// Decoded query parameters (repeatable).
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Self {
        Query(
            form_urlencoded::parse(q.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, k: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// Who is calling, with the live identity behind the credential (`None`: the server's own
/// short-lived pull passwords).
enum Principal {
    /// HTTP Basic with a registry password.
    Basic(Rights, Option<Identity>),
    /// A token from the token endpoint.
    Token(Claims, Option<Identity>),
}

impl Principal {
    fn rights(&self) -> Rights {
        match self {
            Principal::Basic(r, _) => *r,
            Principal::Token(c, _) => c.rights,
        }
    }

    fn who(&self) -> Option<&Identity> {
        match self {
            Principal::Basic(_, w) | Principal::Token(_, w) => w.as_ref(),
        }
    }

    fn may(&self, repo: &str, a: Action) -> bool {
        let granted = match self {
            Principal::Basic(r, _) => r.allows(a),
            Principal::Token(c, _) => c.grants(repo, a),
        };
        granted && in_scope(self.who(), repo, a)
    }
}

/// Whether a scoped identity may do `a` on `repo` (pulls are never scoped).
fn in_scope(who: Option<&Identity>, repo: &str, a: Action) -> bool {
    a == Action::Pull || who.is_none_or(|w| w.may_change_repo(repo).is_ok())
}

/// What a request needs.
enum Need<'a> {
    Login,
    Catalog,
    Repo(&'a str, Action),
}

/// The admin token offered as a registry password.
fn admin_token_refused() -> OciError {
    OciError::new(
        Code::Unauthorized,
        "the admin token is not a registry password (it would be stored in ~/.docker/config.json): get a password with `slipway registry password` or `aws ecr get-login-password`",
    )
    .with_header(header::WWW_AUTHENTICATE, "Basic realm=\"slipway\"")
}

/// A password's rights and, when it was issued to one, its identity: the reference it
/// carries (a name, or `key:ID` for an access key's) and who that is now.
type Checked = (Rights, Option<(String, Identity)>);

/// The rights and live identity of a password; `Ok(None)` when it is not one (or its
/// identity is revoked); an error for the admin token.
async fn check_password(reg: &Registry, password: &str) -> Result<Option<Checked>> {
    let Some((rights, id)) = reg.inner.keys.check_password(password) else {
        if reg.inner.ids.is_admin_token(password).await {
            return Err(admin_token_refused());
        }
        return Ok(None);
    };
    let Some(reference) = id else {
        return Ok(Some((rights, None)));
    };
    Ok(live(reg, &reference)
        .await
        .map(|w| (effective(rights, &w), Some((reference, w)))))
}

/// A live identity by name.
async fn live(reg: &Registry, name: &str) -> Option<Identity> {
    reg.inner.ids.identity(name).await
}

/// A credential's rights within what its identity's role allows now.
fn effective(rights: Rights, who: &Identity) -> Rights {
    if who.check(Face::Registry, "push").is_ok() {
        rights
    } else {
        Rights::Pull
    }
}

async fn authenticate(reg: &Registry, headers: &HeaderMap) -> Result<Option<Principal>> {
    let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(None);
    };
    if let Some(t) = v.strip_prefix("Bearer ") {
        let Some(mut c) = reg.inner.keys.check_token(t.trim(), &reg.inner.service) else {
            return Ok(None);
        };
        return Ok(match c.idn.clone() {
            None => Some(Principal::Token(c, None)),
            Some(name) => live(reg, &name).await.map(|w| {
                c.rights = effective(c.rights, &w);
                Principal::Token(c, Some(w))
            }),
        });
    }
    let Some((_, pass)) = auth::parse_basic(v) else {
        return Ok(None);
    };
    Ok(check_password(reg, &pass)
        .await?
        .map(|(r, w)| Principal::Basic(r, w.map(|(_, w)| w))))
}

fn realm(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let proto = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .filter(|p| *p == "https" || *p == "http")
        .unwrap_or("http");
    format!("{proto}://{host}/v2/token")
}

fn challenge(reg: &Registry, headers: &HeaderMap, need: &Need<'_>, insufficient: bool) -> OciError {
    let scope = match need {
        Need::Login => None,
        Need::Catalog => Some("registry:catalog:*".to_owned()),
        Need::Repo(name, a) => Some(repo_scope(name, *a)),
    };
    challenge_for(reg, headers, scope.as_deref(), insufficient)
}

/// The token scope that grants `a` on repository `name`.
fn repo_scope(name: &str, a: Action) -> String {
    let actions = match a {
        Action::Pull => "pull",
        Action::Push => "pull,push",
        Action::Delete => "delete",
    };
    format!("repository:{name}:{actions}")
}

/// A Bearer challenge for `scope` (several scopes separated by spaces, as the token spec
/// has them).
fn challenge_for(
    reg: &Registry,
    headers: &HeaderMap,
    scope: Option<&str>,
    insufficient: bool,
) -> OciError {
    let mut v = format!(
        "Bearer realm=\"{}\",service=\"{}\"",
        realm(headers),
        reg.inner.service
    );
    if let Some(scope) = scope {
        v.push_str(&format!(",scope=\"{scope}\""));
    }
    if insufficient {
        v.push_str(",error=\"insufficient_scope\"");
    }
    OciError::new(
        Code::Unauthorized,
        "authentication required: log in with a password from `slipway registry password`",
    )
    .with_header(header::WWW_AUTHENTICATE, &v)
}

fn authorize(
    reg: &Registry,
    headers: &HeaderMap,
    p: Option<&Principal>,
    need: &Need<'_>,
) -> Result<()> {
    let Some(p) = p else {
        return Err(challenge(reg, headers, need, false));
    };
    let ok = match (p, need) {
        (_, Need::Login) => true,
        (Principal::Basic(..), Need::Catalog) => true,
        (Principal::Token(c, _), Need::Catalog) => c.grants_catalog(),
        (p, Need::Repo(name, a)) => p.may(name, *a),
    };
    if ok {
        return Ok(());
    }
    let could = match need {
        Need::Repo(repo, a) => p.rights().allows(*a) && in_scope(p.who(), repo, *a),
        _ => true,
    };
    if could && matches!(p, Principal::Token(..)) {
        Err(challenge(reg, headers, need, true))
    } else if let (Need::Repo(repo, a), Some(w)) = (need, p.who())
        && !in_scope(Some(w), repo, *a)
    {
        Err(OciError::new(
            Code::Denied,
            format!(
                "requested access to the resource is denied: {}",
                w.may_change_repo(repo)
                    .err()
                    .map(|d| d.to_string())
                    .unwrap_or_default()
            ),
        ))
    } else {
        Err(OciError::new(
            Code::Denied,
            format!(
                "requested access to the resource is denied: this credential may only {}",
                p.rights().describe()
            ),
        ))
    }
}

fn unsupported(method: &Method) -> OciError {
    OciError::new(
        Code::Unsupported,
        format!("{method} is not supported on this endpoint"),
    )
}

fn not_found() -> OciError {
    OciError::new(Code::Unsupported, "no such registry endpoint").with_status(StatusCode::NOT_FOUND)
}

async fn handle(
    reg: &Registry,
    source: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response> {
    let route = Route::parse(uri.path()).ok_or_else(not_found)?;
    let q = Query::parse(uri.query());
    if route == Route::Token {
        return token(reg, method, &q, headers).await;
    }
    if let Some(name) = route.name() {
        validate_name(name).map_err(|m| OciError::new(Code::NameInvalid, m))?;
    }
    let (get, head) = (method == Method::GET, method == Method::HEAD);
    let need = match (&route, method) {
        (Route::Ping, _) if get || head => Need::Login,
        (Route::Catalog, _) if get => Need::Catalog,
        (Route::Tags(n), _) if get => Need::Repo(n, Action::Pull),
        (Route::Referrers(n, _), _) if get => Need::Repo(n, Action::Pull),
        (Route::Manifest(n, _) | Route::Blob(n, _), _) if get || head => {
            Need::Repo(n, Action::Pull)
        }
        (Route::Manifest(n, _), &Method::PUT) => Need::Repo(n, Action::Push),
        (Route::Manifest(n, _) | Route::Blob(n, _), &Method::DELETE) => {
            Need::Repo(n, Action::Delete)
        }
        (Route::Uploads(n), &Method::POST) => Need::Repo(n, Action::Push),
        (Route::Upload(n, _), m)
            if get || [Method::PATCH, Method::PUT, Method::DELETE].contains(m) =>
        {
            Need::Repo(n, Action::Push)
        }
        _ => return Err(unsupported(method)),
    };
    let principal = authenticate(reg, headers).await?;
    // Pushes (a manifest's PUT: the blobs before it are its parts) and deletions are
    // audited, refusals of a known identity included.
    let audited = match (&route, method) {
        (Route::Manifest(n, r), &Method::PUT) => Some(("push", format!("{n}:{r}"))),
        (Route::Manifest(n, r) | Route::Blob(n, r), &Method::DELETE) => {
            Some(("delete", format!("{n}:{r}")))
        }
        _ => None,
    };
    let record = |status: StatusCode, p: Option<&Principal>| {
        let event = match (&audited, p) {
            (Some((op, target)), Some(p)) => Some(AuditEvent {
                identity: p
                    .who()
                    .map_or_else(|| "slipway-internal".to_owned(), |w| w.name.clone()),
                source: source.to_owned(),
                operation: op,
                target: target.clone(),
                status: status.as_u16(),
            }),
            _ => None,
        };
        async move {
            if let Some(e) = event {
                reg.inner.ids.audit(e).await;
            }
        }
    };
    if let Err(e) = authorize(reg, headers, principal.as_ref(), &need) {
        record(e.status, principal.as_ref()).await;
        return Err(e);
    }
    let principal = principal.expect("authorized");
    let result = serve(reg, route, method, &q, &principal, headers, body).await;
    let status = match &result {
        Ok(r) => r.status(),
        Err(e) => e.status,
    };
    record(status, Some(&principal)).await;
    result
}

/// Serves an authorized request.
async fn serve(
    reg: &Registry,
    route: Route<'_>,
    method: &Method,
    q: &Query,
    principal: &Principal,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response> {
    let head = method == Method::HEAD;
    match route {
        Route::Ping => Ok((
            [(header::CONTENT_TYPE, "application/json")],
            if head { "" } else { "{}" },
        )
            .into_response()),
        Route::Token => unreachable!("handled above"),
        Route::Catalog => catalog(reg, q).await,
        Route::Tags(name) => tags_list(reg, name, q).await,
        Route::Referrers(name, d) => referrers(reg, name, d, q).await,
        Route::Manifest(name, r) => match *method {
            Method::PUT => put_manifest(reg, name, r, q, headers, body).await,
            Method::DELETE => delete_manifest(reg, name, r).await,
            _ => get_manifest(reg, name, r, head).await,
        },
        Route::Blob(name, d) => match *method {
            Method::DELETE => delete_blob(reg, name, d).await,
            _ => get_blob(reg, name, d, head, headers).await,
        },
        Route::Uploads(name) => start_upload(reg, name, q, principal, headers, body).await,
        Route::Upload(name, id) => match *method {
            Method::PATCH => patch_upload(reg, name, id, headers, body).await,
            Method::PUT => put_upload(reg, name, id, q, headers, body).await,
            Method::DELETE => cancel_upload(reg, name, id).await,
            _ => upload_status(reg, name, id).await,
        },
    }
}

// ---- token endpoint ----

async fn token(
    reg: &Registry,
    method: &Method,
    q: &Query,
    headers: &HeaderMap,
) -> Result<Response> {
    if method != Method::GET {
        return Err(unsupported(method));
    }
    let creds = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(auth::parse_basic);
    let checked = match &creds {
        Some((_, pass)) => check_password(reg, pass).await?,
        None => None,
    };
    let Some((rights, who)) = checked else {
        return Err(OciError::new(
            Code::Unauthorized,
            "invalid username or password: use any username and a password from `slipway registry password`",
        )
        .with_header(header::WWW_AUTHENTICATE, "Basic realm=\"slipway\""));
    };
    let user = creds.map(|(u, _)| u).unwrap_or_default();
    let now = auth::now_secs();
    let claims = Claims {
        iss: reg.inner.service.clone(),
        aud: reg.inner.service.clone(),
        sub: q.get("account").map_or(user, str::to_owned),
        exp: now + auth::TOKEN_TTL_SECS,
        nbf: now,
        iat: now,
        jti: auth::random_hex(12),
        access: scoped(
            auth::grant(&q.all("scope"), rights),
            who.as_ref().map(|(_, w)| w),
        ),
        rights,
        idn: who.map(|(reference, _)| reference),
    };
    let token = reg.inner.keys.issue_token(&claims);
    Ok(axum::Json(json!({
        "token": token,
        "access_token": token,
        "expires_in": auth::TOKEN_TTL_SECS,
        "issued_at": auth::rfc3339(now),
    }))
    .into_response())
}

/// A scoped identity's grants: pushes and deletions only on its apps' repositories.
fn scoped(mut access: Vec<auth::Access>, who: Option<&Identity>) -> Vec<auth::Access> {
    for a in &mut access {
        if a.kind == "repository" {
            a.actions.retain(|x| {
                let action = match x.as_str() {
                    "push" => Action::Push,
                    "delete" => Action::Delete,
                    _ => Action::Pull,
                };
                in_scope(who, &a.name, action)
            });
        }
    }
    access.retain(|a| !a.actions.is_empty());
    access
}

// ---- helpers ----

fn parse_digest(s: &str) -> Result<Digest> {
    Digest::parse(s).map_err(|m| OciError::new(Code::DigestInvalid, m))
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn empty(status: StatusCode, headers: Vec<(header::HeaderName, String)>) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    for (k, v) in headers {
        r.headers_mut().insert(k, hv(&v));
    }
    r
}

fn digest_header() -> header::HeaderName {
    header::HeaderName::from_static("docker-content-digest")
}

fn uuid_header() -> header::HeaderName {
    header::HeaderName::from_static("docker-upload-uuid")
}

fn valid_upload_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// `n` and `last` of a paginated list; `n` absent means everything.
fn pagination(q: &Query) -> Result<(Option<i64>, Option<String>)> {
    let n = match q.get("n") {
        Some(v) => Some(v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            OciError::new(Code::Unsupported, format!("invalid page size n={v}"))
                .with_status(StatusCode::BAD_REQUEST)
        })?),
        None => None,
    };
    Ok((n, q.get("last").map(str::to_owned)))
}

/// A page of a list, with `Link` to the next one when there is more.
fn page(
    items: Vec<String>,
    n: Option<i64>,
    base: &str,
    key: &str,
    extra: (&str, Value),
) -> Response {
    let mut items = items;
    let mut link = None;
    if let Some(n) = n
        && items.len() as i64 > n
    {
        items.truncate(n as usize);
        if let Some(last) = items.last() {
            let enc: String = form_urlencoded::byte_serialize(last.as_bytes()).collect();
            link = Some(format!("<{base}?n={n}&last={enc}>; rel=\"next\""));
        }
    }
    let mut body = serde_json::Map::new();
    if !extra.0.is_empty() {
        body.insert(extra.0.to_owned(), extra.1);
    }
    body.insert(key.to_owned(), json!(items));
    let mut r = axum::Json(Value::Object(body)).into_response();
    if let Some(l) = link {
        r.headers_mut().insert(header::LINK, hv(&l));
    }
    r
}

async fn require_repo(reg: &Registry, name: &str) -> Result<()> {
    if reg.inner.db.get_repo(name).await?.is_none() {
        return Err(OciError::new(
            Code::NameUnknown,
            format!("repository {name} is not known to this registry"),
        ));
    }
    Ok(())
}

// ---- discovery ----

async fn catalog(reg: &Registry, q: &Query) -> Result<Response> {
    let (n, last) = pagination(q)?;
    let repos = reg
        .inner
        .db
        .list_repos(last.as_deref(), n.map_or(-1, |n| n + 1))
        .await?;
    let names = repos.into_iter().map(|r| r.name).collect();
    Ok(page(
        names,
        n,
        "/v2/_catalog",
        "repositories",
        ("", Value::Null),
    ))
}

async fn tags_list(reg: &Registry, name: &str, q: &Query) -> Result<Response> {
    require_repo(reg, name).await?;
    let (n, last) = pagination(q)?;
    let tags = reg
        .inner
        .db
        .list_tags(name, last.as_deref(), n.map_or(-1, |n| n + 1))
        .await?;
    Ok(page(
        tags,
        n,
        &format!("/v2/{name}/tags/list"),
        "tags",
        ("name", json!(name)),
    ))
}

async fn referrers(reg: &Registry, name: &str, d: &str, q: &Query) -> Result<Response> {
    let d = parse_digest(d)?;
    let filter = q.get("artifactType");
    let rows = reg.inner.db.referrers(name, &d.to_string()).await?;
    let manifests: Vec<Value> = rows
        .into_iter()
        .filter(|m| filter.is_none_or(|f| m.artifact_type.as_deref() == Some(f)))
        .map(|m| {
            let mut desc = json!({
                "mediaType": m.media_type,
                "digest": m.digest,
                "size": m.size,
            });
            if let Some(at) = m.artifact_type {
                desc["artifactType"] = json!(at);
            }
            if let Some(a) = m
                .annotations
                .and_then(|a| serde_json::from_str::<Value>(&a).ok())
            {
                desc["annotations"] = a;
            }
            desc
        })
        .collect();
    let body = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests });
    let mut r = (
        [(header::CONTENT_TYPE, OCI_INDEX)],
        serde_json::to_vec(&body).expect("JSON serialises"),
    )
        .into_response();
    if filter.is_some() {
        r.headers_mut().insert(
            "oci-filters-applied",
            HeaderValue::from_static("artifactType"),
        );
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_from_the_right() {
        assert_eq!(Route::parse("/v2/"), Some(Route::Ping));
        assert_eq!(Route::parse("/v2"), Some(Route::Ping));
        assert_eq!(Route::parse("/v2/token"), Some(Route::Token));
        assert_eq!(Route::parse("/v2/a/b/tags/list"), Some(Route::Tags("a/b")));
        assert_eq!(
            Route::parse("/v2/a/manifests/v1"),
            Some(Route::Manifest("a", "v1"))
        );
        assert_eq!(
            Route::parse("/v2/a/blobs/uploads/"),
            Some(Route::Uploads("a"))
        );
        assert_eq!(
            Route::parse("/v2/a/b/blobs/uploads/xyz"),
            Some(Route::Upload("a/b", "xyz"))
        );
        assert_eq!(
            Route::parse("/v2/a/blobs/sha256:x"),
            Some(Route::Blob("a", "sha256:x"))
        );
        assert_eq!(
            Route::parse("/v2/a/referrers/sha256:x"),
            Some(Route::Referrers("a", "sha256:x"))
        );
        assert_eq!(Route::parse("/v2/a/whatever"), None);
        assert_eq!(Route::parse("/v3/"), None);
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Ok(Some((0, 9))));
        assert_eq!(parse_range("bytes=50-", 100), Ok(Some((50, 99))));
        assert_eq!(parse_range("bytes=-10", 100), Ok(Some((90, 99))));
        assert_eq!(parse_range("bytes=90-500", 100), Ok(Some((90, 99))));
        assert_eq!(parse_range("bytes=50-0", 100), Err(()));
        assert_eq!(parse_range("bytes=100-200", 100), Err(()));
        assert_eq!(parse_range("bytes=x-1", 100), Err(()));
        assert_eq!(parse_range("items=0-1", 100), Ok(None));
    }
}

#[cfg(test)]
mod fuzz;
