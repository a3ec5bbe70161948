//! Slipway's per-job engine endpoint (issue #18, "Runners").
//!
//! A pipeline job runs in a container and must never get the host's Docker socket (that is
//! root on the host). Its `docker build` / `tag` / `push` / `pull` / `login` steps, run with
//! the stock docker CLI, talk instead to a [`Gate`]: a filtering proxy of the Docker Engine
//! API listening on a socket of its own (mounted into the job's container as
//! `/var/run/docker.sock`, or given as `DOCKER_HOST`), one gate per job.
//!
//! What it owns: the listening socket (created on start, removed on stop or drop), the
//! allow-list ([`filter`]), the job's image scope ([`scope`]) and the streaming data path
//! (`proxy`). It knows nothing of pipelines beyond the job's id and the labels to stamp.
//!
//! ## Allowed (with or without a `/v1.NN` prefix); everything else is 403
//! - `GET|HEAD /_ping` (answered with `Builder-Version: 1`), `GET /version`, `GET /info`
//!   (trimmed to the engine's version, OS, architecture, CPUs, memory and registry
//!   configuration);
//! - `POST /build`, the classic builder only: parameters from an allow-list; `networkmode`
//!   only default/bridge/none (or the configured build network), no `remote`,
//!   `cgroupparent`, `isolation`, no BuildKit (`version=2`, `session`, `outputs`); the
//!   build context streams through; the image gets the label `slipway.job=<job>` (and
//!   the configured labels), which win over the job's own;
//! - `POST /images/create` with `fromImage` (and `tag`, `platform`) only: a pull, never an
//!   import (`fromSrc`), never all tags of a repository;
//! - `POST /images/{name}/tag`, `POST /images/{name}/push?tag=..`, `DELETE /images/{name}`:
//!   only for names in the job's scope (below); pushing all tags is refused;
//! - `GET /images/{name}/json`, `GET /distribution/{name}/json`, `POST /auth`;
//! - `GET /images/json`, answered with the job's images only.
//!
//! Refused in particular: `/containers/*` (run, create, start, ps, exec's creation, attach),
//! `/exec/*`, `/volumes/*`, `/networks/*`, swarm, `/plugins`, `/session` and `/grpc`
//! (BuildKit: jobs set `DOCKER_BUILDKIT=0`), `/system/*`, `/events`, `/commit`, image
//! load/save/import/prune/search/history. Requests with a form content type are refused
//! (the engine would read parameters from the body, which the filter does not see), and so
//! are escaped or unclean paths. The classic builder has no privileged `RUN` and no
//! volumes, so with the network restricted a build cannot reach host paths or privileges.
//!
//! ## Scope
//! A job may tag, push or delete a name only when the engine resolves it (image inspect) to
//! an image id the job built or pulled through this gate; tags it made point at such ids.
//! A tag is then made from the checked id, not the name, so a name moved in between does
//! not slip through. See [`scope`]. With [`GateConfig::repositories`] set, the names a job
//! gives images (`docker build -t`, `docker tag`) must lie in those repositories.
//!
//! ## Not covered (the runner's or later work)
//! - Reading is not scoped: a job may inspect any local image and use it as a build's
//!   `FROM`, and `GET /distribution`, `POST /auth`, pulls and pushes make the engine (on the
//!   host's network) contact whatever registry the job names. Limit names with
//!   `repositories`; the engine's network is the runner's to restrict.
//! - Without `repositories`, a job may overwrite any local tag (`docker build -t`,
//!   `docker tag`); releases pin digests, so deployments are not affected.
//! - `RUN` steps of a build run in containers on the default bridge (or
//!   [`GateConfig::build_network`]); their resource parameters are the job's to choose.
//! - No rate or size limits, no idle timeouts: the gate lives as long as its job.

pub mod filter;
mod proxy;
pub mod scope;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

pub use filter::{Decision, Route, decide};
pub use scope::Scope;

/// The label every image built through a gate carries, naming the job.
pub const JOB_LABEL: &str = "slipway.job";

