//! Fuzzing of the HTTP/1 fast path's parsers on stable Rust, with proptest generators
//! (issue 20). Targets are named `fuzz_ingress_*`.
//!
//! - requests, arbitrary bytes (and valid requests with bytes flipped): never a panic; an
//!   accepted head agrees with a second, independent httparse parse of the same bytes
//!   (length, method, target, Host), and the header block it forwards is itself a valid
//!   header block without hop-by-hop fields;
//! - requests, structure-aware (methods, targets, versions, Host/Content-Length/Connection/
//!   forwarding headers in any mix, LF or CRLF, pipelined bytes after the head), fed whole and
//!   cut at random points: every cut is `Partial`, the whole head gives exactly what a model
//!   of the documented rules says (take it, hand it to the hyper path, or refuse it), and a
//!   taken head forwards exactly the expected header block;
//! - responses, arbitrary and structure-aware: never a panic; the head passed to the client
//!   is a valid head, its framing agrees with a model, and a chunked one carries no length;
//! - chunked bodies, generated and arbitrary, split into random pieces: the end is found at
//!   the same byte whatever the split, and for generated bodies it is the body's end.
//!
//! Cases per target: `SLIPWAY_FUZZ_CASES` (else `PROPTEST_CASES`, else a CI-sized default).

use proptest::prelude::*;
use proptest::test_runner::Config;

use super::*;

/// CI-sized runs: a few seconds per target on a debug build.
const CI_CASES: u32 = 2_000;

fn config() -> Config {
    let mut c = Config::default();
    c.cases = match std::env::var("SLIPWAY_FUZZ_CASES") {
        Ok(v) => v.parse().expect("SLIPWAY_FUZZ_CASES is a number of cases"),
        Err(_) if std::env::var_os("PROPTEST_CASES").is_some() => c.cases,
        Err(_) => CI_CASES,
    };
    c.failure_persistence = None;
    c.max_global_rejects = c.cases;
    c
}

const IP: &str = "10.1.2.3";
const MAX_BODY: u64 = 1 << 20;

fn hop_or_ours(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-for",
    ]
    .iter()
    .any(|n| n.eq_ignore_ascii_case(name))
}

/// Invariants of an accepted request head, checked against a fresh httparse parse.
fn check_done(buf: &[u8], head: &Head, n: usize) -> Result<(), TestCaseError> {
    prop_assert!(n <= buf.len());
    let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut hs);
    let again = req.parse(&buf[..n]);
    prop_assert_eq!(again, Ok(httparse::Status::Complete(n)));
    prop_assert_eq!(req.version, Some(1));
    prop_assert_eq!(Some(head.method.as_str()), req.method);
    prop_assert_eq!(Some(head.target.as_str()), req.path);
    prop_assert!(head.target.starts_with('/'));
    let hosts: Vec<&httparse::Header<'_>> = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"))
        .collect();
    prop_assert_eq!(hosts.len(), 1);
    let raw_host = std::str::from_utf8(hosts[0].value).unwrap();
    prop_assert_eq!(&head.host, proxy::strip_port(raw_host));
    prop_assert!(head.content_length <= MAX_BODY.min(BUFFER_LIMIT));
    check_forwarded_block(head)?;
    Ok(())
}

/// The block sent to the target parses as headers, has no hop-by-hop field, and ends with
/// exactly one of each forwarding header.
fn check_forwarded_block(head: &Head) -> Result<(), TestCaseError> {
    let mut block = head.fwd.clone();
    block.extend_from_slice(b"\r\n");
    let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS + 8];
    let parsed = httparse::parse_headers(&block, &mut hs);
    prop_assert!(
        matches!(parsed, Ok(httparse::Status::Complete((n, _))) if n == block.len()),
        "forwarded block does not parse: {:?} {:?}",
        parsed,
        String::from_utf8_lossy(&block)
    );
    let Ok(httparse::Status::Complete((_, headers))) = parsed else {
        unreachable!()
    };
    for name in [
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-request-id",
    ] {
        let n = headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .count();
        prop_assert_eq!(n, 1, "{} times {}", n, name);
    }
    for h in headers.iter() {
        let ours = ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"];
        if hop_or_ours(h.name) && !ours.contains(&h.name) {
            prop_assert!(false, "{} forwarded", h.name);
        }
    }
    let host = headers
        .iter()
        .find(|h| h.name == "x-forwarded-host")
        .unwrap();
    // A header value has no white space at its ends (a Host of `[\t:1]` gives `\t:1`).
    let host_text = head.host.trim_matches([' ', '\t']);
    prop_assert_eq!(host.value, host_text.as_bytes());
    let rid = &head.fwd[head.rid.clone()];
    prop_assert!(!rid.is_empty() && rid.len() <= 200 && visible(rid));
    Ok(())
}

