//! `slipway watch` against the real engine, docker-compose (v1, Debian), Slipway's own
//! registry (token auth, credentials from a credential helper) and Debian's docker-registry
//! (distribution 2.8.2): updates, rollback with a webhook, several projects, broken input,
//! unreachable registries and wrong credentials, the request budget and the log cap, and an
//! HTTPS registry trusted through Docker's certs.d (and one that is not trusted).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::registry::{RemoveDir, TestNet};
use crate::support::*;

/// Whether docker-compose and docker-registry are installed (a failure under
/// `SLIPWAY_REQUIRE_DOCKER=1`, where `.ci/run` installs them).
fn tools() -> bool {
    for t in ["docker-compose", "docker-registry"] {
        let ok = Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            if std::env::var("SLIPWAY_REQUIRE_DOCKER").is_ok_and(|v| v == "1") {
                panic!(
                    "{t} is not installed: apt-get install docker-compose docker-registry (.ci/run does)"
                );
            }
            eprintln!("skipping: {t} is not installed");
            return false;
        }
    }
    true
}

fn run(cmd: &mut Command) -> Out {
    let o = cmd.output().unwrap();
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// A temp dir with a docker client config for pushing.
struct Docker {
    config: PathBuf,
    /// Repositories to clean up (`docker rmi` of every image reference under them).
    repos: Vec<String>,
}

impl Docker {
    fn new(dir: &Path) -> Docker {
        let config = dir.join("push-config");
        std::fs::create_dir_all(&config).unwrap();
        Docker {
            config,
            repos: Vec::new(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Out {
        run(Command::new("docker")
            .args(args)
            .env("DOCKER_CONFIG", &self.config))
    }

    fn login(&self, host: &str, password: &str) {
        let mut c = Command::new("docker")
            .args(["login", host, "-u", "slipway", "--password-stdin"])
            .env("DOCKER_CONFIG", &self.config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin
            .take()
            .unwrap()
            .write_all(password.as_bytes())
            .unwrap();
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "docker login: {o:?}");
    }

    /// Tags a local example image as `repo:tag`, pushes it, returns the pushed digest.
    fn push(&mut self, local: &str, repo: &str, tag: &str) -> String {
        if !self.repos.iter().any(|r| r == repo) {
            self.repos.push(repo.to_owned());
        }
        let target = format!("{repo}:{tag}");
        self.cmd(&["tag", local, &target]).ok();
        let out = self.cmd(&["push", &target]).ok();
        out.stdout
            .split_whitespace()
            .find(|w| w.starts_with("sha256:"))
            .unwrap_or_else(|| panic!("no digest in {out:?}"))
            .to_owned()
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        for repo in &self.repos {
            let o = Command::new("docker")
                .args([
                    "images",
                    "--digests",
                    "--format",
                    "{{.Repository}}@{{.Digest}} {{.Repository}}:{{.Tag}}",
                    repo,
                ])
                .output();
            if let Ok(o) = o {
                let refs: Vec<String> = String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .filter(|r| !r.ends_with("@<none>") && !r.ends_with(":<none>"))
                    .map(str::to_owned)
                    .collect();
                if !refs.is_empty() {
                    let _ = Command::new("docker").arg("rmi").args(&refs).output();
                }
            }
        }
    }
}

/// A compose project in its own directory (project name = directory name), taken down on drop.
struct Project {
    dir: PathBuf,
    name: String,
}

impl Project {
    fn new(parent: &Path, prefix: &str, compose: &str) -> Project {
        let name = app_name(prefix);
        let dir = parent.join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("docker-compose.yml"), compose).unwrap();
        Project { dir, name }
    }

    fn compose(&self, args: &[&str]) -> Out {
        run(Command::new("docker-compose")
            .args(args)
            .current_dir(&self.dir))
    }

    fn up(&self, services: &[&str]) {
        let mut args = vec!["up", "-d"];
        args.extend_from_slice(services);
        self.compose(&args).ok();
    }

    /// The container of a service: (id, image id, IP).
    fn container(&self, service: &str) -> (String, String, String) {
        let id = self
            .compose(&["ps", "-q", service])
            .ok()
            .stdout
            .trim()
            .to_owned();
        assert!(!id.is_empty(), "no container for {service}");
        let info = run(Command::new("docker").args([
            "inspect",
            "-f",
            "{{.Image}} {{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            &id,
        ]))
        .ok();
        let (image, ip) = info.stdout.trim().split_once(' ').unwrap();
        (id, image.to_owned(), ip.to_owned())
    }

    /// The `version` the service's container answers.
    fn version(&self, service: &str) -> String {
        let (_, _, ip) = self.container(service);
        let (st, body) = wait_for(Duration::from_secs(10), "the service to answer", || {
            probe(&ip, 8080, "/")
        });
        assert_eq!(st, 200, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()["version"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn inspect(&self, service: &str, format: &str) -> String {
        let (id, _, _) = self.container(service);
        run(Command::new("docker").args(["inspect", "-f", format, &id]))
            .ok()
            .stdout
            .trim()
            .to_owned()
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = Command::new("docker-compose")
            .args(["down", "-v", "--remove-orphans"])
            .current_dir(&self.dir)
            .output();
    }
}

/// The `image id` of a local reference, if the engine has it.
fn image_id(reference: &str) -> Option<String> {
    let o = run(Command::new("docker").args(["image", "inspect", "-f", "{{.Id}}", reference]));
    (o.code == 0).then(|| o.stdout.trim().to_owned())
}

/// `slipway watch` with a client config of its own.
struct Watch {
    state: PathBuf,
    docker_config: PathBuf,
    path: String,
}

impl Watch {
    fn new(dir: &Path) -> Watch {
        let state = dir.join("state");
        let docker_config = dir.join("watch-config");
        std::fs::create_dir_all(&docker_config).unwrap();
        std::fs::write(docker_config.join("config.json"), "{}").unwrap();
        Watch {
            state,
            docker_config,
            path: std::env::var("PATH").unwrap_or_default(),
        }
    }

    /// Credentials come from `docker-credential-NAME get` (a credential helper script).
    fn use_helper(&mut self, dir: &Path, secret: &str) {
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let script = bin.join("docker-credential-slipwaytest");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nread server\necho \"$server\" >> {}\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"slipway\",\"Secret\":\"{secret}\"}}' \"$server\"\n",
                dir.join("helper-calls").display()
            ),
        )
        .unwrap();
        run(Command::new("chmod").args(["+x"]).arg(&script)).ok();
        std::fs::write(
            self.docker_config.join("config.json"),
            r#"{"credsStore":"slipwaytest"}"#,
        )
        .unwrap();
        self.path = format!("{}:{}", bin.display(), self.path);
    }

    fn run(&self, args: &[&str]) -> Out {
        run(Command::new(&*BIN)
            .arg("watch")
            .args(args)
            .arg("--state-dir")
            .arg(&self.state)
            .env("DOCKER_CONFIG", &self.docker_config)
            .env("PATH", &self.path)
            .env("SLIPWAY_LOG", "info,slipway=debug")
            .env_remove("COMPOSE_PROJECT_NAME"))
    }

    fn status(&self) -> Value {
        run(Command::new(&*BIN)
            .args(["--json", "watch", "status", "--state-dir"])
            .arg(&self.state))
        .ok()
        .json()
    }
}

fn status_of<'a>(status: &'a Value, project: &str, service: &str) -> &'a Value {
    status
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["project"] == project && s["service"] == service)
        .unwrap_or_else(|| panic!("{project}/{service} not in {status}"))
}

/// A one-shot HTTP listener on loopback that records request bodies and answers 200.
struct Hook {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Hook {
    fn start() -> Hook {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let b = bodies.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                s.set_read_timeout(Some(Duration::from_secs(5))).ok();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = match s.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len: usize = head
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse().ok())?
                            })
                            .unwrap_or(0);
                        if body.len() >= len {
                            if let Ok(v) = serde_json::from_str(&body[..len]) {
                                b.lock().unwrap().push(v);
                            }
                            break;
                        }
                    }
                }
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        });
        Hook { url, bodies }
    }

    fn events(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }
}