/// Errors of the gate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("binding {what}: {source}")]
    Bind {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} exists and is not a socket")]
    NotASocket(PathBuf),
    #[error("a gate needs at least one listener")]
    NoListener,
    #[error("a gate needs a job id")]
    NoJob,
    #[error("unsupported DOCKER_HOST {0:?} (unix:// or tcp:// only)")]
    DockerHost(String),
    #[error("connecting to the engine at {upstream}: {source}")]
    Connect {
        upstream: String,
        #[source]
        source: std::io::Error,
    },
    #[error("engine: {0}")]
    Http(#[from] hyper::Error),
    #[error("engine: {0}")]
    Engine(String),
    #[error("request: {0}")]
    Request(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where a gate listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A Unix socket at this path (created; a stale socket there is replaced).
    Unix(PathBuf),
    /// A TCP address (port 0: any free port). Anyone who can reach it acts as the job:
    /// bind it where only the job's network can.
    Tcp(SocketAddr),
}

/// The engine the gate forwards to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    Unix(PathBuf),
    /// `host:port`, plain HTTP.
    Tcp(String),
}

impl Upstream {
    /// `DOCKER_HOST` (`unix://` or `tcp://`), else `/var/run/docker.sock`.
    pub fn from_env() -> Result<Self> {
        match std::env::var("DOCKER_HOST") {
            Ok(h) if !h.is_empty() => Self::parse(&h),
            _ => Ok(Upstream::Unix(PathBuf::from("/var/run/docker.sock"))),
        }
    }

    /// A `DOCKER_HOST` value.
    pub fn parse(host: &str) -> Result<Self> {
        if let Some(p) = host.strip_prefix("unix://") {
            Ok(Upstream::Unix(PathBuf::from(p)))
        } else if let Some(a) = host.strip_prefix("tcp://") {
            Ok(Upstream::Tcp(a.trim_end_matches('/').to_string()))
        } else {
            Err(Error::DockerHost(host.to_string()))
        }
    }
}

/// How to run one gate.
#[derive(Debug, Clone)]
pub struct GateConfig {
    /// The job's id: logged, and stamped on built images as [`JOB_LABEL`].
    pub job: String,
    pub listen: Vec<Listen>,
    pub upstream: Upstream,
    /// Permissions of a Unix socket (default 0o660).
    pub socket_mode: u32,
    /// More labels for every built image (e.g. app, run); [`JOB_LABEL`] is always added.
    pub labels: BTreeMap<String, String>,
    /// When set, builds run on this network (e.g. the run's own) unless they ask for none.
    pub build_network: Option<String>,
    /// Repositories the job may name its images in (`docker build -t`, `docker tag`): an
    /// entry ending in `/` is a prefix, any other an exact repository, compared with the
    /// names as the CLI sends them (`app`, not `docker.io/library/app`). Empty: any name.
    pub repositories: Vec<String>,
}

impl GateConfig {
    /// A gate for `job` on the Unix socket `path`, forwarding to [`Upstream::from_env`].
    pub fn unix(job: impl Into<String>, path: impl Into<PathBuf>) -> Result<Self> {
        Ok(GateConfig {
            job: job.into(),
            listen: vec![Listen::Unix(path.into())],
            upstream: Upstream::from_env()?,
            socket_mode: 0o660,
            labels: BTreeMap::new(),
            build_network: None,
            repositories: Vec::new(),
        })
    }
}

/// Starts gates.
pub struct Gate;

