//! Counters the data path updates lock-free, rendered in Prometheus' text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::table::Table;

/// Upper bounds (seconds) of the latency histogram buckets.
pub const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Per-service counters.
#[derive(Debug, Default)]
pub struct ServiceStats {
    /// Responses by status class: 1xx..5xx.
    pub by_class: [AtomicU64; 5],
    pub in_flight: AtomicU64,
    pub buckets: [AtomicU64; BUCKETS.len()],
    pub latency_sum_us: AtomicU64,
    pub count: AtomicU64,
}

impl ServiceStats {
    pub fn observe(&self, status: u16, micros: u64) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
        let secs = micros as f64 / 1e6;
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.latency_sum_us.fetch_add(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

/// Ingress-wide counters.
#[derive(Debug, Default)]
pub struct Global {
    pub unrouted: AtomicU64,
    pub retries: AtomicU64,
    pub connect_errors: AtomicU64,
    pub drains: AtomicU64,
    pub rejected: AtomicU64,
    pub tls_handshake_errors: AtomicU64,
    /// Client connections open now (admitted, not yet closed).
    pub connections_open: AtomicU64,
    /// Connections refused at accept by the global cap and by the per-client cap.
    pub refused_global: AtomicU64,
    pub refused_per_client: AtomicU64,
    /// Requests failed because their body stopped arriving (the body timeout).
    pub body_timeouts: AtomicU64,
    /// Requests by protocol ([`PROTOCOLS`]) and by TLS (index 1) or not (0).
    pub by_protocol: [[AtomicU64; 2]; PROTOCOLS.len()],
}

/// Protocols counted apart; anything else counts as the first.
pub const PROTOCOLS: [&str; 3] = ["HTTP/1.1", "HTTP/1.0", "HTTP/2"];

impl Global {
    pub fn count_protocol(&self, proto: &str, tls: bool) {
        let i = PROTOCOLS.iter().position(|p| *p == proto).unwrap_or(0);
        self.by_protocol[i][usize::from(tls)].fetch_add(1, Ordering::Relaxed);
    }
}

/// Renders every metric.
pub fn render(table: &Table, g: &Global) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# TYPE slipway_ingress_requests_total counter");
    for s in &table.services {
        for (i, c) in s.stats.by_class.iter().enumerate() {
            let _ = writeln!(
                out,
                "slipway_ingress_requests_total{{service=\"{}\",status=\"{}xx\"}} {}",
                s.name,
                i + 1,
                c.load(Ordering::Relaxed)
            );
        }
    }
    let _ = writeln!(
        out,
        "slipway_ingress_requests_total{{service=\"\",status=\"404\"}} {}",
        g.unrouted.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# TYPE slipway_ingress_request_duration_seconds histogram"
    );
    for s in &table.services {
        let mut cumulative = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += s.stats.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "slipway_ingress_request_duration_seconds_bucket{{service=\"{}\",le=\"{b}\"}} {cumulative}",
                s.name
            );
        }
        let count = s.stats.count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "slipway_ingress_request_duration_seconds_bucket{{service=\"{}\",le=\"+Inf\"}} {count}",
            s.name
        );
        let _ = writeln!(
            out,
            "slipway_ingress_request_duration_seconds_sum{{service=\"{}\"}} {}",
            s.name,
            s.stats.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "slipway_ingress_request_duration_seconds_count{{service=\"{}\"}} {count}",
            s.name
        );
    }
    let _ = writeln!(out, "# TYPE slipway_ingress_in_flight gauge");
    for s in &table.services {
        let _ = writeln!(
            out,
            "slipway_ingress_in_flight{{service=\"{}\"}} {}",
            s.name,
            s.stats.in_flight.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(out, "# TYPE slipway_ingress_target_healthy gauge");
    for s in &table.services {
        for t in &s.active {
            let _ = writeln!(
                out,
                "slipway_ingress_target_healthy{{service=\"{}\",target=\"{}\"}} 1",
                s.name, t.id
            );
        }
    }
    for t in &table.draining {
        let _ = writeln!(
            out,
            "slipway_ingress_target_healthy{{service=\"\",target=\"{}\"}} 0",
            t.id
        );
    }
    render_versions(&mut out, table);
    let _ = writeln!(
        out,
        "# TYPE slipway_ingress_requests_by_protocol_total counter"
    );
    for (i, p) in PROTOCOLS.iter().enumerate() {
        for (tls, c) in g.by_protocol[i].iter().enumerate() {
            let _ = writeln!(
                out,
                "slipway_ingress_requests_by_protocol_total{{protocol=\"{p}\",tls=\"{}\"}} {}",
                tls == 1,
                c.load(Ordering::Relaxed)
            );
        }
    }
    let _ = writeln!(
        out,
        "# TYPE slipway_ingress_connections_open gauge\nslipway_ingress_connections_open {}",
        g.connections_open.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# TYPE slipway_ingress_connections_refused_total counter"
    );
    for (reason, v) in [
        ("global", &g.refused_global),
        ("per_client", &g.refused_per_client),
    ] {
        let _ = writeln!(
            out,
            "slipway_ingress_connections_refused_total{{reason=\"{reason}\"}} {}",
            v.load(Ordering::Relaxed)
        );
    }
    for (name, v) in [
        ("slipway_ingress_retries_total", &g.retries),
        ("slipway_ingress_body_timeouts_total", &g.body_timeouts),
        (
            "slipway_ingress_upstream_connect_errors_total",
            &g.connect_errors,
        ),
        ("slipway_ingress_drains_total", &g.drains),
        ("slipway_ingress_rejected_requests_total", &g.rejected),
        (
            "slipway_ingress_tls_handshake_errors_total",
            &g.tls_handshake_errors,
        ),
    ] {
        let _ = writeln!(
            out,
            "# TYPE {name} counter\n{name} {}",
            v.load(Ordering::Relaxed)
        );
    }
    out
}

/// Weights in force and counters per (service, version).
fn render_versions(out: &mut String, table: &Table) {
    let _ = writeln!(out, "# TYPE slipway_ingress_version_weight gauge");
    for s in &table.services {
        let Some(w) = &s.weighted else { continue };
        for v in &s.versions {
            let _ = writeln!(
                out,
                "slipway_ingress_version_weight{{service=\"{}\",version=\"{}\"}} {}",
                s.name,
                v.version,
                w.weight_of(&v.version)
            );
        }
    }
    let _ = writeln!(out, "# TYPE slipway_ingress_version_requests_total counter");
    for v in table.services.iter().flat_map(|s| s.versions.iter()) {
        let _ = writeln!(
            out,
            "slipway_ingress_version_requests_total{{service=\"{}\",version=\"{}\"}} {}",
            v.service,
            v.version,
            v.requests.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(out, "# TYPE slipway_ingress_version_errors_total counter");
    for v in table.services.iter().flat_map(|s| s.versions.iter()) {
        for (kind, c) in [("5xx", &v.by_class[4]), ("connect", &v.connect_errors)] {
            let _ = writeln!(
                out,
                "slipway_ingress_version_errors_total{{service=\"{}\",version=\"{}\",kind=\"{kind}\"}} {}",
                v.service,
                v.version,
                c.load(Ordering::Relaxed)
            );
        }
    }
}
