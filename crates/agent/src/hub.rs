//! The server's side of agent connections: which hosts are connected, calls to them and
//! their answers, and the container events they report.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use serde::de::DeserializeOwned;
use slipway_runtime::ContainerEvent;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::proto::{Hello, Op, ToAgent, ToServer};

/// Why a call to a host failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    #[error("host {0} is not connected")]
    NotConnected(String),
    #[error("host {host} did not answer within {secs} s")]
    Timeout { host: String, secs: u64 },
    #[error("host {host} lost its connection during the call")]
    Dropped { host: String },
    #[error("host {host}: {message}")]
    Remote { host: String, message: String },
    #[error("host {host} answered with an unexpected value: {message}")]
    Decode { host: String, message: String },
}

enum Pending {
    Once(oneshot::Sender<Result<serde_json::Value, String>>),
    Stream(mpsc::UnboundedSender<Result<String, String>>),
}

struct Conn {
    hello: Hello,
    /// Which connection of the host this is (a host that reconnects replaces its old one).
    epoch: u64,
    tx: mpsc::UnboundedSender<ToAgent>,
    pending: Mutex<HashMap<u64, Pending>>,
    /// Ends the connection from the server's side.
    close: tokio::sync::Notify,
}

#[derive(Default)]
struct Inner {
    conns: Mutex<HashMap<String, Arc<Conn>>>,
    /// When each host was last heard from (milliseconds since the epoch), kept after its
    /// connection ends: host loss is counted from there.
    heard: Mutex<HashMap<String, i64>>,
    next: AtomicU64,
    events: Option<broadcast::Sender<(String, ContainerEvent)>>,
}

/// The connected agents (cheap to clone).
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("connected", &self.connected().len())
            .finish()
    }
}

/// How long a call may take before it fails (a stop waits for its grace period on top).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the server pings each agent (the agent answers: its heartbeat).
pub const PING_EVERY: Duration = Duration::from_secs(1);
/// A connection silent this long is dropped (the agent connects again when it can).
pub const SILENCE: Duration = Duration::from_secs(5);

