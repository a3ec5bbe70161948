//! Least privilege, hostile by design: roles and scopes on every face (native API, CLI,
//! ECS/ECR/STS, the registry), revocation of every credential of an identity at once, the
//! audit log of a scripted session, and per-identity rate limits.

use std::process::Command;

use serde_json::{Value, json};
use slipway_core::access::{Face, Need, RULES};

use crate::aws::{Aws, ECS, aws_cli};
use crate::support::*;

/// `slipway token create NAME --role ROLE [EXTRA...]`: the token.
fn token(s: &Server, name: &str, role: &str, extra: &[&str]) -> String {
    let mut args = vec!["--json", "token", "create", name, "--role", role];
    args.extend_from_slice(extra);
    let v = s.cli(&args).ok().json();
    assert_eq!(v["role"], role);
    v["token"].as_str().unwrap().to_owned()
}

/// A route pattern with sample values in its parameters.
fn instantiate(pattern: &str, app: &str) -> String {
    pattern
        .replace("{app}", app)
        .replace("{env}", "default")
        .replace("{name}", "web")
        .replace("{id}", "nothing")
        .replace("{*name}", &format!("{app}/web"))
}

/// A registry request with Basic `password`: the status.
fn registry_status(s: &Server, method: &str, path: &str, password: &str) -> u16 {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            method,
            "-u",
            &format!("x:{password}"),
            "-H",
            "Content-Length: 0",
            &format!("{}{path}", s.url),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).parse().unwrap()
}

