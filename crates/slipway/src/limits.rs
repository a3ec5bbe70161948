//! Limits of the API/registry listeners (plain and TLS alike; see the README's "Limits"):
//!
//! * `--header-timeout`: a request's head (on a new connection: from the accept, through
//!   the TLS handshake, to the end of the head; on a kept-alive connection: from its first
//!   byte) must arrive within this time, or the connection is closed.
//! * `--idle-timeout`: a kept-alive connection with no request for this long is closed.
//! * `--body-timeout` and `--body-min-rate`: the pace of a request body
//!   ([`slipway_ingress::pace`]): when the handler waits for the next bytes and none arrive
//!   for the timeout, or the body falls below the minimum rate once the timeout's credit is
//!   spent (a byte a second), the body fails and the connection is closed. A steady upload
//!   (large registry layers) is never cut.
//! * `--max-connections`: connections open at once per listener; beyond it, a new
//!   connection is accepted and closed at once.
//! * `--rate-limit`: requests a second per identity on the native and AWS APIs (enforced
//!   by the API's gate, [`slipway_api::RateLimiter`]).
//!
//! One [`Watch`] per connection holds its phase and deadline; the connection's task closes
//! it (drops it) when the deadline passes. Agent connections that upgrade leave these
//! limits (and the count) when the upgrade completes.
//!
//! A request answered before its body was read (a 401, 400 or 413 while the client is still
//! sending) ends its connection with a lingering close ([`slipway_ingress::linger`]): the
//! write side is shut down and what the client still sends is read and dropped, within
//! bounds, so that the client reads the answer instead of a connection reset.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use slipway_ingress::linger::{Reclaim, linger};
use slipway_ingress::pace::{BodyClock, BodyPace};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;

/// The limits' flags of `slipway server`.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct Limits {
    /// Time to receive a request's head on the API/registry listeners (new connections:
    /// from the accept, TLS handshake included; kept-alive ones: from the request's first
    /// byte). Past it the connection is closed.
    #[arg(long, default_value = "10s", value_parser = positive_duration)]
    pub header_timeout: Duration,
    /// Longest wait for the next bytes of a request body, and the time a body may take
    /// before --body-min-rate counts. Past either the request fails and the connection is
    /// closed.
    #[arg(long, default_value = "60s", value_parser = positive_duration)]
    pub body_timeout: Duration,
    /// Bytes a second a request body must average beyond --body-timeout (a body trickled a
    /// byte at a time is cut; steady uploads are not). 0: no minimum.
    #[arg(long, default_value_t = slipway_ingress::proxy::DEFAULT_BODY_MIN_RATE)]
    pub body_min_rate: u32,
    /// A kept-alive connection with no request for this long is closed.
    #[arg(long, default_value = "60s", value_parser = positive_duration)]
    pub idle_timeout: Duration,
    /// Connections open at once on each API listener; beyond it new connections are
    /// accepted and closed at once.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Requests a second each identity may make on the native and AWS APIs (bursts of
    /// twice that); beyond it `429` with `Retry-After`. `0` turns the limit off. The
    /// registry's `/v2/` is not counted (one pull is many requests).
    #[arg(long, default_value_t = 100)]
    pub rate_limit: u32,
}

pub(crate) fn positive_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("must be more than 0s".into());
    }
    Ok(d)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for (the rest of) a request's head.
    Head,
    /// A request is being served.
    Busy,
    /// Kept alive, waiting for the next request's first byte.
    Idle,
    /// Switched protocols: no limits.
    Upgraded,
}

/// A connection's phase and deadline.
pub struct Watch {
    limits: Limits,
    state: Mutex<(Phase, Option<Instant>)>,
    /// Set while idle: the next byte read starts a head.
    idle: AtomicBool,
    /// Set when a request body was dropped before its end: the connection ends with a
    /// lingering close.
    unread: AtomicBool,
    changed: Notify,
}

impl Watch {
    /// A new connection: its head is due within the header timeout.
    fn new(limits: Limits) -> Arc<Watch> {
        Arc::new(Watch {
            limits,
            state: Mutex::new((Phase::Head, Some(Instant::now() + limits.header_timeout))),
            idle: AtomicBool::new(false),
            unread: AtomicBool::new(false),
            changed: Notify::new(),
        })
    }

