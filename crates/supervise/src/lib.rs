//! Supervision of Slipway's long-running loops: the one place that runs them, restarts them
//! when they panic, and knows whether each is up (what `GET /readyz` reports).
//!
//! [`Supervisor::spawn`] runs a named loop as a task. When the task panics it logs the panic
//! (message, the loop's name and, with [`install_panic_hook`], where and the backtrace),
//! marks the loop down, waits an exponential back-off ([`backoff`]: 100 ms doubling to
//! 30 s, counted again from the start once an incarnation ran for [`RESET_AFTER`]) and
//! starts it again by calling its factory once more: a loop must get everything it needs
//! from the factory (a shared receiver behind a lock, a new subscription), never consume it
//! once. A loop that returns while its shutdown signal is on has stopped and is forgotten;
//! one that returns without it is restarted as a failure.
//!
//! Liveness: a loop is *up* while an incarnation runs. Loops with a natural period also call
//! [`Beat::progress`] each round; with [`LoopSpec::stale_after`] a loop whose last progress
//! is older than that is reported stale (stuck), hence not ready. Loops that wait on events
//! (idle is normal) have no staleness.
//!
//! Fault injection (test-only): a supervisor made with `faults: true` (`slipway server`
//! reads `SLIPWAY_FAULT_INJECT=1`) accepts [`Supervisor::inject_panic`], which makes the
//! named loop's task panic at its next poll, even while it waits. It exists for the
//! integration tests of the restart path; production servers leave it off.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

/// The wait before the first restart of a loop that failed.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between restarts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// An incarnation that ran this long before failing starts the back-off again.
pub const RESET_AFTER: Duration = Duration::from_secs(60);

/// The wait before restarting a loop after its `failures`-th failure in a row (1-based):
/// [`FIRST_BACKOFF`] doubling each time, at most [`MAX_BACKOFF`].
pub fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(20);
    FIRST_BACKOFF
        .saturating_mul(1u32 << doublings)
        .min(MAX_BACKOFF)
}

/// The failure count after an incarnation that ran for `ran_for` failed, given the count
/// before: a long run starts counting again.
pub fn next_failures(before: u32, ran_for: Duration) -> u32 {
    if ran_for >= RESET_AFTER {
        1
    } else {
        before.saturating_add(1)
    }
}

/// Why a fault could not be injected.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error("fault injection is off (the server was not started with SLIPWAY_FAULT_INJECT=1)")]
    Disabled,
    #[error("no supervised loop is named {0:?} on this server")]
    UnknownLoop(String),
}

/// A loop's name and how it reports liveness.
#[derive(Debug, Clone)]
pub struct LoopSpec {
    name: String,
    stale_after: Option<Duration>,
}

impl LoopSpec {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            stale_after: None,
        }
    }

    /// The loop reports progress at least this often while it works; older progress means
    /// it is stuck.
    #[must_use]
    pub fn stale_after(mut self, d: Duration) -> Self {
        self.stale_after = Some(d);
        self
    }
}

struct LoopState {
    name: String,
    stale_after: Option<Duration>,
    up: AtomicBool,
    restarts: AtomicU32,
    progress: Mutex<Instant>,
    last_panic: Mutex<Option<String>>,
    /// Where the last panic happened and its backtrace (written by the panic hook).
    backtrace: Mutex<Option<(String, String)>>,
    fault: Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

tokio::task_local! {
    /// The loop whose task is being polled (read by the panic hook).
    static CURRENT: Arc<LoopState>;
}

/// Installs (once per process) a panic hook that records where a supervised loop panicked
/// and the backtrace, for the supervisor's log line; other panics go to the previous hook.
pub fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let current = CURRENT.try_with(Arc::clone);
            match current {
                Ok(state) => {
                    let at = info.location().map(|l| l.to_string()).unwrap_or_default();
                    let bt = std::backtrace::Backtrace::force_capture().to_string();
                    *lock(&state.backtrace) = Some((at, bt));
                }
                Err(_) => previous(info),
            }
        }));
    });
}

/// Handed to each incarnation of a loop: its way to report progress.
#[derive(Clone)]
pub struct Beat(Arc<LoopState>);

impl Beat {
    /// The loop completed a round (or is waiting as it should).
    pub fn progress(&self) {
        *lock(&self.0.progress) = Instant::now();
    }
}

/// One loop's state, as `/readyz` shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct LoopReport {
    pub name: String,
    /// An incarnation is running.
    pub up: bool,
    /// How many times it was started again after a failure.
    pub restarts: u32,
    /// Milliseconds since it last reported progress (or was started).
    pub last_progress_ms: u64,
    /// Its progress is older than it promised: it is stuck.
    pub stale: bool,
    /// The message of its last panic (with where, when the panic hook is installed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_panic: Option<String>,
}

impl LoopReport {
    pub fn ready(&self) -> bool {
        self.up && !self.stale
    }
}

