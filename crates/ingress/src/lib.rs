//! Slipway's ingress: an HTTP load balancer in front of services (the ALB part).
//!
//! It runs as its own process (`slipway ingress`), so it keeps serving while the server is
//! down or restarting. The server's controller pushes the whole routing configuration over
//! a control socket after every change: routes (host and longest path prefix) and targets,
//! each either routable or draining. Only tasks that passed their health checks are ever
//! pushed as routable; before a task is stopped it is pushed as draining, and the controller
//! waits on [`control`]'s drain call until its in-flight requests are done. The configuration
//! is persisted next to the socket and restored when the ingress restarts.
//!
//! - [`table`]: the routing configuration and its compiled, atomically swapped form.
//! - [`proxy`]: the data path (hyper), retries, passive health, accounting.
//! - [`fast`]: the HTTP/1.1 fast path of plain-text listeners (httparse, one task per
//!   connection); what it does not take goes to [`proxy`].
//! - [`upstream`]: connections to targets (per-target idle pools, connects that give up when
//!   the target leaves the table).
//! - [`control`]: the control API on a Unix socket.
//! - [`client`]: the controller's side of the control API.
//! - [`metrics`]: Prometheus counters.
//! - [`versions`]: requests weighted by version (canary, linear), sticky versions, and
//!   measurements per version.
//! - [`pace`]: the pace a request body must keep (idle timeout and minimum rate).
//! - [`linger`]: the lingering close of connections answered before their request's body
//!   was read (also used by the server's API listeners).
//! - [`tls`]: TLS listeners' certificates (files, SNI, reload) and ALPN (`h2`, `http/1.1`).
//! - `trace`: each request's W3C `traceparent` (continued or new, forwarded to the target)
//!   and, when sampled, its span, exported over OTLP (slipway-otel).
//!
//! This crate may use the network and its own files; it knows nothing of containers.

pub mod client;
pub mod control;
pub mod fast;
pub mod linger;
pub mod metrics;
pub mod pace;
pub mod proxy;
pub mod table;
pub mod tls;
pub(crate) mod trace;
pub mod upstream;
pub mod versions;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::mpsc;

pub use proxy::ProxyOptions;
pub use table::{
    ConfigError, RouteConfig, RoutingConfig, ServiceConfig, TargetConfig, VersionWeight,
};
pub use tls::{TlsError, TlsOptions};
pub use versions::VersionReport;

/// Files of the ingress inside its data directory.
pub fn socket_path(dir: &Path) -> PathBuf {
    dir.join("ingress.sock")
}
pub fn routes_path(dir: &Path) -> PathBuf {
    dir.join("ingress-routes.json")
}
pub fn addr_path(dir: &Path) -> PathBuf {
    dir.join("ingress.addr")
}
/// The TLS listeners' addresses (one line, space separated), when there are any.
pub fn tls_addr_path(dir: &Path) -> PathBuf {
    dir.join("ingress-tls.addr")
}
pub fn pid_path(dir: &Path) -> PathBuf {
    dir.join("ingress.pid")
}

/// How the ingress runs.
#[derive(Debug, Clone)]
pub struct IngressOptions {
    pub addrs: Vec<SocketAddr>,
    pub data_dir: PathBuf,
    /// JSON access log file (size-capped, rotated once), if any.
    pub access_log: Option<PathBuf>,
    pub access_log_max_bytes: u64,
    pub proxy: ProxyOptions,
    /// TLS listeners and their certificates, if any.
    pub tls: Option<TlsOptions>,
}

