//! Fewer wake-ups for bulk uploads on the API's connections: an adaptive receive low-water
//! mark.
//!
//! `docker push` streams each layer as one chunked PATCH that the engine writes a few KiB at a
//! time, and a server that reads whenever data arrives is woken for every one of those writes:
//! about 28 000 wake-ups for a 200 MB push, on a machine whose two cores are busy compressing
//! the layers (bench/README.md). [`LowatStream`] wraps an accepted connection. Once it has
//! read [`BULK`] bytes since it last wrote (a large request body, never a small request), it
//! sets the socket's `SO_RCVLOWAT` to [`LOWAT`], and the kernel wakes the reader only when
//! that much has arrived. Two rules keep latency where it was:
//! - when a read has waited [`TAIL`] with the mark raised, the mark goes back to one byte, and
//!   the kernel then signals the bytes already there: the end of a body, or a slow sender, is
//!   read at most [`TAIL`] late;
//! - every write (a response, a `100 Continue`) puts the mark back to one byte first, so the
//!   next request on the connection is read as soon as it arrives.
//!
//! The first rule relies on the kernel signalling readability when the mark is lowered over
//! bytes already queued, as current Linux kernels do; [`kernel_signals_lowered_mark`] checks
//! that once at start-up, and where it does not hold the mark is never raised.
//!
//! Owns: the receive low-water mark of the API's accepted TCP connections. Calls: the
//! kernel's `setsockopt`, tokio's timer. Used by `server.rs` and `tls.rs`.

use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Bytes read since the last write after which a connection counts as a bulk upload.
pub const BULK: u64 = 1 << 20;
/// The low-water mark of a bulk upload: one wake-up per this many bytes.
pub const LOWAT: usize = 256 << 10;
/// The longest a read waits with the mark raised before it takes what has arrived.
pub const TAIL: Duration = Duration::from_millis(5);