/// JSON lines of a log file.
fn log_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

fn message(v: &Value) -> &str {
    v["fields"]["message"].as_str().unwrap_or("")
}

const HEALTHY_WEB: &str = "    healthcheck:\n      test: [\"CMD\", \"/hello\", \"check\"]\n      interval: 1s\n      timeout: 2s\n      retries: 2\n";

#[test]
fn update_then_rollback_through_slipway_registry() {
    if !docker() || !tools() {
        return;
    }
    let s = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let host = s.url.trim_start_matches("http://").to_owned();
    let password = s
        .cli(&["registry", "password"])
        .ok()
        .stdout
        .trim()
        .to_owned();
    let mut d = Docker::new(tmp.path());
    d.login(&host, &password);
    let repo = format!("{host}/team/{}", app_name("web"));
    let v1 = d.push("slipway-hello:v1", &repo, "stable");

    let compose = format!(
        "services:\n  web:\n    image: {repo}:stable\n    labels:\n      slipway.watch: \"true\"\n    environment:\n      GREETING: hello-from-compose\n    volumes:\n      - data:/data\n    networks: [back]\n{HEALTHY_WEB}  side:\n    image: slipway-hello:v1\n    networks: [back]\nvolumes:\n  data: {{}}\nnetworks:\n  back: {{}}\n"
    );
    let p = Project::new(tmp.path(), "wa", &compose);
    p.up(&[]);
    let side_before = p.container("side").0;
    let mut w = Watch::new(tmp.path());
    w.use_helper(tmp.path(), &password);
    let project = ["--project", p.dir.to_str().unwrap()];

    // Nothing new: exit 0, nothing recreated, the state knows the running digest.
    let web_before = p.container("web").0;
    let out = w.run(&[&project[..], &["--once"]].concat());
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(p.container("web").0, web_before, "nothing was recreated");
    let st = w.status();
    assert_eq!(
        status_of(&st, &p.name, "web")["running_digest"],
        v1.as_str()
    );
    assert_eq!(status_of(&st, &p.name, "web")["last_outcome"], "up_to_date");

    // A steady-state cycle costs one registry request per watched image (token cached).
    let log = tmp.path().join("budget.log");
    let out = w.run(
        &[
            &project[..],
            &[
                "--interval",
                "50ms",
                "--cycles",
                "4",
                "--log-file",
                log.to_str().unwrap(),
            ],
        ]
        .concat(),
    );
    assert_eq!(out.code, 0, "{out:#?}");
    let cycles: Vec<u64> = log_lines(&log)
        .iter()
        .filter(|l| message(l) == "check cycle done")
        .map(|l| l["fields"]["registry_requests"].as_u64().unwrap())
        .collect();
    assert_eq!(cycles.len(), 4, "{cycles:?}");
    assert!(
        cycles[0] <= 3,
        "first cycle: HEAD, token, HEAD at most: {cycles:?}"
    );
    assert!(
        cycles[1..].iter().all(|&n| n == 1),
        "steady state is 1 request per image: {cycles:?}"
    );
    let helper_calls = std::fs::read_to_string(tmp.path().join("helper-calls")).unwrap();
    assert!(
        helper_calls.lines().all(|l| l == host),
        "the helper was asked for {host}: {helper_calls}"
    );

    // v2 pushed: one --once run moves the service to v2, healthy, as compose would make it.
    let v2 = d.push("slipway-hello:v2", &repo, "stable");
    let hook = Hook::start();
    let out = w.run(
        &[
            &project[..],
            &["--once", "--health-timeout", "60s", "--webhook", &hook.url],
        ]
        .concat(),
    );
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(p.version("web"), "v2");
    assert_ne!(p.container("web").0, web_before, "web was recreated");
    assert_eq!(
        p.container("side").0,
        side_before,
        "the other service was not touched"
    );
    let ps = p.compose(&["ps"]).ok();
    let line = ps
        .stdout
        .lines()
        .find(|l| l.contains("_web_"))
        .unwrap_or_else(|| panic!("{ps:?}"));
    assert!(line.contains("Up (healthy)"), "{ps:?}");
    assert_eq!(
        p.inspect(
            "web",
            "{{index .Config.Labels \"com.docker.compose.project\"}}"
        ),
        p.name
    );
    assert_eq!(
        p.inspect(
            "web",
            "{{index .Config.Labels \"com.docker.compose.service\"}}"
        ),
        "web"
    );
    assert_eq!(
        p.inspect("web", "{{.Config.Image}}"),
        format!("{repo}@{v2}"),
        "the digest is pinned"
    );
    let env = p.inspect("web", "{{json .Config.Env}}");
    assert!(env.contains("GREETING=hello-from-compose"), "{env}");
    let mounts = p.inspect("web", "{{range .Mounts}}{{.Name}} {{.Destination}}{{end}}");
    assert_eq!(mounts, format!("{}_data /data", p.name));
    let nets = p.inspect(
        "web",
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}",
    );
    assert_eq!(nets, format!("{}_back", p.name));
    let ev = hook.events();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["outcome"], "updated");
    assert_eq!(ev[0]["old_digest"], v1.as_str());
    assert_eq!(ev[0]["new_digest"], v2.as_str());
    assert_eq!(ev[0]["service"], "web");
    assert_eq!(ev[0]["project"], p.name.as_str());

    // A v3 that never becomes healthy: back on v2, webhook with the reason, exit code 2.
    let v3 = d.push("slipway-hello:unhealthy", &repo, "stable");
    let out = w.run(
        &[
            &project[..],
            &["--once", "--health-timeout", "60s", "--webhook", &hook.url],
        ]
        .concat(),
    );
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(
        out.stderr.contains("unhealthy") && out.stderr.contains("rolled back"),
        "{out:#?}"
    );
    assert_eq!(p.version("web"), "v2");
    assert_eq!(p.inspect("web", "{{.State.Health.Status}}"), "healthy");
    assert_eq!(
        p.inspect("web", "{{.Config.Image}}"),
        format!("{repo}@{v2}")
    );
    let ev = hook.events();
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert_eq!(ev[1]["outcome"], "rolled_back");
    assert_eq!(ev[1]["old_digest"], v2.as_str());
    assert_eq!(ev[1]["new_digest"], v3.as_str());
    let reason = ev[1]["reason"].as_str().unwrap();
    assert!(reason.contains("unhealthy"), "{reason}");
    let st = w.status();
    let web = status_of(&st, &p.name, "web");
    assert_eq!(web["last_outcome"], "rolled_back");
    assert_eq!(web["running_digest"], v2.as_str());
    assert_eq!(web["failed_digest"], v3.as_str());
    let table = run(Command::new(&*BIN)
        .args(["watch", "status", "--state-dir"])
        .arg(&w.state))
    .ok();
    assert!(
        table.stdout.contains(&format!("{}/web", p.name)) && table.stdout.contains("rolled_back"),
        "{table:?}"
    );

    // The bad digest is not retried until something new is pushed.
    let before = p.container("web").0;
    let out = w.run(&[&project[..], &["--once"]].concat());
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(out.stderr.contains("which was rolled back"), "{out:#?}");
    assert_eq!(p.container("web").0, before);
    assert_eq!(hook.events().len(), 2);

    // Daemon mode: a good version pushed next is picked up within one interval.
    let v4 = d.push("slipway-hello:v3", &repo, "stable");
    let out = w.run(
        &[
            &project[..],
            &[
                "--interval",
                "1s",
                "--cycles",
                "2",
                "--health-timeout",
                "60s",
            ],
        ]
        .concat(),
    );
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(p.version("web"), "v3");
    let st = w.status();
    let web = status_of(&st, &p.name, "web");
    assert_eq!(web["running_digest"], v4.as_str());
    assert_eq!(web["failed_digest"], Value::Null);
}