// ---- structure-aware requests ----

#[derive(Clone, Debug)]
struct Req {
    method: &'static str,
    target: String,
    version: &'static str,
    headers: Vec<(String, Vec<u8>)>,
    eol: &'static str,
    rest: Vec<u8>,
}

impl Req {
    fn head(&self) -> Vec<u8> {
        let mut out = format!(
            "{} {} {}{}",
            self.method, self.target, self.version, self.eol
        )
        .into_bytes();
        for (n, v) in &self.headers {
            out.extend_from_slice(n.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v);
            out.extend_from_slice(self.eol.as_bytes());
        }
        out.extend_from_slice(self.eol.as_bytes());
        out
    }
}

const HEADER_NAMES: &[&str] = &[
    "Host",
    "host",
    "HOST",
    "Content-Length",
    "content-length",
    "Transfer-Encoding",
    "Connection",
    "connection",
    "Keep-Alive",
    "Proxy-Connection",
    "TE",
    "Trailer",
    "Upgrade",
    "Expect",
    "X-Forwarded-For",
    "X-Forwarded-Proto",
    "x-forwarded-host",
    "X-Request-Id",
    "User-Agent",
    "Accept",
    "X-Secret",
    "Cookie",
    "Close",
    "X-A",
];

fn token(len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(&b"abcXYZ019!#$%&'*+.^_`|~-"[..]), len)
        .prop_map(|t| String::from_utf8(t).unwrap())
}

/// A header value without leading or trailing white space (httparse trims those).
fn value_for(name: &str) -> BoxedStrategy<Vec<u8>> {
    let text = |pool: &'static [&'static str]| {
        prop::sample::select(pool)
            .prop_map(|s| s.as_bytes().to_vec())
            .boxed()
    };
    match name.to_ascii_lowercase().as_str() {
        "host" => text(&[
            "example.com",
            "Example.com:8080",
            "[::1]:80",
            "[::1",
            "a",
            "a:",
            "a:b",
            "ex ample",
            "h\tx",
            "\u{e9}.com",
        ]),
        "content-length" => prop_oneof![
            text(&[
                "0",
                "5",
                "1048576",
                "1048577",
                "999999999999999999",
                "9999999999999999999",
                "-1",
                "abc",
                "1,1",
                "0x10",
                "+5",
                "00005"
            ]),
            (0u64..100).prop_map(|n| n.to_string().into_bytes()),
        ]
        .boxed(),
        "connection" | "proxy-connection" => prop::collection::vec(
            prop::sample::select(
                &[
                    "close",
                    "Close",
                    "keep-alive",
                    "upgrade",
                    "Upgrade",
                    "X-Secret",
                    "x-a",
                    "Cookie",
                    "host",
                    "content-length",
                    "x-request-id",
                    "user-agent",
                    "",
                    "te",
                ][..],
            ),
            1..4,
        )
        .prop_map(|t| t.join(", ").trim().as_bytes().to_vec())
        .prop_filter("a value", |v| !v.is_empty())
        .boxed(),
        "x-request-id" => prop_oneof![
            text(&["abc-1", "r"]),
            (1usize..260).prop_map(|n| vec![b'q'; n]),
            Just(b"caf\xc3\xa9".to_vec()),
        ]
        .boxed(),
        "x-forwarded-for" => text(&["1.2.3.4", "1.2.3.4, 5.6.7.8", "\u{e9}"]),
        _ => prop_oneof![
            text(&["v", "a b", "x\ty", "*/*", "t/1.0 (x)", "\u{e9}t\u{e9}"]),
            prop::collection::vec(prop::sample::select(&b"az09 !~\t\x80\xff"[..]), 0..20).prop_map(
                |mut v| {
                    while v.first().is_some_and(|c| *c == b' ' || *c == b'\t') {
                        v.remove(0);
                    }
                    while v.last().is_some_and(|c| *c == b' ' || *c == b'\t') {
                        v.pop();
                    }
                    v
                }
            ),
        ]
        .boxed(),
    }
}

