//! The ingress run in this process against upstreams on loopback: one test binary for the
//! crate.

mod edges;
mod fast;
mod limits;
mod retry;
mod tls;
mod versions;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Answers each connection's first request with its head as the body.
pub async fn echo_upstream() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    head.len()
                );
                let _ = c.write_all(reply.as_bytes()).await;
                let _ = c.write_all(&head).await;
            });
        }
    });
    addr
}

/// Reads an address file the ingress writes once it listens.
pub async fn wait_for_addr(path: &std::path::Path) -> String {
    for _ in 0..500 {
        if let Ok(a) = std::fs::read_to_string(path)
            && a.ends_with('\n')
        {
            return a.trim().to_owned();
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!(
        "the ingress did not start: {} never appeared",
        path.display()
    );
}
