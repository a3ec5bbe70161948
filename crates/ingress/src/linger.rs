//! The lingering close (RFC 9112 §9.6) of client connections whose client may still be
//! sending: a request answered early (401, 400, 413, 503, ...) before its body was read.
//!
//! Closing a socket with unread bytes in it makes the kernel send a reset, and a reset can
//! reach the client before it has read the answer (it sees a broken pipe or a reset
//! instead). So such a connection is closed in steps: its write side first (the answer is
//! out, the client sees the end of it), then what the client still sends is read and
//! dropped until it closes its side, for at most [`LINGER_TIME`] and [`LINGER_BYTES`].
//!
//! This module owns those bounds, [`linger`] and [`Reclaim`] (which gets an I/O object back
//! from hyper, which drops it when a connection ends). Used by the ingress' two paths and by
//! the server's API/registry listeners.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::oneshot;

/// The longest a closing connection reads what its client still sends.
pub const LINGER_TIME: Duration = Duration::from_secs(5);
/// The most bytes a closing connection reads (and drops) before it closes anyway.
pub const LINGER_BYTES: u64 = 16 << 20;

/// Shuts down the write side of `io`, then reads and drops what comes until the client
/// closes, an error, [`LINGER_TIME`] or [`LINGER_BYTES`], whichever comes first. Returns
/// the bytes dropped.
pub async fn linger<I: AsyncRead + AsyncWrite + Unpin>(mut io: I) -> u64 {
    let deadline = tokio::time::Instant::now() + LINGER_TIME;
    if tokio::time::timeout_at(deadline, io.shutdown())
        .await
        .is_err()
    {
        return 0;
    }
    let mut sink = vec![0u8; 64 * 1024];
    let mut dropped = 0u64;
    while dropped < LINGER_BYTES {
        match tokio::time::timeout_at(deadline, io.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => dropped += n as u64,
            _ => break,
        }
    }
    dropped
}

/// An I/O object that hands itself back to its [`Reclaimed`] when dropped, so that the
/// connection that owned it (hyper's) can be closed with [`linger`] after it ended.
pub struct Reclaim<I> {
    io: Option<I>,
    back: Option<oneshot::Sender<I>>,
}

/// Where a dropped [`Reclaim`]'s I/O object comes back.
pub struct Reclaimed<I>(oneshot::Receiver<I>);

impl<I> Reclaim<I> {
    pub fn new(io: I) -> (Self, Reclaimed<I>) {
        let (tx, rx) = oneshot::channel();
        (
            Reclaim {
                io: Some(io),
                back: Some(tx),
            },
            Reclaimed(rx),
        )
    }

    fn io(&mut self) -> &mut I {
        self.io.as_mut().expect("present until dropped")
    }
}

impl<I> Reclaimed<I> {
    /// The I/O object, if its [`Reclaim`] was dropped (not when it still lives, e.g. in
    /// an upgraded connection).
    pub fn take(mut self) -> Option<I> {
        self.0.try_recv().ok()
    }
}

impl<I> Drop for Reclaim<I> {
    fn drop(&mut self) {
        if let (Some(io), Some(back)) = (self.io.take(), self.back.take()) {
            // Nobody waiting: the I/O object is simply dropped (closed).
            let _ = back.send(io);
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Reclaim<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(self.io()).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Reclaim<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(self.io()).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(self.io()).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(|io| io.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(self.io()).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(self.io()).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_dropped_reclaim_comes_back_and_a_living_one_does_not() {
        let (a, _peer) = tokio::io::duplex(64);
        let (r, back) = Reclaim::new(a);
        drop(r);
        assert!(back.take().is_some());
        let (b, _peer) = tokio::io::duplex(64);
        let (r, back) = Reclaim::new(b);
        assert!(back.take().is_none());
        drop(r);
    }

    #[tokio::test]
    async fn linger_reads_until_the_peer_closes() {
        let (a, mut peer) = tokio::io::duplex(1024);
        let sender = tokio::spawn(async move {
            peer.write_all(&[7u8; 100_000]).await.unwrap();
            // The write side of `a` was shut down: the peer reads the end.
            let mut rest = Vec::new();
            peer.read_to_end(&mut rest).await.unwrap();
            rest.len()
        });
        assert_eq!(linger(a).await, 100_000);
        assert_eq!(sender.await.unwrap(), 0);
    }
}
