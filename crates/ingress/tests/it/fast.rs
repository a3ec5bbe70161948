//! The HTTP/1.1 fast path against a hand-written upstream: every response framing on one
//! keep-alive connection and one upstream connection, the forwarded request as the target
//! sees it, a hand-off to the hyper path in the middle of a connection, and a POST that finds
//! its pooled connection closed by the target.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use slipway_ingress::ProxyOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::retry::{config, start_ingress};

/// What the upstream saw: connections accepted and each request (head and body) as text.
#[derive(Default)]
pub(crate) struct Seen {
    accepted: AtomicUsize,
    pub(crate) requests: Mutex<Vec<String>>,
}

/// An upstream that answers by path with each kind of response framing. With `close_after_one`
/// it closes every connection after its first answer without saying so.
pub(crate) async fn framing_upstream(close_after_one: bool) -> (std::net::SocketAddr, Arc<Seen>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            s.accepted.fetch_add(1, Ordering::SeqCst);
            let s = s.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match c.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    while buf.len() < end + 4 + len {
                        match c.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body = buf[end + 4..end + 4 + len].to_vec();
                    buf.drain(..end + 4 + len);
                    s.requests
                        .lock()
                        .unwrap()
                        .push(format!("{head}\r\n\r\n{}", String::from_utf8_lossy(&body)));
                    let line = head.lines().next().unwrap_or("").to_owned();
                    let head_only = line.starts_with("HEAD ");
                    let target = line.split(' ').nth(1).unwrap_or("");
                    let path = target.split('?').next().unwrap_or("").to_owned();
                    let close = match path.as_str() {
                        "/len" if head_only => {
                            c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n").await.is_err()
                        }
                        "/len" => c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello").await.is_err(),
                        "/chunked" => {
                            // In two writes, apart, so the end is found across reads.
                            let a = c.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel").await;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            let b = c.write_all(b"lo\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n").await;
                            a.is_err() || b.is_err()
                        }
                        "/empty" => c.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await.is_err(),
                        "/big" => {
                            let mut r = b"HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\n".to_vec();
                            r.extend(std::iter::repeat_n(b'x', 300_000));
                            c.write_all(&r).await.is_err()
                        }
                        "/interim" => c
                            .write_all(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                            .await
                            .is_err(),
                        "/echo" => {
                            let r = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                            c.write_all(r.as_bytes()).await.is_err() || c.write_all(&body).await.is_err()
                        }
                        "/close" => {
                            let _ = c.write_all(b"HTTP/1.1 200 OK\r\n\r\nuntil the end").await;
                            true
                        }
                        _ => c.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n").await.is_err(),
                    };
                    if close || close_after_one {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// One response: the head as sent, and the body (chunked bodies decoded, trailers dropped).
pub(crate) async fn response(
    c: &mut TcpStream,
    buf: &mut Vec<u8>,
    head_request: bool,
) -> (String, Vec<u8>) {
    let mut chunk = [0u8; 16 * 1024];
    let mut fill = async |c: &mut TcpStream, buf: &mut Vec<u8>| -> bool {
        let n = tokio::time::timeout(Duration::from_secs(30), c.read(&mut chunk))
            .await
            .expect("no response within 30 s")
            .unwrap();
        buf.extend_from_slice(&chunk[..n]);
        n > 0
    };
    let end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        assert!(fill(c, buf).await, "closed before a response head");
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end + 4);
    let lower = head.to_ascii_lowercase();
    let status: u16 = head[9..12].parse().unwrap();
    let mut body = Vec::new();
    if head_request || status == 204 || status == 304 {
    } else if let Some(len) = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
    {
        let len: usize = len.trim().parse().unwrap();
        while buf.len() < len {
            assert!(fill(c, buf).await, "closed inside a body");
        }
        body = buf.drain(..len).collect();
    } else if lower.contains("transfer-encoding: chunked") {
        loop {
            let line_end = loop {
                if let Some(p) = buf.windows(2).position(|w| w == b"\r\n") {
                    break p;
                }
                assert!(fill(c, buf).await, "closed inside a chunk size");
            };
            let size = usize::from_str_radix(String::from_utf8_lossy(&buf[..line_end]).trim(), 16)
                .unwrap();
            buf.drain(..line_end + 2);
            if size == 0 {
                // Trailer lines, then an empty line.
                loop {
                    let p = loop {
                        if let Some(p) = buf.windows(2).position(|w| w == b"\r\n") {
                            break p;
                        }
                        assert!(fill(c, buf).await, "closed inside the trailers");
                    };
                    buf.drain(..p + 2);
                    if p == 0 {
                        break;
                    }
                }
                break;
            }
            while buf.len() < size + 2 {
                assert!(fill(c, buf).await, "closed inside a chunk");
            }
            body.extend(buf.drain(..size));
            buf.drain(..2);
        }
    } else {
        while fill(c, buf).await {}
        body = std::mem::take(buf);
    }
    (head, body)
}

pub(crate) async fn send(c: &mut TcpStream, raw: &str) {
    c.write_all(raw.as_bytes()).await.unwrap();
}

#[tokio::test]
async fn every_response_framing_is_relayed_on_one_connection_each_side() {
    let (upstream, seen) = framing_upstream(false).await;
    let dir = tempfile::tempdir().unwrap();
    let (addr, stop, ingress) = start_ingress(
        dir.path(),
        &config(&[("t", upstream)]),
        ProxyOptions::default(),
    )
    .await;
    let mut c = TcpStream::connect(&addr).await.unwrap();
    let mut buf = Vec::new();
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: a.test\r\n\r\n");

    send(&mut c, &get("/len")).await;
    let (head, body) = response(&mut c, &mut buf, false).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(body, b"hello");

    send(&mut c, &get("/chunked")).await;
    let (head, body) = response(&mut c, &mut buf, false).await;
    assert!(head.contains("Transfer-Encoding: chunked"), "{head}");
    assert_eq!(body, b"hello world");

    send(&mut c, "HEAD /len HTTP/1.1\r\nHost: a.test\r\n\r\n").await;
    let (head, body) = response(&mut c, &mut buf, true).await;
    assert!(head.contains("Content-Length: 5"), "{head}");
    assert!(body.is_empty());

    send(&mut c, &get("/empty")).await;
    let (head, _) = response(&mut c, &mut buf, false).await;
    assert!(head.starts_with("HTTP/1.1 204"), "{head}");

    send(&mut c, &get("/big")).await;
    let (_, body) = response(&mut c, &mut buf, false).await;
    assert_eq!(body.len(), 300_000);
    assert!(body.iter().all(|&b| b == b'x'));

    // An informational response is not passed on; the final one is.
    send(&mut c, &get("/interim")).await;
    let (head, body) = response(&mut c, &mut buf, false).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, b"ok");

    // Pipelined: two requests in one write, answered in order.
    send(&mut c, &format!("{}{}", get("/len"), get("/empty"))).await;
    assert_eq!(response(&mut c, &mut buf, false).await.1, b"hello");
    assert!(
        response(&mut c, &mut buf, false)
            .await
            .0
            .starts_with("HTTP/1.1 204")
    );

    send(
        &mut c,
        "POST /echo?x=1 HTTP/1.1\r\nHost: a.test:8080\r\nConnection: keep-alive, X-Private\r\nX-Private: p\r\nX-Forwarded-For: 10.1.1.1\r\nContent-Length: 3\r\n\r\nabc",
    )
    .await;
    let (_, body) = response(&mut c, &mut buf, false).await;
    assert_eq!(body, b"abc");
    let forwarded = seen.requests.lock().unwrap().last().cloned().unwrap();
    let lower = forwarded.to_ascii_lowercase();
    assert!(
        forwarded.starts_with("POST /echo?x=1 HTTP/1.1\r\nHost: a.test:8080\r\n"),
        "{forwarded}"
    );
    assert!(
        lower.contains("x-forwarded-for: 10.1.1.1, 127.0.0.1\r\n"),
        "{forwarded}"
    );
    assert!(lower.contains("x-forwarded-proto: http\r\n"), "{forwarded}");
    assert!(
        lower.contains("x-forwarded-host: a.test\r\n"),
        "{forwarded}"
    );
    assert!(lower.contains("x-request-id: "), "{forwarded}");
    assert!(
        !lower.contains("x-private") && !lower.contains("connection:"),
        "{forwarded}"
    );
    assert!(forwarded.ends_with("\r\n\r\nabc"), "{forwarded}");

    assert_eq!(
        seen.accepted.load(Ordering::SeqCst),
        1,
        "every request so far should have shared one upstream connection"
    );

    // A body that ends with its connection: the client's connection ends with it.
    send(&mut c, &get("/close")).await;
    let (head, body) = response(&mut c, &mut buf, false).await;
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    assert_eq!(body, b"until the end");

    let _ = stop.send(());
    ingress.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_request_the_fast_path_does_not_take_is_handed_to_the_hyper_path() {
    let (upstream, _) = framing_upstream(false).await;
    let dir = tempfile::tempdir().unwrap();
    let (addr, stop, ingress) = start_ingress(
        dir.path(),
        &config(&[("t", upstream)]),
        ProxyOptions::default(),
    )
    .await;
    let mut c = TcpStream::connect(&addr).await.unwrap();
    let mut buf = Vec::new();
    send(&mut c, "GET /len HTTP/1.1\r\nHost: a.test\r\n\r\n").await;
    let (head, body) = response(&mut c, &mut buf, false).await;
    assert_eq!(body, b"hello");
    // The fast path passes header names on as the target wrote them.
    assert!(head.contains("Content-Length: 5"), "{head}");

    // HTTP/1.0 goes to hyper, which writes header names in lower case.
    send(&mut c, "GET /len HTTP/1.0\r\nHost: a.test\r\n\r\n").await;
    let (head, body) = response(&mut c, &mut buf, false).await;
    assert_eq!(body, b"hello");
    assert!(head.contains("content-length: 5"), "{head}");

    let _ = stop.send(());
    ingress.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_post_never_goes_out_on_a_connection_the_target_closed() {
    let (upstream, seen) = framing_upstream(true).await;
    let dir = tempfile::tempdir().unwrap();
    let (addr, stop, ingress) = start_ingress(
        dir.path(),
        &config(&[("t", upstream)]),
        ProxyOptions::default(),
    )
    .await;
    let mut c = TcpStream::connect(&addr).await.unwrap();
    let mut buf = Vec::new();
    for i in 0..5 {
        let body = format!("post {i}");
        send(
            &mut c,
            &format!(
                "POST /echo HTTP/1.1\r\nHost: a.test\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        )
        .await;
        let (head, got) = response(&mut c, &mut buf, false).await;
        assert!(head.starts_with("HTTP/1.1 200"), "request {i}: {head}");
        assert_eq!(got, body.as_bytes());
        // The target's close reaches the ingress before the next request does.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 5);
    assert_eq!(
        seen.requests.lock().unwrap().len(),
        5,
        "each POST went out once"
    );
    let _ = stop.send(());
    ingress.await.unwrap().unwrap();
}
