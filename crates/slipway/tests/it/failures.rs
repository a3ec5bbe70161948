//! Why a task failed (issue #23 items 1-3): a crashed task keeps its last output and exit
//! details after its container is removed (deploy summary, `ps --all`, `logs --task` and
//! `--previous`); a failed HTTP check names the path, the status and the body's first
//! bytes; a task killed after its stop timeout is reported with the hint, and `init: true`
//! lets it stop on SIGTERM.
//!
//! The apps are busybox (Debian's `busybox-static`, statically linked) in an image built
//! FROM scratch here: nothing is pulled.

use std::process::Command;
use std::sync::Once;

use serde_json::Value;

use crate::support::*;

const BUSYBOX_IMAGE: &str = "slipway-busybox:test";

/// Builds [`BUSYBOX_IMAGE`] once: busybox as `/bin/sh`, and `/www` with an index page and a
/// `/healthz` only under `/www/ok` (so `httpd -h /www` answers 404 there).
fn busybox_image() -> &'static str {
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        let bin = std::path::Path::new("/bin/busybox");
        assert!(
            bin.exists(),
            "these tests need a static busybox at /bin/busybox: apt-get install busybox-static (scripts/test.sh does)"
        );
        let ctx = tempfile::tempdir().unwrap();
        std::fs::copy(bin, ctx.path().join("busybox")).unwrap();
        std::fs::create_dir_all(ctx.path().join("www/ok")).unwrap();
        std::fs::write(ctx.path().join("www/index.html"), "hello\n").unwrap();
        std::fs::write(ctx.path().join("www/ok/healthz"), "ok\n").unwrap();
        std::fs::write(
            ctx.path().join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\nCOPY busybox /bin/sh\nCOPY www /www\nENV PATH=/bin\n",
        )
        .unwrap();
        let out = Command::new("docker")
            .args(["build", "--quiet", "--tag", BUSYBOX_IMAGE])
            .arg(ctx.path())
            .env("DOCKER_BUILDKIT", "0")
            .output()
            .unwrap();
        assert!(out.status.success(), "docker build: {out:?}");
    });
    BUSYBOX_IMAGE
}

/// A web service of the busybox image running `command` (a YAML list).
fn busybox_web(app: &str, command: &str, extra: &str) -> String {
    format!(
        "app: {app}\nservices:\n  web:\n    type: Load Balanced Web Service\n    image:\n      location: {}\n      port: 8080\n    command: {command}\n    http:\n      path: /\n      healthcheck: {{path: /healthz, interval: 1s, unhealthy_threshold: 2}}\n      deregistration_delay: 1s\n    count: 1\n    memory: 32\n{extra}",
        busybox_image()
    )
}

/// `slipway ps web --all --json`.
fn tasks(s: &Server) -> Vec<Value> {
    s.cli(&["--json", "ps", "web", "--all"])
        .ok()
        .json()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn container_exists(id: &str) -> bool {
    Command::new("docker")
        .args(["container", "inspect", id])
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn a_crashed_task_keeps_its_last_output_and_exit_code_after_its_container_is_gone() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let app = app_name("crash");
    let healthy_www = r#"["busybox", "httpd", "-f", "-p", "8080", "-h", "/www/ok"]"#;
    s.manifest(&busybox_web(&app, healthy_www, ""));
    s.cli(&["deploy"]).ok();

    // A version that cannot start: it says why on stderr and exits 3 (one stream, so the
    // engine keeps the lines in order).
    s.manifest(&busybox_web(
        &app,
        r#"["sh", "-c", "echo starting up >&2; echo 'fatal: missing config' >&2; exit 3"]"#,
        "    deployment:\n      failure_threshold: 1\n",
    ));
    let out = s.cli(&["deploy", "--timeout", "120s"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("ROLLED_BACK"), "{out:?}");
    assert!(
        out.stdout.contains("exit code 3") && out.stdout.contains("fatal: missing config"),
        "the deploy's failure summary shows the exit code and the last output: {out:?}"
    );

    let all = tasks(&s);
    let crashed: Vec<&Value> = all.iter().filter(|t| t["exit"]["exit_code"] == 3).collect();
    assert!(!crashed.is_empty(), "a task recorded exit code 3: {all:?}");
    let t = crashed[0];
    let id = t["id"].as_str().unwrap();
    let lines: Vec<&str> = t["exit"]["last_output"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        lines.contains(&"starting up") && lines.contains(&"fatal: missing config"),
        "{t}"
    );
    let cid = t["container_id"].as_str().unwrap();
    wait_for(
        std::time::Duration::from_secs(30),
        "the crashed container removed",
        || (!container_exists(cid)).then_some(()),
    );

    // After the container is gone: ps --all, logs --task and logs --previous.
    let ps = s.cli(&["ps", "web", "--all"]).ok();
    assert!(
        ps.stdout.contains("fatal: missing config") && ps.stdout.contains("exit code 3"),
        "{ps:?}"
    );
    let logs = s.cli(&["logs", "web", "--task", id]).ok();
    assert!(
        logs.stdout
            .contains(&format!("{id} | fatal: missing config")),
        "{logs:?}"
    );
    assert!(logs.stdout.contains("starting up"), "{logs:?}");
    let prev = s.cli(&["logs", "web", "--previous"]).ok();
    assert!(
        prev.stdout.contains("fatal: missing config"),
        "the newest stopped task is a crashed one: {prev:?}"
    );
    // A task that is not the service's: one line naming it, exit non-zero.
    let bad = s.cli(&["logs", "web", "--task", "nosuchtask"]);
    assert_ne!(bad.code, 0, "{bad:?}");
    assert!(bad.stderr.contains("nosuchtask"), "{bad:?}");
}

#[test]
fn a_failed_http_check_names_the_path_the_status_and_the_body() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let app = app_name("probe");
    s.manifest(&busybox_web(
        &app,
        r#"["busybox", "httpd", "-f", "-p", "8080", "-h", "/www/ok"]"#,
        "",
    ));
    s.cli(&["deploy"]).ok();
    // Serves /www, where /healthz does not exist: 404 with busybox's page.
    s.manifest(&busybox_web(
        &app,
        r#"["busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]"#,
        "    stop_timeout: 1s\n    deployment:\n      failure_threshold: 1\n",
    ));
    let out = s.cli(&["deploy", "--timeout", "120s"]);
    assert_ne!(out.code, 0, "{out:?}");
    let want = "GET /healthz on port 8080 answered 404";
    assert!(out.stdout.contains(want), "{out:?}");
    assert!(
        out.stdout.contains("404 Not Found"),
        "the body's first bytes: {out:?}"
    );
    assert!(out.stdout.contains("in a row"), "{out:?}");

    let events = s.cli(&["--json", "events", "web"]).ok().json();
    assert!(
        events.as_array().unwrap().iter().any(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.contains("failed its health checks") && m.contains(want))),
        "{events}"
    );
    assert!(
        tasks(&s).iter().any(|t| t["stopped_reason"]
            .as_str()
            .is_some_and(|r| r.contains(want) && r.contains("404 Not Found"))),
        "ps --json has it too"
    );
}

