//! `shop-server`: the binary behind `examples/shop` (seed 003's API gateway in front of a
//! users and a products service). Std only, linked statically, packaged `FROM scratch` as the
//! base image `slipway-shop-base` that the services' Dockerfiles start from.
//!
//! Roles (`SHOP_ROLE`):
//! - `backend`: `GET /<SHOP_RESOURCE>` answers the JSON array in `SHOP_DATA`
//!   (default `/srv/data.json`), read at start.
//! - `gateway`: `GET /<name>...` is forwarded to the backend `SHOP_ROUTES` names
//!   (`users=users:8080,products=products:8080`: service names the platform's discovery
//!   resolves on the app environment's private network); `GET /` lists the routes.
//!
//! Both answer `GET /healthz` and stop on SIGTERM after in-flight requests finish. `PORT`
//! (8080) is where they listen.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

enum Role {
    Backend { resource: String, body: Vec<u8> },
    Gateway { routes: Vec<(String, String)> },
}

struct App {
    role: Role,
    in_flight: AtomicUsize,
}

fn main() {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080);
    let role = match std::env::var("SHOP_ROLE").as_deref() {
        Ok("backend") => {
            let resource = std::env::var("SHOP_RESOURCE").unwrap_or_else(|_| "items".into());
            let path = std::env::var("SHOP_DATA").unwrap_or_else(|_| "/srv/data.json".into());
            let body = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("shop-server: cannot read {path}: {e}");
                    std::process::exit(2);
                }
            };
            if !body.trim_ascii_start().starts_with(b"[") {
                eprintln!("shop-server: {path} does not hold a JSON array");
                std::process::exit(2);
            }
            Role::Backend { resource, body }
        }
        Ok("gateway") => {
            let spec = std::env::var("SHOP_ROUTES")
                .unwrap_or_else(|_| "users=users:8080,products=products:8080".into());
            let routes = spec
                .split(',')
                .filter_map(|r| r.split_once('='))
                .map(|(n, a)| (n.trim().to_owned(), a.trim().to_owned()))
                .collect();
            Role::Gateway { routes }
        }
        other => {
            eprintln!("shop-server: set SHOP_ROLE to backend or gateway (got {other:?})");
            std::process::exit(2);
        }
    };
    let listener = TcpListener::bind(("0.0.0.0", port)).unwrap_or_else(|e| {
        eprintln!("shop-server: cannot listen on port {port}: {e}");
        std::process::exit(1);
    });
    let app = Arc::new(App {
        role,
        in_flight: AtomicUsize::new(0),
    });
    let who = match &app.role {
        Role::Backend { resource, .. } => format!("backend for /{resource}"),
        Role::Gateway { routes } => format!(
            "gateway for {}",
            routes
                .iter()
                .map(|(n, a)| format!("/{n} -> {a}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    eprintln!("shop-server: {who}, listening on :{port}");
    {
        let app = app.clone();
        std::thread::spawn(move || {
            let mut signals = signal_hook::iterator::Signals::new([
                signal_hook::consts::SIGTERM,
                signal_hook::consts::SIGINT,
            ])
            .expect("signal handler");
            if signals.forever().next().is_some() {
                for _ in 0..100 {
                    if app.in_flight.load(Ordering::SeqCst) == 0 {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                eprintln!("shop-server: stopping");
                std::process::exit(0);
            }
        });
    }
    for conn in listener.incoming() {
        let Ok(stream) = conn else { continue };
        let app = app.clone();
        std::thread::spawn(move || {
            app.in_flight.fetch_add(1, Ordering::SeqCst);
            let _ = handle(&app, stream);
            app.in_flight.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

fn handle(app: &App, stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
        let mut close = line.contains("HTTP/1.0");
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let lower = h.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            if lower == "connection: close" {
                close = true;
            }
        }
        if length > 0 {
            let mut skip = vec![0; length.min(1 << 20)];
            reader.read_exact(&mut skip)?;
        }
        let (status, body) = answer(app, method, path);
        write!(
            out,
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        )?;
        out.write_all(&body)?;
        out.flush()?;
        if close {
            return Ok(());
        }
    }
}

fn answer(app: &App, method: &str, path: &str) -> (&'static str, Vec<u8>) {
    if method != "GET" && method != "HEAD" {
        return (
            "405 Method Not Allowed",
            br#"{"error":"only GET"}"#.to_vec(),
        );
    }
    let path = path.split('?').next().unwrap_or("/");
    if path == "/healthz" {
        return ("200 OK", br#"{"status":"ok"}"#.to_vec());
    }
    match &app.role {
        Role::Backend { resource, body } => {
            if path.trim_end_matches('/') == format!("/{resource}") {
                ("200 OK", body.clone())
            } else {
                not_found(path)
            }
        }
        Role::Gateway { routes } => {
            if path == "/" {
                let list: Vec<String> = routes.iter().map(|(n, _)| format!("\"/{n}\"")).collect();
                return (
                    "200 OK",
                    format!("{{\"routes\":[{}]}}", list.join(",")).into_bytes(),
                );
            }
            let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
            match routes.iter().find(|(n, _)| n == first) {
                Some((_, addr)) => match forward(addr, path) {
                    Ok((status, body)) => (status, body),
                    Err(e) => (
                        "502 Bad Gateway",
                        format!(
                            "{{\"error\":\"upstream {addr}: {}\"}}",
                            e.to_string().replace('"', "'")
                        )
                        .into_bytes(),
                    ),
                },
                None => not_found(path),
            }
        }
    }
}

fn not_found(path: &str) -> (&'static str, Vec<u8>) {
    (
        "404 Not Found",
        format!("{{\"error\":\"no route for {}\"}}", path.replace('"', "'")).into_bytes(),
    )
}

/// One HTTP/1.0 GET to a backend; the whole answer is read (backends close after it).
fn forward(addr: &str, path: &str) -> std::io::Result<(&'static str, Vec<u8>)> {
    let sock = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("no address"))?;
    let mut s = TcpStream::connect_timeout(&sock, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("malformed answer"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status = match head.split_whitespace().nth(1) {
        Some("200") => "200 OK",
        Some("404") => "404 Not Found",
        _ => "502 Bad Gateway",
    };
    Ok((status, raw[split + 4..].to_vec()))
}
