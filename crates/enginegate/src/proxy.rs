//! The data path: one hyper HTTP/1.1 server connection per client connection, one hyper
//! client connection to the engine per allowed request. Bodies stream both ways; only
//! `/_ping`, `/info` and `/images/json` answers are rewritten.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpStream, UnixStream};

use crate::filter::{self, Decision, Route};
use crate::scope::{Scope, Tap, Watch};
use crate::{Error, Upstream};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub(crate) type ResBody = UnsyncBoxBody<Bytes, BoxError>;

/// What every connection of one gate shares.
pub(crate) struct Shared {
    pub job: String,
    pub upstream: Upstream,
    pub scope: Scope,
    pub labels: BTreeMap<String, String>,
    pub build_network: Option<String>,
    pub repositories: Vec<String>,
}

/// `/info` fields a job may see; the rest (containers, paths, plugins, swarm, proxies,
/// labels, security options, warnings) is dropped.
const INFO_KEEP: &[&str] = &[
    "Architecture",
    "CgroupDriver",
    "CgroupVersion",
    "DefaultRuntime",
    "Driver",
    "ExperimentalBuild",
    "IndexServerAddress",
    "KernelVersion",
    "MemTotal",
    "NCPU",
    "OSType",
    "OSVersion",
    "OperatingSystem",
    "RegistryConfig",
    "ServerVersion",
];

/// Hop-by-hop headers, never forwarded.
const HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop(headers: &mut HeaderMap) {
    for h in HOP {
        headers.remove(*h);
    }
}

fn full(status: StatusCode, body: Bytes, json: bool) -> Response<ResBody> {
    let mut res = Response::new(
        Full::new(body)
            .map_err(|never: Infallible| match never {})
            .boxed_unsync(),
    );
    *res.status_mut() = status;
    if json {
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    res
}

/// Docker's error answer: `{"message": ...}`.
fn error(status: StatusCode, message: &str) -> Response<ResBody> {
    let body = serde_json::json!({ "message": message }).to_string();
    full(status, Bytes::from(body), true)
}

fn refused(shared: &Shared, method: &Method, path: &str, reason: &str) -> Response<ResBody> {
    tracing::warn!(job = %shared.job, %method, path, reason, "refused");
    error(StatusCode::FORBIDDEN, &filter::refusal_message(reason))
}

/// One request from the job.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<ResBody>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    match serve(&shared, req).await {
        Ok(res) => Ok(res),
        Err(e) => {
            tracing::warn!(job = %shared.job, %method, path, error = %e, "engine request failed");
            Ok(error(
                StatusCode::BAD_GATEWAY,
                &format!("slipway engine gate: {e}"),
            ))
        }
    }
}

async fn serve(shared: &Shared, req: Request<Incoming>) -> Result<Response<ResBody>, Error> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    if let Some(ct) = req
        .headers()
        .get_all(header::CONTENT_TYPE)
        .iter()
        .find(|v| filter::form_content_type(v.to_str().unwrap_or("multipart/?")))
    {
        let reason = format!("the content type {ct:?} is refused");
        let res = refused(shared, &method, &path, &reason);
        return Ok(drained(req, res).await);
    }
    let allowed = match filter::decide(method.as_str(), &path, req.uri().query()) {
        Decision::Refuse(reason) => {
            let res = refused(shared, &method, &path, &reason);
            return Ok(drained(req, res).await);
        }
        Decision::Allow(a) => a,
    };
    tracing::debug!(job = %shared.job, %method, path, route = ?allowed.route, "allowed");

    // Names the job may give images (docker build -t, docker tag).
    if let Some(target) = filter::tag_targets(&allowed.route, &allowed.query)
        .into_iter()
        .find(|t| !filter::repository_allowed(t, &shared.repositories))
    {
        let reason = format!(
            "the name {target} is outside this job's repositories ({})",
            shared.repositories.join(", ")
        );
        let res = refused(shared, &method, &path, &reason);
        return Ok(drained(req, res).await);
    }

    // Scope checks before anything reaches the engine.
    let mut path = path;
    let checked = match &allowed.route {
        Route::Tag { name } | Route::DeleteImage { name } => Some(name.as_str()),
        Route::Push { reference } => Some(reference.as_str()),
        _ => None,
    };
    if let Some(name) = checked {
        let res = match resolve(&shared.upstream, name).await? {
            None => Some(error(
                StatusCode::NOT_FOUND,
                &format!("No such image: {name}"),
            )),
            Some(id) if !shared.scope.contains(&id) => {
                let reason = format!(
                    "the image {name} was not built, pulled or tagged by this job ({})",
                    shared.job
                );
                Some(refused(shared, &method, &path, &reason))
            }
            Some(id) => {
                // Tag what was checked, not what the name points at by then.
                if let Route::Tag { name } = &allowed.route {
                    let suffix = format!("/images/{name}/tag");
                    if let Some(prefix) = path.strip_suffix(&suffix) {
                        path = format!("{prefix}/images/{id}/tag");
                    }
                }
                None
            }
        };
        if let Some(res) = res {
            return Ok(drained(req, res).await);
        }
    }

    let query = match &allowed.route {
        Route::Build => match filter::build_query(
            &allowed.query,
            &shared.labels,
            shared.build_network.as_deref(),
        ) {
            Ok(q) => q,
            Err(reason) => {
                let res = refused(shared, &method, &path, &reason);
                return Ok(drained(req, res).await);
            }
        },
        _ => filter::encode_query(&allowed.query),
    };
    let path_and_query = if query.is_empty() {
        path.clone()
    } else {
        format!("{path}?{query}")
    };

    let (mut parts, body) = req.into_parts();
    parts.uri = path_and_query
        .parse()
        .map_err(|e: http::uri::InvalidUri| Error::Request(e.to_string()))?;
    strip_hop(&mut parts.headers);
    parts
        .headers
        .insert(header::HOST, HeaderValue::from_static("docker"));
    let res = send(&shared.upstream, Request::from_parts(parts, body)).await?;
    let (mut parts, body) = res.into_parts();
    strip_hop(&mut parts.headers);
    let ok = parts.status.is_success();

    let body: ResBody = match allowed.route {
        Route::Ping => {
            // The classic builder is the one a job may use: say so, so that the CLI picks it.
            parts
                .headers
                .insert("builder-version", HeaderValue::from_static("1"));
            body.map_err(BoxError::from).boxed_unsync()
        }
        Route::Info if ok => {
            let bytes = body.collect().await?.to_bytes();
            parts.headers.remove(header::CONTENT_LENGTH);
            rewrite_json(&bytes, trim_info)
        }
        Route::ListImages if ok => {
            let bytes = body.collect().await?.to_bytes();
            parts.headers.remove(header::CONTENT_LENGTH);
            let scope = shared.scope.clone();
            rewrite_json(&bytes, move |v| only_scoped(v, &scope))
        }
        Route::Build if ok => Tap::new(
            body,
            shared.scope.clone(),
            Watch::Build {
                job: shared.job.clone(),
            },
        )
        .map_err(BoxError::from)
        .boxed_unsync(),
        Route::Pull { reference } if ok => {
            let upstream = shared.upstream.clone();
            let scope = shared.scope.clone();
            let job = shared.job.clone();
            let learn = async move {
                match resolve(&upstream, &reference).await {
                    Ok(Some(id)) => {
                        if scope.insert(&id) {
                            tracing::info!(%job, image = %id, %reference, "pulled by the job: in its scope");
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(%job, %reference, error = %e, "resolving a pulled image")
                    }
                }
            };
            Tap::new(
                body,
                shared.scope.clone(),
                Watch::Pull(Some(Box::pin(learn))),
            )
            .map_err(BoxError::from)
            .boxed_unsync()
        }
        _ => body.map_err(BoxError::from).boxed_unsync(),
    };
    Ok(Response::from_parts(parts, body))
}

