//! Supervised loops and `/readyz`: with the test-only fault hook on
//! (`SLIPWAY_FAULT_INJECT=1`), each of the server's long-running loops is made to panic;
//! `/readyz` shows it restarted and ready again, and a deploy started right after the
//! reconcile loop panicked completes once the loop is back. Without the variable the hook
//! does not exist.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

/// Every loop a leading server with an ingress and a local engine runs.
const LOOPS: [&str; 13] = [
    "reconcile",
    "engine-events",
    "notices",
    "host-events",
    "hosts",
    "jobs",
    "prober",
    "leadership",
    "heartbeat",
    "ingress",
    "registry-uploads",
    "registry-lifecycle",
    "registry-gc",
];

/// `GET /readyz` (no token): status and body.
pub(crate) fn readyz(s: &Server) -> (u16, Value) {
    let out = Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}", &format!("{}/readyz", s.url)])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').expect("a status line");
    (
        code.trim().parse().unwrap(),
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")),
    )
}

fn loop_in(body: &Value, name: &str) -> Value {
    body["loops"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no loop {name} in {body}"))
}

fn restarts(s: &Server, name: &str) -> u64 {
    loop_in(&readyz(s).1, name)["restarts"].as_u64().unwrap()
}

fn inject(s: &Server, name: &str) {
    let (status, body) = api_call(s, "POST", "/debug/panic", Some(&json!({"loop": name})), &[]);
    assert_eq!(status, 202, "{name}: {body}");
}

/// Waits until `/readyz` is 200 with `name` restarted `count` times after the injected
/// panic. The restart count only goes up when the supervisor starts the loop again after
/// it failed, and the loop must be up again: without the restart neither can be seen.
fn wait_restarted(s: &Server, name: &str, count: u64) {
    wait_for(
        Duration::from_secs(10),
        &format!("{name} restarted"),
        || {
            let (code, body) = readyz(s);
            let l = loop_in(&body, name);
            let panicked = l["last_panic"]
                .as_str()
                .is_some_and(|p| p.starts_with(&format!("fault injected into the {name} loop")));
            (code == 200 && l["up"] == true && l["restarts"] == count && panicked).then_some(())
        },
    );
}

#[test]
fn panicked_loops_are_restarted_and_readyz_tells() {
    if !docker() {
        return;
    }
    let s = Server::start_with_env(&[], &[("SLIPWAY_FAULT_INJECT", "1")]);
    s.manifest(&web_manifest(&app_name("sup"), "slipway-hello:v1", 1, ""));
    let out = s.cli(&["deploy"]).ok();
    assert!(out.stdout.contains("SUCCEEDED"), "{out:?}");
    let body = wait_for(Duration::from_secs(10), "ready", || {
        let (code, body) = readyz(&s);
        (code == 200).then_some(body)
    });
    assert_eq!(body["ready"], true, "{body}");
    assert_eq!(body["leading"], true, "{body}");
    assert_eq!(body["database"]["ok"], true, "{body}");
    assert_eq!(body["engine"]["ok"], true, "{body}");
    for name in LOOPS {
        let l = loop_in(&body, name);
        assert_eq!(
            (l["up"].clone(), l["restarts"].clone()),
            (json!(true), json!(0)),
            "{l}"
        );
    }

    let (status, _) = api_call(
        &s,
        "POST",
        "/debug/panic",
        Some(&json!({"loop": "nope"})),
        &[],
    );
    assert_eq!(status, 404);

    for name in LOOPS.iter().filter(|n| **n != "reconcile") {
        let before = restarts(&s, name);
        inject(&s, name);
        wait_restarted(&s, name, before + 1);
    }

    // The reconcile loop: a deploy started while it is down or backing off is carried out
    // by its next incarnation (no other loop rolls out).
    inject(&s, "reconcile");
    let out = s.cli(&["deploy", "--image", "web=slipway-hello:v2"]).ok();
    assert!(out.stdout.contains("SUCCEEDED"), "{out:?}");
    wait_restarted(&s, "reconcile", 1);
    let status = s.cli(&["--json", "status", "web"]).ok().json();
    assert_eq!(status["summary"]["last_deployment"]["state"], "SUCCEEDED");
    assert!(s.log().contains("loop panicked; restarting it"));
}

#[test]
fn the_fault_hook_is_off_by_default_and_readyz_lists_the_loops() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let (status, body) = api_call(
        &s,
        "POST",
        "/debug/panic",
        Some(&json!({"loop": "reconcile"})),
        &[],
    );
    assert_eq!(status, 404, "{body}");
    let body = wait_for(Duration::from_secs(10), "ready", || {
        let (code, body) = readyz(&s);
        (code == 200).then_some(body)
    });
    assert_eq!(body["not_ready"], json!([]), "{body}");
    for name in LOOPS {
        assert_eq!(loop_in(&body, name)["restarts"], 0, "{body}");
    }
    // Alive, whatever readiness says.
    let out = Command::new("curl")
        .args(["-fsS", &format!("{}/healthz", s.url)])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
}
