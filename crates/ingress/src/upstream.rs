//! Connections to targets: each target keeps its own stacks of idle HTTP/1.1 connections
//! (hyper's for the hyper path, plain TCP streams for [`crate::fast`]).
//!
//! Owns connecting (bounded by the connect timeout, and abandoned as soon as the target
//! leaves the routing table: a dead task's address does not refuse connections, it swallows
//! them until ARP gives up, about 3 s) and reuse (a connection goes back to its target when
//! its response body has been read to the end). The data path ([`crate::proxy`]) checks a
//! connection out, sends one request on it, and hands it back through [`checkin`].
//!
//! May call: the routing table (to see whether a target is still routed), tokio, hyper.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::proxy::ProxyBody;
use crate::table::{Table, Target};

/// Idle connections kept per target.
pub const MAX_IDLE: usize = 256;

/// A connection to a target that can carry one request at a time.
pub type Conn = http1::SendRequest<ProxyBody>;

/// Why no connection to a target could be made. Nothing was sent in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connecting timed out after {0:?}")]
    Timeout(Duration),
    #[error("connecting failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("HTTP handshake failed: {0}")]
    Handshake(#[from] hyper::Error),
    #[error("the target left the routing table")]
    Removed,
}

/// What the pool needs from the data path's shared state.
pub struct Upstreams {
    pub table: Arc<ArcSwap<Table>>,
    pub changes: watch::Sender<()>,
    pub connect_timeout: Duration,
}

impl Upstreams {
    /// An idle connection to `target` that is ready for a request (and whether it was reused),
    /// or a new one.
    pub async fn checkout(&self, target: &Target) -> Result<(Conn, bool), ConnectError> {
        loop {
            let idle = target.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let Some(mut conn) = idle else { break };
            if conn.is_closed() {
                continue;
            }
            // Handed back when its response ended; the connection task may need one more
            // turn to see that, and a connection the target closed fails here.
            if conn.ready().await.is_ok() {
                return Ok((conn, true));
            }
        }
        Ok((self.connect(target).await?, false))
    }

    /// Opens a new connection, giving up when the target leaves the routing table.
    pub async fn connect(&self, target: &Target) -> Result<Conn, ConnectError> {
        let stream = self.connect_tcp(target).await?;
        let (send, conn) = http1::Builder::new()
            .handshake::<_, ProxyBody>(TokioIo::new(stream))
            .await?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::trace!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(send)
    }

    /// Opens a TCP connection to `target` (no delay), bounded by the connect timeout, and
    /// giving up when the target leaves the routing table.
    pub async fn connect_tcp(&self, target: &Target) -> Result<TcpStream, ConnectError> {
        // Subscribed before the first look, so no swap between the two goes unseen.
        let mut changes = self.changes.subscribe();
        if !self.routed(target) {
            return Err(ConnectError::Removed);
        }
        let open = async {
            let stream = TcpStream::connect(target.addr).await?;
            stream.set_nodelay(true)?;
            Ok::<_, ConnectError>(stream)
        };
        let open = tokio::time::timeout(self.connect_timeout, open);
        tokio::pin!(open);
        loop {
            tokio::select! {
                r = &mut open => {
                    return r.map_err(|_| ConnectError::Timeout(self.connect_timeout))?;
                }
                Ok(()) = changes.changed() => {
                    if !self.routed(target) {
                        return Err(ConnectError::Removed);
                    }
                }
            }
        }
    }

    fn routed(&self, target: &Target) -> bool {
        self.table
            .load()
            .all_targets()
            .any(|t| t.id == target.id && t.addr == target.addr)
    }
}

/// Gives a connection whose response was read to the end back to its target, unless the
/// target is draining (its connections close with it) or already keeps enough idle ones.
pub fn checkin(target: &Target, conn: Conn) {
    if target.draining.load(std::sync::atomic::Ordering::Relaxed) || conn.is_closed() {
        return;
    }
    let mut idle = target.idle.lock().unwrap_or_else(|e| e.into_inner());
    if idle.len() < MAX_IDLE {
        idle.push(conn);
    }
}
