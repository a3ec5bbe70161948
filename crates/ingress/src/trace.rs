//! Request traces: each request continues the client's W3C `traceparent` (or starts a new
//! trace), goes to its target with a `traceparent` naming the ingress' span as the parent,
//! and, when sampled, ends as one span (method, path, route, host, status, service, target,
//! duration) handed to the OTLP exporter.
//!
//! Sampling is parent-based: a valid incoming header's sampled flag is kept; a new trace is
//! sampled by its id under the configured ratio ([`slipway_otel::Sampler`]). An unsampled
//! request costs a random span id and 55 bytes of hex (no allocation on the fast path).
//!
//! May call: slipway-otel (context, exporter).

use std::time::Instant;

use http::Method;
use slipway_otel::{Exporter, Kind, Sampler, Span, SpanId, TraceParent, Value};

/// The sampler and exporter of one ingress.
#[derive(Clone, Default)]
pub(crate) struct Traces {
    sampler: Option<Sampler>,
    exporter: Exporter,
}

impl Traces {
    /// Starts the exporter (when `config` has an endpoint) on the current runtime.
    pub(crate) fn new(config: &slipway_otel::Config) -> Self {
        let exporter = Exporter::start(config);
        // Without export nothing is recorded, so new traces are not marked sampled.
        let ratio = if exporter.enabled() {
            config.sample_ratio
        } else {
            0.0
        };
        Self {
            sampler: Some(Sampler::ratio(ratio)),
            exporter,
        }
    }

    /// The context of a request: the `traceparent` value for its target, and its span when
    /// it is sampled (and exported).
    pub(crate) fn begin(
        &self,
        incoming: Option<TraceParent>,
        method: &Method,
        host: &str,
        path: &str,
        route: &str,
    ) -> (TraceParent, Option<Box<RequestSpan>>) {
        let sampler = self.sampler.unwrap_or(Sampler::ratio(0.0));
        let (ctx, parent) = sampler.decide(incoming);
        let span = (ctx.sampled && self.exporter.enabled()).then(|| {
            Box::new(RequestSpan {
                ctx,
                parent,
                method: method.clone(),
                host: host.to_owned(),
                path: path.to_owned(),
                route: route.to_owned(),
                exporter: self.exporter.clone(),
            })
        });
        (ctx, span)
    }
}

/// A sampled request's span until its response ends.
pub(crate) struct RequestSpan {
    ctx: TraceParent,
    parent: Option<SpanId>,
    method: Method,
    host: String,
    path: String,
    route: String,
    exporter: Exporter,
}

impl RequestSpan {
    /// Ends the span: `target` is the task that answered (none for an answer of the
    /// ingress' own, such as a 503).
    pub(crate) fn finish(self, start: Instant, status: u16, service: &str, target: Option<&str>) {
        let end = slipway_otel::now_unix_nanos();
        let took = start.elapsed().as_nanos() as u64;
        let RequestSpan {
            ctx,
            parent,
            method,
            host,
            path,
            route,
            exporter,
        } = self;
        let mut attributes = vec![
            (
                "http.request.method",
                Value::Str(method.as_str().to_owned()),
            ),
            ("url.path", Value::Str(path)),
            ("http.route", Value::Str(route)),
            ("server.address", Value::Str(host)),
            ("http.response.status_code", Value::Int(i64::from(status))),
            ("slipway.service", Value::Str(service.to_owned())),
        ];
        if let Some(t) = target {
            attributes.push(("slipway.task", Value::Str(t.to_owned())));
        }
        exporter.export(Span {
            trace_id: ctx.trace_id,
            span_id: ctx.parent_id,
            parent,
            name: format!("{} {}", method.as_str(), service).into(),
            kind: Kind::Server,
            start_unix_nanos: end.saturating_sub(took),
            end_unix_nanos: end,
            attributes,
            error: (status >= 500).then(|| format!("HTTP {status}")),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLED: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn without_export_nothing_new_is_sampled_and_no_span_is_kept() {
        let t = Traces::new(&slipway_otel::Config {
            sample_ratio: 1.0,
            ..slipway_otel::Config::off()
        });
        let (ctx, span) = t.begin(None, &Method::GET, "h", "/", "/");
        assert!(
            !ctx.sampled,
            "a new trace is not marked sampled when nothing records it"
        );
        assert!(span.is_none());
        // A client's decision still travels on.
        let incoming = TraceParent::parse(SAMPLED);
        let (ctx, span) = t.begin(incoming, &Method::GET, "h", "/", "/");
        assert!(ctx.sampled);
        assert_eq!(Some(ctx.trace_id), incoming.map(|p| p.trace_id));
        assert!(span.is_none());
    }

    #[tokio::test]
    async fn with_export_the_sampled_requests_keep_a_span() {
        let t = Traces::new(&slipway_otel::Config {
            endpoint: Some("http://127.0.0.1:9/v1/traces".into()),
            sample_ratio: 0.0,
            ..slipway_otel::Config::off()
        });
        let (ctx, span) = t.begin(None, &Method::GET, "h", "/", "/");
        assert!(!ctx.sampled && span.is_none(), "ratio 0");
        let (ctx, span) = t.begin(TraceParent::parse(SAMPLED), &Method::GET, "h", "/a", "/");
        assert!(ctx.sampled);
        let span = span.expect("a sampled request has a span");
        assert_eq!(span.ctx, ctx);
        assert_eq!(
            span.parent.map(|p| p.to_hex()).as_deref(),
            Some("00f067aa0ba902b7")
        );
    }
}
