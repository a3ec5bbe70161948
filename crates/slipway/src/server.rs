//! `slipway server`: opens the store (SQLite in the data directory, or a shared PostgreSQL
//! database), checks that it may use it before writing anything, makes sure an admin token
//! exists, connects to the engine, serves the API, and runs the controller while it leads
//! (always with SQLite; with PostgreSQL, while it holds the leadership lock: several servers
//! on one database are full peers for the API and hot standbys for the controller).
//!
//! Every long-running loop runs under one [`Supervisor`] (restarted when it panics; see
//! `slipway_supervise`), whose state `GET /readyz` reports. `SLIPWAY_FAULT_INJECT=1` turns
//! on the test-only fault hook (`POST /api/v1/debug/panic`).

mod loops;

use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use slipway_api::{ApiState, TOKEN_META_KEY, hash_token};
use slipway_registry::{AuditEvent, Identities, Registry, RegistryConfig};
use slipway_runtime::DockerRuntime;
use slipway_store::secrets::SecretBox;
use slipway_store::{Backend, Store, random_id};
use slipway_supervise::Supervisor;
use tokio::sync::watch;

/// Default API address: loopback only.
pub const DEFAULT_API_ADDR: &str = "127.0.0.1:7780";

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Where state (SQLite), the admin token and the bound address are kept.
    #[arg(long, env = "SLIPWAY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Keep state in PostgreSQL (`postgres://USER[:PASSWORD]@HOST:PORT/DATABASE`) instead of
    /// SQLite in the data directory: several servers on one database share the API and one
    /// of them runs the controller, the others standing by.
    #[arg(long, env = "SLIPWAY_DATABASE", value_name = "URL")]
    database: Option<String>,
    /// Where the registry keeps blobs, its metadata and its signing key (default
    /// DATA_DIR/registry). Servers sharing a database must share it.
    #[arg(long, value_name = "DIR")]
    registry_storage: Option<PathBuf>,
    /// The ingress' directory (routing table, control socket; default DATA_DIR/ingress).
    /// Servers on one host may share one ingress through it.
    #[arg(long, value_name = "DIR")]
    ingress_dir: Option<PathBuf>,
    /// The secret store's key file (default DATA_DIR/secret.key, made on first start).
    /// Servers sharing a database must use the same key.
    #[arg(long, value_name = "FILE")]
    secret_key: Option<PathBuf>,
    /// The address other hosts reach this server at (its registry, and the ports of the
    /// tasks it runs itself). Needed for a cluster of several hosts.
    #[arg(long, value_name = "IP")]
    advertise_addr: Option<std::net::IpAddr>,
    /// Run no tasks on this server's own engine (only on the hosts of `slipway agent`s).
    #[arg(long)]
    no_local_agent: bool,
    /// Traces (deployments here; requests in the ingress this server starts).
    #[command(flatten)]
    traces: crate::traces::TraceArgs,
    /// How long a host's agent may go unheard before the host is lost and its tasks are
    /// replaced on the other hosts.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    host_loss_timeout: std::time::Duration,
    /// Attributes of this server's own host for placement (`--attribute zone=a`, repeatable).
    #[arg(long = "attribute", value_name = "NAME=VALUE", value_parser = parse_attribute)]
    attributes: Vec<(String, String)>,
    /// Address of the API. Binds to loopback unless told otherwise; port 0 picks a free port
    /// (written to DATA_DIR/api.addr).
    #[arg(long, default_value = DEFAULT_API_ADDR)]
    api_addr: SocketAddr,
    /// Address the ingress (load balancer) listens on.
    #[arg(long, default_value = crate::ingress::DEFAULT_INGRESS_ADDR)]
    ingress_addr: SocketAddr,
    /// Run without an ingress (tasks are reachable only at their container addresses).
    #[arg(long)]
    no_ingress: bool,
    /// Largest request body the ingress accepts, in bytes.
    #[arg(long, default_value_t = 100 * 1024 * 1024)]
    ingress_max_body: u64,
    /// Client connections the ingress keeps open at once (all listeners); beyond it new
    /// connections get a 503 and are closed.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    ingress_max_connections: u32,
    /// Client connections the ingress keeps open at once from one client address.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    ingress_max_connections_per_ip: u32,
    /// Longest wait of the ingress for the next bytes of a request body, and the time a
    /// body may take before --ingress-body-min-rate counts (408 past either).
    #[arg(long, default_value = "30s", value_parser = crate::limits::positive_duration)]
    ingress_body_timeout: std::time::Duration,
    /// Bytes a second a request body to the ingress must average beyond
    /// --ingress-body-timeout (0: no minimum).
    #[arg(long, default_value_t = slipway_ingress::proxy::DEFAULT_BODY_MIN_RATE)]
    ingress_body_min_rate: u32,
    /// HTTPS listener of the ingress (repeatable; HTTP/2 and HTTP/1.1 by ALPN). Needs
    /// --ingress-tls-cert/--ingress-tls-key or --ingress-tls-dir.
    #[arg(long = "ingress-tls-addr", value_name = "HOST:PORT")]
    ingress_tls_addrs: Vec<SocketAddr>,
    /// The ingress' default certificate chain (PEM), reloaded when it changes.
    #[arg(long, value_name = "FILE", requires = "ingress_tls_key")]
    ingress_tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --ingress-tls-cert.
    #[arg(long, value_name = "FILE", requires = "ingress_tls_cert")]
    ingress_tls_key: Option<PathBuf>,
    /// Directory of NAME.crt/NAME.key pairs the ingress picks by SNI (exact name, then
    /// `*.`/`_.` wildcard, then --ingress-tls-cert); reloaded when the files change.
    #[arg(long, value_name = "DIR")]
    ingress_tls_dir: Option<PathBuf>,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
    /// How often registry garbage collection runs (`0s` turns the schedule off;
    /// `slipway registry gc` runs it on demand).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    registry_gc_interval: std::time::Duration,
    /// Unreferenced blobs younger than this, or used by a request this recently, are kept.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    registry_gc_grace: std::time::Duration,
    /// How often repositories' lifecycle policies are applied (`0s` turns it off).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    registry_lifecycle_interval: std::time::Duration,
    /// Serve TLS on the API address with this certificate chain (PEM; reloaded when it
    /// changes and on SIGHUP). Plain HTTP stays available to loopback clients.
    #[arg(long, requires = "tls_key", conflicts_with = "tls_auto")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve TLS with a certificate from a private CA made on first start in DATA_DIR/ca
    /// (`slipway registry ca` prints it for clients).
    #[arg(long)]
    tls_auto: bool,
    /// Extra host name or address the --tls-auto certificate covers (repeatable).
    #[arg(long = "tls-san", value_name = "NAME")]
    tls_sans: Vec<String>,
    #[command(flatten)]
    limits: crate::limits::Limits,
}

