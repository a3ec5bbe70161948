//! Target choice: round robin over a service's routable targets (of the request's version
//! when the service weights versions), passive health, waiting for a target during a table
//! swap, and the in-flight count a target's drain waits for.

use super::*;

/// Resolves once `target`'s host is out of reach (never, while it is not).
pub(crate) async fn unreachable(target: &Target) {
    let mut rx = target.unreachable.subscribe();
    if rx.wait_for(|u| *u).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Picks a target for the request (one of the version its `cookie` names, when the service
/// weights versions; see [`crate::versions`]). With no target to take it right now (a table swap
/// mid-deploy, a dead target not yet replaced), the request waits for the next table, up to
/// [`NO_TARGET_WAIT`] after its arrival at `start`.
pub(crate) async fn pick_or_wait(
    shared: &Shared,
    host: &str,
    path: &str,
    service: &mut Arc<Service>,
    tried: &[Arc<Target>],
    start: Instant,
    cookie: Option<&str>,
) -> Option<Arc<Target>> {
    loop {
        if let Some(t) = pick(service, tried, shared, cookie) {
            return Some(t);
        }
        let remaining = NO_TARGET_WAIT.saturating_sub(start.elapsed());
        if remaining.is_zero() {
            return None;
        }
        let mut changes = shared.upstreams.changes.subscribe();
        let current = reroute(shared, host, path, Arc::clone(service));
        if !Arc::ptr_eq(&current, service) {
            *service = current;
            continue;
        }
        if tokio::time::timeout(remaining, changes.changed())
            .await
            .is_err()
        {
            return None;
        }
        *service = reroute(shared, host, path, Arc::clone(service));
    }
}

/// Counts a failed connect against its target, marking it down after [`PASSIVE_FAILURES`].
pub(crate) fn note_connect_failure(
    shared: &Shared,
    target: &Target,
    e: &crate::upstream::ConnectError,
) {
    shared.global.connect_errors.fetch_add(1, Ordering::Relaxed);
    crate::versions::note_connect_failure(target);
    tracing::debug!(error = %e, target = %target.id, "connect failed");
    let n = target.connect_failures.fetch_add(1, Ordering::Relaxed) + 1;
    if n >= PASSIVE_FAILURES {
        target.down_until.store(
            shared.now_ms() + PASSIVE_DOWN.as_millis() as u64,
            Ordering::Relaxed,
        );
    }
}

/// The service the current table routes this host and path to, if it is still the same
/// service (its targets may differ); otherwise the one the request started with.
pub(crate) fn reroute(
    shared: &Shared,
    host: &str,
    path: &str,
    service: Arc<Service>,
) -> Arc<Service> {
    let now = shared.table.load();
    match now.route(host, path) {
        Some(m) if m.service.name == service.name => Arc::clone(m.service),
        _ => service,
    }
}

/// Picks a target and counts the request in flight on it: round robin over the service's
/// routable targets or, when the service weights versions, over those of the version the
/// request is assigned (see [`crate::versions::Weighted::pick`]).
fn pick(
    service: &Service,
    tried: &[Arc<Target>],
    shared: &Shared,
    cookie: Option<&str>,
) -> Option<Arc<Target>> {
    let now = shared.now_ms();
    let t = match &service.weighted {
        None => {
            let n = service.active.len();
            if n == 0 {
                return None;
            }
            let start = service.next.fetch_add(1, Ordering::Relaxed);
            (0..2).find_map(|pass| pick_in(&service.active, start, tried, now, pass))?
        }
        Some(w) => w.pick(cookie, |targets, next, pass| {
            if targets.is_empty() {
                return None;
            }
            let start = next.fetch_add(1, Ordering::Relaxed);
            pick_in(targets, start, tried, now, pass)
        })?,
    };
    service.stats.in_flight.fetch_add(1, Ordering::Relaxed);
    Some(t)
}

/// One pass over `targets` from `start`: the first target not tried yet that is not draining
/// (pass 0 also skips passively failed ones; pass 1 fails open), counted in flight on it. A
/// target being drained is never picked: the in-flight count is raised before the draining
/// flag is checked, and the drainer sets the flag before it reads the count, so one of the two
/// always sees the other.
#[inline]
fn pick_in(
    targets: &[Arc<Target>],
    start: usize,
    tried: &[Arc<Target>],
    now: u64,
    pass: usize,
) -> Option<Arc<Target>> {
    let n = targets.len();
    for i in 0..n {
        let t = &targets[(start + i) % n];
        if tried.iter().any(|x| Arc::ptr_eq(x, t)) {
            continue;
        }
        if pass == 0 && t.down_until.load(Ordering::Relaxed) > now {
            continue;
        }
        t.in_flight.fetch_add(1, Ordering::SeqCst);
        if t.draining.load(Ordering::SeqCst) {
            t.in_flight.fetch_sub(1, Ordering::SeqCst);
            continue;
        }
        return Some(Arc::clone(t));
    }
    None
}

pub(crate) fn release(target: &Target, service: &Service) {
    target.in_flight.fetch_sub(1, Ordering::SeqCst);
    service.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
}
