//! The ingress under real load: gapless deploys, no traffic before health, killed tasks,
//! a killed server and a killed ingress, path routing, and hostile clients.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::*;

fn lb_manifest(app: &str, services: &[(&str, &str)], count: u32) -> String {
    let mut m = format!("app: {app}\nservices:\n");
    for (name, path) in services {
        m.push_str(&format!(
            "  {name}:\n    type: Load Balanced Web Service\n    image:\n      location: slipway-hello:v1\n      port: 8080\n    http:\n      path: {path}\n      healthcheck: /healthz\n    count: {count}\n    memory: 32\n"
        ));
    }
    m
}

#[test]
fn twenty_deploys_under_load_drop_nothing() {
    if !docker() {
        return;
    }
    let s = Server::start();
    s.manifest(&lb_manifest(&app_name("gap"), &[("web", "/")], 2));
    s.cli(&["deploy"]).ok();
    let url = format!("http://{}/", s.ingress());
    let load = Load::start(&url, 64, Duration::from_secs(240));
    let mut outcomes = Vec::new();
    for i in 0..20 {
        // Alternate v2/v1; deploy 10 never becomes healthy and is rolled back, after which
        // the alternation goes on from the version that is back in service.
        let n = if i < 10 { i } else { i + 1 };
        let image = match i {
            10 => "slipway-hello:unhealthy",
            _ if n % 2 == 0 => "slipway-hello:v2",
            _ => "slipway-hello:v1",
        };
        let out = s.cli(&[
            "deploy",
            "--image",
            &format!("web={image}"),
            "--timeout",
            "120s",
        ]);
        let outcome = if out.stdout.contains("ROLLED_BACK") {
            "ROLLED_BACK"
        } else if out.code == 0 && out.stdout.contains("SUCCEEDED") {
            "SUCCEEDED"
        } else {
            panic!("deploy {i} of {image}: {out:?}")
        };
        outcomes.push(outcome);
    }
    let report = load.stop();
    eprintln!("{report:?}\noutcomes: {outcomes:?}");
    assert_eq!(
        outcomes.iter().filter(|o| **o == "ROLLED_BACK").count(),
        1,
        "{outcomes:?}"
    );
    assert!(
        report.ok > 1000,
        "too little load to prove anything: {report:?}"
    );
    assert_eq!(report.non_2xx, 0, "{report:?}");
    assert_eq!(report.errors, 0, "{report:?}");
    assert!(
        report.versions.get("v1").is_some_and(|n| *n > 0)
            && report.versions.get("v2").is_some_and(|n| *n > 0),
        "{report:?}"
    );
    assert!(
        !report.versions.contains_key("unhealthy"),
        "an unhealthy task was routed: {report:?}"
    );

    // No target received a request before it first passed its health check.
    let tasks = s.cli(&["--json", "ps", "web", "--all"]).ok().json();
    let healthy_at: HashMap<String, Option<i64>> = tasks
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["id"].as_str().unwrap().to_owned(),
                t["healthy_at"].as_i64(),
            )
        })
        .collect();
    let log = s.access_log();
    assert!(
        log.len() as u64 >= report.ok,
        "access log has {} lines for {} requests",
        log.len(),
        report.ok
    );
    for line in &log {
        let target = line["target"].as_str().unwrap();
        let started = line["time_ms"].as_f64().unwrap() - line["duration_ms"].as_f64().unwrap();
        // Tasks pruned from the records are older than every task we can still see.
        if let Some(h) = healthy_at.get(target) {
            let h = h.unwrap_or_else(|| panic!("task {target} was never healthy but got {line}"));
            assert!(
                started >= h as f64 - 1.0,
                "task {target} got a request at {started} before it was healthy at {h}"
            );
        }
    }
}