#[test]
fn several_projects_update_independently_with_docker_registry() {
    if !docker() || !tools() {
        return;
    }
    let reg = RefRegistry::start();
    let tmp = tempfile::tempdir().unwrap();
    let mut d = Docker::new(tmp.path());
    let web = format!("{}/a/{}", reg.host, app_name("web"));
    let api = format!("{}/b/{}", reg.host, app_name("api"));
    let w1 = d.push("slipway-hello:v1", &web, "stable");
    d.push("slipway-hello:v1", &api, "prod");
    d.push("slipway-hello:v1", &web, "latest");

    // A: a watched web (health check), an unwatched db, a watched service without a tag.
    let a = Project::new(
        tmp.path(),
        "wpa",
        &format!(
            "services:\n  web:\n    image: {web}:stable\n    labels: [\"slipway.watch=true\"]\n{HEALTHY_WEB}  db:\n    image: slipway-hello:v1\n  notag:\n    image: {web}\n    labels: [\"slipway.watch=true\"]\n"
        ),
    );
    a.up(&["web", "db"]);
    // B: an api without any health check, watched because a watch list names it.
    let b = Project::new(
        tmp.path(),
        "wpb",
        &format!("services:\n  api:\n    image: {api}:prod\n"),
    );
    let list = tmp.path().join("watch.yml");
    std::fs::write(
        &list,
        format!("projects:\n  - dir: {}\n    services: [api]\n", b.name),
    )
    .unwrap();
    b.up(&[]);
    // C: a compose file with an error.
    let c = Project::new(
        tmp.path(),
        "wpc",
        "services:\n  x:\n    image: [not, a, string]\n    bogus_key: 1\n",
    );
    let w = Watch::new(tmp.path());
    let args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for p in [&a.dir, &c.dir] {
            v.push("--project".into());
            v.push(p.display().to_string());
        }
        v.push("--config".into());
        v.push(list.display().to_string());
        v.extend(
            [
                "--once",
                "--keep",
                "1",
                "--settle",
                "2s",
                "--health-timeout",
                "60s",
            ]
            .map(String::from),
        );
        v.extend(extra.iter().map(|s| (*s).to_owned()));
        v
    };
    let run_watch = |extra: &[&str]| {
        let v = args(extra);
        let refs: Vec<&str> = v.iter().map(String::as_str).collect();
        w.run(&refs)
    };

    // Only A's image moves: A updates, B stays, the broken project and the untagged image
    // are reported clearly, and the exit code says there were errors.
    let db_before = a.container("db").0;
    let api_before = b.container("api").0;
    let w2 = d.push("slipway-hello:v2", &web, "stable");
    let out = run_watch(&[]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert_eq!(a.version("web"), "v2");
    assert_eq!(a.container("db").0, db_before);
    assert_eq!(b.container("api").0, api_before);
    assert!(
        out.stderr.contains(&format!("compose project {}", c.name))
            && out.stderr.contains("docker-compose.yml"),
        "{out:#?}"
    );
    assert!(
        out.stderr
            .contains(&format!("{}/notag: image {web} has no tag", a.name)),
        "{out:#?}"
    );
    let st = w.status();
    assert_eq!(status_of(&st, &a.name, "web")["last_outcome"], "updated");
    assert_eq!(
        status_of(&st, &a.name, "web")["running_digest"],
        w2.as_str()
    );
    assert_eq!(status_of(&st, &b.name, "api")["last_outcome"], "up_to_date");
    assert_eq!(status_of(&st, &a.name, "notag")["last_outcome"], "error");

    // Now only B's image moves: it updates (warning: no health check), A stays.
    let web_before = a.container("web").0;
    d.push("slipway-hello:v2", &api, "prod");
    let out = run_watch(&[]);
    assert_eq!(out.code, 1, "still the broken project: {out:#?}");
    assert_eq!(b.version("api"), "v2");
    assert_eq!(a.container("web").0, web_before);
    assert!(
        out.stderr.contains(&format!(
            "{}/api has no health check: rollback can only react to its container exiting",
            b.name
        )),
        "{out:#?}"
    );

    // A third version of A: v1 is pruned (keep 1 previous: v2), v2 kept for rollback.
    assert!(image_id(&format!("{web}@{w1}")).is_some());
    d.push("slipway-hello:v3", &web, "stable");
    let out = run_watch(&[]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert_eq!(a.version("web"), "v3");
    assert!(
        image_id(&format!("{web}@{w1}")).is_none(),
        "v1 was pruned: {out:#?}"
    );
    assert!(
        image_id(&format!("{web}@{w2}")).is_some(),
        "v2 is kept for rollback"
    );
    assert!(out.stderr.contains("pruned"), "{out:#?}");
}

#[test]
fn unreachable_registry_and_wrong_credentials_change_nothing() {
    if !docker() || !tools() {
        return;
    }
    let s = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let host = s.url.trim_start_matches("http://").to_owned();
    let password = s
        .cli(&["registry", "password"])
        .ok()
        .stdout
        .trim()
        .to_owned();
    let mut d = Docker::new(tmp.path());
    d.login(&host, &password);
    let repo = format!("{host}/team/{}", app_name("locked"));
    d.push("slipway-hello:v1", &repo, "stable");
    d.push("slipway-hello:v2", &repo, "stable");
    let gone = format!("127.0.0.1:{}/x/{}", free_port(), app_name("gone"));
    d.repos.push(gone.clone());
    d.cmd(&["tag", "slipway-hello:v1", &format!("{gone}:v1")])
        .ok();
    // The watched service runs v1 of `repo` (the registry has v2).
    d.cmd(&["tag", "slipway-hello:v1", &format!("{repo}:stable")])
        .ok();

    let p = Project::new(
        tmp.path(),
        "wu",
        &format!(
            "services:\n  locked:\n    image: {repo}:stable\n    labels: [\"slipway.watch=true\"]\n  gone:\n    image: {gone}:v1\n    labels: [\"slipway.watch=true\"]\n"
        ),
    );
    p.up(&[]);
    let before = (p.container("locked").0, p.container("gone").0);
    let w = Watch::new(tmp.path());
    let wrong = base64_encode(&format!("slipway:{password}x"));
    std::fs::write(
        w.docker_config.join("config.json"),
        format!(r#"{{"auths":{{"{host}":{{"auth":"{wrong}"}}}}}}"#),
    )
    .unwrap();

    // Daemon mode, bounded: five cycles, each one clear line per service, nothing changed.
    let log = tmp.path().join("watch.log");
    let out = w.run(&[
        "--project",
        p.dir.to_str().unwrap(),
        "--interval",
        "100ms",
        "--cycles",
        "5",
        "--log-file",
        log.to_str().unwrap(),
    ]);
    assert_eq!(
        out.code, 0,
        "the daemon keeps running and stops after its cycles: {out:#?}"
    );
    let lines = log_lines(&log);
    let errors: Vec<&Value> = lines.iter().filter(|l| l["level"] == "ERROR").collect();
    let locked: Vec<&str> = errors
        .iter()
        .filter(|l| l["fields"]["service"] == "locked")
        .map(|l| message(l))
        .collect();
    let gone_l: Vec<&str> = errors
        .iter()
        .filter(|l| l["fields"]["service"] == "gone")
        .map(|l| message(l))
        .collect();
    assert_eq!(locked.len(), 5, "{locked:#?}");
    assert_eq!(gone_l.len(), 5, "{gone_l:#?}");
    assert!(
        locked
            .iter()
            .all(|m| m.contains("refused the credentials") && m.contains("nothing changed")),
        "{locked:#?}"
    );
    assert!(
        gone_l
            .iter()
            .all(|m| m.contains("unreachable") && m.contains("nothing changed")),
        "{gone_l:#?}"
    );
    assert_eq!(errors.len(), 10, "no other error lines: {errors:#?}");
    assert_eq!(
        (p.container("locked").0, p.container("gone").0),
        before,
        "nothing was recreated"
    );
    assert_eq!(p.version("locked"), "v1");
    assert_eq!(p.version("gone"), "v1");

    // --once reports the error in its exit code.
    let out = w.run(&["--project", p.dir.to_str().unwrap(), "--once"]);
    assert_eq!(out.code, 1, "{out:#?}");
}

/// An HTTPS registry: Slipway's with `--tls-auto` on a non-loopback address (a veth the test
/// makes), so the docker daemon and the watcher both treat it as secure: TLS only, verified.
/// Without its CA the watcher logs one clear line per check naming the registry and where
/// the CA goes, changes nothing and keeps running; with the CA in
/// `/etc/docker/certs.d/HOST:PORT/ca.crt` (where the daemon reads it too) it sees the new
/// digest over HTTPS and the service is updated, the daemon pulling over HTTPS.
#[test]
fn https_registry_trusted_through_certs_d() {
    if !docker() || !tools() {
        return;
    }
    let Some(net) = TestNet::create() else {
        panic!("cannot create a test network namespace and veth pair (needs root and `ip`)");
    };
    let s = Server::start_with(&["--api-addr", &format!("{}:0", net.addr), "--tls-auto"]);
    let port = s.url.rsplit(':').next().unwrap().to_owned();
    let remote = format!("{}:{port}", net.addr);
    let ca = s.cli(&["registry", "ca"]).ok().stdout;
    let certs = PathBuf::from(format!("/etc/docker/certs.d/{remote}"));
    std::fs::create_dir_all(&certs).unwrap();
    let _certs = RemoveDir(certs.clone());
    std::fs::write(certs.join("ca.crt"), &ca).unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let password = s
        .cli(&["registry", "password"])
        .ok()
        .stdout
        .trim()
        .to_owned();
    let mut d = Docker::new(tmp.path());
    d.login(&remote, &password);
    let repo = format!("{remote}/team/{}", app_name("tls"));
    d.push("slipway-hello:v1", &repo, "stable");
    let p = Project::new(
        tmp.path(),
        "wt",
        &format!(
            "services:\n  web:\n    image: {repo}:stable\n    labels: [\"slipway.watch=true\"]\n{HEALTHY_WEB}"
        ),
    );
    p.up(&[]);
    let mut w = Watch::new(tmp.path());
    w.use_helper(tmp.path(), &password);
    let v2 = d.push("slipway-hello:v2", &repo, "stable");
    let before = p.container("web").0;

    // Certificates from a directory without this registry's CA: untrusted, nothing changed.
    let elsewhere = tmp.path().join("certs.d");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let log = tmp.path().join("untrusted.log");
    let dir = p.dir.to_str().unwrap();
    let out = w.run(&[
        "--project",
        dir,
        "--certs-dir",
        elsewhere.to_str().unwrap(),
        "--interval",
        "100ms",
        "--cycles",
        "3",
        "--log-file",
        log.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "the daemon keeps running: {out:#?}");
    let lines = log_lines(&log);
    let errors: Vec<&str> = lines
        .iter()
        .filter(|l| l["level"] == "ERROR")
        .map(message)
        .collect();
    assert_eq!(errors.len(), 3, "one line per check: {errors:#?}");
    let ca_file = format!("{}/{remote}/ca.crt", elsewhere.display());
    assert!(
        errors
            .iter()
            .all(|m| m.contains(&format!("registry {remote}"))
                && m.contains("does not trust")
                && m.contains("unknown authority")
                && m.contains(&ca_file)
                && m.contains("nothing changed")),
        "{errors:#?}"
    );
    assert_eq!(p.container("web").0, before, "nothing was recreated");
    assert_eq!(p.version("web"), "v1");
    let out = w.run(&[
        "--project",
        dir,
        "--certs-dir",
        elsewhere.to_str().unwrap(),
        "--once",
    ]);
    assert_eq!(out.code, 1, "{out:#?}");

    // The CA where Docker keeps it (the default): the new digest is seen over HTTPS, pulled
    // and running, healthy.
    let out = w.run(&["--project", dir, "--once", "--health-timeout", "60s"]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(out.stderr.contains("updated to"), "{out:#?}");
    assert_eq!(p.version("web"), "v2");
    assert_eq!(
        p.inspect("web", "{{.Config.Image}}"),
        format!("{repo}@{v2}")
    );
    assert_eq!(p.inspect("web", "{{.State.Health.Status}}"), "healthy");
    let st = w.status();
    assert_eq!(
        status_of(&st, &p.name, "web")["running_digest"],
        v2.as_str()
    );
}

#[test]
fn log_file_stays_under_its_cap_over_1000_checks() {
    if !docker() || !tools() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut d = Docker::new(tmp.path());
    let gone = format!("127.0.0.1:{}/x/{}", free_port(), app_name("gone"));
    d.repos.push(gone.clone());
    d.cmd(&["tag", "slipway-hello:v1", &format!("{gone}:v1")])
        .ok();
    let p = Project::new(
        tmp.path(),
        "wl",
        &format!(
            "services:\n  gone:\n    image: {gone}:v1\n    labels: [\"slipway.watch=true\"]\n"
        ),
    );
    p.up(&[]);
    let w = Watch::new(tmp.path());
    let log = tmp.path().join("cap.log");
    let cap = 4096u64;
    let out = w.run(&[
        "--project",
        p.dir.to_str().unwrap(),
        "--interval",
        "1ms",
        "--cycles",
        "1000",
        "--log-file",
        log.to_str().unwrap(),
        "--log-max-bytes",
        &cap.to_string(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr.lines().last().unwrap_or(""));
    let backup = tmp.path().join("cap.log.1");
    let len = std::fs::metadata(&log).unwrap().len();
    let blen = std::fs::metadata(&backup).unwrap().len();
    assert!(
        len <= cap && blen <= cap,
        "log {len} bytes, backup {blen} bytes, cap {cap}"
    );
    // Every line is whole JSON; the last check is at the end; stderr saw all 1000 checks.
    let lines = log_lines(&log);
    assert!(
        lines
            .iter()
            .any(|l| message(l) == "slipway watch stopped" && l["fields"]["cycles"] == 1000),
        "{lines:?}"
    );
    let checks = out
        .stderr
        .lines()
        .filter(|l| l.contains("cannot check"))
        .count();
    assert_eq!(checks, 1000);
}

fn base64_encode(s: &str) -> String {
    let out = Command::new("base64")
        .arg("-w0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(s.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}
