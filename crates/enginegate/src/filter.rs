//! The request filter: a pure function from (method, path, query) to [`Decision`].
//!
//! It knows the Docker Engine API's routes (with or without the `/v1.NN` prefix) and
//! allows only the ones a pipeline job needs to build, tag, push, pull and inspect images.
//! Everything else is refused with a reason the docker CLI will print. Whether a named
//! image belongs to the job is not decided here (that needs the engine): an allowed
//! [`Route`] names the image the proxy must resolve and check against the job's scope.
//!
//! The query is parsed once here; the proxy forwards exactly the pairs that were checked
//! (re-encoded), so the engine never sees a parameter the filter did not.

use std::collections::BTreeMap;

/// What the filter decided about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow(Allowed),
    /// Refused, with the reason (without the common suffix, see [`refusal_message`]).
    Refuse(String),
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }

    /// The reason, when refused.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Decision::Refuse(r) => Some(r),
            Decision::Allow(_) => None,
        }
    }

    /// The route, when allowed.
    pub fn route(&self) -> Option<&Route> {
        match self {
            Decision::Allow(a) => Some(&a.route),
            Decision::Refuse(_) => None,
        }
    }
}

/// An allowed request: what it is and the query pairs to forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    pub route: Route,
    /// The decoded query pairs, in order; the proxy re-encodes them.
    pub query: Vec<(String, String)>,
}

/// The allowed endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET|HEAD /_ping`.
    Ping,
    /// `GET /version`.
    Version,
    /// `GET /info` (answered trimmed).
    Info,
    /// `POST /build` (classic builder; the proxy adds the job's labels).
    Build,
    /// `POST /images/create?fromImage=..`: a pull of `reference`.
    Pull { reference: String },
    /// `POST /images/{name}/tag`: `name` must be in the job's scope.
    Tag { name: String },
    /// `POST /images/{name}/push?tag=..`: `reference` (name:tag) must be in the job's scope.
    Push { reference: String },
    /// `GET /images/{name}/json`.
    InspectImage { name: String },
    /// `GET /images/json` (answered with the job's images only).
    ListImages,
    /// `GET /distribution/{name}/json`.
    Distribution { name: String },
    /// `POST /auth`.
    Auth,
    /// `DELETE /images/{name}`: `name` must be in the job's scope.
    DeleteImage { name: String },
}

/// The sentence every refusal ends with.
pub const ALLOWED_SUMMARY: &str =
    "pipeline jobs may only build, tag, push, pull and inspect images";

/// The message of a refusal, as sent in Docker's error body `{"message": ...}`.
pub fn refusal_message(reason: &str) -> String {
    format!("slipway engine gate: {reason}; {ALLOWED_SUMMARY}")
}

/// Build parameters and what they may be. `None`: any value.
fn build_param(key: &str) -> Option<Option<&'static [&'static str]>> {
    const ANY: Option<&[&str]> = None;
    Some(match key {
        "dockerfile" | "t" | "extrahosts" | "q" | "nocache" | "cachefrom" | "pull" | "rm"
        | "forcerm" | "memory" | "memswap" | "cpushares" | "cpusetcpus" | "cpusetmems"
        | "cpuperiod" | "cpuquota" | "buildargs" | "shmsize" | "squash" | "labels" | "platform"
        | "target" | "ulimits" => ANY,
        // `container:<id>` would join another container's network, `host` the host's.
        "networkmode" => Some(&["", "default", "bridge", "none"]),
        // 2 is BuildKit, which needs `/session` (refused): jobs use DOCKER_BUILDKIT=0.
        "version" => Some(&["", "1"]),
        "cgroupparent" => Some(&[""]),
        "isolation" => Some(&["", "default"]),
        // The engine itself would fetch a URL or clone a git repository.
        "remote" => Some(&[""]),
        "session" | "buildid" | "outputs" => Some(&[""]),
        _ => return None,
    })
}