/// How much of a refused request's body is read (and discarded) before answering, so that
/// a client still writing it reads the refusal instead of a broken pipe. A larger body
/// (a refused build context) is cut: the connection closes after the answer.
const DRAIN_MAX: usize = 8 << 20;

/// `res`, after reading up to [`DRAIN_MAX`] of the request's body.
async fn drained(req: Request<Incoming>, res: Response<ResBody>) -> Response<ResBody> {
    let mut body = req.into_body();
    let mut read = 0usize;
    while read <= DRAIN_MAX {
        match body.frame().await {
            Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len()),
            _ => break,
        }
    }
    res
}

fn rewrite_json(bytes: &Bytes, f: impl FnOnce(&mut serde_json::Value)) -> ResBody {
    let out = match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(mut v) => {
            f(&mut v);
            Bytes::from(v.to_string())
        }
        // Not JSON: nothing of it is passed on.
        Err(_) => Bytes::from_static(b"{}"),
    };
    Full::new(out)
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

fn trim_info(v: &mut serde_json::Value) {
    if let Some(map) = v.as_object_mut() {
        map.retain(|k, _| INFO_KEEP.contains(&k.as_str()));
    }
}

fn only_scoped(v: &mut serde_json::Value, scope: &Scope) {
    if let Some(list) = v.as_array_mut() {
        list.retain(|img| {
            img.get("Id")
                .and_then(|i| i.as_str())
                .is_some_and(|id| scope.contains(id))
        });
    }
}

/// The image id the engine resolves `name` to (`None`: no such image).
pub(crate) async fn resolve(upstream: &Upstream, name: &str) -> Result<Option<String>, Error> {
    let req = Request::get(format!("/images/{name}/json"))
        .header(header::HOST, "docker")
        .body(Empty::<Bytes>::new())
        .map_err(|e| Error::Request(e.to_string()))?;
    let res = send(upstream, req).await?;
    let status = res.status();
    let bytes = res.into_body().collect().await?.to_bytes();
    if status == StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !status.is_success() {
        return Err(Error::Engine(format!(
            "inspecting {name}: {status}: {}",
            String::from_utf8_lossy(&bytes)
        )));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| Error::Engine(e.to_string()))?;
    Ok(v.get("Id").and_then(|i| i.as_str()).map(str::to_string))
}

/// One request to the engine over a fresh connection.
async fn send<B>(upstream: &Upstream, req: Request<B>) -> Result<Response<Incoming>, Error>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    match upstream {
        Upstream::Unix(path) => {
            let stream = UnixStream::connect(path)
                .await
                .map_err(|source| Error::Connect {
                    upstream: path.display().to_string(),
                    source,
                })?;
            send_on(stream, req).await
        }
        Upstream::Tcp(addr) => {
            let stream =
                TcpStream::connect(addr.as_str())
                    .await
                    .map_err(|source| Error::Connect {
                        upstream: addr.clone(),
                        source,
                    })?;
            send_on(stream, req).await
        }
    }
}

async fn send_on<S, B>(stream: S, req: Request<B>) -> Result<Response<Incoming>, Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "engine connection ended");
        }
    });
    Ok(sender.send_request(req).await?)
}
