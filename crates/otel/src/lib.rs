//! Slipway's OpenTelemetry traces: W3C trace context and sampling ([`context`], pure), spans
//! ([`span`]), the settings from flags and `OTEL_*` variables ([`config`]) and the OTLP/HTTP
//! protobuf exporter ([`export`]) used by the controller (deployment traces) and the
//! ingress (request spans).
//!
//! Crates, for build cost: the OTLP messages are a dozen prost structs in [`proto`] with the
//! official field numbers (prost and its derive only: no `opentelemetry`/`opentelemetry_sdk`,
//! no tonic, which `opentelemetry-proto`'s message feature pulls in), sent with the
//! project's reqwest (one hyper, one reqwest in `cargo tree -d`). The integration test
//! decodes what is sent with `opentelemetry-proto`'s generated types (a dev-dependency).
//!
//! May call: tokio, reqwest (the exporter's POST), prost. Nothing of Slipway's.

pub mod config;
pub mod context;
pub mod export;
pub mod proto;
pub mod span;

pub use config::{Config, ConfigError, DEFAULT_SAMPLE_RATIO};
pub use context::{Sampler, SpanId, TraceId, TraceParent};
pub use export::Exporter;
pub use span::{Kind, Span, Value, now_unix_nanos};

/// The trace of a Slipway deployment and its root span's id, derived from the deployment
/// id: the controller's and the application layer's spans of one deployment, emitted in
/// different passes or by different servers, meet in one trace.
pub fn deployment_trace(deployment_id: &str) -> (TraceId, SpanId) {
    (
        TraceId::from_name(deployment_id),
        SpanId::from_name(&format!("{deployment_id}/deployment")),
    )
}
