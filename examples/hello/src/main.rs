//! `hello`: Slipway's example app.
//!
//! A small HTTP/1.1 server with no dependencies beyond `std` and a signal handler, linked
//! statically so its image can be built `FROM scratch` without pulling anything.
//!
//! - `GET /` answers `{"version": ..., "hostname": ..., "uptime_ms": ...}`.
//! - `GET /healthz` answers `ok` (or 503 when told to fail).
//! - `GET /env/NAME` answers the value of an environment variable (for tests of injection).
//! - `hello check [PORT]` probes `/healthz` on loopback: a container `HEALTHCHECK`.
//!
//! Knobs (environment): `PORT` (8080), `HELLO_VERSION`, `HELLO_START_DELAY_MS` (sleep before
//! listening), `HELLO_EXIT_AT_START` (exit at once with this code), `HELLO_EXIT_AFTER_MS`
//! (exit 1 after running this long), `HELLO_FAIL_HEALTH` (1: `/healthz` always 503),
//! `HELLO_FAIL_HEALTH_AFTER_MS` (503 after running this long), `HELLO_DRAIN_MS` (on SIGTERM,
//! wait at most this long for in-flight requests, default 5000).

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
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
                if k == "connection" {
                    keep_alive = v != "close";
                } else if k == "content-length" {
                    content_length = v.parse().unwrap_or(0);
                }
            }
        }
        if content_length > 0 {
            let mut body = vec![0u8; content_length.min(1 << 20)];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
        }
        app.in_flight.fetch_add(1, Ordering::SeqCst);
        let (status, content_type, body) = respond(app, &method, &path);
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nX-Hello-Version: {}\r\n{}\r\n",
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

fn respond(app: &App, method: &str, path: &str) -> (&'static str, &'static str, String) {
    let uptime = app.started.elapsed();
    match (method, path) {
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
        ("GET" | "HEAD", p) if p.starts_with("/env/") => match std::env::var(&p[5..]) {
            Ok(v) => ("200 OK", "text/plain", v),
            Err(_) => ("404 Not Found", "text/plain", "no such variable\n".into()),
        },
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
