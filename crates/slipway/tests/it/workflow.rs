//! The developer workflow: `slipway deploy` from source (`image.build`), the shop example,
//! platform checks, environments side by side, and secrets.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::{Server, docker, repo_root, wait_for};

/// Copies examples/shop (without its server crate) into the test directory as a git work
/// tree with one commit, as a developer's clone would be.
fn shop_checkout(s: &Server) -> PathBuf {
    let src = repo_root().join("examples/shop");
    let dst = s.dir.path().join("shop");
    for dir in ["gateway", "users", "products"] {
        std::fs::create_dir_all(dst.join(dir)).unwrap();
        for f in std::fs::read_dir(src.join(dir)).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), dst.join(dir).join(f.file_name())).unwrap();
        }
    }
    std::fs::copy(src.join("slipway.yml"), dst.join("slipway.yml")).unwrap();
    git(&dst, &["init", "-q"]);
    git(&dst, &["add", "-A"]);
    git(
        &dst,
        &[
            "-c",
            "user.email=t@example.com",
            "-c",
            "user.name=t",
            "commit",
            "-qm",
            "shop",
        ],
    );
    dst
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn outcomes(v: &Value) -> Vec<(String, String)> {
    let mut o: Vec<(String, String)> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["service"]["name"].as_str().unwrap().to_owned(),
                r["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    o.sort();
    o
}

/// GET through the ingress with a Host header; waits (bounded) until the ingress answers.
fn get(s: &Server, host: &str, path: &str) -> (u16, String) {
    let addr = s.ingress();
    wait_for(
        Duration::from_secs(20),
        &format!("{host}{path} answers"),
        || {
            let out = Command::new("curl")
                .args([
                    "-s",
                    "-m",
                    "8",
                    "-w",
                    "\n%{http_code}",
                    "-H",
                    &format!("Host: {host}"),
                ])
                .arg(format!("http://{addr}{path}"))
                .output()
                .ok()?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let (body, code) = text.rsplit_once('\n')?;
            let code: u16 = code.trim().parse().ok().filter(|c| *c != 0)?;
            Some((code, body.to_owned()))
        },
    )
}

#[test]
fn shop_deploys_from_source_and_rolls_out_an_uncommitted_edit() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let shop = shop_checkout(&s);
    let manifest = shop.join("slipway.yml");
    let m = manifest.to_str().unwrap();
    let commit = git(&shop, &["rev-parse", "--short=12", "HEAD"]);

    let first = s.cli(&["--json", "deploy", "-f", m]).ok();
    let v = first.json();
    assert_eq!(v["succeeded"], true, "{}", first.stdout);
    assert_eq!(
        first.stderr.matches("built and pushed").count(),
        3,
        "{}",
        first.stderr
    );
    // A clean work tree is tagged with its commit.
    assert!(
        first.stderr.contains(&format!("/shop/users:{commit} ")),
        "{}",
        first.stderr
    );
    let (status, users) = get(&s, "x", "/users");
    assert_eq!(status, 200, "{users}");
    let users: Value = serde_json::from_str(&users).unwrap();
    assert_eq!(users[0]["name"], "Ada");
    let (status, products) = get(&s, "x", "/products");
    assert_eq!(status, 200);
    assert!(serde_json::from_str::<Value>(&products).unwrap().is_array());
    // Deployed pinned by digest, from the built-in registry.
    let detail = s.api_get("/services/shop/default/users");
    let digest = detail["container"]["image_digest"].as_str().unwrap();
    assert!(digest.contains("/shop/users@sha256:"), "{detail}");

    // Nothing changed: nothing is built, pushed or rolled out.
    let again = s.cli(&["--json", "deploy", "-f", m]).ok();
    assert_eq!(
        outcomes(&again.json())
            .iter()
            .map(|(_, o)| o.as_str())
            .collect::<Vec<_>>(),
        ["UNCHANGED", "UNCHANGED", "UNCHANGED"],
        "{}",
        again.stdout
    );
    assert_eq!(
        again.stderr.matches("already in the registry").count(),
        3,
        "{}",
        again.stderr
    );

    let same = s.cli(&["diff", "-f", m, "--exit-code"]);
    assert_eq!(
        (same.code, same.stdout.trim()),
        (0, "no changes"),
        "{}",
        same.stderr
    );

    // Edit one file without committing: only that service rolls out, tagged dirty.
    let data = shop.join("users/users.json");
    let text = std::fs::read_to_string(&data).unwrap();
    std::fs::write(&data, text.replace("Ada", "Ada Lovelace")).unwrap();
    // diff knows a built service's version without building it.
    let diff = s.cli(&["diff", "-f", m, "--exit-code"]);
    assert_eq!(diff.code, 1, "{}{}", diff.stdout, diff.stderr);
    assert!(
        diff.stdout
            .contains("~ users: a deploy builds and pushes a new version")
            && diff.stdout.contains("-dirty-"),
        "{}",
        diff.stdout
    );
    assert!(
        !diff.stdout.contains("gateway: a deploy"),
        "{}",
        diff.stdout
    );
    let edited = s.cli(&["--json", "deploy", "-f", m]).ok();
    assert_eq!(
        outcomes(&edited.json()),
        [
            ("gateway".to_owned(), "UNCHANGED".to_owned()),
            ("products".to_owned(), "UNCHANGED".to_owned()),
            ("users".to_owned(), "SUCCEEDED".to_owned()),
        ],
        "{}",
        edited.stdout
    );
    assert!(
        edited
            .stderr
            .contains(&format!("/shop/users:{commit}-dirty-")),
        "{}",
        edited.stderr
    );
    let (_, users) = get(&s, "x", "/users");
    assert!(users.contains("Ada Lovelace"), "{users}");
}

