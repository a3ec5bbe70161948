//! The data path: accept connections, route each request, pick a healthy target, forward,
//! stream the response back, and account for it.
//!
//! Plain-text connections start on [`crate::fast`], the HTTP/1.1 fast path, which serves the
//! common requests itself and hands the connection here (hyper) for everything else: TLS
//! listeners, HTTP/2, upgrades, streamed or large bodies. Both paths share this module's
//! routing, target choice, retries, passive health and accounting.
//!
//! Target choice is round robin over the service's routable targets, skipping targets that
//! are passively marked down (unless all are). A service with weights first assigns the
//! request a version (its sticky cookie's, or the next by weight; see [`crate::versions`]),
//! and the round robin runs over that version's targets. A connect failure (nothing was sent) is
//! retried on a different target, up to [`MAX_ATTEMPTS`]; a safe request whose target died
//! mid-request is retried within [`RETRY_BUDGET`]. Connections to targets come from
//! [`crate::upstream`] (per-target idle connections; a connect gives up when its target leaves
//! the routing table). Requests count as in flight on their target from the moment it is
//! picked until the response body is finished, which is what draining waits for.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::linger::Reclaim;
use crate::metrics::Global;
use crate::pace::{BodyClock, BodyPace};
use crate::table::{Service, Table, Target};
use crate::upstream::Upstreams;

mod account;
mod choice;
mod tunnel;

use account::Tracked;
pub(crate) use account::{Guard, LogLine};
pub(crate) use choice::{note_connect_failure, pick_or_wait, release, reroute, unreachable};
use tunnel::{requested_upgrade, tunnel};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// Attempts per request when connecting fails.
pub const MAX_ATTEMPTS: usize = 3;
/// Retries of requests that may have reached their target stop once this much time has
/// passed since the request arrived. Connect failures are always retried (nothing was sent).
pub const RETRY_BUDGET: Duration = Duration::from_secs(1);
/// How long a request waits for a routable target when its service has none at the moment
/// (counted from its arrival); then it gets a 503.
pub const NO_TARGET_WAIT: Duration = Duration::from_secs(1);
/// Consecutive connect failures that mark a target down (passive health).
pub const PASSIVE_FAILURES: u32 = 3;
/// How long a passively failed target is skipped.
pub const PASSIVE_DOWN: Duration = Duration::from_secs(2);
/// Request bodies up to this size are buffered, so they can be retried on another target.
pub const BUFFER_LIMIT: u64 = 1024 * 1024;

/// The default minimum pace of a request body in bytes a second (`mod_reqtimeout`'s).
pub const DEFAULT_BODY_MIN_RATE: u32 = 500;

/// Tunables of the data path.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    pub max_body: u64,
    pub connect_timeout: Duration,
    pub response_header_timeout: Duration,
    pub client_header_timeout: Duration,
    /// A kept-alive client connection with no request (no byte either way) for this long is
    /// closed, on both paths (HTTP/2: GOAWAY, open streams finish).
    pub idle_timeout: Duration,
    /// Longest wait for the next bytes of a request body, and the time a body may take
    /// before `body_min_rate` counts (see [`crate::pace`]). Past either the request fails:
    /// 408 when the target has not answered yet, and the client connection is closed.
    pub body_timeout: Duration,
    /// Bytes a second a request body must average beyond `body_timeout` (0: no minimum):
    /// a body trickled a byte at a time is cut, a steady upload is not.
    pub body_min_rate: u32,
    /// Client connections open at once, over every listener; beyond it new connections get a
    /// 503 (plain-text listeners) or are closed (TLS listeners) at once.
    pub max_connections: u32,
    /// Client connections open at once from one client address, likewise.
    pub max_connections_per_ip: u32,
    /// Where request spans go and the share of new traces sampled (export off: requests
    /// still get and forward a `traceparent`, see `crate::trace`).
    pub traces: slipway_otel::Config,
}

impl ProxyOptions {
    /// The pace request bodies must keep.
    pub fn body_pace(&self) -> BodyPace {
        BodyPace {
            idle: self.body_timeout,
            min_rate: self.body_min_rate,
        }
    }
}

impl Default for ProxyOptions {
    fn default() -> Self {
        Self {
            max_body: 100 * 1024 * 1024,
            connect_timeout: Duration::from_secs(5),
            response_header_timeout: Duration::from_secs(30),
            client_header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30),
            body_min_rate: DEFAULT_BODY_MIN_RATE,
            max_connections: 10_000,
            max_connections_per_ip: 256,
            traces: slipway_otel::Config::off(),
        }
    }
}