/// `NAME=VALUE` of `--attribute`.
pub fn parse_attribute(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: an attribute is NAME=VALUE, e.g. zone=a"))?;
    let ok = |x: &str| {
        !x.is_empty()
            && x.len() <= 64
            && x.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    if !ok(k) || !ok(v) {
        return Err(format!(
            "{s:?}: attribute names and values are 1 to 64 letters, digits, '-', '_' or '.'"
        ));
    }
    Ok((k.to_owned(), v.to_owned()))
}

/// The per-user default data directory.
pub fn default_data_dir() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("slipway")
}

pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLIPWAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a terminal: redirected to a file (ingress.log, server.log) it would
    // write escape codes into the log.
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json { b.json().init() } else { b.init() }
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Makes sure an admin token exists: creates one on first start (written to
/// `DATA_DIR/admin.token`, mode 0600; only its hash is stored), or a new one when the file
/// was deleted (token rotation). With a shared database the token is the cluster's: a
/// server without the file keeps the token another server made (copy its admin.token).
async fn ensure_admin_token(store: &Store, dir: &Path) -> Result<()> {
    let path = dir.join("admin.token");
    let stored = store.get_meta(TOKEN_META_KEY).await?;
    if let (Some(hash), Ok(text)) = (&stored, std::fs::read_to_string(&path))
        && &hash_token(&text) == hash
    {
        return Ok(());
    }
    if stored.is_some() && store.backend() == Backend::Postgres {
        tracing::warn!(
            path = %path.display(),
            "this cluster's admin token was made by another server; copy its admin.token here to use the CLI on this host"
        );
        return Ok(());
    }
    let token = format!("slw_{}", random_id(32));
    write_private(&path, &format!("{token}\n"))?;
    store.set_meta(TOKEN_META_KEY, &hash_token(&token)).await?;
    tracing::info!(path = %path.display(), "wrote a new admin token");
    Ok(())
}

/// The registry's view of the server's identities, through the application layer (set
/// once the application layer exists; nothing is served before).
#[derive(Default)]
struct AppIdentities(std::sync::OnceLock<slipway_app::App>);

#[async_trait::async_trait]
impl Identities for AppIdentities {
    async fn is_admin_token(&self, secret: &str) -> bool {
        match self.0.get() {
            Some(app) => app.is_admin_token(secret).await,
            None => false,
        }
    }

    async fn identity(&self, name: &str) -> Option<slipway_core::access::Identity> {
        let app = self.0.get()?;
        match app.identity(name).await {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(error = %e.message, "could not look an identity up; refusing");
                None
            }
        }
    }

    async fn audit(&self, e: AuditEvent) {
        if let Some(app) = self.0.get() {
            slipway_api::audit(
                app,
                slipway_store::AuditEntry {
                    seq: 0,
                    at: slipway_store::now_ms(),
                    identity: e.identity,
                    source: e.source,
                    face: "registry".into(),
                    operation: e.operation.into(),
                    target: e.target,
                    status: e.status,
                    outcome: if e.status < 400 {
                        "ok".into()
                    } else if e.status == 401 || e.status == 403 {
                        "refused".into()
                    } else {
                        format!("failed ({})", e.status)
                    },
                },
            )
            .await;
        }
    }
}

