//! The HTTP/1.1 fast path of plain-text listeners: one task per client connection parses
//! each request (httparse), forwards it on a pooled TCP connection to a target, and copies the
//! response back, with no per-request task hand-off.
//!
//! Why it exists: on the hyper path ([`crate::proxy`]) a request crosses the server
//! connection's task, the client connection's task and two channels, and costs about three
//! times nginx's user CPU. Here a request costs one read from the client, one write to the
//! target, one read from the target and one write to the client, as in nginx.
//!
//! What it takes: HTTP/1.1 requests in origin form with one Host header and no body or a
//! `Content-Length` body small enough to buffer (so it can be retried) and within the body
//! limit. Anything else (HTTP/1.0, chunked or large bodies, `Expect`, upgrades such as
//! WebSocket, HTTP/2 with prior knowledge) hands the connection, with the bytes already read,
//! to the hyper path at a request boundary. Routing, target choice, waiting for a target,
//! retries, passive health, draining, metrics and the access log are the hyper path's code.
//!
//! Retries: a connect failure goes to another target; a pooled connection that the target
//! closed meanwhile (nothing came back) is replaced by a new one for idempotent methods, and
//! is checked for closing before other methods use it; a safe request whose target failed
//! before answering goes to another target within the retry budget.
//!
//! May call: [`crate::proxy`] (routing, picking, accounting), [`crate::upstream`]
//! (connecting), `crate::trace` (the request's `traceparent` and span), tokio, httparse.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use http::{Method, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::proxy::{self, BUFFER_LIMIT, Guard, LogLine, MAX_ATTEMPTS, RETRY_BUDGET, Shared};
use crate::table::Target;
use crate::upstream::MAX_IDLE;

mod parse;
use parse::*;

/// The largest request or response head (as `max_buf_size` on the hyper path).
pub const MAX_HEAD: usize = 64 * 1024;
/// The most header fields in one head.
const MAX_HEADERS: usize = 100;
/// Bodies are copied in pieces of up to this size.
const COPY_CHUNK: usize = 64 * 1024;

/// Serves one plain-text client connection until it closes, or hands it to the hyper path.
pub async fn serve(mut client: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let mut rbuf = BytesMut::with_capacity(8 * 1024);
    let mut s = Scratch::default();
    let ip = peer.ip().to_string();
    loop {
        let head = match read_head(&mut client, &mut rbuf, &ip, &shared).await {
            Next::Head(h) => h,
            Next::Close => return,
            Next::Reject(status, text) => {
                let _ = respond(&mut client, status, text, false, &mut s.wbuf).await;
                crate::linger::linger(&mut client).await;
                return;
            }
            Next::Fallback => {
                let io = Rewind {
                    pre: rbuf.freeze(),
                    inner: client,
                };
                proxy::serve_connection(io, peer, shared, false).await;
                return;
            }
        };
        // The body, if any, is small (see `parse_request`): read it whole at the body's pace
        // (see `crate::pace`; nothing has gone to a target yet, so a body that stops
        // arriving or trickles gets a 408).
        let len = head.content_length as usize;
        let mut clock = (rbuf.len() < len).then(|| shared.opts.body_pace().start());
        while rbuf.len() < len {
            let Some(c) = clock.as_mut() else { break };
            rbuf.reserve(len - rbuf.len());
            match tokio::time::timeout_at(c.deadline(), client.read_buf(&mut rbuf)).await {
                Ok(Ok(n)) if n > 0 => c.received(n),
                Ok(_) => return,
                Err(_) => {
                    shared.global.body_timeouts.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%peer, reason = %c.reason(), "request body cut");
                    let _ = respond(
                        &mut client,
                        StatusCode::REQUEST_TIMEOUT,
                        "the request body stopped arriving or arrived too slowly (body timeout)\n",
                        false,
                        &mut s.wbuf,
                    )
                    .await;
                    crate::linger::linger(&mut client).await;
                    return;
                }
            }
        }
        let body = rbuf.split_to(len);
        let keep = forward(&mut client, &head, &body, peer, &shared, &mut s).await;
        s.trim();
        if rbuf.is_empty() && rbuf.capacity() > 64 * 1024 {
            rbuf = BytesMut::with_capacity(8 * 1024);
        }
        if !keep {
            let _ = client.shutdown().await;
            return;
        }
        // The other connections' responses of this turn go out before this one reads its
        // next request (see the same in `forward`; measured: 2-3 % more requests per second).
        tokio::task::yield_now().await;
    }
}

