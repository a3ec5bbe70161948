//! Console sessions: log in with an API token, a session cookie, its CSRF token, logout,
//! expiry.
//!
//! A session keeps the hash of the token that opened it, never the token, and asks the
//! application layer for that token's identity on every request ([`App::authenticate_hash`],
//! cached by the store's generation): revoking the token ends every session it opened.
//! Sessions live in this server's memory (a restart or another server asks to log in again)
//! and end after [`SessionLimits::idle`] without a request or [`SessionLimits::absolute`] in
//! all. The login form is itself protected from cross-site posting by a one-time cookie it
//! must echo.
//!
//! [`App::authenticate_hash`]: slipway_app::App::authenticate_hash

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use slipway_core::access::{Identity, Role};
use subtle::ConstantTimeEq;

use crate::Console;
use crate::pages;

/// The session cookie.
pub(crate) const COOKIE: &str = "slipway_session";
/// The login form's one-time cookie.
const LOGIN_COOKIE: &str = "slipway_login";

/// How long sessions last, and how many there may be.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// Ends after this long without a request.
    pub idle: Duration,
    /// Ends this long after login, whatever happens.
    pub absolute: Duration,
    /// At most this many at once (the oldest ends first).
    pub max: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            idle: Duration::from_secs(60 * 60),
            absolute: Duration::from_secs(12 * 60 * 60),
            max: 10_000,
        }
    }
}

struct Entry {
    token_hash: String,
    csrf: String,
    created: Instant,
    seen: Instant,
}

/// This server's console sessions.
pub struct Sessions {
    limits: SessionLimits,
    map: Mutex<HashMap<String, Entry>>,
}

fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

impl Sessions {
    pub fn new(limits: SessionLimits) -> Self {
        Sessions {
            limits,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn expired(&self, e: &Entry, now: Instant) -> bool {
        now.duration_since(e.seen) >= self.limits.idle
            || now.duration_since(e.created) >= self.limits.absolute
    }

    /// Opens a session for a token's hash: its id (the cookie) and its CSRF token.
    fn open(&self, token_hash: String) -> String {
        let now = Instant::now();
        let mut map = self.lock();
        if map.len() >= self.limits.max {
            map.retain(|_, e| !self.expired(e, now));
            while map.len() >= self.limits.max {
                let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, e)| e.created)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                map.remove(&oldest);
            }
        }
        let id = random_hex();
        map.insert(
            id.clone(),
            Entry {
                token_hash,
                csrf: random_hex(),
                created: now,
                seen: now,
            },
        );
        id
    }

    /// The token hash and CSRF token of a live session (and it was seen now).
    fn touch(&self, id: &str) -> Option<(String, String)> {
        let now = Instant::now();
        let mut map = self.lock();
        let live = map.get(id).is_some_and(|e| !self.expired(e, now));
        if !live {
            map.remove(id);
            return None;
        }
        let e = map.get_mut(id)?;
        e.seen = now;
        Some((e.token_hash.clone(), e.csrf.clone()))
    }

    fn close(&self, id: &str) {
        self.lock().remove(id);
    }

    /// How many sessions are open (expired ones included until they are swept).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Who is looking: the identity of a live session.
#[derive(Debug, Clone)]
pub(crate) struct Viewer {
    pub identity: Identity,
    pub csrf: String,
    /// The console has the registry's pages (its menu links them).
    pub registry: bool,
    session: String,
}

/// A cookie's value from the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The viewer of a request, if it carries a live session whose token is still valid.
pub(crate) async fn viewer(c: &Console, headers: &HeaderMap) -> Option<Viewer> {
    let id = cookie(headers, COOKIE)?;
    let (hash, csrf) = c.sessions.touch(id)?;
    match c.app.authenticate_hash(&hash).await {
        Ok(Some(identity)) => Some(Viewer {
            identity,
            csrf,
            registry: c.registry.is_some(),
            session: id.to_owned(),
        }),
        Ok(None) => {
            // Revoked since: the session ends with it.
            c.sessions.close(id);
            None
        }
        Err(e) => {
            tracing::warn!(error = %e.message, "cannot check a console session's token");
            None
        }
    }
}

/// Whether a form's CSRF field matches the session's (in constant time).
pub(crate) fn csrf_ok(v: &Viewer, presented: Option<&str>) -> bool {
    presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(v.csrf.as_bytes())))
}

/// A form body's fields.
pub(crate) fn form(body: &Bytes) -> HashMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}

