//! Slipway's controller: the reconcile loop that keeps services at their desired state.
//!
//! The controller observes (containers from the engine, task and deployment records from
//! the store, HTTP health probes it runs itself), asks the pure planner
//! ([`slipway_core::planner`]) what to do, and carries the actions out idempotently. It is
//! level-triggered: engine events and API calls only *wake* it, and every pass starts by
//! observing again, so a controller that crashed at any point recovers on its next pass.
//!
//! Only the leading server runs it (see `slipway_store::Store::try_lead`). It learns of
//! intents through the store's notices, committed by the application layer on any server;
//! its own writes are compare-and-swaps on the versions it read, so a pass that raced an
//! intent (a scale, a stop, a new deployment) fails, and the next pass observes again and
//! re-plans instead of overwriting what it did not see.
//!
//! On a cluster of several hosts it also places tasks (`schedule`), watches the hosts'
//! liveness (`hosts`), and keeps every host's service discovery in step (`discovery`).
//! It runs the Scheduled Jobs (`jobs`) and orders first deploys (`depends`), and traces
//! each deployment over OTLP when an exporter is given ([`traces`]).
//!
//! It may call the store, the runtime and the hosts (`slipway_agent::Hosts`), and reports
//! to the process' metrics (`slipway_metrics`) each reconcile pass and each task it
//! replaces; it serves nothing (the API crate does).
//!
//! Its loops run under the server's [`Supervisor`]: a loop that panics is restarted (after
//! a back-off) by calling its factory again, so each takes what it needs anew (the wake
//! receiver is shared behind a lock, the broadcasts are subscribed again) and wakes every
//! service, as anything may have been missed while it was down. The loops with a period
//! (reconcile, prober, hosts, jobs) report progress each round; see [`LOOPS`].

mod depends;
mod discovery;
mod executor;
mod hosts;
mod jobs;
mod observe;
mod prober;
mod rollout;
mod routing;
mod schedule;
mod standalone;
pub mod traces;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use slipway_agent::Hosts;
use slipway_core::health::ProbeState;
use slipway_core::model::{Deployment, HttpHealthCheck, ServiceKey, Task};
use slipway_store::secrets::SecretBox;
use slipway_store::{Batch, Notice, Store, Write};
use slipway_supervise::{Beat, LoopSpec, Supervisor};
use tokio::sync::{mpsc, watch};

pub use slipway_store::now_ms;

/// How often every service is reconciled even when nothing woke the controller.
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(5);

/// The names of the controller's supervised loops (as `/readyz` lists them).
pub const LOOPS: [&str; 7] = [
    "reconcile",
    "engine-events",
    "notices",
    "host-events",
    "hosts",
    "jobs",
    "prober",
];

/// A reconcile loop with no pass for this long is stuck (a pass runs at least every
/// [`RESYNC_INTERVAL`]; a pass may wait on slow engines).
const RECONCILE_STALE: Duration = Duration::from_secs(120);
/// The other periodic loops (rounds of at most a second, plus their calls).
const PERIODIC_STALE: Duration = Duration::from_secs(60);

/// How long a `die` event makes a pass ask the engine about a container the list shows
/// running.
const DYING_MS: i64 = 10_000;