/// State shared by every connection.
pub struct Shared {
    table: Arc<ArcSwap<Table>>,
    pub global: Global,
    pub opts: ProxyOptions,
    pub started: Instant,
    pub(crate) upstreams: Upstreams,
    pub(crate) access_log: Option<mpsc::Sender<String>>,
    /// Open client connections by client address (for the per-client cap).
    per_ip: Mutex<HashMap<IpAddr, u32>>,
    pub(crate) traces: crate::trace::Traces,
}

impl Shared {
    pub fn new(opts: ProxyOptions, access_log: Option<mpsc::Sender<String>>) -> Self {
        let table = Arc::new(ArcSwap::from_pointee(Table::default()));
        let traces = crate::trace::Traces::new(&opts.traces);
        let upstreams = Upstreams {
            table: Arc::clone(&table),
            changes: watch::Sender::new(()),
            connect_timeout: opts.connect_timeout,
        };
        Self {
            table,
            global: Global::default(),
            opts,
            started: Instant::now(),
            upstreams,
            access_log,
            per_ip: Mutex::new(HashMap::new()),
            traces,
        }
    }

    /// Counts a new client connection from `ip` in, unless it would pass a connection cap.
    /// The connection counts until the returned guard is dropped.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnGuard, Refused> {
        let open = &self.global.connections_open;
        if open.fetch_add(1, Ordering::AcqRel) >= u64::from(self.opts.max_connections) {
            open.fetch_sub(1, Ordering::AcqRel);
            self.global.refused_global.fetch_add(1, Ordering::Relaxed);
            return Err(Refused::Global);
        }
        {
            let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
            let n = per_ip.entry(ip).or_insert(0);
            if *n >= self.opts.max_connections_per_ip {
                drop(per_ip);
                open.fetch_sub(1, Ordering::AcqRel);
                self.global
                    .refused_per_client
                    .fetch_add(1, Ordering::Relaxed);
                return Err(Refused::PerClient);
            }
            *n += 1;
        }
        Ok(ConnGuard {
            shared: Arc::clone(self),
            ip,
        })
    }

    /// The routing table requests are served from now.
    pub fn table(&self) -> arc_swap::Guard<Arc<Table>> {
        self.table.load()
    }

    /// Swaps in a new routing table; connect attempts to targets it no longer has give up.
    /// Targets routable again stop draining before the swap, targets that start draining
    /// are flagged after it (see [`Table::undrain`], [`Table::drain`]): a request never finds
    /// its service's only routable target flagged while the table with its replacement is
    /// not yet serving.
    pub fn set_table(&self, table: Table) {
        let table = Arc::new(table);
        table.undrain();
        self.table.store(Arc::clone(&table));
        table.drain();
        self.upstreams.changes.send_replace(());
    }

    /// The routing table requests are served from now, to keep across awaits.
    pub(crate) fn table_arc(&self) -> Arc<Table> {
        self.table.load_full()
    }

    /// Whether requests are written to an access log.
    pub(crate) fn logs(&self) -> bool {
        self.access_log.is_some()
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// `max_connections` are open.
    Global,
    /// `max_connections_per_ip` are open from the client's address.
    PerClient,
}

impl Refused {
    /// The whole answer a refused plain-text connection gets.
    fn response(self) -> &'static [u8] {
        match self {
            Refused::Global => {
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 49\r\nConnection: close\r\n\r\ntoo many connections (global connection cap hit)\n"
            }
            Refused::PerClient => {
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 53\r\nConnection: close\r\n\r\ntoo many connections (per client connection cap hit)\n"
            }
        }
    }
}

/// An admitted client connection; dropping it counts the connection out.
pub(crate) struct ConnGuard {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut per_ip = self.shared.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
        drop(per_ip);
        self.shared
            .global
            .connections_open
            .fetch_sub(1, Ordering::AcqRel);
    }
}

