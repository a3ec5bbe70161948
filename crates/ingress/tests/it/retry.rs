//! A target that swallows connections (as a dead container's address does: no refusal, no
//! answer) is given up as soon as the routing table no longer has it, and the request is
//! served by a target that the new table has — even after the retry budget has passed.

use std::time::Duration;

use slipway_ingress::{
    IngressOptions, ProxyOptions, RouteConfig, RoutingConfig, ServiceConfig, TargetConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{echo_upstream, wait_for_addr};

pub(crate) fn config(targets: &[(&str, std::net::SocketAddr)]) -> RoutingConfig {
    RoutingConfig {
        services: vec![ServiceConfig {
            name: "app/default/web".into(),
            routes: vec![RouteConfig {
                host: None,
                path: "/".into(),
                strip_prefix: false,
            }],
            targets: targets
                .iter()
                .map(|(id, addr)| TargetConfig {
                    id: (*id).into(),
                    addr: *addr,
                    draining: false,
                    unreachable: false,
                    version: None,
                })
                .collect(),
            weights: Vec::new(),
            sticky: false,
        }],
    }
}

#[tokio::test]
async fn a_connect_to_a_target_that_left_the_table_is_given_up_and_retried() {
    // A listener with a backlog of 0 and one connection queued that nobody accepts: the
    // kernel drops further SYNs, so a connect hangs like one to a vanished container.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let swallower = sock.listen(0).unwrap();
    let black_hole = swallower.local_addr().unwrap();
    let _queued = tokio::net::TcpStream::connect(black_hole).await.unwrap();
    let probe = tokio::time::timeout(
        Duration::from_millis(300),
        tokio::net::TcpStream::connect(black_hole),
    )
    .await;
    assert!(
        probe.is_err(),
        "the black hole must swallow connects for this test to mean anything: {probe:?}"
    );
    let good = echo_upstream().await;

    let dir = tempfile::tempdir().unwrap();
    // Far longer than the client waits: only giving up on the removed target can pass.
    let proxy = ProxyOptions {
        connect_timeout: Duration::from_secs(300),
        ..ProxyOptions::default()
    };
    let (addr, stop_tx, ingress) =
        start_ingress(dir.path(), &config(&[("dead", black_hole)]), proxy).await;

    let request = tokio::spawn(async move {
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        c.write_all(b"GET /x HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        c.read_to_end(&mut out).await.unwrap();
        String::from_utf8_lossy(&out).into_owned()
    });
    // Longer than the retry budget (1 s): a connect failure is retried all the same.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !request.is_finished(),
        "the request should still be connecting"
    );
    slipway_ingress::client::IngressClient::new(dir.path())
        .push(&config(&[("alive", good)]))
        .await
        .unwrap();

    let response = tokio::time::timeout(Duration::from_secs(30), request)
        .await
        .expect("the request still hangs on the removed target")
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("GET /x HTTP/1.1"), "{response}");

    let _ = stop_tx.send(());
    ingress.await.unwrap().unwrap();
}

/// An HTTP/1.1 upstream that answers `ok` with keep-alive; it counts the connections it
/// accepted and, with `close_after`, closes each connection after that many requests without
/// saying so (as a target's idle timeout does).
async fn keep_alive_upstream(
    close_after: Option<usize>,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut served = 0;
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                        if c.write_all(reply).await.is_err() {
                            return;
                        }
                        served += 1;
                        if close_after == Some(served) {
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
    (addr, accepted)
}

pub(crate) async fn start_ingress(
    dir: &std::path::Path,
    cfg: &RoutingConfig,
    proxy: ProxyOptions,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), slipway_ingress::IngressError>>,
) {
    std::fs::write(
        slipway_ingress::routes_path(dir),
        serde_json::to_vec(cfg).unwrap(),
    )
    .unwrap();
    let opts = IngressOptions {
        addrs: vec!["127.0.0.1:0".parse().unwrap()],
        data_dir: dir.to_owned(),
        access_log: None,
        access_log_max_bytes: 0,
        proxy,
        tls: None,
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let ingress = tokio::spawn(slipway_ingress::run(opts, async move {
        let _ = stop_rx.await;
    }));
    let addr = wait_for_addr(&slipway_ingress::addr_path(dir)).await;
    (addr, stop_tx, ingress)
}

/// Sends `n` requests one after another on one keep-alive connection; returns the bodies.
async fn sequential_gets(addr: &str, n: usize) -> Vec<String> {
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut bodies = Vec::new();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    for _ in 0..n {
        c.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
            .await
            .unwrap();
        // Read one response: head, then Content-Length bytes.
        let (head_end, len) = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .expect("a content-length")
                    .trim()
                    .parse()
                    .unwrap();
                if buf.len() >= end + 4 + len {
                    break (end + 4, len);
                }
            }
            let n = tokio::time::timeout(Duration::from_secs(30), c.read(&mut chunk))
                .await
                .expect("no response within 30 s")
                .unwrap();
            assert!(n > 0, "the ingress closed the connection");
            buf.extend_from_slice(&chunk[..n]);
        };
        let status = String::from_utf8_lossy(&buf[..12]).into_owned();
        let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).into_owned();
        bodies.push(format!("{status} {body}"));
        buf.drain(..head_end + len);
    }
    bodies
}