#[test]
fn an_image_for_another_platform_is_refused_before_any_task_starts() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let dir = s.dir.path().join("arm");
    std::fs::create_dir_all(&dir).unwrap();
    // FROM scratch: the classic builder records the asked platform in the image config.
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM scratch\nCOPY Dockerfile /Dockerfile\n",
    )
    .unwrap();
    let manifest = s.manifest(
        "app: plat\nservices:\n  web:\n    type: web\n    image: {build: ./arm, port: 8080}\n    http: {path: /, healthcheck: /healthz}\n",
    );
    let m = manifest.to_str().unwrap();
    // Asked to build for another platform: refused before building.
    let out = s.cli(&["deploy", "-f", m, "--platform", "linux/arm64"]);
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("linux/arm64")
            && out.stderr.contains("linux/amd64")
            && out.stderr.contains("--platform linux/amd64"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("built and pushed"), "{}", out.stderr);

    // An image whose config says arm64 (built by docker for that platform): the server
    // refuses it, naming both platforms and the fix.
    let tag = format!("slipway-plat-test:{}", std::process::id());
    let st = Command::new("docker")
        // --no-cache: the classic builder's cache may hold the same layers built for
        // amd64 (by another test) and hand them back as this image.
        .args([
            "build",
            "-q",
            "--no-cache",
            "--platform",
            "linux/arm64",
            "-t",
            &tag,
        ])
        .arg(&dir)
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let out = s.cli(&["deploy", "-f", m, "--image", &format!("web={tag}")]);
    let _ = Command::new("docker").args(["rmi", "-f", &tag]).output();
    assert_ne!(out.code, 0, "{}", out.stderr);
    let line = out.stderr.trim();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(
        line.contains("built for linux/arm64")
            && line.contains("this host runs linux/amd64")
            && line.contains("--platform linux/amd64"),
        "{line}"
    );
    // Nothing was deployed or started.
    assert_eq!(s.api_get("/services"), serde_json::json!([]));
    assert!(s.containers().is_empty());
}

