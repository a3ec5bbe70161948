//! Push webhooks of GitHub, Gitea/Forgejo and GitLab: which provider sent a delivery, its
//! signature checked in constant time, and the push event in its payload. Pure: no I/O.
//!
//! | provider | event header | delivery id | signature |
//! | --- | --- | --- | --- |
//! | GitHub | `X-GitHub-Event` | `X-GitHub-Delivery` | `X-Hub-Signature-256: sha256=HEX` |
//! | Gitea | `X-Gitea-Event` | `X-Gitea-Delivery` | `X-Gitea-Signature: HEX` |
//! | Forgejo | `X-Forgejo-Event` | `X-Forgejo-Delivery` | `X-Forgejo-Signature: HEX` |
//! | GitLab | `X-Gitlab-Event` | `X-Gitlab-Event-UUID`, else `X-Gitlab-Webhook-UUID` | `X-Gitlab-Token: SECRET` |
//!
//! Signatures are HMAC-SHA256 of the raw body with the app's webhook secret, compared with
//! [`subtle`] after a length check (the length of a MAC is public). GitLab sends the secret
//! itself: both are hashed with SHA-256 and the digests compared in constant time, so
//! neither the content nor the length of the secret leaks through timing.
//!
//! Gitea and Forgejo also send GitHub's headers (for compatibility): their own headers are
//! looked at first. A delivery without an id is identified by the SHA-256 of its body (the
//! same body again is then the same delivery). GitLab's `X-Gitlab-Webhook-UUID` names the
//! hook, not the delivery: alone it is combined with the body's digest.

use std::collections::BTreeSet;

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The provider a delivery comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    GitHub,
    Gitea,
    Forgejo,
    GitLab,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::GitHub => "github",
            Provider::Gitea => "gitea",
            Provider::Forgejo => "forgejo",
            Provider::GitLab => "gitlab",
        }
    }
}

/// What a delivery is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Push,
    Ping,
    /// Anything else (answered, not recorded), with the provider's name for it.
    Other(String),
}

/// How a delivery is signed, as sent.
#[derive(Clone, PartialEq, Eq)]
pub enum Signature {
    /// An HMAC-SHA256 of the body (decoded from hex; any length, checked later).
    Hmac(Vec<u8>),
    /// GitLab's token: the secret itself.
    Token(String),
    /// A signature header that is not what its provider sends (no `sha256=`, not hex).
    Malformed,
    Missing,
}

impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Signature::Hmac(_) => "Hmac(..)",
            Signature::Token(_) => "Token(<redacted>)",
            Signature::Malformed => "Malformed",
            Signature::Missing => "Missing",
        })
    }
}

/// A delivery's headers, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub provider: Provider,
    pub event: Event,
    /// The delivery id (see the module documentation for deliveries without one).
    pub id: String,
    pub signature: Signature,
}

/// Why a delivery is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error(
        "not a webhook of GitHub, Gitea, Forgejo or GitLab (no X-GitHub-Event, X-Gitea-Event, X-Forgejo-Event or X-Gitlab-Event header)"
    )]
    UnknownProvider,
    #[error("the delivery is not signed ({0} is missing)")]
    Unsigned(&'static str),
    #[error("the delivery's signature does not match the app's webhook secret")]
    BadSignature,
    #[error("the push payload cannot be read: {0}")]
    Malformed(String),
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn hex_signature(v: Option<&str>, prefix: &str) -> Signature {
    match v {
        None => Signature::Missing,
        Some(v) => match v.strip_prefix(prefix).map(hex::decode) {
            Some(Ok(bytes)) => Signature::Hmac(bytes),
            _ => Signature::Malformed,
        },
    }
}

fn body_id(body: &[u8]) -> String {
    format!("body-sha256:{}", hex::encode(Sha256::digest(body)))
}

/// Reads who sent a delivery, what about, its id and its signature.
pub fn identify(h: &HeaderMap, body: &[u8]) -> Result<Delivery, WebhookError> {
    let id_or_body = |name: &str| header(h, name).map_or_else(|| body_id(body), str::to_owned);
    if let Some(ev) = header(h, "x-forgejo-event") {
        return Ok(Delivery {
            provider: Provider::Forgejo,
            event: gitea_event(ev),
            id: header(h, "x-forgejo-delivery")
                .or_else(|| header(h, "x-gitea-delivery"))
                .map_or_else(|| body_id(body), str::to_owned),
            signature: hex_signature(
                header(h, "x-forgejo-signature").or_else(|| header(h, "x-gitea-signature")),
                "",
            ),
        });
    }
    if let Some(ev) = header(h, "x-gitea-event") {
        return Ok(Delivery {
            provider: Provider::Gitea,
            event: gitea_event(ev),
            id: id_or_body("x-gitea-delivery"),
            signature: hex_signature(header(h, "x-gitea-signature"), ""),
        });
    }
    if let Some(ev) = header(h, "x-gitlab-event") {
        let event = match ev {
            "Push Hook" | "Tag Push Hook" => Event::Push,
            other => Event::Other(other.to_owned()),
        };
        let id = match (
            header(h, "x-gitlab-event-uuid"),
            header(h, "x-gitlab-webhook-uuid"),
        ) {
            (Some(e), _) => e.to_owned(),
            (None, Some(w)) => format!("{w}:{}", body_id(body)),
            (None, None) => body_id(body),
        };
        return Ok(Delivery {
            provider: Provider::GitLab,
            event,
            id,
            signature: header(h, "x-gitlab-token")
                .map_or(Signature::Missing, |t| Signature::Token(t.to_owned())),
        });
    }
    if let Some(ev) = header(h, "x-github-event") {
        return Ok(Delivery {
            provider: Provider::GitHub,
            event: gitea_event(ev),
            id: id_or_body("x-github-delivery"),
            signature: hex_signature(header(h, "x-hub-signature-256"), "sha256="),
        });
    }
    Err(WebhookError::UnknownProvider)
}

fn gitea_event(ev: &str) -> Event {
    match ev {
        "push" => Event::Push,
        "ping" => Event::Ping,
        other => Event::Other(other.to_owned()),
    }
}

/// HMAC-SHA256 of `body` with `secret`.
pub fn hmac_sha256(secret: &[u8], body: &[u8]) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// Equal in constant time (for equal lengths; lengths are compared first and are public).
fn ct_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Checks a delivery's signature against the app's webhook secret.
pub fn verify(d: &Delivery, secret: &[u8], body: &[u8]) -> Result<(), WebhookError> {
    let ok = match &d.signature {
        Signature::Missing => {
            return Err(WebhookError::Unsigned(match d.provider {
                Provider::GitHub => "X-Hub-Signature-256",
                Provider::Gitea => "X-Gitea-Signature",
                Provider::Forgejo => "X-Forgejo-Signature",
                Provider::GitLab => "X-Gitlab-Token",
            }));
        }
        Signature::Malformed => false,
        Signature::Hmac(sig) => ct_equal(&hmac_sha256(secret, body), sig),
        Signature::Token(t) => {
            // Digests of both: constant time whatever the lengths.
            let a: [u8; 32] = Sha256::digest(t.as_bytes()).into();
            let b: [u8; 32] = Sha256::digest(secret).into();
            bool::from(a.ct_eq(&b))
        }
    };
    if ok {
        Ok(())
    } else {
        Err(WebhookError::BadSignature)
    }
}

/// The push event of a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    pub git_ref: String,
    pub before: String,
    pub after: String,
    /// The repository's clone URL (HTTP), where the runner fetches the commit from.
    pub repository: Option<String>,
    pub pusher: String,
    /// Paths added, modified or removed by the payload's commits, sorted.
    pub paths: Vec<String>,
    /// The payload lists fewer commits than were pushed, or more paths than are kept.
    pub truncated: bool,
}

