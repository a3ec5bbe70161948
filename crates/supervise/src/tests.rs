use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::*;

/// Waits (polling) until `f` holds; panics after 10 s.
async fn until(mut f: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached");
}

fn one(sup: &Supervisor, name: &str) -> Option<LoopReport> {
    sup.report().into_iter().find(|r| r.name == name)
}

#[test]
fn backoff_doubles_from_100ms_and_is_capped() {
    assert_eq!(backoff(1), Duration::from_millis(100));
    assert_eq!(backoff(2), Duration::from_millis(200));
    assert_eq!(backoff(3), Duration::from_millis(400));
    for n in 1..40 {
        assert!(backoff(n + 1) >= backoff(n), "grows at {n}");
    }
    assert_eq!(backoff(10), MAX_BACKOFF);
    assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    // A zero count (never failed) waits the least.
    assert_eq!(backoff(0), FIRST_BACKOFF);
}

#[test]
fn a_long_run_resets_the_failure_count() {
    assert_eq!(next_failures(0, Duration::ZERO), 1);
    assert_eq!(next_failures(5, Duration::from_secs(1)), 6);
    assert_eq!(next_failures(5, RESET_AFTER), 1);
    assert_eq!(next_failures(u32::MAX, Duration::ZERO), u32::MAX);
}

#[tokio::test]
async fn a_loop_that_panics_twice_is_restarted_twice_and_is_down_between() {
    install_panic_hook();
    let sup = Supervisor::new(false);
    let (_tx, rx) = watch::channel(false);
    let runs = Arc::new(AtomicU32::new(0));
    // What the supervisor reported for this loop each time it (re)built it.
    let seen: Arc<Mutex<Vec<LoopReport>>> = Arc::default();
    let (r, s, me) = (runs.clone(), seen.clone(), sup.clone());
    sup.spawn(LoopSpec::new("flaky"), rx, move |beat| {
        let n = r.fetch_add(1, Ordering::SeqCst);
        if let Some(rep) = one(&me, "flaky") {
            s.lock().unwrap().push(rep);
        }
        async move {
            if n < 2 {
                panic!("boom {n}");
            }
            beat.progress();
            std::future::pending::<()>().await
        }
    });
    until(|| one(&sup, "flaky").is_some_and(|r| r.restarts == 2 && r.up)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    // First start: not yet up, no panic. Each rebuild: down, with the panic just logged.
    assert!(!seen[0].up && seen[0].last_panic.is_none());
    for (i, rep) in seen.iter().enumerate().skip(1) {
        assert!(!rep.up, "down before restart {i}");
        assert_eq!(rep.restarts, i as u32);
        let panic = rep.last_panic.clone().unwrap();
        assert!(
            panic.starts_with(&format!("boom {} (at ", i - 1)),
            "{panic}"
        );
    }
    let now = one(&sup, "flaky").unwrap();
    assert!(now.ready());
    assert!(now.last_panic.unwrap().starts_with("boom 1"));
}

#[tokio::test]
async fn the_panic_hook_records_where_a_supervised_loop_panicked() {
    install_panic_hook();
    let sup = Supervisor::new(false);
    let (_tx, rx) = watch::channel(false);
    let state = Arc::new(Mutex::new(None));
    let runs = Arc::new(AtomicU32::new(0));
    let (st, r, me) = (state.clone(), runs.clone(), sup.clone());
    sup.spawn(LoopSpec::new("hooked"), rx, move |_beat| {
        let n = r.fetch_add(1, Ordering::SeqCst);
        // The second build sees the state the first panic left (the log line took the
        // backtrace; the hook wrote it before).
        *st.lock().unwrap() = Some(me.inner.loops.lock().unwrap()["hooked"].clone());
        async move {
            if n == 0 {
                panic!("hooked panic");
            }
            std::future::pending::<()>().await
        }
    });
    until(|| runs.load(Ordering::SeqCst) == 2).await;
    let s = state.lock().unwrap().clone().unwrap();
    // Taken by the log line: nothing left over for the next panic.
    assert!(lock(&s.backtrace).is_none());
    // The hook told where: this file.
    let panic = lock(&s.last_panic).clone().unwrap();
    assert!(
        panic.starts_with("hooked panic (at ") && panic.contains("tests.rs"),
        "{panic}"
    );
}

#[tokio::test]
async fn a_loop_that_returns_on_shutdown_is_not_restarted_and_is_forgotten() {
    let sup = Supervisor::new(false);
    let (tx, rx) = watch::channel(false);
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    let handle = sup.spawn(LoopSpec::new("polite"), rx.clone(), move |_beat| {
        r.fetch_add(1, Ordering::SeqCst);
        let mut rx = rx.clone();
        async move {
            let _ = rx.changed().await;
        }
    });
    until(|| one(&sup, "polite").is_some_and(|r| r.up)).await;
    tx.send(true).unwrap();
    handle.await.unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert!(one(&sup, "polite").is_none());
}

#[tokio::test]
async fn a_loop_that_returns_early_is_restarted() {
    let sup = Supervisor::new(false);
    let (_tx, rx) = watch::channel(false);
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    sup.spawn(LoopSpec::new("quitter"), rx, move |_beat| {
        let n = r.fetch_add(1, Ordering::SeqCst);
        async move {
            if n > 0 {
                std::future::pending::<()>().await;
            }
        }
    });
    until(|| one(&sup, "quitter").is_some_and(|r| r.restarts == 1 && r.up)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_injected_fault_panics_a_waiting_loop_which_comes_back() {
    let sup = Supervisor::new(true);
    let (_tx, rx) = watch::channel(false);
    sup.spawn(LoopSpec::new("idle"), rx, |_beat| {
        std::future::pending::<()>()
    });
    until(|| one(&sup, "idle").is_some_and(|r| r.up)).await;
    assert!(matches!(
        sup.inject_panic("nope"),
        Err(FaultError::UnknownLoop(n)) if n == "nope"
    ));
    sup.inject_panic("idle").unwrap();
    until(|| one(&sup, "idle").is_some_and(|r| r.restarts == 1 && r.up)).await;
    let rep = one(&sup, "idle").unwrap();
    assert!(
        rep.last_panic
            .unwrap()
            .starts_with("fault injected into the idle loop")
    );
}

#[tokio::test]
async fn fault_injection_is_refused_unless_enabled() {
    let sup = Supervisor::new(false);
    let (_tx, rx) = watch::channel(false);
    sup.spawn(LoopSpec::new("idle"), rx, |_beat| {
        std::future::pending::<()>()
    });
    assert!(matches!(
        sup.inject_panic("idle"),
        Err(FaultError::Disabled)
    ));
}

#[tokio::test]
async fn a_loop_without_progress_is_stale_and_not_ready() {
    let sup = Supervisor::new(false);
    let (_tx, rx) = watch::channel(false);
    sup.spawn(
        LoopSpec::new("stuck").stale_after(Duration::from_millis(1)),
        rx.clone(),
        |_beat| std::future::pending::<()>(),
    );
    sup.spawn(LoopSpec::new("waiting"), rx, |_beat| {
        std::future::pending::<()>()
    });
    until(|| one(&sup, "stuck").is_some_and(|r| r.up && r.stale)).await;
    assert!(!one(&sup, "stuck").unwrap().ready());
    // No promise of progress: idle is fine.
    assert!(one(&sup, "waiting").unwrap().ready());
}