/// The password `POST /registry/password` gives `tok`.
fn password_of(s: &Server, tok: &str) -> String {
    let (st, body) = api_call_as(s, tok, "POST", "/registry/password", Some(&json!({})), &[]);
    assert_eq!(st, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["password"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The reader: every mutating operation of the native API's table (instantiated), every
/// mutating CLI verb, every mutating ECS/ECR operation and a registry push are refused and
/// change nothing; every read works. The table is enumerated, so a new operation is
/// covered the day it gets its rule (and without a rule it is refused to everyone).
#[test]
fn a_reader_is_refused_every_change_on_every_face() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let reader = token(&s, "auditor", "reader", &[]);
    let before = s.api_get("/services");

    // The native API's table, both ways: each rule's route exists (a mutating one answers
    // the reader 403 from the gate, not 404/405 from the router), and reads pass the gate.
    for rule in RULES.iter().filter(|r| r.face == Face::Native) {
        let (method, pattern) = rule.op.split_once(' ').unwrap();
        if pattern == "/debug/panic" {
            // Off unless the fault hook is on; its refusal is still checked below.
            let (st, _) = api_call_as(&s, &reader, "POST", pattern, None, &[]);
            assert_eq!(st, 403);
            continue;
        }
        if pattern == "/metrics" {
            // Beside `/api/v1`, where scrapers look (it::metrics reads it in full).
            let out = Command::new("curl")
                .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H"])
                .arg(format!("Authorization: Bearer {reader}"))
                .arg(format!("{}/metrics", s.url))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{}", rule.op);
            continue;
        }
        let path = instantiate(pattern, "nobody");
        let (st, body) = api_call_as(&s, &reader, method, &path, Some(&json!({})), &[]);
        if rule.need == Need::Read {
            assert!(
                st != 403 && st != 401 && st != 405,
                "{} is a read: {st} {body}",
                rule.op
            );
        } else {
            assert_eq!(st, 403, "{}: {body}", rule.op);
            assert!(body.contains("FORBIDDEN"), "{}: {body}", rule.op);
            assert!(body.contains("auditor (reader)"), "{}: {body}", rule.op);
        }
    }

    // The CLI: each mutating verb fails with one line saying why.
    let m = s.manifest(&web_manifest("shop", "slipway-hello:v1", 1, ""));
    let m = m.to_str().unwrap();
    let env = [
        ("SLIPWAY_SERVER", s.url.as_str()),
        ("SLIPWAY_TOKEN", reader.as_str()),
    ];
    for args in [
        vec!["deploy", "-f", m],
        vec!["scale", "web", "3", "--app", "shop"],
        vec!["rollback", "web", "--app", "shop"],
        vec!["restart", "web", "--app", "shop"],
        vec!["delete", "web", "--app", "shop"],
        vec!["token", "create", "x", "--role", "admin"],
        vec!["token", "revoke", "auditor"],
        vec!["access-key", "create"],
        vec!["host", "join-token"],
        vec!["repo", "create", "shop/web"],
        vec!["registry", "gc"],
    ] {
        let out = s.cli_env(&args, &env);
        assert_ne!(out.code, 0, "{args:?}: {out:?}");
        assert!(
            out.stderr.contains("reader") && out.stderr.trim().lines().count() == 1,
            "{args:?}: {out:?}"
        );
    }
    // `secret set` reads the value from stdin.
    let out = s.cli_env(&["secret", "set", "shop/db"], &env);
    assert_ne!(out.code, 0, "{out:?}");
    // Reads work.
    assert_eq!(s.cli_env(&["--json", "status"], &env).code, 0);

    // The registry: the reader's password pulls, never pushes.
    let pw = password_of(&s, &reader);
    assert_eq!(registry_status(&s, "GET", "/v2/", &pw), 200);
    assert_eq!(
        registry_status(&s, "POST", "/v2/shop/web/blobs/uploads/", &pw),
        403
    );

    // ECS and ECR with a key of the reader: every mutating operation of the table is
    // AccessDenied; STS says who it is.
    if let Some(cli) = aws_cli() {
        let key = Aws::new(&s, &cli, &["--for", "auditor"]);
        for rule in RULES
            .iter()
            .filter(|r| matches!(r.face, Face::Ecs | Face::Ecr))
        {
            let (target, service) = match rule.face {
                Face::Ecs => (format!("{ECS}.{}", rule.op), "ecs"),
                _ => (
                    format!("AmazonEC2ContainerRegistry_V20150921.{}", rule.op),
                    "ecr",
                ),
            };
            let (st, body) = key.raw(
                key.secret(),
                &target,
                r#"{"cluster":"shop","repositoryName":"shop/web","clusterName":"shop"}"#,
                &["--service", service],
            );
            if rule.need == Need::Read {
                assert!(!body.contains("AccessDenied"), "{}: {st} {body}", rule.op);
            } else {
                assert_eq!(st, 400, "{}: {body}", rule.op);
                assert!(
                    body.contains("AccessDeniedException"),
                    "{}: {body}",
                    rule.op
                );
            }
        }
        let who = key.json(&["sts", "get-caller-identity"]);
        assert!(
            who["Arn"].as_str().unwrap().ends_with("user/auditor"),
            "{who}"
        );
    }
    // Nothing changed.
    assert_eq!(s.api_get("/services"), before);
    assert!(s.api_get("/repositories").as_array().unwrap().is_empty());
}

/// A deployer scoped to one app deploys and pushes there, and cannot touch another app
/// on any face; the refusals change nothing.
#[test]
fn a_scoped_deployer_changes_only_its_app() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let mine = app_name("mine");
    let theirs = app_name("theirs");
    // The other app exists (deployed by the admin).
    s.cli(&[
        "deploy",
        "-f",
        s.manifest(
            &web_manifest(&theirs, "slipway-hello:v1", 1, "")
                .replace("path: /\n", "path: /theirs\n"),
        )
        .to_str()
        .unwrap(),
    ])
    .ok();
    let ci = token(&s, "ci-mine", "deployer", &["--app", &mine]);
    let env = [
        ("SLIPWAY_SERVER", s.url.as_str()),
        ("SLIPWAY_TOKEN", ci.as_str()),
    ];

    let other = s.manifest(&web_manifest(&theirs, "slipway-hello:v2", 2, ""));
    let out = s.cli_env(&["deploy", "-f", other.to_str().unwrap()], &env);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("ci-mine may change only app {mine}")),
        "{out:?}"
    );
    for args in [
        vec!["scale", "web", "3", "--app", &theirs],
        vec!["restart", "web", "--app", &theirs],
        vec!["rollback", "web", "--app", &theirs],
    ] {
        let out = s.cli_env(&args, &env);
        assert_ne!(out.code, 0, "{args:?}: {out:?}");
        assert!(out.stderr.contains("may change only"), "{out:?}");
    }
    // Its own app deploys.
    let own = s.manifest(
        &web_manifest(&mine, "slipway-hello:v1", 1, "").replace("path: /\n", "path: /mine\n"),
    );
    s.cli_env(&["deploy", "-f", own.to_str().unwrap()], &env)
        .ok();
    // The other app is as the admin left it: one task of v1.
    let svc = s.api_get(&format!("/services/{theirs}/default/web"));
    assert_eq!(svc["summary"]["desired"], 1, "{svc}");
    assert_eq!(svc["summary"]["image"], "slipway-hello:v1", "{svc}");

    // The registry: pushes to its app's repositories only.
    let pw = password_of(&s, &ci);
    assert_eq!(
        registry_status(&s, "POST", &format!("/v2/{mine}/web/blobs/uploads/"), &pw),
        202
    );
    assert_eq!(
        registry_status(&s, "POST", &format!("/v2/{theirs}/web/blobs/uploads/"), &pw),
        403
    );
    // ECS: the other app's cluster is out of reach.
    if let Some(cli) = aws_cli() {
        let key = Aws::new(&s, &cli, &["--for", "ci-mine"]);
        let out = key.run(&[
            "ecs",
            "update-service",
            "--cluster",
            &theirs,
            "--service",
            "web",
            "--desired-count",
            "3",
        ]);
        assert_ne!(out.code, 0, "{out:?}");
        assert!(out.stderr.contains("AccessDenied"), "{out:?}");
        let svc = s.api_get(&format!("/services/{theirs}/default/web"));
        assert_eq!(svc["summary"]["desired"], 1, "{svc}");
    }
}

