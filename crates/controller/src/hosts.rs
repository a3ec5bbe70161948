//! Host liveness: a host unheard for half the loss timeout gets replacements of its tasks
//! started on the others (within maximum %; its own are left alone, as it cannot be told);
//! a host whose agent has not been connected for the loss timeout is LOST (its tasks are
//! then counted out); a connected host's record says when it was last seen. A leader that
//! has just taken over gives agents the same timeout to find it before it calls any host
//! lost.

use std::time::Duration;

use slipway_core::placement::HostState;
use slipway_store::{Batch, Write};
use tokio::sync::watch;

use crate::{Controller, now_ms};

/// How often a connected host's `last_seen` is written.
const SEEN_EVERY_MS: i64 = 5_000;

impl Controller {
    pub(crate) async fn maintain_hosts(
        self,
        beat: slipway_supervise::Beat,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let started = self.inner.started_at;
        let mut silent = std::collections::BTreeSet::new();
        let mut unheard = std::collections::BTreeSet::new();
        let mut up = Vec::new();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = shutdown.changed() => return,
            }
            // A host that (re)connected gets the service map.
            let now_up = self.inner.hosts.up();
            if now_up != up {
                up = now_up;
                self.sync_discovery(true).await;
            }
            // A host gone silent takes no new requests (nor one that speaks again does).
            let now_silent = self.inner.hosts.silent_hosts(crate::routing::SUSPECT_AFTER);
            if now_silent != silent {
                for h in now_silent.difference(&silent) {
                    tracing::warn!(host = %h, "host silent: its tasks take no new requests until it is heard again");
                }
                silent = now_silent;
                self.sync_ingress(false).await;
            }
            // Unheard for long enough: replacements start elsewhere (and, heard again, the
            // surplus is scaled in).
            let now_unheard = self.unheard_hosts();
            if now_unheard != unheard {
                for h in now_unheard.difference(&unheard) {
                    tracing::warn!(host = %h, "host unheard: starting replacements of its tasks on the other hosts");
                }
                unheard = now_unheard;
                self.wake_all();
            }
            if let Err(e) = self.check_hosts(started).await {
                tracing::warn!(error = %e, "checking hosts failed");
            }
            beat.progress();
        }
    }

    /// Hosts unheard for half the loss timeout (and heard since this server started): their
    /// tasks get replacements elsewhere before the host is called lost.
    pub(crate) fn unheard_hosts(&self) -> std::collections::BTreeSet<String> {
        self.inner
            .hosts
            .silent_hosts(self.inner.hosts.loss_timeout() / 2)
    }

    async fn check_hosts(&self, started: i64) -> Result<(), crate::ControllerError> {
        let store = &self.inner.store;
        let now = now_ms();
        let timeout = self.inner.hosts.loss_timeout();
        let loss = timeout.as_millis() as i64;
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
            // Counted from the last word this server heard from the agent (its heartbeat
            // answers a ping every second), else from the record or this leader's start.
            let silent = match self.inner.hosts.hub().last_heard(&h.id) {
                Some(heard) => now - heard,
                None => now - h.last_seen.max(started),
            };
            if h.state != HostState::Lost && silent >= loss {
                tracing::warn!(host = %h.id, silent_ms = silent, "host lost: its agent stopped answering");
                h.state = HostState::Lost;
                h.reason = Some(format!(
                    "no word from its agent for {} s",
                    timeout.as_secs()
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
