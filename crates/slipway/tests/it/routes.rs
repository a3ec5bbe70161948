//! Routes between apps (issue #23 item 6): a conflict names the holder and the asker the
//! right way round, a route under another app's shorter route is refused unless
//! `http.allow_shadowing`, and a deleted service's routes are gone at once.

use std::time::{Duration, Instant};

use crate::support::*;

/// One web service of the example app (`version` v1 or v2 tells them apart in answers).
fn web(app: &str, version: &str, path: &str, extra: &str) -> String {
    format!(
        "app: {app}\nservices:\n  web:\n    type: Load Balanced Web Service\n    image:\n      location: slipway-hello:{version}\n      port: 8080\n    http:\n      path: {path}\n      healthcheck: /healthz\n{extra}    count: 1\n    memory: 32\n"
    )
}

#[test]
fn routes_between_apps() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let a = app_name("ra");
    let b = app_name("rb");
    let dir = s.dir.path();
    std::fs::write(dir.join("a.yml"), web(&a, "v1", "/", "")).unwrap();
    s.cli(&["deploy", "-f", "a.yml"]).ok();

    // The same route: the error names the holder (A) and the asker (B) the right way round.
    std::fs::write(dir.join("b.yml"), web(&b, "v2", "/", "")).unwrap();
    let out = s.cli(&["deploy", "-f", "b.yml"]);
    assert_ne!(out.code, 0, "{out:?}");
    let msg = out.stderr.clone();
    assert!(
        msg.contains(&format!("already used by service {a}/default/web"))
            && msg.contains(&format!("http.alias for {b}/default/web")),
        "{out:?}"
    );

    // B's /users under A's /: refused, naming both, and nothing of B is created.
    std::fs::write(dir.join("b.yml"), web(&b, "v2", "/users", "")).unwrap();
    let out = s.cli(&["deploy", "-f", "b.yml"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("of service {b}/default/web would take requests"))
            && out
                .stderr
                .contains(&format!("route / of service {a}/default/web"))
            && out.stderr.contains("allow_shadowing"),
        "{out:?}"
    );
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert_ne!(s.cli(&["status", "web", "--app", &b]).code, 0);
    let ingress = s.ingress();
    let (code, body) = probe_host(&ingress, "x.test", "/users").unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("\"v1\""), "A still answers /users: {body}");

    // With allow_shadowing, B takes /users.
    std::fs::write(
        dir.join("b.yml"),
        web(&b, "v2", "/users", "      allow_shadowing: true\n"),
    )
    .unwrap();
    s.cli(&["deploy", "-f", "b.yml"]).ok();
    let (code, body) = probe_host(&ingress, "x.test", "/users").unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("\"v2\""), "B answers /users now: {body}");

    // Deleting B: its route is gone at once (A's / answers /users again, never a 503).
    let out = s.cli(&["delete", "web", "--app", &b, "--no-wait"]).ok();
    let asked = Instant::now();
    let mut seen = Vec::new();
    let gone = loop {
        let r = probe_host(&ingress, "x.test", "/users");
        let body = r.as_ref().map(|(_, b)| b.clone()).unwrap_or_default();
        seen.push(r.as_ref().map(|(c, _)| *c));
        if r.as_ref().is_some_and(|(c, _)| *c == 200) && body.contains("\"v1\"") {
            break true;
        }
        if asked.elapsed() > Duration::from_secs(1) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        gone,
        "B's route still there 1 s after delete ({out:?}): {seen:?}"
    );
    assert!(!seen.contains(&Some(503)), "{seen:?}");
}

/// A deleted service's own route answers 404 within a second, not `503 no healthy target`
/// while its tasks drain (here: a slow upload keeps its task draining for 10 s).
#[test]
fn deleted_service_route_is_404_at_once() {
    use std::io::Write;
    if !docker() {
        return;
    }
    let s = Server::start();
    let app = app_name("rdel");
    s.manifest(&web(
        &app,
        "v1",
        "/gone",
        "      deregistration_delay: 10s\n",
    ));
    s.cli(&["deploy"]).ok();
    let ingress = s.ingress();
    assert_eq!(probe_host(&ingress, "x.test", "/gone").unwrap().0, 200);
    // A request in flight: its body (larger than the ingress buffers) is only begun.
    let mut upload = std::net::TcpStream::connect(&ingress).unwrap();
    upload
        .write_all(b"POST /gone HTTP/1.1\r\nHost: x.test\r\nContent-Length: 4000000\r\n\r\n")
        .unwrap();
    upload.write_all(&[b'x'; 64 * 1024]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    s.cli(&["delete", "web", "--no-wait"]).ok();
    let asked = Instant::now();
    let mut seen = Vec::new();
    loop {
        let code = probe_host(&ingress, "x.test", "/gone").map(|(c, _)| c);
        seen.push(code);
        if code == Some(404) {
            break;
        }
        assert!(
            asked.elapsed() <= Duration::from_secs(1),
            "no 404 within 1 s of delete: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!seen.contains(&Some(503)), "{seen:?}");
    drop(upload);
}
