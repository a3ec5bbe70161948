//! `hello`: Slipway's example app.
//!
//! A small HTTP/1.1 server with no dependencies beyond `std` and a signal handler, linked
//! statically so its image can be built `FROM scratch` without pulling anything.
//!
//! - `GET /` answers `{"version": ..., "hostname": ..., "uptime_ms": ...}`.
//! - `GET /healthz` answers `ok` (or 503 when told to fail).
//! - `GET /env/NAME` answers the value of an environment variable (for tests of injection).
//! - `GET /secret-file/NAME` answers the content of `/run/secrets/NAME` (a secret delivered
//!   as a file), `GET /secret-stat/NAME` its mode, owner and group (`400 1000 1000`).
//! - `GET /ws` upgrades to a WebSocket that echoes text and binary messages.
//! - `hello check [PORT]` probes `/healthz` on loopback: a container `HEALTHCHECK`.
//!
//! Knobs (environment): `PORT` (8080), `HELLO_VERSION`, `HELLO_START_DELAY_MS` (sleep before
//! listening), `HELLO_EXIT_AT_START` (exit at once with this code), `HELLO_EXIT_AFTER_MS`
//! (exit 1 after running this long), `HELLO_FAIL_HEALTH` (1: `/healthz` always 503),
//! `HELLO_FAIL_HEALTH_AFTER_MS` (503 after running this long), `HELLO_DRAIN_MS` (on SIGTERM,
//! wait at most this long for in-flight requests, default 5000), `HELLO_FAIL_PERCENT` (this
//! percentage of the other requests answer 500, spread evenly: with 20, every fifth;
//! `/healthz` is not affected), `HELLO_LATENCY_MS` (the other requests wait this long before
//! answering), `HELLO_HEALTH_REDIRECT` (`/healthz` answers 302 to this URL), `HELLO_REQUIRE`
//! (`host:port` that must accept a connection at start, else exit 4), `HELLO_SAY`
//! (print this text with a count once a second on stdout).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn port() -> u16 {
    env_u64("PORT")
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(8080)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("check") {
        let port = args
            .get(2)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(port);
        std::process::exit(if check(port) { 0 } else { 1 });
    }
    if let Some(code) = env_u64("HELLO_EXIT_AT_START") {
        eprintln!("hello: exiting at start with code {code} (HELLO_EXIT_AT_START)");
        std::process::exit(code as i32);
    }
    if let Some(ms) = env_u64("HELLO_START_DELAY_MS") {
        eprintln!("hello: starting slowly ({ms} ms)");
        std::thread::sleep(Duration::from_millis(ms));
    }
    // A peer that must answer at start (a sidecar on localhost): exit 4 when it does not.
    if let Ok(peer) = std::env::var("HELLO_REQUIRE") {
        match std::net::TcpStream::connect(&peer) {
            Ok(_) => println!("hello: {peer} answers"),
            Err(e) => {
                eprintln!("hello: {peer} does not answer ({e}); exiting with code 4");
                std::process::exit(4);
            }
        }
    }
    // A line of output, as it is, once a second with a count (what the console's logs tests
    // follow).
    if let Ok(text) = std::env::var("HELLO_SAY") {
        std::thread::spawn(move || {
            for n in 1u64.. {
                println!("{text} {n}");
                std::thread::sleep(Duration::from_secs(1));
            }
        });
    }
    serve();
}

fn check(port: u16) -> bool {
    let Ok(mut s) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 200")
}

struct App {
    version: String,
    service: String,
    hostname: String,
    started: Instant,
    fail_health: bool,
    fail_health_after: Option<Duration>,
    in_flight: AtomicUsize,
    /// Percent of the app's requests that fail with 500 (`HELLO_FAIL_PERCENT`).
    fail_percent: u64,
    /// Requests answered so far (for an even spread of the failures).
    served: std::sync::atomic::AtomicU64,
    latency: Option<Duration>,
}

fn serve() {
    let app = Arc::new(App {
        version: std::env::var("HELLO_VERSION").unwrap_or_else(|_| "dev".into()),
        service: std::env::var("SLIPWAY_SERVICE").unwrap_or_default(),
        hostname: std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| "unknown".into()),
        started: Instant::now(),
        fail_health: std::env::var("HELLO_FAIL_HEALTH").is_ok_and(|v| v == "1"),
        fail_health_after: env_u64("HELLO_FAIL_HEALTH_AFTER_MS").map(Duration::from_millis),
        in_flight: AtomicUsize::new(0),
        fail_percent: env_u64("HELLO_FAIL_PERCENT").unwrap_or(0).min(100),
        served: std::sync::atomic::AtomicU64::new(0),
        latency: env_u64("HELLO_LATENCY_MS")
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis),
    });
    let listener = match TcpListener::bind(("0.0.0.0", port())) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("hello: cannot listen on port {}: {e}", port());
            std::process::exit(2);
        }
    };
    eprintln!("hello {} listening on :{}", app.version, port());

    {
        let app = app.clone();
        std::thread::spawn(move || {
            let mut signals = signal_hook::iterator::Signals::new([
                signal_hook::consts::SIGTERM,
                signal_hook::consts::SIGINT,
            ])
            .expect("signal handler");
            if let Some(sig) = signals.forever().next() {
                let drain = Duration::from_millis(env_u64("HELLO_DRAIN_MS").unwrap_or(5000));
                eprintln!("hello: signal {sig}, draining up to {drain:?}");
                let deadline = Instant::now() + drain;
                while app.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
                std::process::exit(0);
            }
        });
    }
    if let Some(ms) = env_u64("HELLO_EXIT_AFTER_MS") {
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(ms));
            eprintln!("hello: exiting with code 1 after {ms} ms (HELLO_EXIT_AFTER_MS)");
            std::process::exit(1);
        });
    }

    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let app = app.clone();
        std::thread::spawn(move || handle(conn, &app));
    }
}

