//! The server's own long-running loops, each under the server's [`Supervisor`]: leadership
//! (which runs the controller and the registry's chores while this server leads), the
//! heartbeat in the database, and the ingress watchdog. Each is restartable: what it needs
//! is cloned (or shared behind a lock) into every incarnation.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use slipway_controller::Controller;
use slipway_registry::Registry;
use slipway_store::Store;
use slipway_store::secrets::SecretBox;
use slipway_supervise::{Beat, LoopSpec, Supervisor};
use tokio::sync::watch;

use crate::ingress::{Checked, Supervised};

/// Rounds of a second or two: a loop silent this long is stuck. The ingress loop makes
/// progress only while the ingress answers, so this also says the ingress is down.
const STALE: Duration = Duration::from_secs(30);

/// The controller while this server leads.
pub(super) struct Leading {
    pub controller: Controller,
    stop: watch::Sender<bool>,
}

/// The controller while this server leads, shared by the loops that need it.
pub(super) type SharedLeading = Arc<tokio::sync::Mutex<Option<Leading>>>;

/// What the leadership loop needs to start the controller.
#[derive(Clone)]
pub(super) struct Leadership {
    pub store: Store,
    pub server_id: String,
    pub hosts: slipway_agent::Hosts,
    pub flag: Arc<AtomicBool>,
    pub cluster: String,
    pub ingress: Option<slipway_ingress::client::IngressClient>,
    pub secrets: SecretBox,
    pub registry: Registry,
    pub leading: SharedLeading,
    pub supervisor: Supervisor,
    /// Where deployment traces go.
    pub traces: slipway_otel::Exporter,
}

impl Leadership {
    /// Runs the controller (and the registry's janitor) while this server leads: every
    /// second it takes or checks leadership; it starts them when it gains it and stops them
    /// at once when it loses it (the database session that holds the lock failed its check).
    pub(super) fn spawn(self, shutdown: watch::Receiver<bool>) {
        let sup = self.supervisor.clone();
        let s = shutdown.clone();
        sup.spawn(
            LoopSpec::new("leadership").stale_after(STALE),
            shutdown,
            move |beat| self.clone().run(beat, s.clone()),
        );
    }

    async fn run(self, beat: Beat, mut shutdown: watch::Receiver<bool>) {
        loop {
            let lead = match self.store.try_lead(&self.server_id).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "leadership check failed");
                    false
                }
            };
            {
                let mut current = self.leading.lock().await;
                match (lead, current.is_some()) {
                    (true, false) => *current = Some(self.start_leading()),
                    (false, true) => {
                        tracing::warn!(server = %self.server_id, "this server no longer leads: stopping the controller");
                        self.flag.store(false, Ordering::SeqCst);
                        if let Some(l) = current.take() {
                            let _ = l.stop.send(true);
                        }
                    }
                    _ => {}
                }
            }
            beat.progress();
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => {
                    if let Some(l) = self.leading.lock().await.take() {
                        let _ = l.stop.send(true);
                    }
                    self.store.resign().await;
                    return;
                }
            }
        }
    }

    fn start_leading(&self) -> Leading {
        tracing::info!(server = %self.server_id, "this server leads: starting the controller");
        let (stop, stop_rx) = watch::channel(false);
        self.flag.store(true, Ordering::SeqCst);
        let controller = Controller::start(
            self.store.clone(),
            self.hosts.clone(),
            self.cluster.clone(),
            self.ingress.clone(),
            self.secrets.clone(),
            &self.supervisor,
            stop_rx.clone(),
        );
        controller.trace_to(self.traces.clone());
        for (chore, period) in self.registry.chores() {
            let (reg, s) = (self.registry.clone(), stop_rx.clone());
            self.supervisor
                .spawn(LoopSpec::new(chore.name()), stop_rx.clone(), move |_| {
                    let (reg, s) = (reg.clone(), s.clone());
                    async move { reg.run_chore(chore, period, s).await }
                });
        }
        controller.wake_all();
        Leading { controller, stop }
    }
}

/// Records this server in the database every 2 s (what `slipway server ls` shows) and
/// forgets servers gone for an hour.
pub(super) fn spawn_heartbeat(
    sup: &Supervisor,
    store: Store,
    info: slipway_store::ServerInfo,
    shutdown: watch::Receiver<bool>,
) {
    let s = shutdown.clone();
    sup.spawn(
        LoopSpec::new("heartbeat").stale_after(STALE),
        shutdown,
        move |beat| {
            let (store, mut info, mut shutdown) = (store.clone(), info.clone(), s.clone());
            async move {
                loop {
                    info.seen_at = slipway_store::now_ms();
                    match store.heartbeat(&info).await {
                        Ok(()) => beat.progress(),
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot record this server's heartbeat")
                        }
                    }
                    let _ = store.forget_servers(info.seen_at - 3_600_000).await;
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            }
        },
    );
}

/// Keeps the data plane up: restarts the ingress if it dies (with a back-off while it keeps
/// failing), then (if this server leads) has the routes sent again.
pub(super) fn spawn_ingress_watchdog(
    sup: &Supervisor,
    ingress: Supervised,
    leading: SharedLeading,
    shutdown: watch::Receiver<bool>,
) {
    let ingress = Arc::new(tokio::sync::Mutex::new(ingress));
    let s = shutdown.clone();
    sup.spawn(
        LoopSpec::new("ingress").stale_after(STALE),
        shutdown,
        move |beat| {
            let (ingress, leading, mut shutdown) = (ingress.clone(), leading.clone(), s.clone());
            async move {
                let mut ing = ingress.lock().await;
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        _ = shutdown.changed() => return,
                    }
                    let checked = ing.check().await;
                    if checked != Checked::Down {
                        beat.progress();
                    }
                    if checked == Checked::Restarted
                        && let Some(l) = leading.lock().await.as_ref()
                    {
                        l.controller.wake_all();
                    }
                }
            }
        },
    );
}
