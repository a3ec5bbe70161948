//! `slipway server`: opens the store, makes sure an admin token exists, connects to the
//! engine, starts the controller and serves the API.

use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use slipway_api::{ApiState, TOKEN_META_KEY, hash_token};
use slipway_controller::{Controller, random_id};
use slipway_registry::{AdminCheck, Registry, RegistryConfig};
use slipway_runtime::DockerRuntime;
use slipway_store::{SqliteStore, Store};
use tokio::sync::watch;

/// Default API address: loopback only.
pub const DEFAULT_API_ADDR: &str = "127.0.0.1:7780";

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Where state (SQLite), the admin token and the bound address are kept.
    #[arg(long, env = "SLIPWAY_DATA_DIR")]
    data_dir: Option<PathBuf>,
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
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
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
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
/// was deleted (token rotation).
async fn ensure_admin_token(store: &dyn Store, dir: &Path) -> Result<()> {
    let path = dir.join("admin.token");
    let stored = store.get_meta(TOKEN_META_KEY).await?;
    if let (Some(hash), Ok(text)) = (&stored, std::fs::read_to_string(&path))
        && &hash_token(&text) == hash
    {
        return Ok(());
    }
    let token = format!("slw_{}", random_id(32));
    write_private(&path, &format!("{token}\n"))?;
    store.set_meta(TOKEN_META_KEY, &hash_token(&token)).await?;
    tracing::info!(path = %path.display(), "wrote a new admin token");
    Ok(())
}

/// Lets the registry accept the admin token (only its hash is stored) as a password.
struct StoreAdminCheck(Arc<dyn Store>);

#[async_trait::async_trait]
impl AdminCheck for StoreAdminCheck {
    async fn is_admin_token(&self, secret: &str) -> bool {
        use subtle::ConstantTimeEq;
        match self.0.get_meta(TOKEN_META_KEY).await {
            Ok(Some(hash)) => bool::from(hash_token(secret).as_bytes().ct_eq(hash.as_bytes())),
            _ => false,
        }
    }
}

pub async fn run(args: ServerArgs) -> Result<ExitCode> {
    init_logging(args.log_json);
    let dir = args.data_dir.unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict permissions of {}", dir.display()))?;
    let store = SqliteStore::open(&dir.join("slipway.db"))
        .await
        .with_context(|| format!("cannot open the state database in {}", dir.display()))?;
    let store: Arc<dyn Store> = Arc::new(store);
    ensure_admin_token(store.as_ref(), &dir).await?;
    let cluster = match store.get_meta("cluster_id").await? {
        Some(id) => id,
        None => {
            let id = random_id(8);
            store.set_meta("cluster_id", &id).await?;
            id
        }
    };
    let registry = Registry::open(RegistryConfig::new(
        dir.join("registry"),
        Arc::new(StoreAdminCheck(store.clone())),
    ))
    .await
    .with_context(|| {
        format!(
            "cannot open the registry in {}",
            dir.join("registry").display()
        )
    })?;
    let rt = DockerRuntime::connect().await?;
    let listener = tokio::net::TcpListener::bind(args.api_addr)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}; pick another --api-addr",
                args.api_addr
            )
        })?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "the API listens on a non-loopback address; every call still needs the admin token");
    }

    let mut ingress = if args.no_ingress {
        None
    } else {
        Some(
            crate::ingress::Supervised::start(
                dir.join("ingress"),
                args.ingress_addr,
                args.ingress_max_body,
            )
            .await?,
        )
    };
    let ingress_url = ingress.as_ref().and_then(|i| i.listen()).map(|l| {
        let first = l
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .replace("0.0.0.0", "127.0.0.1");
        format!("http://{first}")
    });
    store
        .set_meta("ingress_url", ingress_url.as_deref().unwrap_or(""))
        .await?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    registry.spawn_janitor(shutdown_rx.clone());
    let controller = Controller::start(
        store.clone(),
        rt,
        cluster.clone(),
        ingress.as_ref().map(|i| i.client.clone()),
        shutdown_rx.clone(),
    );
    if let Some(mut ing) = ingress.take() {
        // Keep the data plane up: restart the ingress if it dies, then re-send the routes.
        let controller = controller.clone();
        let mut shutdown = shutdown_rx.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
                    _ = shutdown.changed() => return,
                }
                if ing.check().await {
                    controller.wake_all();
                }
            }
        });
    }
    // One listener: the native API, the registry (/v2/) and the registry's API routes, and
    // the AWS-compatible API (`POST /`: ECS, ECR, STS; `/api/v1/access-keys`).
    let aws = slipway_aws::router(slipway_aws::AwsState {
        store: store.clone(),
        controller: controller.clone(),
        registry: registry.clone(),
    });
    let app = slipway_api::router(ApiState { store, controller })
        .merge(registry.router())
        .merge(registry.admin_router())
        .merge(aws);
    write_private(&dir.join("api.addr"), &format!("http://{addr}\n"))?;
    tracing::info!(api = %format!("http://{addr}"), data_dir = %dir.display(), cluster = %cluster, "slipway server ready");

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
    axum::serve(listener, app)
        .with_graceful_shutdown(signal)
        .await?;
    Ok(ExitCode::SUCCESS)
}