/// The decision for one request. `path` is the request's path as sent (not decoded),
/// `query` its raw query string.
pub fn decide(method: &str, path: &str, query: Option<&str>) -> Decision {
    let refuse = |what: &str| Decision::Refuse(what.to_string());
    // The engine's router decodes the path and would redirect unclean paths; the docker CLI
    // never escapes anything in a path, so escapes and unclean paths are refused outright.
    if path.contains('%') {
        return refuse("escaped characters in the request path are refused");
    }
    if !path.starts_with('/')
        || path.contains("//")
        || path.contains("/./")
        || path.contains("/../")
        || path.ends_with("/.")
        || path.ends_with("/..")
    {
        return refuse("an unclean request path is refused");
    }
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let route = strip_version(path);
    let described = format!("{method} {route}");
    let allow = |route: Route| {
        Decision::Allow(Allowed {
            route,
            query: pairs.clone(),
        })
    };

    match (method, route) {
        ("GET" | "HEAD", "/_ping") => allow(Route::Ping),
        ("GET", "/version") => allow(Route::Version),
        ("GET", "/info") => allow(Route::Info),
        ("POST", "/auth") => allow(Route::Auth),
        ("GET", "/images/json") => allow(Route::ListImages),
        ("POST", "/build") => {
            for (k, v) in &pairs {
                match build_param(k) {
                    None => {
                        return Decision::Refuse(format!(
                            "docker build: the parameter {k:?} is refused"
                        ));
                    }
                    Some(Some(allowed)) if !allowed.contains(&v.as_str()) => {
                        return Decision::Refuse(match k.as_str() {
                            "networkmode" => format!(
                                "docker build --network={v} is refused (only default, bridge or none)"
                            ),
                            "version" | "session" | "buildid" | "outputs" => {
                                "BuildKit builds are refused (set DOCKER_BUILDKIT=0)".to_string()
                            }
                            _ => format!("docker build: {k}={v:?} is refused"),
                        });
                    }
                    Some(_) => {}
                }
            }
            allow(Route::Build)
        }
        ("POST", "/images/create") => {
            let mut from = None;
            let mut tag = String::new();
            for (k, v) in &pairs {
                match k.as_str() {
                    "fromImage" if from.is_none() => from = Some(v.clone()),
                    "tag" if tag.is_empty() => tag = v.clone(),
                    "platform" => {}
                    "fromSrc" | "repo" | "changes" | "message" => {
                        return refuse("docker import (images/create from a source) is refused");
                    }
                    _ => {
                        return Decision::Refuse(format!(
                            "docker pull: the parameter {k:?} is refused"
                        ));
                    }
                }
            }
            let Some(from) = from.filter(|f| !f.is_empty()) else {
                return refuse("images/create without fromImage is refused");
            };
            if let Err(e) = check_name(&from) {
                return Decision::Refuse(e);
            }
            let reference = if !tag.is_empty() {
                if let Err(e) = check_name(&tag) {
                    return Decision::Refuse(e);
                }
                if tag.contains(':') {
                    format!("{from}@{tag}")
                } else {
                    format!("{from}:{tag}")
                }
            } else if has_tag_or_digest(&from) {
                from
            } else {
                return refuse("pulling all tags of a repository is refused");
            };
            allow(Route::Pull { reference })
        }
        _ => {
            if let Some(rest) = route.strip_prefix("/images/") {
                let named = |suffix: &str| rest.strip_suffix(suffix).map(str::to_string);
                let (route, keys): (Option<Route>, &[&str]) = match method {
                    "GET" => (named("/json").map(|name| Route::InspectImage { name }), &[]),
                    "POST" if rest.ends_with("/tag") => (
                        named("/tag").map(|name| Route::Tag { name }),
                        &["repo", "tag"],
                    ),
                    "POST" if rest.ends_with("/push") => {
                        let tag = first(&pairs, "tag");
                        if tag.is_empty() {
                            return refuse("pushing all tags of a repository is refused");
                        }
                        let sep = if tag.contains(':') { '@' } else { ':' };
                        (
                            named("/push").map(|name| Route::Push {
                                reference: format!("{name}{sep}{tag}"),
                            }),
                            &["tag", "platform"],
                        )
                    }
                    "DELETE" => (
                        Some(Route::DeleteImage {
                            name: rest.to_string(),
                        }),
                        &["force", "noprune"],
                    ),
                    _ => (None, &[]),
                };
                let Some(route) = route else {
                    return Decision::Refuse(format!("{described} is refused"));
                };
                if let Some(name) = route_name(&route)
                    && let Err(e) = check_name(name)
                {
                    return Decision::Refuse(e);
                }
                if !keys.is_empty()
                    && let Some((k, _)) = pairs.iter().find(|(k, _)| !keys.contains(&k.as_str()))
                {
                    return Decision::Refuse(format!(
                        "{described}: the parameter {k:?} is refused"
                    ));
                }
                if let Route::Tag { .. } = route {
                    let repo = first(&pairs, "repo");
                    let tag = first(&pairs, "tag");
                    if let Err(e) = check_name(repo).and_then(|()| {
                        if tag.is_empty() {
                            Ok(())
                        } else {
                            check_name(tag)
                        }
                    }) {
                        return Decision::Refuse(e);
                    }
                }
                return allow(route);
            }
            if method == "GET"
                && let Some(name) = route
                    .strip_prefix("/distribution/")
                    .and_then(|r| r.strip_suffix("/json"))
            {
                if let Err(e) = check_name(name) {
                    return Decision::Refuse(e);
                }
                return allow(Route::Distribution {
                    name: name.to_string(),
                });
            }
            Decision::Refuse(refusal_reason(method, route))
        }
    }
}

fn route_name(route: &Route) -> Option<&str> {
    match route {
        Route::Tag { name } | Route::InspectImage { name } | Route::DeleteImage { name } => {
            Some(name)
        }
        Route::Push { reference } => Some(reference),
        _ => None,
    }
}

fn first<'a>(pairs: &'a [(String, String)], key: &str) -> &'a str {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