#[test]
fn a_failed_container_check_names_its_command_and_output() {
    if !docker() {
        return;
    }
    let s = Server::start();
    s.manifest(&format!(
        "app: {}\nservices:\n  web:\n    type: Backend Service\n    image:\n      location: {}\n      port: 8080\n    command: [\"busybox\", \"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www/ok\"]\n    healthcheck:\n      command: [\"sh\", \"-c\", \"echo db unreachable; exit 1\"]\n      interval: 1s\n      retries: 2\n    stop_timeout: 1s\n    deployment:\n      failure_threshold: 1\n",
        app_name("cmdcheck"),
        busybox_image()
    ));
    let out = s.cli(&["deploy", "--timeout", "120s"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains(r#"container check ["CMD", "sh", "-c", "echo db unreachable; exit 1"] failed 2 times in a row: "db unreachable""#),
        "{out:?}"
    );
}

/// Deploys a web service of busybox's httpd (PID 1, no SIGTERM handler), then a new version,
/// and returns the deploy's output and the replaced task's record.
fn replace_httpd(s: &Server, extra: &str) -> (Out, Value) {
    let app = app_name("term");
    let www = r#"["busybox", "httpd", "-f", "-p", "8080", "-h", "/www/ok"]"#;
    let extra = format!("    stop_timeout: 2s\n{extra}");
    s.manifest(&busybox_web(&app, www, &extra));
    s.cli(&["deploy"]).ok();
    let first = tasks(s)[0]["id"].as_str().unwrap().to_owned();
    s.manifest(&busybox_web(
        &app,
        www,
        &format!("{extra}    variables: {{ V: \"2\" }}\n"),
    ));
    let out = s.cli(&["deploy", "--timeout", "120s"]).ok();
    let old = wait_for(
        std::time::Duration::from_secs(30),
        "the old task stopped",
        || {
            tasks(s)
                .into_iter()
                .find(|t| t["id"] == first.as_str() && t["last_status"] == "STOPPED")
        },
    );
    (out, old)
}

#[test]
fn a_task_that_ignores_sigterm_is_reported_killed_after_its_stop_timeout_with_the_hint() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let (out, old) = replace_httpd(&s, "");
    assert_eq!(old["exit"]["exit_code"], 137, "{old}");
    assert_eq!(old["exit"]["signal"], "SIGKILL", "{old}");
    let reason = old["stopped_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("killed after its stop timeout") && reason.contains("init: true"),
        "{old}"
    );
    assert!(
        out.stdout.contains("was killed after its stop timeout")
            && out.stdout.contains("init: true"),
        "the deploy's report says so: {out:?}"
    );
    // The timeline tells serving both versions apart from the old ones stopping.
    assert!(
        out.stdout.contains("old and new versions both served for")
            && out
                .stdout
                .contains("old tasks stopping after deregistration for"),
        "{out:?}"
    );
    let status = s.cli(&["status", "web"]).ok();
    assert!(
        status.stdout.contains("old tasks stopping (deregistered)"),
        "{status:?}"
    );
    let events = s.cli(&["events", "web"]).ok();
    assert!(
        events.stdout.contains("killed after its stop timeout"),
        "{events:?}"
    );
}

#[test]
fn with_init_a_task_without_a_sigterm_handler_stops_on_sigterm() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let (out, old) = replace_httpd(&s, "    init: true\n");
    // Docker's init passed SIGTERM on: httpd ended by SIGTERM, not by the stop timeout's kill.
    assert_eq!(old["exit"]["exit_code"], 143, "{old}");
    assert_eq!(old["exit"]["signal"], "SIGTERM", "{old}");
    assert!(
        !old["stopped_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("stop timeout"),
        "{old}"
    );
    assert!(!out.stdout.contains("stop timeout"), "{out:?}");
}
