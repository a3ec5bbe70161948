//! `slipway app ls`, `app show APP` and `env ls` against a real server (issue #23 item 7):
//! apps, environments, services, routes and URLs that answer.

use crate::support::*;

#[test]
fn app_ls_show_and_env_ls_tell_what_is_deployed_and_where_it_answers() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let app = app_name("apps");
    s.manifest(&web_manifest(
        &app,
        "slipway-hello:v1",
        1,
        &format!(
            "    variables: {{GREETING: hello}}\nenvironments:\n  default:\n    services:\n      web:\n        http: {{alias: www.{app}.test}}\n  staging:\n    services:\n      web:\n        http: {{alias: staging.{app}.test}}\n"
        ),
    ));
    s.cli(&["deploy"]).ok();
    s.cli(&["deploy", "--env", "staging"]).ok();

    let apps = s.cli(&["--json", "app", "ls"]).ok().json();
    let mine = apps
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["app"] == app.as_str())
        .unwrap_or_else(|| panic!("{apps}"));
    assert_eq!(
        mine["environments"],
        serde_json::json!(["default", "staging"])
    );
    assert_eq!(mine["services"], serde_json::json!(["web"]));
    let text = s.cli(&["app", "ls"]).ok().stdout;
    assert!(
        text.contains(&app) && text.contains("default, staging"),
        "{text}"
    );

    let d = s.cli(&["--json", "app", "show", &app]).ok().json();
    let envs = d["environments"].as_array().unwrap();
    assert_eq!(envs.len(), 2, "{d}");
    let ingress = s.ingress();
    for e in envs {
        let env = e["env"].as_str().unwrap();
        let host = if env == "default" {
            format!("www.{app}.test")
        } else {
            format!("staging.{app}.test")
        };
        let web = &e["services"][0];
        assert_eq!(web["name"], "web");
        assert_eq!(web["kind"], "Load Balanced Web Service");
        assert_eq!(
            (web["desired"].as_u64(), web["healthy"].as_u64()),
            (Some(1), Some(1))
        );
        assert_eq!(web["route"]["path"], "/");
        assert_eq!(web["route"]["aliases"], serde_json::json!([host.clone()]));
        assert_eq!(
            web["urls"],
            serde_json::json!([format!("http://{ingress}/ (Host: {host})")]),
            "{d}"
        );
        // The URL answers, with the host it names.
        let (status, _) = probe_host(&ingress, &host, "/").expect("the ingress answers");
        assert_eq!(status, 200, "{env}");
    }
    // In the app's directory the app comes from slipway.yml.
    let text = s.cli(&["app", "show"]).ok().stdout;
    assert!(text.contains("environment staging"), "{text}");
    assert!(
        text.contains(&format!("http://{ingress}/ (Host: staging.{app}.test)")),
        "{text}"
    );

    let envs = s.cli(&["--json", "env", "ls"]).ok().json();
    let envs = envs.as_array().unwrap();
    assert_eq!(envs.len(), 2, "{envs:?}");
    assert_eq!(envs[1]["env"], "staging");
    assert_eq!(envs[1]["services"], serde_json::json!(["web"]));
    assert_eq!(
        (envs[1]["desired"].as_u64(), envs[1]["healthy"].as_u64()),
        (Some(1), Some(1))
    );
    let text = s.cli(&["env", "ls", "--app", &app]).ok().stdout;
    assert!(
        text.contains("staging") && text.contains("1/1 healthy"),
        "{text}"
    );

    // An app that is not deployed: one line naming it, exit 1.
    let out = s.cli(&["app", "show", "nosuch"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("nosuch") && out.stderr.trim().lines().count() == 1,
        "{out:?}"
    );
    let out = s.cli(&["--json", "env", "ls", "--app", "nosuch"]);
    assert_eq!(out.code, 1, "{out:?}");
}