/// A reason naming what the docker CLI command was, where that is clear.
fn refusal_reason(method: &str, route: &str) -> String {
    let first = route
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("");
    let what = match first {
        "containers" => " (containers: docker run, create, start, exec, ps, logs, cp)",
        "exec" => " (docker exec)",
        "volumes" => " (volumes)",
        "networks" => " (networks)",
        "swarm" | "nodes" | "services" | "tasks" | "secrets" | "configs" => " (swarm)",
        "plugins" => " (plugins)",
        "session" => " (BuildKit session: set DOCKER_BUILDKIT=0)",
        "grpc" => " (BuildKit: set DOCKER_BUILDKIT=0)",
        "system" => " (system endpoints)",
        "events" => " (events)",
        "commit" => " (docker commit)",
        "build" => " (build cache)",
        _ => "",
    };
    format!("{method} {route} is refused{what}")
}

/// The path without its `/v1.NN` prefix.
fn strip_version(path: &str) -> &str {
    if let Some(rest) = path.strip_prefix("/v")
        && let Some(slash) = rest.find('/')
    {
        let version = &rest[..slash];
        if !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return &rest[slash..];
        }
    }
    path
}

/// An image name, id or reference: the characters of references only.
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 512
        && !name.starts_with(['-', '/', '.'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/:@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!("the image name {name:?} is not a valid reference"))
    }
}

/// Whether a reference names a tag or a digest (not only a repository).
fn has_tag_or_digest(reference: &str) -> bool {
    let last = reference.rsplit('/').next().unwrap_or(reference);
    last.contains(':') || reference.contains('@')
}

/// A content type the engine would parse as form values (and so read parameters from the
/// body): refused, since the filter only checks the query.
pub fn form_content_type(content_type: &str) -> bool {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    media == "application/x-www-form-urlencoded" || media.starts_with("multipart/")
}

/// The query of a build with the job's labels merged into `labels` (JSON object), the
/// gate's own labels winning; `network`, when set, replaces a default network mode.
pub fn build_query(
    query: &[(String, String)],
    labels: &BTreeMap<String, String>,
    network: Option<&str>,
) -> Result<String, String> {
    let mut merged: BTreeMap<String, String> = BTreeMap::new();
    let mut out = form_urlencoded::Serializer::new(String::new());
    let mut mode = None;
    for (k, v) in query {
        match k.as_str() {
            "labels" => {
                if !v.is_empty() && v != "null" {
                    let given: BTreeMap<String, String> = serde_json::from_str(v)
                        .map_err(|e| format!("docker build: labels is not a JSON object: {e}"))?;
                    merged.extend(given);
                }
            }
            "networkmode" => {
                if mode.is_none() {
                    mode = Some(v.clone());
                }
            }
            _ => {
                out.append_pair(k, v);
            }
        }
    }
    merged.extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mode = match (mode.as_deref(), network) {
        (Some("none"), _) => Some("none".to_string()),
        (_, Some(n)) => Some(n.to_string()),
        (m, None) => m.map(str::to_string),
    };
    if let Some(mode) = mode {
        out.append_pair("networkmode", &mode);
    }
    let labels = serde_json::to_string(&merged).map_err(|e| e.to_string())?;
    out.append_pair("labels", &labels);
    Ok(out.finish())
}

/// The names a request would give images: a build's `t` values, a tag's `repo[:tag]`.
pub fn tag_targets(route: &Route, query: &[(String, String)]) -> Vec<String> {
    match route {
        Route::Build => query
            .iter()
            .filter(|(k, v)| k == "t" && !v.is_empty())
            .map(|(_, v)| v.clone())
            .collect(),
        Route::Tag { .. } => {
            let repo = first(query, "repo");
            let tag = first(query, "tag");
            if tag.is_empty() {
                vec![repo.to_string()]
            } else {
                vec![format!("{repo}:{tag}")]
            }
        }
        _ => Vec::new(),
    }
}

/// The repository of a reference (without tag or digest), in its familiar form (as the
/// docker CLI prints it: `app`, not `docker.io/library/app`).
pub fn repository_of(reference: &str) -> &str {
    let name = familiar(reference.split('@').next().unwrap_or(reference));
    let slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[slash..].find(':') {
        Some(colon) => &name[..slash + colon],
        None => name,
    }
}

/// A name without Docker Hub's default registry and namespace.
fn familiar(name: &str) -> &str {
    for hub in ["docker.io/", "index.docker.io/"] {
        if let Some(rest) = name.strip_prefix(hub) {
            return rest.strip_prefix("library/").unwrap_or(rest);
        }
    }
    name
}

/// Whether `reference` is in one of `repositories` (entries ending in `/` are prefixes);
/// an empty list allows any.
pub fn repository_allowed(reference: &str, repositories: &[String]) -> bool {
    let repo = repository_of(reference);
    repositories.is_empty()
        || repositories.iter().any(|r| {
            let r = familiar(r);
            if r.ends_with('/') {
                repo.starts_with(r)
            } else {
                repo == r
            }
        })
}

/// The query pairs re-encoded.
pub fn encode_query(query: &[(String, String)]) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in query {
        out.append_pair(k, v);
    }
    out.finish()
}
