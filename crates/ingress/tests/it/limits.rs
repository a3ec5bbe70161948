//! The ingress' limits: the global and per-client connection caps (a 503 that names the cap,
//! counted in the metrics), the body's pace on both paths (a body that stops arriving is cut,
//! a trickled one is cut, a slow one that keeps the minimum rate is not) and the idle timeout of kept-alive connections on both paths.

use std::time::Duration;

use slipway_ingress::ProxyOptions;
use slipway_ingress::client::IngressClient;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::fast::{framing_upstream, response, send};
use crate::retry::{config, start_ingress};

/// Everything the ingress sends until it closes the connection (panics if it does not within
/// 10 s).
async fn read_to_close(c: &mut (impl tokio::io::AsyncRead + Unpin)) -> String {
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = [0u8; 4096];
        loop {
            match c.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the connection was not closed within 10 s");
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of one metric line (name with labels) of the ingress in `dir`.
async fn metric(dir: &std::path::Path, line: &str) -> u64 {
    let text = IngressClient::new(dir).metrics().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(line)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {line} in the metrics:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// Opens a connection and has one request answered on it, so it is surely admitted.
async fn served(addr: &str) -> TcpStream {
    let mut c = TcpStream::connect(addr).await.unwrap();
    send(&mut c, "GET /len HTTP/1.1\r\nHost: a.test\r\n\r\n").await;
    let (head, body) = response(&mut c, &mut Vec::new(), false).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, b"hello");
    c
}

#[tokio::test]
async fn connections_beyond_the_global_cap_get_a_503_until_one_closes() {
    let (upstream, _) = framing_upstream(false).await;
    let dir = tempfile::tempdir().unwrap();
    let opts = ProxyOptions {
        max_connections: 4,
        max_connections_per_ip: 100,
        ..Default::default()
    };
    let (addr, stop, ingress) = start_ingress(dir.path(), &config(&[("t", upstream)]), opts).await;
    let mut open = Vec::new();
    for _ in 0..4 {
        open.push(served(&addr).await);
    }
    let mut fifth = TcpStream::connect(&addr).await.unwrap();
    send(&mut fifth, "GET /len HTTP/1.1\r\nHost: a.test\r\n\r\n").await;
    let answer = read_to_close(&mut fifth).await;
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{answer}"
    );
    assert!(answer.contains("Connection: close\r\n"), "{answer}");
    assert!(
        answer.ends_with("(global connection cap hit)\n"),
        "{answer}"
    );
    let refused = r#"slipway_ingress_connections_refused_total{reason="global"}"#;
    assert_eq!(metric(dir.path(), refused).await, 1);
    assert_eq!(
        metric(
            dir.path(),
            r#"slipway_ingress_connections_refused_total{reason="per_client"}"#
        )
        .await,
        0
    );
    assert_eq!(
        metric(dir.path(), "slipway_ingress_connections_open").await,
        4
    );

    // Once one closes (and the ingress has seen it), a new connection is served.
    drop(open.pop());
    for _ in 0..500 {
        if metric(dir.path(), "slipway_ingress_connections_open").await == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    open.push(served(&addr).await);
    assert_eq!(metric(dir.path(), refused).await, 1);

    let _ = stop.send(());
    ingress.await.unwrap().unwrap();
}

#[tokio::test]
async fn connections_beyond_the_per_client_cap_get_a_503() {
    let (upstream, _) = framing_upstream(false).await;
    let dir = tempfile::tempdir().unwrap();
    let opts = ProxyOptions {
        max_connections: 1000,
        max_connections_per_ip: 2,
        ..Default::default()
    };
    let (addr, stop, ingress) = start_ingress(dir.path(), &config(&[("t", upstream)]), opts).await;
    let _a = served(&addr).await;
    let _b = served(&addr).await;
    // Nothing sent: the answer comes anyway.
    let mut third = TcpStream::connect(&addr).await.unwrap();
    let answer = read_to_close(&mut third).await;
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(
        answer.ends_with("(per client connection cap hit)\n"),
        "{answer}"
    );
    assert_eq!(
        metric(
            dir.path(),
            r#"slipway_ingress_connections_refused_total{reason="per_client"}"#
        )
        .await,
        1
    );
    assert_eq!(
        metric(
            dir.path(),
            r#"slipway_ingress_connections_refused_total{reason="global"}"#
        )
        .await,
        0
    );

    let _ = stop.send(());
    ingress.await.unwrap().unwrap();
}

/// A body was cut: the client read a 408 that `says` why, the target never saw the request,
/// and the ingress counted one body timeout.
async fn cut_before_the_target(
    version: &str,
    answer: &str,
    says: &str,
    seen: &crate::fast::Seen,
    dir: &std::path::Path,
) {
    assert!(
        answer.starts_with("HTTP/1.1 408 ") || answer.starts_with("HTTP/1.0 408 "),
        "{version}: {answer}"
    );
    assert!(answer.contains(says), "{version}: {answer}");
    assert!(
        seen.requests.lock().unwrap().is_empty(),
        "{version}: the target saw the request"
    );
    assert_eq!(metric(dir, "slipway_ingress_body_timeouts_total").await, 1);
}

/// `version` `HTTP/1.1` takes the fast path, `HTTP/1.0` the hyper path.
async fn stalled_body_is_cut(version: &str) {
    let (upstream, seen) = framing_upstream(false).await;
    let dir = tempfile::tempdir().unwrap();
    let opts = ProxyOptions {
        body_timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let (addr, stop, ingress) = start_ingress(dir.path(), &config(&[("t", upstream)]), opts).await;
    let mut c = TcpStream::connect(&addr).await.unwrap();
    send(
        &mut c,
        &format!(
            "POST /echo {version}\r\nHost: a.test\r\nContent-Length: 1000\r\n\r\n{}",
            "x".repeat(100)
        ),
    )
    .await;
    let answer = read_to_close(&mut c).await;
    cut_before_the_target(version, &answer, "body timeout", &seen, dir.path()).await;
    let _ = stop.send(());
    ingress.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_cut_on_the_fast_path() {
    stalled_body_is_cut("HTTP/1.1").await;
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_cut_on_the_hyper_path() {
    stalled_body_is_cut("HTTP/1.0").await;
}

/// A body sent 10 bytes every 200 ms (50 bytes/s) for 3 s with a body timeout of 1 s and
/// a minimum rate of 40 bytes/s gets through: it is slow, but it keeps the pace.
async fn slow_steady_body_is_not_cut(version: &str) {
    let (upstream, _) = framing_upstream(false).await;
    let dir = tempfile::tempdir().unwrap();
    let opts = ProxyOptions {
        body_timeout: Duration::from_secs(1),
        body_min_rate: 40,
        ..Default::default()
    };
    let (addr, stop, ingress) = start_ingress(dir.path(), &config(&[("t", upstream)]), opts).await;
    let mut c = TcpStream::connect(&addr).await.unwrap();
    send(
        &mut c,
        &format!("POST /echo {version}\r\nHost: a.test\r\nContent-Length: 150\r\n\r\n"),
    )
    .await;
    for i in 0..15 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        send(&mut c, &format!("{i:0>10}")).await;
    }
    let (head, body) = response(&mut c, &mut Vec::new(), false).await;
    assert!(head[8..].starts_with(" 200 "), "{version}: {head}");
    let expected: String = (0..15).map(|i| format!("{i:0>10}")).collect();
    assert_eq!(String::from_utf8_lossy(&body), expected, "{version}");
    let _ = stop.send(());
    ingress.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_slow_but_steady_body_is_not_cut_on_the_fast_path() {
    slow_steady_body_is_not_cut("HTTP/1.1").await;
}

#[tokio::test]
async fn a_slow_but_steady_body_is_not_cut_on_the_hyper_path() {
    slow_steady_body_is_not_cut("HTTP/1.0").await;
}

/// A body trickled one byte every 500 ms (the slow-POST attack) with a body timeout of 2 s:
/// each gap is shorter than the timeout, so an idle timeout alone would wait for all
/// 100 000 bytes (14 hours); the minimum rate (the default, 500 bytes/s) cuts it once the
/// 2 s of credit are spent: a 408, and the target never saw the request.
async fn trickled_body_is_cut(version: &str) {
    let (upstream, seen) = framing_upstream(false).await;
    let dir = tempfile::tempdir().unwrap();
    let opts = ProxyOptions {
        body_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    assert_eq!(opts.body_min_rate, 500);
    let (addr, stop, ingress) = start_ingress(dir.path(), &config(&[("t", upstream)]), opts).await;
    let c = TcpStream::connect(&addr).await.unwrap();
    let (mut rd, mut wr) = c.into_split();
    use tokio::io::AsyncWriteExt;
    wr.write_all(
        format!("POST /echo {version}\r\nHost: a.test\r\nContent-Length: 100000\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let trickle = tokio::spawn(async move {
        let mut sent = 0u32;
        while wr.write_all(b"x").await.is_ok() && sent < 100_000 {
            sent += 1;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        sent
    });
    let answer = read_to_close(&mut rd).await;
    trickle.abort();
    cut_before_the_target(version, &answer, "too slowly", &seen, dir.path()).await;
    let _ = stop.send(());
    ingress.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_trickled_body_is_cut_on_the_fast_path() {
    trickled_body_is_cut("HTTP/1.1").await;
}

#[tokio::test]
async fn a_trickled_body_is_cut_on_the_hyper_path() {
    trickled_body_is_cut("HTTP/1.0").await;
}

/// Two requests on one kept-alive connection, then nothing: the ingress closes it.
async fn idle_connection_is_closed(version: &str) {
    let (upstream, _) = framing_upstream(false).await;
    let dir = tempfile::tempdir().unwrap();
    let opts = ProxyOptions {
        idle_timeout: Duration::from_secs(1),
        // Far from the idle timeout, so that it is what closes the connection.
        client_header_timeout: Duration::from_secs(60),
        ..Default::default()
    };
    let (addr, stop, ingress) = start_ingress(dir.path(), &config(&[("t", upstream)]), opts).await;
    let mut c = TcpStream::connect(&addr).await.unwrap();
    let mut buf = Vec::new();
    for _ in 0..2 {
        send(
            &mut c,
            &format!("GET /len {version}\r\nHost: a.test\r\nConnection: keep-alive\r\n\r\n"),
        )
        .await;
        let (head, body) = response(&mut c, &mut buf, false).await;
        assert!(head.starts_with("HTTP/1."), "{version}: {head}");
        assert_eq!(body, b"hello", "{version}");
    }
    assert_eq!(read_to_close(&mut c).await, "", "{version}");
    let _ = stop.send(());
    ingress.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_on_the_fast_path() {
    idle_connection_is_closed("HTTP/1.1").await;
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_on_the_hyper_path() {
    idle_connection_is_closed("HTTP/1.0").await;
}

#[tokio::test]
async fn a_streamed_body_that_stops_arriving_is_cut_on_the_hyper_path() {
    // A target that reads and never answers: the client's body is streamed to it.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut sink = [0u8; 4096];
                while matches!(c.read(&mut sink).await, Ok(n) if n > 0) {}
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let opts = ProxyOptions {
        body_timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let (addr, stop, ingress) = start_ingress(dir.path(), &config(&[("t", upstream)]), opts).await;
    let mut c = TcpStream::connect(&addr).await.unwrap();
    // Chunked: the fast path hands it to the hyper path, which streams it.
    send(
        &mut c,
        &format!(
            "POST /up HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n{}\r\n",
            "x".repeat(100)
        ),
    )
    .await;
    let answer = read_to_close(&mut c).await;
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert_eq!(
        metric(dir.path(), "slipway_ingress_body_timeouts_total").await,
        1
    );
    let _ = stop.send(());
    ingress.await.unwrap().unwrap();
}