/// Buffers kept for the life of a client connection.
#[derive(Default)]
struct Scratch {
    /// The request as it goes to the target.
    out: Vec<u8>,
    /// What comes back from the target.
    ubuf: BytesMut,
    /// What goes to the client.
    wbuf: Vec<u8>,
}

impl Scratch {
    /// Gives back what a large request or response made the buffers grow to, so an idle
    /// keep-alive connection holds a few KiB.
    fn trim(&mut self) {
        const KEEP: usize = 16 * 1024;
        if self.ubuf.capacity() > KEEP {
            self.ubuf = BytesMut::new();
        }
        if self.out.capacity() > KEEP {
            self.out = Vec::new();
        }
        if self.wbuf.capacity() > KEEP {
            self.wbuf = Vec::new();
        }
    }
}

enum Next {
    Head(Head),
    Close,
    Reject(StatusCode, &'static str),
    Fallback,
}

/// Reads until a whole request head is in `rbuf`. The wait for a request's first byte is
/// bounded by the idle timeout; from then on the whole head has the client header timeout.
async fn read_head(c: &mut TcpStream, rbuf: &mut BytesMut, ip: &str, shared: &Shared) -> Next {
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        if !rbuf.is_empty() {
            match parse_request(rbuf, ip, shared.logs(), shared.opts.max_body) {
                Parsed::Done(head, len) => {
                    rbuf.advance(len);
                    return Next::Head(head);
                }
                Parsed::Partial if rbuf.len() >= MAX_HEAD => {
                    return Next::Reject(
                        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                        "request headers too large\n",
                    );
                }
                Parsed::Partial => {}
                Parsed::Fallback => return Next::Fallback,
                Parsed::Bad(status, text) => return Next::Reject(status, text),
            }
            deadline.get_or_insert_with(|| {
                tokio::time::Instant::now() + shared.opts.client_header_timeout
            });
        }
        rbuf.reserve(8 * 1024);
        let read = c.read_buf(rbuf);
        let n = match deadline {
            None => tokio::time::timeout(shared.opts.idle_timeout, read).await,
            Some(d) => tokio::time::timeout_at(d, read).await,
        };
        match n {
            Ok(Ok(n)) if n > 0 => {}
            _ => return Next::Close,
        }
    }
}

/// Why one attempt to forward a request failed.
enum Failure {
    Connect(crate::upstream::ConnectError),
    /// Nothing went out.
    NotSent,
    /// The request went out; the target may have seen it.
    Sent,
    Timeout,
    /// The target answered with something that is not HTTP/1.1.
    Bad,
    /// The target's host went out of reach before it answered: no answer can come back.
    Gone,
}