fn set_cookie(resp: &mut Response, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn cookie_line(c: &Console, name: &str, value: &str, path: &str, max_age: u64) -> String {
    let secure = if c.tls { "; Secure" } else { "" };
    format!("{name}={value}; Path={path}; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}

/// `GET /ui/login`
pub(crate) async fn login_page(State(c): State<Console>, headers: HeaderMap) -> Response {
    if viewer(&c, &headers).await.is_some() {
        return Redirect::to("/ui/").into_response();
    }
    login_form(&c, StatusCode::OK, None)
}

fn login_form(c: &Console, status: StatusCode, error: Option<&str>) -> Response {
    let nonce = random_hex();
    let body = html! {
        h1 { "Log in to Slipway" }
        @if let Some(e) = error { p.error role="alert" { (e) } }
        form.login method="post" action="/ui/login" {
            input type="hidden" name="login_csrf" value=(nonce);
            label for="token" { "API token" }
            input #token type="password" name="token" autocomplete="current-password" required autofocus;
            p.hint { "The admin token is in the server's data directory (" code { "admin.token" } "); " code { "slipway token create" } " makes one per person. A reader's token sees everything and changes nothing." }
            button type="submit" { "Log in" }
        }
    };
    let mut resp = (status, pages::layout("Log in", None, body)).into_response();
    set_cookie(
        &mut resp,
        cookie_line(c, LOGIN_COOKIE, &nonce, "/ui/login", 600),
    );
    resp
}

/// `POST /ui/login`: `token` and the form's `login_csrf`.
pub(crate) async fn login(
    State(c): State<Console>,
    addr: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = form(&body);
    let nonce_ok = match (cookie(&headers, LOGIN_COOKIE), f.get("login_csrf")) {
        (Some(a), Some(b)) => bool::from(a.as_bytes().ct_eq(b.as_bytes())),
        _ => false,
    };
    if !nonce_ok {
        return pages::error_page(
            None,
            StatusCode::FORBIDDEN,
            "This login form expired or was not sent by the console: load the login page again.",
        );
    }
    let source = addr.map_or_else(|| "unknown".to_owned(), |a| a.0.0.to_string());
    // Guessing tokens is rate-limited per address, with the API's limit.
    let ip = source
        .rsplit_once(':')
        .map_or(source.as_str(), |(ip, _)| ip);
    if let Err(wait) = c.limiter.take(&format!("console-login:{ip}")) {
        return slipway_api::too_many(wait);
    }
    let token = f.get("token").map(|t| t.trim()).unwrap_or_default();
    let identity = match c.app.authenticate_token(token).await {
        Ok(Some(i)) => i,
        Ok(None) => {
            let nobody = Identity {
                name: "(unknown token)".into(),
                role: Role::Reader,
                apps: Vec::new(),
                envs: Vec::new(),
            };
            slipway_api::record(
                &c.app,
                &nobody,
                &source,
                "console",
                "POST /ui/login",
                "/ui/login",
                StatusCode::UNAUTHORIZED,
            )
            .await;
            return login_form(
                &c,
                StatusCode::UNAUTHORIZED,
                Some("That token is not valid (or it was revoked)."),
            );
        }
        Err(e) => return pages::error_page(None, StatusCode::SERVICE_UNAVAILABLE, &e.message),
    };
    slipway_api::record(
        &c.app,
        &identity,
        &source,
        "console",
        "POST /ui/login",
        "/ui/login",
        StatusCode::SEE_OTHER,
    )
    .await;
    let id = c.sessions.open(slipway_app::hash_token(token));
    let mut resp = Redirect::to("/ui/").into_response();
    let max_age = c.sessions.limits.absolute.as_secs();
    set_cookie(&mut resp, cookie_line(&c, COOKIE, &id, "/ui", max_age));
    set_cookie(&mut resp, cookie_line(&c, LOGIN_COOKIE, "", "/ui/login", 0));
    resp
}

/// `POST /ui/logout` (with the session's CSRF token).
pub(crate) async fn logout(State(c): State<Console>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(v) = viewer(&c, &headers).await else {
        return Redirect::to("/ui/login").into_response();
    };
    if !csrf_ok(&v, form(&body).get("csrf").map(String::as_str)) {
        return pages::error_page(Some(&v), StatusCode::FORBIDDEN, pages::CSRF_REFUSED);
    }
    c.sessions.close(&v.session);
    let mut resp = Redirect::to("/ui/login").into_response();
    set_cookie(&mut resp, cookie_line(&c, COOKIE, "", "/ui", 0));
    resp
}

/// A page for a viewer, or the login page's address.
pub(crate) async fn require(c: &Console, headers: &HeaderMap) -> Result<Viewer, Response> {
    viewer(c, headers)
        .await
        .ok_or_else(|| Redirect::to("/ui/login").into_response())
}

/// The viewer of a form POST and its fields, once its session is live and its CSRF token
/// right; else the 403 page (a POST is never redirected: nothing may happen).
pub(crate) async fn posted(
    c: &Console,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(Viewer, HashMap<String, String>), Response> {
    let Some(v) = viewer(c, headers).await else {
        return Err(pages::error_page(
            None,
            StatusCode::FORBIDDEN,
            "Log in first: this action needs a console session.",
        ));
    };
    let f = form(body);
    if !csrf_ok(&v, f.get("csrf").map(String::as_str)) {
        return Err(pages::error_page(
            Some(&v),
            StatusCode::FORBIDDEN,
            pages::CSRF_REFUSED,
        ));
    }
    Ok((v, f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_end_when_idle_or_old_and_the_oldest_goes_first_when_full() {
        let idle = Sessions::new(SessionLimits {
            idle: Duration::ZERO,
            ..SessionLimits::default()
        });
        let id = idle.open("hash".into());
        assert_eq!(idle.touch(&id), None, "idle for longer than zero");
        assert!(idle.is_empty(), "and forgotten");

        let old = Sessions::new(SessionLimits {
            absolute: Duration::ZERO,
            ..SessionLimits::default()
        });
        let id = old.open("hash".into());
        assert_eq!(old.touch(&id), None, "older than zero");

        let full = Sessions::new(SessionLimits {
            max: 2,
            ..SessionLimits::default()
        });
        let first = full.open("a".into());
        let second = full.open("b".into());
        let third = full.open("c".into());
        assert_eq!(full.len(), 2);
        assert_eq!(full.touch(&first), None, "the oldest made room");
        assert_eq!(full.touch(&second).map(|(h, _)| h), Some("b".to_owned()));
        let (hash, csrf) = full.touch(&third).unwrap();
        assert_eq!(hash, "c");
        assert_eq!(csrf.len(), 64, "32 random bytes");
        assert_ne!(csrf, third, "the CSRF token is not the session id");
        full.close(&third);
        assert_eq!(full.touch(&third), None);
    }

    #[test]
    fn cookies_are_read_from_every_cookie_header() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; slipway_session=abc"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&h, COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "slipway"), None);
    }
}