fn handle(conn: TcpStream, app: &App) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(write_half) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    let mut out = write_half;
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or("").to_owned(),
            parts.next().unwrap_or("/").to_owned(),
        );
        let mut keep_alive = parts.next() == Some("HTTP/1.1");
        let mut content_length = 0usize;
        let mut ws_key: Option<String> = None;
        // The `traceparent` received, echoed by `GET /headers/traceparent` (tracing tests).
        let mut traceparent: Option<String> = None;
        loop {
            let mut h = String::new();
            match reader.read_line(&mut h) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.trim().eq_ignore_ascii_case("sec-websocket-key") {
                    ws_key = Some(v.trim().to_owned());
                }
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
                if k == "connection" {
                    keep_alive = v != "close";
                } else if k == "content-length" {
                    content_length = v.parse().unwrap_or(0);
                } else if k == "traceparent" {
                    traceparent = Some(v);
                }
            }
        }
        if content_length > 0 {
            let mut body = vec![0u8; content_length.min(1 << 20)];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
        }
        if path == "/ws" {
            if let Some(key) = ws_key.take() {
                websocket(reader, out, &key, app);
            }
            return;
        }
        app.in_flight.fetch_add(1, Ordering::SeqCst);
        let (status, content_type, body) = match (method.as_str(), path.as_str()) {
            ("GET", "/headers/traceparent") => match traceparent.take() {
                Some(v) => ("200 OK", "text/plain", v),
                None => ("404 Not Found", "text/plain", "no traceparent\n".into()),
            },
            _ => respond(app, &method, &path),
        };
        let location = match std::env::var("HELLO_HEALTH_REDIRECT") {
            Ok(to) if status.starts_with("302") => format!("Location: {to}\r\n"),
            _ => String::new(),
        };
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nX-Hello-Version: {}\r\n{location}{}\r\n",
            body.len(),
            app.version,
            if keep_alive {
                ""
            } else {
                "Connection: close\r\n"
            }
        );
        let ok = out
            .write_all(head.as_bytes())
            .and_then(|_| out.write_all(body.as_bytes()))
            .is_ok();
        app.in_flight.fetch_sub(1, Ordering::SeqCst);
        if !ok || !keep_alive {
            return;
        }
    }
}

impl App {
    /// Whether the next app request fails (`HELLO_FAIL_PERCENT`, spread evenly), after the
    /// configured latency.
    fn fails_next(&self) -> bool {
        if let Some(d) = self.latency {
            std::thread::sleep(d);
        }
        if self.fail_percent == 0 {
            return false;
        }
        let n = self.served.fetch_add(1, Ordering::SeqCst);
        // The n-th request fails when the running count of failures due steps up.
        (n + 1) * self.fail_percent / 100 > n * self.fail_percent / 100
    }
}

fn respond(app: &App, method: &str, path: &str) -> (&'static str, &'static str, String) {
    let uptime = app.started.elapsed();
    match (method, path) {
        ("GET" | "HEAD", "/healthz") if std::env::var("HELLO_HEALTH_REDIRECT").is_ok() => {
            ("302 Found", "text/plain", "see elsewhere\n".into())
        }
        ("GET" | "HEAD", "/healthz") => {
            let failing =
                app.fail_health || app.fail_health_after.is_some_and(|after| uptime >= after);
            if failing {
                (
                    "503 Service Unavailable",
                    "text/plain",
                    "failing on purpose\n".into(),
                )
            } else {
                ("200 OK", "text/plain", "ok\n".into())
            }
        }
        ("GET" | "HEAD", p) if p.starts_with("/secret-file/") || p.starts_with("/secret-stat/") => {
            let (stat, name) = match p.strip_prefix("/secret-file/") {
                Some(n) => (false, n),
                None => (true, &p["/secret-stat/".len()..]),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return (
                    "400 Bad Request",
                    "text/plain",
                    "not a secret name\n".into(),
                );
            }
            let path = format!("/run/secrets/{name}");
            let read = if stat {
                std::fs::metadata(&path).map(|m| {
                    use std::os::unix::fs::MetadataExt;
                    format!("{:o} {} {}", m.mode() & 0o7777, m.uid(), m.gid())
                })
            } else {
                std::fs::read_to_string(&path)
            };
            match read {
                Ok(v) => ("200 OK", "text/plain", v),
                Err(e) => ("404 Not Found", "text/plain", format!("{path}: {e}\n")),
            }
        }
        ("GET" | "HEAD", p) if p.starts_with("/env/") => match std::env::var(&p[5..]) {
            Ok(v) => ("200 OK", "text/plain", v),
            Err(_) => ("404 Not Found", "text/plain", "no such variable\n".into()),
        },
        ("GET" | "HEAD" | "POST", _) if app.fails_next() => (
            "500 Internal Server Error",
            "text/plain",
            format!("failing on purpose (version {})\n", escape(&app.version)),
        ),
        ("GET" | "HEAD" | "POST", _) => (
            "200 OK",
            "application/json",
            format!(
                "{{\"app\":\"hello\",\"service\":\"{}\",\"version\":\"{}\",\"hostname\":\"{}\",\"path\":\"{}\",\"uptime_ms\":{}}}\n",
                escape(&app.service),
                escape(&app.version),
                escape(&app.hostname),
                escape(path),
                uptime.as_millis()
            ),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "method not allowed\n".into(),
        ),
    }
}

