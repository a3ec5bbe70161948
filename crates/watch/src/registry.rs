//! Digest checks against a registry: one manifest `HEAD` per image, with the Docker token
//! dance (401 `Bearer realm=...` → token endpoint with Basic credentials → retry) or Basic
//! auth, and bearer tokens cached until they expire so a steady-state check is one request.
//!
//! Transport follows the docker daemon (see [`crate::tls`]):
//! * a registry Docker treats as secure (anything not on loopback and not named with
//!   `--insecure-registry`) is reached over HTTPS only, verified against the system's roots
//!   plus the CAs in `CERTS_D/HOST:PORT/*.crt`; a certificate it does not trust is an error
//!   that names the registry and the fix;
//! * an insecure one gets HTTPS without verification first and plain HTTP when that fails
//!   (the scheme that answered is remembered, so later checks do not probe again); when a CA
//!   is installed for it in certs.d, its HTTPS is verified against that CA and a certificate
//!   failure is reported, not papered over with plain HTTP.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};

use crate::auth::{Challenge, Credentials, parse_challenge};
use crate::reference::{ImageRef, is_loopback_registry};
use crate::tls::{self, DirStamp};

/// The manifest media types a digest check accepts (OCI and Docker, single and index).
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Why a digest check failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CheckError {
    #[error("registry {registry} is unreachable ({reason})")]
    Unreachable { registry: String, reason: String },
    #[error("registry {registry} refused the credentials{from}: {reason}")]
    Unauthorized {
        registry: String,
        from: String,
        reason: String,
    },
    #[error("{image} is not in the registry (manifest unknown)")]
    NotFound { image: String },
    #[error("registry {registry}: {reason}")]
    Protocol { registry: String, reason: String },
    #[error(
        "registry {registry} presents a TLS certificate this host does not trust ({reason}); if it uses a private CA, put that CA's certificate in {ca_file} (what the docker daemon reads too; `slipway registry ca` prints Slipway's)"
    )]
    Untrusted {
        registry: String,
        reason: String,
        ca_file: String,
    },
    #[error("TLS for registry {registry}: {reason}")]
    Tls { registry: String, reason: String },
}

#[derive(Debug, Clone)]
struct CachedToken {
    token: String,
    expires: Instant,
}

/// One way of reaching a registry: a base URL and the client for it.
#[derive(Debug, Clone)]
struct Endpoint {
    base: String,
    http: reqwest::Client,
    /// HTTPS with certificate verification (a certificate failure is final).
    verified: bool,
}

impl Endpoint {
    fn is_plain(&self) -> bool {
        self.base.starts_with("http://")
    }
}

/// The client for a registry that has files in certs.d, and what they were.
type HostClient = (DirStamp, Result<reqwest::Client, String>);

/// An HTTP client for digest checks.
#[derive(Debug)]
pub struct RegistryClient {
    timeout: Duration,
    certs_d: PathBuf,
    insecure: HashSet<String>,
    /// Plain HTTP (and HTTPS without verification, for insecure registries).
    unverified: reqwest::Client,
    /// HTTPS verified against the system's roots; built on first use.
    system: Mutex<Option<Result<reqwest::Client, String>>>,
    /// Registries with a certs.d directory.
    hosts: Mutex<HashMap<String, HostClient>>,
    /// Insecure registries that answered over plain HTTP last time.
    plain: Mutex<HashSet<String>>,
    tokens: Mutex<HashMap<(String, String), CachedToken>>,
    requests: AtomicU64,
}

fn build(tls: rustls::ClientConfig, timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::limited(5))
        .user_agent(concat!("slipway-watch/", env!("CARGO_PKG_VERSION")))
        .tls_backend_preconfigured(tls)
        .build()
        .map_err(|e| describe(&e))
}