#[test]
fn killed_task_and_killed_server_cost_no_request() {
    if !docker() {
        return;
    }
    let mut s = Server::start();
    s.manifest(&lb_manifest(&app_name("kil"), &[("web", "/")], 3));
    s.cli(&["deploy"]).ok();
    let url = format!("http://{}/", s.ingress());

    // docker kill of one task under load: retried elsewhere, and replaced.
    let load = Load::start(&url, 64, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(1));
    let victim = s.containers().into_iter().find(|c| c.running).unwrap();
    assert!(
        std::process::Command::new("docker")
            .args(["kill", &victim.id])
            .status()
            .unwrap()
            .success()
    );
    wait_for(Duration::from_secs(20), "a replacement task", || {
        let running: Vec<Container> = s.containers().into_iter().filter(|c| c.running).collect();
        (running.len() == 3 && running.iter().all(|c| c.task != victim.task)).then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    let report = load.stop();
    eprintln!("docker kill: {report:?}");
    assert!(report.ok > 100, "{report:?}");
    assert_eq!((report.non_2xx, report.errors), (0, 0), "{report:?}");

    // kill -9 of the server under load: the ingress keeps serving.
    let load = Load::start(&url, 64, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(1));
    s.kill9();
    std::thread::sleep(Duration::from_secs(3));
    let report = load.stop();
    eprintln!("server killed: {report:?}");
    assert!(report.ok > 100, "{report:?}");
    assert_eq!((report.non_2xx, report.errors), (0, 0), "{report:?}");

    // The restarted server re-attaches to the same ingress.
    let pid = s.ingress_pid().unwrap();
    s.restart();
    assert_eq!(
        s.ingress_pid(),
        Some(pid),
        "the server started a second ingress"
    );
    assert_eq!(probe_url(&url).map(|x| x.0), Some(200));

    // kill -9 of the ingress: the server starts it again and its routes come back.
    assert!(
        std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let killed = Instant::now();
    let back = wait_for(
        Duration::from_secs(20),
        "the ingress to serve again",
        || {
            let new_pid = s.ingress_pid().filter(|p| *p != pid)?;
            let addr = s.ingress();
            let (status, _) = probe_url(&format!("http://{addr}/"))?;
            (status == 200).then_some(new_pid)
        },
    );
    eprintln!(
        "ingress restarted as pid {back}; serving again {:?} after the kill",
        killed.elapsed()
    );
    // Its routes came from its own persisted table, loaded before it listened.
    let log = std::fs::read_to_string(s.data_dir().join("ingress/ingress.log")).unwrap();
    assert_eq!(log.matches("slipway ingress ready").count(), 2, "{log}");
}

fn probe_url(url: &str) -> Option<(u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (addr, path) = rest
        .split_once('/')
        .map(|(a, p)| (a, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let (ip, port) = addr.rsplit_once(':')?;
    probe(ip, port.parse().ok()?, &path)
}

#[test]
fn routes_by_longest_path_prefix() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let app = app_name("path");
    s.manifest(&lb_manifest(
        &app,
        &[("users", "/users"), ("products", "/products")],
        1,
    ));
    s.cli(&["deploy"]).ok();
    let base = format!("http://{}", s.ingress());
    let service_of = |path: &str| {
        let (status, body) = probe_url(&format!("{base}{path}")).unwrap();
        let service = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["service"].as_str().map(str::to_owned));
        (status, service)
    };
    assert_eq!(service_of("/users"), (200, Some("users".into())));
    assert_eq!(service_of("/users/42"), (200, Some("users".into())));
    assert_eq!(service_of("/products"), (200, Some("products".into())));
    assert_eq!(service_of("/nothing").0, 404, "unmatched paths get 404");
    assert_eq!(
        service_of("/usersx").0,
        404,
        "prefixes match on segment boundaries"
    );

    s.manifest(&lb_manifest(
        &app,
        &[("users", "/users"), ("products", "/products"), ("api", "/")],
        1,
    ));
    s.cli(&["deploy"]).ok();
    assert_eq!(service_of("/"), (200, Some("api".into())));
    assert_eq!(service_of("/nothing"), (200, Some("api".into())));
    assert_eq!(service_of("/users"), (200, Some("users".into())));
    assert_eq!(service_of("/products/7"), (200, Some("products".into())));

    // A second service claiming a taken route is refused before anything changes.
    s.manifest(&lb_manifest(
        &app,
        &[
            ("users", "/users"),
            ("products", "/products"),
            ("api", "/"),
            ("dup", "/users"),
        ],
        1,
    ));
    let out = s.cli(&["deploy"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("already used by service"), "{out:?}");
    assert!(
        s.cli(&["status", "dup"]).code != 0,
        "the conflicting service was created"
    );

    // Metrics count the requests per service.
    let metrics = std::process::Command::new("curl")
        .args([
            "-s",
            "--unix-socket",
            s.data_dir().join("ingress/ingress.sock").to_str().unwrap(),
            "http://ingress/metrics",
        ])
        .output()
        .unwrap();
    let metrics = String::from_utf8_lossy(&metrics.stdout).into_owned();
    assert!(
        metrics.contains(&format!(
            "slipway_ingress_requests_total{{service=\"{app}/default/users\",status=\"2xx\"}} 3"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("slipway_ingress_request_duration_seconds_bucket"),
        "{metrics}"
    );
}

fn raw(addr: &str, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let _ = s.write_all(request);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

#[test]
fn hostile_clients_get_4xx_and_others_are_unaffected() {
    if !docker() {
        return;
    }
    let s = Server::start_with(&["--ingress-max-body", "65536"]);
    s.manifest(&lb_manifest(&app_name("bad"), &[("web", "/")], 2));
    s.cli(&["deploy"]).ok();
    let addr = s.ingress();
    let load = Load::start(&format!("http://{addr}/"), 8, Duration::from_secs(60));

    // Slow headers (slowloris): the connection is closed after the header timeout.
    let slow_addr = addr.clone();
    let slow = std::thread::spawn(move || {
        let mut c = TcpStream::connect(&slow_addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
        let started = Instant::now();
        let mut buf = Vec::new();
        let _ = c.read_to_end(&mut buf);
        (
            started.elapsed(),
            String::from_utf8_lossy(&buf).into_owned(),
        )
    });

    let big_header = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100_000)
    );
    let out = raw(&addr, big_header.as_bytes());
    assert!(
        out.starts_with("HTTP/1.1 431"),
        "oversized headers: {out:.200}"
    );

    let body = "b".repeat(100_000);
    let out = raw(
        &addr,
        format!(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert!(
        out.starts_with("HTTP/1.1 413"),
        "oversized body: {out:.200}"
    );

    let out = raw(&addr, b"THIS IS NOT HTTP\r\n\r\n");
    assert!(
        out.starts_with("HTTP/1.1 400") || out.is_empty(),
        "malformed request: {out:.200}"
    );

    let out = raw(
        &addr,
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    );
    assert!(
        out.starts_with("HTTP/1.1 400") || out.is_empty(),
        "bad content-length: {out:.200}"
    );

    let (waited, answer) = slow.join().unwrap();
    assert!(
        waited < Duration::from_secs(29),
        "the slow client was never cut off"
    );
    assert!(
        !answer.contains("200 OK"),
        "the slow client was served: {answer}"
    );

    let report = load.stop();
    eprintln!("{report:?}");
    assert!(report.ok > 100, "{report:?}");
    assert_eq!(
        (report.non_2xx, report.errors),
        (0, 0),
        "well-behaved clients were affected: {report:?}"
    );
}

fn read_frame(c: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    c.read_exact(&mut h).unwrap();
    let len = (h[1] & 0x7f) as usize;
    assert!(len < 126, "test frames are short");
    let mut payload = vec![0u8; len];
    c.read_exact(&mut payload).unwrap();
    (h[0], payload)
}

#[test]
fn websockets_are_proxied_and_closed_with_1001_at_drain() {
    if !docker() {
        return;
    }
    let s = Server::start();
    s.manifest(&lb_manifest(&app_name("ws"), &[("web", "/")], 1));
    s.cli(&["deploy"]).ok();
    let mut c = TcpStream::connect(s.ingress()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    c.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        c.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");

    // A masked text frame is echoed back.
    let mask = [1u8, 2, 3, 4];
    let mut f = vec![0x81, 0x80 | 4];
    f.extend(mask);
    f.extend(b"ping".iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    c.write_all(&f).unwrap();
    assert_eq!(read_frame(&mut c), (0x81, b"ping".to_vec()));

    // A deploy drains the old task: its WebSocket gets a close frame with 1001 (going away).
    let deploy = {
        let (url, token, dir) = (s.url.clone(), s.token.clone(), s.dir.path().to_owned());
        std::thread::spawn(move || {
            std::process::Command::new(&*BIN)
                .args(["deploy", "--image", "web=slipway-hello:v2"])
                .current_dir(dir)
                .env("SLIPWAY_SERVER", url)
                .env("SLIPWAY_TOKEN", token)
                .output()
                .unwrap()
        })
    };
    let (op, payload) = read_frame(&mut c);
    assert_eq!(op, 0x88, "expected a close frame");
    assert_eq!(payload, vec![0x03, 0xE9], "close code 1001");
    let out = deploy.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