/// How long the engine's internal pull passwords live: one pull.
const INTERNAL_PULL_TTL_SECS: u64 = 600;

/// Gives the engine a short-lived pull-only password for this server's own registry, so
/// deploys pull from it with no `docker login` on the host.
struct InternalPull {
    registry: Registry,
    /// `host:port` spellings of this server's registry.
    hosts: Vec<String>,
}

impl slipway_runtime::PullCredentials for InternalPull {
    fn credentials_for(&self, registry: &str) -> Option<(String, String)> {
        self.hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(registry))
            .then(|| {
                (
                    "slipway-internal".to_owned(),
                    self.registry.internal_pull_password(INTERNAL_PULL_TTL_SECS),
                )
            })
    }
}

/// How other hosts reach this server's registry: its `host:port` spellings in image
/// references, the advertised address, and a short-lived pull password.
struct SharedRegistry {
    registry: Registry,
    names: Vec<String>,
    reachable: Option<String>,
}

impl slipway_agent::RemoteRegistry for SharedRegistry {
    fn rewrite(&self) -> Option<(Vec<String>, String)> {
        self.reachable.clone().map(|r| (self.names.clone(), r))
    }

    fn credentials(&self) -> Option<(String, String)> {
        Some((
            "slipway-internal".to_owned(),
            self.registry.internal_pull_password(INTERNAL_PULL_TTL_SECS),
        ))
    }
}

/// The `host:port` names under which the registry at `addr` is reachable from this host.
fn own_registry_hosts(addr: SocketAddr, extra_names: &[String]) -> Vec<String> {
    let port = addr.port();
    let mut hosts = vec![format!("localhost:{port}")];
    if addr.ip().is_unspecified() || addr.ip().is_loopback() {
        hosts.push(format!("127.0.0.1:{port}"));
    }
    if !addr.ip().is_unspecified() {
        hosts.push(addr.to_string());
    }
    for n in extra_names {
        hosts.push(format!("{n}:{port}"));
    }
    hosts.sort();
    hosts.dedup();
    hosts
}

/// What running tasks and the last successful release of each service use, for the
/// registry's lifecycle safety rule.
struct StoreInUse(Store);