#[test]
fn environments_run_side_by_side_isolated_with_their_overrides() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let shop = shop_checkout(&s);
    // Each environment has its own host name; prod runs more gateways.
    let text = std::fs::read_to_string(shop.join("slipway.yml")).unwrap();
    let text = text.replace(
        "environments:\n  prod:\n    services:\n      gateway:\n        count: 3\n",
        "environments:\n  prod:\n    services:\n      gateway:\n        count: 3\n        http: {alias: prod.shop.test}\n  staging:\n    services:\n      gateway:\n        count: 1\n        http: {alias: staging.shop.test}\n",
    );
    std::fs::write(shop.join("slipway.yml"), &text).unwrap();
    let m = shop.join("slipway.yml");
    let m = m.to_str().unwrap();
    s.cli(&["deploy", "-f", m, "--env", "prod"]).ok();
    s.cli(&["deploy", "-f", m, "--env", "staging"]).ok();
    let prod = s.api_get("/services/shop/prod/gateway");
    assert_eq!(prod["summary"]["desired"], 3, "{prod}");
    assert_eq!(
        s.api_get("/services/shop/staging/gateway")["summary"]["desired"],
        1
    );
    assert_eq!(get(&s, "prod.shop.test", "/users").0, 200);
    assert_eq!(get(&s, "staging.shop.test", "/users").0, 200);

    // A staging task cannot reach a prod task, even by address.
    let prod_users = s.api_get("/services/shop/prod/users");
    let ip = prod_users["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|t| t["address"].as_str())
        .unwrap()
        .to_owned();
    let isolated = text.replace(
        "        http: {alias: staging.shop.test}\n",
        &format!(
            "        http: {{alias: staging.shop.test}}\n        variables: {{SHOP_ROUTES: 'users={ip}:8080,byname=users.prod.shop.internal:8080,own=users:8080'}}\n"
        ),
    );
    std::fs::write(shop.join("slipway.yml"), &isolated).unwrap();
    s.cli(&["deploy", "-f", m, "--env", "staging", "gateway"])
        .ok();
    let (status, body) = get(&s, "staging.shop.test", "/users");
    assert_eq!(status, 502, "staging reached prod's users at {ip}: {body}");
    let (status, body) = get(&s, "staging.shop.test", "/byname");
    assert_eq!(status, 502, "staging resolved prod's users by name: {body}");
    // Its own environment's backend stays reachable by name.
    // (`/own` goes to staging's users backend, which answers 404 for a path it does not
    // serve: an answer from the backend, where an unreachable one is a 502.)
    let (status, body) = get(&s, "staging.shop.test", "/own");
    assert_eq!(status, 404, "own: {body}");
    assert!(body.contains("no route for /own"), "{body}");
    assert_eq!(get(&s, "prod.shop.test", "/users").0, 200);
}

/// Every file under `dir` (recursively) that contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return hits;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            hits.extend(files_containing(&p, needle));
        } else if std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)) {
            hits.push(p);
        }
    }
    hits
}

#[test]
fn secrets_reach_the_app_only_and_rollback_restores_their_version() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let app = crate::support::app_name("sec");
    let v1 = format!("pw-one-{}", rand::random::<u64>());
    let v2 = format!("pw-two-{}", rand::random::<u64>());
    let secret = format!("{app}/db");
    let set = |value: &str| {
        let f = s.dir.path().join("value.txt");
        std::fs::write(&f, format!("{value}\n")).unwrap();
        let out = s
            .cli(&["secret", "set", &secret, "--file", f.to_str().unwrap()])
            .ok();
        std::fs::remove_file(&f).unwrap();
        out
    };
    let mut seen = String::new();
    let mut keep = |o: &crate::support::Out| {
        seen.push_str(&o.stdout);
        seen.push_str(&o.stderr);
    };
    keep(&set(&v1));
    let manifest = s.manifest(&crate::support::web_manifest(
        &app,
        "slipway-hello:v1",
        2,
        &format!("    secrets:\n      DB_PASSWORD: {secret}\n"),
    ));
    let m = manifest.to_str().unwrap();
    keep(&s.cli(&["deploy", "-f", m]).ok());
    assert_eq!(get(&s, "x", "/env/DB_PASSWORD"), (200, v1.clone()));

    // A new version is a new release; rollback brings the old version back.
    keep(&set(&v2));
    keep(&s.cli(&["--json", "diff", "-f", m]));
    keep(&s.cli(&["deploy", "-f", m]).ok());
    wait_for(
        Duration::from_secs(20),
        "the new secret version serves",
        || (get(&s, "x", "/env/DB_PASSWORD").1 == v2).then_some(()),
    );
    keep(&s.cli(&["rollback", "web", "-f", m]).ok());
    wait_for(
        Duration::from_secs(20),
        "the rolled-back version serves",
        || (get(&s, "x", "/env/DB_PASSWORD").1 == v1).then_some(()),
    );

    // A forced new deployment reads the current version, as ECS does.
    keep(&s.cli(&["restart", "web", "-f", m]).ok());
    wait_for(
        Duration::from_secs(20),
        "restart serves the current version",
        || (get(&s, "x", "/env/DB_PASSWORD").1 == v2).then_some(()),
    );

    // Names and versions are visible; values nowhere.
    let ls = s.cli(&["--json", "secret", "ls"]).ok();
    let listed = ls.json();
    assert_eq!(listed[0]["name"], secret.as_str());
    assert_eq!(listed[0]["version"], 2);
    keep(&ls);
    for args in [
        vec!["status", "web", "-f", m],
        vec!["--json", "status", "web", "-f", m],
        vec!["--json", "ps", "-f", m],
        vec!["events", "web", "-f", m],
        vec!["logs", "web", "--file", m],
        vec!["secret", "ls"],
    ] {
        keep(&s.cli(&args).ok());
    }
    let detail = s.api_get(&format!("/services/{app}/default/web"));
    let api = format!(
        "{detail}{}{}",
        s.api_get("/secrets"),
        s.api_get(&format!("/services?app={app}"))
    );
    assert!(
        api.contains(&secret),
        "the release records the secret's name: {detail}"
    );
    for value in [&v1, &v2] {
        assert!(
            !seen.contains(value.as_str()),
            "a CLI output shows the secret: {seen}"
        );
        assert!(
            !api.contains(value.as_str()),
            "an API answer shows the secret"
        );
        assert!(
            !s.log().contains(value.as_str()),
            "the server log shows the secret"
        );
        // Encrypted at rest: no file of the data directory (database, WAL, logs) holds it.
        assert_eq!(
            files_containing(&s.data_dir(), value.as_bytes()),
            Vec::<PathBuf>::new()
        );
    }

    // A missing secret: one error naming the manifest's place, and nothing changes.
    let revision = detail["summary"]["revision"].clone();
    let bad = s.manifest(&crate::support::web_manifest(
        &app,
        "slipway-hello:v1",
        2,
        &format!("    secrets:\n      DB_PASSWORD: {secret}\n      API_KEY: {app}/missing\n"),
    ));
    let out = s.cli(&["deploy", "-f", bad.to_str().unwrap()]);
    assert_ne!(out.code, 0);
    let line = out.stderr.trim();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(line.contains("slipway.yml:15:16"), "{line}");
    assert!(
        line.contains(&format!("secret set {app}/missing")),
        "{line}"
    );
    let after = s.api_get(&format!("/services/{app}/default/web"));
    assert_eq!(after["summary"]["revision"], revision);
}

