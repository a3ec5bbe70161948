//! Leadership and the list of servers.
//!
//! Exactly one server runs the controller. With PostgreSQL it is the holder of a
//! session-level advisory lock, taken on a connection of its own. The lock goes with that
//! session: when the leader's process dies the database ends the session at once; when the
//! leader loses the network the database notices within about 11 s (TCP keepalives set on
//! the session: 5 s idle, 3 probes 2 s apart), while the leader itself steps down after its
//! 3-second check fails, so two controllers never run at once. With SQLite the one server
//! of the data directory leads.
//!
//! Every server records itself in `servers` (a heartbeat); `slipway server ls` shows them
//! with the lock holder marked, read from `pg_locks` (the truth, not a flag a dead leader
//! could leave behind).

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection, Row};

use crate::db::{Backend, Store};
use crate::{Result, StoreError};

/// The advisory lock key of the controller ("slipway" in ASCII).
const LOCK_KEY: i64 = 0x0073_6c69_7077_6179;
/// How long a leadership check may take before the leader steps down.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// The leadership session (PostgreSQL only).
#[derive(Default)]
pub(crate) struct Lease {
    session: tokio::sync::Mutex<Option<PgConnection>>,
    leading: AtomicBool,
}

/// One server sharing the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    pub id: String,
    /// Where its API answers.
    pub api_url: String,
    /// Where its ingress listens (empty without one).
    pub ingress: String,
    pub started_at: i64,
    /// Its last heartbeat.
    pub seen_at: i64,
    /// Whether it runs the controller now.
    #[serde(default)]
    pub leader: bool,
}

impl Store {
    /// Becomes or stays the leader if possible; returns whether this process leads. A
    /// leader whose session fails its check steps down (returns false) at once.
    pub async fn try_lead(&self, server_id: &str) -> Result<bool> {
        if self.inner.backend == Backend::Sqlite {
            return Ok(true);
        }
        let lease = &self.inner.lease;
        let mut session = lease.session.lock().await;
        if session.is_none() {
            let url = self.inner.url.clone().unwrap_or_default();
            let opts = PgConnectOptions::from_str(&url)?
                .application_name(&format!("slipway-server:{server_id}"))
                .options([
                    ("tcp_keepalives_idle", "5"),
                    ("tcp_keepalives_interval", "2"),
                    ("tcp_keepalives_count", "3"),
                ]);
            match tokio::time::timeout(CHECK_TIMEOUT, opts.connect()).await {
                Ok(Ok(c)) => *session = Some(c),
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => {
                    return Err(StoreError::Unusable(
                        "the database did not answer within 3 s".into(),
                    ));
                }
            }
        }
        let conn = session.as_mut().expect("connected above");
        let leading = lease.leading.load(Ordering::SeqCst);
        let check = async {
            if leading {
                // The lock lives as long as the session: a live session still holds it.
                conn.ping().await.map(|()| true)
            } else {
                sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
                    .bind(LOCK_KEY)
                    .fetch_one(&mut *conn)
                    .await
            }
        };
        match tokio::time::timeout(CHECK_TIMEOUT, check).await {
            Ok(Ok(now)) => {
                lease.leading.store(now, Ordering::SeqCst);
                Ok(now)
            }
            Ok(Err(e)) => {
                *session = None;
                lease.leading.store(false, Ordering::SeqCst);
                Err(e.into())
            }
            Err(_) => {
                *session = None;
                lease.leading.store(false, Ordering::SeqCst);
                Err(StoreError::Unusable(
                    "the leadership check did not answer within 3 s".into(),
                ))
            }
        }
    }

    /// Gives leadership up: the lock is released in the session, so a standby can take it
    /// at once (the session's end alone releases it only once its backend has exited,
    /// which the database does after the connection closes), then the session ends.
    pub async fn resign(&self) {
        let mut session = self.inner.lease.session.lock().await;
        if let Some(mut c) = session.take() {
            let unlock = sqlx::query_scalar::<_, bool>("SELECT pg_advisory_unlock($1)")
                .bind(LOCK_KEY)
                .fetch_one(&mut c);
            let _ = tokio::time::timeout(CHECK_TIMEOUT, unlock).await;
            let _ = c.close().await;
        }
        self.inner.lease.leading.store(false, Ordering::SeqCst);
    }

    /// Records this server's heartbeat.
    pub async fn heartbeat(&self, s: &ServerInfo) -> Result<()> {
        sqlx::query(
            "INSERT INTO servers (id, api_url, ingress, started_at, seen_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (id) DO UPDATE SET api_url = excluded.api_url, ingress = excluded.ingress, seen_at = excluded.seen_at",
        )
        .bind(&s.id)
        .bind(&s.api_url)
        .bind(&s.ingress)
        .bind(s.started_at)
        .bind(s.seen_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Forgets servers not seen since `before`.
    pub async fn forget_servers(&self, before: i64) -> Result<u64> {
        let r = sqlx::query("DELETE FROM servers WHERE seen_at < $1")
            .bind(before)
            .execute(self.pool())
            .await?;
        Ok(r.rows_affected())
    }

    /// The id of the server that leads now (`None`: nobody holds the lock).
    pub async fn leader(&self) -> Result<Option<String>> {
        if self.inner.backend == Backend::Sqlite {
            let one: Option<String> =
                sqlx::query("SELECT id FROM servers ORDER BY seen_at DESC LIMIT 1")
                    .fetch_optional(self.pool())
                    .await?
                    .map(|r| r.get(0));
            return Ok(one);
        }
        let row = sqlx::query(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
               AND l.classid::bigint = $1 AND l.objid::bigint = $2
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .bind(LOCK_KEY >> 32)
        .bind(LOCK_KEY & 0xffff_ffff)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.and_then(|r| {
            r.get::<String, _>(0)
                .strip_prefix("slipway-server:")
                .map(str::to_owned)
        }))
    }

    /// The servers sharing this database, newest heartbeat first, the leader marked.
    pub async fn list_servers(&self) -> Result<Vec<ServerInfo>> {
        let leader = self.leader().await?;
        let rows = sqlx::query(
            "SELECT id, api_url, ingress, started_at, seen_at FROM servers ORDER BY seen_at DESC, id",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let id: String = r.get(0);
                ServerInfo {
                    leader: leader.as_deref() == Some(id.as_str()),
                    id,
                    api_url: r.get(1),
                    ingress: r.get(2),
                    started_at: r.get(3),
                    seen_at: r.get(4),
                }
            })
            .collect())
    }
}