/// Sets `SO_RCVLOWAT` of `fd`.
#[allow(unsafe_code)]
fn set_rcvlowat(fd: RawFd, bytes: usize) -> std::io::Result<()> {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: no safe wrapper exists for this option (neither std, socket2 nor rustix has
    // one). `fd` is the descriptor of a socket the caller owns for the whole call, and the
    // option value points to a live `c_int` whose size is passed with it; setsockopt reads
    // that many bytes and keeps no pointer.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&raw const v).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// An accepted TCP connection with the adaptive low-water mark (see the module docs).
pub struct LowatStream {
    inner: TcpStream,
    /// `inner`'s descriptor (valid as long as `inner`).
    fd: RawFd,
    /// The mark used for bulk reads; 0 turns the mechanism off.
    lowat: usize,
    /// Bytes read since the last write.
    burst: u64,
    /// Whether the mark is raised now.
    raised: bool,
    /// Runs while a read waits with the mark raised.
    tail: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl LowatStream {
    /// Wraps `inner`; `enabled` is false where the kernel does not support the mechanism.
    pub fn new(inner: TcpStream, enabled: bool) -> Self {
        let fd = inner.as_raw_fd();
        LowatStream {
            inner,
            fd,
            lowat: if enabled { LOWAT } else { 0 },
            burst: 0,
            raised: false,
            tail: None,
        }
    }

    /// Whether the low-water mark is raised now.
    #[cfg(test)]
    fn raised(&self) -> bool {
        self.raised
    }

    fn lower(&mut self) {
        self.tail = None;
        if self.raised {
            self.raised = false;
            if let Err(e) = set_rcvlowat(self.fd, 1) {
                // Cannot happen on a valid TCP socket; never raise it again.
                tracing::warn!(error = %e, "cannot lower SO_RCVLOWAT; bulk reads stay unbatched");
                self.lowat = 0;
            }
        }
    }

    /// A write starts (or continues) a response: the next request is read as soon as it
    /// arrives.
    fn writing(&mut self) {
        self.burst = 0;
        self.lower();
    }
}

impl AsyncRead for LowatStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let n = (buf.filled().len() - before) as u64;
                this.tail = None;
                this.burst += n;
                if n > 0 && !this.raised && this.lowat > 1 && this.burst >= BULK {
                    match set_rcvlowat(this.fd, this.lowat) {
                        Ok(()) => this.raised = true,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot raise SO_RCVLOWAT; bulk reads stay unbatched");
                            this.lowat = 0;
                        }
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                if this.raised {
                    let tail = this
                        .tail
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(TAIL)));
                    if tail.as_mut().poll(cx).is_ready() {
                        // The kernel signals what is already there, which wakes this task
                        // through the read registered above.
                        this.lower();
                    }
                }
                Poll::Pending
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for LowatStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.writing();
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.writing();
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Whether lowering `SO_RCVLOWAT` makes the kernel signal bytes that are already waiting,
/// which [`LowatStream`] needs to read the end of a body. Tried once on a loopback
/// connection: raise the mark, send a few bytes, see them arrive, lower the mark, and expect
/// the socket to turn readable. (A kernel that signals the bytes on arrival, ignoring the
/// mark, passes too: there the mark changes nothing.)
pub async fn kernel_signals_lowered_mark() -> bool {
    match try_lowered_mark().await {
        Ok(ok) => ok,
        Err(e) => {
            tracing::debug!(error = %e, "the SO_RCVLOWAT check failed");
            false
        }
    }
}

async fn try_lowered_mark() -> std::io::Result<bool> {
    use tokio::io::AsyncWriteExt;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let mut client = TcpStream::connect(listener.local_addr()?).await?;
    let (server, _) = listener.accept().await?;
    set_rcvlowat(server.as_raw_fd(), 1 << 16)?;
    // A read that finds nothing clears tokio's cached readiness, so that only a signal from
    // the kernel can make the socket readable again.
    let mut nothing = [0u8; 16];
    match server.try_read(&mut nothing) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => return Err(std::io::Error::other(format!("unexpected read: {other:?}"))),
    }
    client.write_all(b"0123456789").await?;
    // Wait (bounded) until the bytes are in the server's receive queue; a non-blocking peek
    // returns them whatever the mark.
    let sock = socket2::SockRef::from(&server);
    let mut seen = false;
    for _ in 0..200 {
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 16];
        match sock.peek(&mut buf) {
            Ok(10) => {
                seen = true;
                break;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if !seen {
        return Ok(false);
    }
    set_rcvlowat(server.as_raw_fd(), 1)?;
    Ok(
        tokio::time::timeout(Duration::from_secs(1), server.readable())
            .await
            .is_ok_and(|r| r.is_ok()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair(enabled: bool) -> (TcpStream, LowatStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, LowatStream::new(server, enabled))
    }

    /// Reads exactly `n` bytes, failing after a generous bound instead of hanging.
    async fn read_n(s: &mut LowatStream, n: usize) -> Vec<u8> {
        let mut got = vec![0u8; n];
        tokio::time::timeout(Duration::from_secs(20), s.read_exact(&mut got))
            .await
            .expect("the bytes arrive")
            .unwrap();
        got
    }

    #[tokio::test]
    async fn this_kernel_signals_a_lowered_mark() {
        assert!(kernel_signals_lowered_mark().await);
    }

    #[tokio::test]
    async fn a_bulk_body_raises_the_mark_and_its_short_tail_still_arrives() {
        let (mut client, mut server) = pair(true).await;
        let body: Vec<u8> = (0..(2 * BULK as usize + 100)).map(|i| i as u8).collect();
        let (head, tail) = body.split_at(2 * BULK as usize);
        let (head, tail) = (head.to_vec(), tail.to_vec());
        let (drained_tx, drained_rx) = tokio::sync::oneshot::channel::<()>();
        // The client writes the body in small pieces; once the server has read all of them
        // (its next read waits with the mark raised), the last 100 bytes, far fewer than the
        // mark; then it waits for the answer without sending or closing anything.
        let writer = tokio::spawn(async move {
            for piece in head.chunks(16 << 10) {
                client.write_all(piece).await.unwrap();
            }
            drained_rx.await.unwrap();
            client.write_all(&tail).await.unwrap();
            let mut answer = [0u8; 2];
            client.read_exact(&mut answer).await.unwrap();
            answer
        });
        let first = read_n(&mut server, 2 * BULK as usize).await;
        assert!(server.raised(), "a body past BULK bytes raises the mark");
        drained_tx.send(()).unwrap();
        let rest = read_n(&mut server, 100).await;
        assert_eq!([first, rest].concat(), body);
        server.write_all(b"ok").await.unwrap();
        assert!(!server.raised(), "a write lowers the mark");
        assert_eq!(&writer.await.unwrap(), b"ok");
    }

    #[tokio::test]
    async fn small_requests_never_raise_the_mark_and_writes_reset_the_count() {
        let (mut client, mut server) = pair(true).await;
        // Many small requests, each answered: together far more than BULK bytes, but never
        // BULK bytes between two writes.
        let request = vec![7u8; 64 << 10];
        for _ in 0..(2 * BULK as usize / request.len()) {
            client.write_all(&request).await.unwrap();
            assert_eq!(read_n(&mut server, request.len()).await, request);
            assert!(!server.raised());
            server.write_all(b"k").await.unwrap();
            let mut k = [0u8; 1];
            client.read_exact(&mut k).await.unwrap();
        }
    }

    #[tokio::test]
    async fn disabled_the_mark_is_never_raised() {
        let (mut client, mut server) = pair(false).await;
        let body = vec![1u8; 2 * BULK as usize];
        let sent = body.clone();
        let writer = tokio::spawn(async move { client.write_all(&sent).await.unwrap() });
        assert_eq!(read_n(&mut server, body.len()).await, body);
        assert!(!server.raised());
        writer.await.unwrap();
    }
}