#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("stored routes are unreadable: {0}")]
    Routes(#[from] serde_json::Error),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

pub(crate) fn persist(path: &Path, cfg: &RoutingConfig) -> std::io::Result<()> {
    write_atomic(
        path,
        &serde_json::to_vec_pretty(cfg).map_err(std::io::Error::other)?,
    )
}

/// Runs the ingress until `shutdown` resolves.
pub async fn run(
    opts: IngressOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), IngressError> {
    std::fs::create_dir_all(&opts.data_dir)?;
    let access_log = opts
        .access_log
        .clone()
        .map(|p| spawn_access_log(p, opts.access_log_max_bytes));
    let shared = Arc::new(proxy::Shared::new(opts.proxy.clone(), access_log));

    // Restore the last configuration before accepting anything.
    let routes = routes_path(&opts.data_dir);
    let config = match std::fs::read(&routes) {
        Ok(bytes) => serde_json::from_slice::<RoutingConfig>(&bytes)?,
        Err(_) => RoutingConfig::default(),
    };
    shared.set_table(table::Table::compile(&config, &table::Table::default()));

    let tls = opts.tls.as_ref().map(tls::Tls::start).transpose()?;
    let bind = |addrs: Vec<SocketAddr>| async move {
        let mut bound = Vec::new();
        for addr in addrs {
            let l = TcpListener::bind(addr)
                .await
                .map_err(|source| IngressError::Bind { addr, source })?;
            bound.push(l);
        }
        Ok::<_, IngressError>(bound)
    };
    let bound = bind(opts.addrs.clone()).await?;
    let bound_tls = match &opts.tls {
        Some(t) => bind(t.addrs.clone()).await?,
        None => Vec::new(),
    };
    let sock = socket_path(&opts.data_dir);
    let _ = std::fs::remove_file(&sock);
    let control = UnixListener::bind(&sock)?;
    let state = control::ControlState {
        shared: shared.clone(),
        config: Arc::new(tokio::sync::Mutex::new(config)),
        persist: routes,
    };
    let local = |ls: &[TcpListener]| -> Vec<String> {
        ls.iter()
            .filter_map(|l| l.local_addr().ok())
            .map(|a| a.to_string())
            .collect()
    };
    let addrs = local(&bound);
    let tls_addrs = local(&bound_tls);
    write_atomic(
        &addr_path(&opts.data_dir),
        format!("{}\n", addrs.join(" ")).as_bytes(),
    )?;
    if tls.is_some() {
        write_atomic(
            &tls_addr_path(&opts.data_dir),
            format!("{}\n", tls_addrs.join(" ")).as_bytes(),
        )?;
    } else {
        let _ = std::fs::remove_file(tls_addr_path(&opts.data_dir));
    }
    write_atomic(
        &pid_path(&opts.data_dir),
        format!("{}\n", std::process::id()).as_bytes(),
    )?;
    tracing::info!(listen = %addrs.join(" "), listen_tls = %tls_addrs.join(" "), control = %sock.display(), "slipway ingress ready");

    let mut tasks = Vec::new();
    for l in bound {
        tasks.push(tokio::spawn(proxy::serve(l, shared.clone(), None)));
    }
    if let Some(tls) = &tls {
        for l in bound_tls {
            tasks.push(tokio::spawn(proxy::serve(
                l,
                shared.clone(),
                Some(tls.acceptor.clone()),
            )));
        }
    }
    tasks.push(tokio::spawn(async move {
        if let Err(e) = axum::serve(control, control::router(state)).await {
            tracing::error!(error = %e, "control API stopped");
        }
    }));
    shutdown.await;
    for t in tasks {
        t.abort();
    }
    let _ = std::fs::remove_file(&sock);
    drop(tls);
    Ok(())
}

/// Writes access-log lines from a channel; when the file passes `max_bytes` it is moved to
/// `FILE.1` (replacing the previous one), so the log never takes more than twice the cap.
fn spawn_access_log(path: PathBuf, max_bytes: u64) -> mpsc::Sender<String> {
    let (tx, mut rx) = mpsc::channel::<String>(8192);
    std::thread::spawn(move || {
        let open = |p: &Path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
        };
        let Ok(mut file) = open(&path) else { return };
        let mut size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut out = std::io::BufWriter::new(file.try_clone().expect("clone log handle"));
        while let Some(line) = rx.blocking_recv() {
            let mut batch = vec![line];
            while let Ok(more) = rx.try_recv() {
                batch.push(more);
                if batch.len() >= 1024 {
                    break;
                }
            }
            for l in batch {
                if size + l.len() as u64 + 1 > max_bytes {
                    let _ = out.flush();
                    let _ = std::fs::rename(&path, path.with_extension("log.1"));
                    match open(&path) {
                        Ok(f) => {
                            file = f;
                            out = std::io::BufWriter::new(
                                file.try_clone().expect("clone log handle"),
                            );
                            size = 0;
                        }
                        Err(_) => return,
                    }
                }
                let _ = writeln!(out, "{l}");
                size += l.len() as u64 + 1;
            }
            let _ = out.flush();
        }
    });
    tx
}
