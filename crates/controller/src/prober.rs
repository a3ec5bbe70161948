//! The HTTP health prober: probes each task's `http.healthcheck` on schedule and wakes the
//! controller when a task's health changes.

use std::time::Duration;

use slipway_agent::probe::http_get;
use tokio::sync::watch;

use crate::{Controller, now_ms};

const TICK: Duration = Duration::from_millis(50);

pub(crate) async fn run(
    c: Controller,
    beat: slipway_supervise::Beat,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.changed() => return,
        }
        beat.progress();
        let now = now_ms();
        let due: Vec<(String, String, u64, Option<String>)> = {
            let mut l = c.local();
            l.probes
                .iter_mut()
                .filter(|(_, p)| !p.in_flight && p.next_at <= now)
                .map(|(id, p)| {
                    p.in_flight = true;
                    (
                        id.clone(),
                        p.url.clone(),
                        p.check.timeout_ms,
                        p.host.clone(),
                    )
                })
                .collect()
        };
        for (task, url, timeout_ms, host) in due {
            let c = c.clone();
            tokio::spawn(async move {
                let timeout = Duration::from_millis(timeout_ms);
                let result = match host {
                    // A task on another host is reachable only from there: its agent probes.
                    Some(h) => match c.inner.hosts.probe_remote(&h, &url, timeout).await {
                        Ok(r) => r,
                        // Its host did not answer: no word on the task either way (a host
                        // out of reach is the host-loss rules' business, not a failed
                        // check that would stop the task once the host is back).
                        Err(e) => {
                            tracing::debug!(task = %task, host = %h, error = %e, "probe: no answer from the host");
                            let mut l = c.local();
                            if let Some(p) = l.probes.get_mut(&task) {
                                p.in_flight = false;
                                p.next_at = now_ms() + p.state.next_probe_in_ms(&p.check) as i64;
                            }
                            return;
                        }
                    },
                    None => http_get(&c.inner.http, &url, timeout).await,
                };
                let now = now_ms();
                let mut wake = None;
                {
                    let mut l = c.local();
                    if let Some(p) = l.probes.get_mut(&task) {
                        let outcome = match result.status() {
                            Some(status) if p.check.accepts(status) => Ok(()),
                            _ => Err(result.describe(&p.check.path, p.port)),
                        };
                        let before = (p.state.healthy, p.state.failed_out(&p.check, now));
                        p.state.record(&p.check, now, outcome);
                        let after = (p.state.healthy, p.state.failed_out(&p.check, now));
                        p.in_flight = false;
                        p.next_at = now + p.state.next_probe_in_ms(&p.check) as i64;
                        if before != after {
                            wake = Some(p.service.clone());
                        }
                    }
                }
                if let Some(k) = wake {
                    c.wake(&k);
                }
            });
        }
    }
}
