//! Reading: the read buffer's room (grown by what has arrived, never by a
//! declared length), the read itself, and lending idle buffers to the
//! thread's pool.

use super::WebSocket;
use crate::pool;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite};

/// Growth step of the read buffer while a large frame arrives.
const READ_CHUNK: usize = 64 * 1024;

/// How much room to make in a read buffer holding `len` bytes with `spare`
/// free, when `missing` more complete the frame being read (0 if unknown);
/// `None` to read into the space there is.
///
/// Growth is geometric (a shared `BytesMut` would otherwise grow by exactly
/// the request, copying a large frame over and over) and driven by what has
/// actually arrived, never by a declared length. Once a large frame is well
/// under way and its rest is within twice what has arrived, the room made is
/// exactly that rest, so the frame ends in a buffer of its own size after
/// fewer copies (for 1 MiB from 32 KiB: 0.7 frames copied instead of 1.4,
/// and 1 MiB of room instead of 1.5).
/// Either way the buffer holds at most three times what has arrived, or
/// what has arrived plus [`READ_CHUNK`].
fn read_growth(len: usize, spare: usize, missing: usize) -> Option<usize> {
    if missing > spare && len >= READ_CHUNK && missing <= 2 * len {
        Some(missing)
    } else if spare < 4096 {
        Some(READ_CHUNK.max(len))
    } else {
        None
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Read more bytes into the connection. Ready(Ok(0)) is end of file.
    pub(super) fn poll_read_more(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let missing = self.conn.frame_bytes_missing();
        let buf = self.conn.read_buf();
        if buf.capacity() == 0 {
            // Idle connections hold no buffer; borrow a warm one.
            *buf = pool::take();
        } else {
            pool::reclaim_emptied(buf);
            let spare = buf.capacity() - buf.len();
            if let Some(n) = read_growth(buf.len(), spare, missing) {
                // A large frame under way: a buffer kept from an earlier
                // one saves growing this one (copying it) step by step.
                let frame_end = buf.len() + missing;
                if missing <= spare || !pool::grow_into_large(buf, frame_end) {
                    buf.reserve(n);
                }
            }
        }
        // Bytes read count as the peer's sign of life (a flag, no clock).
        let io = &mut self.io;
        self.conn
            .read_into(|buf| tokio_util::io::poll_read_buf(Pin::new(io), cx, buf))
    }

    /// Nothing buffered either way: lend the buffers to the thread's pool
    /// until bytes move again (see [`pool`]).
    pub(super) fn recycle_buffers(&mut self) {
        let (read, out) = self.conn.take_idle_buffers();
        pool::give(read);
        pool::give(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Read one `frame`-byte frame into a buffer that starts with `start`
    /// bytes of room, each read filling all the room there is (up to the
    /// frame's end). Returns the bytes copied by growth (every growth is a
    /// reallocation that copies what has arrived) and the final room.
    fn read_frame(frame: usize, start: usize) -> (usize, usize) {
        let (mut len, mut cap, mut copied) = (0, start, 0);
        while len < frame {
            if let Some(n) = read_growth(len, cap - len, frame - len) {
                if len + n > cap {
                    copied += len;
                    cap = len + n;
                }
                assert!(
                    cap <= (3 * len).max(len + READ_CHUNK),
                    "{cap} bytes of room with {len} arrived"
                );
            }
            len = cap.min(frame);
        }
        (copied, cap)
    }

    #[test]
    fn a_large_frame_ends_in_a_buffer_of_exactly_its_size() {
        for frame in [(1 << 20) + 14, (1 << 20) + 10, 300_000, (16 << 20) + 14] {
            let (copied, cap) = read_frame(frame, 32 << 10);
            assert_eq!(
                cap, frame,
                "no second whole-frame copy into twice the memory"
            );
            // Plain doubling copied 1.4 frames at 1 MiB, into 1.5 MiB of room.
            assert!(
                copied < frame + frame / 2,
                "{copied} bytes copied for a {frame}-byte frame"
            );
        }
    }

    #[test]
    fn a_declared_length_alone_buys_no_memory() {
        // 14 bytes of a frame declaring 16 MiB: room by what arrived only.
        assert_eq!(read_growth(14, 0, 16 << 20), Some(READ_CHUNK));
        assert_eq!(read_growth(14, 8192, 16 << 20), None);
        assert_eq!(read_growth(100_000, 0, 16 << 20), Some(100_000));
        // Close to the end of a large frame: exactly the rest.
        assert_eq!(read_growth(700_000, 0, 400_000), Some(400_000));
    }
}