/// Forwards one request and copies the response back. Returns whether the client
/// connection can carry another request.
async fn forward(
    client: &mut TcpStream,
    head: &Head,
    body: &[u8],
    peer: SocketAddr,
    shared: &Shared,
    s: &mut Scratch,
) -> bool {
    let start = Instant::now();
    shared.global.count_protocol("HTTP/1.1", false);
    let path = head.target.split('?').next().unwrap_or("/");
    let table = shared.table_arc();
    let Some(m) = table.route(&head.host, path) else {
        shared.global.unrouted.fetch_add(1, Ordering::Relaxed);
        return respond(
            client,
            StatusCode::NOT_FOUND,
            "no route for this host and path\n",
            head.keep_alive,
            &mut s.wbuf,
        )
        .await;
    };
    let mut service = Arc::clone(m.service);
    let (ctx, mut span) =
        shared
            .traces
            .begin(head.traceparent, &head.method, &head.host, path, m.route);
    s.out.clear();
    s.out.extend_from_slice(head.method.as_str().as_bytes());
    s.out.push(b' ');
    if m.path == path {
        s.out.extend_from_slice(head.target.as_bytes());
    } else {
        s.out.extend_from_slice(m.path.as_bytes());
        if let Some((_, q)) = head.target.split_once('?') {
            s.out.push(b'?');
            s.out.extend_from_slice(q.as_bytes());
        }
    }
    drop(m);
    s.out.extend_from_slice(b" HTTP/1.1\r\n");
    s.out.extend_from_slice(&head.fwd);
    s.out.extend_from_slice(b"traceparent: ");
    s.out.extend_from_slice(&ctx.format());
    s.out.extend_from_slice(b"\r\n\r\n");
    s.out.extend_from_slice(body);

    let idempotent = matches!(
        head.method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    );
    let safe = matches!(head.method, Method::GET | Method::HEAD | Method::OPTIONS);
    // The version a sticky service's cookie binds the client to.
    let cookie = match service.weighted.as_ref().and_then(|w| w.cookie()) {
        Some(name) => crate::versions::cookie_in_block(&head.fwd, name),
        None => None,
    };
    // Requests read in the same turn of the runtime go to their targets together, after it:
    // a target woken by the first of them then finds the others waiting too, rather than
    // being woken (and preempting the ingress, on a shared core) once per request.
    // Measured on one core shared with the target: 12 % more requests per second and 8 %
    // less CPU per request than writing each request as soon as it is read.
    tokio::task::yield_now().await;
    let mut tried: Vec<Arc<Target>> = Vec::new();
    let mut last_error = "no healthy target";
    let mut connect_failed = false;
    for attempt in 0..MAX_ATTEMPTS {
        if attempt > 0 && !connect_failed && start.elapsed() > RETRY_BUDGET {
            last_error = "retry budget spent";
            break;
        }
        if attempt > 0 {
            service = proxy::reroute(shared, &head.host, path, service);
            shared.global.retries.fetch_add(1, Ordering::Relaxed);
        }
        let Some(target) = proxy::pick_or_wait(
            shared,
            &head.host,
            path,
            &mut service,
            &tried,
            start,
            cookie,
        )
        .await
        else {
            break;
        };
        let head_request = head.method == Method::HEAD;
        let sent = exchange(
            shared,
            &target,
            &s.out,
            idempotent,
            head_request,
            &mut s.ubuf,
            &mut s.wbuf,
        );
        let outcome = tokio::select! {
            r = sent => r,
            () = proxy::unreachable(&target) => Err(Failure::Gone),
        };
        match outcome {
            Ok((conn, resp)) => {
                target.connect_failures.store(0, Ordering::Relaxed);
                target.requests.fetch_add(1, Ordering::Relaxed);
                if let Some(v) = service
                    .weighted
                    .as_ref()
                    .and_then(|w| w.set_cookie(cookie, &target))
                {
                    // `wbuf` holds the response head for the client (see `exchange`).
                    s.wbuf.extend_from_slice(b"set-cookie: ");
                    s.wbuf.extend_from_slice(v.as_bytes());
                    s.wbuf.extend_from_slice(b"\r\n");
                }
                let log = shared.access_log.clone().map(|tx| LogLine {
                    tx,
                    service: service.name.clone(),
                    target: target.id.clone(),
                    status: resp.status,
                    rid: String::from_utf8_lossy(&head.fwd[head.rid.clone()]).into_owned(),
                    client: peer,
                    method: head.method.to_string(),
                    host: head.host.clone(),
                    path: path.to_owned(),
                    proto: "HTTP/1.1",
                    tls: false,
                    user_agent: head.user_agent.clone().unwrap_or_default(),
                });
                let guard = Guard::new(target, Arc::clone(&service), start, resp.status, log)
                    .with_span(span.take());
                return relay(client, conn, resp, head.keep_alive, guard, shared, s).await;
            }
            Err(Failure::Connect(e)) => {
                proxy::note_connect_failure(shared, &target, &e);
                proxy::release(&target, &service);
                tried.push(target);
                last_error = "upstream connection failed";
                connect_failed = true;
            }
            Err(Failure::NotSent) => {
                proxy::release(&target, &service);
                tried.push(target);
                last_error = "upstream connection failed";
                connect_failed = true;
            }
            Err(Failure::Gone) if safe => {
                // Whatever the dead host did with it, its answer will never come: another
                // target answers instead, whatever the retry budget says.
                proxy::release(&target, &service);
                tried.push(target);
                last_error = "upstream host out of reach";
                connect_failed = true;
            }
            Err(Failure::Sent) if safe => {
                proxy::release(&target, &service);
                target.connect_failures.fetch_add(1, Ordering::Relaxed);
                tried.push(target);
                last_error = "upstream request failed";
                connect_failed = false;
            }
            Err(failure @ (Failure::Sent | Failure::Bad | Failure::Timeout | Failure::Gone)) => {
                let (status, text) = match failure {
                    Failure::Timeout => (
                        StatusCode::GATEWAY_TIMEOUT,
                        "upstream did not answer in time\n",
                    ),
                    _ => (StatusCode::BAD_GATEWAY, "upstream error\n"),
                };
                proxy::release(&target, &service);
                let micros = start.elapsed().as_micros() as u64;
                service.stats.observe(status.as_u16(), micros);
                crate::versions::observe(&target, status.as_u16(), micros);
                if let Some(sp) = span.take() {
                    sp.finish(start, status.as_u16(), &service.name, Some(&target.id));
                }
                return respond(client, status, text, head.keep_alive, &mut s.wbuf).await;
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
    let text = format!(
        "no healthy target could take the request ({last_error}, {} tried)\n",
        tried.len()
    );
    respond(
        client,
        StatusCode::SERVICE_UNAVAILABLE,
        &text,
        head.keep_alive,
        &mut s.wbuf,
    )
    .await
}

/// Sends the request to `target` and reads the response head into `ubuf`. A pooled
/// connection that fails before anything came back is replaced by a new one once.
async fn exchange(
    shared: &Shared,
    target: &Target,
    request: &[u8],
    idempotent: bool,
    head_request: bool,
    ubuf: &mut BytesMut,
    out: &mut Vec<u8>,
) -> Result<(TcpStream, RespHead), Failure> {
    for fresh in [false, true] {
        let pooled = if fresh {
            None
        } else {
            checkout(target, !idempotent)
        };
        let reused = pooled.is_some();
        let mut conn = match pooled {
            Some(c) => c,
            None => shared
                .upstreams
                .connect_tcp(target)
                .await
                .map_err(Failure::Connect)?,
        };
        ubuf.clear();
        // Sending and the response head share the response header timeout; `None`: the
        // request could not be written.
        let io = async {
            if conn.write_all(request).await.is_err() {
                return Err(None);
            }
            read_response_head(&mut conn, ubuf, head_request, out)
                .await
                .map_err(Some)
        };
        match tokio::time::timeout(shared.opts.response_header_timeout, io).await {
            Err(_) => return Err(Failure::Timeout),
            Ok(Ok(resp)) => return Ok((conn, resp)),
            Ok(Err(None)) if reused => continue,
            Ok(Err(None)) => return Err(Failure::NotSent),
            Ok(Err(Some(ReadError::Closed))) if reused && idempotent && ubuf.is_empty() => {
                continue;
            }
            Ok(Err(Some(ReadError::Closed))) => return Err(Failure::Sent),
            Ok(Err(Some(ReadError::Bad))) => return Err(Failure::Bad),
        }
    }
    Err(Failure::NotSent)
}

enum ReadError {
    /// The connection ended or failed.
    Closed,
    Bad,
}

async fn read_response_head(
    conn: &mut TcpStream,
    ubuf: &mut BytesMut,
    head_request: bool,
    out: &mut Vec<u8>,
) -> Result<RespHead, ReadError> {
    loop {
        if !ubuf.is_empty() {
            match parse_response(ubuf, head_request, out) {
                RespParse::Done(h) => return Ok(h),
                RespParse::Interim(n) => {
                    ubuf.advance(n);
                    continue;
                }
                RespParse::Partial if ubuf.len() >= MAX_HEAD => return Err(ReadError::Bad),
                RespParse::Partial => {}
                RespParse::Bad => return Err(ReadError::Bad),
            }
        }
        ubuf.reserve(8 * 1024);
        match conn.read_buf(ubuf).await {
            Ok(n) if n > 0 => {}
            _ => return Err(ReadError::Closed),
        }
    }
}

/// Copies the response to the client, gives the target connection back when its body was
/// read to the end, and finishes the request's accounting. Returns whether the client
/// connection can carry another request.
async fn relay(
    client: &mut TcpStream,
    mut conn: TcpStream,
    resp: RespHead,
    keep_alive: bool,
    guard: Guard,
    shared: &Shared,
    s: &mut Scratch,
) -> bool {
    let idle = shared.opts.idle_timeout;
    let client_keep = keep_alive && resp.framing != Framing::Close;
    // `wbuf` holds the head for the client (see `exchange`).
    s.ubuf.advance(resp.len);
    if !client_keep {
        s.wbuf.extend_from_slice(b"connection: close\r\n");
    }
    s.wbuf.extend_from_slice(b"\r\n");

    // What of the body is already here goes out with the head.
    let mut chunked = Chunked::default();
    let mut remaining = match resp.framing {
        Framing::Length(n) => n,
        _ => 0,
    };
    let mut done = match resp.framing {
        Framing::Empty => true,
        Framing::Length(_) => false,
        Framing::Chunked | Framing::Close => false,
    };
    let take = |buf: &[u8], chunked: &mut Chunked, remaining: &mut u64, done: &mut bool| match resp
        .framing
    {
        Framing::Empty => Ok(0),
        Framing::Length(_) => {
            let n = (*remaining).min(buf.len() as u64) as usize;
            *remaining -= n as u64;
            *done = *remaining == 0;
            Ok(n)
        }
        Framing::Chunked => match chunked.advance(buf)? {
            Some(n) => {
                *done = true;
                Ok(n)
            }
            None => Ok(buf.len()),
        },
        Framing::Close => Ok(buf.len()),
    };
    let mut bytes = 0u64;
    let mut ok = true;
    let first = if done {
        Ok(0)
    } else {
        take(&s.ubuf, &mut chunked, &mut remaining, &mut done)
    };
    match first {
        Ok(n) => {
            s.wbuf.extend_from_slice(&s.ubuf[..n]);
            s.ubuf.advance(n);
            bytes += n as u64;
        }
        Err(()) => ok = false,
    }
    if ok && !write_timed(client, &s.wbuf, idle).await {
        ok = false;
    }
    let mut client_ok = ok;
    while ok && !done {
        s.ubuf.clear();
        s.ubuf.reserve(COPY_CHUNK);
        match tokio::time::timeout(idle, conn.read_buf(&mut s.ubuf)).await {
            Ok(Ok(n)) if n > 0 => {}
            // A body read to the end of the connection ends there.
            Ok(Ok(_)) if resp.framing == Framing::Close => {
                done = true;
                break;
            }
            _ => {
                ok = false;
                break;
            }
        }
        let n = match take(&s.ubuf, &mut chunked, &mut remaining, &mut done) {
            Ok(n) => n,
            Err(()) => {
                ok = false;
                break;
            }
        };
        if !write_timed(client, &s.ubuf[..n], idle).await {
            ok = false;
            client_ok = false;
            break;
        }
        s.ubuf.advance(n);
        bytes += n as u64;
    }
    let complete = ok && done;
    // Bytes past the end of the response mean the connection's framing cannot be trusted.
    if complete && resp.reusable && s.ubuf.is_empty() {
        checkin(&guard.target, conn);
    }
    guard.finish(bytes, complete);
    client_ok && complete && client_keep
}

/// Writes all of `data`, or fails after `limit`. What the socket takes at once costs no timer.
async fn write_timed(c: &mut TcpStream, mut data: &[u8], limit: Duration) -> bool {
    match c.try_write(data) {
        Ok(n) if n == data.len() => return true,
        Ok(n) => data = &data[n..],
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Err(_) => return false,
    }
    matches!(
        tokio::time::timeout(limit, c.write_all(data)).await,
        Ok(Ok(()))
    )
}

/// Writes a small plain-text response. Returns whether the connection can go on.
async fn respond(
    c: &mut TcpStream,
    status: StatusCode,
    text: &str,
    keep_alive: bool,
    wbuf: &mut Vec<u8>,
) -> bool {
    use std::io::Write;
    wbuf.clear();
    let _ = write!(
        wbuf,
        "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n{}\r\n{text}",
        status.as_str(),
        status.canonical_reason().unwrap_or(""),
        text.len(),
        if keep_alive {
            ""
        } else {
            "connection: close\r\n"
        },
    );
    write_timed(c, wbuf, Duration::from_secs(10)).await && keep_alive
}

/// An idle connection to `target`. With `probe`, one the target closed meanwhile (or that has
/// stray bytes) is dropped rather than returned; this costs a system call, so only requests
/// that may not be sent twice pay it.
fn checkout(target: &Target, probe: bool) -> Option<TcpStream> {
    loop {
        let c = target
            .raw_idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()?;
        if !probe {
            return Some(c);
        }
        let mut b = [0u8; 1];
        match c.try_read(&mut b) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Some(c),
            _ => continue,
        }
    }
}

/// Keeps a connection whose response was read to the end for the next request, unless the
/// target is draining or already keeps enough.
fn checkin(target: &Target, conn: TcpStream) {
    if target.draining.load(Ordering::Relaxed) {
        return;
    }
    let mut idle = target.raw_idle.lock().unwrap_or_else(|e| e.into_inner());
    if idle.len() < MAX_IDLE {
        idle.push(conn);
    }
}

/// A connection with bytes already read from it in front, for the hyper path.
struct Rewind {
    pre: Bytes,
    inner: TcpStream,
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.pre.is_empty() {
            let n = self.pre.len().min(buf.remaining());
            buf.put_slice(&self.pre[..n]);
            self.pre.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
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

#[cfg(test)]
mod tests {
    use super::*;

    const IP: &str = "10.0.0.7";

    fn done(raw: &str) -> (Head, usize) {
        match parse_request(raw.as_bytes(), IP, true, 1 << 20) {
            Parsed::Done(h, n) => (h, n),
            other => panic!("{raw:?}: {other:?}"),
        }
    }

    fn fwd(h: &Head) -> String {
        String::from_utf8(h.fwd.clone()).unwrap()
    }

    #[test]
    fn requests_get_forwarding_headers_and_lose_hop_by_hop_ones() {
        let raw = "GET /a/b?x=1 HTTP/1.1\r\nHost: Example.com:8080\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\nKeep-Alive: 5\r\nTE: trailers\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Proto: https\r\nUser-Agent: t/1\r\nAccept: */*\r\n\r\nnext";
        let (h, n) = done(raw);
        assert_eq!(n, raw.len() - 4);
        assert_eq!(h.target, "/a/b?x=1");
        assert_eq!(h.host, "Example.com");
        assert!(h.keep_alive);
        assert_eq!(h.user_agent.as_deref(), Some("t/1"));
        let f = fwd(&h);
        assert!(
            f.starts_with("Host: Example.com:8080\r\nUser-Agent: t/1\r\nAccept: */*\r\n"),
            "{f}"
        );
        assert!(f.contains("x-forwarded-for: 1.2.3.4, 10.0.0.7\r\n"), "{f}");
        assert!(f.contains("x-forwarded-proto: http\r\n"), "{f}");
        assert!(f.contains("x-forwarded-host: Example.com\r\n"), "{f}");
        for gone in ["X-Secret", "Keep-Alive", "TE:", "Connection", "https"] {
            assert!(!f.contains(gone), "{gone} forwarded: {f}");
        }
        let rid = &f[h.rid.clone()];
        assert_eq!(rid.len(), 32, "{f}");
        assert!(rid.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn a_clients_traceparent_is_read_and_not_forwarded_as_it_is() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let (h, _) = done(&format!(
            "GET / HTTP/1.1\r\nHost: a\r\nTraceparent: {tp}\r\n\r\n"
        ));
        let p = h.traceparent.expect("parsed");
        assert_eq!(p.trace_id.to_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(p.sampled);
        assert!(
            !fwd(&h).to_ascii_lowercase().contains("traceparent"),
            "{}",
            fwd(&h)
        );
        // Invalid, or two of them: a new trace.
        let (h, _) = done("GET / HTTP/1.1\r\nHost: a\r\ntraceparent: 00-xyz\r\n\r\n");
        assert_eq!(h.traceparent, None);
        let (h, _) = done(&format!(
            "GET / HTTP/1.1\r\nHost: a\r\ntraceparent: {tp}\r\ntraceparent: {tp}\r\n\r\n"
        ));
        assert_eq!(h.traceparent, None);
        assert!(!fwd(&h).contains("traceparent"));
    }

    #[test]
    fn a_client_request_id_is_kept_and_close_is_seen() {
        let (h, _) = done(
            "POST /x HTTP/1.1\r\nhost: a\r\nx-request-id: abc-1\r\ncontent-length: 3\r\nconnection: close\r\n\r\nabc",
        );
        assert_eq!(&h.fwd[h.rid.clone()], b"abc-1");
        assert_eq!(h.content_length, 3);
        assert!(!h.keep_alive);
        assert!(fwd(&h).contains("content-length: 3\r\n"));
    }

    #[test]
    fn what_this_path_does_not_take_goes_to_the_hyper_path() {
        for raw in [
            "GET / HTTP/1.0\r\nHost: a\r\n\r\n",
            "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
            "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        ] {
            assert!(
                matches!(
                    parse_request(raw.as_bytes(), IP, false, 1 << 20),
                    Parsed::Fallback
                ),
                "{raw:?}"
            );
        }
        // A body over the body limit goes there too, and gets its 413 there.
        let raw = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n";
        assert!(matches!(
            parse_request(raw, IP, false, 99),
            Parsed::Fallback
        ));
    }

    #[test]
    fn bad_and_partial_requests() {
        assert!(matches!(
            parse_request(b"GET / HTTP/1.1\r\nHost: a\r\n", IP, false, 1 << 20),
            Parsed::Partial
        ));
        assert!(matches!(
            parse_request(b"THIS IS NOT HTTP\r\n\r\n", IP, false, 1 << 20),
            Parsed::Bad(StatusCode::BAD_REQUEST, _)
        ));
        let many: String = (0..150).map(|i| format!("x-{i}: v\r\n")).collect();
        let raw = format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n");
        assert!(matches!(
            parse_request(raw.as_bytes(), IP, false, 1 << 20),
            Parsed::Bad(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, _)
        ));
    }

    /// The parsed head, and the head the client gets.
    fn resp(raw: &str, head_request: bool) -> (RespHead, String) {
        let mut out = Vec::new();
        match parse_response(raw.as_bytes(), head_request, &mut out) {
            RespParse::Done(h) => (h, String::from_utf8(out).unwrap()),
            other => panic!("{raw:?}: {other:?}"),
        }
    }

    #[test]
    fn response_framing() {
        let (r, _) = resp("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false);
        assert_eq!(
            (r.framing, r.reusable, r.status),
            (Framing::Length(5), true, 200)
        );
        let (r, _) = resp("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true);
        assert_eq!(r.framing, Framing::Empty);
        let (r, _) = resp("HTTP/1.1 304 Not Modified\r\n\r\n", false);
        assert_eq!(r.framing, Framing::Empty);
        let (r, out) = resp(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n",
            false,
        );
        assert_eq!(r.framing, Framing::Chunked);
        assert!(
            out.contains("Transfer-Encoding: chunked\r\n") && !out.contains("ength"),
            "{out}"
        );
        let (r, _) = resp(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
            false,
        );
        assert_eq!((r.framing, r.reusable), (Framing::Length(1), false));
        let (r, _) = resp("HTTP/1.0 200 OK\r\n\r\n", false);
        assert_eq!((r.framing, r.reusable), (Framing::Close, false));
        let (_, out) = resp(
            "HTTP/1.1 404 Whatever\r\nConnection: x-a\r\nX-A: 1\r\nKeep-Alive: 3\r\nX-B: 2\r\nContent-Length: 0\r\n\r\n",
            false,
        );
        assert_eq!(
            out,
            "HTTP/1.1 404 Not Found\r\nX-B: 2\r\nContent-Length: 0\r\n"
        );
        assert!(matches!(
            parse_response(
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n",
                false,
                &mut Vec::new()
            ),
            RespParse::Interim(25)
        ));
        for bad in [
            "HTTP/1.1 101 Switching Protocols\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "nonsense\r\n\r\n",
        ] {
            assert!(
                matches!(
                    parse_response(bad.as_bytes(), false, &mut Vec::new()),
                    RespParse::Bad
                ),
                "{bad:?}"
            );
        }
    }

    /// Found by fuzzing (issue 20): a target naming `Content-Length` in `Connection` had the
    /// length dropped from a keep-alive response framed by it, and with a chunked coding as
    /// well the head builder removed a line it had never written (a panic).
    #[test]
    fn connection_cannot_drop_the_framing_headers() {
        let (r, out) = resp(
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: content-length\r\n\r\n",
            false,
        );
        assert_eq!((r.framing, r.reusable), (Framing::Length(0), true));
        assert_eq!(out, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n");
        let (r, out) = resp(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: content-length, transfer-encoding\r\nContent-Length: 5\r\n\r\n",
            false,
        );
        assert_eq!(r.framing, Framing::Chunked);
        assert_eq!(out, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n");
    }

    #[test]
    fn chunked_bodies_end_where_they_end_in_any_split() {
        let body =
            b"5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        let end = body.len() - 4;
        for split in 0..body.len() {
            let mut c = Chunked::default();
            let (a, b) = body.split_at(split);
            let got = match c.advance(a).unwrap() {
                Some(n) => n,
                None => split + c.advance(b).unwrap().expect("the end"),
            };
            assert_eq!(got, end, "split at {split}");
        }
        let mut c = Chunked::default();
        assert_eq!(c.advance(b"0\r\n\r\n").unwrap(), Some(5));
        for bad in [&b"x\r\n"[..], b"5\r\nhelloXX", b"\r\n", b"0\r\n\n"] {
            assert!(Chunked::default().advance(bad).is_err(), "{bad:?}");
        }
    }
}

#[cfg(test)]
mod fuzz;