#[derive(Deserialize)]
struct RawPush {
    #[serde(rename = "ref")]
    git_ref: String,
    #[serde(default)]
    before: String,
    #[serde(default)]
    after: String,
    #[serde(default)]
    repository: Option<RawRepo>,
    #[serde(default)]
    project: Option<RawRepo>,
    #[serde(default)]
    commits: Vec<RawCommit>,
    /// Gitea's and GitLab's count of pushed commits (payloads list a bounded number).
    #[serde(default)]
    total_commits: Option<u64>,
    #[serde(default)]
    total_commits_count: Option<u64>,
    #[serde(default)]
    pusher: Option<RawUser>,
    #[serde(default)]
    sender: Option<RawUser>,
    #[serde(default)]
    user_username: Option<String>,
}

#[derive(Deserialize)]
struct RawRepo {
    #[serde(default)]
    clone_url: Option<String>,
    #[serde(default)]
    git_http_url: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawCommit {
    #[serde(default)]
    added: Vec<String>,
    #[serde(default)]
    modified: Vec<String>,
    #[serde(default)]
    removed: Vec<String>,
}

#[derive(Deserialize)]
struct RawUser {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    login: Option<String>,
    #[serde(default)]
    username: Option<String>,
}

impl RawUser {
    fn name(&self) -> Option<String> {
        self.login
            .clone()
            .or_else(|| self.username.clone())
            .or_else(|| self.name.clone())
            .filter(|n| !n.is_empty())
    }
}

fn is_sha(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Reads the push event of a push delivery's body (the three providers share its shape:
/// `ref`, `before`, `after`, `commits[].added/modified/removed`).
pub fn parse_push(body: &[u8]) -> Result<Push, WebhookError> {
    let raw: RawPush =
        serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
    if !raw.git_ref.starts_with("refs/") {
        return Err(WebhookError::Malformed(format!(
            "ref {:?} is not a full ref (refs/heads/..., refs/tags/...)",
            raw.git_ref
        )));
    }
    for (what, sha) in [("before", &raw.before), ("after", &raw.after)] {
        if !is_sha(sha) {
            return Err(WebhookError::Malformed(format!(
                "{what} {sha:?} is not a commit id"
            )));
        }
    }
    let repository = raw
        .repository
        .as_ref()
        .and_then(|r| r.clone_url.clone().or_else(|| r.git_http_url.clone()))
        .or_else(|| raw.project.as_ref().and_then(|p| p.git_http_url.clone()));
    let pusher = raw
        .pusher
        .as_ref()
        .and_then(RawUser::name)
        .or_else(|| raw.user_username.clone())
        .or_else(|| raw.sender.as_ref().and_then(RawUser::name))
        .unwrap_or_else(|| "unknown".to_owned());
    let mut paths = BTreeSet::new();
    for c in &raw.commits {
        for p in c.added.iter().chain(&c.modified).chain(&c.removed) {
            paths.insert(p.clone());
        }
    }
    let listed = raw.commits.len() as u64;
    let mut truncated = raw
        .total_commits
        .or(raw.total_commits_count)
        .is_some_and(|n| n > listed);
    let mut paths: Vec<String> = paths.into_iter().collect();
    if paths.len() > slipway_store::MAX_PUSH_PATHS {
        paths.truncate(slipway_store::MAX_PUSH_PATHS);
        truncated = true;
    }
    Ok(Push {
        git_ref: raw.git_ref,
        before: raw.before.to_ascii_lowercase(),
        after: raw.after.to_ascii_lowercase(),
        repository,
        pusher,
        paths,
        truncated,
    })
}

#[cfg(test)]
mod tests;
