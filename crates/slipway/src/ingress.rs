//! `slipway ingress` (the load balancer process) and how `slipway server` starts it or
//! re-attaches to one that is already running.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use slipway_ingress::client::IngressClient;
use slipway_ingress::{IngressOptions, ProxyOptions};

/// Default listener of the ingress (the ALB's port 80 role; 8080 needs no privileges).
pub const DEFAULT_INGRESS_ADDR: &str = "0.0.0.0:8080";

#[derive(Debug, Args)]
pub struct IngressArgs {
    /// Where the routing table, control socket and access log live.
    #[arg(long)]
    data_dir: PathBuf,
    /// Listener address (repeatable).
    #[arg(long = "addr", default_value = DEFAULT_INGRESS_ADDR)]
    addrs: Vec<SocketAddr>,
    /// JSON access log (one line per request, capped and rotated); `off` to disable.
    #[arg(long, default_value = "access.log")]
    access_log: String,
    /// Cap of the access log file before it is rotated.
    #[arg(long, default_value_t = 50 * 1024 * 1024)]
    access_log_max_bytes: u64,
    /// Largest accepted request body in bytes (413 beyond).
    #[arg(long, default_value_t = 100 * 1024 * 1024)]
    max_body: u64,
    /// Worker threads (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
}

/// Runs the ingress in this process (its own runtime, so `--workers` applies).
pub fn run(a: IngressArgs) -> Result<ExitCode> {
    crate::server::init_logging(false);
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(w) = a.workers {
        rt.worker_threads(w.max(1));
    }
    let rt = rt.enable_all().build()?;
    let access_log = (a.access_log != "off").then(|| {
        let p = PathBuf::from(&a.access_log);
        if p.is_absolute() {
            p
        } else {
            a.data_dir.join(p)
        }
    });
    let opts = IngressOptions {
        addrs: a.addrs,
        data_dir: a.data_dir,
        access_log,
        access_log_max_bytes: a.access_log_max_bytes,
        proxy: ProxyOptions {
            max_body: a.max_body,
            ..Default::default()
        },
    };
    rt.block_on(async move {
        let shutdown = async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
            }
        };
        slipway_ingress::run(opts, shutdown).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The ingress the server uses, and the child process when the server started it.
pub struct Supervised {
    pub client: IngressClient,
    dir: PathBuf,
    addr: SocketAddr,
    max_body: u64,
    child: Option<Child>,
}

fn spawn(dir: &Path, addr: SocketAddr, max_body: u64) -> Result<Child> {
    std::fs::create_dir_all(dir)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("ingress.log"))?;
    let exe =
        std::env::current_exe().context("cannot find the slipway binary to start the ingress")?;
    let child = std::process::Command::new(exe)
        .arg("ingress")
        .arg("--data-dir")
        .arg(dir)
        .arg("--addr")
        .arg(addr.to_string())
        .arg("--max-body")
        .arg(max_body.to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: signals meant for the server (Ctrl-C in a terminal) do not
        // stop the data plane.
        .process_group(0)
        .spawn()
        .context("cannot start the ingress process")?;
    Ok(child)
}

impl Supervised {
    /// Re-attaches to a running ingress, or starts one and waits until it answers.
    pub async fn start(dir: PathBuf, addr: SocketAddr, max_body: u64) -> Result<Self> {
        let client = IngressClient::new(&dir);
        if client.ping().await {
            tracing::info!(dir = %dir.display(), "re-attached to the running ingress");
            return Ok(Self {
                client,
                dir,
                addr,
                max_body,
                child: None,
            });
        }
        let mut s = Self {
            client,
            dir,
            addr,
            max_body,
            child: None,
        };
        s.respawn().await?;
        Ok(s)
    }

    async fn respawn(&mut self) -> Result<()> {
        let _ = std::fs::remove_file(slipway_ingress::addr_path(&self.dir));
        let mut child = spawn(&self.dir, self.addr, self.max_body)?;
        for _ in 0..200 {
            if self.client.ping().await {
                tracing::info!(pid = child.id(), listen = %self.listen().unwrap_or_default(), "ingress started");
                self.child = Some(child);
                return Ok(());
            }
            if let Some(status) = child.try_wait()? {
                let log = std::fs::read_to_string(self.dir.join("ingress.log")).unwrap_or_default();
                let last = log.lines().last().unwrap_or("").to_owned();
                bail!(
                    "the ingress exited ({status}) at start: {last}; pick another --ingress-addr or use --no-ingress"
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        bail!(
            "the ingress did not answer on its control socket within 5 s (see {})",
            self.dir.join("ingress.log").display()
        )
    }

    /// The addresses the ingress listens on.
    pub fn listen(&self) -> Option<String> {
        std::fs::read_to_string(slipway_ingress::addr_path(&self.dir))
            .ok()
            .map(|s| s.trim().to_owned())
    }

    /// Restarts the ingress if it died. Returns true when it had to.
    pub async fn check(&mut self) -> bool {
        if let Some(c) = &mut self.child
            && let Ok(Some(status)) = c.try_wait()
        {
            tracing::warn!(%status, "the ingress exited");
            self.child = None;
        }
        if self.client.ping().await {
            return false;
        }
        tracing::warn!("the ingress is not answering; starting it again");
        if let Err(e) = self.respawn().await {
            tracing::error!(error = %e, "cannot restart the ingress");
        }
        true
    }
}
