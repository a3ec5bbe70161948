//! `slipway init` on real source trees: the manifest it writes parses and compiles, existing
//! manifests are kept, and missing Dockerfiles or a missing terminal are clear errors. No
//! Docker engine or server is needed.

use std::path::Path;
use std::process::{Command, Stdio};

use slipway_core::manifest;
use slipway_core::model::ServiceKind;

use crate::support::*;

fn init(dir: &Path, args: &[&str]) -> Out {
    let o = Command::new(&*BIN)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .env_remove("SLIPWAY_SERVER")
        .env_remove("SLIPWAY_TOKEN")
        .output()
        .unwrap();
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn write(root: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

/// Parses and compiles the written manifest, as `slipway deploy` would.
fn compiled(dir: &Path) -> Vec<slipway_core::model::ServiceSpec> {
    let text = std::fs::read_to_string(dir.join("slipway.yml")).unwrap();
    let m = manifest::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    m.compile(manifest::DEFAULT_ENV)
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[track_caller]
fn one_error(out: &Out, expect: &[&str]) {
    assert_ne!(out.code, 0, "{out:?}");
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "expected one error line: {out:?}");
    for e in expect {
        assert!(lines[0].contains(e), "expected {e:?} in {:?}", lines[0]);
    }
}

#[test]
fn init_writes_a_manifest_from_the_dockerfiles() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("My Shop");
    write(
        &dir,
        &[
            ("api/Dockerfile", "FROM scratch\nEXPOSE 3000/tcp\n"),
            ("users/Dockerfile", "FROM scratch\n"),
            (
                "products/Dockerfile",
                "FROM scratch\nARG PORT=9000\nEXPOSE $PORT\n",
            ),
            ("node_modules/left-pad/Dockerfile", "FROM scratch\n"),
            (".git/Dockerfile", "FROM scratch\n"),
        ],
    );

    // --yes: api is the web service, the others are backends.
    let out = init(&dir, &["--json", "init", "--yes"]).ok();
    let j = out.json();
    assert_eq!(j["app"], "my-shop");
    assert_eq!(j["file"], "./slipway.yml");
    let svcs: Vec<(&str, &str, u64, &str)> = j["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap(),
                s["type"].as_str().unwrap(),
                s["port"].as_u64().unwrap(),
                s["build"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        svcs,
        [
            ("api", "Load Balanced Web Service", 3000, "./api"),
            ("products", "Backend Service", 9000, "./products"),
            ("users", "Backend Service", 8080, "./users"),
        ]
    );
    let specs = compiled(&dir);
    assert_eq!(specs.len(), 3);
    let api = specs.iter().find(|s| s.key.name == "api").unwrap();
    assert_eq!(api.key.app, "my-shop");
    assert_eq!(api.kind, ServiceKind::LoadBalancedWebService);
    assert_eq!(api.container.port, Some(3000));
    assert_eq!(api.desired_count, Some(1));
    assert_eq!(api.container.http_route.as_ref().unwrap().path, "/");
    // No /healthz answers on the port nor is in the source: no health check, not a silent `/`.
    assert!(api.container.http_health.is_none());
    for name in ["users", "products"] {
        let s = specs.iter().find(|s| s.key.name == name).unwrap();
        assert_eq!(s.kind, ServiceKind::BackendService, "{name}");
        assert!(s.container.http_route.is_none(), "{name}");
    }
    let text = std::fs::read_to_string(dir.join("slipway.yml")).unwrap();
    assert!(
        text.contains("slipway deploy") && text.contains("secret"),
        "{text}"
    );

    // A second run keeps the manifest as it is.
    let out = init(&dir, &["init", "--yes", "--service", "users=worker"]);
    one_error(&out, &["slipway.yml", "already exists", "--force"]);
    assert_eq!(
        std::fs::read_to_string(dir.join("slipway.yml")).unwrap(),
        text
    );

    // --force rewrites it; --service changes a type; human output names the next command.
    let out = init(
        &dir,
        &[
            "init",
            "--yes",
            "--force",
            "--app",
            "shop",
            "--service",
            "users=worker",
        ],
    )
    .ok();
    assert!(out.stdout.contains("slipway deploy"), "{out:?}");
    assert!(out.stdout.contains("Worker Service"), "{out:?}");
    let specs = compiled(&dir);
    let users = specs.iter().find(|s| s.key.name == "users").unwrap();
    assert_eq!(users.kind, ServiceKind::WorkerService);
    assert_eq!(users.key.app, "shop");
    let api = specs.iter().find(|s| s.key.name == "api").unwrap();
    assert_eq!(api.kind, ServiceKind::LoadBalancedWebService);

    // Run from elsewhere with DIR, and a service named by its Dockerfile.
    write(&dir, &[("jobs/Dockerfile.cron", "FROM scratch\n")]);
    let out = init(
        tmp.path(),
        &[
            "--json",
            "init",
            "My Shop",
            "--yes",
            "--force",
            "--service",
            "mailer=worker:jobs/Dockerfile.cron",
            "--service",
            "users=web",
        ],
    )
    .ok();
    let j = out.json();
    assert_eq!(j["app"], "my-shop");
    let specs = compiled(&dir);
    let mailer = specs.iter().find(|s| s.key.name == "mailer").unwrap();
    assert_eq!(mailer.kind, ServiceKind::WorkerService);
    // Two web services: each is routed under its own path.
    let users = specs.iter().find(|s| s.key.name == "users").unwrap();
    assert_eq!(users.container.http_route.as_ref().unwrap().path, "/users");
    let api = specs.iter().find(|s| s.key.name == "api").unwrap();
    assert_eq!(api.container.http_route.as_ref().unwrap().path, "/api");
}

#[test]
fn init_without_dockerfiles_or_terminal_fails() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), &[("README.md", "# nothing to build\n")]);
    let out = init(tmp.path(), &["init", "--yes"]);
    one_error(&out, &["no Dockerfile found", "--service"]);
    assert!(!tmp.path().join("slipway.yml").exists());

    let out = init(tmp.path(), &["--json", "init", "--yes"]);
    assert_ne!(out.code, 0);
    assert!(
        out.json()["error"]
            .as_str()
            .unwrap()
            .contains("no Dockerfile"),
        "{out:?}"
    );

    // Without --yes it would ask, but stdin is not a terminal.
    write(tmp.path(), &[("Dockerfile", "FROM scratch\n")]);
    let out = init(tmp.path(), &["init"]);
    one_error(&out, &["not a terminal", "--yes"]);
    assert!(!tmp.path().join("slipway.yml").exists());

    let out = init(tmp.path(), &["init", "--yes", "--service", "ghost=web"]);
    one_error(&out, &["ghost", "Dockerfile"]);
}
