//! Registry credentials the way the docker CLI keeps them (`$DOCKER_CONFIG/config.json` or
//! `~/.docker/config.json`: `auths` with base64 `user:password`, `credsStore`, `credHelpers`
//! run as `docker-credential-NAME get`), and `WWW-Authenticate` challenges.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use serde::Deserialize;

/// A username and a password (or identity token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// Where they came from, for messages (`~/.docker/config.json`, `docker-credential-ecr-login`).
    pub source: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("source", &self.source)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{path}: {reason}")]
    Config { path: String, reason: String },
    #[error("credential helper docker-credential-{helper} failed for {server}: {reason}")]
    Helper {
        helper: String,
        server: String,
        reason: String,
    },
}

#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

#[derive(Debug, Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// The docker client configuration.
#[derive(Debug, Default)]
pub struct DockerConfig {
    path: PathBuf,
    file: ConfigFile,
}

impl DockerConfig {
    /// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`; empty when absent.
    pub fn load_default() -> Result<DockerConfig, AuthError> {
        let dir = std::env::var_os("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
            .unwrap_or_else(|| PathBuf::from(".docker"));
        Self::load(&dir.join("config.json"))
    }

    pub fn load(path: &Path) -> Result<DockerConfig, AuthError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(DockerConfig {
                    path: path.to_owned(),
                    file: ConfigFile::default(),
                });
            }
            Err(e) => {
                return Err(AuthError::Config {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                });
            }
        };
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<DockerConfig, AuthError> {
        let file = serde_json::from_str(text).map_err(|e| AuthError::Config {
            path: path.display().to_string(),
            reason: format!("not valid docker config JSON: {e}"),
        })?;
        Ok(DockerConfig {
            path: path.to_owned(),
            file,
        })
    }

    /// Credentials for a registry (`auth_key` as in [`crate::ImageRef::auth_key`]): a
    /// `credHelpers` entry first, then inline `auths`, then `credsStore`.
    pub fn credentials(&self, auth_key: &str) -> Result<Option<Credentials>, AuthError> {
        if let Some(helper) = self.file.cred_helpers.get(auth_key) {
            return run_helper(helper, auth_key);
        }
        if let Some(c) = self.inline(auth_key)? {
            return Ok(Some(c));
        }
        if let Some(store) = &self.file.creds_store {
            return run_helper(store, auth_key);
        }
        Ok(None)
    }

    fn inline(&self, auth_key: &str) -> Result<Option<Credentials>, AuthError> {
        let entry = self.file.auths.get(auth_key).or_else(|| {
            // Entries are sometimes written with a scheme (`https://host`) or a path.
            self.file
                .auths
                .iter()
                .find(|(k, _)| normalize_key(k) == auth_key)
                .map(|(_, v)| v)
        });
        let Some(e) = entry else { return Ok(None) };
        let source = self.path.display().to_string();
        if let Some(a) = e.auth.as_deref().filter(|a| !a.is_empty()) {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(a.trim())
                .map_err(|err| AuthError::Config {
                    path: source.clone(),
                    reason: format!("auths.{auth_key}.auth is not base64: {err}"),
                })?;
            let raw = String::from_utf8_lossy(&raw).into_owned();
            let Some((u, p)) = raw.split_once(':') else {
                return Err(AuthError::Config {
                    path: source,
                    reason: format!("auths.{auth_key}.auth is not base64 of user:password"),
                });
            };
            return Ok(Some(Credentials {
                username: u.to_owned(),
                password: p.to_owned(),
                source,
            }));
        }
        if let Some(t) = e.identitytoken.as_deref().filter(|t| !t.is_empty()) {
            return Ok(Some(Credentials {
                username: "<token>".into(),
                password: t.to_owned(),
                source,
            }));
        }
        if let (Some(u), Some(p)) = (&e.username, &e.password) {
            return Ok(Some(Credentials {
                username: u.clone(),
                password: p.clone(),
                source,
            }));
        }
        Ok(None)
    }
}