    fn set(&self, phase: Phase, deadline: Option<Instant>) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = (phase, deadline);
        self.idle.store(phase == Phase::Idle, Ordering::Release);
        self.changed.notify_one();
    }

    /// Bytes arrived: on an idle connection they start the next head.
    fn read_some(&self) {
        if self.idle.load(Ordering::Acquire) {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if s.0 == Phase::Idle {
                *s = (
                    Phase::Head,
                    Some(Instant::now() + self.limits.header_timeout),
                );
                self.idle.store(false, Ordering::Release);
                drop(s);
                self.changed.notify_one();
            }
        }
    }

    fn busy(&self) {
        self.set(Phase::Busy, None);
    }

    /// The response was written (or dropped): the connection waits for the next request.
    fn done(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.0 == Phase::Busy {
            *s = (Phase::Idle, Some(Instant::now() + self.limits.idle_timeout));
            self.idle.store(true, Ordering::Release);
            drop(s);
            self.changed.notify_one();
        }
    }

    /// A body timed out: close now.
    fn expire(&self) {
        self.set(Phase::Busy, Some(Instant::now()));
    }

    /// Completes when the current deadline has passed (and was not moved meanwhile).
    async fn expired(&self) -> Phase {
        loop {
            let (phase, deadline) = *self.state.lock().unwrap_or_else(|p| p.into_inner());
            match deadline {
                None => self.changed.notified().await,
                Some(d) if Instant::now() >= d => return phase,
                Some(d) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(d) => {}
                        _ = self.changed.notified() => {}
                    }
                }
            }
        }
    }
}

