//! `slipway ingress` (the load balancer process) and how `slipway server` starts it or
//! re-attaches to one that is already running, and starts it again when it dies (after an
//! exponential back-off while it keeps failing: [`slipway_supervise::backoff`]).

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use slipway_ingress::client::IngressClient;
use slipway_ingress::{IngressOptions, ProxyOptions, TlsOptions};

/// Default listener of the ingress (the ALB's port 80 role; 8080 needs no privileges).
pub const DEFAULT_INGRESS_ADDR: &str = "0.0.0.0:8080";

#[derive(Debug, Args)]
pub struct IngressArgs {
    /// Where the routing table, control socket and access log live.
    #[arg(long)]
    data_dir: PathBuf,
    /// Listener address, plain HTTP/1.1 and h2c (repeatable).
    #[arg(long = "addr", default_value = DEFAULT_INGRESS_ADDR)]
    addrs: Vec<SocketAddr>,
    #[command(flatten)]
    tls: IngressTlsArgs,
    /// JSON access log (one line per request, capped and rotated); `off` to disable.
    #[arg(long, default_value = "access.log")]
    access_log: String,
    /// Cap of the access log file before it is rotated.
    #[arg(long, default_value_t = 50 * 1024 * 1024)]
    access_log_max_bytes: u64,
    /// Largest accepted request body in bytes (413 beyond).
    #[arg(long, default_value_t = 100 * 1024 * 1024)]
    max_body: u64,
    /// Client connections open at once over all listeners; beyond it a new connection gets a
    /// 503 and is closed (on TLS listeners: closed).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Client connections open at once from one client address; beyond it likewise.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections_per_ip: u32,
    /// Longest wait for the next bytes of a request body, and the time a body may take
    /// before --body-min-rate counts; past either the request fails (408) and the
    /// connection is closed.
    #[arg(long, default_value = "30s", value_parser = crate::limits::positive_duration)]
    body_timeout: Duration,
    /// Bytes a second a request body must average beyond --body-timeout (a body trickled a
    /// byte at a time is cut; 0: no minimum, only the idle timeout).
    #[arg(long, default_value_t = slipway_ingress::proxy::DEFAULT_BODY_MIN_RATE)]
    body_min_rate: u32,
    /// Worker threads (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    #[command(flatten)]
    traces: crate::traces::TraceArgs,
}

/// TLS listeners of the ingress (`slipway ingress --tls-*`).
#[derive(Debug, Clone, Default, Args)]
pub struct IngressTlsArgs {
    /// TLS listener address (repeatable): HTTPS with HTTP/2 and HTTP/1.1 by ALPN. Needs
    /// --tls-cert/--tls-key or --tls-dir.
    #[arg(long = "tls-addr", value_name = "HOST:PORT")]
    pub tls_addrs: Vec<SocketAddr>,
    /// Default certificate chain (PEM): for names no --tls-dir pair matches, and clients that
    /// send no name. Reloaded when the file changes.
    #[arg(long = "tls-cert", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long = "tls-key", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Directory of NAME.crt/NAME.key pairs, one per host name (`*.example.com.crt` or
    /// `_.example.com.crt` for a wildcard); SNI picks the exact name, then the wildcard,
    /// then --tls-cert. Pairs are added, replaced and removed as the files change.
    #[arg(long = "tls-dir", value_name = "DIR")]
    pub tls_dir: Option<PathBuf>,
}

impl IngressTlsArgs {
    /// The ingress' TLS setup, or `None` without TLS listeners.
    pub fn options(&self) -> Result<Option<TlsOptions>> {
        let has_certs = self.tls_cert.is_some() || self.tls_dir.is_some();
        match (self.tls_addrs.is_empty(), has_certs) {
            (true, false) => Ok(None),
            (true, true) => bail!("a TLS certificate was given but no TLS listener address"),
            (false, false) => bail!("a TLS listener needs --tls-cert/--tls-key or --tls-dir"),
            (false, true) => Ok(Some(TlsOptions {
                addrs: self.tls_addrs.clone(),
                default_pair: self.tls_cert.clone().zip(self.tls_key.clone()),
                dir: self.tls_dir.clone(),
            })),
        }
    }

    /// The same flags for a `slipway ingress` command line, with paths made absolute.
    fn to_args(&self) -> Result<Vec<std::ffi::OsString>> {
        let mut out: Vec<std::ffi::OsString> = Vec::new();
        for a in &self.tls_addrs {
            out.push("--tls-addr".into());
            out.push(a.to_string().into());
        }
        for (flag, path) in [
            ("--tls-cert", &self.tls_cert),
            ("--tls-key", &self.tls_key),
            ("--tls-dir", &self.tls_dir),
        ] {
            if let Some(p) = path {
                out.push(flag.into());
                out.push(
                    std::path::absolute(p)
                        .with_context(|| format!("cannot resolve {}", p.display()))?
                        .into(),
                );
            }
        }
        Ok(out)
    }
}

