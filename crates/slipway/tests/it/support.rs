//! Test support: a real `slipway server` process on an ephemeral port with its own data
//! directory, the `slipway` CLI pointed at it, Docker helpers and Debian's docker-registry as
//! a peer. Everything a test creates
//! carries its server's cluster label and is removed when the server handle drops.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `slipway` binary under test: this build's, or `$SLIPWAY_TEST_BIN` (to show that a
/// test fails on an older build).
pub static BIN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    std::env::var("SLIPWAY_TEST_BIN")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_slipway").to_owned())
});

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// True when a Docker engine is reachable. Without one the test is skipped, unless
/// `SLIPWAY_REQUIRE_DOCKER=1` (set by scripts/test.sh and CI), where that is a failure.
pub fn docker() -> bool {
    let ok = Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var("SLIPWAY_REQUIRE_DOCKER").is_ok_and(|v| v == "1") {
            panic!("the Docker engine is not reachable, and SLIPWAY_REQUIRE_DOCKER=1");
        }
        eprintln!(
            "skipping: no Docker engine reachable (set SLIPWAY_REQUIRE_DOCKER=1 to make this a failure)"
        );
        return false;
    }
    static IMAGES: Once = Once::new();
    IMAGES.call_once(|| {
        let tags = [
            "v1",
            "v2",
            "v3",
            "exit",
            "unhealthy",
            "healthcheck",
            "bad",
            "slow",
            "files",
        ];
        let images = tags.iter().map(|t| format!("slipway-hello:{t}")).chain([
            "slipway-shop-base:v1".to_owned(),
            "slipway-logrouter:v1".to_owned(),
        ]);
        let missing = images.into_iter().any(|i| {
            !Command::new("docker")
                .args(["image", "inspect", &i])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        if missing {
            let st = Command::new(repo_root().join("scripts/build-example.sh"))
                .status()
                .expect("run build-example.sh");
            assert!(st.success(), "scripts/build-example.sh failed");
        }
    });
    true
}

/// Output of one CLI run.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    fn from(o: Output) -> Self {
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "command failed: {self:#?}");
        self
    }
}

/// A running `slipway server`.
pub struct Server {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    extra: Vec<String>,
    /// Environment of the server process (beyond the test's own).
    env: Vec<(String, String)>,
    pub url: String,
    pub token: String,
    pub cluster: String,
}

impl Server {
    pub fn start() -> Server {
        Self::start_with(&[])
    }

    /// Starts a server with extra `slipway server` flags.
    pub fn start_with(extra: &[&str]) -> Server {
        Self::start_in(extra, |_| {})
    }

    /// Starts a server with extra flags, after `prepare` put what it needs in its data
    /// directory (e.g. another server's admin.token).
    /// Starts a server with extra flags and environment variables.
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Server {
        Self::start_full(extra, env, |_| {})
    }

    pub fn start_in(extra: &[&str], prepare: impl FnOnce(&Path)) -> Server {
        Self::start_full(extra, &[], prepare)
    }

    fn start_full(extra: &[&str], env: &[(&str, &str)], prepare: impl FnOnce(&Path)) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        prepare(&data);
        let mut s = Server {
            dir,
            child: None,
            extra: extra.iter().map(|x| (*x).to_owned()).collect(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            url: String::new(),
            token: String::new(),
            cluster: String::new(),
        };
        s.spawn();
        s.cluster = s.api_get("/info")["cluster"].as_str().unwrap().to_owned();
        s
    }

