//! Host liveness: a host whose agent has not been connected for the loss timeout is LOST
//! (its tasks are then replaced on the others); a connected host's record says when it was
//! last seen. A leader that has just taken over gives agents the same timeout to find it
//! before it calls any host lost.

use std::time::Duration;

use slipway_core::placement::HostState;
use slipway_store::{Batch, Write};
use tokio::sync::watch;

use crate::{Controller, now_ms};

/// How long a host may be out of touch before it is lost (Swarm: ~15 s, Nomad: ~20 s).
pub const LOSS_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a connected host's `last_seen` is written.
const SEEN_EVERY_MS: i64 = 5_000;

impl Controller {
    pub(crate) async fn maintain_hosts(self, mut shutdown: watch::Receiver<bool>) {
        let started = now_ms();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return,
            }
            if let Err(e) = self.check_hosts(started).await {
                tracing::warn!(error = %e, "checking hosts failed");
            }
        }
    }

    async fn check_hosts(&self, started: i64) -> Result<(), crate::ControllerError> {
        let store = &self.inner.store;
        let now = now_ms();
        let loss = LOSS_TIMEOUT.as_millis() as i64;
        let mut lost_any = false;
        for mut h in store.list_hosts().await? {
            let up = self.inner.hosts.is_up(&h.id);
            if up {
                if now - h.last_seen >= SEEN_EVERY_MS {
                    h.last_seen = now;
                    // A lost host whose agent is back takes tasks again.
                    if h.state == HostState::Lost {
                        h.state = HostState::Active;
                        h.reason = Some("its agent is back".into());
                        tracing::info!(host = %h.id, "host is back");
                    }
                    let _ = store.commit(Batch::new().write(Write::Host(h))).await;
                }
                continue;
            }
            let silent = now - h.last_seen.max(started);
            if h.state != HostState::Lost && silent >= loss {
                tracing::warn!(host = %h.id, silent_ms = silent, "host lost: its agent stopped answering");
                h.state = HostState::Lost;
                h.reason = Some(format!(
                    "no agent connection for {} s",
                    LOSS_TIMEOUT.as_secs()
                ));
                if store
                    .commit(Batch::new().write(Write::Host(h)))
                    .await
                    .is_ok()
                {
                    lost_any = true;
                }
            }
        }
        if lost_any {
            // Their tasks are counted out and replaced on the other hosts.
            self.wake_all();
        }
        Ok(())
    }
}