/// Runs the ingress in this process (its own runtime, so `--workers` applies).
pub fn run(a: IngressArgs) -> Result<ExitCode> {
    crate::server::init_logging(false);
    // One worker runs on a current-thread runtime: no cross-thread wake-ups or work stealing
    // (nginx's one worker process is the same shape).
    let mut rt = match a.workers {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(w) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(w.max(1));
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let rt = rt.enable_all().build()?;
    let tls = a.tls.options()?;
    let traces = a.traces.config("slipway-ingress")?;
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
            max_connections: a.max_connections,
            max_connections_per_ip: a.max_connections_per_ip,
            body_timeout: a.body_timeout,
            body_min_rate: a.body_min_rate,
            traces,
            ..Default::default()
        },
        tls,
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

/// The ingress' limits (and trace flags) `slipway server` passes to the ingress it starts.
#[derive(Debug, Clone)]
pub struct IngressLimits {
    pub max_body: u64,
    pub max_connections: u32,
    pub max_connections_per_ip: u32,
    pub body_timeout: Duration,
    pub body_min_rate: u32,
    pub traces: crate::traces::TraceArgs,
}

impl IngressLimits {
    /// The same limits as `slipway ingress` flags.
    fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            "--max-body".into(),
            self.max_body.to_string(),
            "--max-connections".into(),
            self.max_connections.to_string(),
            "--max-connections-per-ip".into(),
            self.max_connections_per_ip.to_string(),
            "--body-timeout".into(),
            format!("{}ms", self.body_timeout.as_millis()),
            "--body-min-rate".into(),
            self.body_min_rate.to_string(),
        ];
        args.extend(self.traces.to_args());
        args
    }
}

/// The ingress the server uses, and the child process when the server started it.
pub struct Supervised {
    pub client: IngressClient,
    dir: PathBuf,
    addr: SocketAddr,
    limits: IngressLimits,
    tls: IngressTlsArgs,
    child: Option<Child>,
    /// Restart attempts that failed or were short-lived, in a row.
    failures: u32,
    /// When the last restart attempt was made (its process ran since then, if it started).
    last_attempt: Option<std::time::Instant>,
    /// No restart attempt before this.
    retry_at: Option<std::time::Instant>,
}

/// What [`Supervised::check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// The ingress answers.
    Up,
    /// It did not answer and was started again.
    Restarted,
    /// It does not answer; a restart failed or waits for its back-off.
    Down,
}

fn spawn(
    dir: &Path,
    addr: SocketAddr,
    limits: &IngressLimits,
    tls: &IngressTlsArgs,
) -> Result<Child> {
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
        .args(limits.to_args())
        .args(tls.to_args()?)
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
    pub async fn start(
        dir: PathBuf,
        addr: SocketAddr,
        limits: IngressLimits,
        tls: IngressTlsArgs,
    ) -> Result<Self> {
        tls.options()?;
        let client = IngressClient::new(&dir);
        if client.ping().await {
            tracing::info!(dir = %dir.display(), "re-attached to the running ingress");
            return Ok(Self {
                client,
                dir,
                addr,
                limits,
                tls,
                child: None,
                failures: 0,
                last_attempt: None,
                retry_at: None,
            });
        }
        let mut s = Self {
            client,
            dir,
            addr,
            limits,
            tls,
            child: None,
            failures: 0,
            last_attempt: None,
            retry_at: None,
        };
        s.respawn().await?;
        Ok(s)
    }

    async fn respawn(&mut self) -> Result<()> {
        let _ = std::fs::remove_file(slipway_ingress::addr_path(&self.dir));
        let mut child = spawn(&self.dir, self.addr, &self.limits, &self.tls)?;
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

    /// Restarts the ingress if it died, unless the back-off of its last failures says to
    /// wait: an ingress that keeps failing at start (or dying soon after) is tried again
    /// after 100 ms, doubling to 30 s.
    pub async fn check(&mut self) -> Checked {
        if let Some(c) = &mut self.child
            && let Ok(Some(status)) = c.try_wait()
        {
            tracing::warn!(%status, "the ingress exited");
            self.child = None;
        }
        if self.client.ping().await {
            return Checked::Up;
        }
        let now = std::time::Instant::now();
        if self.retry_at.is_some_and(|at| now < at) {
            return Checked::Down;
        }
        tracing::warn!("the ingress is not answering; starting it again");
        // How long what the last attempt started ran (an attempt that failed: not at all).
        let ran = self.last_attempt.map(|t| now - t).unwrap_or_default();
        let result = self.respawn().await;
        self.failures = slipway_supervise::next_failures(self.failures, ran);
        let wait = slipway_supervise::backoff(self.failures);
        self.last_attempt = result.is_ok().then_some(now);
        self.retry_at = Some(std::time::Instant::now() + wait);
        match result {
            Ok(()) => Checked::Restarted,
            Err(e) => {
                tracing::error!(error = %e, retry_in_ms = wait.as_millis() as u64, "cannot restart the ingress");
                Checked::Down
            }
        }
    }
}