#[test]
fn a_failing_build_or_a_misspelt_field_deploys_nothing() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let dir = s.dir.path().join("api");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM slipway-hello:v1\nCOPY missing.txt /\n",
    )
    .unwrap();
    let m = s.manifest(
        "app: broken\nservices:\n  api:\n    type: web\n    image: {build: ./api, port: 8080}\n    http: {path: /, healthcheck: /healthz}\n",
    );
    let out = s.cli(&["deploy", "-f", m.to_str().unwrap()]);
    assert_ne!(out.code, 0);
    let line = out.stderr.trim();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(
        line.contains("services.api")
            && line.contains("Dockerfile: step 2/2")
            && line.contains("COPY missing.txt"),
        "{line}"
    );

    let m = s.manifest(
        "app: broken\nservices:\n  api:\n    type: web\n    image:\n      biuld: ./api\n      port: 8080\n",
    );
    let out = s.cli(&["deploy", "-f", m.to_str().unwrap()]);
    assert_ne!(out.code, 0);
    let line = out.stderr.trim();
    assert!(
        line.contains("slipway.yml:6:7") && line.contains("biuld"),
        "{line}"
    );

    assert_eq!(s.api_get("/services?app=broken"), serde_json::json!([]));
    assert!(s.containers().is_empty());
}

#[test]
fn init_yes_then_one_deploy_brings_up_the_shop() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let shop = shop_checkout(&s);
    std::fs::remove_file(shop.join("slipway.yml")).unwrap();
    let dir = shop.to_str().unwrap();
    let init = s.cli(&["--json", "init", dir, "--yes"]).ok();
    let v = init.json();
    assert_eq!(v["app"], "shop", "{v}");
    let manifest = shop.join("slipway.yml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert!(
        text.contains("gateway:") && text.contains("Load Balanced Web Service"),
        "{text}"
    );
    let out = s
        .cli(&["--json", "deploy", "-f", manifest.to_str().unwrap()])
        .ok();
    assert_eq!(out.json()["succeeded"], true, "{}", out.stdout);
    let (status, users) = get(&s, "x", "/users");
    assert_eq!(status, 200, "{users}");
    assert!(
        serde_json::from_str::<Value>(&users).unwrap().is_array(),
        "{users}"
    );
}