/// Revoking an identity stops its token, its access keys and its registry passwords (the
/// API's and ECR's) at once: the very next request fails, on the same server, with no
/// wait; `docker pull` with the old password fails.
#[test]
fn revoking_an_identity_stops_every_credential_at_once() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let tok = token(&s, "leaver", "deployer", &[]);
    let pw = password_of(&s, &tok);
    // An image the leaver may pull.
    let image = crate::testbed::push_to_server(&s, "slipway-hello:v1", "team/app", "v1");
    let cfg = s.dir.path().join("leaver-docker");
    std::fs::create_dir_all(&cfg).unwrap();
    let docker_as = |args: &[&str], stdin: Option<&str>| {
        use std::io::Write;
        let mut c = Command::new("docker")
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(i) = stdin {
            c.stdin.take().unwrap().write_all(i.as_bytes()).unwrap();
        }
        drop(c.stdin.take());
        c.wait_with_output().unwrap()
    };
    let host = image.split('/').next().unwrap().to_owned();
    let login = docker_as(
        &["login", &host, "-u", "leaver", "--password-stdin"],
        Some(&pw),
    );
    assert!(login.status.success(), "{login:?}");
    let _ = Command::new("docker").args(["rmi", &image]).output();
    let pull = docker_as(&["pull", &image], None);
    assert!(pull.status.success(), "{pull:?}");
    let aws = aws_cli().map(|cli| Aws::new(&s, &cli, &["--for", "leaver"]));
    let ecr_pw = aws.as_ref().map(|a| {
        a.run(&["ecr", "get-login-password"])
            .ok()
            .stdout
            .trim()
            .to_owned()
    });
    if let Some(a) = &aws {
        assert_eq!(a.run(&["ecs", "list-clusters"]).code, 0);
    }
    assert_eq!(registry_status(&s, "GET", "/v2/", &pw), 200);

    s.cli(&["token", "revoke", "leaver"]).ok();

    let (st, _) = api_call_as(&s, &tok, "GET", "/services", None, &[]);
    assert_eq!(st, 401, "the token");
    assert_eq!(registry_status(&s, "GET", "/v2/", &pw), 401, "the password");
    let _ = Command::new("docker").args(["rmi", &image]).output();
    let pull = docker_as(&["pull", &image], None);
    assert!(
        !pull.status.success(),
        "docker pull with the old password: {pull:?}"
    );
    if let (Some(a), Some(ecr_pw)) = (&aws, &ecr_pw) {
        let out = a.run(&["ecs", "list-clusters"]);
        assert_ne!(out.code, 0, "the access key: {out:?}");
        assert!(out.stderr.contains("UnrecognizedClient"), "{out:?}");
        assert_eq!(
            registry_status(&s, "GET", "/v2/", ecr_pw),
            401,
            "the ECR password"
        );
    }
    let keys = s.cli(&["--json", "access-key", "ls"]).ok().json();
    for k in keys.as_array().unwrap() {
        assert!(!k["revoked_at"].is_null(), "its keys are revoked too: {k}");
    }
}