fn escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| match c {
            '"' => vec!['\\', '"'],
            '\\' => vec!['\\', '\\'],
            c if c.is_control() => vec![],
            c => vec![c],
        })
        .collect()
}

/// Serves an echo WebSocket on an upgraded connection (RFC 6455, no extensions).
fn websocket(mut reader: BufReader<TcpStream>, mut out: TcpStream, key: &str, app: &App) {
    let accept = base64(&sha1(
        format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes(),
    ));
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\nX-Hello-Version: {}\r\n\r\n",
        app.version
    );
    if out.write_all(head.as_bytes()).is_err() {
        return;
    }
    let _ = out.set_read_timeout(None);
    let _ = reader.get_ref().set_read_timeout(None);
    loop {
        let mut h = [0u8; 2];
        if reader.read_exact(&mut h).is_err() {
            return;
        }
        let opcode = h[0] & 0x0f;
        let masked = h[1] & 0x80 != 0;
        let mut len = u64::from(h[1] & 0x7f);
        if len == 126 {
            let mut b = [0u8; 2];
            if reader.read_exact(&mut b).is_err() {
                return;
            }
            len = u64::from(u16::from_be_bytes(b));
        } else if len == 127 {
            let mut b = [0u8; 8];
            if reader.read_exact(&mut b).is_err() {
                return;
            }
            len = u64::from_be_bytes(b);
        }
        if len > 1 << 20 {
            return;
        }
        let mut mask = [0u8; 4];
        if masked && reader.read_exact(&mut mask).is_err() {
            return;
        }
        let mut payload = vec![0u8; len as usize];
        if reader.read_exact(&mut payload).is_err() {
            return;
        }
        if masked {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
        }
        let reply_opcode = match opcode {
            0x1 | 0x2 => opcode,
            0x9 => 0xA,
            0x8 => {
                let _ = out.write_all(&frame(0x8, &payload));
                return;
            }
            _ => continue,
        };
        if out.write_all(&frame(reply_opcode, &payload)).is_err() {
            return;
        }
    }
}

/// An unmasked server frame with FIN set.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => f.push(n as u8),
        n if n <= 0xffff => {
            f.push(126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(payload);
    f
}

/// SHA-1, only for the WebSocket handshake (RFC 3174).
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64) * 8;
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for chunk in msg.chunks(64) {
        let mut w = [0u32; 80];
        for i in 0..16 {
            w[i] = u32::from_be_bytes([
                chunk[4 * i],
                chunk[4 * i + 1],
                chunk[4 * i + 2],
                chunk[4 * i + 3],
            ]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (i, x) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn websocket_accept_matches_rfc_6455_example() {
        let accept = super::base64(&super::sha1(
            b"dGhlIHNhbXBsZSBub25jZQ==258EAFA5-E914-47DA-95CA-C5AB0DC85B11",
        ));
        assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn failures_are_spread_evenly() {
        let app = |p| super::App {
            version: String::new(),
            service: String::new(),
            hostname: String::new(),
            started: std::time::Instant::now(),
            fail_health: false,
            fail_health_after: None,
            in_flight: Default::default(),
            fail_percent: p,
            served: Default::default(),
            latency: None,
        };
        let a = app(20);
        let fails: Vec<bool> = (0..10).map(|_| a.fails_next()).collect();
        assert_eq!(fails.iter().filter(|f| **f).count(), 2);
        assert!(fails[4] && fails[9], "{fails:?}");
        let a = app(0);
        assert!((0..100).all(|_| !a.fails_next()));
        let a = app(100);
        assert!((0..100).all(|_| a.fails_next()));
        let a = app(7);
        assert_eq!((0..1000).filter(|_| a.fails_next()).count(), 70);
    }
}
