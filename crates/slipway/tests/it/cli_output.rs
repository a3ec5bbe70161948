//! The CLI's output as a new user meets it (issue #23 item 8): closed pipes, "answers at"
//! with the Host a route needs, deploy/scale progress, one spelling of outcomes, a first
//! deploy that fails for good, `diff` in manifest terms, `init`'s health-check path, `status`
//! of every environment, help text, an empty token, build-error paths and a colourless
//! ingress.log.

use std::process::{Command, Stdio};

use crate::support::*;

/// The CLI against `s`, with stdout a pipe whose reader is already gone: every write fails
/// with EPIPE. Returns (exit code, stderr).
fn closed_stdout(s: &Server, args: &[&str]) -> (i32, String) {
    let mut child = s
        .command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `slipway ARGS | head -1` in bash: (slipway's own exit code, its stderr, head's output).
fn piped_to_head(s: &Server, args: &str) -> (i32, String, String) {
    let err = s.dir.path().join("pipe.err");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "\"$BIN\" {args} 2>\"$ERR\" | head -1; exit ${{PIPESTATUS[0]}}"
        ))
        .current_dir(s.dir.path())
        .env("BIN", &*BIN)
        .env("ERR", &err)
        .env("SLIPWAY_SERVER", &s.url)
        .env("SLIPWAY_TOKEN", &s.token)
        .env("HOME", s.dir.path())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        std::fs::read_to_string(&err).unwrap_or_default(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Lines of a deploy's or scale's output that report a task.
fn task_lines(out: &str) -> Vec<&str> {
    out.lines().filter(|l| l.contains(": task ")).collect()
}

#[test]
fn output_of_everyday_verbs() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let app = app_name("out");
    let alias = format!("staging.{app}.test");
    s.manifest(&web_manifest(
        &app,
        "slipway-hello:v1",
        1,
        &format!("environments:\n  staging:\n    services:\n      web:\n        http:\n          alias: {alias}\n"),
    ));
    let ingress = s.ingress();

    // "answers at" prints a URL that answers, for every environment; the staging route
    // needs its alias as Host.
    let out = s.cli(&["deploy"]).ok();
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("answers at:"))
        .unwrap_or_else(|| panic!("no 'answers at' line: {out:?}"));
    assert!(
        line.trim().ends_with(&format!("http://{ingress}/")),
        "{line}"
    );
    assert!(!line.contains("Host:"), "{line}");
    let out = s.cli(&["deploy", "--env", "staging"]).ok();
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("answers at:"))
        .unwrap_or_else(|| panic!("no 'answers at' line: {out:?}"));
    assert!(
        line.trim()
            .ends_with(&format!("http://{ingress}/ (Host: {alias})")),
        "{line}"
    );
    let (code, _) = probe_host(&ingress, &alias, "/").expect("the staging URL answers");
    assert_eq!(code, 200);

    // A deploy that changes nothing reports UNCHANGED and no task lines; --no-wait spells
    // the outcome the same way.
    let out = s.cli(&["deploy"]).ok();
    assert!(out.stdout.contains("web: UNCHANGED"), "{out:?}");
    assert!(task_lines(&out.stdout).is_empty(), "{out:?}");
    let out = s.cli(&["deploy", "--no-wait"]).ok();
    assert!(out.stdout.contains("web: UNCHANGED"), "{out:?}");
    assert!(!out.stdout.contains("Unchanged"), "{out:?}");

    // Scaling in names every task it stops.
    s.cli(&["scale", "web", "3"]).ok();
    let out = s.cli(&["scale", "web", "1"]).ok();
    let mut stopped: Vec<&str> = task_lines(&out.stdout)
        .into_iter()
        .filter(|l| l.contains(" stopping"))
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    stopped.sort();
    stopped.dedup();
    assert_eq!(stopped.len(), 2, "{out:?}");

    // `status` in the app's directory shows every environment of the app.
    let out = s.cli(&["status"]).ok();
    let envs: Vec<&str> = out
        .stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert!(
        envs.contains(&"default") && envs.contains(&"staging"),
        "{out:?}"
    );
    let out = s.cli(&["status", "--env", "staging"]).ok();
    assert!(!out.stdout.contains(" default "), "{out:?}");

    // A reader that goes away: no panic, exit 0, nothing on stderr.
    for args in ["status", "ps --all", "logs web"] {
        let (code, err, first) = piped_to_head(&s, args);
        assert_eq!(code, 0, "slipway {args} | head -1: {err}");
        assert!(!err.contains("panicked") && err.is_empty(), "{args}: {err}");
        assert!(!first.is_empty(), "{args}: printed nothing");
        let argv: Vec<&str> = args.split(' ').collect();
        let (code, err) = closed_stdout(&s, &argv);
        assert_eq!((code, err.as_str()), (0, ""), "slipway {args} >closed pipe");
    }

    // An empty SLIPWAY_TOKEN says so (not "no server configured" or a 401).
    let out = s.cli_env(
        &["status"],
        &[("SLIPWAY_SERVER", &s.url), ("SLIPWAY_TOKEN", "")],
    );
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("SLIPWAY_TOKEN is set but empty"),
        "{out:?}"
    );
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");

    // The ingress' own log has no terminal colour codes.
    let log = std::fs::read_to_string(s.data_dir().join("ingress/ingress.log")).unwrap_or_default();
    assert!(!log.is_empty(), "the ingress logged nothing");
    assert!(
        !log.contains('\x1b'),
        "colour codes in ingress.log: {log:?}"
    );
}

