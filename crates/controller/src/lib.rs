//! Slipway's controller: the reconcile loop that keeps services at their desired state.
//!
//! The controller observes (containers from the engine, task and deployment records from
//! the store, HTTP health probes it runs itself), asks the pure planner
//! ([`slipway_core::planner`]) what to do, and carries the actions out idempotently. It is
//! level-triggered: engine events and API calls only *wake* it, and every pass starts by
//! observing again, so a controller that crashed at any point recovers on its next pass.
//!
//! It may call the store and the runtime; it serves nothing (the API crate does).

mod executor;
mod observe;
mod prober;
mod routing;
pub mod secrets;
mod standalone;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use slipway_core::health::ProbeState;
use slipway_core::model::{HttpHealthCheck, ServiceKey};
use slipway_runtime::DockerRuntime;
use slipway_store::Store;
use tokio::sync::{mpsc, watch};

/// How often every service is reconciled even when nothing woke the controller.
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(5);

/// Errors of one reconcile pass (logged; the next pass retries).
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Store(#[from] slipway_store::StoreError),
    #[error(transparent)]
    Runtime(#[from] slipway_runtime::RuntimeError),
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A random lowercase hex id of `bytes` bytes.
pub fn random_id(bytes: usize) -> String {
    use rand::RngCore;
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug)]
enum Wake {
    All,
    Service(ServiceKey),
}

/// Probe bookkeeping for one task.
#[derive(Debug, Clone)]
struct Probe {
    service: ServiceKey,
    url: String,
    check: HttpHealthCheck,
    state: ProbeState,
    next_at: i64,
    in_flight: bool,
}

/// In-memory bookkeeping. Nothing here is needed for correctness after a restart: it only
/// remembers what this process has in flight, and probe tallies that are rebuilt by probing.
#[derive(Debug, Default)]
struct Local {
    probes: HashMap<String, Probe>,
    starting: HashSet<String>,
    stopping: HashSet<String>,
    /// Crash-loop back-off per service: (consecutive crashes, no start before).
    backoff: HashMap<ServiceKey, (u32, i64)>,
    requeue: HashMap<ServiceKey, i64>,
    /// The routing configuration last accepted by the ingress.
    pushed: Option<slipway_ingress::RoutingConfig>,
}

struct Inner {
    store: Arc<dyn Store>,
    rt: DockerRuntime,
    cluster: String,
    wake: mpsc::UnboundedSender<Wake>,
    local: Mutex<Local>,
    http: reqwest::Client,
    /// Serialises network creation: the engine allows duplicate network names.
    network_lock: tokio::sync::Mutex<()>,
    ingress: Option<slipway_ingress::client::IngressClient>,
    /// Serialises routing pushes so they reach the ingress in order.
    ingress_lock: tokio::sync::Mutex<()>,
    secrets: secrets::SecretBox,
}

/// Handle to the running controller.
#[derive(Clone)]
pub struct Controller {
    inner: Arc<Inner>,
}

impl Controller {
    /// Starts the reconcile loop, the engine event watcher and the health prober. They run
    /// until `shutdown` turns true.
    pub fn start(
        store: Arc<dyn Store>,
        rt: DockerRuntime,
        cluster: String,
        ingress: Option<slipway_ingress::client::IngressClient>,
        secrets: secrets::SecretBox,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        // reqwest is built with rustls (for `slipway watch`) and needs a process-wide crypto
        // provider; ring, as everywhere in Slipway (a no-op when one is installed).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("an HTTP client with the default TLS setup builds");
        let inner = Arc::new(Inner {
            store,
            rt,
            cluster,
            wake: tx,
            local: Mutex::new(Local::default()),
            http,
            network_lock: tokio::sync::Mutex::new(()),
            ingress,
            ingress_lock: tokio::sync::Mutex::new(()),
            secrets,
        });
        let c = Controller { inner };
        tokio::spawn(c.clone().run(rx, shutdown.clone()));
        tokio::spawn(c.clone().watch_events(shutdown.clone()));
        tokio::spawn(prober::run(c.clone(), shutdown));
        c
    }

    /// The id of this Slipway cluster (labels every container it owns).
    pub fn cluster(&self) -> &str {
        &self.inner.cluster
    }

    pub fn runtime(&self) -> &DockerRuntime {
        &self.inner.rt
    }

    /// Seals and opens secret values.
    pub fn secrets(&self) -> &secrets::SecretBox {
        &self.inner.secrets
    }

    /// Asks for a reconcile pass of one service soon.
    pub fn wake(&self, key: &ServiceKey) {
        let _ = self.inner.wake.send(Wake::Service(key.clone()));
    }

    /// Whether tasks are routed through an ingress.
    pub fn has_ingress(&self) -> bool {
        self.inner.ingress.is_some()
    }

    /// Asks for a reconcile pass of every service soon.
    pub fn wake_all(&self) {
        let _ = self.inner.wake.send(Wake::All);
    }

    fn local(&self) -> std::sync::MutexGuard<'_, Local> {
        self.inner.local.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn run(self, mut rx: mpsc::UnboundedReceiver<Wake>, mut shutdown: watch::Receiver<bool>) {
        let mut next_resync = tokio::time::Instant::now();
        loop {
            let mut all = false;
            let mut keys: HashSet<ServiceKey> = HashSet::new();
            let next_requeue = self.local().requeue.values().min().copied();
            let deadline = match next_requeue {
                Some(at) => {
                    let wait = Duration::from_millis((at - now_ms()).max(0) as u64);
                    next_resync.min(tokio::time::Instant::now() + wait)
                }
                None => next_resync,
            };
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(Wake::All) => all = true,
                    Some(Wake::Service(k)) => { keys.insert(k); }
                    None => return,
                },
                _ = tokio::time::sleep_until(deadline) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return;
            }
            // Take everything else that is waiting, so a burst of events costs one pass.
            while let Ok(msg) = rx.try_recv() {
                match msg {
                    Wake::All => all = true,
                    Wake::Service(k) => {
                        keys.insert(k);
                    }
                }
            }
            if tokio::time::Instant::now() >= next_resync {
                all = true;
                next_resync = tokio::time::Instant::now() + RESYNC_INTERVAL;
            }
            let now = now_ms();
            {
                let mut local = self.local();
                local.requeue.retain(|k, at| {
                    if *at <= now {
                        keys.insert(k.clone());
                        false
                    } else {
                        true
                    }
                });
            }
            let scope = if all { None } else { Some(keys) };
            if let Err(e) = self.reconcile(scope.as_ref()).await {
                tracing::warn!(error = %e, "reconcile pass failed; retrying shortly");
                next_resync = next_resync.min(tokio::time::Instant::now() + Duration::from_secs(1));
            }
            // Register newly healthy tasks and forget stopped ones; a full pass re-sends the
            // whole configuration in case the ingress restarted.
            self.sync_ingress(all).await;
        }
    }

    async fn watch_events(self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(200);
        loop {
            let mut stream = Box::pin(self.inner.rt.events(&self.inner.cluster));
            loop {
                tokio::select! {
                    ev = stream.next() => match ev {
                        Some(Ok(ev)) => {
                            tracing::debug!(action = %ev.action, container = %ev.container_id, "engine event");
                            backoff = Duration::from_millis(200);
                            match ev.service {
                                Some(k) => {
                                    self.wake(&k);
                                    // The engine may report "die" a moment before its container
                                    // list shows the container as exited: look again shortly.
                                    let again = now_ms() + 150;
                                    let mut l = self.local();
                                    let at = l.requeue.entry(k).or_insert(again);
                                    *at = (*at).min(again);
                                }
                                None => self.wake_all(),
                            }
                        }
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "docker event stream failed; reconnecting");
                            break;
                        }
                        None => break,
                    },
                    _ = shutdown.changed() => return,
                }
            }
            // Anything may have happened while we were not listening.
            self.wake_all();
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }
}
