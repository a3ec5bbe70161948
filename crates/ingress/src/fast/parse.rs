//! HTTP/1 parsing for the fast path: request heads (what the fast path takes itself, what it
//! hands to hyper, what it refuses) with the header block forwarded to the target, response
//! heads and their framing, and the end of chunked bodies.

use super::*;

/// A parsed request head, with the header block it is forwarded with.
#[derive(Debug)]
pub(super) struct Head {
    pub(super) method: Method,
    /// The request target (origin form: path and query).
    pub(super) target: String,
    /// The Host header's host, without a port.
    pub(super) host: String,
    /// Header lines for the target (`name: value\r\n` each), forwarding headers included.
    pub(super) fwd: Vec<u8>,
    /// Where the request id's value is in `fwd`.
    pub(super) rid: std::ops::Range<usize>,
    pub(super) content_length: u64,
    pub(super) keep_alive: bool,
    pub(super) user_agent: Option<String>,
    /// The client's `traceparent`, if it sent a valid one (the header is not in `fwd`: the
    /// ingress sends its own, see [`crate::trace`]).
    pub(super) traceparent: Option<slipway_otel::TraceParent>,
}

#[derive(Debug)]
pub(super) enum Parsed {
    Done(Head, usize),
    Partial,
    /// Valid, perhaps, but not for this path.
    Fallback,
    Bad(StatusCode, &'static str),
}

/// Header fields that end at the hop ([`proxy::HOP_BY_HOP`]) or that the ingress sets itself.
pub(super) fn dropped(name: &str) -> bool {
    const OURS: [&str; 3] = ["x-forwarded-proto", "x-forwarded-host", "x-forwarded-for"];
    proxy::HOP_BY_HOP
        .iter()
        .any(|n| n.as_str().eq_ignore_ascii_case(name))
        || OURS.iter().any(|n| n.eq_ignore_ascii_case(name))
}

pub(super) fn visible(v: &[u8]) -> bool {
    v.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
}

/// The tokens of all `Connection` fields: whether one is `close`, whether one is `upgrade`,
/// and the others (names of more fields that end at the hop).
pub(super) fn connection_tokens<'a>(
    headers: &[httparse::Header<'a>],
) -> (bool, bool, Vec<&'a str>) {
    let (mut close, mut upgrade, mut named) = (false, false, Vec::new());
    for h in headers {
        if !h.name.eq_ignore_ascii_case("connection") {
            continue;
        }
        for t in String::from_utf8_lossy(h.value).split(',') {
            let t = t.trim();
            if t.eq_ignore_ascii_case("close") {
                close = true;
            } else if t.eq_ignore_ascii_case("upgrade") {
                upgrade = true;
            } else if !t.is_empty() && !t.eq_ignore_ascii_case("keep-alive") {
                // Only names that are also header names matter; borrow them from there.
                if let Some(n) = headers.iter().find(|x| x.name.eq_ignore_ascii_case(t)) {
                    named.push(n.name);
                }
            }
        }
    }
    (close, upgrade, named)
}

/// Parses a request head from the start of `buf` and builds its forwarded header block.
pub(super) fn parse_request(buf: &[u8], ip: &str, want_user_agent: bool, max_body: u64) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Bad(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "too many request headers\n",
            );
        }
        // HTTP/2 with prior knowledge starts `PRI * HTTP/2.0`.
        Err(_) if buf.starts_with(b"PRI ") => return Parsed::Fallback,
        Err(_) => return Parsed::Bad(StatusCode::BAD_REQUEST, "malformed request\n"),
    };
    let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
        return Parsed::Fallback;
    };
    if !target.starts_with('/') {
        return Parsed::Fallback;
    }
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Parsed::Bad(StatusCode::BAD_REQUEST, "malformed request\n");
    };
    let (close, upgrade, named) = connection_tokens(req.headers);
    if upgrade {
        return Parsed::Fallback;
    }
    let mut fwd = Vec::with_capacity(len + 160);
    let (mut host, mut length, mut xff, mut rid, mut user_agent) = (None, None, None, None, None);
    let (mut traceparent, mut seen_traceparent) = (None, false);
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            if host.is_some() || !visible(h.value) {
                return Parsed::Fallback;
            }
            host = std::str::from_utf8(h.value).ok();
        } else if name.eq_ignore_ascii_case("content-length") {
            let digits = h.value;
            if length.is_some()
                || digits.is_empty()
                || digits.len() > 18
                || !digits.iter().all(u8::is_ascii_digit)
            {
                return Parsed::Fallback;
            }
            length = Some(
                digits
                    .iter()
                    .fold(0u64, |n, d| n * 10 + u64::from(d - b'0')),
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("expect")
        {
            return Parsed::Fallback;
        } else if name.eq_ignore_ascii_case("x-request-id") {
            if rid.is_none() && !h.value.is_empty() && h.value.len() <= 200 && visible(h.value) {
                rid = Some(h.value);
            }
            continue;
        } else if name.eq_ignore_ascii_case("traceparent") {
            // Two of them: neither counts (a new trace starts).
            traceparent = if seen_traceparent {
                None
            } else {
                slipway_otel::TraceParent::parse(h.value)
            };
            seen_traceparent = true;
            continue;
        } else if name.eq_ignore_ascii_case("x-forwarded-for") {
            if xff.is_none() && visible(h.value) {
                xff = Some(h.value);
            }
            continue;
        } else if dropped(name) || named.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            continue;
        } else if want_user_agent && name.eq_ignore_ascii_case("user-agent") {
            user_agent = Some(String::from_utf8_lossy(h.value).into_owned());
        }
        fwd.extend_from_slice(name.as_bytes());
        fwd.extend_from_slice(b": ");
        fwd.extend_from_slice(h.value);
        fwd.extend_from_slice(b"\r\n");
    }
    let Some(raw_host) = host else {
        return Parsed::Fallback;
    };
    let content_length = length.unwrap_or(0);
    if content_length > BUFFER_LIMIT.min(max_body) {
        return Parsed::Fallback;
    }
    let host = proxy::strip_port(raw_host).to_owned();
    fwd.extend_from_slice(b"x-forwarded-for: ");
    if let Some(prev) = xff {
        fwd.extend_from_slice(prev);
        fwd.extend_from_slice(b", ");
    }
    fwd.extend_from_slice(ip.as_bytes());
    fwd.extend_from_slice(b"\r\nx-forwarded-proto: http\r\nx-forwarded-host: ");
    fwd.extend_from_slice(host.as_bytes());
    fwd.extend_from_slice(b"\r\nx-request-id: ");
    let start = fwd.len();
    match rid {
        Some(v) => fwd.extend_from_slice(v),
        None => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            let id = rand::random::<u128>();
            fwd.extend((0..32).rev().map(|i| HEX[((id >> (i * 4)) & 0xf) as usize]));
        }
    }
    let rid = start..fwd.len();
    fwd.extend_from_slice(b"\r\n");
    Parsed::Done(
        Head {
            method,
            target: target.to_owned(),
            host,
            fwd,
            rid,
            content_length,
            keep_alive: !close,
            user_agent,
            traceparent,
        },
        len,
    )
}

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// No body (HEAD, 204, 304).
    Empty,
    Length(u64),
    Chunked,
    /// Read to the end of the connection.
    Close,
}