impl RegistryClient {
    /// `insecure`: registries (`host:port`) Docker treats as insecure besides loopback ones
    /// (HTTPS without verification, then plain HTTP). Certificates come from
    /// [`tls::DEFAULT_CERTS_D`]; see [`Self::with_certs_dir`].
    pub fn new(insecure: impl IntoIterator<Item = String>, timeout: Duration) -> RegistryClient {
        RegistryClient {
            timeout,
            certs_d: PathBuf::from(tls::DEFAULT_CERTS_D),
            insecure: insecure.into_iter().collect(),
            unverified: build(tls::unverified(), timeout)
                .expect("an HTTP client with a preconfigured rustls configuration builds"),
            system: Mutex::new(None),
            hosts: Mutex::new(HashMap::new()),
            plain: Mutex::new(HashSet::new()),
            tokens: Mutex::new(HashMap::new()),
            requests: AtomicU64::new(0),
        }
    }

    /// Reads per-registry certificates from `dir/HOST:PORT/` instead of `/etc/docker/certs.d`.
    pub fn with_certs_dir(mut self, dir: impl Into<PathBuf>) -> RegistryClient {
        self.certs_d = dir.into();
        self
    }

    /// HTTP requests sent so far (for the "≤ 1 request per image" budget). A TLS handshake
    /// that an insecure registry serving plain HTTP refuses is not an HTTP request and is not
    /// counted; it happens once per registry and process.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn insecure(&self, registry: &str) -> bool {
        is_loopback_registry(registry) || self.insecure.contains(registry)
    }

    fn system(&self, registry: &str) -> Result<reqwest::Client, CheckError> {
        let mut g = self.system.lock().unwrap();
        let c = g.get_or_insert_with(|| {
            tls::verified(Vec::new(), None)
                .map_err(|e| e.to_string())
                .and_then(|t| build(t, self.timeout))
        });
        c.clone().map_err(|reason| CheckError::Tls {
            registry: registry.to_owned(),
            reason,
        })
    }

    /// The verifying client for a registry with files in certs.d (`None` without any);
    /// re-read when the directory changes.
    fn host(&self, registry: &str) -> Result<Option<reqwest::Client>, CheckError> {
        let dir = tls::host_dir(&self.certs_d, registry);
        let stamp = tls::stamp(&dir);
        if stamp.is_empty() {
            return Ok(None);
        }
        let mut hosts = self.hosts.lock().unwrap();
        let fresh = hosts.get(registry).is_some_and(|(s, _)| *s == stamp);
        if !fresh {
            let client = tls::read_host_certs(&dir)
                .and_then(|h| tls::verified(h.roots, h.identity))
                .map_err(|e| e.to_string())
                .and_then(|t| build(t, self.timeout));
            hosts.insert(registry.to_owned(), (stamp, client));
        }
        match &hosts[registry].1 {
            Ok(c) => Ok(Some(c.clone())),
            Err(reason) => Err(CheckError::Tls {
                registry: registry.to_owned(),
                reason: reason.clone(),
            }),
        }
    }

    /// The ways to reach `registry`, in the order to try them.
    fn endpoints(&self, registry: &str) -> Result<Vec<Endpoint>, CheckError> {
        let https = |http: reqwest::Client, verified| Endpoint {
            base: format!("https://{registry}"),
            http,
            verified,
        };
        let plain = Endpoint {
            base: format!("http://{registry}"),
            http: self.unverified.clone(),
            verified: false,
        };
        let mut eps = match (self.insecure(registry), self.host(registry)?) {
            (false, Some(c)) => vec![https(c, true)],
            (false, None) => vec![https(self.system(registry)?, true)],
            (true, Some(c)) => vec![https(c, true), plain],
            (true, None) => vec![https(self.unverified.clone(), false), plain],
        };
        if eps.len() > 1 && self.plain.lock().unwrap().contains(registry) {
            eps.reverse();
        }
        Ok(eps)
    }

    /// The client for an absolute URL (a token realm), by the same rules as a registry.
    fn client_for(&self, url: &reqwest::Url) -> Result<reqwest::Client, CheckError> {
        if url.scheme() != "https" {
            return Ok(self.unverified.clone());
        }
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => String::new(),
        };
        match (self.insecure(&host), self.host(&host)?) {
            (_, Some(c)) => Ok(c),
            (true, None) => Ok(self.unverified.clone()),
            (false, None) => self.system(&host),
        }
    }

    fn untrusted(&self, registry: &str, reason: String) -> CheckError {
        CheckError::Untrusted {
            registry: registry.to_owned(),
            reason,
            ca_file: tls::host_dir(&self.certs_d, registry)
                .join("ca.crt")
                .display()
                .to_string(),
        }
    }

    /// Sends the first request of an exchange, trying the registry's endpoints in turn;
    /// returns the answer and the endpoint that gave it, for the rest of the exchange.
    async fn first(
        &self,
        registry: &str,
        req: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Result<(reqwest::Response, Endpoint), CheckError> {
        let eps = self.endpoints(registry)?;
        let mut failures: Vec<String> = Vec::new();
        for ep in eps {
            match req(&ep.http, &ep.base).send().await {
                Ok(resp) => {
                    self.requests.fetch_add(1, Ordering::Relaxed);
                    let mut plain = self.plain.lock().unwrap();
                    if ep.is_plain() {
                        plain.insert(registry.to_owned());
                    } else {
                        plain.remove(registry);
                    }
                    return Ok((resp, ep));
                }
                Err(e) => {
                    if ep.verified
                        && let Some(why) = tls::certificate_problem(&e)
                    {
                        return Err(self.untrusted(registry, why));
                    }
                    let why = describe(&e);
                    let scheme = if ep.is_plain() { "http" } else { "https" };
                    if !failures.iter().any(|f| f.ends_with(&why)) {
                        failures.push(format!("{scheme}: {why}"));
                    }
                }
            }
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        let reason = if failures.len() == 1 {
            failures[0]
                .split_once(": ")
                .map_or(failures[0].clone(), |(_, w)| w.to_owned())
        } else {
            failures.join("; ")
        };
        Err(CheckError::Unreachable {
            registry: registry.to_owned(),
            reason,
        })
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        registry: &str,
    ) -> Result<reqwest::Response, CheckError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        req.send()
            .await
            .map_err(|e| match tls::certificate_problem(&e) {
                Some(why) => self.untrusted(registry, why),
                None => CheckError::Unreachable {
                    registry: registry.to_owned(),
                    reason: describe(&e),
                },
            })
    }

    /// The digest the registry serves for `image`'s tag (`sha256:...`).
    pub async fn head_digest(
        &self,
        image: &ImageRef,
        creds: Option<&Credentials>,
    ) -> Result<String, CheckError> {
        let reference = image
            .tag
            .clone()
            .or_else(|| image.digest.clone())
            .unwrap_or_else(|| "latest".into());
        let path = format!("/v2/{}/manifests/{reference}", image.repository);
        let scope = format!("repository:{}:pull", image.repository);
        let key = (image.registry.clone(), scope.clone());
        let cached = self
            .tokens
            .lock()
            .unwrap()
            .get(&key)
            .filter(|t| t.expires > Instant::now())
            .map(|t| t.token.clone());
        let head = |c: &reqwest::Client, base: &str| {
            let r = c
                .head(format!("{base}{path}"))
                .header(ACCEPT, MANIFEST_ACCEPT);
            match &cached {
                Some(t) => r.bearer_auth(t),
                None => r,
            }
        };
        let (mut resp, ep) = self.first(&image.registry, head).await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            let challenge = resp
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_challenge);
            let authz = match challenge {
                Some(Challenge::Basic) => {
                    let Some(c) = creds else {
                        return Err(no_creds(image));
                    };
                    format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD
                            .encode(format!("{}:{}", c.username, c.password))
                    )
                }
                Some(Challenge::Bearer { realm, service, .. }) => {
                    let (token, ttl) = self
                        .token(image, &realm, service.as_deref(), &scope, creds)
                        .await?;
                    self.tokens.lock().unwrap().insert(
                        key,
                        CachedToken {
                            token: token.clone(),
                            expires: Instant::now() + ttl,
                        },
                    );
                    format!("Bearer {token}")
                }
                None => {
                    return Err(CheckError::Protocol {
                        registry: image.registry.clone(),
                        reason: "401 without a usable WWW-Authenticate challenge".into(),
                    });
                }
            };
            let retry = ep
                .http
                .head(format!("{}{path}", ep.base))
                .header(ACCEPT, MANIFEST_ACCEPT)
                .header(AUTHORIZATION, authz);
            resp = self.send(retry, &image.registry).await?;
        }
        let status = resp.status();
        match status {
            s if s.is_success() => resp
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .filter(|d| d.starts_with("sha256:"))
                .map(str::to_owned)
                .ok_or_else(|| CheckError::Protocol {
                    registry: image.registry.clone(),
                    reason: "manifest HEAD answered without a Docker-Content-Digest header".into(),
                }),
            StatusCode::NOT_FOUND => Err(CheckError::NotFound {
                image: image.to_string(),
            }),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                self.tokens
                    .lock()
                    .unwrap()
                    .remove(&(image.registry.clone(), scope));
                Err(CheckError::Unauthorized {
                    registry: image.registry.clone(),
                    from: creds
                        .map(|c| format!(" from {}", c.source))
                        .unwrap_or_default(),
                    reason: format!(
                        "manifest HEAD answered {status}: no pull access to {}",
                        image.repository
                    ),
                })
            }
            s => Err(CheckError::Protocol {
                registry: image.registry.clone(),
                reason: format!("manifest HEAD answered {s}"),
            }),
        }
    }

    /// Every tag of `image`'s repository (`GET /v2/<repo>/tags/list`, following `Link`
    /// pagination), with the same token flow as [`Self::head_digest`].
    pub async fn list_tags(
        &self,
        image: &ImageRef,
        creds: Option<&Credentials>,
    ) -> Result<Vec<String>, CheckError> {
        let scope = format!("repository:{}:pull", image.repository);
        let first_path = format!("/v2/{}/tags/list?n=1000", image.repository);
        let (mut resp, ep) = self
            .first(&image.registry, |c, base| {
                c.get(format!("{base}{first_path}"))
            })
            .await?;
        let base = ep.base.clone();
        let mut url = format!("{base}{first_path}");
        let mut authz: Option<String> = None;
        let mut tags = Vec::new();
        let get = |url: &str, a: &Option<String>| {
            let r = ep.http.get(url);
            match a {
                Some(a) => r.header(AUTHORIZATION, a),
                None => r,
            }
        };
        for _ in 0..100 {
            if resp.status() == StatusCode::UNAUTHORIZED && authz.is_none() {
                let challenge = resp
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_challenge);
                authz = Some(match challenge {
                    Some(Challenge::Basic) => {
                        let Some(c) = creds else {
                            return Err(no_creds(image));
                        };
                        format!(
                            "Basic {}",
                            base64::engine::general_purpose::STANDARD
                                .encode(format!("{}:{}", c.username, c.password))
                        )
                    }
                    Some(Challenge::Bearer { realm, service, .. }) => {
                        let (token, _) = self
                            .token(image, &realm, service.as_deref(), &scope, creds)
                            .await?;
                        format!("Bearer {token}")
                    }
                    None => {
                        return Err(CheckError::Protocol {
                            registry: image.registry.clone(),
                            reason: "401 without a usable WWW-Authenticate challenge".into(),
                        });
                    }
                });
                resp = self.send(get(&url, &authz), &image.registry).await?;
            }
            let status = resp.status();
            if status == StatusCode::NOT_FOUND {
                return Err(CheckError::NotFound {
                    image: image.name(),
                });
            }
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                return Err(CheckError::Unauthorized {
                    registry: image.registry.clone(),
                    from: creds
                        .map(|c| format!(" from {}", c.source))
                        .unwrap_or_default(),
                    reason: format!(
                        "tags/list answered {status}: no pull access to {}",
                        image.repository
                    ),
                });
            }
            if !status.is_success() {
                return Err(CheckError::Protocol {
                    registry: image.registry.clone(),
                    reason: format!("tags/list answered {status}"),
                });
            }
            let next = resp
                .headers()
                .get(reqwest::header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| l.split_once('<'))
                .and_then(|(_, rest)| rest.split_once('>'))
                .map(|(u, _)| u.to_owned());
            #[derive(serde::Deserialize)]
            struct TagList {
                #[serde(default)]
                tags: Option<Vec<String>>,
            }
            let page: TagList = resp.json().await.map_err(|e| CheckError::Protocol {
                registry: image.registry.clone(),
                reason: format!("tags/list answer is not JSON: {}", describe(&e)),
            })?;
            tags.extend(page.tags.unwrap_or_default());
            match next {
                Some(n) if n.starts_with('/') => url = format!("{base}{n}"),
                Some(n) => url = n,
                None => return Ok(tags),
            }
            resp = self.send(get(&url, &authz), &image.registry).await?;
        }
        Ok(tags)
    }

    async fn token(
        &self,
        image: &ImageRef,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        creds: Option<&Credentials>,
    ) -> Result<(String, Duration), CheckError> {
        let bad_realm = |e: String| CheckError::Protocol {
            registry: image.registry.clone(),
            reason: format!("token realm {realm:?} is not a URL: {e}"),
        };
        let req = match creds {
            // An identity token (docker stores the token server's refresh token with the
            // username `<token>`): the OAuth2 refresh grant, as the docker daemon does.
            Some(c) if c.username == "<token>" => {
                let mut form = form_urlencoded::Serializer::new(String::new());
                form.append_pair("grant_type", "refresh_token")
                    .append_pair("refresh_token", &c.password)
                    .append_pair("scope", scope)
                    .append_pair("client_id", "slipway-watch");
                if let Some(s) = service {
                    form.append_pair("service", s);
                }
                let url = reqwest::Url::parse(realm).map_err(|e| bad_realm(e.to_string()))?;
                self.client_for(&url)?
                    .post(url)
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(form.finish())
            }
            _ => {
                let mut query: Vec<(&str, &str)> = vec![("scope", scope)];
                if let Some(s) = service {
                    query.push(("service", s));
                }
                if let Some(c) = creds {
                    query.push(("account", &c.username));
                }
                let mut url = reqwest::Url::parse(realm).map_err(|e| bad_realm(e.to_string()))?;
                url.query_pairs_mut().extend_pairs(&query);
                let mut req = self.client_for(&url)?.get(url);
                if let Some(c) = creds {
                    req = req.basic_auth(&c.username, Some(&c.password));
                }
                req
            }
        };
        let realm_host = reqwest::Url::parse(realm)
            .ok()
            .and_then(|u| {
                let h = u.host_str()?.to_owned();
                Some(u.port().map_or(h.clone(), |p| format!("{h}:{p}")))
            })
            .unwrap_or_else(|| image.registry.clone());
        let resp = self.send(req, &realm_host).await?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(match creds {
                None => no_creds(image),
                Some(c) => CheckError::Unauthorized {
                    registry: image.registry.clone(),
                    from: format!(" from {}", c.source),
                    reason: format!("token endpoint answered {status}"),
                },
            });
        }
        if !status.is_success() {
            return Err(CheckError::Protocol {
                registry: image.registry.clone(),
                reason: format!("token endpoint {realm} answered {status}"),
            });
        }
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let t: TokenAnswer = resp.json().await.map_err(|e| CheckError::Protocol {
            registry: image.registry.clone(),
            reason: format!("token endpoint answer is not JSON: {}", describe(&e)),
        })?;
        let token = t
            .token
            .or(t.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| CheckError::Protocol {
                registry: image.registry.clone(),
                reason: "token endpoint answered without a token".into(),
            })?;
        // Spec default is 60 s; refresh a little early.
        let ttl = t.expires_in.unwrap_or(60).max(10);
        Ok((token, Duration::from_secs(ttl - ttl / 10)))
    }
}

