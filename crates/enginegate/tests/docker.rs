//! The gate against the real engine with the real docker CLI (`DOCKER_BUILDKIT=0`), and a
//! throwaway registry (Debian's `docker-registry`) on a free loopback port.
//!
//! Skipped, with the reason printed, when docker (or the registry binary) is missing,
//! unless `SLIPWAY_REQUIRE_DOCKER=1` (then a failure). Everything the tests create (images,
//! the registry process, sockets) is removed at the end, by id.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use slipway_enginegate::{Gate, GateConfig, GateHandle, JOB_LABEL, Upstream};

const SUMMARY: &str = "may only build, tag, push, pull and inspect images";

fn require() -> bool {
    std::env::var("SLIPWAY_REQUIRE_DOCKER").is_ok_and(|v| v == "1")
}

/// Whether the engine (and `docker-registry` if `registry`) can be used here.
fn available(registry: bool) -> bool {
    let docker = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let reg = !registry || Path::new("/usr/bin/docker-registry").exists();
    if docker && reg {
        return true;
    }
    let why = if docker {
        "/usr/bin/docker-registry is missing"
    } else {
        "no docker CLI or engine"
    };
    if require() {
        panic!("SLIPWAY_REQUIRE_DOCKER=1 but {why}");
    }
    eprintln!("skipping: {why}");
    false
}

fn unique() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{}-{nanos}", std::process::id())
}

/// The host's engine, directly (setup and cleanup only).
fn host(args: &[&str]) -> Output {
    Command::new("docker").args(args).output().unwrap()
}

/// A job's gate, its runtime and its docker CLI environment.
struct Job {
    rt: tokio::runtime::Runtime,
    gate: Option<GateHandle>,
    config_dir: PathBuf,
}

impl Job {
    fn start(dir: &Path, name: &str) -> Job {
        Self::start_with(dir, name, Vec::new())
    }

    fn start_with(dir: &Path, name: &str, repositories: Vec<String>) -> Job {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let sock = dir.join(format!("{name}.sock"));
        let mut config = GateConfig::unix(name, &sock).unwrap();
        config.upstream = Upstream::from_env().unwrap();
        config.repositories = repositories;
        let gate = rt.block_on(Gate::start(config)).unwrap();
        let config_dir = dir.join(format!("{name}-docker-config"));
        std::fs::create_dir_all(&config_dir).unwrap();
        Job {
            rt,
            gate: Some(gate),
            config_dir,
        }
    }

    fn gate(&self) -> &GateHandle {
        self.gate.as_ref().unwrap()
    }

    /// `docker ARGS` as the job runs it.
    fn docker(&self, args: &[&str]) -> Output {
        self.docker_buildkit(args, Some("0"))
    }

    /// `docker ARGS` with `DOCKER_BUILDKIT` set to this (or unset).
    fn docker_buildkit(&self, args: &[&str], buildkit: Option<&str>) -> Output {
        let mut cmd = Command::new("docker");
        match buildkit {
            Some(v) => cmd.env("DOCKER_BUILDKIT", v),
            None => cmd.env_remove("DOCKER_BUILDKIT"),
        };
        cmd.args(args)
            .env("DOCKER_HOST", self.gate().docker_host())
            .env("DOCKER_CONFIG", &self.config_dir)
            .env_remove("DOCKER_CONTEXT")
            .output()
            .unwrap()
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let o = self.docker(args);
        assert!(
            o.status.success(),
            "docker {args:?} failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Runs `docker ARGS`, which must fail; returns its stderr.
    #[track_caller]
    fn refused(&self, args: &[&str]) -> String {
        let o = self.docker(args);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(!o.status.success(), "docker {args:?} succeeded: {err}");
        err
    }

    fn stop(mut self) -> Vec<String> {
        let gate = self.gate.take().unwrap();
        let images = gate.images();
        let sock = gate.unix_path().unwrap().to_path_buf();
        self.rt.block_on(gate.stop());
        assert!(!sock.exists(), "the socket is removed on stop");
        images
    }
}

/// Images to remove at the end, whatever happens.
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for image in &self.0 {
            let _ = host(&["rmi", "-f", image]);
        }
    }
}

/// A throwaway registry, killed (by its pid) on drop.
struct Registry {
    child: Child,
    addr: String,
}

