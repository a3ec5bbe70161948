//! `kill -9` of the server at five points of a deploy: after restart, every deployment ends
//! SUCCEEDED or ROLLED_BACK with exactly the desired tasks, and no orphan containers remain.

use std::time::Duration;

use crate::support::*;

fn running_by_revision(s: &Server) -> (usize, usize, Vec<Container>) {
    let cs = s.containers();
    let rev = |c: &Container| c.revision.clone();
    let newest = cs
        .iter()
        .map(|c| c.revision.parse::<u32>().unwrap_or(0))
        .max()
        .unwrap_or(0)
        .to_string();
    let new = cs.iter().filter(|c| c.running && rev(c) == newest).count();
    let old = cs.iter().filter(|c| c.running && rev(c) != newest).count();
    (new, old, cs)
}

/// A condition on the observed containers at which to kill the server.
type Reached = fn(&Server) -> bool;

#[test]
fn server_killed_mid_deploy_recovers() {
    if !docker() {
        return;
    }
    let mut s = Server::start();
    // New tasks take 1.5 s to answer, so each deploy has visible phases to crash in.
    s.manifest(&web_manifest(
        &app_name("crash"),
        "slipway-hello:v1",
        3,
        "    variables:\n      HELLO_START_DELAY_MS: \"1500\"\n",
    ));
    s.cli(&["deploy"]).ok();
    let images = ["slipway-hello:v2", "slipway-hello:v1"];
    let points: [(&str, Reached); 5] = [
        ("right after the deploy was accepted", |_| true),
        ("once a new container exists", |s| {
            running_by_revision(s)
                .2
                .iter()
                .any(|c| c.revision == newest(s))
        }),
        ("once a new task answers its health check", |s| {
            running_by_revision(s).2.iter().any(|c| {
                c.revision == newest(s)
                    && c.running
                    && probe(&c.ip, 8080, "/healthz").is_some_and(|(st, _)| st == 200)
            })
        }),
        ("once an old task was stopped", |s| {
            running_by_revision(s).1 < 3
        }),
        ("once only one old task is left", |s| {
            running_by_revision(s).1 <= 1
        }),
    ];
    for (i, (what, reached)) in points.iter().enumerate() {
        let image = images[i % 2];
        let out = s
            .cli(&[
                "--json",
                "deploy",
                "--no-wait",
                "--image",
                &format!("web={image}"),
            ])
            .ok()
            .json();
        let id = out["results"][0]["deployment_id"]
            .as_str()
            .unwrap()
            .to_owned();
        wait_for(Duration::from_secs(30), what, || reached(&s).then_some(()));
        s.kill9();
        // The data plane is untouched while the server is down.
        let during = s.containers().len();
        assert!(during > 0, "containers vanished with the server");
        s.restart();
        let outcome = wait_for(Duration::from_secs(90), "the deployment to end", || {
            let d = s.api_get(&format!("/deployments/{id}"));
            let state = d["state"].as_str().unwrap().to_owned();
            (state != "IN_PROGRESS").then_some(state)
        });
        assert!(
            outcome == "SUCCEEDED" || outcome == "ROLLED_BACK",
            "crash {what}: deployment ended {outcome}"
        );
        // Steady state: exactly three running tasks of one revision, nothing else.
        wait_for(Duration::from_secs(60), "exactly the desired tasks", || {
            let st = s.cli(&["--json", "status", "web"]).ok().json();
            let last = &st["summary"]["last_deployment"];
            if last["state"] == "IN_PROGRESS" {
                return None;
            }
            let cs = s.containers();
            let revisions: std::collections::HashSet<&str> =
                cs.iter().map(|c| c.revision.as_str()).collect();
            (cs.len() == 3
                && cs.iter().all(|c| c.running)
                && revisions.len() == 1
                && st["summary"]["healthy"] == 3)
                .then_some(())
        });
        eprintln!("crash {} ({what}): {outcome}", i + 1);
    }
}

fn newest(s: &Server) -> String {
    s.containers()
        .iter()
        .map(|c| c.revision.parse::<u32>().unwrap_or(0))
        .max()
        .unwrap_or(0)
        .to_string()
}

/// A second server on a data directory that a running server uses refuses to start and
/// changes nothing; once the first one is gone (even by `kill -9`), a server starts there.
#[test]
fn one_server_per_data_directory() {
    if !docker() {
        return;
    }
    let mut s = Server::start();
    let before = std::fs::read_to_string(s.data_dir().join("api.addr")).unwrap();
    let mut second = std::process::Command::new(&*BIN)
        .args(["server", "--data-dir"])
        .arg(s.data_dir())
        .args(["--api-addr", "127.0.0.1:0", "--no-ingress"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            second.kill().unwrap();
            second.wait().unwrap();
            panic!("a second server on the same data directory kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "second server exited 0: {stderr}");
    assert!(
        stderr.contains("another slipway server is running on"),
        "unexpected error: {stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert_eq!(
        std::fs::read_to_string(s.data_dir().join("api.addr")).unwrap(),
        before,
        "the refused server must not touch the running one's files"
    );
    s.api_get("/info");
    s.restart();
    s.api_get("/info");
}