/// Errors of one reconcile pass (logged; the next pass retries).
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Store(#[from] slipway_store::StoreError),
    #[error(transparent)]
    Runtime(#[from] slipway_runtime::RuntimeError),
    #[error(transparent)]
    Host(#[from] slipway_agent::HostError),
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
    /// The port probed (named in reports).
    port: u16,
    /// The remote host that runs the task (probed from there); `None`: this server's host.
    host: Option<String>,
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
    /// Containers the engine reported dead (`die`), by id, with when: the list may still
    /// show them running for a while.
    dying: HashMap<String, i64>,
    requeue: HashMap<ServiceKey, i64>,
    /// Services whose first rollout waits for their dependencies (`depends_on`).
    waiting: HashSet<ServiceKey>,
    /// The routing configuration last accepted by the ingress.
    pushed: Option<slipway_ingress::RoutingConfig>,
    /// The service map last sent to the hosts.
    services_pushed: Option<slipway_agent::discovery::ServiceMap>,
    /// (service, host) pairs whose "host unheard, replacing its tasks" event was told.
    unheard_told: HashSet<(ServiceKey, String)>,
    /// Version counters at the start of each rollout's current analysis interval, by
    /// deployment (lost on restart: the next interval starts then).
    snapshots: HashMap<String, rollout::Snapshot>,
    /// Deployments whose outcome was traced (see [`traces`]).
    traced: HashSet<String>,
}

struct Inner {
    store: Store,
    hosts: Hosts,
    cluster: String,
    wake: mpsc::UnboundedSender<Wake>,
    local: Mutex<Local>,
    http: reqwest::Client,
    /// Serialises network creation: the engine allows duplicate network names.
    network_lock: tokio::sync::Mutex<()>,
    ingress: Option<slipway_ingress::client::IngressClient>,
    /// Serialises routing pushes so they reach the ingress in order.
    ingress_lock: tokio::sync::Mutex<()>,
    secrets: SecretBox,
    /// When this controller started (hosts unheard since are judged from then).
    started_at: i64,
    /// Where deployment traces go (see [`traces`]).
    traces: std::sync::OnceLock<slipway_otel::Exporter>,
}

/// The wake receiver, shared by the incarnations of the reconcile loop.
type WakeRx = Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Wake>>>;

/// Handle to the running controller.
#[derive(Clone)]
pub struct Controller {
    inner: Arc<Inner>,
}

impl Controller {
    /// Starts the reconcile loop, the engine event watchers, the store notice listener, the
    /// hosts' and jobs' loops and the health prober under `supervisor`. They run until
    /// `shutdown` turns true.
    pub fn start(
        store: Store,
        hosts: Hosts,
        cluster: String,
        ingress: Option<slipway_ingress::client::IngressClient>,
        secrets: SecretBox,
        supervisor: &Supervisor,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        // reqwest is built with rustls (for `slipway watch`) and needs a process-wide crypto
        // provider; ring, as everywhere in Slipway (a no-op when one is installed).
        let _ = rustls::crypto::ring::default_provider().install_default();
        // The health prober's client, as every host's agent builds it: never through a
        // proxy (`HTTP_PROXY` of the server is not the tasks'), and a redirect is an answer
        // judged by the success codes (as an ALB does), never followed: a container cannot
        // point the server's probe anywhere.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .pool_max_idle_per_host(0)
            .build()
            .expect("an HTTP client with the default TLS setup builds");
        let inner = Arc::new(Inner {
            store,
            hosts,
            cluster,
            wake: tx,
            local: Mutex::new(Local::default()),
            http,
            network_lock: tokio::sync::Mutex::new(()),
            ingress,
            ingress_lock: tokio::sync::Mutex::new(()),
            secrets,
            started_at: now_ms(),
            traces: std::sync::OnceLock::new(),
        });
        let c = Controller { inner };
        c.supervise(supervisor, Arc::new(tokio::sync::Mutex::new(rx)), shutdown);
        c
    }

    /// Runs each loop of [`LOOPS`] under `sup`.
    fn supervise(&self, sup: &Supervisor, rx: WakeRx, shutdown: watch::Receiver<bool>) {
        let periodic = |name: &str, stale| LoopSpec::new(name).stale_after(stale);
        let (c, s) = (self.clone(), shutdown.clone());
        sup.spawn(
            periodic("reconcile", RECONCILE_STALE),
            shutdown.clone(),
            move |beat| c.clone().run(rx.clone(), beat, s.clone()),
        );
        let (c, s) = (self.clone(), shutdown.clone());
        sup.spawn(
            LoopSpec::new("engine-events"),
            shutdown.clone(),
            move |_| c.clone().watch_events(s.clone()),
        );
        let (c, s) = (self.clone(), shutdown.clone());
        sup.spawn(LoopSpec::new("notices"), shutdown.clone(), move |_| {
            // Subscribed before the first await: nothing committed from here on is missed.
            let notices = c.inner.store.subscribe();
            c.clone().watch_notices(notices, s.clone())
        });
        let (c, s) = (self.clone(), shutdown.clone());
        sup.spawn(LoopSpec::new("host-events"), shutdown.clone(), move |_| {
            c.clone().watch_host_events(s.clone())
        });
        let (c, s) = (self.clone(), shutdown.clone());
        sup.spawn(
            periodic("hosts", PERIODIC_STALE),
            shutdown.clone(),
            move |beat| c.clone().maintain_hosts(beat, s.clone()),
        );
        let (c, s) = (self.clone(), shutdown.clone());
        sup.spawn(
            periodic("jobs", PERIODIC_STALE),
            shutdown.clone(),
            move |beat| c.clone().run_jobs(beat, s.clone()),
        );
        let (c, s) = (self.clone(), shutdown.clone());
        sup.spawn(periodic("prober", PERIODIC_STALE), shutdown, move |beat| {
            prober::run(c.clone(), beat, s.clone())
        });
    }

    /// Wakes the reconcile loop for the services committed batches name.
    async fn watch_notices(
        self,
        mut notices: tokio::sync::broadcast::Receiver<Notice>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        use tokio::sync::broadcast::error::RecvError;
        // Started (or started again): what was committed before is re-read by a full pass.
        self.wake_all();
        loop {
            tokio::select! {
                n = notices.recv() => match n {
                    Ok(Notice::Service(k)) => self.wake(&k),
                    Ok(Notice::All) | Err(RecvError::Lagged(_)) => self.wake_all(),
                    Err(RecvError::Closed) => return,
                },
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Writes a task record read by this process (compare-and-swap on its version) and
    /// keeps its new version.
    pub(crate) async fn save_task(&self, t: &mut Task) -> Result<(), ControllerError> {
        let out = self
            .inner
            .store
            .commit(Batch::new().write(Write::Task(t.clone())))
            .await?;
        t.version = out[0].version();
        Ok(())
    }

    /// Writes a deployment record read by this process (compare-and-swap on its version).
    pub(crate) async fn save_deployment(&self, d: &mut Deployment) -> Result<(), ControllerError> {
        let out = self
            .inner
            .store
            .commit(Batch::new().write(Write::Deployment(d.clone())))
            .await?;
        d.version = out[0].version();
        Ok(())
    }

    pub(crate) async fn event(
        &self,
        key: &ServiceKey,
        at: i64,
        message: String,
    ) -> Result<(), ControllerError> {
        self.inner
            .store
            .commit(Batch::new().event(key, at, message))
            .await?;
        Ok(())
    }

    /// Applies `change` to a task's current record until the write sticks: for the
    /// background writers (a container being started or stopped) that race the reconcile
    /// pass and the application layer (a stop request), so neither overwrites the other.
    /// `change` returns false when there is nothing to write. `None`: no such task.
    pub(crate) async fn update_task(
        &self,
        id: &str,
        change: impl Fn(&mut Task) -> bool,
    ) -> Result<Option<Task>, ControllerError> {
        loop {
            let Some(mut t) = self.inner.store.get_task(id).await? else {
                return Ok(None);
            };
            if !change(&mut t) {
                return Ok(Some(t));
            }
            match self.save_task(&mut t).await {
                Ok(()) => return Ok(Some(t)),
                Err(ControllerError::Store(e)) if e.is_conflict() => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The id of this Slipway cluster (labels every container it owns).
    pub fn cluster(&self) -> &str {
        &self.inner.cluster
    }

    /// The engines of the cluster.
    pub fn hosts(&self) -> &Hosts {
        &self.inner.hosts
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

    /// The reconcile loop: a pass when woken, for requeued services, and of everything every
    /// [`RESYNC_INTERVAL`] (the first at once, so a restarted loop catches up).
    async fn run(self, rx: WakeRx, beat: Beat, mut shutdown: watch::Receiver<bool>) {
        let mut rx = rx.lock().await;
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
            let started = std::time::Instant::now();
            let passed = self.reconcile(scope.as_ref()).await;
            slipway_metrics::global().reconcile_pass(started.elapsed());
            if let Err(e) = passed {
                tracing::warn!(error = %e, "reconcile pass failed; retrying shortly");
                next_resync = next_resync.min(tokio::time::Instant::now() + Duration::from_secs(1));
            }
            // Register newly healthy tasks and forget stopped ones; a full pass re-sends the
            // whole configuration in case the ingress restarted.
            self.sync_ingress(all).await;
            self.sync_discovery(all).await;
            beat.progress();
        }
    }

    /// Wakes the services whose containers changed on a remote host.
    async fn watch_host_events(self, mut shutdown: watch::Receiver<bool>) {
        let mut events = self.inner.hosts.hub().events();
        // Anything may have happened while no one listened.
        self.wake_all();
        loop {
            let ev = tokio::select! {
                e = events.recv() => e,
                _ = shutdown.changed() => return,
            };
            match ev {
                Ok((host, ev)) => {
                    tracing::debug!(%host, action = %ev.action, container = %ev.container_id, "engine event");
                    self.on_engine_event(ev);
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => self.wake_all(),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    fn on_engine_event(&self, ev: slipway_runtime::ContainerEvent) {
        if ev.action == "die" {
            // The engine's container list can lag its `die` event (by seconds on a loaded
            // host): the next passes ask the engine about this container directly.
            let mut l = self.local();
            let now = now_ms();
            l.dying.retain(|_, at| now - *at < DYING_MS);
            l.dying.insert(ev.container_id.clone(), now);
        }
        match ev.service {
            Some(k) => {
                self.wake(&k);
                // The engine may report "die" a moment before its container list shows
                // the container as exited: look again shortly.
                let again = now_ms() + 150;
                let mut l = self.local();
                let at = l.requeue.entry(k).or_insert(again);
                *at = (*at).min(again);
            }
            None => self.wake_all(),
        }
    }

    async fn watch_events(self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(200);
        loop {
            let Some(rt) = self.inner.hosts.local_runtime().cloned() else {
                // No engine of its own: remote hosts report their events.
                let _ = shutdown.changed().await;
                return;
            };
            let mut stream = Box::pin(rt.events(&self.inner.cluster));
            loop {
                tokio::select! {
                    ev = stream.next() => match ev {
                        Some(Ok(ev)) => {
                            tracing::debug!(action = %ev.action, container = %ev.container_id, "engine event");
                            backoff = Duration::from_millis(200);
                            self.on_engine_event(ev);
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
