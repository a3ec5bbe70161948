//! Notices of committed batches: which services' controller should look again.
//!
//! In this process a commit sends its notices at once. With PostgreSQL every commit also
//! runs `pg_notify` inside its transaction (so it is delivered only if it commits), and a
//! listener on every server turns other servers' notifications into notices and drops its
//! read caches: that is how several servers keep their caches right.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use slipway_core::model::ServiceKey;
use sqlx::postgres::PgListener;

use crate::Result;
use crate::db::{Inner, Store};

/// The PostgreSQL notification channel.
pub(crate) const CHANNEL: &str = "slipway_changes";

/// What a subscriber learns of a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A batch asked for this service to be reconciled.
    Service(ServiceKey),
    /// Notices may have been lost (a listener reconnected): look at everything again.
    All,
}

/// The payload of one notification.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Payload {
    /// The process that committed.
    pub o: String,
    /// `app/env/name` of the services to reconcile.
    pub k: Vec<String>,
}

impl Payload {
    pub fn encode(origin: &str, keys: &[ServiceKey]) -> String {
        serde_json::to_string(&Payload {
            o: origin.to_owned(),
            k: keys.iter().map(ToString::to_string).collect(),
        })
        .unwrap_or_default()
    }
}

fn key_of(s: &str) -> Option<ServiceKey> {
    let mut parts = s.splitn(3, '/');
    Some(ServiceKey::new(parts.next()?, parts.next()?, parts.next()?))
}

/// Listens for other servers' commits for as long as the store lives.
pub(crate) async fn spawn_listener(store: &Store) -> Result<()> {
    let Some(url) = store.inner.url.clone() else {
        return Ok(());
    };
    let mut listener = PgListener::connect(&url).await?;
    listener.listen(CHANNEL).await?;
    let weak = Arc::downgrade(&store.inner);
    tokio::spawn(async move {
        loop {
            // `try_recv` is cancel-safe; the timeout only lets the task notice that the
            // store is gone.
            let msg = tokio::time::timeout(Duration::from_secs(5), listener.try_recv()).await;
            let Some(inner) = weak.upgrade() else { return };
            match msg {
                Err(_) => {}
                Ok(Ok(Some(n))) => received(&inner, n.payload()),
                Ok(Ok(None)) => {
                    // The connection was lost and re-established: anything may have been
                    // missed in between.
                    tracing::info!("database notifications reconnected; re-reading everything");
                    lost(&inner);
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "database notifications failed; retrying");
                    lost(&inner);
                    drop(inner);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    Ok(())
}

fn received(inner: &Inner, payload: &str) {
    let Ok(p) = serde_json::from_str::<Payload>(payload) else {
        return;
    };
    if p.o == inner.origin {
        // Our own commit: caches and local notices were handled when it committed.
        return;
    }
    drop(inner.cache.write_all());
    crate::db::bump(inner);
    for k in p.k.iter().filter_map(|k| key_of(k)) {
        let _ = inner.notices.send(Notice::Service(k));
    }
}

fn lost(inner: &Inner) {
    drop(inner.cache.write_all());
    crate::db::bump(inner);
    let _ = inner.notices.send(Notice::All);
}
