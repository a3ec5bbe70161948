//! Upgraded connections (WebSocket and the like): the relay, and the clean close frame a
//! client gets when its target drains.

use super::*;

/// The protocol a request asks to upgrade to (`Connection: upgrade` + `Upgrade: X`).
pub(super) fn requested_upgrade(h: &HeaderMap) -> Option<HeaderValue> {
    let conn = h.get(header::CONNECTION)?.to_str().ok()?;
    if !conn
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
    {
        return None;
    }
    h.get(header::UPGRADE).cloned()
}

/// A WebSocket close frame (server to client, unmasked) with status 1001 "going away".
const CLOSE_GOING_AWAY: [u8; 4] = [0x88, 0x02, 0x03, 0xE9];

/// Relays an upgraded connection. Client-to-target bytes are copied as they come; in the other
/// direction frame boundaries are tracked, so when the target starts draining the client gets
/// a clean close frame (1001) between two frames rather than a cut connection.
pub(super) async fn tunnel<C, U>(
    client: C,
    upstream: U,
    mut drain: tokio::sync::watch::Receiver<bool>,
) where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    U: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut ur, mut uw) = tokio::io::split(upstream);
    let up = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut cr, &mut uw).await;
        let _ = uw.shutdown().await;
    });
    let mut buf = vec![0u8; 16 * 1024];
    let mut frames = FrameCursor::default();
    let mut draining = *drain.borrow();
    loop {
        if draining && frames.at_boundary() {
            let _ = cw.write_all(&CLOSE_GOING_AWAY).await;
            break;
        }
        tokio::select! {
            n = ur.read(&mut buf) => {
                let n = match n { Ok(0) | Err(_) => break, Ok(n) => n };
                let keep = frames.advance(&buf[..n], draining);
                if cw.write_all(&buf[..keep]).await.is_err() {
                    break;
                }
            }
            changed = drain.changed(), if !draining => {
                draining = changed.is_err() || *drain.borrow();
            }
        }
    }
    let _ = cw.shutdown().await;
    up.abort();
}

/// Tracks WebSocket frame boundaries in a byte stream (RFC 6455 §5.2).
#[derive(Debug, Default)]
struct FrameCursor {
    /// Bytes of the current frame still to come (0 at a boundary once the header is done).
    pending: u64,
    header: Vec<u8>,
}

impl FrameCursor {
    fn at_boundary(&self) -> bool {
        self.pending == 0 && self.header.is_empty()
    }

    /// Consumes `data`; returns how many leading bytes to forward. When `stop_at_boundary`,
    /// forwarding stops at the first frame boundary.
    fn advance(&mut self, data: &[u8], stop_at_boundary: bool) -> usize {
        let mut i = 0;
        while i < data.len() {
            if self.pending > 0 {
                let take = (self.pending.min((data.len() - i) as u64)) as usize;
                self.pending -= take as u64;
                i += take;
                continue;
            }
            if stop_at_boundary && self.header.is_empty() {
                return i;
            }
            self.header.push(data[i]);
            i += 1;
            if let Some((header_len, payload)) = Self::parse(&self.header)
                && self.header.len() == header_len
            {
                self.header.clear();
                self.pending = payload;
            }
        }
        data.len()
    }

    /// (header length, payload length) once enough of the header is known.
    fn parse(h: &[u8]) -> Option<(usize, u64)> {
        if h.len() < 2 {
            return None;
        }
        let masked = h[1] & 0x80 != 0;
        let (ext, len) = match h[1] & 0x7f {
            126 => (
                2,
                h.get(2..4)
                    .map(|b| u64::from(u16::from_be_bytes([b[0], b[1]]))),
            ),
            127 => (
                8,
                h.get(2..10)
                    .map(|b| u64::from_be_bytes(b.try_into().unwrap_or([0; 8]))),
            ),
            n => (0, Some(u64::from(n))),
        };
        let header_len = 2 + ext + if masked { 4 } else { 0 };
        Some((header_len, len?))
    }
}

#[cfg(test)]
mod tests {
    use super::FrameCursor;

    #[test]
    fn frame_cursor_finds_boundaries_across_reads() {
        // Two frames: "hi" (short) and 300 bytes (16-bit length).
        let mut stream = vec![0x81, 0x02, b'h', b'i', 0x82, 126, 0x01, 0x2c];
        stream.extend(std::iter::repeat_n(7u8, 300));
        let mut c = FrameCursor::default();
        assert_eq!(c.advance(&stream[..3], false), 3);
        assert!(!c.at_boundary());
        assert_eq!(c.advance(&stream[3..6], false), 3);
        assert!(!c.at_boundary());
        // Draining: forward up to the end of the second frame, then stop.
        let rest = &stream[6..];
        let mut tail = rest.to_vec();
        tail.extend([0x81, 0x01, b'x']);
        assert_eq!(c.advance(&tail, true), rest.len());
        assert!(c.at_boundary());
    }
}
