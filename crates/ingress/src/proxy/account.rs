//! A request's accounting: in flight on its target until the response body ends, then its
//! counters, its access-log line, and its upstream connection back to the pool.

use super::*;

pub(crate) struct LogLine {
    pub(crate) tx: mpsc::Sender<String>,
    pub(crate) service: String,
    pub(crate) target: String,
    pub(crate) status: u16,
    pub(crate) rid: String,
    pub(crate) client: SocketAddr,
    pub(crate) method: String,
    pub(crate) host: String,
    pub(crate) path: String,
    pub(crate) proto: &'static str,
    pub(crate) tls: bool,
    pub(crate) user_agent: String,
}

/// Ends a request's accounting when its response body is done (or dropped).
pub(crate) struct Guard {
    pub(crate) target: Arc<Target>,
    pub(super) service: Arc<Service>,
    pub(super) start: Instant,
    pub(super) status: u16,
    pub(super) log: Option<LogLine>,
    /// The connection the response came on; back to the target's pool once the body ended.
    pub(super) conn: Option<crate::upstream::Conn>,
    /// The request's span, when it is sampled.
    pub(super) span: Option<Box<crate::trace::RequestSpan>>,
}

impl Guard {
    /// Accounting for a request served by `target` with this status (no pooled connection:
    /// the caller returns it).
    pub(crate) fn new(
        target: Arc<Target>,
        service: Arc<Service>,
        start: Instant,
        status: u16,
        log: Option<LogLine>,
    ) -> Self {
        Self {
            target,
            service,
            start,
            status,
            log,
            conn: None,
            span: None,
        }
    }

    /// The request's span (if sampled), ended with the accounting.
    pub(crate) fn with_span(mut self, span: Option<Box<crate::trace::RequestSpan>>) -> Self {
        self.span = span;
        self
    }

    /// `complete`: the response body was read to the end, so its connection can carry
    /// another request.
    pub(crate) fn finish(mut self, bytes: u64, complete: bool) {
        let micros = self.start.elapsed().as_micros() as u64;
        if complete && let Some(conn) = self.conn.take() {
            crate::upstream::checkin(&self.target, conn);
        }
        release(&self.target, &self.service);
        self.service.stats.observe(self.status, micros);
        crate::versions::observe(&self.target, self.status, micros);
        if let Some(span) = self.span.take() {
            span.finish(
                self.start,
                self.status,
                &self.service.name,
                Some(&self.target.id),
            );
        }
        if let Some(l) = self.log {
            let line = serde_json::json!({
                "time_ms": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
                "service": l.service,
                "target": l.target,
                "status": l.status,
                "duration_ms": micros as f64 / 1000.0,
                "bytes": bytes,
                "request_id": l.rid,
                "client_ip": l.client.ip().to_string(),
                "client_port": l.client.port(),
                "method": l.method,
                "host": l.host,
                "path": l.path,
                "proto": l.proto,
                "tls": l.tls,
                "user_agent": l.user_agent,
            });
            // A full log queue drops the line rather than slowing requests.
            let _ = l.tx.try_send(line.to_string());
        }
    }
}

/// A response body that finishes its request's accounting when it ends.
pub(super) struct Tracked {
    pub(super) inner: Incoming,
    pub(super) bytes: u64,
    pub(super) guard: Option<Guard>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(g) = self.guard.take() {
            // The server side may stop polling once the body reports its end.
            g.finish(self.bytes, self.inner.is_end_stream());
        }
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let poll = std::pin::Pin::new(&mut this.inner).poll_frame(cx);
        match &poll {
            std::task::Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    this.bytes += d.len() as u64;
                }
            }
            std::task::Poll::Ready(None) => {
                if let Some(g) = this.guard.take() {
                    g.finish(this.bytes, true);
                }
            }
            std::task::Poll::Ready(Some(Err(_))) => {
                if let Some(g) = this.guard.take() {
                    g.finish(this.bytes, false);
                }
            }
            std::task::Poll::Pending => {}
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