fn epoch_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Hub {
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(1024);
        Hub {
            inner: Arc::new(Inner {
                conns: Mutex::default(),
                heard: Mutex::default(),
                next: AtomicU64::new(1),
                events: Some(events),
            }),
        }
    }

    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Conn>>> {
        self.inner.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The hosts connected now, as they introduced themselves.
    pub fn connected(&self) -> Vec<Hello> {
        self.conns().values().map(|c| c.hello.clone()).collect()
    }

    pub fn is_connected(&self, host: &str) -> bool {
        self.conns().contains_key(host)
    }

    /// When `host` was last heard from (ms since the epoch), if since this server started.
    pub fn last_heard(&self, host: &str) -> Option<i64> {
        lock(&self.inner.heard).get(host).copied()
    }

    /// Sends `host` a message that needs no answer; false if it is not connected.
    pub fn send(&self, host: &str, msg: ToAgent) -> bool {
        self.conns()
            .get(host)
            .is_some_and(|c| c.tx.send(msg).is_ok())
    }

    /// Ends `host`'s connection and forgets it (its credential was revoked): its calls
    /// fail, and it is not counted silent.
    pub fn disconnect(&self, host: &str) {
        if let Some(c) = self.conns().remove(host) {
            c.close.notify_one();
            fail_all(&c);
        }
        lock(&self.inner.heard).remove(host);
    }

    /// Hosts heard from since this server started, but not for `after`.
    pub fn silent(&self, after: Duration) -> std::collections::BTreeSet<String> {
        let now = epoch_ms();
        let after = after.as_millis() as i64;
        lock(&self.inner.heard)
            .iter()
            .filter(|(_, at)| now - **at >= after)
            .map(|(h, _)| h.clone())
            .collect()
    }

    fn heard(&self, host: &str) {
        lock(&self.inner.heard).insert(host.to_owned(), epoch_ms());
    }

    /// Container events of every connected host: `(host, event)`.
    pub fn events(&self) -> broadcast::Receiver<(String, ContainerEvent)> {
        self.inner
            .events
            .as_ref()
            .expect("events are set up in new()")
            .subscribe()
    }

    /// Serves one agent connection (after its credential was checked and its hello read)
    /// until it ends. A newer connection of the same host replaces this one.
    pub async fn serve<R, W>(&self, hello: Hello, reader: R, mut writer: W)
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let host = hello.host.clone();
        let epoch = self.inner.next.fetch_add(1, Ordering::SeqCst);
        let (tx, mut rx) = mpsc::unbounded_channel::<ToAgent>();
        let conn = Arc::new(Conn {
            hello,
            epoch,
            tx,
            pending: Mutex::default(),
            close: tokio::sync::Notify::new(),
        });
        if let Some(old) = self.conns().insert(host.clone(), conn.clone()) {
            fail_all(&old);
        }
        self.heard(&host);
        tracing::info!(%host, "agent connected");
        let writer_task = tokio::spawn(async move {
            let mut ping = tokio::time::interval(PING_EVERY);
            loop {
                let msg = tokio::select! {
                    m = rx.recv() => match m { Some(m) => m, None => return },
                    _ = ping.tick() => ToAgent::Ping,
                };
                let mut line = serde_json::to_vec(&msg).unwrap_or_default();
                line.push(b'\n');
                if writer.write_all(&line).await.is_err() || writer.flush().await.is_err() {
                    return;
                }
            }
        });
        let mut lines = BufReader::new(reader).lines();
        // An agent that says nothing for SILENCE (it answers every ping) is gone.
        loop {
            let line = tokio::select! {
                r = tokio::time::timeout(SILENCE, lines.next_line()) => r,
                () = conn.close.notified() => break,
            };
            let Ok(Ok(Some(line))) = line else { break };
            self.heard(&host);
            let Ok(msg) = serde_json::from_str::<ToServer>(&line) else {
                tracing::warn!(%host, "agent sent a line that is not a message");
                continue;
            };
            match msg {
                ToServer::Reply { id, ok, err } => {
                    let p = lock(&conn.pending).remove(&id);
                    if let Some(Pending::Once(tx)) = p {
                        let _ = tx.send(match err {
                            Some(e) => Err(e),
                            None => Ok(ok.unwrap_or(serde_json::Value::Null)),
                        });
                    }
                }
                ToServer::Chunk { id, data } => {
                    if let Some(Pending::Stream(tx)) = lock(&conn.pending).get(&id)
                        && tx.send(Ok(data)).is_err()
                    {
                        let _ = conn.tx.send(ToAgent::Cancel { id });
                    }
                }
                ToServer::End { id, err } => {
                    if let Some(Pending::Stream(tx)) = lock(&conn.pending).remove(&id)
                        && let Some(e) = err
                    {
                        let _ = tx.send(Err(e));
                    }
                }
                ToServer::Event { event } => {
                    if let Some(ev) = &self.inner.events {
                        let _ = ev.send((host.clone(), event));
                    }
                }
                ToServer::Pong => {}
            }
        }
        writer_task.abort();
        {
            let mut conns = self.conns();
            if conns.get(&host).is_some_and(|c| c.epoch == epoch) {
                conns.remove(&host);
            }
        }
        fail_all(&conn);
        tracing::warn!(%host, "agent disconnected");
    }

    fn conn(&self, host: &str) -> Result<Arc<Conn>, HubError> {
        self.conns()
            .get(host)
            .cloned()
            .ok_or_else(|| HubError::NotConnected(host.to_owned()))
    }

    /// Calls `op` on `host` and decodes its answer.
    pub async fn call<T: DeserializeOwned>(
        &self,
        host: &str,
        op: Op,
        timeout: Duration,
    ) -> Result<T, HubError> {
        let conn = self.conn(host)?;
        let id = self.inner.next.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = oneshot::channel();
        lock(&conn.pending).insert(id, Pending::Once(tx));
        if conn.tx.send(ToAgent::Call { id, op }).is_err() {
            lock(&conn.pending).remove(&id);
            return Err(HubError::Dropped {
                host: host.to_owned(),
            });
        }
        let answer = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(a)) => a,
            Ok(Err(_)) => {
                return Err(HubError::Dropped {
                    host: host.to_owned(),
                });
            }
            Err(_) => {
                lock(&conn.pending).remove(&id);
                return Err(HubError::Timeout {
                    host: host.to_owned(),
                    secs: timeout.as_secs(),
                });
            }
        };
        let value = answer.map_err(|message| HubError::Remote {
            host: host.to_owned(),
            message,
        })?;
        serde_json::from_value(value).map_err(|e| HubError::Decode {
            host: host.to_owned(),
            message: e.to_string(),
        })
    }

    /// Calls a streamed `op` (logs) on `host`: its chunks until it ends.
    pub fn stream(
        &self,
        host: &str,
        op: Op,
    ) -> Result<BoxStream<'static, Result<String, HubError>>, HubError> {
        let conn = self.conn(host)?;
        let id = self.inner.next.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&conn.pending).insert(id, Pending::Stream(tx));
        if conn.tx.send(ToAgent::Call { id, op }).is_err() {
            return Err(HubError::Dropped {
                host: host.to_owned(),
            });
        }
        let host = host.to_owned();
        let guard = CancelOnDrop {
            conn: conn.clone(),
            id,
        };
        Ok(tokio_stream_from(rx)
            .map(move |r| {
                let _keep = &guard;
                r.map_err(|message| HubError::Remote {
                    host: host.clone(),
                    message,
                })
            })
            .boxed())
    }
}

/// Tells the agent to stop streaming when the caller drops the stream.
struct CancelOnDrop {
    conn: Arc<Conn>,
    id: u64,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if lock(&self.conn.pending).remove(&self.id).is_some() {
            let _ = self.conn.tx.send(ToAgent::Cancel { id: self.id });
        }
    }
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: mpsc::UnboundedReceiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Fails every call in flight on a connection that ended.
fn fail_all(conn: &Conn) {
    let pending: Vec<(u64, Pending)> = lock(&conn.pending).drain().collect();
    for (_, p) in pending {
        match p {
            // Dropping the sender fails the call as Dropped.
            Pending::Once(tx) => drop(tx),
            Pending::Stream(tx) => {
                let _ = tx.send(Err("the host's connection ended".into()));
            }
        }
    }
}
