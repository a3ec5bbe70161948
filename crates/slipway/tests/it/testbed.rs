//! A test bed of several hosts on this machine: each host is a real Docker daemon in its
//! own network namespace, linked by a veth pair to a bridge (the "LAN", `10.78.R.0/24`), and
//! runs `slipway agent` there. The server runs in the machine's own namespace and reaches
//! the hosts over the bridge; the hosts pull images from the server's registry only.
//!
//! Everything is torn down on drop, and only what the bed started is killed (by PID).
//! Needs root (network namespaces, iptables); without it the tests are skipped, unless
//! `SLIPWAY_REQUIRE_DOCKER=1`, where that is a failure.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::*;

fn run(cmd: &mut Command) -> std::process::Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn sh(args: &[&str]) -> std::process::Output {
    run(Command::new(args[0]).args(&args[1..]))
}

#[track_caller]
fn must(args: &[&str]) {
    let o = sh(args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// True when this process may build a test bed (root, `ip netns`, `nsenter`, `dockerd`).
pub fn available() -> bool {
    let root = sh(&["id", "-u"]).stdout == b"0\n";
    let tools = ["ip", "nsenter", "dockerd", "iptables"].iter().all(|t| {
        sh(&["sh", "-c", &format!("command -v {t}")])
            .status
            .success()
    });
    if root && tools {
        return true;
    }
    if std::env::var("SLIPWAY_REQUIRE_DOCKER").is_ok_and(|v| v == "1") {
        panic!("the hosts test bed needs root, ip, nsenter, dockerd and iptables");
    }
    eprintln!("skipping: the hosts test bed needs root, ip, nsenter, dockerd and iptables");
    false
}

/// One host of the bed.
pub struct BedHost {
    pub ns: String,
    /// The bridge side of its veth.
    veth: String,
    pub sock: String,
    dockerd: Option<Child>,
    agent: Option<Child>,
    dir: PathBuf,
}

impl BedHost {
    /// `docker ARGS` against this host's engine.
    pub fn docker(&self, args: &[&str]) -> std::process::Output {
        run(Command::new("docker")
            .arg("-H")
            .arg(format!("unix://{}", self.sock))
            .args(args))
    }

    /// Containers of a cluster on this host: (id, task, running).
    pub fn containers(&self, cluster: &str) -> Vec<(String, String, bool)> {
        let o = self.docker(&[
            "ps",
            "-a",
            "--filter",
            &format!("label=slipway.cluster={cluster}"),
            "--format",
            "{{.ID}}\t{{.Label \"slipway.task\"}}\t{{.State}}",
        ]);
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                (f.len() == 3).then(|| (f[0].to_owned(), f[1].to_owned(), f[2] == "running"))
            })
            .collect()
    }

    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }
}

/// The bed: a bridge and its hosts.
pub struct TestBed {
    pub bridge: String,
    /// The bridge's address: what hosts reach the server at.
    pub gateway: String,
    subnet: String,
    pub hosts: Vec<BedHost>,
    _tmp: tempfile::TempDir,
}

