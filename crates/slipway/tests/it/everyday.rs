//! Everyday commands (issue #5 item 7): `run` locally, `exec` in a task, `logs` of a whole
//! app, `diff` before a deploy, `delete --app`, and Ctrl-C while `deploy` waits.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

/// The CLI as a child process with piped output (for verbs that run until stopped).
fn spawn_cli(s: &Server, args: &[&str]) -> Child {
    s.command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Lines of a child's pipe, as they come.
fn lines(r: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits (bounded) for a child to exit and returns its exit code.
#[track_caller]
fn wait_exit(child: &mut Child, timeout: Duration) -> i32 {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sigint(child: &Child) {
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

/// Collects what a receiver has (after the process ended).
fn drain(rx: &mpsc::Receiver<String>) -> String {
    let mut out = String::new();
    while let Ok(l) = rx.recv_timeout(Duration::from_secs(2)) {
        out.push_str(&l);
        out.push('\n');
    }
    out
}

/// Containers of `slipway run` for an app.
fn local_runs(app: &str) -> Vec<Container> {
    let out = Command::new("docker")
        .args([
            "ps",
            "-a",
            "-q",
            "--filter",
            "label=slipway.local-run=1",
            "--filter",
            &format!("label=slipway.app={app}"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|id| Container {
            id: id.to_owned(),
            task: String::new(),
            revision: String::new(),
            running: true,
            ip: String::new(),
        })
        .collect()
}

/// Removes what a test left behind: local-run containers and image references.
struct Cleanup {
    app: String,
    images: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let ids: Vec<String> = local_runs(&self.app).into_iter().map(|c| c.id).collect();
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .arg("rm")
                .arg("-f")
                .args(&ids)
                .output();
        }
        if !self.images.is_empty() {
            let _ = Command::new("docker")
                .arg("rmi")
                .args(&self.images)
                .output();
        }
    }
}

fn docker_with_config(config: &PathBuf, args: &[&str], stdin: Option<&str>) {
    let mut child = Command::new("docker")
        .args(args)
        .env("DOCKER_CONFIG", config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(i) = stdin {
        child.stdin.take().unwrap().write_all(i.as_bytes()).unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn run_locally_with_environment_env_file_and_highest_semver() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let app = app_name("run");
    let host = s.url.trim_start_matches("http://").to_owned();
    let repo = format!("{host}/{app}/hello");
    let mut cleanup = Cleanup {
        app: app.clone(),
        images: Vec::new(),
    };

    // The registry holds 1.2.0 (v1), 1.10.0 (v2), latest (v3) and a pre-release: the highest
    // semver tag is 1.10.0, though 1.2.0 sorts after it as text and latest is newer.
    let config = s.dir.path().join("docker-config");
    std::fs::create_dir_all(&config).unwrap();
    let pw = s.cli(&["registry", "password"]).ok().stdout;
    docker_with_config(
        &config,
        &["login", &host, "-u", "slipway", "--password-stdin"],
        Some(pw.trim()),
    );
    for (src, tag) in [
        ("v1", "1.2.0"),
        ("v2", "1.10.0"),
        ("v3", "latest"),
        ("v3", "2.0.0-rc1"),
    ] {
        let r = format!("{repo}:{tag}");
        docker_with_config(&config, &["tag", &format!("slipway-hello:{src}"), &r], None);
        docker_with_config(&config, &["push", &r], None);
        // Not left in the engine: `run` has to pull it.
        docker_with_config(&config, &["rmi", &r], None);
    }
    cleanup.images.push(format!("{repo}:1.10.0"));

    s.manifest(&format!(
        "app: {app}\nservices:\n  web:\n    type: Load Balanced Web Service\n    image:\n      location: {repo}:latest\n      port: 8080\n    http:\n      path: /\n      healthcheck: /healthz\n    variables:\n      GREETING: hello\n      KEEP: manifest\n  crash:\n    type: Backend Service\n    image:\n      location: slipway-hello:exit\n    count: 1\nenvironments:\n  staging:\n    services:\n      web:\n        variables:\n          GREETING: hi\n"
    ));
    let env_file = s.dir.path().join("local.env");
    std::fs::write(&env_file, "# local overrides\n\nFROM_FILE=x=y\nKEEP=file\n").unwrap();

    // Bad input changes nothing: a bad env-file line is named by file:line.
    let bad = s.dir.path().join("bad.env");
    std::fs::write(&bad, "A=1\nnot a valid line\n").unwrap();
    let out = s.cli(&["run", "web", "--env-file", bad.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("bad.env:2:") && out.stderr.lines().count() == 1,
        "{out:?}"
    );
    let out = s.cli(&["run", "nosuch"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("no service named \"nosuch\""),
        "{out:?}"
    );
    assert!(local_runs(&app).is_empty());

    let mut child = spawn_cli(
        &s,
        &[
            "run",
            "web",
            "--env",
            "staging",
            "--highest-semver",
            "--env-file",
            env_file.to_str().unwrap(),
        ],
    );
    let stdout = lines(child.stdout.take().unwrap());
    let stderr = lines(child.stderr.take().unwrap());
    let mut seen = String::new();
    let url = wait_for(
        Duration::from_secs(60),
        "slipway run to say where it answers",
        || {
            let l = stderr.recv_timeout(Duration::from_millis(200)).ok()?;
            seen.push_str(&l);
            seen.push('\n');
            l.split("answers at ").nth(1).map(str::to_owned)
        },
    );
    assert!(seen.contains(&format!("pulling {repo}:1.10.0")), "{seen}");
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    let (_, body) = wait_for(
        Duration::from_secs(20),
        "the local container to answer",
        || probe("127.0.0.1", port, "/"),
    );
    assert!(
        body.contains("\"version\":\"v2\""),
        "highest semver is 1.10.0: {body}"
    );
    let env = |name: &str| probe("127.0.0.1", port, &format!("/env/{name}")).unwrap().1;
    assert_eq!(env("GREETING"), "hi", "staging override applies");
    assert_eq!(env("FROM_FILE"), "x=y");
    assert_eq!(env("KEEP"), "file", "the env file wins over the manifest");
    assert_eq!(env("SLIPWAY_SERVICE"), "web");
    assert_eq!(local_runs(&app).len(), 1, "labelled slipway.local-run=1");
    // Not a task of the server.
    assert!(s.containers().is_empty());

    // Ctrl-C stops and removes the container.
    sigint(&child);
    let code = wait_exit(&mut child, Duration::from_secs(60));
    assert_eq!(code, 130);
    assert!(local_runs(&app).is_empty(), "container left behind");
    let logs = drain(&stdout);
    assert!(logs.contains("hello v2 listening on :8080"), "{logs}");

    // A container that exits on its own is removed too, and its code is ours.
    let out = s.cli(&["run", "crash"]);
    assert_eq!(out.code, 3, "{out:?}");
    assert!(out.stdout.contains("HELLO_EXIT_AT_START"), "{out:?}");
    assert!(local_runs(&app).is_empty(), "container left behind");

    // --tag picks a tag of the same repository.
    let out = s.cli(&["run", "web", "--tag", "1.2.0", "-p", "0:8080"]);
    assert_eq!(out.code, 1, "-p 0:8080 is refused: {out:?}");
    assert!(out.stderr.contains("HOSTPORT:CONTAINERPORT"), "{out:?}");
    assert!(local_runs(&app).is_empty());
}

fn two_service_manifest(app: &str, web_count: u32) -> String {
    format!(
        "app: {app}\nservices:\n  web:\n    type: Load Balanced Web Service\n    image:\n      location: slipway-hello:v1\n      port: 8080\n    http:\n      path: /\n      healthcheck: /healthz\n    count: {web_count}\n    memory: 32\n  worker:\n    type: Backend Service\n    image:\n      location: slipway-hello:v1\n      port: 8080\n    count: 1\n    memory: 32\n"
    )
}

fn tasks_of(s: &Server, app: &str, svc: &str) -> Vec<Value> {
    s.api_get(&format!("/services/{app}/default/{svc}"))["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["desired_running"] == true)
        .cloned()
        .collect()
}

#[test]
fn exec_in_a_task_and_logs_of_every_service() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let app = app_name("exec");
    s.manifest(&two_service_manifest(&app, 2));
    s.cli(&["deploy"]).ok();
    let web: Vec<String> = tasks_of(&s, &app, "web")
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    let worker = tasks_of(&s, &app, "worker")[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(web.len(), 2);

    // exec: the command's exit code is the CLI's, its output is printed.
    let out = s.cli(&["--json", "exec", "web", "--", "/hello", "check"]);
    assert_eq!(out.code, 0, "{out:?}");
    let j = out.json();
    assert!(web.contains(&j["task"].as_str().unwrap().to_owned()), "{j}");
    assert_eq!(j["exit_code"], 0);
    // A second server in the same task cannot listen: exit 2 with its message.
    let out = s.cli(&["exec", "web", "--task", &web[1], "--", "/hello"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stdout.contains("cannot listen on port 8080"), "{out:?}");
    let out = s.cli(&[
        "--json", "exec", "web", "--task", &web[0], "--", "/hello", "check", "1",
    ]);
    assert_eq!(out.code, 1, "nothing listens on port 1: {out:?}");
    assert_eq!(out.json()["task"], web[0].as_str());
    // Errors are one line naming the fix.
    let out = s.cli(&["exec", "web", "--task", "nosuch", "--", "/hello", "check"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("task nosuch") && out.stderr.contains("not found"),
        "{out:?}"
    );
    let out = s.cli(&["exec", "web"]);
    assert_eq!(out.code, 2, "the command is required: {out:?}");

    // logs of one service: every task, prefixed with its id.
    let logs = s.cli(&["logs", "web"]).ok().stdout;
    for t in &web {
        assert!(
            logs.contains(&format!("{t} | hello v1 listening on :8080")),
            "{logs}"
        );
    }
    // logs of the whole app: `service/task` prefixes, with or without --all.
    for args in [&["logs"][..], &["logs", "--all"][..]] {
        let logs = s.cli(args).ok().stdout;
        for t in &web {
            assert!(
                logs.contains(&format!("web/{t} | hello v1 listening")),
                "{logs}"
            );
        }
        assert!(
            logs.contains(&format!("worker/{worker} | hello v1 listening")),
            "{logs}"
        );
    }
    // ... and followed.
    let mut follow = spawn_cli(&s, &["logs", "-f"]);
    let rx = lines(follow.stdout.take().unwrap());
    let mut want: Vec<String> = web.iter().map(|t| format!("web/{t} | ")).collect();
    want.push(format!("worker/{worker} | "));
    wait_for(Duration::from_secs(20), "logs -f of every task", || {
        let l = rx.recv_timeout(Duration::from_millis(200)).ok()?;
        want.retain(|w| !l.starts_with(w.as_str()));
        want.is_empty().then_some(())
    });
    assert!(follow.try_wait().unwrap().is_none(), "logs -f exited");
    follow.kill().unwrap();
    let _ = follow.wait();
    let out = s.cli(&["logs", "--app", "nosuchapp"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("not found"), "{out:?}");
}

#[test]
fn diff_shows_what_a_deploy_would_change_and_changes_nothing() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let app = app_name("diff");
    let vars = "    variables:\n      GREETING: hello\n";
    s.manifest(&web_manifest(&app, "slipway-hello:v1", 2, vars));
    // Before the first deploy everything is new.
    let out = s.cli(&["diff"]).ok();
    assert!(out.stdout.contains("+ web: new service"), "{out:?}");
    assert!(out.stdout.contains("+ count: 2"), "{out:?}");
    s.cli(&["deploy"]).ok();

    let out = s.cli(&["diff", "--exit-code"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout.trim(), "no changes");

    let before = s.api_get(&format!("/services/{app}/default/web"));
    let mut running: Vec<String> = s.containers().into_iter().map(|c| c.id).collect();
    running.sort();
    s.manifest(&web_manifest(
        &app,
        "slipway-hello:v2",
        4,
        "    variables:\n      GREETING: hi\n",
    ));
    let out = s.cli(&["diff", "--exit-code"]);
    assert_eq!(out.code, 1, "changes with --exit-code: {out:?}");
    let text = &out.stdout;
    assert!(
        text.contains("~ web: a deploy starts a new deployment"),
        "{text}"
    );
    assert!(text.contains("~ count: 2 → 4"), "{text}");
    assert!(text.contains("~ variables.GREETING: hello → hi"), "{text}");
    assert!(
        text.contains("~ image: slipway-hello:v1 → slipway-hello:v2"),
        "{text}"
    );
    assert!(text.contains("~ image_digest: sha256:"), "{text}");
    let j = s.cli(&["--json", "diff"]).ok().json();
    assert_eq!(j["changed"], true);
    assert_eq!(j["results"][0]["status"], "changed");
    assert_eq!(j["results"][0]["new_deployment"], true);

    // Only the count: no new deployment.
    s.manifest(&web_manifest(&app, "slipway-hello:v1", 3, vars));
    let j = s.cli(&["--json", "diff"]).ok().json();
    assert_eq!(j["results"][0]["new_deployment"], false, "{j}");
    let changes = j["results"][0]["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{j}");
    assert_eq!(changes[0]["path"], "count");

    // Bad input: an image that does not exist, a service that is not in the manifest.
    s.manifest(&web_manifest(&app, "slipway-hello:nosuchtag", 2, vars));
    let out = s.cli(&["diff"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("slipway-hello:nosuchtag"), "{out:?}");
    let out = s.cli(&["diff", "nosuch"]);
    assert_eq!(out.code, 1, "{out:?}");

    // Nothing changed in the server.
    let after = s.api_get(&format!("/services/{app}/default/web"));
    assert_eq!(after["summary"]["revision"], before["summary"]["revision"]);
    assert_eq!(after["summary"]["desired"], 2);
    assert_eq!(after["deployments"], before["deployments"]);
    let mut now: Vec<String> = s.containers().into_iter().map(|c| c.id).collect();
    now.sort();
    assert_eq!(now, running);
}

fn networks(s: &Server) -> Vec<String> {
    let out = Command::new("docker")
        .args([
            "network",
            "ls",
            "--format",
            "{{.Name}}",
            "--filter",
            &format!("label=slipway.cluster={}", s.cluster),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[test]
fn delete_a_whole_app_or_one_environment() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let app = app_name("del");
    s.manifest(&format!(
        "{}environments:\n  staging: {{}}\n",
        two_service_manifest(&app, 1)
    ));
    s.cli(&["deploy"]).ok();
    s.cli(&["deploy", "--env", "staging", "worker"]).ok();
    assert_eq!(s.containers().len(), 3);
    assert_eq!(networks(&s).len(), 2, "{:?}", networks(&s));
    let ingress = s.ingress();
    let (ip, port) = ingress.split_once(':').unwrap();
    assert_eq!(probe(ip, port.parse().unwrap(), "/").unwrap().0, 200);

    // Without --yes (and no terminal to ask on) nothing is deleted.
    let out = s.cli(&["delete", "--app", &app]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("--yes"), "{out:?}");
    assert_eq!(s.containers().len(), 3);
    let out = s.cli(&["delete"]);
    assert_eq!(out.code, 1, "{out:?}");

    // One environment.
    let out = s
        .cli(&["delete", "--app", &app, "--env", "staging", "--yes"])
        .ok();
    assert!(out.stdout.contains("staging/worker: deleted"), "{out:?}");
    assert_eq!(s.containers().len(), 2);
    assert_eq!(networks(&s).len(), 1);
    let list = s.api_get(&format!("/services?app={app}"));
    assert_eq!(list.as_array().unwrap().len(), 2);

    // The rest of the app: services, tasks, routes, network.
    let j = s
        .cli(&["--json", "delete", "--app", &app, "--yes"])
        .ok()
        .json();
    assert_eq!(j["services"].as_array().unwrap().len(), 2, "{j}");
    assert!(s.containers().is_empty());
    assert!(networks(&s).is_empty(), "{:?}", networks(&s));
    assert!(
        s.api_get(&format!("/services?app={app}"))
            .as_array()
            .unwrap()
            .is_empty()
    );
    wait_for(
        Duration::from_secs(10),
        "the ingress to drop the route",
        || {
            let (code, _) = probe(ip, port.parse().unwrap(), "/")?;
            (code != 200).then_some(())
        },
    );

    // Again: nothing to delete, and that is fine.
    let out = s.cli(&["delete", "--app", &app, "--yes"]).ok();
    assert_eq!(out.stdout.trim(), "nothing to delete");
    let out = s
        .cli(&["delete", "--app", &app, "--env", "prod", "--yes"])
        .ok();
    assert_eq!(out.stdout.trim(), "nothing to delete");
}

#[test]
fn ctrl_c_while_deploy_waits_leaves_the_deployment_to_the_server() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let app = app_name("sigint");
    s.manifest(&web_manifest(&app, "slipway-hello:v1", 1, ""));
    s.cli(&["deploy"]).ok();
    let first = s.api_get(&format!("/services/{app}/default/web"))["deployments"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // A slow-starting revision (with a long health check grace period): the deployment
    // stays IN_PROGRESS for a long while.
    s.manifest(&format!(
        "app: {app}\nservices:\n  web:\n    type: Load Balanced Web Service\n    image:\n      location: slipway-hello:v1\n      port: 8080\n    http:\n      path: /\n      healthcheck:\n        path: /healthz\n        grace_period: 5m\n    count: 1\n    memory: 32\n    variables:\n      HELLO_START_DELAY_MS: \"120000\"\n"
    ));
    let mut child = spawn_cli(&s, &["deploy"]);
    let stderr = lines(child.stderr.take().unwrap());
    let stdout = lines(child.stdout.take().unwrap());
    let id = wait_for(
        Duration::from_secs(30),
        "the new deployment in progress",
        || {
            let d = &s.api_get(&format!("/services/{app}/default/web"))["deployments"][0];
            (d["id"] != first.as_str() && d["state"] == "IN_PROGRESS")
                .then(|| d["id"].as_str().unwrap().to_owned())
        },
    );
    sigint(&child);
    let code = wait_exit(&mut child, Duration::from_secs(10));
    assert_eq!(code, 130);
    let err = drain(&stderr);
    let _ = drain(&stdout);
    assert_eq!(
        err.trim(),
        format!(
            "interrupted: deployment {id} of web goes on in the server; follow it with slipway status web"
        )
    );
    let d = s.api_get(&format!("/deployments/{id}"));
    assert_eq!(d["state"], "IN_PROGRESS", "it goes on: {d}");

    // A new deploy takes over and succeeds; the interrupted one ends with a reason.
    s.manifest(&web_manifest(&app, "slipway-hello:v1", 1, ""));
    let out = s.cli(&["deploy", "--image", "web=slipway-hello:v2"]).ok();
    assert!(out.stdout.contains("SUCCEEDED"), "{out:?}");
    for c in s.containers().into_iter().filter(|c| c.running) {
        let (_, body) = probe(&c.ip, 8080, "/").unwrap();
        assert!(body.contains("\"version\":\"v2\""), "{body}");
    }
    let d = wait_for(
        Duration::from_secs(30),
        "the interrupted deployment to end",
        || {
            let d = s.api_get(&format!("/deployments/{id}"));
            (d["state"] != "IN_PROGRESS").then_some(d)
        },
    );
    // It was in progress when the new deploy committed, so that deploy superseded it in the
    // same transaction; no pass of the controller can overwrite that with what it read
    // before (writes are compare-and-swaps on the version read).
    let newest = s.api_get(&format!("/services/{app}/default/web"))["deployments"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(d["state"], "FAILED", "{d}");
    assert_eq!(
        d["reason"].as_str(),
        Some(format!("superseded by deployment {newest}").as_str()),
        "{d}"
    );
    // No deployment of the service is left in progress.
    let st = s.api_get(&format!("/services/{app}/default/web"));
    for d in st["deployments"].as_array().unwrap() {
        assert_ne!(d["state"], "IN_PROGRESS", "{st}");
    }
}