#[tokio::test]
async fn upstream_connections_are_reused() {
    let (upstream, accepted) = keep_alive_upstream(None).await;
    let dir = tempfile::tempdir().unwrap();
    let (addr, stop, ingress) = start_ingress(
        dir.path(),
        &config(&[("t", upstream)]),
        ProxyOptions::default(),
    )
    .await;
    let bodies = sequential_gets(&addr, 20).await;
    assert!(bodies.iter().all(|b| b == "HTTP/1.1 200 ok"), "{bodies:?}");
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "20 sequential requests should share one upstream connection"
    );
    let _ = stop.send(());
    ingress.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_pooled_connection_the_target_closed_is_replaced_without_an_error() {
    // The target closes every connection after one answer, keep-alive notwithstanding.
    let (upstream, accepted) = keep_alive_upstream(Some(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let (addr, stop, ingress) = start_ingress(
        dir.path(),
        &config(&[("t", upstream)]),
        ProxyOptions::default(),
    )
    .await;
    let bodies = sequential_gets(&addr, 10).await;
    assert!(bodies.iter().all(|b| b == "HTTP/1.1 200 ok"), "{bodies:?}");
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 10);
    let _ = stop.send(());
    ingress.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_request_waits_briefly_for_a_target_when_its_service_has_none() {
    let (upstream, _) = keep_alive_upstream(None).await;
    let dir = tempfile::tempdir().unwrap();
    let (addr, stop, ingress) =
        start_ingress(dir.path(), &config(&[]), ProxyOptions::default()).await;

    // No target at all for longer than the wait: 503, naming why.
    let bodies = sequential_gets(&addr, 1).await;
    assert!(
        bodies[0].starts_with("HTTP/1.1 503") && bodies[0].contains("no healthy target"),
        "{bodies:?}"
    );

    // A target arriving while the request waits (as mid-deploy table swaps do) serves it.
    let waiting = {
        let addr = addr.clone();
        tokio::spawn(async move { sequential_gets(&addr, 1).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    slipway_ingress::client::IngressClient::new(dir.path())
        .push(&config(&[("t", upstream)]))
        .await
        .unwrap();
    let bodies = waiting.await.unwrap();
    assert_eq!(bodies, ["HTTP/1.1 200 ok"]);

    let _ = stop.send(());
    ingress.await.unwrap().unwrap();
}

/// An upstream that accepts connections and reads requests but never answers (as a task on
/// a host cut off the network looks from the ingress).
async fn mute_upstream() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut sink = [0u8; 1024];
                while matches!(c.read(&mut sink).await, Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

fn send(addr: &str, raw: &'static [u8]) -> tokio::task::JoinHandle<String> {
    let addr = addr.to_owned();
    tokio::spawn(async move {
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        c.write_all(raw).await.unwrap();
        let mut out = Vec::new();
        c.read_to_end(&mut out).await.unwrap();
        String::from_utf8_lossy(&out).into_owned()
    })
}

#[tokio::test]
async fn requests_waiting_on_a_target_whose_host_is_out_of_reach_go_elsewhere_when_safe() {
    let mute = mute_upstream().await;
    let good = echo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let (addr, stop_tx, ingress) = start_ingress(
        dir.path(),
        &config(&[("mute", mute)]),
        ProxyOptions::default(),
    )
    .await;
    // The fast path (HTTP/1.1), the hyper path (HTTP/1.0) and a request that is not safe.
    let get = send(
        &addr,
        b"GET /fast HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
    );
    let get10 = send(&addr, b"GET /hyper HTTP/1.0\r\nHost: a.test\r\n\r\n");
    let post = send(
        &addr,
        b"POST /p HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi",
    );
    // Past the retry budget (1 s), and the target only draining: the requests wait on.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let client = slipway_ingress::client::IngressClient::new(dir.path());
    let mut cfg = config(&[("mute", mute), ("alive", good)]);
    cfg.services[0].targets[0].draining = true;
    client.push(&cfg).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for r in [&get, &get10, &post] {
        assert!(
            !r.is_finished(),
            "a draining target's requests finish there"
        );
    }

    // Its host out of reach: safe requests are answered by the other target, others fail.
    cfg.services[0].targets[0].unreachable = true;
    client.push(&cfg).await.unwrap();
    let wait = |h: tokio::task::JoinHandle<String>| async move {
        tokio::time::timeout(Duration::from_secs(10), h)
            .await
            .expect("the request still hangs on the unreachable target")
            .unwrap()
    };
    let get = wait(get).await;
    assert!(get.starts_with("HTTP/1.1 200"), "{get}");
    assert!(get.contains("GET /fast HTTP/1.1"), "{get}");
    let get10 = wait(get10).await;
    assert!(get10.contains(" 200 "), "{get10}");
    assert!(get10.contains("GET /hyper"), "{get10}");
    let post = wait(post).await;
    assert!(post.starts_with("HTTP/1.1 502"), "{post}");

    let _ = stop_tx.send(());
    ingress.await.unwrap().unwrap();
}