/// A parsed response head.
#[derive(Debug)]
pub(super) struct RespHead {
    pub(super) status: u16,
    pub(super) len: usize,
    pub(super) framing: Framing,
    /// The connection can carry another request once the body is done.
    pub(super) reusable: bool,
}

#[derive(Debug)]
pub(super) enum RespParse {
    Done(RespHead),
    /// An informational (1xx) response of this length, to skip.
    Interim(usize),
    Partial,
    Bad,
}

/// Parses a response head from the start of `buf`; `out` gets the head for the client (without
/// the final empty line).
pub(super) fn parse_response(buf: &[u8], head_request: bool, out: &mut Vec<u8>) -> RespParse {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return RespParse::Partial,
        Err(_) => return RespParse::Bad,
    };
    let (Some(code), Some(version)) = (resp.code, resp.version) else {
        return RespParse::Bad;
    };
    // No upgrade was asked for on this path, so a 101 is a broken target.
    if code == 101 {
        return RespParse::Bad;
    }
    if (100..200).contains(&code) {
        return RespParse::Interim(len);
    }
    let Ok(status) = StatusCode::from_u16(code) else {
        return RespParse::Bad;
    };
    let (close, _, named) = connection_tokens(resp.headers);
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(
        status
            .canonical_reason()
            .or(resp.reason)
            .unwrap_or("")
            .as_bytes(),
    );
    out.extend_from_slice(b"\r\n");
    let mut length: Option<u64> = None;
    let mut chunked = None;
    // Where the Content-Length line is in `out`: it goes with the body it describes, so it is
    // taken out again if the body turns out to be chunked.
    let mut length_line = 0..0;
    for h in resp.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let v = h.value;
            if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
                return RespParse::Bad;
            }
            let n = v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            match length {
                Some(l) if l != n => return RespParse::Bad,
                Some(_) => continue,
                None => length = Some(n),
            }
            length_line.start = out.len();
            length_line.end = out.len() + name.len() + v.len() + 4;
            // Passed on even when `Connection` names it: the body is framed by it (dropping
            // it left a keep-alive response without a length, and a later chunked coding
            // then took out a line that was never written).
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            let last = String::from_utf8_lossy(h.value);
            let last = last.rsplit(',').next().unwrap_or("").trim().to_owned();
            chunked = Some(last.eq_ignore_ascii_case("chunked"));
            // Passed on as it is: the body is copied with its transfer coding.
        } else if dropped(name) || named.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    let framing = if head_request || code == 204 || code == 304 {
        Framing::Empty
    } else {
        match (chunked, length) {
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) => Framing::Close,
            (None, Some(n)) => Framing::Length(n),
            (None, None) => Framing::Close,
        }
    };
    if chunked.is_some() && !length_line.is_empty() {
        out.drain(length_line);
    }
    RespParse::Done(RespHead {
        status: code,
        len,
        framing,
        reusable: version == 1 && !close && framing != Framing::Close,
    })
}