fn no_creds(image: &ImageRef) -> CheckError {
    CheckError::Unauthorized {
        registry: image.registry.clone(),
        from: String::new(),
        reason: format!(
            "it needs credentials and none are configured; run `docker login {}`",
            image.registry
        ),
    }
}

/// A short, single-line cause for a reqwest error.
fn describe(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut msg = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "connection failed".to_owned()
    } else {
        e.to_string()
    };
    let mut src = e.source();
    let mut last = None;
    while let Some(s) = src {
        last = Some(s.to_string());
        src = s.source();
    }
    if let Some(l) = last
        && !msg.contains(&l)
    {
        msg = format!("{msg}: {l}");
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::sync::Arc;

    /// A plain-HTTP registry stub on loopback that answers every request with a digest and
    /// counts the connections it accepts (a TLS handshake attempt is one too).
    fn plain_registry() -> (String, Arc<AtomicU64>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let conns = Arc::new(AtomicU64::new(0));
        let c = conns.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                c.fetch_add(1, Ordering::Relaxed);
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).unwrap_or(0);
                let answer: &[u8] = if buf[..n].starts_with(b"HEAD ") {
                    b"HTTP/1.1 200 OK\r\ndocker-content-digest: sha256:abc\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                } else {
                    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                };
                let _ = s.write_all(answer);
            }
        });
        (addr, conns)
    }

    #[tokio::test]
    async fn insecure_registry_falls_back_to_http_once_and_remembers_it() {
        let (addr, conns) = plain_registry();
        let certs = tempfile::tempdir().unwrap();
        let c =
            RegistryClient::new(Vec::new(), Duration::from_secs(5)).with_certs_dir(certs.path());
        let image = ImageRef::parse(&format!("{addr}/team/web:stable")).unwrap();
        assert_eq!(c.head_digest(&image, None).await.unwrap(), "sha256:abc");
        assert_eq!(
            conns.load(Ordering::Relaxed),
            2,
            "HTTPS first (refused by the plain server), then HTTP"
        );
        assert_eq!(
            c.requests(),
            1,
            "the refused handshake is not an HTTP request"
        );
        assert_eq!(c.head_digest(&image, None).await.unwrap(), "sha256:abc");
        assert_eq!(conns.load(Ordering::Relaxed), 3, "HTTP straight away");
        assert_eq!(c.requests(), 2);
    }

    #[tokio::test]
    async fn secure_registry_is_https_only_and_bad_ca_files_are_named() {
        let (addr, conns) = plain_registry();
        let port = addr.rsplit(':').next().unwrap();
        // 0.0.0.0 reaches this host without being a loopback name: a secure registry, for
        // which `--insecure-registry` is the only way to plain HTTP.
        let certs = tempfile::tempdir().unwrap();
        let name = format!("0.0.0.0:{port}");
        let c =
            RegistryClient::new(Vec::new(), Duration::from_secs(5)).with_certs_dir(certs.path());
        let image = ImageRef::parse(&format!("{name}/team/web:stable")).unwrap();
        let e = c.head_digest(&image, None).await.unwrap_err();
        assert!(
            matches!(e, CheckError::Unreachable { .. }),
            "no fallback to HTTP: {e}"
        );
        assert_eq!(conns.load(Ordering::Relaxed), 1, "one HTTPS attempt");
        let insecure = RegistryClient::new(vec![name.clone()], Duration::from_secs(5))
            .with_certs_dir(certs.path());
        assert_eq!(
            insecure.head_digest(&image, None).await.unwrap(),
            "sha256:abc"
        );

        let dir = tls::host_dir(certs.path(), &name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.crt"), "garbage").unwrap();
        let e = c.head_digest(&image, None).await.unwrap_err().to_string();
        assert!(
            e.contains(&name) && e.contains("ca.crt") && e.contains("no PEM certificate"),
            "{e}"
        );
    }
}
