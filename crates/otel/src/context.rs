//! W3C Trace Context (`traceparent`, version 00) and the sampling decision: pure, no I/O, no
//! allocation (the ingress runs this on every request, sampled or not).
//!
//! Spec: <https://www.w3.org/TR/trace-context/#traceparent-header>. A header that does not
//! parse (wrong length, upper-case hex, an all-zero id, version `ff`, a version-00 header
//! with trailing data) is treated as absent, so the caller starts a new trace. Later
//! versions are parsed by their first four fields, as the spec asks.

/// A 16-byte trace id (never all zeros when valid).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TraceId(pub [u8; 16]);

/// An 8-byte span id (never all zeros when valid).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SpanId(pub [u8; 8]);

const HEX: &[u8; 16] = b"0123456789abcdef";

fn write_hex(out: &mut [u8], bytes: &[u8]) {
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0xf)];
    }
}

/// Lower-case hex only (the spec forbids upper case).
fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn read_hex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (hex_val(s[2 * i])? << 4) | hex_val(s[2 * i + 1])?;
    }
    Some(out)
}

impl TraceId {
    pub fn random() -> Self {
        loop {
            let id: [u8; 16] = rand::random();
            if id != [0; 16] {
                return Self(id);
            }
        }
    }

    /// A trace id derived from a name (e.g. a deployment id): every server computes the
    /// same one, so spans of one deployment emitted by different reconcile passes, or by
    /// another server after a failover, land in one trace. FNV-1a, twice with different
    /// offsets (not a secret: deployment ids are not either).
    pub fn from_name(name: &str) -> Self {
        let a = fnv1a(0xcbf2_9ce4_8422_2325, name.as_bytes());
        let b = fnv1a(0x6c62_272e_07bb_0142, name.as_bytes());
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&a.to_be_bytes());
        id[8..].copy_from_slice(&b.to_be_bytes());
        if id == [0; 16] {
            id[15] = 1;
        }
        Self(id)
    }

    /// Lower-case hex, as in `traceparent` and in most tools' UIs.
    pub fn to_hex(&self) -> String {
        let mut out = [0u8; 32];
        write_hex(&mut out, &self.0);
        String::from_utf8_lossy(&out).into_owned()
    }
}

impl SpanId {
    pub fn random() -> Self {
        loop {
            let id: [u8; 8] = rand::random();
            if id != [0; 8] {
                return Self(id);
            }
        }
    }

    /// A span id derived from a name within a trace (see [`TraceId::from_name`]).
    pub fn from_name(name: &str) -> Self {
        let v = fnv1a(0xcbf2_9ce4_8422_2325, name.as_bytes());
        Self(if v == 0 { 1u64 } else { v }.to_be_bytes())
    }

    pub fn to_hex(&self) -> String {
        let mut out = [0u8; 16];
        write_hex(&mut out, &self.0);
        String::from_utf8_lossy(&out).into_owned()
    }
}

fn fnv1a(offset: u64, data: &[u8]) -> u64 {
    let mut h = offset;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The fields of a `traceparent` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: TraceId,
    /// The caller's span: the parent of the next span.
    pub parent_id: SpanId,
    pub sampled: bool,
}

/// Length of a version-00 `traceparent` value.
pub const TRACEPARENT_LEN: usize = 55;

impl TraceParent {
    /// Parses a `traceparent` value (surrounding spaces and tabs allowed); `None` for an
    /// invalid one.
    pub fn parse(value: &[u8]) -> Option<Self> {
        let v = trim(value);
        if v.len() < TRACEPARENT_LEN {
            return None;
        }
        let version = read_hex::<1>(&v[0..2])?[0];
        if version == 0xff || (version == 0 && v.len() != TRACEPARENT_LEN) {
            return None;
        }
        // A future version may carry more fields after a dash.
        if v.len() > TRACEPARENT_LEN && v[TRACEPARENT_LEN] != b'-' {
            return None;
        }
        if v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
            return None;
        }
        let trace_id = read_hex::<16>(&v[3..35])?;
        let parent_id = read_hex::<8>(&v[36..52])?;
        let flags = read_hex::<1>(&v[53..55])?[0];
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id: TraceId(trace_id),
            parent_id: SpanId(parent_id),
            sampled: flags & 1 == 1,
        })
    }

    /// The version-00 header value, with `parent_id` as the parent of the next hop.
    pub fn format(&self) -> [u8; TRACEPARENT_LEN] {
        let mut out = [0u8; TRACEPARENT_LEN];
        out[0..3].copy_from_slice(b"00-");
        write_hex(&mut out[3..35], &self.trace_id.0);
        out[35] = b'-';
        write_hex(&mut out[36..52], &self.parent_id.0);
        out[52] = b'-';
        out[53..55].copy_from_slice(if self.sampled { b"01" } else { b"00" });
        out
    }
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|c| !matches!(c, b' ' | b'\t'))
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|c| !matches!(c, b' ' | b'\t'))
        .map_or(start, |e| e + 1);
    &v[start..end]
}