fn header() -> impl Strategy<Value = (String, Vec<u8>)> {
    prop_oneof![
        4 => prop::sample::select(HEADER_NAMES).prop_map(String::from),
        1 => token(1..12),
    ]
    .prop_flat_map(|n| {
        let v = value_for(&n);
        (Just(n), v)
    })
}

fn request() -> impl Strategy<Value = Req> {
    (
        prop::sample::select(&["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "M-SEARCH", "get", "X!#$%&'*+.^_`|~"][..]),
        prop_oneof![
            6 => prop::collection::vec(prop::sample::select(&["/", "a", "b/", "?", "x=1", "&", "%20", "~", ":", "@", "!", "é"][..]), 0..8)
                .prop_map(|p| format!("/{}", p.concat())),
            1 => prop::sample::select(&["*", "http://a/", "a.com:443"][..]).prop_map(String::from),
        ],
        prop_oneof![8 => Just("HTTP/1.1"), 1 => Just("HTTP/1.0")],
        (
            prop::option::weighted(0.9, value_for("host")),
            prop::collection::vec(header(), 0..10),
            any::<prop::sample::Index>(),
            prop::option::weighted(0.05, 90usize..110),
        ),
        prop::sample::select(&["\r\n", "\n"][..]),
        prop::collection::vec(any::<u8>(), 0..40),
    )
        .prop_map(|(method, target, version, (host, mut headers, at, many), eol, rest)| {
            if let Some(h) = host {
                let i = at.index(headers.len() + 1);
                headers.insert(i, ("Host".into(), h));
            }
            if let Some(n) = many {
                headers.extend((0..n).map(|i| (format!("x-{i}"), b"v".to_vec())));
            }
            Req { method, target, version, headers, eol, rest }
        })
}

#[derive(Debug, PartialEq)]
enum Expect {
    Done {
        method: String,
        target: String,
        host: String,
        content_length: u64,
        keep_alive: bool,
        fwd_prefix: Vec<u8>,
        rid: Option<Vec<u8>>,
        user_agent: Option<String>,
    },
    Fallback,
    TooLarge,
}

/// The fast path's documented rules, written out independently of `parse_request`.
fn model(r: &Req, ip: &str, max_body: u64) -> Expect {
    if r.headers.len() > MAX_HEADERS {
        return Expect::TooLarge;
    }
    if r.version != "HTTP/1.1" || !r.target.starts_with('/') {
        return Expect::Fallback;
    }
    let is = |n: &str, w: &str| n.eq_ignore_ascii_case(w);
    let tokens: Vec<String> = r
        .headers
        .iter()
        .filter(|(n, _)| is(n, "connection"))
        .flat_map(|(_, v)| {
            String::from_utf8_lossy(v)
                .split(',')
                .map(|t| t.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .collect();
    if tokens.iter().any(|t| t == "upgrade") {
        return Expect::Fallback;
    }
    let close = tokens.iter().any(|t| t == "close");
    let named = |n: &str| {
        tokens
            .iter()
            .any(|t| t != "close" && t != "keep-alive" && !t.is_empty() && is(n, t))
    };
    let hosts: Vec<&Vec<u8>> = r
        .headers
        .iter()
        .filter(|(n, _)| is(n, "host"))
        .map(|(_, v)| v)
        .collect();
    if hosts.len() != 1 || !visible(hosts[0]) {
        return Expect::Fallback;
    }
    let lengths: Vec<&Vec<u8>> = r
        .headers
        .iter()
        .filter(|(n, _)| is(n, "content-length"))
        .map(|(_, v)| v)
        .collect();
    let content_length = match lengths[..] {
        [] => 0,
        [v] if !v.is_empty() && v.len() <= 18 && v.iter().all(u8::is_ascii_digit) => {
            std::str::from_utf8(v).unwrap().parse::<u64>().unwrap()
        }
        _ => return Expect::Fallback,
    };
    if r.headers
        .iter()
        .any(|(n, _)| is(n, "transfer-encoding") || is(n, "expect"))
    {
        return Expect::Fallback;
    }
    if content_length > BUFFER_LIMIT.min(max_body) {
        return Expect::Fallback;
    }
    let raw_host = std::str::from_utf8(hosts[0]).unwrap();
    let host = proxy::strip_port(raw_host).to_owned();
    let mut fwd = Vec::new();
    let (mut rid, mut xff, mut user_agent) = (None, None, None);
    for (n, v) in &r.headers {
        let keep = if is(n, "host") || is(n, "content-length") {
            true
        } else if is(n, "x-request-id") {
            if rid.is_none() && !v.is_empty() && v.len() <= 200 && visible(v) {
                rid = Some(v.clone());
            }
            false
        } else if is(n, "x-forwarded-for") {
            if xff.is_none() && visible(v) {
                xff = Some(v.clone());
            }
            false
        } else {
            !hop_or_ours(n) && !named(n)
        };
        if keep {
            if is(n, "user-agent") {
                user_agent = Some(String::from_utf8_lossy(v).into_owned());
            }
            fwd.extend_from_slice(format!("{n}: ").as_bytes());
            fwd.extend_from_slice(v);
            fwd.extend_from_slice(b"\r\n");
        }
    }
    fwd.extend_from_slice(b"x-forwarded-for: ");
    if let Some(x) = xff {
        fwd.extend_from_slice(&x);
        fwd.extend_from_slice(b", ");
    }
    fwd.extend_from_slice(
        format!("{ip}\r\nx-forwarded-proto: http\r\nx-forwarded-host: {host}\r\nx-request-id: ")
            .as_bytes(),
    );
    Expect::Done {
        method: r.method.to_owned(),
        target: r.target.clone(),
        host,
        content_length,
        keep_alive: !close,
        fwd_prefix: fwd,
        rid,
        user_agent,
    }
}

// ---- responses ----

#[derive(Clone, Debug)]
struct Resp {
    version: &'static str,
    code: u16,
    reason: &'static str,
    headers: Vec<(&'static str, String)>,
    head_request: bool,
}

fn response() -> impl Strategy<Value = Resp> {
    let header = prop_oneof![
        (
            Just("Content-Length"),
            prop_oneof![
                prop::sample::select(
                    &[
                        "0",
                        "5",
                        "18446744073709551615",
                        "999999999999999999",
                        "-1",
                        "",
                        "1 1"
                    ][..]
                )
                .prop_map(String::from),
                (0u32..10).prop_map(|n| n.to_string()),
            ]
        ),
        (
            Just("Transfer-Encoding"),
            prop::sample::select(
                &[
                    "chunked",
                    "Chunked",
                    "gzip",
                    "gzip, chunked",
                    "chunked, gzip",
                    "identity"
                ][..]
            )
            .prop_map(String::from)
        ),
        (
            prop::sample::select(&["Connection", "connection"][..]),
            prop::collection::vec(
                prop::sample::select(
                    &[
                        "close",
                        "keep-alive",
                        "upgrade",
                        "x-a",
                        "content-length",
                        "transfer-encoding",
                        "set-cookie",
                        "date"
                    ][..]
                ),
                1..3,
            )
            .prop_map(|t| t.join(", ")),
        ),
        (
            prop::sample::select(
                &["Keep-Alive", "Trailer", "Upgrade", "Proxy-Connection", "TE"][..]
            ),
            Just("x".to_owned())
        ),
        (
            prop::sample::select(&["X-A", "Set-Cookie", "Date", "Server"][..]),
            prop::sample::select(&["1", "a b", "v=1; Path=/"][..]).prop_map(String::from)
        ),
    ];
    (
        prop::sample::select(&["HTTP/1.1", "HTTP/1.1", "HTTP/1.0"][..]),
        prop_oneof![
            4 => prop::sample::select(&[200u16, 201, 204, 206, 301, 304, 400, 404, 500, 503][..]),
            1 => 100u16..1000,
        ],
        prop::sample::select(&["OK", "", "Whatever it is", "\u{e9}"][..]),
        prop::collection::vec(header, 0..7),
        any::<bool>(),
    )
        .prop_map(|(version, code, reason, headers, head_request)| Resp {
            version,
            code,
            reason,
            headers,
            head_request,
        })
}

impl Resp {
    fn bytes(&self) -> Vec<u8> {
        let mut out = format!("{} {:03} {}\r\n", self.version, self.code, self.reason);
        for (n, v) in &self.headers {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        out.push_str("\r\n");
        out.into_bytes()
    }
}

/// Invariants of a response head passed on to the client.
fn check_response(out: &[u8], r: &RespHead, head_request: bool) -> Result<(), TestCaseError> {
    let mut full = out.to_vec();
    full.extend_from_slice(b"\r\n");
    let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS + 4];
    let mut resp = httparse::Response::new(&mut hs);
    let parsed = resp.parse(&full);
    prop_assert_eq!(
        parsed,
        Ok(httparse::Status::Complete(full.len())),
        "{:?}",
        String::from_utf8_lossy(&full)
    );
    prop_assert_eq!(resp.code, Some(r.status));
    prop_assert_eq!(resp.version, Some(1));
    let named = |n: &str| {
        resp.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(n))
            .count()
    };
    for h in resp.headers.iter() {
        if hop_or_ours(h.name) && !h.name.eq_ignore_ascii_case("transfer-encoding") {
            prop_assert!(false, "{} passed on", h.name);
        }
    }
    match r.framing {
        Framing::Chunked => {
            prop_assert_eq!(named("content-length"), 0, "a length with a chunked body");
            prop_assert!(named("transfer-encoding") >= 1);
        }
        Framing::Length(n) => {
            // The client frames the body by the same length.
            let lengths: Vec<&[u8]> = resp
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map(|h| h.value)
                .collect();
            let n = n.to_string();
            prop_assert_eq!(lengths, vec![n.as_bytes()]);
            prop_assert_eq!(named("transfer-encoding"), 0);
        }
        Framing::Empty => prop_assert!(head_request || r.status == 204 || r.status == 304),
        Framing::Close => prop_assert!(!r.reusable),
    }
    Ok(())
}

// ---- chunked bodies ----

#[derive(Clone, Debug)]
struct ChunkedBody {
    bytes: Vec<u8>,
    /// Where the body ends.
    end: usize,
}

fn chunked_body() -> impl Strategy<Value = ChunkedBody> {
    let chunk = (
        prop::collection::vec(any::<u8>(), 1..70),
        0usize..3,
        any::<bool>(),
        prop::option::of(prop::sample::select(
            &[";a=1", ";x", " ;q=\"v\"", "\t;e"][..],
        )),
    );
    (
        prop::collection::vec(chunk, 0..5),
        prop::option::of(prop::sample::select(&[";last", ""][..])),
        prop::collection::vec(
            prop::sample::select(&["Trailer: x", "X-Sum: abc", "A:", "b: c d"][..]),
            0..3,
        ),
        prop::collection::vec(any::<u8>(), 0..20),
    )
        .prop_map(|(chunks, last_ext, trailers, after)| {
            let mut b = Vec::new();
            for (data, zeros, upper, ext) in chunks {
                let size = if upper {
                    format!("{:X}", data.len())
                } else {
                    format!("{:x}", data.len())
                };
                b.extend_from_slice("0".repeat(zeros).as_bytes());
                b.extend_from_slice(size.as_bytes());
                b.extend_from_slice(ext.unwrap_or("").as_bytes());
                b.extend_from_slice(b"\r\n");
                b.extend_from_slice(&data);
                b.extend_from_slice(b"\r\n");
            }
            b.extend_from_slice(b"0");
            b.extend_from_slice(last_ext.unwrap_or("").as_bytes());
            b.extend_from_slice(b"\r\n");
            for t in trailers {
                b.extend_from_slice(t.as_bytes());
                b.extend_from_slice(b"\r\n");
            }
            b.extend_from_slice(b"\r\n");
            let end = b.len();
            b.extend_from_slice(&after);
            ChunkedBody { bytes: b, end }
        })
}

/// Feeds `bytes` in pieces cut at `cuts`; the end found, or the first error.
fn feed(bytes: &[u8], cuts: &[usize]) -> Result<Option<usize>, ()> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.push(0);
    points.push(bytes.len());
    points.sort_unstable();
    points.dedup();
    let mut c = Chunked::default();
    for w in points.windows(2) {
        if let Some(n) = c.advance(&bytes[w[0]..w[1]])? {
            return Ok(Some(w[0] + n));
        }
    }
    Ok(None)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_ingress_request_arbitrary_bytes(
        buf in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..300),
            request().prop_map(|r| { let mut b = r.head(); b.extend_from_slice(&r.rest); b }),
        ],
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        ua in any::<bool>(),
        max_body in prop_oneof![Just(MAX_BODY), 0u64..100],
    ) {
        let mut buf = buf;
        if !buf.is_empty() {
            for (at, b) in flips {
                let i = at % buf.len();
                buf[i] = b;
            }
        }
        match parse_request(&buf, IP, ua, max_body) {
            Parsed::Done(head, n) => {
                check_done(&buf, &head, n)?;
                prop_assert!(head.content_length <= max_body);
            }
            Parsed::Partial => {
                let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let got = httparse::Request::new(&mut hs).parse(&buf);
                prop_assert_eq!(got, Ok(httparse::Status::Partial));
            }
            Parsed::Fallback | Parsed::Bad(..) => {}
        }
    }

    #[test]
    fn fuzz_ingress_request_structured(
        r in request(),
        cuts in prop::collection::vec(any::<usize>(), 0..4),
        ua in any::<bool>(),
    ) {
        let head = r.head();
        let mut buf = head.clone();
        buf.extend_from_slice(&r.rest);
        let want = model(&r, IP, MAX_BODY);
        // A cut inside the head: more is needed (or too many headers already).
        for c in &cuts {
            let cut = c % head.len();
            match parse_request(&buf[..cut], IP, ua, MAX_BODY) {
                Parsed::Partial => {}
                Parsed::Bad(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, _)
                    if want == Expect::TooLarge => {}
                other => prop_assert!(false, "cut at {cut}: {other:?}"),
            }
        }
        let got = parse_request(&buf, IP, ua, MAX_BODY);
        match (got, want) {
            (Parsed::Done(h, n), Expect::Done { method, target, host, content_length, keep_alive, fwd_prefix, rid, user_agent }) => {
                prop_assert_eq!(n, head.len());
                check_done(&buf, &h, n)?;
                prop_assert_eq!(h.method.as_str(), method.as_str());
                prop_assert_eq!(h.target, target);
                prop_assert_eq!(h.host, host);
                prop_assert_eq!(h.content_length, content_length);
                prop_assert_eq!(h.keep_alive, keep_alive);
                prop_assert_eq!(h.user_agent, if ua { user_agent } else { None });
                prop_assert!(
                    h.fwd.starts_with(&fwd_prefix),
                    "forwarded {:?}\nexpected {:?}",
                    String::from_utf8_lossy(&h.fwd),
                    String::from_utf8_lossy(&fwd_prefix)
                );
                prop_assert_eq!(h.rid.start, fwd_prefix.len());
                prop_assert_eq!(&h.fwd[h.rid.end..], b"\r\n");
                match rid {
                    Some(v) => prop_assert_eq!(&h.fwd[h.rid.clone()], &v[..]),
                    None => {
                        let id = &h.fwd[h.rid.clone()];
                        prop_assert!(id.len() == 32 && id.iter().all(u8::is_ascii_hexdigit));
                    }
                }
            }
            (Parsed::Fallback, Expect::Fallback) => {}
            (Parsed::Bad(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, _), Expect::TooLarge) => {}
            (got, want) => prop_assert!(false, "got {got:?}, the model says {want:?}\n{r:?}"),
        }
    }

    #[test]
    fn fuzz_ingress_response_heads(
        r in prop_oneof![
            response().prop_map(|r| (r.bytes(), r.head_request, Some(r))),
            (prop::collection::vec(any::<u8>(), 0..200), any::<bool>()).prop_map(|(b, h)| (b, h, None)),
        ],
    ) {
        let (bytes, head_request, model) = r;
        let mut out = Vec::new();
        let got = parse_response(&bytes, head_request, &mut out);
        if let RespParse::Done(h) = &got {
            prop_assert!(h.len <= bytes.len());
            check_response(&out, h, head_request)?;
        }
        if let Some(m) = model {
            // The framing a client and a target agree on, from the rules as written.
            let is = |n: &str, w: &str| n.eq_ignore_ascii_case(w);
            let lengths: Vec<&String> = m.headers.iter().filter(|(n, _)| is(n, "content-length")).map(|(_, v)| v).collect();
            let bad_length = lengths.iter().any(|v| v.is_empty() || v.len() > 18 || !v.bytes().all(|b| b.is_ascii_digit()))
                || lengths.windows(2).any(|w| w[0].parse::<u64>().ok() != w[1].parse::<u64>().ok());
            let te = m.headers.iter().rev().find(|(n, _)| is(n, "transfer-encoding"))
                .map(|(_, v)| v.rsplit(',').next().unwrap().trim().eq_ignore_ascii_case("chunked"));
            let want = if m.code == 101 || bad_length && m.code >= 200 || !(100..=999).contains(&m.code) {
                None
            } else if (100..200).contains(&m.code) {
                Some(None)
            } else if m.head_request || m.code == 204 || m.code == 304 {
                Some(Some(Framing::Empty))
            } else {
                Some(Some(match (te, lengths.first()) {
                    (Some(true), _) => Framing::Chunked,
                    (Some(false), _) | (None, None) => Framing::Close,
                    (None, Some(v)) => Framing::Length(v.parse().unwrap()),
                }))
            };
            match (&got, want) {
                (RespParse::Bad, None) | (RespParse::Interim(_), Some(None)) => {}
                (RespParse::Done(h), Some(Some(f))) => prop_assert_eq!(h.framing, f),
                (got, want) => prop_assert!(false, "got {got:?}, the model says {want:?}"),
            }
        }
    }

    #[test]
    fn fuzz_ingress_chunked_generated_any_split(
        body in chunked_body(),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        prop_assert_eq!(feed(&body.bytes, &[]), Ok(Some(body.end)));
        prop_assert_eq!(feed(&body.bytes, &cuts), Ok(Some(body.end)));
        // Byte by byte too.
        let every: Vec<usize> = (0..body.bytes.len()).collect();
        prop_assert_eq!(feed(&body.bytes, &every), Ok(Some(body.end)));
        // Cut short, it is not over.
        prop_assert_eq!(feed(&body.bytes[..body.end - 1], &cuts), Ok(None));
    }

    #[test]
    fn fuzz_ingress_chunked_arbitrary_any_split(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..120),
            prop::collection::vec(prop::sample::select(&b"0123456789abcdefABCDEF;= \t\r\n\r\nxX"[..]), 0..120),
            (chunked_body(), prop::collection::vec((any::<usize>(), any::<u8>()), 1..3)).prop_map(|(b, flips)| {
                let mut v = b.bytes;
                for (at, x) in flips {
                    let i = at % v.len();
                    v[i] = x;
                }
                v
            }),
        ],
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let whole = feed(&bytes, &[]);
        prop_assert_eq!(feed(&bytes, &cuts), whole);
        if let Ok(Some(n)) = whole {
            prop_assert!(n <= bytes.len());
            // What follows the end is not looked at.
            let mut longer = bytes[..n].to_vec();
            longer.extend_from_slice(b"garbage");
            prop_assert_eq!(feed(&longer, &cuts), Ok(Some(n)));
        }
    }
}
