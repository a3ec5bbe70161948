//! Bad input gets one clear error line (file:line:column for manifests), a non-zero exit,
//! and changes nothing on the server.

use crate::support::*;

#[track_caller]
fn one_error(out: &Out, expect: &[&str]) {
    assert_ne!(out.code, 0, "{out:?}");
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "expected one error line: {out:?}");
    assert!(lines[0].starts_with("error: "), "{out:?}");
    for e in expect {
        assert!(lines[0].contains(e), "expected {e:?} in {:?}", lines[0]);
    }
}

#[test]
fn bad_input_changes_nothing() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let app = app_name("bad");
    let good = web_manifest(&app, "slipway-hello:v1", 2, "");
    s.manifest(&good);
    s.cli(&["deploy"]).ok();
    let snapshot = || {
        let st = s.cli(&["--json", "status", "web"]).ok().json();
        let mut tasks: Vec<String> = s.containers().into_iter().map(|c| c.task).collect();
        tasks.sort();
        (
            st["summary"]["revision"].clone(),
            st["summary"]["desired"].clone(),
            st["deployments"].as_array().unwrap().len(),
            tasks,
        )
    };
    let before = snapshot();

    s.manifest(&format!("app: {app}\nservices:\n  web: [\n"));
    one_error(&s.cli(&["deploy"]), &["slipway.yml:"]);

    s.manifest(&format!("app: {app}\nservices:\n  web:\n    type: web\n    image: {{location: slipway-hello:v1, port: 8080}}\n    cout: 3\n"));
    one_error(&s.cli(&["deploy"]), &["slipway.yml:6:5:", "cout"]);

    s.manifest(&format!("app: {app}\nservices:\n  web:\n    type: web\n    image: {{location: slipway-hello:v1, port: 8080}}\n    count: -2\n"));
    one_error(
        &s.cli(&["deploy"]),
        &["slipway.yml:6:12:", "count must be between 0 and 1000"],
    );

    s.manifest(&format!("app: {app}\nservices:\n  web:\n    type: web\n    image:\n      location: slipway-hello:v1\n      port: 99999\n"));
    one_error(
        &s.cli(&["deploy"]),
        &["slipway.yml:7:13:", "port must be between 1 and 65535"],
    );

    s.manifest(&web_manifest(&app, "slipway-hello:does-not-exist", 2, ""));
    one_error(
        &s.cli(&["deploy"]),
        &[
            "slipway-hello:does-not-exist",
            "not available",
            "nothing was changed",
        ],
    );

    s.manifest(&good);
    one_error(
        &s.cli_env(
            &["deploy"],
            &[("SLIPWAY_SERVER", &s.url), ("SLIPWAY_TOKEN", "slw_wrong")],
        ),
        &["invalid API token", "401"],
    );
    one_error(
        &s.cli_env(&["deploy"], &[("SLIPWAY_SERVER", &s.url)]),
        &["SLIPWAY_TOKEN", "slipway login"],
    );
    one_error(
        &s.cli(&["scale", "web", "-5"]),
        &["count must be between 0 and 1000"],
    );
    one_error(
        &s.cli(&["deploy", "--env", "prod"]),
        &["environment \"prod\" is not declared"],
    );

    // Raw API: no token → 401 with a WWW-Authenticate challenge.
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("{}/api/v1/services", s.url),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "401");

    assert_eq!(snapshot(), before, "bad input changed the server's state");
}