#[async_trait::async_trait]
impl slipway_registry::lifecycle::InUse for StoreInUse {
    async fn images_in_use(&self) -> Result<Vec<String>, String> {
        use slipway_core::model::RolloutState;
        let s = &self.0;
        let mut out = Vec::new();
        let mut push = |td: Option<slipway_core::model::TaskDefinition>| {
            if let Some(td) = td {
                out.extend(td.container.image_digest);
            }
        };
        for svc in s.list_services(None).await.map_err(|e| e.to_string())? {
            let family = svc.key.family();
            let mut revisions = std::collections::BTreeSet::new();
            for t in s
                .list_tasks(&svc.key, false)
                .await
                .map_err(|e| e.to_string())?
            {
                revisions.insert(t.revision);
            }
            for d in s
                .active_deployments(&svc.key)
                .await
                .map_err(|e| e.to_string())?
            {
                revisions.insert(d.revision);
            }
            if let Some(d) = s
                .list_deployments(&svc.key, 1000)
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .find(|d| d.state == RolloutState::Succeeded)
            {
                revisions.insert(d.revision);
            }
            for r in revisions {
                push(
                    s.get_task_definition(&family, r)
                        .await
                        .map_err(|e| e.to_string())?,
                );
            }
        }
        Ok(out)
    }
}