impl Gate {
    /// Binds the listeners and serves until the handle is stopped or dropped. Must be called
    /// inside a tokio runtime.
    pub async fn start(config: GateConfig) -> Result<GateHandle> {
        if config.job.is_empty() {
            return Err(Error::NoJob);
        }
        if config.listen.is_empty() {
            return Err(Error::NoListener);
        }
        let mut labels = config.labels.clone();
        labels.insert(JOB_LABEL.to_string(), config.job.clone());
        let shared = Arc::new(proxy::Shared {
            job: config.job.clone(),
            upstream: config.upstream.clone(),
            scope: Scope::default(),
            labels,
            build_network: config.build_network.clone(),
            repositories: config.repositories.clone(),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut handle = GateHandle {
            job: config.job.clone(),
            unix: None,
            tcp: None,
            scope: shared.scope.clone(),
            stop: stop_tx,
            tasks: Vec::new(),
        };
        for listen in &config.listen {
            match listen {
                Listen::Unix(path) => {
                    if let Ok(meta) = std::fs::symlink_metadata(path) {
                        if !meta.file_type().is_socket() {
                            return Err(Error::NotASocket(path.clone()));
                        }
                        let _ = std::fs::remove_file(path);
                    }
                    let bind = |source| Error::Bind {
                        what: path.display().to_string(),
                        source,
                    };
                    let listener = UnixListener::bind(path).map_err(bind)?;
                    handle.unix = Some(path.clone());
                    std::fs::set_permissions(
                        path,
                        std::fs::Permissions::from_mode(config.socket_mode),
                    )
                    .map_err(bind)?;
                    let task = tokio::spawn(accept_unix(listener, shared.clone(), stop_rx.clone()));
                    handle.tasks.push(task);
                }
                Listen::Tcp(addr) => {
                    let bind = |source| Error::Bind {
                        what: addr.to_string(),
                        source,
                    };
                    let listener = TcpListener::bind(addr).await.map_err(bind)?;
                    handle.tcp = Some(listener.local_addr().map_err(bind)?);
                    let task = tokio::spawn(accept_tcp(listener, shared.clone(), stop_rx.clone()));
                    handle.tasks.push(task);
                }
            }
        }
        tracing::info!(job = %config.job, unix = ?handle.unix, tcp = ?handle.tcp, upstream = ?config.upstream, "engine gate started");
        Ok(handle)
    }
}

/// A running gate. Stopping or dropping it closes its listeners, cuts its connections and
/// removes its Unix socket.
pub struct GateHandle {
    job: String,
    unix: Option<PathBuf>,
    tcp: Option<SocketAddr>,
    scope: Scope,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl GateHandle {
    pub fn job(&self) -> &str {
        &self.job
    }

    /// The Unix socket, when listening on one.
    pub fn unix_path(&self) -> Option<&Path> {
        self.unix.as_deref()
    }

    /// The bound TCP address, when listening on one.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp
    }

    /// A `DOCKER_HOST` value for the job (the Unix socket if there is one).
    pub fn docker_host(&self) -> String {
        match (&self.unix, self.tcp) {
            (Some(p), _) => format!("unix://{}", p.display()),
            (None, Some(a)) => format!("tcp://{a}"),
            (None, None) => String::new(),
        }
    }

    /// The image ids in the job's scope (built or pulled through this gate), e.g. to remove
    /// them after the job.
    pub fn images(&self) -> Vec<String> {
        self.scope.ids()
    }

    /// Stops the gate and waits for its listeners to close.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
        self.remove_socket();
        tracing::info!(job = %self.job, "engine gate stopped");
    }

    fn remove_socket(&mut self) {
        if let Some(path) = self.unix.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for GateHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for task in &self.tasks {
            task.abort();
        }
        self.remove_socket();
    }
}

async fn accept_unix(
    listener: UnixListener,
    shared: Arc<proxy::Shared>,
    stop: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    let mut stop = stop;
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => { conns.spawn(serve_conn(stream, shared.clone())); }
                Err(e) => tracing::warn!(job = %shared.job, error = %e, "accept"),
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.shutdown().await;
}

async fn accept_tcp(
    listener: TcpListener,
    shared: Arc<proxy::Shared>,
    stop: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    let mut stop = stop;
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => { conns.spawn(serve_conn(stream, shared.clone())); }
                Err(e) => tracing::warn!(job = %shared.job, error = %e, "accept"),
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.shutdown().await;
}

async fn serve_conn<S>(stream: S, shared: Arc<proxy::Shared>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| proxy::handle(shared.clone(), req));
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(error = %e, "job connection ended");
    }
}