/// A connection's stream that reports arriving bytes to its [`Watch`].
struct Watched<S> {
    inner: S,
    watch: Arc<Watch>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.watch.read_some();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The error of a request body that stopped arriving or arrived too slowly.
#[derive(Debug)]
pub struct BodyTimeout(String);

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BodyTimeout {}

/// A request body kept to the pace of `--body-timeout` and `--body-min-rate`. Dropped
/// before its end (an early answer), it marks the connection for a lingering close.
struct IdleBody {
    inner: Incoming,
    watch: Arc<Watch>,
    clock: BodyClock,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Read to its end, or failed (a timed-out body closes the connection at once).
    ended: bool,
}

impl Drop for IdleBody {
    fn drop(&mut self) {
        if !self.ended && !self.inner.is_end_stream() {
            self.watch.unread.store(true, Ordering::Release);
        }
    }
}

impl Body for IdleBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(f) => {
                this.sleep = None;
                if let Some(Ok(frame)) = &f {
                    this.clock.received(frame.data_ref().map_or(0, Bytes::len));
                } else {
                    this.ended = true;
                }
                Poll::Ready(f.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => {
                let deadline = this.clock.deadline();
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if sleep.as_mut().poll(cx).is_ready() {
                    this.sleep = None;
                    this.ended = true;
                    this.watch.expire();
                    return Poll::Ready(Some(Err(BodyTimeout(this.clock.reason()).into())));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that tells the [`Watch`] when it is gone (written or dropped).
struct DoneBody {
    inner: axum::body::Body,
    watch: Arc<Watch>,
}

impl Drop for DoneBody {
    fn drop(&mut self) {
        self.watch.done();
    }
}

impl Body for DoneBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Serves `app` on `listeners` with `limits`. With `tls`, a connection whose first byte is
/// a TLS handshake gets TLS and plain HTTP is served to loopback peers only (see
/// [`crate::tls`]); without, plain HTTP to anyone. On `stop`, accepting ends, idle
/// connections close and requests in flight get up to [`DRAIN`] to finish.
pub async fn serve(
    listeners: Vec<TcpListener>,
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    lowat: bool,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    type Accepted = (TcpStream, SocketAddr, OwnedSemaphorePermit);
    let (conn_tx, mut conn_rx) = tokio::sync::mpsc::channel::<Accepted>(64);
    let mut caps = Vec::new();
    for l in listeners {
        let tx = conn_tx.clone();
        let cap = Arc::new(Semaphore::new(limits.max_connections as usize));
        caps.push(cap.clone());
        let mut warned: Option<Instant> = None;
        tokio::spawn(async move {
            loop {
                match l.accept().await {
                    Ok((stream, peer)) => {
                        let Ok(permit) = cap.clone().try_acquire_owned() else {
                            // Over the cap: closed at once (dropped).
                            if warned.is_none_or(|w| w.elapsed() >= Duration::from_secs(10)) {
                                warned = Some(Instant::now());
                                tracing::warn!(%peer, max = limits.max_connections, "too many connections (--max-connections); closing new ones");
                            }
                            continue;
                        };
                        if tx.send((stream, peer, permit)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
    }
    drop(conn_tx);
    loop {
        let (stream, peer, permit) = tokio::select! {
            c = conn_rx.recv() => match c { Some(c) => c, None => break },
            _ = stop.changed() => break,
        };
        let (app, tls, stop) = (app.clone(), tls.clone(), stop.clone());
        tokio::spawn(async move {
            let watch = Watch::new(limits);
            tokio::select! {
                r = connection(stream, peer, app, tls, lowat, watch.clone(), stop) => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                phase = watch.expired() => {
                    tracing::debug!(%peer, ?phase, "closed the connection: timeout");
                }
            }
            drop(permit);
        });
    }
    // Wait (bounded) for the connections to finish.
    let _ = tokio::time::timeout(DRAIN, async {
        for cap in caps {
            let _ = cap.acquire_many(limits.max_connections).await;
        }
    })
    .await;
    Ok(())
}

/// How long a stopping server waits for requests in flight.
pub const DRAIN: Duration = Duration::from_secs(10);

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    lowat: bool,
    watch: Arc<Watch>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let _ = stream.set_nodelay(true);
    let Some(tls) = tls else {
        let io = Watched {
            inner: crate::lowat::LowatStream::new(stream, lowat),
            watch: watch.clone(),
        };
        return http(io, peer, app, watch, false, stop).await;
    };
    let mut first = [0u8; 1];
    let n = stream.peek(&mut first).await?;
    if n == 1 && first[0] == 0x16 {
        let io = Watched {
            inner: crate::lowat::LowatStream::new(stream, lowat),
            watch: watch.clone(),
        };
        let s = tls.accept(io).await?;
        http(s, peer, app, watch, true, stop).await
    } else if peer.ip().is_loopback() {
        let io = Watched {
            inner: crate::lowat::LowatStream::new(stream, lowat),
            watch: watch.clone(),
        };
        http(io, peer, app, watch, false, stop).await
    } else {
        use tokio::io::AsyncWriteExt;
        let mut stream = stream;
        let body = "this server requires TLS from non-loopback clients: use https://\n";
        let _ = stream
            .write_all(
                format!(
                    "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            )
            .await;
        Ok(())
    }
}

/// Serves HTTP/1 on one connection (the one place both listeners build it).
async fn http<I>(
    io: I,
    peer: SocketAddr,
    app: Router,
    watch: Arc<Watch>,
    https: bool,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    use hyper_util::rt::TokioIo;
    use tower::ServiceExt;
    let own = watch.clone();
    let svc = hyper::service::service_fn(move |mut req: axum::http::Request<Incoming>| {
        let (app, watch) = (app.clone(), watch.clone());
        async move {
            watch.busy();
            // The client's address, for the audit log and per-client limits.
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            if https {
                // Tell the handlers (the token realm) that this request came over TLS.
                req.headers_mut().insert(
                    "x-forwarded-proto",
                    axum::http::HeaderValue::from_static("https"),
                );
            }
            let req = req.map(|inner| IdleBody {
                inner,
                watch: watch.clone(),
                clock: BodyPace {
                    idle: watch.limits.body_timeout,
                    min_rate: watch.limits.body_min_rate,
                }
                .start(),
                sleep: None,
                ended: false,
            });
            let resp = app.oneshot(req).await?;
            if resp.status() == axum::http::StatusCode::SWITCHING_PROTOCOLS {
                watch.set(Phase::Upgraded, None);
                return Ok::<_, std::convert::Infallible>(resp);
            }
            Ok(resp.map(|inner| axum::body::Body::new(DoneBody { inner, watch })))
        }
    });
    let (io, back) = Reclaim::new(io);
    let mut conn = Box::pin(
        hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(io), svc)
            .with_upgrades(),
    );
    let r = tokio::select! {
        r = conn.as_mut() => r,
        _ = async { if stop.wait_for(|s| *s).await.is_err() { std::future::pending::<()>().await } } => {
            conn.as_mut().graceful_shutdown();
            return Ok(conn.await?);
        }
    };
    // Dropping the connection gives the I/O back (unless an upgrade took it).
    drop(conn);
    let upgraded = own.state.lock().unwrap_or_else(|p| p.into_inner()).0 == Phase::Upgraded;
    if own.unread.load(Ordering::Acquire)
        && !upgraded
        && let Some(io) = back.take()
    {
        let n = linger(io).await;
        tracing::debug!(bytes = n, "lingering close after an early answer");
    }
    Ok(r?)
}
