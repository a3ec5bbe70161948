//! Early answers of the ingress itself (413, 404, 400) to a request whose body is still
//! being sent reach the client whole: a client that writes its whole body first, then
//! reads, gets the status, not a connection reset (the lingering close of
//! `slipway_ingress::linger`), on the hyper path and on the fast path.

use std::time::Duration;

use slipway_ingress::ProxyOptions;
use slipway_ingress::table::RoutingConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::fast::framing_upstream;
use crate::retry::{config, start_ingress};

/// The body of each request: larger than the fast path's 1 MiB linger of before.
const BODY: usize = 4 * 1024 * 1024;
/// Requests per case, each on a fresh connection.
const TRIES: usize = 20;
/// The test's own bound on one exchange (a hang is a failure, not a wait).
const BOUND: Duration = Duration::from_secs(30);

/// Writes `head` and `len` body bytes on a fresh connection, all of them, then reads the
/// response head: its status, or where the exchange broke.
async fn send_whole_then_read(addr: &str, head: &str, len: usize) -> Result<u16, String> {
    let exchange = async {
        let mut c = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        c.write_all(head.as_bytes())
            .await
            .map_err(|e| format!("writing the head: {e}"))?;
        let chunk = vec![b'x'; 64 * 1024];
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len());
            c.write_all(&chunk[..n]).await.map_err(|e| {
                format!("writing the body ({} of {len} bytes sent): {e}", len - left)
            })?;
            left -= n;
        }
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match c.read(&mut buf).await {
                Ok(0) => return Err(format!("closed before a whole head ({} bytes)", got.len())),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => return Err(format!("reading the response: {e}")),
            }
        }
        let text = String::from_utf8_lossy(&got).into_owned();
        text.split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("not an HTTP response: {text}"))
    };
    tokio::time::timeout(BOUND, exchange)
        .await
        .unwrap_or_else(|_| Err("no response within the bound".into()))
}

/// [`TRIES`] exchanges; panics unless each one got `want`, with the tally.
async fn all_clean(addr: &str, what: &str, head: &str, want: u16) {
    let mut outcomes = Vec::new();
    for _ in 0..TRIES {
        outcomes.push(send_whole_then_read(addr, head, BODY).await);
    }
    let clean = outcomes.iter().filter(|o| **o == Ok(want)).count();
    assert_eq!(
        clean,
        TRIES,
        "{what}: {clean} of {TRIES} clean {want} responses; the others: {:?}",
        outcomes
            .iter()
            .filter(|o| **o != Ok(want))
            .collect::<Vec<_>>()
    );
}

fn put(host: &str) -> String {
    format!("PUT /upload HTTP/1.1\r\nHost: {host}\r\nContent-Length: {BODY}\r\n\r\n")
}

#[tokio::test]
async fn a_413_for_a_body_over_the_limit_is_read_whole() {
    let (upstream, seen) = framing_upstream(false).await;
    let dir = tempfile::tempdir().unwrap();
    let opts = ProxyOptions {
        max_body: 1024 * 1024,
        ..Default::default()
    };
    let (addr, stop, ingress) = start_ingress(dir.path(), &config(&[("t", upstream)]), opts).await;
    all_clean(&addr, "413 (hyper path)", &put("a.test"), 413).await;
    assert!(seen.requests.lock().unwrap().is_empty());
    let _ = stop.send(());
    ingress.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_404_for_an_unrouted_request_with_a_large_body_is_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let none = RoutingConfig {
        services: Vec::new(),
    };
    let (addr, stop, ingress) = start_ingress(dir.path(), &none, ProxyOptions::default()).await;
    all_clean(&addr, "404 (hyper path)", &put("a.test"), 404).await;
    let _ = stop.send(());
    ingress.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_400_for_a_malformed_head_is_read_whole_on_the_fast_path() {
    let (upstream, seen) = framing_upstream(false).await;
    let dir = tempfile::tempdir().unwrap();
    let (addr, stop, ingress) = start_ingress(
        dir.path(),
        &config(&[("t", upstream)]),
        ProxyOptions::default(),
    )
    .await;
    let bad = format!(
        "PUT /upload HTTP/1.1\r\nHost: a.test\r\nBad Name: x\r\nContent-Length: {BODY}\r\n\r\n"
    );
    all_clean(&addr, "400 (fast path)", &bad, 400).await;
    assert!(seen.requests.lock().unwrap().is_empty());
    let _ = stop.send(());
    ingress.await.unwrap().unwrap();
}
