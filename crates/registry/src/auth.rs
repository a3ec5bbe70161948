//! Credentials and tokens (the Docker token protocol).
//!
//! * A **registry password** is a signed credential, `slwp1.<payload>.<mac>`, carrying its
//!   rights (`pull`, or `pull,push` which also allows delete), the identity it was issued to
//!   and an expiry (12 hours by default), like ECR's `get-login-password`. It is checked by
//!   its MAC and, on every use, against its identity ([`Identities`]): a revoked identity's
//!   passwords and tokens stop working at once, and a scoped identity pushes only to its
//!   apps' repositories. The server's admin token is not a password (it would end up in
//!   `~/.docker/config.json`); it is refused with the command that gives one.
//! * A **token** is a short-lived JWT (HS256) issued by the token endpoint for the scopes a
//!   client asks for, intersected with what its password allows.
//!
//! Both are HMAC-SHA256 under keys derived from one 32-byte secret kept in
//! `DATA_DIR/registry/signing.key` (mode 0600); MACs are compared in constant time.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// How long a token from the token endpoint lives.
pub const TOKEN_TTL_SECS: u64 = 300;
/// How long a registry password lives (as ECR's).
pub const PASSWORD_TTL_SECS: u64 = 12 * 3600;

/// The server's identities, as the registry needs them (implemented by the server on top
/// of its application layer).
#[async_trait]
pub trait Identities: Send + Sync + 'static {
    /// Whether a secret is the server's admin token (only its hash is stored).
    async fn is_admin_token(&self, secret: &str) -> bool;
    /// A live identity by name (`None`: unknown or revoked).
    async fn identity(&self, name: &str) -> Option<slipway_core::access::Identity>;
    /// Records a mutating call (push, delete) in the audit log, before it is answered.
    async fn audit(&self, event: AuditEvent);
}

/// A mutating call of the distribution API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub identity: String,
    pub source: String,
    /// `push` or `delete`.
    pub operation: &'static str,
    /// `repository:reference`.
    pub target: String,
    pub status: u16,
}

/// What a credential may do, on every repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rights {
    /// Pull only.
    Pull,
    /// Pull, push and delete.
    Push,
}

impl Rights {
    pub fn allows(self, action: Action) -> bool {
        match self {
            Rights::Pull => action == Action::Pull,
            Rights::Push => true,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Rights::Pull => "pull",
            Rights::Push => "pull,push",
        }
    }
}

/// A repository action of the token spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pull,
    Push,
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }

    fn all() -> [Action; 3] {
        [Action::Pull, Action::Push, Action::Delete]
    }
}

/// One entry of a token's `access` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

/// The claims of a registry token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
    pub jti: String,
    pub access: Vec<Access>,
    /// The rights of the credential the token was issued for (so a request beyond them is
    /// DENIED rather than sent back for another token).
    pub rights: Rights,
    /// The identity of that credential (checked on every use).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idn: Option<String>,
}

impl Claims {
    /// Whether the token grants `action` on repository `repo`.
    pub fn grants(&self, repo: &str, action: Action) -> bool {
        self.access.iter().any(|a| {
            a.kind == "repository"
                && a.name == repo
                && a.actions.iter().any(|x| x == action.as_str() || x == "*")
        })
    }