impl TestBed {
    /// A bed of `n` hosts, each with its engine running (agents are started separately).
    pub fn new(n: usize) -> TestBed {
        let tmp = tempfile::Builder::new()
            .prefix("slwbed")
            .tempdir_in("/tmp")
            .unwrap();
        // A bridge name (and subnet) no other bed holds: two beds of one run (or a bed and
        // another process's) may draw the same number; the kernel's "exists" says so.
        let mut r = 0u8;
        for _ in 0..50 {
            r = 1 + rand::random::<u8>() % 250;
            let o = sh(&["ip", "link", "add", &format!("slwb{r}"), "type", "bridge"]);
            if o.status.success() {
                break;
            }
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(err.contains("File exists"), "ip link add slwb{r}: {err}");
            r = 0;
        }
        assert_ne!(r, 0, "no free test-bed bridge name after 50 tries");
        let bridge = format!("slwb{r}");
        let subnet = format!("10.78.{r}.0/24");
        let gateway = format!("10.78.{r}.1");
        must(&[
            "ip",
            "addr",
            "add",
            &format!("{gateway}/24"),
            "dev",
            &bridge,
        ]);
        must(&["ip", "link", "set", &bridge, "up"]);
        // Docker drops forwarded traffic by default; bridged traffic passes iptables here.
        must(&[
            "iptables", "-I", "FORWARD", "-i", &bridge, "-o", &bridge, "-j", "ACCEPT",
        ]);
        let driver =
            String::from_utf8_lossy(&sh(&["docker", "info", "--format", "{{.Driver}}"]).stdout)
                .trim()
                .to_owned();
        let mut bed = TestBed {
            bridge,
            gateway,
            subnet,
            hosts: Vec::new(),
            _tmp: tmp,
        };
        for i in 1..=n {
            let ns = format!("slw{r}h{i}");
            let veth = format!("vslw{r}h{i}");
            let ip = format!("10.78.{r}.{}", 10 + i);
            must(&["ip", "netns", "add", &ns]);
            must(&[
                "ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ]);
            must(&["ip", "link", "set", &veth, "master", &bed.bridge, "up"]);
            let nsf = format!("--net=/var/run/netns/{ns}");
            must(&[
                "nsenter",
                &nsf,
                "sh",
                "-c",
                &format!(
                    "ip addr add {ip}/24 dev eth0 && ip link set eth0 up && ip link set lo up && ip route add default via {}",
                    bed.gateway
                ),
            ]);
            let dir = bed._tmp.path().join(format!("h{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            let cfg = dir.join("daemon.json");
            std::fs::write(
                &cfg,
                serde_json::json!({
                    "storage-driver": driver,
                    "mtu": 1400,
                    // The server's registry answers plain HTTP on the LAN.
                    "insecure-registries": [bed.subnet],
                })
                .to_string(),
            )
            .unwrap();
            let sock = dir.join("docker.sock").display().to_string();
            let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
            let dockerd = Command::new("nsenter")
                .arg(&nsf)
                .arg("dockerd")
                .arg("--config-file")
                .arg(&cfg)
                .arg("--data-root")
                .arg(dir.join("data"))
                .arg("--exec-root")
                .arg(dir.join("exec"))
                .arg("-H")
                .arg(format!("unix://{sock}"))
                .arg("--pidfile")
                .arg(dir.join("docker.pid"))
                .arg("--containerd-namespace")
                .arg(&ns)
                .arg("--containerd-plugins-namespace")
                .arg(format!("{ns}p"))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start dockerd in its namespace");
            bed.hosts.push(BedHost {
                ns,
                veth,
                sock,
                dockerd: Some(dockerd),
                agent: None,
                dir,
            });
        }
        for h in &bed.hosts {
            wait_for(Duration::from_secs(60), "a host's engine to answer", || {
                h.docker(&["info", "--format", "{{.ID}}"])
                    .status
                    .success()
                    .then_some(())
            });
        }
        bed
    }

    /// Starts host `i`'s agent (joining with `token` the first time), with `extra` flags.
    pub fn start_agent(&mut self, i: usize, server: &str, token: Option<&str>, extra: &[&str]) {
        let h = &mut self.hosts[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(h.dir.join("agent.log"))
            .unwrap();
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/var/run/netns/{}", h.ns))
            .arg("env")
            .arg(format!("DOCKER_HOST=unix://{}", h.sock))
            .arg(&*BIN)
            .args(["agent", "--server", server, "--data-dir"])
            .arg(h.dir.join("agent"))
            .args(["--name", &format!("host{}", i + 1)]);
        if let Some(t) = token {
            cmd.args(["--join-token", t]);
        }
        cmd.args(extra);
        let child = cmd
            .env("SLIPWAY_LOG", "info")
            .env_remove("SLIPWAY_SERVER")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the agent");
        h.agent = Some(child);
    }

    /// Runs an agent on host `i` with its state in `data` (under the bed's directory) and
    /// `extra` flags until it exits (it is killed after `timeout`): (exit code, stderr).
    pub fn run_agent(
        &self,
        i: usize,
        server: &str,
        data: &str,
        extra: &[&str],
        timeout: Duration,
    ) -> (Option<i32>, String) {
        let h = &self.hosts[i];
        let err = h.dir.join(format!("{data}.stderr"));
        let mut child = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", h.ns))
            .arg("env")
            .arg(format!("DOCKER_HOST=unix://{}", h.sock))
            .arg(&*BIN)
            .args(["agent", "--server", server, "--data-dir"])
            .arg(h.dir.join(data))
            .args(extra)
            .env_remove("SLIPWAY_SERVER")
            .env_remove("SLIPWAY_JOIN_TOKEN")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .expect("start an agent");
        let deadline = std::time::Instant::now() + timeout;
        let code = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st.code();
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        (code, std::fs::read_to_string(err).unwrap_or_default())
    }

    /// The data directory of host `i`'s own agent.
    pub fn agent_dir(&self, i: usize) -> PathBuf {
        self.hosts[i].dir.join("agent")
    }

    /// Waits for host `i`'s agent to exit; its exit code.
    pub fn wait_agent(&mut self, i: usize, timeout: Duration) -> Option<i32> {
        let h = &mut self.hosts[i];
        let mut child = h.agent.take()?;
        wait_for(timeout, "the agent to exit", || {
            child.try_wait().ok().flatten().map(|s| s.code())
        })
    }

    /// Cuts host `i` off the LAN (its veth down): to the cluster it is gone; its engine,
    /// containers and agent keep running.
    pub fn cut(&self, i: usize) {
        must(&["ip", "link", "set", &self.hosts[i].veth, "down"]);
    }

    pub fn restore(&self, i: usize) {
        must(&["ip", "link", "set", &self.hosts[i].veth, "up"]);
    }
}

impl Drop for TestBed {
    fn drop(&mut self) {
        for h in &mut self.hosts {
            if let Some(mut c) = h.agent.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
            // Containers first (their processes outlive a killed engine).
            let ids = h.docker(&["ps", "-aq"]);
            let ids: Vec<String> = String::from_utf8_lossy(&ids.stdout)
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids.iter().map(String::as_str));
                let _ = h.docker(&args);
            }
            if let Some(mut d) = h.dockerd.take() {
                let _ = sh(&["kill", "-TERM", &d.id().to_string()]);
                for _ in 0..100 {
                    if d.try_wait().ok().flatten().is_some() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                let _ = d.kill();
                let _ = d.wait();
            }
            let _ = sh(&["ip", "link", "del", &h.veth]);
            let _ = sh(&["ip", "netns", "del", &h.ns]);
        }
        let _ = sh(&[
            "iptables",
            "-D",
            "FORWARD",
            "-i",
            &self.bridge,
            "-o",
            &self.bridge,
            "-j",
            "ACCEPT",
        ]);
        let _ = sh(&["ip", "link", "del", &self.bridge]);
    }
}

/// Pushes a local image to the server's registry as `REPO:TAG`; the reference to deploy.
pub fn push_to_server(s: &Server, local: &str, repo: &str, tag: &str) -> String {
    let port = s.url.rsplit(':').next().unwrap();
    let registry = format!("127.0.0.1:{port}");
    let image = format!("{registry}/{repo}:{tag}");
    let config = s.dir.path().join("docker-config");
    std::fs::create_dir_all(&config).unwrap();
    let login = Command::new("docker")
        .arg("--config")
        .arg(&config)
        .args(["login", &registry, "-u", "admin", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .unwrap()
                .write_all(s.registry_password().as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(
        login.status.success(),
        "{}",
        String::from_utf8_lossy(&login.stderr)
    );
    must(&["docker", "tag", local, &image]);
    let o = run(Command::new("docker")
        .arg("--config")
        .arg(&config)
        .args(["push", &image]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let _ = sh(&["docker", "rmi", &image]);
    image
}