/// Trace-id ratio sampling, parent-based: an incoming decision is kept; a new trace is
/// sampled when its id falls under the ratio. The id's last 8 bytes are compared with a
/// threshold (as OpenTelemetry's `TraceIdRatioBased`), so every process that sees the
/// trace makes the same choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sampler {
    /// Sampled when the id's low 63 bits are below this (`0`: never; `u64::MAX`: always).
    threshold: u64,
}

impl Sampler {
    /// `ratio` in `0.0..=1.0` (clamped; NaN counts as 0).
    pub fn ratio(ratio: f64) -> Self {
        let r = if ratio.is_nan() {
            0.0
        } else {
            ratio.clamp(0.0, 1.0)
        };
        let threshold = if r >= 1.0 {
            u64::MAX
        } else {
            (r * (1u64 << 63) as f64) as u64
        };
        Self { threshold }
    }

    /// Whether a new trace with this id is sampled.
    pub fn samples(&self, id: &TraceId) -> bool {
        if self.threshold == u64::MAX {
            return true;
        }
        let mut low = [0u8; 8];
        low.copy_from_slice(&id.0[8..]);
        (u64::from_be_bytes(low) >> 1) < self.threshold
    }

    /// The context of a request's span: its trace (continued from a valid incoming
    /// `traceparent`, or new), its own span id, the parent it continues (if any) and
    /// whether it is sampled. Returns `(traceparent for the next hop, parent span)`.
    pub fn decide(&self, incoming: Option<TraceParent>) -> (TraceParent, Option<SpanId>) {
        let span_id = SpanId::random();
        match incoming {
            Some(p) => (
                TraceParent {
                    trace_id: p.trace_id,
                    parent_id: span_id,
                    sampled: p.sampled,
                },
                Some(p.parent_id),
            ),
            None => {
                let trace_id = TraceId::random();
                (
                    TraceParent {
                        trace_id,
                        parent_id: span_id,
                        sampled: self.samples(&trace_id),
                    },
                    None,
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_formats_the_specs_example() {
        let p = TraceParent::parse(GOOD.as_bytes()).unwrap();
        assert_eq!(p.trace_id.to_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(p.parent_id.to_hex(), "00f067aa0ba902b7");
        assert!(p.sampled);
        assert_eq!(&p.format()[..], GOOD.as_bytes());
        let unsampled =
            TraceParent::parse(b" 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00\t")
                .unwrap();
        assert!(!unsampled.sampled);
        // Other flag bits do not make it sampled or not.
        assert!(
            TraceParent::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03")
                .unwrap()
                .sampled
        );
        assert!(
            !TraceParent::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-02")
                .unwrap()
                .sampled
        );
    }

    #[test]
    fn invalid_headers_are_refused() {
        for bad in [
            "",
            "00",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ] {
            assert_eq!(TraceParent::parse(bad.as_bytes()), None, "{bad:?}");
        }
        // A later version with more fields: the first four count.
        let v = TraceParent::parse(
            b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever",
        )
        .unwrap();
        assert_eq!(v.trace_id.to_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn incoming_context_is_continued_with_a_new_span() {
        let incoming = TraceParent::parse(GOOD.as_bytes()).unwrap();
        for s in [Sampler::ratio(0.0), Sampler::ratio(1.0)] {
            let (next, parent) = s.decide(Some(incoming));
            assert_eq!(next.trace_id, incoming.trace_id);
            assert_ne!(next.parent_id, incoming.parent_id);
            assert_eq!(parent, Some(incoming.parent_id));
            assert!(next.sampled, "an incoming sampled flag is respected");
            let (next, _) = s.decide(Some(TraceParent {
                sampled: false,
                ..incoming
            }));
            assert!(!next.sampled, "an incoming unsampled flag is respected");
        }
    }

    #[test]
    fn new_traces_follow_the_ratio() {
        assert!(!Sampler::ratio(0.0).decide(None).0.sampled);
        assert!(Sampler::ratio(1.0).decide(None).0.sampled);
        let s = Sampler::ratio(0.25);
        let n = 20_000;
        let hits = (0..n).filter(|_| s.decide(None).0.sampled).count();
        // 5000 expected; the bound is ~10 standard deviations wide.
        assert!((4400..5600).contains(&hits), "{hits}");
        // The decision depends on the trace id alone.
        let id = TraceId::from_name("x");
        assert_eq!(s.samples(&id), s.samples(&id));
        let mut low = TraceId([0xff; 16]);
        low.0[8..].copy_from_slice(&[0; 8]);
        assert!(Sampler::ratio(0.01).samples(&low));
        assert!(!Sampler::ratio(0.01).samples(&TraceId([0xff; 16])));
    }

    #[test]
    fn derived_ids_are_stable_and_distinct() {
        assert_eq!(TraceId::from_name("d-abc"), TraceId::from_name("d-abc"));
        assert_ne!(TraceId::from_name("d-abc"), TraceId::from_name("d-abd"));
        assert_ne!(SpanId::from_name("a/start"), SpanId::from_name("a/health"));
        let p = TraceParent {
            trace_id: TraceId::from_name("d"),
            parent_id: SpanId::from_name("s"),
            sampled: true,
        };
        assert_eq!(TraceParent::parse(&p.format()), Some(p));
    }
}
