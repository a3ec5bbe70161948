//! The health prober cannot be pointed elsewhere: the server's `HTTP_PROXY` does not apply to
//! probes, and a redirect is an answer (judged by the success codes), never followed.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::support::*;

/// A listener on loopback that counts the connections it gets (and answers none).
fn trap() -> (String, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let hits = Arc::new(AtomicUsize::new(0));
    let count = hits.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            if c.is_ok() {
                count.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (addr, hits)
}

#[test]
fn probes_ignore_the_servers_proxy_and_do_not_follow_redirects() {
    if !docker() {
        return;
    }
    let (proxy, proxied) = trap();
    let proxy_url = format!("http://{proxy}/");
    let s = Server::start_with_env(
        &[],
        &[
            ("HTTP_PROXY", &proxy_url),
            ("http_proxy", &proxy_url),
            ("ALL_PROXY", &proxy_url),
        ],
    );
    let app = app_name("probe");
    // Probed over HTTP with the proxy set: the probe goes to the task, the deploy succeeds.
    s.manifest(&web_manifest(&app, "slipway-hello:v1", 1, ""));
    let out = s.cli(&["deploy"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        proxied.load(Ordering::SeqCst),
        0,
        "a probe went to the proxy"
    );

    // /healthz redirects elsewhere: 302 is not a success code, and nothing is fetched there.
    let (elsewhere, followed) = trap();
    s.manifest(&web_manifest(
        &app,
        "slipway-hello:v2",
        1,
        &format!(
            "    variables:\n      HELLO_HEALTH_REDIRECT: http://{elsewhere}/healthz\n    deployment: {{failure_threshold: 1}}\n"
        ),
    ));
    let out = s.cli(&["deploy"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("ROLLED_BACK"), "{}", out.stdout);
    assert!(out.stdout.contains("answered 302"), "{}", out.stdout);
    assert_eq!(
        followed.load(Ordering::SeqCst),
        0,
        "the probe followed the redirect"
    );
    assert_eq!(
        proxied.load(Ordering::SeqCst),
        0,
        "a probe went to the proxy"
    );
}
