//! Services built from source (issue #23 items 4 and 5): `slipway run` runs the version the
//! environment runs (or `--tag`), pulled from the built-in registry; a platform fix after a
//! refusal builds and deploys the hosts' platform, whatever the builder's cache holds.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::*;

/// `slipway ARGS` against `s` in the background, stderr as a channel of lines.
fn spawn(s: &Server, args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child = s
        .command(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Runs `slipway run ARGS` until it answers; returns what `/` answered and what it said
/// before, then stops it with Ctrl-C.
fn run_and_get(s: &Server, args: &[&str]) -> (String, String) {
    let (mut child, stderr) = spawn(s, args);
    let mut seen = String::new();
    let url = wait_for(Duration::from_secs(90), "slipway run to answer", || {
        let l = stderr.recv_timeout(Duration::from_millis(200)).ok()?;
        seen.push_str(&l);
        seen.push('\n');
        l.split("answers at ").nth(1).map(str::to_owned)
    });
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    let (_, body) = wait_for(Duration::from_secs(20), "the local container", || {
        probe("127.0.0.1", port, "/")
    });
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "slipway run did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    (body, seen)
}

/// The `"version"` of the example app's answer.
fn version(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body.trim()).unwrap_or_default();
    v["version"].as_str().unwrap_or_default().to_owned()
}

/// Removes an image reference from the local engine (also one a task's container uses).
fn rmi(image: &str) {
    let _ = Command::new("docker").args(["rmi", "-f", image]).output();
}

fn built_manifest(app: &str, extra: &str) -> String {
    format!(
        "app: {app}\nservices:\n  web:\n    type: Load Balanced Web Service\n    image:\n      build: ./web\n      port: 8080\n    http:\n      path: /\n      healthcheck: /healthz\n    count: 1\n    memory: 32\n{extra}"
    )
}

#[test]
fn run_a_service_built_from_source_as_the_environment_runs_it() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let app = app_name("brun");
    let web = s.dir.path().join("web");
    std::fs::create_dir_all(&web).unwrap();
    std::fs::write(
        web.join("Dockerfile"),
        format!("FROM slipway-hello:v1\nENV HELLO_VERSION=src-{app}\n"),
    )
    .unwrap();
    s.manifest(&built_manifest(&app, "environments:\n  staging: {}\n"));
    s.cli(&["deploy"]).ok();
    let (code, deployed) = probe_host(&s.ingress(), "x.test", "/").unwrap();
    assert_eq!(code, 200);
    assert_eq!(version(&deployed), format!("src-{app}"));
    let detail = s.cli(&["--json", "status", "web"]).ok().json();
    let image = detail["container"]["image"].as_str().unwrap().to_owned();
    let tag = image.rsplit(':').next().unwrap().to_owned();
    // Not in the local engine: `run` pulls it from the built-in registry.
    rmi(&image);

    // An environment that does not run it: one line that says so, nothing raw from Docker.
    let out = s.cli(&["run", "web", "--env", "staging"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("not deployed in environment staging")
            && out.stderr.contains("--tag")
            && out.stderr.lines().count() == 1
            && !out.stderr.contains("status code"),
        "{out:?}"
    );

    let (body, said) = run_and_get(&s, &["run", "web"]);
    assert!(said.contains(&format!("pulling {image}")), "{said}");
    assert_eq!(version(&body), version(&deployed), "{body}");
    let (body, _) = run_and_get(&s, &["run", "web", "--env", "staging", "--tag", &tag]);
    assert_eq!(version(&body), version(&deployed), "{body}");
    rmi(&image);
}

/// The example app's binary, out of its image, into `dir`.
fn hello_binary(dir: &Path) {
    let id = String::from_utf8(
        Command::new("docker")
            .args(["create", "slipway-hello:v1"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let id = id.trim();
    let st = Command::new("docker")
        .args(["cp", &format!("{id}:/hello")])
        .arg(dir.join("hello"))
        .status()
        .unwrap();
    let _ = Command::new("docker").args(["rm", id]).output();
    assert!(st.success());
}

#[test]
fn a_platform_fix_after_a_refusal_builds_and_deploys_the_hosts_platform() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let app = app_name("plat");
    let web = s.dir.path().join("web");
    std::fs::create_dir_all(&web).unwrap();
    hello_binary(&web);
    std::fs::write(
        web.join("Dockerfile"),
        format!(
            "FROM scratch\nCOPY hello /hello\nENV PORT=8080 HELLO_VERSION=plat-{app}\nEXPOSE 8080\nENTRYPOINT [\"/hello\"]\n"
        ),
    )
    .unwrap();
    // An earlier arm64 build of this context is in the engine's build cache.
    let poison = format!("{app}-arm64:earlier");
    let out = Command::new("docker")
        .args([
            "build",
            "-q",
            "--no-cache",
            "--platform",
            "linux/arm64",
            "-t",
            &poison,
        ])
        .arg(&web)
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    // Asked for arm64: refused before anything is built, naming the fix.
    s.manifest(&built_manifest(&app, "    platform: linux/arm64\n"));
    let out = s.cli(&["deploy"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("--platform linux/amd64") && out.stderr.contains("nothing was built"),
        "{out:?}"
    );
    // Its version would carry the platform in its tag.
    let out = s.cli(&["diff"]).ok();
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("+ web:") && l.contains("-linux-arm64 ")),
        "{out:?}"
    );

    // The fix: built for amd64 (not the cached arm64 image), deployed, healthy.
    let out = s.cli(&["deploy", "--platform", "linux/amd64", "--timeout", "120s"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("SUCCEEDED"), "{out:?}");
    let detail = s.cli(&["--json", "status", "web"]).ok().json();
    assert_eq!(detail["summary"]["healthy"], 1, "{detail}");
    let image = detail["container"]["image"].as_str().unwrap().to_owned();
    let arch = Command::new("docker")
        .args([
            "image",
            "inspect",
            "-f",
            "{{.Os}}/{{.Architecture}}",
            &image,
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&arch.stdout).trim(), "linux/amd64");
    let (code, body) = probe_host(&s.ingress(), "x.test", "/").unwrap();
    assert_eq!((code, version(&body)), (200, format!("plat-{app}")));
    rmi(&poison);
    rmi(&image);
}