fn normalize_key(k: &str) -> &str {
    let k = k
        .strip_prefix("https://")
        .or_else(|| k.strip_prefix("http://"))
        .unwrap_or(k);
    if k.starts_with("index.docker.io") {
        return "https://index.docker.io/v1/";
    }
    k.split('/').next().unwrap_or(k)
}

fn run_helper(helper: &str, server: &str) -> Result<Option<Credentials>, AuthError> {
    let prog = format!("docker-credential-{helper}");
    let err = |reason: String| AuthError::Helper {
        helper: helper.to_owned(),
        server: server.to_owned(),
        reason,
    };
    let mut child = Command::new(&prog)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| err(format!("cannot run {prog} ({e}); is it on PATH?")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(server.as_bytes())
            .map_err(|e| err(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| err(e.to_string()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let msg = format!(
            "{}{}",
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        // The protocol's answer for "no credentials for this server".
        if msg.contains("credentials not found") {
            return Ok(None);
        }
        return Err(err(format!("exit status {}: {msg}", out.status)));
    }
    let a: HelperAnswer = serde_json::from_str(stdout.trim())
        .map_err(|e| err(format!("answer is not the helper JSON ({e})")))?;
    Ok(Some(Credentials {
        username: a.username,
        password: a.secret,
        source: prog,
    }))
}

/// A parsed `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses `Bearer realm="...",service="...",scope="..."` or `Basic realm="..."`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest);
    Some(Challenge::Bearer {
        realm: params.get("realm")?.clone(),
        service: params.get("service").cloned(),
        scope: params.get("scope").cloned(),
    })
}

fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            val.push(n);
                        }
                    }
                    '"' => break,
                    c => val.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek() {
                if *c == ',' {
                    break;
                }
                val.push(*c);
                chars.next();
            }
        }
        out.insert(key.trim().to_ascii_lowercase(), val.trim().to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="http://127.0.0.1:1/v2/token",service="slipway",scope="repository:a/b:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:1/v2/token".into(),
                service: Some("slipway".into()),
                scope: Some("repository:a/b:pull".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="x""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge("bearer realm=https://a/t, service=reg"),
            Some(Challenge::Bearer {
                realm: "https://a/t".into(),
                service: Some("reg".into()),
                scope: None
            })
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge(r#"Bearer service="x""#), None);
    }

    #[test]
    fn inline_auths_decode() {
        let b64 = base64::engine::general_purpose::STANDARD.encode("slipway:s3cret");
        let text = format!(
            r#"{{"auths":{{"127.0.0.1:5000":{{"auth":"{b64}"}},"https://index.docker.io/v1/":{{"auth":"{b64}"}},"https://reg.example.com":{{"username":"u","password":"p"}}}}}}"#
        );
        let c = DockerConfig::parse(Path::new("/x/config.json"), &text).unwrap();
        let got = c.credentials("127.0.0.1:5000").unwrap().unwrap();
        assert_eq!(
            (got.username.as_str(), got.password.as_str()),
            ("slipway", "s3cret")
        );
        assert!(
            c.credentials("https://index.docker.io/v1/")
                .unwrap()
                .is_some()
        );
        let e = c.credentials("reg.example.com").unwrap().unwrap();
        assert_eq!(e.username, "u");
        assert!(c.credentials("other:1").unwrap().is_none());
        assert!(!format!("{got:?}").contains("s3cret"), "Debug redacts");
    }

    #[test]
    fn bad_auth_is_a_clear_error() {
        let c =
            DockerConfig::parse(Path::new("c.json"), r#"{"auths":{"h":{"auth":"!!"}}}"#).unwrap();
        let e = c.credentials("h").unwrap_err().to_string();
        assert!(e.contains("c.json") && e.contains("base64"), "{e}");
        assert!(DockerConfig::parse(Path::new("c.json"), "{").is_err());
    }

    #[test]
    fn missing_helper_is_reported() {
        let c = DockerConfig::parse(
            Path::new("c.json"),
            r#"{"credHelpers":{"h":"does-not-exist-slipway"}}"#,
        )
        .unwrap();
        let e = c.credentials("h").unwrap_err().to_string();
        assert!(
            e.contains("docker-credential-does-not-exist-slipway"),
            "{e}"
        );
    }
}