    pub fn grants_catalog(&self) -> bool {
        self.access
            .iter()
            .any(|a| a.kind == "registry" && a.name == "catalog")
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct PasswordClaims {
    r: Rights,
    iat: u64,
    exp: u64,
    n: String,
    /// The identity it was issued to (`None`: the server's own short-lived pull passwords).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    i: Option<String>,
}

/// The signing keys.
#[derive(Clone)]
pub struct Keys {
    token: [u8; 32],
    password: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn random_bytes<const N: usize>() -> [u8; N] {
    use rand::RngCore;
    let mut b = [0u8; N];
    rand::rng().fill_bytes(&mut b);
    b
}

pub fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

fn derive(master: &[u8], label: &str) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(master).expect("HMAC takes any key length");
    mac.update(label.as_bytes());
    mac.finalize().into_bytes().into()
}

fn sign(key: &[u8; 32], msg: &[u8]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

/// Constant-time MAC check.
fn verify(key: &[u8; 32], msg: &[u8], sig: &[u8]) -> bool {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(msg);
    mac.verify_slice(sig).is_ok()
}

impl Keys {
    /// Reads the secret at `path`, creating it (mode 0600) on first use.
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        let master = match std::fs::read_to_string(path) {
            Ok(text) => hex::decode(text.trim()).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is not a hex key: {e}", path.display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                use std::io::Write;
                let key = random_bytes::<32>();
                let tmp = path.with_extension("tmp");
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&tmp)?;
                f.write_all(hex::encode(key).as_bytes())?;
                f.sync_all()?;
                std::fs::rename(&tmp, path)?;
                key.to_vec()
            }
            Err(e) => return Err(e),
        };
        if master.len() < 32 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} holds a key shorter than 32 bytes", path.display()),
            ));
        }
        Ok(Self::from_secret(&master))
    }

    pub fn from_secret(master: &[u8]) -> Self {
        Keys {
            token: derive(master, "slipway registry token v1"),
            password: derive(master, "slipway registry password v1"),
        }
    }

    /// A fresh registry password with `rights` for `identity`, valid for `ttl` seconds.
    /// Returns the password and its expiry (unix seconds).
    pub fn issue_password(
        &self,
        rights: Rights,
        ttl: u64,
        identity: Option<&str>,
    ) -> (String, u64) {
        let now = now_secs();
        let claims = PasswordClaims {
            r: rights,
            iat: now,
            exp: now + ttl,
            n: random_hex(8),
            i: identity.map(str::to_owned),
        };
        let payload =
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("claims serialise"));
        let sig = URL_SAFE_NO_PAD.encode(sign(&self.password, payload.as_bytes()));
        (format!("slwp1.{payload}.{sig}"), claims.exp)
    }

    /// The rights and identity of a registry password, if it is genuine and not expired
    /// (whether the identity is still alive is the caller's check).
    pub fn check_password(&self, password: &str) -> Option<(Rights, Option<String>)> {
        if password.len() > 1024 {
            return None;
        }
        let rest = password.trim().strip_prefix("slwp1.")?;
        let (payload, sig) = rest.split_once('.')?;
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        if !verify(&self.password, payload.as_bytes(), &sig) {
            return None;
        }
        let claims: PasswordClaims =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        (claims.exp > now_secs()).then_some((claims.r, claims.i))
    }

    /// A signed token (JWT, HS256).
    pub fn issue_token(&self, claims: &Claims) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialise"));
        let signed = format!("{header}.{payload}");
        let sig = URL_SAFE_NO_PAD.encode(sign(&self.token, signed.as_bytes()));
        format!("{signed}.{sig}")
    }

    /// The claims of a token, if its MAC, audience and validity window check out.
    pub fn check_token(&self, token: &str, service: &str) -> Option<Claims> {
        if token.len() > 64 * 1024 {
            return None;
        }
        let (signed, sig) = token.rsplit_once('.')?;
        let (_, payload) = signed.split_once('.')?;
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        if !verify(&self.token, signed.as_bytes(), &sig) {
            return None;
        }
        let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        let now = now_secs();
        (claims.aud == service && claims.exp > now && claims.nbf <= now + 60).then_some(claims)
    }
}

/// Decodes `Authorization: Basic` into (user, password).
pub fn parse_basic(value: &str) -> Option<(String, String)> {
    let b64 = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let raw = STANDARD.decode(b64.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_owned(), pass.to_owned()))
}

