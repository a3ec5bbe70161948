//! The exporter: spans go into a bounded queue and a background task sends them in batches
//! as OTLP/HTTP protobuf (`POST {endpoint}`, `application/x-protobuf`).
//!
//! Nothing waits for it: [`Exporter::export`] is a `try_send`; a full queue (a slow or dead
//! receiver) drops the span, counts it, and says so in the log at most every 10 seconds.
//! A batch the receiver refused or could not take is dropped too (no retry: traces are
//! worth less than the requests and deploys they describe).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prost::Message;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::proto;
use crate::span::{Span, Value};

/// Spans waiting to be sent; beyond it they are dropped.
pub const QUEUE: usize = 4096;
/// Most spans in one request.
pub const MAX_BATCH: usize = 512;
/// How long the first span of a batch waits for others.
pub const BATCH_DELAY: Duration = Duration::from_millis(500);
/// Longest wait for the receiver's answer.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Least time between two "spans dropped" log lines.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Handle to the exporter; cheap to clone. A disabled one drops nothing and costs nothing.
#[derive(Clone, Default)]
pub struct Exporter {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    tx: mpsc::Sender<Span>,
    dropped: AtomicU64,
    /// Milliseconds since `born` of the last "dropped" warning (0: never).
    warned_ms: AtomicU64,
    born: Instant,
}

impl Exporter {
    /// An exporter that exports nothing.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Starts the background sender on the current tokio runtime, or returns a disabled
    /// exporter when `config` has no endpoint.
    pub fn start(config: &Config) -> Self {
        let Some(endpoint) = config.endpoint.clone() else {
            return Self::disabled();
        };
        // reqwest is built without a default TLS provider: ring, as everywhere in Slipway
        // (a no-op when one is installed).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (tx, rx) = mpsc::channel(QUEUE);
        let inner = Arc::new(Inner {
            tx,
            dropped: AtomicU64::new(0),
            warned_ms: AtomicU64::new(0),
            born: Instant::now(),
        });
        let sender = Sender {
            endpoint,
            headers: config.headers.clone(),
            resource: resource(config),
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(SEND_TIMEOUT)
                .build()
                .unwrap_or_default(),
            inner: Arc::downgrade(&inner),
        };
        tokio::spawn(sender.run(rx));
        Self { inner: Some(inner) }
    }

    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Queues a finished span; never waits.
    pub fn export(&self, span: Span) {
        let Some(inner) = &self.inner else { return };
        if inner.tx.try_send(span).is_err() {
            inner.drop_spans(1, "the export queue is full");
        }
    }

    /// Spans dropped so far (queue full or receiver failing).
    pub fn dropped(&self) -> u64 {
        self.inner
            .as_ref()
            .map_or(0, |i| i.dropped.load(Ordering::Relaxed))
    }
}

impl Inner {
    fn drop_spans(&self, n: u64, why: &str) {
        let total = self.dropped.fetch_add(n, Ordering::Relaxed) + n;
        let now = self.born.elapsed().as_millis() as u64 + 1;
        let last = self.warned_ms.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= WARN_EVERY.as_millis() as u64)
            && self
                .warned_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(dropped_total = total, reason = why, "trace spans dropped");
        }
    }
}

fn resource(config: &Config) -> proto::Resource {
    let mut attributes = vec![kv("service.name", Value::Str(config.service_name.clone()))];
    attributes.extend(
        config
            .resource
            .iter()
            .map(|(k, v)| kv(k, Value::Str(v.clone()))),
    );
    attributes.push(kv("telemetry.sdk.name", Value::Str("slipway".into())));
    attributes.push(kv(
        "service.version",
        Value::Str(env!("CARGO_PKG_VERSION").into()),
    ));
    proto::Resource { attributes }
}

fn kv(key: &str, v: Value) -> proto::KeyValue {
    use proto::any_value::Value as V;
    proto::KeyValue {
        key: key.to_owned(),
        value: Some(proto::AnyValue {
            value: Some(match v {
                Value::Str(s) => V::StringValue(s),
                Value::Int(i) => V::IntValue(i),
                Value::Bool(b) => V::BoolValue(b),
            }),
        }),
    }
}