/// Answers a connection refused at accept with its 503 and closes it, reading (and
/// dropping) what the client sends for a moment, so the close does not reset the connection
/// before the client has read the answer.
async fn refuse(mut stream: tokio::net::TcpStream, why: Refused) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        stream.write_all(why.response()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut left = 64 * 1024usize;
        while left > 0 {
            let n = stream.read(&mut sink).await?;
            if n == 0 {
                break;
            }
            left = left.saturating_sub(n);
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// Accepts connections until the task is dropped. With `tls`, each connection is a TLS
/// handshake first (ALPN `h2` or `http/1.1`). Either way HTTP/1.1 and HTTP/2 are served: over
/// TLS as negotiated; in plain text HTTP/1.1 goes through [`crate::fast`], which hands what it
/// does not take (HTTP/2 with prior knowledge among it) to [`serve_connection`].
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, tls: Option<TlsAcceptor>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let guard = match shared.admit(peer.ip()) {
            Ok(g) => g,
            Err(why) => {
                tracing::debug!(%peer, reason = ?why, "connection refused: connection cap");
                // Over TLS nothing can be said before a handshake, which is what the cap
                // saves: the connection is just closed.
                if tls.is_none() {
                    tokio::spawn(refuse(stream, why));
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _guard = guard;
            let Some(acceptor) = tls else {
                crate::fast::serve(stream, peer, shared).await;
                return;
            };
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(s)) => serve_connection(s, peer, shared, true).await,
                Ok(Err(e)) => {
                    shared
                        .global
                        .tls_handshake_errors
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(error = %e, %peer, "TLS handshake failed");
                }
                Err(_) => {
                    shared
                        .global
                        .tls_handshake_errors
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%peer, "TLS handshake timed out");
                }
            }
        });
    }
}

/// A TLS client has this long to finish its handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) async fn serve_connection<I>(io: I, peer: SocketAddr, shared: Arc<Shared>, tls: bool)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // The idle timeout: no byte either way for that long and the connection is shut down
    // gracefully (HTTP/1.1: closed once the request in progress, if any, is answered;
    // HTTP/2: GOAWAY, open streams finish).
    let base = tokio::time::Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    // Raised when a request's body was left unread: the connection then ends with a
    // lingering close (see `crate::linger`), so the client reads its answer, not a reset.
    let unread = Arc::new(AtomicBool::new(false));
    let (io, back) = Reclaim::new(io);
    let io = TokioIo::new(Activity {
        inner: io,
        base,
        last: Arc::clone(&last),
    });
    let idle = shared.opts.idle_timeout;
    let header_timeout = shared.opts.client_header_timeout;
    let conn_unread = Arc::clone(&unread);
    let svc = service_fn(move |req| handle(req, peer, shared.clone(), tls, conn_unread.clone()));
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Some(header_timeout))
        .max_buf_size(64 * 1024)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .max_header_list_size(64 * 1024);
    let mut conn = Box::pin(builder.serve_connection_with_upgrades(io, svc));
    let mut shut = false;
    loop {
        let seen = last.load(Ordering::Relaxed);
        let at = base + Duration::from_millis(seen) + idle;
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::trace!(error = %e, %peer, "connection ended with an error");
                }
                break;
            }
            () = tokio::time::sleep_until(at), if !shut => {
                if last.load(Ordering::Relaxed) == seen {
                    tracing::trace!(%peer, "idle connection closed");
                    conn.as_mut().graceful_shutdown();
                    shut = true;
                }
            }
        }
    }
    // Dropping the connection gives the I/O back (unless an upgrade took it).
    drop(conn);
    if unread.load(Ordering::Relaxed)
        && let Some(io) = back.take()
    {
        let n = crate::linger::linger(io).await;
        tracing::trace!(%peer, bytes = n, "lingering close");
    }
}

/// A client connection that notes when a byte last went either way (milliseconds after
/// `base`), for the idle timeout.
struct Activity<I> {
    inner: I,
    base: tokio::time::Instant,
    last: Arc<AtomicU64>,
}