/// Grants for the requested scopes (`repository:NAME:ACTIONS`, `registry:catalog:*`): the
/// intersection of what was asked and what `rights` allow. Over-asking is never an error.
pub fn grant(scopes: &[String], rights: Rights) -> Vec<Access> {
    let mut out: Vec<Access> = Vec::new();
    for scope in scopes.iter().flat_map(|s| s.split(' ')) {
        let mut parts = scope.splitn(3, ':');
        let (Some(kind), Some(rest)) = (parts.next(), parts.next()) else {
            continue;
        };
        let (name, actions) = match parts.next() {
            Some(actions) => (rest, actions),
            None => continue,
        };
        match kind {
            "repository" => {
                if crate::names::validate_name(name).is_err() {
                    continue;
                }
                let mut granted: Vec<String> = Vec::new();
                for a in actions.split(',') {
                    let wanted: Vec<Action> = match a {
                        "*" => Action::all().to_vec(),
                        "pull" => vec![Action::Pull],
                        "push" => vec![Action::Push],
                        "delete" => vec![Action::Delete],
                        _ => vec![],
                    };
                    for w in wanted {
                        if rights.allows(w) && !granted.iter().any(|g| g == w.as_str()) {
                            granted.push(w.as_str().to_owned());
                        }
                    }
                }
                if let Some(existing) = out
                    .iter_mut()
                    .find(|a| a.kind == "repository" && a.name == name)
                {
                    for g in granted {
                        if !existing.actions.contains(&g) {
                            existing.actions.push(g);
                        }
                    }
                } else if !granted.is_empty() {
                    out.push(Access {
                        kind: "repository".into(),
                        name: name.to_owned(),
                        actions: granted,
                    });
                }
            }
            "registry" if rest == "catalog" && !out.iter().any(|a| a.kind == "registry") => {
                out.push(Access {
                    kind: "registry".into(),
                    name: "catalog".into(),
                    actions: vec!["*".into()],
                });
            }
            _ => {}
        }
    }
    out
}

/// `secs` since the epoch as RFC 3339 (UTC).
pub fn rfc3339(secs: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    humantime::format_rfc3339_seconds(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_round_trip_and_reject_tampering() {
        let k = Keys::from_secret(&[7u8; 32]);
        let (p, exp) = k.issue_password(Rights::Pull, 60, None);
        assert!(exp > now_secs());
        assert_eq!(k.check_password(&p), Some((Rights::Pull, None)));
        let (p2, _) = k.issue_password(Rights::Push, 60, Some("ci"));
        assert_eq!(
            k.check_password(&p2),
            Some((Rights::Push, Some("ci".into())))
        );
        // Swapping the payload of a pull password for a push one breaks the MAC.
        let (_, pay_push) = p2.split_once('.').unwrap();
        let pay_push = pay_push.split_once('.').unwrap().0;
        let sig_pull = p.rsplit_once('.').unwrap().1;
        assert_eq!(
            k.check_password(&format!("slwp1.{pay_push}.{sig_pull}")),
            None
        );
        let other = Keys::from_secret(&[8u8; 32]);
        assert_eq!(other.check_password(&p), None);
        let (expired, _) = k.issue_password(Rights::Push, 0, None);
        assert_eq!(k.check_password(&expired), None);
        assert_eq!(k.check_password("nonsense"), None);
    }

    #[test]
    fn tokens_check_mac_audience_and_expiry() {
        let k = Keys::from_secret(&[1u8; 32]);
        let now = now_secs();
        let mut c = Claims {
            iss: "slipway".into(),
            aud: "slipway".into(),
            sub: "u".into(),
            exp: now + 60,
            nbf: now,
            iat: now,
            jti: "j".into(),
            access: grant(&["repository:team/app:pull,push".into()], Rights::Pull),
            rights: Rights::Pull,
            idn: None,
        };
        let t = k.issue_token(&c);
        let back = k.check_token(&t, "slipway").unwrap();
        assert!(back.grants("team/app", Action::Pull));
        assert!(!back.grants("team/app", Action::Push));
        assert!(!back.grants("team/other", Action::Pull));
        assert!(k.check_token(&t, "elsewhere").is_none());
        let mut bad = t.clone();
        bad.pop();
        bad.push(if t.ends_with('A') { 'B' } else { 'A' });
        assert!(k.check_token(&bad, "slipway").is_none());
        c.exp = now - 1;
        assert!(k.check_token(&k.issue_token(&c), "slipway").is_none());
    }

    #[test]
    fn grants_intersect_scopes_with_rights() {
        let g = grant(
            &[
                "repository:a/b:pull,push".into(),
                "repository:c:* registry:catalog:*".into(),
                "repository:UPPER:pull".into(),
                "garbage".into(),
            ],
            Rights::Push,
        );
        assert_eq!(g.len(), 3);
        assert_eq!(g[0].actions, ["pull", "push"]);
        assert_eq!(g[1].actions, ["pull", "push", "delete"]);
        assert_eq!(g[2].kind, "registry");
        let g = grant(&["repository:a/b:push".into()], Rights::Pull);
        assert!(g.is_empty());
    }

    #[test]
    fn rfc3339_formats() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