/// A scripted session of 50 mutating calls over the native API, the CLI, the AWS API and
/// the registry: the audit log has exactly one entry for each, with the identity and the
/// source address, and no secret value appears in it or in the server's log.
#[test]
fn the_audit_log_has_one_entry_per_change_and_no_secret() {
    if !docker() {
        return;
    }
    let s = Server::start();
    const SECRET: &str = "hunter2-very-secret-value";
    let mut calls = 0;
    // 20 secrets set through the API (their values in the bodies).
    for i in 0..20 {
        let (st, body) = api_call(
            &s,
            "PUT",
            &format!("/secrets/audit/s{i}"),
            Some(&json!({ "value": SECRET })),
            &[],
        );
        assert!(st < 300, "{st} {body}");
        calls += 1;
    }
    // 10 identities created and 5 revoked through the CLI.
    for i in 0..10 {
        token(&s, &format!("id{i}"), "reader", &[]);
        calls += 1;
    }
    for i in 0..5 {
        s.cli(&["token", "revoke", &format!("id{i}")]).ok();
        calls += 1;
    }
    // 5 refused changes by a reader (refusals are recorded too).
    let reader = token(&s, "watcher", "reader", &[]);
    calls += 1;
    for i in 0..5 {
        let (st, _) = api_call_as(
            &s,
            &reader,
            "PUT",
            &format!("/secrets/audit/r{i}"),
            Some(&json!({ "value": SECRET })),
            &[],
        );
        assert_eq!(st, 403);
        calls += 1;
    }
    // Registry: 3 repositories created, a push password and a manifest push.
    for i in 0..3 {
        let (st, body) = api_call(
            &s,
            "POST",
            "/repositories",
            Some(&json!({ "name": format!("audit/r{i}") })),
            &[],
        );
        assert_eq!(st, 201, "{body}");
        calls += 1;
    }
    crate::testbed::push_to_server(&s, "slipway-hello:v1", "audit/app", "v1");
    calls += 2;
    // AWS: an access key and 3 clusters created (or, without the aws CLI, 4 more identities).
    if let Some(cli) = aws_cli() {
        let key = Aws::new(&s, &cli, &[]);
        calls += 1;
        for i in 0..3 {
            key.run(&[
                "ecs",
                "create-cluster",
                "--cluster-name",
                &format!("audit{i}"),
            ])
            .ok();
            calls += 1;
        }
    } else {
        for i in 0..4 {
            s.cli(&["token", "create", &format!("extra{i}"), "--role", "reader"])
                .ok();
            calls += 1;
        }
    }
    assert_eq!(calls, 50);
    // The last call is in the log as soon as it was answered.
    let log = s.cli(&["--json", "audit"]).ok().json();
    let entries = log.as_array().unwrap();
    assert_eq!(entries.len(), 50, "{log:#}");
    for e in entries {
        assert!(!e["identity"].as_str().unwrap().is_empty(), "{e}");
        assert!(
            e["source"].as_str().unwrap().starts_with("127.0.0.1:"),
            "{e}"
        );
        assert!(e["at"].as_i64().unwrap() > 0, "{e}");
    }
    let refused: Vec<&Value> = entries
        .iter()
        .filter(|e| e["outcome"] == "refused")
        .collect();
    assert_eq!(refused.len(), 5, "{log:#}");
    assert!(refused.iter().all(|e| e["identity"] == "watcher"));
    assert!(
        entries
            .iter()
            .any(|e| e["face"] == "registry" && e["operation"] == "push"),
        "{log:#}"
    );
    // Filters.
    let mine = s
        .cli(&["--json", "audit", "--identity", "watcher", "--since", "1h"])
        .ok()
        .json();
    assert_eq!(mine.as_array().unwrap().len(), 5, "{mine:#}");
    // No secret value anywhere.
    assert!(!log.to_string().contains(SECRET));
    assert!(!s.cli(&["audit"]).ok().stdout.contains(SECRET));
    assert!(!s.log().contains(SECRET));
}

/// One raw request: the whole response (head and body).
fn raw_get(addr: &str, token: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    write!(
        c,
        "GET /api/v1{path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    out
}

/// `--rate-limit 1`: 30 requests at once from one identity (a burst of 2 allowed) get
/// `429` with `Retry-After` beyond its budget; another identity is served meanwhile.
#[test]
fn each_identity_has_its_own_rate() {
    if !docker() {
        return;
    }
    let s = Server::start_with(&["--rate-limit", "1"]);
    // The admin has a rate too: it waits out its 429s as a client should.
    let patient = |name: &str| {
        wait_for(std::time::Duration::from_secs(30), "a token", || {
            let out = s.cli(&["--json", "token", "create", name, "--role", "reader"]);
            (out.code == 0).then(|| out.json()["token"].as_str().unwrap().to_owned())
        })
    };
    let busy = patient("busy");
    let other = patient("other");
    let addr = s.url.trim_start_matches("http://").to_owned();
    let answers: Vec<String> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..30)
            .map(|_| sc.spawn(|| raw_get(&addr, &busy, "/services")))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let limited: Vec<&String> = answers
        .iter()
        .filter(|a| a.starts_with("HTTP/1.1 429"))
        .collect();
    let served = answers
        .iter()
        .filter(|a| a.starts_with("HTTP/1.1 200"))
        .count();
    // The burst (2) and what refilled while the 30 were sent are served; the rest not.
    assert!(!limited.is_empty(), "{served} served, none limited");
    assert_eq!(served + limited.len(), 30);
    for a in limited {
        let retry: u64 = a
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("retry-after:")
                    .map(|v| v.trim().parse().unwrap())
            })
            .expect("Retry-After");
        assert!(retry >= 1, "{a}");
        assert!(a.contains("RATE_LIMITED"), "{a}");
    }
    // Another identity is served.
    let (st, _) = api_call_as(&s, &other, "GET", "/services", None, &[]);
    assert_eq!(st, 200);
}
