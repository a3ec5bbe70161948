//! The trace flags of `slipway server` and `slipway ingress` (`--otlp-endpoint`,
//! `--trace-sample-ratio`) and how they combine with the `OTEL_*` variables (see
//! [`slipway_otel::config`] for the precedence). The server passes its flags on to the
//! ingress it starts; the variables reach it through the environment.

use anyhow::{Context, Result};
use clap::Args;

#[derive(Debug, Clone, Default, Args)]
pub struct TraceArgs {
    /// OTLP/HTTP receiver of traces (base URL; spans are POSTed to URL/v1/traces as
    /// protobuf). Default: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_ENDPOINT;
    /// none: no export. OTEL_SDK_DISABLED=true turns it off.
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Share of new ingress requests traced, 0 to 1 (a sampled or unsampled `traceparent`
    /// from the client is respected). Default: OTEL_TRACES_SAMPLER_ARG, else 0.01.
    #[arg(long, value_name = "RATIO")]
    pub trace_sample_ratio: Option<f64>,
}

impl TraceArgs {
    /// The settings, with `role` as the default service name (`OTEL_SERVICE_NAME` wins).
    pub fn config(&self, role: &str) -> Result<slipway_otel::Config> {
        slipway_otel::Config::resolve(
            self.otlp_endpoint.as_deref(),
            self.trace_sample_ratio,
            role,
            |k| std::env::var(k).ok(),
        )
        .context("trace settings (--otlp-endpoint, --trace-sample-ratio, OTEL_*)")
    }

    /// The same flags for a `slipway ingress` command line.
    pub fn to_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(e) = &self.otlp_endpoint {
            out.extend(["--otlp-endpoint".to_owned(), e.clone()]);
        }
        if let Some(r) = self.trace_sample_ratio {
            out.extend(["--trace-sample-ratio".to_owned(), r.to_string()]);
        }
        out
    }
}