/// One span in OTLP's shape.
fn encode_span(s: Span) -> proto::Span {
    proto::Span {
        trace_id: s.trace_id.0.to_vec(),
        span_id: s.span_id.0.to_vec(),
        parent_span_id: s.parent.map(|p| p.0.to_vec()).unwrap_or_default(),
        name: s.name.into_owned(),
        kind: s.kind as i32,
        start_time_unix_nano: s.start_unix_nanos,
        end_time_unix_nano: s.end_unix_nanos,
        attributes: s.attributes.into_iter().map(|(k, v)| kv(k, v)).collect(),
        status: s.error.map(|message| proto::Status { message, code: 2 }),
        flags: 0x100 | 0x1,
    }
}

/// The request body for a batch of spans.
pub fn encode(resource: &proto::Resource, spans: Vec<Span>) -> Vec<u8> {
    proto::ExportTraceServiceRequest {
        resource_spans: vec![proto::ResourceSpans {
            resource: Some(resource.clone()),
            scope_spans: vec![proto::ScopeSpans {
                scope: Some(proto::InstrumentationScope {
                    name: "slipway".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                }),
                spans: spans.into_iter().map(encode_span).collect(),
            }],
        }],
    }
    .encode_to_vec()
}

struct Sender {
    endpoint: String,
    headers: Vec<(String, String)>,
    resource: proto::Resource,
    http: reqwest::Client,
    inner: std::sync::Weak<Inner>,
}

impl Sender {
    async fn run(self, mut rx: mpsc::Receiver<Span>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = rx.recv().await {
            batch.push(first);
            let deadline = tokio::time::Instant::now() + BATCH_DELAY;
            while batch.len() < MAX_BATCH {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(s)) => batch.push(s),
                    _ => break,
                }
            }
            let n = batch.len() as u64;
            let body = encode(&self.resource, std::mem::take(&mut batch));
            if let Err(why) = self.send(body).await
                && let Some(inner) = self.inner.upgrade()
            {
                inner.drop_spans(n, &why);
            }
        }
    }

    async fn send(&self, body: Vec<u8>) -> Result<(), String> {
        let mut req = self
            .http
            .post(&self.endpoint)
            .header("content-type", "application/x-protobuf");
        for (k, v) in &self.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let resp =
            req.body(body).send().await.map_err(|e| {
                format!("the OTLP receiver at {} did not answer: {e}", self.endpoint)
            })?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!(
                "the OTLP receiver at {} answered {}",
                self.endpoint,
                resp.status()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{SpanId, TraceId};

    #[test]
    fn a_batch_encodes_ids_times_attributes_and_status() {
        let span = Span::between_ms(
            TraceId([1; 16]),
            SpanId([2; 8]),
            Some(SpanId([3; 8])),
            "pull",
            1000,
            2500,
        )
        .attr("slipway.task", "t-1")
        .attr("http.response.status_code", 200u16)
        .error("boom");
        let res = resource(&Config {
            service_name: "svc".into(),
            ..Config::off()
        });
        let bytes = encode(&res, vec![span]);
        let back = proto::ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
        let rs = &back.resource_spans[0];
        assert_eq!(
            rs.resource.as_ref().unwrap().attributes[0].key,
            "service.name"
        );
        let s = &rs.scope_spans[0].spans[0];
        assert_eq!(
            (
                s.trace_id.as_slice(),
                s.span_id.as_slice(),
                s.parent_span_id.as_slice()
            ),
            (&[1u8; 16][..], &[2u8; 8][..], &[3u8; 8][..])
        );
        assert_eq!(
            (s.start_time_unix_nano, s.end_time_unix_nano),
            (1_000_000_000, 2_500_000_000)
        );
        assert_eq!(s.status.as_ref().unwrap().code, 2);
        assert_eq!(s.attributes.len(), 2);
    }

    #[tokio::test]
    async fn a_dead_receiver_drops_without_blocking() {
        // A port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = Config {
            endpoint: Some(format!("http://127.0.0.1:{port}/v1/traces")),
            ..Config::off()
        };
        let ex = Exporter::start(&cfg);
        let started = Instant::now();
        for i in 0..(QUEUE as i64 + 100) {
            ex.export(Span::between_ms(
                TraceId([1; 16]),
                SpanId([2; 8]),
                None,
                "x",
                i,
                i + 1,
            ));
        }
        assert!(ex.dropped() >= 100, "{}", ex.dropped());
        // Nothing waited for the receiver (a generous bound: no sleep or connect happened).
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