/// Where a chunked body ends (RFC 9112 §7.1), found as its bytes stream past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunked {
    Size {
        value: u64,
        digits: u8,
        ext: bool,
    },
    SizeLf {
        value: u64,
    },
    Data(u64),
    DataCr,
    DataLf,
    /// In the trailer section; `line_start` when at the start of a line.
    Trailer {
        line_start: bool,
    },
    TrailerLf {
        last: bool,
    },
    Done,
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked::Size {
            value: 0,
            digits: 0,
            ext: false,
        }
    }
}

impl Chunked {
    /// Consumes `data`; returns `Some(n)` when the body ends after its first `n` bytes.
    pub(super) fn advance(&mut self, data: &[u8]) -> Result<Option<usize>, ()> {
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            *self = match *self {
                Chunked::Data(n) => {
                    let take = n.min((data.len() - i) as u64);
                    i += take as usize;
                    if take == n {
                        Chunked::DataCr
                    } else {
                        Chunked::Data(n - take)
                    }
                }
                Chunked::Size { value, digits, ext } => {
                    i += 1;
                    match b {
                        b'\r' if digits > 0 => Chunked::SizeLf { value },
                        _ if ext => Chunked::Size { value, digits, ext },
                        b';' | b' ' | b'\t' if digits > 0 => Chunked::Size {
                            value,
                            digits,
                            ext: true,
                        },
                        _ => {
                            let d = (b as char).to_digit(16).ok_or(())?;
                            if digits >= 15 {
                                return Err(());
                            }
                            Chunked::Size {
                                value: value * 16 + u64::from(d),
                                digits: digits + 1,
                                ext,
                            }
                        }
                    }
                }
                Chunked::SizeLf { value } => {
                    i += 1;
                    match (b, value) {
                        (b'\n', 0) => Chunked::Trailer { line_start: true },
                        (b'\n', n) => Chunked::Data(n),
                        _ => return Err(()),
                    }
                }
                Chunked::DataCr => {
                    i += 1;
                    if b != b'\r' {
                        return Err(());
                    }
                    Chunked::DataLf
                }
                Chunked::DataLf => {
                    i += 1;
                    if b != b'\n' {
                        return Err(());
                    }
                    Chunked::default()
                }
                Chunked::Trailer { line_start } => {
                    i += 1;
                    match b {
                        b'\r' => Chunked::TrailerLf { last: line_start },
                        b'\n' => return Err(()),
                        _ => Chunked::Trailer { line_start: false },
                    }
                }
                Chunked::TrailerLf { last } => {
                    i += 1;
                    match (b, last) {
                        (b'\n', true) => {
                            *self = Chunked::Done;
                            return Ok(Some(i));
                        }
                        (b'\n', false) => Chunked::Trailer { line_start: true },
                        _ => return Err(()),
                    }
                }
                Chunked::Done => return Ok(Some(i)),
            };
        }
        Ok(None)
    }
}