#[derive(Default)]
struct Shared {
    loops: Mutex<BTreeMap<String, Arc<LoopState>>>,
    faults: bool,
}

/// The loops of one process (cheap to clone).
#[derive(Clone, Default)]
pub struct Supervisor {
    inner: Arc<Shared>,
}

impl Supervisor {
    /// A supervisor; `faults` enables [`Supervisor::inject_panic`] (tests only).
    pub fn new(faults: bool) -> Self {
        Self {
            inner: Arc::new(Shared {
                loops: Mutex::default(),
                faults,
            }),
        }
    }

    pub fn faults_enabled(&self) -> bool {
        self.inner.faults
    }

    /// Runs the loop `make` builds until it returns with `shutdown` on, building it again
    /// (after a back-off) whenever it panics or returns early. A loop of the same name
    /// already registered is replaced in the reports.
    pub fn spawn<F, Fut>(
        &self,
        spec: LoopSpec,
        shutdown: watch::Receiver<bool>,
        make: F,
    ) -> JoinHandle<()>
    where
        F: Fn(Beat) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let state = Arc::new(LoopState {
            name: spec.name.clone(),
            stale_after: spec.stale_after,
            up: AtomicBool::new(false),
            restarts: AtomicU32::new(0),
            progress: Mutex::new(Instant::now()),
            last_panic: Mutex::new(None),
            backtrace: Mutex::new(None),
            fault: Notify::new(),
        });
        lock(&self.inner.loops).insert(spec.name, state.clone());
        let shared = self.inner.clone();
        tokio::spawn(async move {
            supervise(&state, shutdown, make).await;
            let mut loops = lock(&shared.loops);
            if loops
                .get(&state.name)
                .is_some_and(|s| Arc::ptr_eq(s, &state))
            {
                loops.remove(&state.name);
            }
        })
    }

    /// Every registered loop, by name.
    pub fn report(&self) -> Vec<LoopReport> {
        let now = Instant::now();
        lock(&self.inner.loops)
            .values()
            .map(|s| {
                let age = now.saturating_duration_since(*lock(&s.progress));
                LoopReport {
                    name: s.name.clone(),
                    up: s.up.load(Ordering::SeqCst),
                    restarts: s.restarts.load(Ordering::SeqCst),
                    last_progress_ms: u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
                    stale: s.stale_after.is_some_and(|d| age > d),
                    last_panic: lock(&s.last_panic).clone(),
                }
            })
            .collect()
    }

    /// Makes the named loop panic at its next poll (test-only; see the module docs).
    pub fn inject_panic(&self, name: &str) -> Result<(), FaultError> {
        if !self.inner.faults {
            return Err(FaultError::Disabled);
        }
        let loops = lock(&self.inner.loops);
        let state = loops
            .get(name)
            .ok_or_else(|| FaultError::UnknownLoop(name.to_owned()))?;
        tracing::warn!(r#loop = name, "fault injection: this loop will panic");
        state.fault.notify_one();
        Ok(())
    }
}

/// The text of a panic payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".to_owned()
    }
}

async fn supervise<F, Fut>(state: &Arc<LoopState>, mut shutdown: watch::Receiver<bool>, make: F)
where
    F: Fn(Beat) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let name = state.name.clone();
    let mut failures = 0;
    loop {
        let fut = make(Beat(state.clone()));
        *lock(&state.progress) = Instant::now();
        state.up.store(true, Ordering::SeqCst);
        let started = Instant::now();
        let me = state.clone();
        let task = tokio::spawn(CURRENT.scope(state.clone(), async move {
            tokio::select! {
                biased;
                () = me.fault.notified() => panic!("fault injected into the {} loop", me.name),
                () = fut => {}
            }
        }));
        let outcome = task.await;
        state.up.store(false, Ordering::SeqCst);
        match outcome {
            Ok(()) if *shutdown.borrow() => {
                tracing::debug!(r#loop = %name, "loop stopped");
                return;
            }
            Ok(()) => {
                tracing::error!(r#loop = %name, "loop ended without being asked to; restarting it");
            }
            Err(e) if e.is_panic() => {
                let mut msg = panic_message(&*e.into_panic());
                let (at, bt) = lock(&state.backtrace).take().unzip();
                if let Some(at) = at {
                    msg = format!("{msg} (at {at})");
                }
                tracing::error!(
                    r#loop = %name,
                    panic = %msg,
                    backtrace = bt.as_deref().unwrap_or("(not captured)"),
                    "loop panicked; restarting it"
                );
                *lock(&state.last_panic) = Some(msg);
            }
            // Cancelled: the runtime is going away.
            Err(_) => return,
        }
        if *shutdown.borrow() {
            return;
        }
        failures = next_failures(failures, started.elapsed());
        let wait = backoff(failures);
        tracing::info!(r#loop = %name, wait_ms = wait.as_millis() as u64, "restarting after a back-off");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { return },
        }
        state.restarts.fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests;