impl<I> Activity<I> {
    fn touch(&self) {
        self.last
            .store(self.base.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl<I: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Activity<I> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        poll
    }
}

impl<I: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Activity<I> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let poll = std::pin::Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(poll, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        poll
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let poll = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(poll, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request body stopped arriving, or arrived too slowly (see [`crate::pace`]).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BodyTimeout(pub String);

/// A request body that fails with [`BodyTimeout`] when it falls behind its [`BodyPace`]
/// (no frame for the idle timeout, or slower than the minimum rate), and raises `timed_out`
/// when it does. Dropped before its end (and not timed out), it raises its connection's
/// `unread`.
struct TimedBody {
    inner: Incoming,
    clock: BodyClock,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    timed_out: Arc<AtomicBool>,
    ended: bool,
    unread: Arc<AtomicBool>,
}

impl TimedBody {
    fn new(inner: Incoming, pace: BodyPace, unread: Arc<AtomicBool>) -> Self {
        let clock = pace.start();
        Self {
            inner,
            clock,
            sleep: Box::pin(tokio::time::sleep_until(clock.deadline())),
            timed_out: Arc::new(AtomicBool::new(false)),
            ended: false,
            unread,
        }
    }
}

impl Drop for TimedBody {
    fn drop(&mut self) {
        if !self.ended && !self.inner.is_end_stream() && !self.timed_out.load(Ordering::Relaxed) {
            self.unread.store(true, Ordering::Relaxed);
        }
    }
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            std::task::Poll::Ready(r) => {
                let n = match &r {
                    Some(Ok(f)) => f.data_ref().map_or(0, Bytes::len),
                    _ => 0,
                };
                this.clock.received(n);
                this.sleep.as_mut().reset(this.clock.deadline());
                if r.is_none() {
                    this.ended = true;
                }
                std::task::Poll::Ready(r.map(|f| f.map_err(BoxError::from)))
            }
            std::task::Poll::Pending => match this.sleep.as_mut().poll(cx) {
                std::task::Poll::Ready(()) => {
                    this.timed_out.store(true, Ordering::Relaxed);
                    std::task::Poll::Ready(Some(Err(Box::new(BodyTimeout(this.clock.reason())))))
                }
                std::task::Poll::Pending => std::task::Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The answer to a request whose body stopped arriving; the connection closes after it.
fn body_timed_out(shared: &Shared) -> Response<ProxyBody> {
    shared.global.body_timeouts.fetch_add(1, Ordering::Relaxed);
    let mut r = full(
        StatusCode::REQUEST_TIMEOUT,
        "the request body stopped arriving or arrived too slowly (body timeout)\n",
    );
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

fn full(status: StatusCode, text: impl Into<Bytes>) -> Response<ProxyBody> {
    let mut r = Response::new(Full::new(text.into()).map_err(|e| match e {}).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Header fields that end at the hop (RFC 9110 §7.6.1).
pub(crate) const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn strip_hop_by_hop(h: &mut HeaderMap) {
    if let Some(extra) = h
        .get(header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    {
        for name in extra.split(',') {
            if let Ok(n) = HeaderName::from_bytes(name.trim().as_bytes()) {
                h.remove(n);
            }
        }
    }
    for n in &HOP_BY_HOP {
        h.remove(n);
    }
}

fn host_of<B>(req: &Request<B>) -> String {
    let raw = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    strip_port(&raw).to_owned()
}

/// The host of a Host header's value (`host`, `host:port`, `[v6]` or `[v6]:port`).
pub(crate) fn strip_port(raw: &str) -> &str {
    if let Some(v6) = raw.strip_prefix('[') {
        return v6.split(']').next().unwrap_or("");
    }
    match raw.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => raw,
    }
}

fn request_id() -> String {
    format!(
        "{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    )
}

/// The protocol of a request as logs and metrics name it.
pub fn protocol(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

/// The request body in a form that can be sent (and, when buffered, sent again).
enum ReqBody {
    Buffered(Bytes),
    Streaming(Option<ProxyBody>),
}

impl ReqBody {
    fn take(&mut self) -> Option<ProxyBody> {
        match self {
            ReqBody::Buffered(b) if b.is_empty() => {
                Some(Empty::new().map_err(|e| match e {}).boxed())
            }
            ReqBody::Buffered(b) => Some(Full::new(b.clone()).map_err(|e| match e {}).boxed()),
            ReqBody::Streaming(s) => s.take(),
        }
    }
}

async fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
    shared: Arc<Shared>,
    tls: bool,
    unread: Arc<AtomicBool>,
) -> Result<Response<ProxyBody>, Infallible> {
    let start = Instant::now();
    // From here a body dropped before its end (an early answer) raises `unread`.
    let mut req = req.map(|b| TimedBody::new(b, shared.opts.body_pace(), unread));
    let proto = protocol(req.version());
    shared.global.count_protocol(proto, tls);
    let upgrade = requested_upgrade(req.headers());
    let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
    let table = shared.table.load_full();
    let host = host_of(&req);
    let path = req.uri().path().to_owned();
    let Some(m) = table.route(&host, &path) else {
        shared.global.unrouted.fetch_add(1, Ordering::Relaxed);
        return Ok(full(
            StatusCode::NOT_FOUND,
            "no route for this host and path\n",
        ));
    };
    let mut service = Arc::clone(m.service);
    // Targets get the origin form (path and query): the request's own when nothing was
    // stripped, so it is not formatted and parsed again.
    let upstream_uri = match req.uri().path_and_query() {
        Some(pq) if m.path == path.as_str() => Uri::from(pq.clone()),
        _ => {
            let p = &m.path;
            let pq = match req.uri().query() {
                Some(q) => format!("{p}?{q}"),
                None => p.to_string(),
            };
            match Uri::try_from(pq) {
                Ok(u) => u,
                Err(_) => return Ok(full(StatusCode::BAD_REQUEST, "invalid request path\n")),
            }
        }
    };

    // Body: refuse what is too large, buffer what is small enough to retry.
    let declared = req.body().size_hint().exact();
    if declared.is_some_and(|n| n > shared.opts.max_body) {
        shared.global.rejected.fetch_add(1, Ordering::Relaxed);
        return Ok(full(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large\n",
        ));
    }
    let (mut parts, body) = req.into_parts();
    let body_timed_out_flag = Arc::clone(&body.timed_out);
    let mut body = match declared {
        Some(0) => ReqBody::Buffered(Bytes::new()),
        Some(n) if n <= BUFFER_LIMIT => match body.collect().await {
            Ok(c) => ReqBody::Buffered(c.to_bytes()),
            Err(e) if e.is::<BodyTimeout>() => return Ok(body_timed_out(&shared)),
            Err(_) => {
                return Ok(full(
                    StatusCode::BAD_REQUEST,
                    "could not read the request body\n",
                ));
            }
        },
        _ if body.is_end_stream() => ReqBody::Buffered(Bytes::new()),
        _ => ReqBody::Streaming(Some(
            Limited::new(body, shared.opts.max_body as usize).boxed(),
        )),
    };

    // Headers for the upstream request.
    let rid = parts
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 200)
        .map(str::to_owned)
        .unwrap_or_else(request_id);
    let method = parts.method.clone();
    // The trace: the client's (one valid `traceparent`) continued, or a new one.
    let incoming = {
        let mut all = parts.headers.get_all("traceparent").iter();
        match (all.next(), all.next()) {
            (Some(v), None) => slipway_otel::TraceParent::parse(v.as_bytes()),
            _ => None,
        }
    };
    let (trace_ctx, mut span) = shared
        .traces
        .begin(incoming, &method, &host, &path, m.route);
    if let Ok(v) = HeaderValue::from_bytes(&trace_ctx.format()) {
        parts.headers.insert("traceparent", v);
    }
    strip_hop_by_hop(&mut parts.headers);
    let xff = match parts
        .headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
    {
        Some(prev) => format!("{prev}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        parts.headers.insert("x-forwarded-for", v);
    }
    parts.headers.insert(
        "x-forwarded-proto",
        HeaderValue::from_static(if tls { "https" } else { "http" }),
    );
    // HTTP/2 carries the host in the :authority pseudo-header; HTTP/1.1 targets need Host.
    if !parts.headers.contains_key(header::HOST)
        && let Some(a) = parts.uri.authority()
        && let Ok(v) = HeaderValue::from_str(a.as_str())
    {
        parts.headers.insert(header::HOST, v);
    }
    if let Some(proto) = &upgrade {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, proto.clone());
    }
    if let Ok(v) = HeaderValue::from_str(&host) {
        parts.headers.insert("x-forwarded-host", v);
    }
    if let Ok(v) = HeaderValue::from_str(&rid) {
        parts.headers.insert("x-request-id", v);
    }

    // The version a sticky service's cookie binds the client to.
    let cookie = match service.weighted.as_ref().and_then(|w| w.cookie()) {
        Some(name) => parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| crate::versions::find_cookie(v, name)),
        None => None,
    };

    let mut tried: Vec<Arc<Target>> = Vec::with_capacity(MAX_ATTEMPTS);
    let mut last_error = "no healthy target";
    let mut connect_failed = false;
    for attempt in 0..MAX_ATTEMPTS {
        // Nothing reached a target whose connect failed, so that retry is always safe;
        // other retries stay within the budget.
        if attempt > 0 && !connect_failed && start.elapsed() > RETRY_BUDGET {
            last_error = "retry budget spent";
            break;
        }
        if attempt > 0 {
            // The table may have changed meanwhile (a dead target taken out, new ones in).
            service = reroute(&shared, &host, &path, service);
            shared.global.retries.fetch_add(1, Ordering::Relaxed);
        }
        let Some(target) =
            pick_or_wait(&shared, &host, &path, &mut service, &tried, start, cookie).await
        else {
            break;
        };
        let Some(req_body) = body.take() else {
            release(&target, &service);
            break;
        };
        let mut up = Request::new(req_body);
        *up.method_mut() = parts.method.clone();
        *up.uri_mut() = upstream_uri.clone();
        *up.headers_mut() = parts.headers.clone();

        // A pooled connection the target closed meanwhile hands the request back unsent: it
        // goes out once more on a new connection to the same target.
        let mut sent = None;
        for fresh in [false, true] {
            let conn = if fresh {
                shared.upstreams.connect(&target).await.map(|c| (c, false))
            } else {
                shared.upstreams.checkout(&target).await
            };
            let (mut conn, reused) = match conn {
                Ok(c) => c,
                Err(e) => {
                    sent = Some(Err(Failure::Connect(e)));
                    break;
                }
            };
            let answer = tokio::select! {
                r = tokio::time::timeout(
                    shared.opts.response_header_timeout,
                    conn.try_send_request(up),
                ) => r,
                () = unreachable(&target) => {
                    sent = Some(Err(Failure::Gone));
                    break;
                }
            };
            match answer {
                Ok(Ok(resp)) => {
                    sent = Some(Ok((resp, conn)));
                    break;
                }
                Ok(Err(mut e)) => match e.take_message() {
                    Some(req) if reused && !fresh => {
                        up = req;
                        continue;
                    }
                    Some(_) => {
                        sent = Some(Err(Failure::NotSent(e.into_error())));
                        break;
                    }
                    None => {
                        sent = Some(Err(Failure::Sent(e.into_error())));
                        break;
                    }
                },
                Err(_) => {
                    sent = Some(Err(Failure::Timeout));
                    break;
                }
            }
        }
        let Some(outcome) = sent else { break };
        match outcome {
            Ok((mut resp, conn)) => {
                target.connect_failures.store(0, Ordering::Relaxed);
                target.requests.fetch_add(1, Ordering::Relaxed);
                if let Some(v) = service
                    .weighted
                    .as_ref()
                    .and_then(|w| w.set_cookie(cookie, &target))
                {
                    resp.headers_mut().append(header::SET_COOKIE, v.clone());
                }
                if resp.status() == StatusCode::SWITCHING_PROTOCOLS
                    && let Some(client_upgrade) = client_upgrade
                {
                    let upstream_upgrade = hyper::upgrade::on(&mut resp);
                    let (rparts, _) = resp.into_parts();
                    let guard = Guard {
                        target: target.clone(),
                        service: service.clone(),
                        start,
                        status: 101,
                        log: None,
                        conn: None,
                        span: span.take(),
                    };
                    let drain = target.drain_signal.subscribe();
                    tokio::spawn(async move {
                        if let (Ok(c), Ok(u)) = (client_upgrade.await, upstream_upgrade.await) {
                            tunnel(TokioIo::new(c), TokioIo::new(u), drain).await;
                        }
                        guard.finish(0, false);
                    });
                    return Ok(Response::from_parts(
                        rparts,
                        Empty::new().map_err(|e| match e {}).boxed(),
                    ));
                }
                let (mut rparts, rbody) = resp.into_parts();
                strip_hop_by_hop(&mut rparts.headers);
                let status = rparts.status.as_u16();
                let log = shared.access_log.clone().map(|tx| LogLine {
                    tx,
                    service: service.name.clone(),
                    target: target.id.clone(),
                    status,
                    rid: rid.clone(),
                    client: peer,
                    method: method.to_string(),
                    host: host.clone(),
                    path: path.clone(),
                    proto,
                    tls,
                    user_agent: parts
                        .headers
                        .get(header::USER_AGENT)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned(),
                });
                let tracked = Tracked {
                    inner: rbody,
                    bytes: 0,
                    guard: Some(Guard {
                        target,
                        service: service.clone(),
                        start,
                        status,
                        log,
                        conn: Some(conn),
                        span: span.take(),
                    }),
                };
                return Ok(Response::from_parts(
                    rparts,
                    tracked.map_err(BoxError::from).boxed(),
                ));
            }
            Err(Failure::Connect(e)) => {
                note_connect_failure(&shared, &target, &e);
                release(&target, &service);
                tried.push(target);
                last_error = "upstream connection failed";
                connect_failed = true;
                continue;
            }
            Err(Failure::NotSent(e)) => {
                // Nothing went out: as safe to retry elsewhere as a connect failure.
                tracing::debug!(error = %e, target = %target.id, "upstream connection failed before sending");
                release(&target, &service);
                tried.push(target);
                last_error = "upstream connection failed";
                connect_failed = true;
                continue;
            }
            Err(Failure::Sent(e)) => {
                // The request may have reached the target (it died mid-request). Safe methods
                // with a buffered body are retried elsewhere; others get a 502.
                tracing::debug!(error = %e, target = %target.id, "upstream request failed");
                release(&target, &service);
                if body_timed_out_flag.load(Ordering::Relaxed) {
                    // The client stopped sending its (streamed) body, not the target failing.
                    return Ok(body_timed_out(&shared));
                }
                let safe = matches!(
                    method,
                    http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
                );
                if safe && matches!(body, ReqBody::Buffered(_)) {
                    target.connect_failures.fetch_add(1, Ordering::Relaxed);
                    tried.push(target);
                    last_error = "upstream request failed";
                    connect_failed = false;
                    continue;
                }
                let micros = start.elapsed().as_micros() as u64;
                service.stats.observe(502, micros);
                crate::versions::observe(&target, 502, micros);
                if let Some(sp) = span.take() {
                    sp.finish(start, 502, &service.name, Some(&target.id));
                }
                return Ok(full(StatusCode::BAD_GATEWAY, "upstream error\n"));
            }
            Err(Failure::Gone) => {
                // Whatever the dead host did with it, its answer will never come: a safe
                // request with a buffered body goes to another target, whatever the budget.
                release(&target, &service);
                let safe = matches!(
                    method,
                    http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
                );
                if safe && matches!(body, ReqBody::Buffered(_)) {
                    tried.push(target);
                    last_error = "upstream host out of reach";
                    connect_failed = true;
                    continue;
                }
                let micros = start.elapsed().as_micros() as u64;
                service.stats.observe(502, micros);
                crate::versions::observe(&target, 502, micros);
                if let Some(sp) = span.take() {
                    sp.finish(start, 502, &service.name, Some(&target.id));
                }
                return Ok(full(
                    StatusCode::BAD_GATEWAY,
                    "upstream host out of reach
",
                ));
            }
            Err(Failure::Timeout) => {
                release(&target, &service);
                let micros = start.elapsed().as_micros() as u64;
                service.stats.observe(504, micros);
                crate::versions::observe(&target, 504, micros);
                if let Some(sp) = span.take() {
                    sp.finish(start, 504, &service.name, Some(&target.id));
                }
                return Ok(full(
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream did not answer in time\n",
                ));
            }
        }
    }
    service
        .stats
        .observe(503, start.elapsed().as_micros() as u64);
    tracing::debug!(service = %service.name, attempts = tried.len(), reason = last_error, "503");
    if let Some(sp) = span.take() {
        sp.finish(start, 503, &service.name, None);
    }
    Ok(full(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "no healthy target could take the request ({last_error}, {} tried)\n",
            tried.len()
        ),
    ))
}

/// How one attempt to forward a request failed.
enum Failure {
    /// No connection could be made; nothing was sent.
    Connect(crate::upstream::ConnectError),
    /// The connection failed before the request went out.
    NotSent(hyper::Error),
    /// The request (or part of it) went out; the target may have seen it.
    Sent(hyper::Error),
    /// No response head within the response header timeout.
    Timeout,
    /// The target's host went out of reach before it answered: no answer can come back.
    Gone,
}

#[cfg(test)]
mod tests {
    use super::Refused;

    #[test]
    fn refusals_are_well_framed_and_name_their_cap() {
        for (why, cap) in [
            (Refused::Global, "global"),
            (Refused::PerClient, "per client"),
        ] {
            let text = std::str::from_utf8(why.response()).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
            assert!(head.contains("\r\nConnection: close"));
            assert!(
                head.contains(&format!("\r\nContent-Length: {}", body.len())),
                "{text}"
            );
            assert!(body.contains(cap), "{text}");
        }
    }
}
