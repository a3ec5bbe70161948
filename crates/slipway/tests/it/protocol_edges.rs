//! Protocol edges found by the OCI distribution-spec conformance suite: a request refused
//! early (401, 400, 413) while its body is still being sent gets its status, read whole by
//! a client that writes its whole body first; no connection reset, no broken pipe.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use base64::Engine as _;

use crate::support::*;

/// The body of each request: the size the conformance suite's large pushes have.
const BODY: usize = 4 * 1024 * 1024;
/// Requests per case, each on a fresh connection.
const TRIES: usize = 20;
/// The test's own bound on any read or write (a hang is a failure, not a wait).
const BOUND: Duration = Duration::from_secs(30);

fn port(s: &Server) -> u16 {
    s.url.rsplit(':').next().unwrap().parse().unwrap()
}

/// Sends `head` (ending in `\r\n\r\n`) and a body of `len` bytes on a fresh connection, all
/// of it, then reads the response's status line and head. `Err` says where it broke
/// (a reset while writing, a reset or close before the head was read, ...).
fn send_whole_then_read(port: u16, head: &str, len: usize) -> Result<u16, String> {
    let mut c = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    c.set_read_timeout(Some(BOUND)).unwrap();
    c.set_write_timeout(Some(BOUND)).unwrap();
    c.write_all(head.as_bytes())
        .map_err(|e| format!("writing the head: {e}"))?;
    let chunk = vec![b'x'; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len());
        c.write_all(&chunk[..n])
            .map_err(|e| format!("writing the body ({} of {len} bytes sent): {e}", len - left))?;
        left -= n;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match c.read(&mut buf) {
            Ok(0) => return Err(format!("closed before a whole head ({} bytes)", got.len())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err("no response within the bound".into());
            }
            Err(e) => return Err(format!("reading the response: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&got);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {text}"))
}

/// Runs [`TRIES`] requests with `head`; panics unless every one got `want`, with the tally.
fn all_clean(port: u16, what: &str, head: &str, len: usize, want: u16) {
    let outcomes: Vec<Result<u16, String>> = (0..TRIES)
        .map(|_| send_whole_then_read(port, head, len))
        .collect();
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

/// A 4 MB PUT without credentials, 20 times on fresh connections: 20 clean 401s; the same
/// for a monolithic upload to a bad repository name (400) and for a manifest over the
/// registry's limit (413, with credentials).
#[test]
fn early_refusals_of_large_bodies_are_read_whole_by_the_client() {
    if !docker() {
        return;
    }
    let s = Server::start();
    let port = port(&s);
    let digest = format!("sha256:{}", "0".repeat(64));
    let unauthenticated = format!(
        "PUT /v2/team/app/blobs/uploads/{}?digest={digest} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\nContent-Length: {BODY}\r\n\r\n",
        "a".repeat(32)
    );
    all_clean(port, "PUT without credentials", &unauthenticated, BODY, 401);

    let bad_name = format!(
        "POST /v2/Team/App/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\nContent-Length: {BODY}\r\n\r\n"
    );
    all_clean(
        port,
        "monolithic upload to a bad name",
        &bad_name,
        BODY,
        400,
    );

    let password = s
        .cli(&["registry", "password"])
        .ok()
        .stdout
        .trim()
        .to_owned();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("ci:{password}"));
    let too_big = format!(
        "PUT /v2/team/app/manifests/v1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic {basic}\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {}\r\n\r\n",
        BODY + 1
    );
    all_clean(port, "manifest over the limit", &too_big, BODY + 1, 413);
}