/// One server per data directory (its SQLite database, admin token and ingress are its
/// own). The lock (`DATA_DIR/server.lock`, an advisory file lock) goes away with the
/// process, however it ends; child processes (the ingress) do not inherit it.
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File> {
    let path = dir.join("server.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another slipway server is running on {}; stop it first, or give this one another --data-dir",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// Meta key of the secret key's fingerprint (servers sharing a database share the key).
const SECRET_KEY_META: &str = "secret_key_fingerprint";
/// The file in the data directory that says which cluster the directory belongs to.
const CLUSTER_FILE: &str = "cluster.id";

/// Connects to the state database and checks, before anything is written, that this
/// server may use it: a schema this build knows, the cluster this data directory belongs
/// to (`cluster.id`, when the directory has one), and the key the cluster's secrets are
/// sealed with (`key`: this server's, when it has one yet).
async fn check_store(database: Option<&str>, dir: &Path, key: Option<&SecretBox>) -> Result<Store> {
    let store = match database {
        Some(url) => Store::connect_postgres(url).await?,
        None => Store::connect_sqlite(&dir.join("slipway.db"))
            .await
            .with_context(|| format!("cannot open the state database in {}", dir.display()))?,
    };
    store.check_schema().await?;
    let db_cluster = store.peek_meta("cluster_id").await?;
    let dir_cluster = std::fs::read_to_string(dir.join(CLUSTER_FILE))
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    let where_ = database.map_or_else(
        || "the SQLite database".to_owned(),
        |u| format!("the database at {}", slipway_store::redacted(u)),
    );
    match (&db_cluster, &dir_cluster) {
        (Some(db), Some(local)) if db != local => anyhow::bail!(
            "{where_} belongs to cluster {db}, but the data directory {} belongs to cluster {local}; point --database at cluster {local}'s database, or use another --data-dir",
            dir.display()
        ),
        (None, Some(local)) if database.is_some() => anyhow::bail!(
            "{where_} is empty, but the data directory {} belongs to cluster {local} (its state is in another database); give this server a new --data-dir to start a new cluster on this database",
            dir.display()
        ),
        _ => {}
    }
    if let Some(fp) = store.peek_meta(SECRET_KEY_META).await? {
        match key {
            Some(k) if k.fingerprint() == fp => {}
            Some(_) => anyhow::bail!(
                "this server's secret key differs from the one the secrets in {where_} are sealed with; use the cluster's key file (copy secret.key from another server of the cluster, or pass --secret-key)"
            ),
            None => anyhow::bail!(
                "the secrets in {where_} are sealed with a key this server does not have; copy secret.key from another server of the cluster into the data directory, or pass --secret-key"
            ),
        }
    }
    Ok(store)
}

/// Brings a checked database's schema up to date and records what the cluster shares: its
/// id (also written to the data directory) and its secret key's fingerprint.
async fn init_store(store: &Store, dir: &Path, secrets: &SecretBox) -> Result<String> {
    store.migrate().await?;
    let cluster = store.init_meta("cluster_id", &random_id(8)).await?;
    store
        .init_meta(SECRET_KEY_META, secrets.fingerprint())
        .await?;
    write_private(&dir.join(CLUSTER_FILE), &format!("{cluster}\n"))?;
    Ok(cluster)
}

fn schedule(d: std::time::Duration) -> Option<std::time::Duration> {
    (!d.is_zero()).then_some(d)
}

/// The environment variable that turns on the test-only fault hook.
const FAULT_INJECT_ENV: &str = "SLIPWAY_FAULT_INJECT";

pub async fn run(args: ServerArgs) -> Result<ExitCode> {
    init_logging(args.log_json);
    slipway_supervise::install_panic_hook();
    let trace_config = args.traces.config("slipway")?;
    let faults = std::env::var(FAULT_INJECT_ENV).is_ok_and(|v| v == "1");
    if faults {
        tracing::warn!("{FAULT_INJECT_ENV}=1: the test-only fault hook is on; never in production");
    }
    let supervisor = Supervisor::new(faults);
    let dir = args.data_dir.unwrap_or_else(default_data_dir);
    let key_path = args
        .secret_key
        .clone()
        .unwrap_or_else(|| dir.join("secret.key"));
    // A shared database is checked before anything is written, the data directory included:
    // a wrong URL, a newer schema or another cluster's database changes nothing.
    let checked = match args.database.as_deref() {
        Some(url) => {
            let key = SecretBox::load_file(&key_path).context("loading the secret store's key")?;
            Some(check_store(Some(url), &dir, key.as_ref()).await?)
        }
        None => None,
    };
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict permissions of {}", dir.display()))?;
    // Held until this process exits.
    let _lock = lock_data_dir(&dir)?;
    let secrets =
        SecretBox::load_or_create_file(&key_path).context("loading the secret store's key")?;
    let store = match checked {
        Some(s) => s,
        None => check_store(None, &dir, Some(&secrets)).await?,
    };
    // `slipway_deployments_total`: each deployment this process' commits end, once.
    store.on_deployment_ended(Arc::new(|d| {
        slipway_metrics::global().deployment_ended(d);
    }));
    let cluster = init_store(&store, &dir, &secrets).await?;
    ensure_admin_token(&store, &dir).await?;
    let listener = tokio::net::TcpListener::bind(args.api_addr)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}; pick another --api-addr",
                args.api_addr
            )
        })?;
    let addr = listener.local_addr()?;
    let tls_on = args.tls_auto || args.tls_cert.is_some();
    // With TLS on a specific non-loopback address, local clients keep plain HTTP on
    // 127.0.0.1 at the same port.
    let mut listeners = vec![listener];
    if tls_on && !addr.ip().is_loopback() && !addr.ip().is_unspecified() {
        let local = SocketAddr::from(([127, 0, 0, 1], addr.port()));
        match tokio::net::TcpListener::bind(local).await {
            Ok(l) => listeners.push(l),
            Err(e) => tracing::warn!(%local, error = %e, "no plain loopback listener"),
        }
    }
    let local_url = if addr.ip().is_unspecified() || listeners.len() > 1 {
        format!("http://127.0.0.1:{}", addr.port())
    } else if tls_on && !addr.ip().is_loopback() {
        format!("https://{addr}")
    } else {
        format!("http://{addr}")
    };
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let cert_names = crate::tls::certificate_names(addr, &args.tls_sans);
    let tls = if args.tls_auto {
        Some(crate::tls::serve_auto(
            &dir,
            &cert_names,
            &supervisor,
            shutdown_rx.clone(),
        )?)
    } else if let (Some(c), Some(k)) = (&args.tls_cert, &args.tls_key) {
        Some(crate::tls::serve_files(
            c.clone(),
            k.clone(),
            &supervisor,
            shutdown_rx.clone(),
        )?)
    } else {
        None
    };
    let registry_dir = args
        .registry_storage
        .clone()
        .unwrap_or_else(|| dir.join("registry"));
    let identities = Arc::new(AppIdentities::default());
    let mut reg_cfg = RegistryConfig::new(registry_dir.clone(), identities.clone());
    reg_cfg.gc_grace = args.registry_gc_grace;
    reg_cfg.gc_interval = schedule(args.registry_gc_interval);
    reg_cfg.lifecycle_interval = schedule(args.registry_lifecycle_interval);
    reg_cfg.in_use = Some(Arc::new(StoreInUse(store.clone())));
    if let Some(ca) = tls.as_ref().and_then(|t| t.ca_pem.clone()) {
        let port = addr.port();
        let mut hosts: Vec<String> = cert_names
            .iter()
            .filter(|n| !["localhost", "127.0.0.1", "::1"].contains(&n.as_str()))
            .map(|n| format!("{n}:{port}"))
            .collect();
        if !addr.ip().is_unspecified() {
            hosts.insert(0, addr.to_string());
        }
        reg_cfg.ca = Some(slipway_registry::CaInfo {
            certificate: ca,
            hosts,
        });
    }
    let registry = Registry::open(reg_cfg)
        .await
        .with_context(|| format!("cannot open the registry in {}", registry_dir.display()))?;
    let rt = DockerRuntime::connect()
        .await?
        .with_credentials(Arc::new(InternalPull {
            registry: registry.clone(),
            hosts: own_registry_hosts(addr, &args.tls_sans),
        }));
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "the API listens on a non-loopback address; every call still needs the admin token");
    }

    let mut ingress = if args.no_ingress {
        None
    } else {
        Some(
            crate::ingress::Supervised::start(
                args.ingress_dir
                    .clone()
                    .unwrap_or_else(|| dir.join("ingress")),
                args.ingress_addr,
                crate::ingress::IngressLimits {
                    max_body: args.ingress_max_body,
                    max_connections: args.ingress_max_connections,
                    max_connections_per_ip: args.ingress_max_connections_per_ip,
                    body_timeout: args.ingress_body_timeout,
                    body_min_rate: args.ingress_body_min_rate,
                    traces: args.traces.clone(),
                },
                crate::ingress::IngressTlsArgs {
                    tls_addrs: args.ingress_tls_addrs.clone(),
                    tls_cert: args.ingress_tls_cert.clone(),
                    tls_key: args.ingress_tls_key.clone(),
                    tls_dir: args.ingress_tls_dir.clone(),
                },
            )
            .await?,
        )
    };
    // The ingress' own listen address (ELBv2's DNSName).
    let ingress_addr = ingress
        .as_ref()
        .and_then(|i| i.listen())
        .and_then(|l| l.split_whitespace().next().map(str::to_owned));
    let ingress_url = ingress.as_ref().and_then(|i| i.listen()).map(|l| {
        let first = l
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .replace("0.0.0.0", "127.0.0.1");
        format!("http://{first}")
    });
    let server_id = random_id(6);
    let leading: loops::SharedLeading = Arc::default();
    let leading_flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The engines of the cluster: this server's own (unless --no-local-agent) and every
    // connected agent's.
    let hub = slipway_agent::Hub::new();
    let engine = rt
        .engine_info()
        .await
        .context("cannot read the Docker engine's identity")?;
    let local_host = slipway_app::host_id_of_engine(&engine.id);
    let hosts = slipway_agent::Hosts::new(
        (!args.no_local_agent).then(|| {
            (
                local_host.clone(),
                rt.clone(),
                args.advertise_addr.map(|ip| ip.to_string()),
            )
        }),
        hub.clone(),
        Some(Arc::new(SharedRegistry {
            registry: registry.clone(),
            names: own_registry_hosts(addr, &args.tls_sans),
            reachable: args
                .advertise_addr
                .map(|ip| format!("{ip}:{}", addr.port())),
        })),
    )
    .with_loss_timeout(args.host_loss_timeout);
    let app = slipway_app::App::new(
        store.clone(),
        Arc::new(hosts.clone()),
        secrets.clone(),
        cluster.clone(),
    );
    let _ = identities.0.set(app.clone());
    let traces = slipway_otel::Exporter::start(&trace_config);
    app.trace_to(traces.clone());
    app.seal_legacy_access_keys()
        .await
        .context("cannot seal the access keys stored in clear")?;
    app.seal_legacy_secrets()
        .await
        .context("cannot re-seal the secrets sealed before versions were bound")?;
    let limiter = Arc::new(slipway_api::RateLimiter::new(args.limits.rate_limit));
    if !args.no_local_agent {
        app.register_local_host(slipway_app::HostHello {
            host: local_host.clone(),
            engine: engine.id.clone(),
            name: engine.name.clone(),
            cpu: engine.cpus * 1024,
            memory: engine.memory / (1024 * 1024),
            platform: engine.platform.clone(),
            attributes: args.attributes.iter().cloned().collect(),
            address: args
                .advertise_addr
                .map(|ip| ip.to_string())
                .unwrap_or_else(|| "127.0.0.1".into()),
        })
        .await
        .map_err(|e| anyhow::anyhow!("cannot record this server's host: {e}"))?;
    }
    loops::Leadership {
        store: store.clone(),
        server_id: server_id.clone(),
        hosts,
        flag: leading_flag.clone(),
        cluster: cluster.clone(),
        ingress: ingress.as_ref().map(|i| i.client.clone()),
        secrets: secrets.clone(),
        registry: registry.clone(),
        leading: leading.clone(),
        supervisor: supervisor.clone(),
        traces,
    }
    .spawn(shutdown_rx.clone());
    loops::spawn_heartbeat(
        &supervisor,
        store.clone(),
        slipway_store::ServerInfo {
            id: server_id.clone(),
            api_url: local_url.clone(),
            ingress: ingress_url.clone().unwrap_or_default(),
            started_at: slipway_store::now_ms(),
            seen_at: 0,
            leader: false,
        },
        shutdown_rx.clone(),
    );
    if let Some(ing) = ingress.take() {
        loops::spawn_ingress_watchdog(&supervisor, ing, leading.clone(), shutdown_rx.clone());
    }
    // One listener: the native API, the registry (/v2/) and the registry's API routes, and
    // the AWS-compatible API (`POST /`: ECS, ECR, STS; `/api/v1/access-keys`).
    let aws_state = slipway_aws::AwsState {
        app: app.clone(),
        registry: registry.clone(),
        keys: Default::default(),
        limiter: limiter.clone(),
        ingress_addr: ingress_addr.clone(),
    };
    let aws = slipway_aws::router(aws_state.clone());
    // Behind the native API's gate with the API's own routes.
    let native = registry
        .admin_router()
        .merge(slipway_aws::keys_router(aws_state));
    // Pipelines' triggers: the built-in git remote (`/git/APP.git`, repositories under
    // DATA_DIR/git) and push webhooks (`POST /hooks/APP`), each with its own credentials.
    let triggers = slipway_triggers::router(slipway_triggers::Triggers::new(
        app.clone(),
        dir.join("git"),
    ));
    let console = slipway_console::Console::new(app.clone(), tls.is_some(), limiter.clone())
        .with_registry(registry.clone());
    let app = slipway_api::router(
        ApiState {
            app,
            ingress_url,
            server_id: server_id.clone().into(),
            hub,
            leading: leading_flag,
            supervisor,
            engine: Some(rt.clone()),
            limiter,
        },
        native,
    )
    .merge(registry.router())
    .merge(aws)
    .merge(slipway_console::router(console))
    .merge(triggers)
    // Every answer of the listener, counted by face, operation and status.
    .layer(axum::middleware::from_fn(slipway_api::metrics::count));
    write_private(
        &dir.join("api.addr"),
        &format!(
            "{local_url}
"
        ),
    )?;
    tracing::info!(api = %local_url, console = %format!("{local_url}/ui/"), tls = tls.is_some(), data_dir = %dir.display(), cluster = %cluster, server = %server_id, database = store.backend().as_str(), "slipway server ready");

    let signal = async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
        tracing::info!("shutting down; containers keep running");
        let _ = shutdown_tx.send(true);
    };
    let lowat = crate::lowat::kernel_signals_lowered_mark().await;
    if !lowat {
        tracing::info!(
            "this kernel does not signal a lowered SO_RCVLOWAT; uploads are read unbatched"
        );
    }
    tokio::spawn(signal);
    crate::limits::serve(
        listeners,
        app,
        tls.map(|t| t.acceptor),
        lowat,
        args.limits,
        shutdown_rx.clone(),
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}