    /// The ingress' address (`127.0.0.1:PORT`).
    pub fn ingress(&self) -> String {
        std::fs::read_to_string(self.data_dir().join("ingress/ingress.addr"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// The ingress process id.
    pub fn ingress_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data_dir().join("ingress/ingress.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Lines of the ingress' JSON access log.
    pub fn access_log(&self) -> Vec<Value> {
        std::fs::read_to_string(self.data_dir().join("ingress/access.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn spawn(&mut self) {
        let data = self.data_dir();
        let _ = std::fs::remove_file(data.join("api.addr"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .unwrap();
        let child = Command::new(&*BIN)
            .args(["server", "--data-dir"])
            .arg(&data)
            .args(if self.extra.iter().any(|a| a == "--api-addr") {
                &[][..]
            } else {
                &["--api-addr", "127.0.0.1:0"][..]
            })
            .args(["--ingress-addr", "127.0.0.1:0"])
            .args(&self.extra)
            .env("SLIPWAY_LOG", "info,slipway_controller=debug")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn slipway server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(addr) = std::fs::read_to_string(data.join("api.addr"))
                && addr.ends_with('\n')
            {
                self.url = addr.trim().to_owned();
                break;
            }
            assert!(
                Instant::now() < deadline,
                "server did not start; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.token = std::fs::read_to_string(data.join("admin.token"))
            .unwrap()
            .trim()
            .to_owned();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// `kill -9` the server.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Starts the server again on the same data directory.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Writes a manifest into the test's directory and returns its path.
    pub fn manifest(&self, text: &str) -> PathBuf {
        let p = self.dir.path().join("slipway.yml");
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Runs the CLI against this server (in the test directory, so `slipway.yml` is found).
    pub fn cli(&self, args: &[&str]) -> Out {
        self.cli_env(
            args,
            &[
                ("SLIPWAY_SERVER", &self.url),
                ("SLIPWAY_TOKEN", &self.token),
            ],
        )
    }

    /// `slipway ARGS` as a user of this server runs it (its directory, URL and token), not
    /// started: for the tests that need the process itself (stdin, pipes, signals).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&*BIN);
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("SLIPWAY_SERVER", &self.url)
            .env("SLIPWAY_TOKEN", &self.token)
            .env("HOME", self.dir.path())
            .stdin(std::process::Stdio::null());
        cmd
    }

    pub fn cli_env(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        let mut cmd = Command::new(&*BIN);
        cmd.args(args)
            .current_dir(self.dir.path())
            .env_remove("SLIPWAY_SERVER")
            .env_remove("SLIPWAY_TOKEN")
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        Out::from(cmd.output().unwrap())
    }

    /// A raw authenticated GET of the API.
    pub fn api_get(&self, path: &str) -> Value {
        let out = Command::new("curl")
            .args([
                "-fsS",
                "-H",
                &format!("Authorization: Bearer {}", self.token),
                &format!("{}/api/v1{path}", self.url),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "GET {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// A fresh push password of the admin for the built-in registry (the admin token
    /// itself is not a registry password).
    pub fn registry_password(&self) -> String {
        let (st, body) = api_call(
            self,
            "POST",
            "/registry/password",
            Some(&serde_json::json!({})),
            &[],
        );
        assert_eq!(st, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        v["password"].as_str().unwrap().to_owned()
    }

    /// Containers of this server: (id, task, revision, running).
    pub fn containers(&self) -> Vec<Container> {
        containers(&format!("slipway.cluster={}", self.cluster))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        if let Some(pid) = self.ingress_pid() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        let ids: Vec<String> = self.containers().into_iter().map(|c| c.id).collect();
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .arg("rm")
                .arg("-f")
                .args(&ids)
                .output();
        }
        if let Ok(o) = Command::new("docker")
            .args([
                "network",
                "ls",
                "-q",
                "--filter",
                &format!("label=slipway.cluster={}", self.cluster),
            ])
            .output()
        {
            let nets: Vec<String> = String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            if !nets.is_empty() {
                let _ = Command::new("docker")
                    .args(["network", "rm"])
                    .args(&nets)
                    .output();
            }
        }
        if std::thread::panicking() {
            eprintln!("---- server log ----\n{}", self.log());
        }
    }
}

#[derive(Debug, Clone)]
pub struct Container {
    pub id: String,
    pub task: String,
    pub revision: String,
    pub running: bool,
    pub ip: String,
}

/// Containers matching a label filter, as the docker CLI sees them.
pub fn containers(label: &str) -> Vec<Container> {
    let out = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            &format!("label={label}"),
            "--format",
            "{{.ID}}\t{{.Label \"slipway.task\"}}\t{{.Label \"slipway.revision\"}}\t{{.State}}",
        ])
        .output()
        .unwrap();
    let mut list: Vec<Container> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() == 4).then(|| Container {
                id: f[0].to_owned(),
                task: f[1].to_owned(),
                revision: f[2].to_owned(),
                running: f[3] == "running",
                ip: String::new(),
            })
        })
        .collect();
    let running: Vec<String> = list
        .iter()
        .filter(|c| c.running)
        .map(|c| c.id.clone())
        .collect();
    if !running.is_empty() {
        let out = Command::new("docker")
            .arg("inspect")
            .args([
                "-f",
                "{{.Id}} {{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            ])
            .args(&running)
            .output()
            .unwrap();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some((id, ip)) = line.split_once(' ')
                && let Some(c) = list.iter_mut().find(|c| id.starts_with(&c.id))
            {
                c.ip = ip.to_owned();
            }
        }
    }
    list
}

/// Polls `f` until it returns `Some`, or panics after `timeout` with `what`.
#[track_caller]
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A manifest for one web service of the example app.
pub fn web_manifest(app: &str, image: &str, count: u32, extra: &str) -> String {
    format!(
        "app: {app}\nservices:\n  web:\n    type: Load Balanced Web Service\n    image:\n      location: {image}\n      port: 8080\n    http:\n      path: /\n      healthcheck: /healthz\n    count: {count}\n    memory: 32\n{extra}"
    )
}

/// A unique app name for a test.
pub fn app_name(prefix: &str) -> String {
    let n: u32 = rand::random::<u32>() % 100_000;
    format!("{prefix}{n}")
}

/// A raw HTTP/1.1 GET over std's TcpStream (fast enough to sample many times a second).
pub fn probe(ip: &str, port: u16, path: &str) -> Option<(u16, String)> {
    probe_host(&format!("{ip}:{port}"), ip, path)
}

/// [`probe`] of `addr` (`ip:port`) with a `Host` header (ingress routes by host name).
pub fn probe_host(addr: &str, host: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let ip = host;
    let addr: std::net::SocketAddr = addr.parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(700))).ok()?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// What a load run saw.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    pub ok: u64,
    pub non_2xx: u64,
    pub errors: u64,
    pub versions: std::collections::BTreeMap<String, u64>,
    pub first_problem: Option<String>,
}

/// Constant HTTP load: `conns` keep-alive connections sending GETs to `url` until stopped or
/// `max` has passed (always bounded).
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<LoadReport>,
}

impl Load {
    pub fn start(url: &str, conns: usize, max: Duration) -> Load {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let url = url.to_owned();
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let _ = rustls::crypto::ring::default_provider().install_default();
                let client = reqwest::Client::builder()
                    .pool_max_idle_per_host(conns)
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap();
                let deadline = Instant::now() + max;
                let mut tasks = Vec::new();
                for _ in 0..conns {
                    let client = client.clone();
                    let url = url.clone();
                    let flag = flag.clone();
                    tasks.push(tokio::spawn(async move {
                        let mut r = LoadReport::default();
                        while !flag.load(Ordering::SeqCst) && Instant::now() < deadline {
                            match client.get(&url).send().await {
                                Ok(resp) => {
                                    let status = resp.status();
                                    let body = resp.text().await.unwrap_or_default();
                                    if status.is_success() {
                                        r.ok += 1;
                                        if let Some(v) = serde_json::from_str::<Value>(&body)
                                            .ok()
                                            .and_then(|v| v["version"].as_str().map(str::to_owned))
                                        {
                                            *r.versions.entry(v).or_default() += 1;
                                        }
                                    } else {
                                        r.non_2xx += 1;
                                        r.first_problem.get_or_insert(format!("{status}: {body}"));
                                    }
                                }
                                Err(e) => {
                                    r.errors += 1;
                                    r.first_problem.get_or_insert(format!("{e:?}"));
                                }
                            }
                        }
                        r
                    }));
                }
                let mut total = LoadReport::default();
                for t in tasks {
                    let r = t.await.unwrap();
                    total.ok += r.ok;
                    total.non_2xx += r.non_2xx;
                    total.errors += r.errors;
                    for (k, v) in r.versions {
                        *total.versions.entry(k).or_default() += v;
                    }
                    if total.first_problem.is_none() {
                        total.first_problem = r.first_problem;
                    }
                }
                total
            })
        });
        Load { stop, handle }
    }

    pub fn stop(self) -> LoadReport {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.handle.join().unwrap()
    }
}

/// A free TCP port on loopback (bound once, then released).
/// A port free now on every address, below the kernel's ephemeral range (32768 and up by
/// default): a port from that range can be taken meanwhile as the local port of any client
/// connection on the machine, and then a server binding `0.0.0.0:PORT` fails.
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let port = 20_000 + rand::random::<u16>() % 12_000;
        if std::net::TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000..32000");
}

/// Debian's docker-registry (distribution 2.8.2, deletes enabled) on a free loopback port,
/// stopped on drop: the peer of the registry and watch tests.
pub struct RefRegistry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub host: String,
    _dir: tempfile::TempDir,
}

impl RefRegistry {
    pub fn start() -> RefRegistry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let cfg = dir.path().join("config.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("log")).unwrap())
            .spawn()
            .expect("start docker-registry");
        let r = RefRegistry {
            child,
            host,
            _dir: dir,
        };
        wait_for(Duration::from_secs(20), "docker-registry to answer", || {
            probe("127.0.0.1", port, "/v2/").filter(|(st, _)| *st == 200)
        });
        r
    }
}

impl Drop for RefRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One authenticated API call over a plain HTTP/1.1 connection (cheap enough to fire many
/// at once from threads): `(status, body)`.
pub fn api_call(
    s: &Server,
    method: &str,
    path: &str,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> (u16, String) {
    api_call_as(s, &s.token, method, path, body, headers)
}

/// [`api_call`] with another identity's token.
pub fn api_call_as(
    s: &Server,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = s.url.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!(
        "{method} /api/v1{path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    conn.write_all(req.as_bytes()).unwrap();
    let mut buf = String::new();
    conn.read_to_string(&mut buf).unwrap();
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}