impl Registry {
    fn start(dir: &Path) -> Registry {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: {addr}\n",
                dir.join("registry").display()
            ),
        )
        .unwrap();
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut reg = Registry { child, addr };
        for _ in 0..200 {
            if std::net::TcpStream::connect(&reg.addr).is_ok() {
                return reg;
            }
            if let Ok(Some(status)) = reg.child.try_wait() {
                panic!("docker-registry exited: {status}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = reg.child.kill();
        panic!("docker-registry did not listen on {}", reg.addr);
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A build context with a small file, `FROM scratch` (nothing is pulled), whose Dockerfile
/// tries to claim another job's label.
fn context(dir: &Path, name: &str, content: &str) -> PathBuf {
    let ctx = dir.join(name);
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("hello.txt"), content).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY hello.txt /\nLABEL slipway.job=someone-else\n",
    )
    .unwrap();
    ctx
}

#[test]
fn a_job_builds_tags_inspects_pushes_and_pulls_its_image() {
    if !available(true) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let u = unique();
    let reg = Registry::start(dir.path());
    let local = format!("slipway-gate-it-{u}:v1");
    let remote = format!("{}/slipway-gate-it-{u}:v1", reg.addr);
    let other = format!("slipway-gate-other-{u}:v1");
    let mut cleanup = Cleanup(vec![local.clone(), remote.clone(), other.clone()]);

    // An image on the engine that no job built.
    let ctx = context(dir.path(), "other", "not the job's\n");
    let o = host(&["build", "-q", "-t", &other, ctx.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let job = Job::start(dir.path(), &format!("it-a-{u}"));
    let ctx = context(dir.path(), "ctx", &format!("hello from {u}\n"));
    job.ok(&["build", "-t", &local, ctx.to_str().unwrap()]);
    let built = job.gate().images();
    assert_eq!(built.len(), 1, "the build's id is in scope: {built:?}");
    cleanup.0.extend(built.clone());

    // The label names the job, whatever the Dockerfile says (checked on the host's engine).
    let label = host(&[
        "image",
        "inspect",
        "--format",
        &format!("{{{{index .Config.Labels \"{JOB_LABEL}\"}}}}"),
        &local,
    ]);
    assert_eq!(
        String::from_utf8_lossy(&label.stdout).trim(),
        format!("it-a-{u}")
    );

    job.ok(&["tag", &local, &remote]);
    let id = job.ok(&["image", "inspect", "--format", "{{.Id}}", &remote]);
    assert_eq!(id.trim(), built[0]);
    // Only the job's images are listed.
    let listed = job.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(listed.contains(&local), "{listed}");
    assert!(!listed.contains(&other), "{listed}");

    job.ok(&["login", "-u", "ci", "-p", "secret", &reg.addr]);
    job.ok(&["push", &remote]);

    // Another job pulls it: then it is in that job's scope, and it may tag it.
    let o = host(&["rmi", &remote]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let job_b = Job::start(dir.path(), &format!("it-b-{u}"));
    let err = job_b.refused(&["tag", &local, &format!("{remote}-b")]);
    assert!(
        err.contains("was not built, pulled or tagged by this job"),
        "{err}"
    );
    job_b.ok(&["pull", &remote]);
    assert_eq!(job_b.gate().images(), built, "the pulled id is in scope");
    job_b.ok(&["image", "inspect", &remote]);
    let retag = format!("{remote}-b");
    cleanup.0.push(retag.clone());
    job_b.ok(&["tag", &remote, &retag]);
    job_b.ok(&["rmi", &retag]);

    // Not the job's: refused with the message.
    let err = job.refused(&["tag", &other, &format!("{}/stolen-{u}:v1", reg.addr)]);
    assert!(
        err.contains("was not built, pulled or tagged by this job"),
        "{err}"
    );
    assert!(err.contains(SUMMARY), "{err}");
    let err = job.refused(&["push", &other]);
    assert!(
        err.contains("was not built, pulled or tagged by this job"),
        "{err}"
    );
    let err = job.refused(&["rmi", &other]);
    assert!(
        err.contains("was not built, pulled or tagged by this job"),
        "{err}"
    );
    assert!(host(&["image", "inspect", &other]).status.success());

    job_b.stop();
    assert_eq!(job.stop(), built);
}

#[test]
fn a_job_cannot_run_exec_mount_or_list_containers() {
    if !available(false) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let u = unique();
    let image = format!("slipway-gate-refused-{u}:v1");
    let mut cleanup = Cleanup(vec![image.clone()]);
    let repo = format!("slipway-gate-refused-{u}");
    let job = Job::start_with(dir.path(), &format!("it-r-{u}"), vec![repo.clone()]);
    let ctx = context(dir.path(), "ctx", "x\n");
    job.ok(&["build", "-t", &image, ctx.to_str().unwrap()]);
    cleanup.0.extend(job.gate().images());

    // Names outside the job's repositories.
    let elsewhere = format!("slipway-gate-elsewhere-{u}:v1");
    cleanup.0.push(elsewhere.clone());
    let err = job.refused(&["tag", &image, &elsewhere]);
    assert!(err.contains("outside this job's repositories"), "{err}");
    let err = job.refused(&["build", "-t", &elsewhere, ctx.to_str().unwrap()]);
    assert!(err.contains("outside this job's repositories"), "{err}");
    let again = format!("{repo}:v2");
    cleanup.0.push(again.clone());
    job.ok(&["tag", &image, &again]);

    // (command, what the message must name)
    let cases: &[(&[&str], &str)] = &[
        (
            &["run", "--rm", &image, "/hello.txt"],
            "POST /containers/create",
        ),
        (
            &["run", "--privileged", &image, "/hello.txt"],
            "POST /containers/create",
        ),
        (
            &["create", "-v", "/:/host", &image, "/hello.txt"],
            "POST /containers/create",
        ),
        (&["ps"], "GET /containers/json"),
        (
            &["exec", "some-container", "true"],
            "/containers/some-container",
        ),
        (&["volume", "ls"], "GET /volumes"),
        (&["network", "ls"], "GET /networks"),
        (&["system", "df"], "GET /system/df"),
    ];
    for (args, names) in cases {
        let err = job.refused(args);
        eprintln!("docker {args:?}: {}", err.trim());
        assert!(err.contains(SUMMARY), "docker {args:?}: {err}");
        assert!(err.contains(names), "docker {args:?}: {err}");
    }
    let err = job.refused(&["build", "--network", "host", ctx.to_str().unwrap()]);
    assert!(err.contains("--network=host"), "{err}");
    assert!(err.contains(SUMMARY), "{err}");
    // Without DOCKER_BUILDKIT the CLI follows the gate's ping (classic builder); BuildKit
    // asked for explicitly fails (no buildx here, or /session and /grpc refused).
    let o = job.docker_buildkit(&["build", "-t", &again, ctx.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = job.docker_buildkit(&["build", "-t", &again, ctx.to_str().unwrap()], Some("1"));
    assert!(!o.status.success(), "a BuildKit build went through");
    cleanup.0.extend(job.gate().images());
    // No container of the image was created on the engine.
    let made = host(&["ps", "-aq", "--filter", &format!("ancestor={image}")]);
    assert!(made.status.success());
    assert!(
        made.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&made.stdout)
    );
    // /info is trimmed.
    let info = job.ok(&["info", "--format", "{{json .}}"]);
    assert!(!info.contains("DockerRootDir\":\"/"), "{info}");
    job.stop();
}

/// One raw HTTP/1.1 request on the gate's socket; the answer's head and body.
fn raw(sock: &Path, request: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(sock).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (head.to_string(), body.to_string())
}

#[test]
fn parameters_cannot_be_smuggled_past_the_filter() {
    if !available(false) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let job = Job::start(dir.path(), &format!("it-s-{}", unique()));
    let sock = job.gate().unix_path().unwrap().to_path_buf();
    // The engine reads form values from a form body too.
    let body = "networkmode=host";
    let (status, msg) = raw(
        &sock,
        &format!(
            "POST /v1.41/build HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(status.starts_with("HTTP/1.1 403 "), "{status} {msg}");
    assert!(msg.contains("content type"), "{msg}");
    // Escaped paths.
    let (status, _) = raw(
        &sock,
        "GET /v1.41/containers%2Fjson HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n",
    );
    assert!(status.starts_with("HTTP/1.1 403 "), "{status}");
    // The ping says: classic builder.
    let (status, _) = raw(
        &sock,
        "GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n",
    );
    assert!(status.starts_with("HTTP/1.1 200 "), "{status}");
    assert!(
        status
            .to_ascii_lowercase()
            .contains("builder-version: 1\r\n"),
        "{status}"
    );
    job.stop();
}

#[test]
fn a_large_build_context_streams_through() {
    if !available(false) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let u = unique();
    let image = format!("slipway-gate-large-{u}:v1");
    let mut cleanup = Cleanup(vec![image.clone()]);
    let job = Job::start(dir.path(), &format!("it-l-{u}"));
    let ctx = context(dir.path(), "ctx", "large\n");
    // 48 MiB in the context (sent, not copied into the image).
    let chunk: Vec<u8> = (0..1 << 20)
        .map(|i: u32| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let mut big = Vec::with_capacity(48 << 20);
    for i in 0..48u8 {
        big.extend(chunk.iter().map(|b| b ^ i));
    }
    std::fs::write(ctx.join("big.bin"), &big).unwrap();
    let out = job.ok(&["build", "-t", &image, ctx.to_str().unwrap()]);
    assert!(out.contains("Sending build context"), "{out}");
    cleanup.0.extend(job.gate().images());
    assert_eq!(job.gate().images().len(), 1);
    job.stop();
}

#[test]
fn a_gate_listens_on_tcp_too_and_dropping_it_removes_its_socket() {
    if !available(false) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("both.sock");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut config = GateConfig::unix(format!("it-t-{}", unique()), &sock).unwrap();
    config.listen.push(slipway_enginegate::Listen::Tcp(
        "127.0.0.1:0".parse().unwrap(),
    ));
    let gate = rt.block_on(Gate::start(config)).unwrap();
    let tcp = format!("tcp://{}", gate.tcp_addr().unwrap());
    let docker = |args: &[&str]| {
        Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", &tcp)
            .env("DOCKER_CONFIG", dir.path())
            .output()
            .unwrap()
    };
    let o = docker(&["version", "--format", "{{.Server.Version}}"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = docker(&["ps"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains(SUMMARY));
    assert!(sock.exists());
    drop(gate);
    assert!(!sock.exists(), "dropping the handle removes the socket");
    drop(rt);
}
