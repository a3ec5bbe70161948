//! Digest checks against a registry: one manifest `HEAD` per image, with the Docker token
//! dance (401 `Bearer realm=...` → token endpoint with Basic credentials → retry) or Basic
//! auth, and bearer tokens cached until they expire so a steady-state check is one request.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};

use crate::auth::{Challenge, Credentials, parse_challenge};
use crate::reference::ImageRef;

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
        "registry {registry} needs TLS (https), which this build of slipway does not include; pass --insecure-registry {registry} if it serves plain HTTP"
    )]
    NeedsTls { registry: String },
}

#[derive(Debug, Clone)]
struct CachedToken {
    token: String,
    expires: Instant,
}

/// An HTTP client for digest checks.
#[derive(Debug)]
pub struct RegistryClient {
    http: reqwest::Client,
    insecure: HashSet<String>,
    tokens: Mutex<HashMap<(String, String), CachedToken>>,
    requests: AtomicU64,
}

impl RegistryClient {
    /// `insecure`: registries (`host:port`) reached over plain HTTP besides loopback ones.
    pub fn new(insecure: impl IntoIterator<Item = String>, timeout: Duration) -> RegistryClient {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::limited(5))
            .user_agent(concat!("slipway-watch/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        RegistryClient {
            http,
            insecure: insecure.into_iter().collect(),
            tokens: Mutex::new(HashMap::new()),
            requests: AtomicU64::new(0),
        }
    }

    /// HTTP requests sent so far (for the "≤ 1 request per image" budget).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn base(&self, r: &ImageRef) -> Result<String, CheckError> {
        if r.is_loopback() || self.insecure.contains(&r.registry) {
            Ok(format!("http://{}", r.registry))
        } else {
            Err(CheckError::NeedsTls {
                registry: r.registry.clone(),
            })
        }
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        registry: &str,
    ) -> Result<reqwest::Response, CheckError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        req.send().await.map_err(|e| CheckError::Unreachable {
            registry: registry.to_owned(),
            reason: describe(&e),
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
        let url = format!(
            "{}/v2/{}/manifests/{reference}",
            self.base(image)?,
            image.repository
        );
        let scope = format!("repository:{}:pull", image.repository);
        let key = (image.registry.clone(), scope.clone());
        let cached = self
            .tokens
            .lock()
            .unwrap()
            .get(&key)
            .filter(|t| t.expires > Instant::now())
            .map(|t| t.token.clone());
        let head = || self.http.head(&url).header(ACCEPT, MANIFEST_ACCEPT);
        let mut resp = match &cached {
            Some(t) => self.send(head().bearer_auth(t), &image.registry).await?,
            None => self.send(head(), &image.registry).await?,
        };
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
            resp = self
                .send(head().header(AUTHORIZATION, authz), &image.registry)
                .await?;
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
                self.http
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
                let mut req = self.http.get(url);
                if let Some(c) = creds {
                    req = req.basic_auth(&c.username, Some(&c.password));
                }
                req
            }
        };
        let resp = self.send(req, &image.registry).await?;
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
