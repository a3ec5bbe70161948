//! Requests weighted by version through a real listener: exact shares, a version cut off by
//! weight 0, clients kept on their version by a cookie (fast path and hyper path), and the
//! measurements per version (`GET /versions`, Prometheus).

use std::net::SocketAddr;
use std::time::Duration;

use slipway_ingress::client::IngressClient;
use slipway_ingress::versions::{bucket_upper_us, cookie_name, quantile_us};
use slipway_ingress::{
    ProxyOptions, RouteConfig, RoutingConfig, ServiceConfig, TargetConfig, VersionWeight,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::retry::start_ingress;

const SERVICE: &str = "app/default/web";

/// A keep-alive HTTP/1.1 upstream that answers every request with `status` and its version
/// name as the body, after `delay`.
async fn version_upstream(name: &'static str, status: u16, delay: Duration) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        let reply = format!(
                            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n{name}",
                            name.len()
                        );
                        if c.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                    match c.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    addr
}

/// An address that refuses connections (a listener bound, then closed).
async fn refusing() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// One service on `/` whose targets `(id, addr, version)` are weighted `weights`.
fn weighted(
    targets: &[(&str, SocketAddr, &str)],
    weights: &[(&str, u32)],
    sticky: bool,
) -> ServiceConfig {
    ServiceConfig {
        name: SERVICE.into(),
        routes: vec![RouteConfig {
            host: None,
            path: "/".into(),
            strip_prefix: false,
        }],
        targets: targets
            .iter()
            .map(|(id, addr, v)| TargetConfig {
                id: (*id).into(),
                addr: *addr,
                draining: false,
                unreachable: false,
                version: Some((*v).into()),
            })
            .collect(),
        weights: weights
            .iter()
            .map(|(v, w)| VersionWeight {
                version: (*v).into(),
                weight: *w,
            })
            .collect(),
        sticky,
    }
}

/// Reads one response (Content-Length framed): its head and body.
async fn response(c: &mut TcpStream, buf: &mut Vec<u8>) -> (String, String) {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len: usize = head
                .to_ascii_lowercase()
                .lines()
                .find_map(|l| l.strip_prefix("content-length: ").map(|v| v.trim().parse()))
                .expect("a content-length")
                .unwrap();
            if buf.len() >= end + 4 + len {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
                buf.drain(..end + 4 + len);
                return (head, body);
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(30), c.read(&mut chunk))
            .await
            .expect("no response within 30 s")
            .unwrap();
        assert!(n > 0, "the ingress closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The value of the response's `Set-Cookie` field, if it has one.
fn set_cookie(head: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case("set-cookie")
            .then(|| v.trim().to_owned())
    })
}