/// Every verb that takes --no-wait or --timeout says what they do.
#[test]
fn no_wait_and_timeout_have_help_on_every_verb() {
    let mut seen = 0;
    for verb in [
        "deploy",
        "rollback",
        "scale",
        "restart",
        "delete",
        "rebalance",
    ] {
        let out = Command::new(&*BIN).args([verb, "-h"]).output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout).into_owned();
        for flag in ["--no-wait", "--timeout"] {
            let Some(line) = help.lines().find(|l| l.trim_start().starts_with(flag)) else {
                continue;
            };
            seen += 1;
            let words = line.split_whitespace().count();
            assert!(
                words >= 4,
                "slipway {verb} {flag} has no help text: {line:?}"
            );
        }
    }
    assert_eq!(seen, 12, "every verb takes both flags");
}

/// A first deploy that fails, with nothing to roll back to, says that nothing more is
/// started, and nothing more is.
#[test]
fn first_deploy_failing_says_it_stopped() {
    if !docker() {
        return;
    }
    let s = Server::start();
    s.manifest(&web_manifest(
        &app_name("stop"),
        "slipway-hello:exit",
        1,
        "",
    ));
    let out = s.cli(&["deploy", "--timeout", "120s"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("no more tasks are started"), "{out:?}");
    let events = s.cli(&["--json", "events", "web"]).ok().json();
    let newest = events[0]["message"].as_str().unwrap_or_default().to_owned();
    assert!(
        !newest.contains("retrying"),
        "the last word is a retry that never comes: {events}"
    );
    assert!(
        events.as_array().unwrap().iter().any(|e| e["message"]
            .as_str()
            .unwrap_or_default()
            .contains("no more tasks are started")),
        "{events}"
    );
}

/// `slipway diff` marks a service that does not exist yet with `+` (also one built from
/// source), uses the manifest's field names and durations, and a build error names its path
/// once.
#[test]
fn diff_speaks_the_manifest() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let app = app_name("diff");
    s.manifest(&web_manifest(&app, "slipway-hello:v1", 1, ""));
    s.cli(&["deploy"]).ok();
    let api = s.dir.path().join("api");
    std::fs::create_dir_all(&api).unwrap();
    std::fs::write(api.join("Dockerfile"), "FROM slipway-hello:v1\n").unwrap();
    s.manifest(&web_manifest(
        &app,
        "slipway-hello:v1",
        1,
        "    stop_timeout: 3s\n  api:\n    type: Backend Service\n    image:\n      build: ./api\n      port: 8080\n",
    ));
    let out = s.cli(&["diff"]).ok();
    assert!(
        out.stdout.lines().any(|l| l.starts_with("+ api:")),
        "{out:?}"
    );
    assert!(out.stdout.contains("~ stop_timeout: 30s → 3s"), "{out:?}");
    assert!(!out.stdout.contains("_ms"), "{out:?}");

    // A build context without its Dockerfile: the path is written once.
    std::fs::write(
        s.dir.path().join("broken.yml"),
        format!("app: {app}\nservices:\n  b:\n    type: Backend Service\n    image:\n      build: ./b\n      port: 8080\n"),
    )
    .unwrap();
    std::fs::create_dir_all(s.dir.path().join("b")).unwrap();
    let out = s.cli(&["deploy", "-f", "broken.yml"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("./b/Dockerfile"), "{out:?}");
    assert!(!out.stderr.contains("././"), "{out:?}");
}

/// `slipway init --yes` writes `/healthz` for a service whose source serves it, and no health
/// check (not a silent `/`) for one whose source does not.
#[test]
fn init_health_check_path() {
    let tmp = tempfile::tempdir().unwrap();
    for (path, text) in [
        ("web/Dockerfile", "FROM scratch\nEXPOSE 1\n"),
        ("web/main.go", "http.HandleFunc(\"/healthz\", ok)\n"),
        ("users/Dockerfile", "FROM scratch\nEXPOSE 1\n"),
        ("users/main.go", "func main() {}\n"),
    ] {
        let p = tmp.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let out = Command::new(&*BIN)
        .args(["--json", "init", "--yes"])
        .current_dir(tmp.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(tmp.path().join("slipway.yml")).unwrap();
    let m = slipway_core::manifest::parse(&text).unwrap();
    let specs = m.compile("default").unwrap();
    let hc = |name: &str| {
        specs
            .iter()
            .find(|s| s.key.name == name)
            .unwrap()
            .container
            .http_health
            .as_ref()
            .map(|h| h.path.clone())
    };
    assert_eq!(hc("web").as_deref(), Some("/healthz"), "{text}");
    assert_eq!(hc("users"), None, "{text}");
}