/// A keep-alive HTTP/1.1 client on the fast path.
struct Client {
    c: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn new(addr: &str) -> Self {
        Self {
            c: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    /// GET / with extra header lines (each ending `\r\n`); the head and body.
    async fn get(&mut self, extra: &str) -> (String, String) {
        let raw = format!("GET / HTTP/1.1\r\nHost: a.test\r\n{extra}\r\n");
        self.c.write_all(raw.as_bytes()).await.unwrap();
        response(&mut self.c, &mut self.buf).await
    }
}

/// An HTTP/1.0 request (the hyper path); the whole response.
async fn get_http10(addr: &str, extra: &str) -> String {
    let mut c = TcpStream::connect(addr).await.unwrap();
    let raw = format!("GET / HTTP/1.0\r\nHost: a.test\r\n{extra}\r\n");
    c.write_all(raw.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), c.read_to_end(&mut out))
        .await
        .expect("no response within 30 s")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn requests_are_split_exactly_by_weight_and_weight_zero_cuts_a_version_off() {
    let blue = version_upstream("blue", 200, Duration::ZERO).await;
    let green = version_upstream("green", 200, Duration::ZERO).await;
    let targets = [("b1", blue, "blue"), ("g1", green, "green")];
    let dir = tempfile::tempdir().unwrap();
    let cfg = RoutingConfig {
        services: vec![weighted(&targets, &[("blue", 90), ("green", 10)], false)],
    };
    let (addr, stop, ingress) = start_ingress(dir.path(), &cfg, ProxyOptions::default()).await;

    // Exact with the deterministic assignment: 1000 fresh assignments are ten whole cycles.
    let mut c = Client::new(&addr).await;
    let (mut b, mut g) = (0, 0);
    for _ in 0..1000 {
        let (head, body) = c.get("").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(set_cookie(&head).is_none(), "not sticky: {head}");
        match body.as_str() {
            "blue" => b += 1,
            "green" => g += 1,
            other => panic!("{other}"),
        }
    }
    assert_eq!((b, g), (900, 100));

    // Green cut off: it gets nothing, though its target stays routable.
    let client = IngressClient::new(dir.path());
    let cfg = RoutingConfig {
        services: vec![weighted(&targets, &[("blue", 100), ("green", 0)], false)],
    };
    client.push(&cfg).await.unwrap();
    for _ in 0..200 {
        let (_, body) = c.get("").await;
        assert_eq!(body, "blue");
    }
    assert!(get_http10(&addr, "").await.ends_with("blue"));

    // Counters carried across the swap; weights as in force now.
    let report = client.versions().await.unwrap();
    let of = |v: &str| report.iter().find(|r| r.version == v).unwrap().clone();
    assert_eq!((of("blue").requests, of("blue").weight), (1101, Some(100)));
    assert_eq!((of("green").requests, of("green").weight), (100, Some(0)));
    assert_eq!(of("green").service, SERVICE);
    let metrics = client.metrics().await.unwrap();
    for line in [
        format!("slipway_ingress_version_weight{{service=\"{SERVICE}\",version=\"green\"}} 0"),
        format!(
            "slipway_ingress_version_requests_total{{service=\"{SERVICE}\",version=\"blue\"}} 1101"
        ),
        format!(
            "slipway_ingress_version_errors_total{{service=\"{SERVICE}\",version=\"blue\",kind=\"5xx\"}} 0"
        ),
    ] {
        assert!(metrics.contains(&line), "{line} missing from:\n{metrics}");
    }

    let _ = stop.send(());
    ingress.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_sticky_client_keeps_its_version_and_gets_a_cookie_only_when_assigned() {
    let blue = version_upstream("blue", 200, Duration::ZERO).await;
    let green = version_upstream("green", 200, Duration::ZERO).await;
    let targets = [("b1", blue, "blue"), ("g1", green, "green")];
    let dir = tempfile::tempdir().unwrap();
    let cfg = RoutingConfig {
        services: vec![weighted(&targets, &[("blue", 50), ("green", 50)], true)],
    };
    let (addr, stop, ingress) = start_ingress(dir.path(), &cfg, ProxyOptions::default()).await;
    let name = cookie_name(SERVICE);

    // Fresh assignments (no cookie sent back) each come with a cookie naming the version.
    let mut c = Client::new(&addr).await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..10 {
        let (head, body) = c.get("").await;
        let cookie = set_cookie(&head).expect("a fresh assignment sets the cookie");
        assert_eq!(
            cookie,
            format!("{name}={body}; Path=/; HttpOnly; SameSite=Lax")
        );
        seen.insert(body);
    }
    assert_eq!(seen.len(), 2, "50/50 gives both versions: {seen:?}");

    // A client that sends its cookie back sees one version, and no new cookie.
    for version in ["blue", "green"] {
        let mut got = Vec::new();
        for i in 0..200 {
            // Among other cookies, sometimes in a Cookie field of its own.
            let extra = if i % 2 == 0 {
                format!("Cookie: a=1; {name}={version}; z=2\r\n")
            } else {
                format!("Cookie: a=1\r\nCookie: {name}={version}\r\n")
            };
            let (head, body) = c.get(&extra).await;
            assert!(set_cookie(&head).is_none(), "{head}");
            got.push(body);
        }
        assert!(got.iter().all(|b| b == version), "{version}: {got:?}");
    }

    // The hyper path (HTTP/1.0) sets the cookie on a fresh assignment and keeps it too.
    let r = get_http10(&addr, "").await;
    let cookie = set_cookie(&r).expect("hyper path sets the cookie");
    let version = cookie
        .strip_prefix(&format!("{name}="))
        .and_then(|v| v.split(';').next())
        .unwrap()
        .to_owned();
    assert!(r.ends_with(&version), "{r}");
    for _ in 0..5 {
        let r = get_http10(&addr, &format!("Cookie: x=y; {name}={version}\r\n")).await;
        assert!(set_cookie(&r).is_none(), "{r}");
        assert!(r.ends_with(&version), "{r}");
    }

    // A cookie naming a version cut off (weight 0) is assigned afresh, to the other one.
    let client = IngressClient::new(dir.path());
    let cfg = RoutingConfig {
        services: vec![weighted(&targets, &[("blue", 0), ("green", 100)], true)],
    };
    client.push(&cfg).await.unwrap();
    let (head, body) = c.get(&format!("Cookie: {name}=blue\r\n")).await;
    assert_eq!(body, "green");
    assert_eq!(
        set_cookie(&head).as_deref(),
        Some(format!("{name}=green; Path=/; HttpOnly; SameSite=Lax").as_str())
    );
    let r = get_http10(&addr, &format!("Cookie: {name}=blue\r\n")).await;
    assert!(r.ends_with("green"), "{r}");
    assert!(set_cookie(&r).is_some_and(|c| c.starts_with(&format!("{name}=green;"))));

    let _ = stop.send(());
    ingress.await.unwrap().unwrap();
}

#[tokio::test]
async fn versions_report_requests_errors_latency_and_connect_failures() {
    let fine = version_upstream("fine", 200, Duration::ZERO).await;
    let slow = version_upstream("slow", 200, Duration::from_millis(50)).await;
    let bad = version_upstream("bad", 500, Duration::ZERO).await;
    let dead = refusing().await;
    let dir = tempfile::tempdir().unwrap();
    let mut plain = weighted(&[("p1", fine, "p-v1")], &[], false);
    plain.name = "app/default/plain".into();
    plain.routes[0].path = "/plain".into();
    let cfg = RoutingConfig {
        services: vec![
            weighted(
                &[
                    ("f1", fine, "fine"),
                    ("s1", slow, "slow"),
                    ("b1", bad, "bad"),
                    ("d1", dead, "dead"),
                ],
                &[("fine", 25), ("slow", 25), ("bad", 25), ("dead", 25)],
                false,
            ),
            plain,
        ],
    };
    let (addr, stop, ingress) = start_ingress(dir.path(), &cfg, ProxyOptions::default()).await;
    let mut c = Client::new(&addr).await;
    let mut statuses = Vec::new();
    for _ in 0..40 {
        let (head, body) = c.get("").await;
        statuses.push((head[9..12].to_owned(), body));
    }
    // The dead version's requests went to another version (its connects failed).
    assert!(statuses.iter().all(|(_, b)| b != "dead"));
    assert!(
        statuses.iter().all(|(s, b)| (s == "500") == (b == "bad")),
        "{statuses:?}"
    );
    c.c.write_all(b"GET /plain HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await
        .unwrap();
    let (_, body) = response(&mut c.c, &mut c.buf).await;
    assert_eq!(body, "fine");

    let report = IngressClient::new(dir.path()).versions().await.unwrap();
    let of = |s: &str, v: &str| {
        report
            .iter()
            .find(|r| r.service == s && r.version == v)
            .unwrap_or_else(|| panic!("{s} {v} missing: {report:?}"))
            .clone()
    };
    let served = |b: &str| statuses.iter().filter(|(_, x)| x == b).count() as u64;
    let bad = of(SERVICE, "bad");
    assert_eq!(
        (bad.requests, bad.errors_5xx),
        (served("bad"), served("bad"))
    );
    assert!(bad.requests > 0, "{bad:?}");
    let fine = of(SERVICE, "fine");
    assert_eq!((fine.requests, fine.errors_5xx), (served("fine"), 0));
    let dead = of(SERVICE, "dead");
    assert_eq!(dead.requests, 0);
    assert!(dead.connect_errors >= 1, "{dead:?}");
    assert_eq!(dead.weight, Some(25));
    let slow = of(SERVICE, "slow");
    assert_eq!(slow.requests, served("slow"));
    assert_eq!(slow.latency.iter().sum::<u64>(), slow.requests);
    let p99 = quantile_us(&slow.latency, 0.99).unwrap();
    assert!(p99 >= 50_000, "slow p99 {p99} µs");
    assert!(
        quantile_us(&fine.latency, 0.5).unwrap() < 50_000,
        "{fine:?}"
    );
    assert!(bucket_upper_us(fine.latency.len() - 1) >= 120_000_000);
    // A service without weights is measured per version all the same.
    let p = of("app/default/plain", "p-v1");
    assert_eq!((p.requests, p.weight), (1, None));

    let _ = stop.send(());
    ingress.await.unwrap().unwrap();
}
