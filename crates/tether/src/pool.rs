//! A per-thread pool of I/O buffers, so idle connections hold none.
//!
//! A connection needs a read buffer and an output buffer only while bytes
//! move. Freeing both every time a connection goes quiet (each time its
//! socket has nothing more to read) keeps 10,000 idle connections small,
//! but under load it turns into several `malloc`/`free` pairs per batch of
//! messages, plus a reallocation chain as the output buffer grows again.
//! Instead, a quiet connection hands its buffers to this pool and the next
//! connection to wake up on the same thread takes them: idle connections
//! still hold nothing, and a busy server reuses a handful of warm buffers.
//!
//! Lending costs a connection about 200 instructions every time its socket
//! runs dry, and taking the buffers back about 60 (at one message in
//! flight that is every message: 262 of a library echo server's 2,410
//! instructions per message under callgrind). Keeping the buffers instead
//! was measured and is not worth it even where memory does not matter: a
//! load generator with 100 busy connections that kept theirs saved about
//! 0.07 µs of user time per message but spent 0.2–0.4 µs more in the
//! kernel, whose copies then went to 100 connections' buffers instead of a
//! few warm ones.
//!
//! The pool is bounded ([`MAX_POOLED`] buffers of at most [`MAX_KEEP`]
//! bytes per thread) and only takes a buffer whose memory is no longer
//! shared with a message the application still holds (checked with
//! [`BytesMut::try_reclaim`]), so it never pins memory it does not own.
//!
//! Read buffers that a large frame grew are kept apart, up to
//! [`MAX_LARGE_BYTES`] per thread, for the next large frame on the same
//! thread ([`take_large`]). Without them, every 1 MiB message started again
//! from a 32 KiB buffer and grew by copying: 0.7 MiB of `memcpy` per
//! message, 6.6% of a load generator's CPU at 4 x 1 MiB. A frame's
//! declared length only chooses among buffers already kept, so it still
//! never makes the process allocate.

use bytes::BytesMut;
use std::cell::RefCell;

/// Size of a fresh buffer: a 16 KiB message and its header arrive in one read.
const BUF_SIZE: usize = 32 * 1024;
/// Largest buffer worth keeping (one grown by a big message is dropped).
const MAX_KEEP: usize = 64 * 1024;
/// Most buffers kept per thread.
const MAX_POOLED: usize = 32;

/// Most bytes of large buffers (over [`MAX_KEEP`]) kept per thread.
const MAX_LARGE_BYTES: usize = 8 << 20;
/// Most large buffers kept per thread.
const MAX_LARGE: usize = 8;

thread_local! {
    static POOL: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
    static LARGE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// A cleared buffer with at least [`BUF_SIZE`] bytes of capacity.
pub(crate) fn take() -> BytesMut {
    POOL.try_with(|p| p.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_else(|| BytesMut::with_capacity(BUF_SIZE))
}

/// Return a buffer for reuse; it is dropped if too big, still shared with
/// live messages, or if the pool is full.
pub(crate) fn give(mut buf: BytesMut) {
    buf.clear();
    // Unique, with its whole allocation back and big enough: safe to hand
    // to anyone. (Before this, `capacity` counts only what is left after
    // the bytes already read and split off.)
    if !buf.try_reclaim(BUF_SIZE) {
        return;
    }
    if buf.capacity() > MAX_KEEP {
        give_large(buf);
        return;
    }
    let _ = POOL.try_with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < MAX_POOLED {
            p.push(buf);
        }
    });
}

/// Keep a large, cleared buffer if the thread's budget allows.
///
/// A read buffer grown by a large frame had that frame split off its front.
/// Asking for one byte more than its capacity shows whether the whole
/// allocation can be had back, which is true only if no message still
/// shares it (then it gets it back). A buffer that cannot is not kept.
fn give_large(mut buf: BytesMut) {
    if !buf.try_reclaim(buf.capacity() + 1) {
        return;
    }
    let _ = LARGE.try_with(|l| {
        let mut l = l.borrow_mut();
        let held: usize = l.iter().map(BytesMut::capacity).sum();
        if l.len() < MAX_LARGE && held + buf.capacity() <= MAX_LARGE_BYTES {
            l.push(buf);
        }
    });
}

/// A kept large buffer with room for at least `need` bytes (the smallest
/// that fits), if the thread has one. Never allocates.
pub(crate) fn take_large(need: usize) -> Option<BytesMut> {
    LARGE
        .try_with(|l| {
            let mut l = l.borrow_mut();
            let (i, _) = l
                .iter()
                .enumerate()
                .filter(|(_, b)| b.capacity() >= need)
                .min_by_key(|(_, b)| b.capacity())?;
            Some(l.swap_remove(i))
        })
        .ok()
        .flatten()
}

/// Before a read into `buf`: if everything read so far has been handed out
/// but the room left is under a fresh buffer's, take the rest of the
/// allocation back (only possible, and then free, when no message still
/// shares it).
///
/// Each frame taken out of the read buffer takes its room with it, so a
/// connection that keeps reading without running dry (the next message
/// was already there when the last one was answered: a server that lags)
/// read into whatever room the last frame left: at 16 KiB messages, 16,376
/// bytes of a 32 KiB buffer, 16 short of the next frame, which then grew
/// the buffer by copying (`realloc`). Slowed down under callgrind, an echo
/// server lagged on 5% of its messages and spent 14% of its instructions
/// there (5,757 instructions per message before, 4,976 after); at full
/// speed on 10 connections it happened to 0.04% of messages.
pub(crate) fn reclaim_emptied(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() < BUF_SIZE {
        let _ = buf.try_reclaim(BUF_SIZE);
    }
}

/// Make room in `buf` for the rest of a frame that will end at `frame_end`
/// bytes, from a kept large buffer: what `buf` holds moves over (only what
/// has arrived so far), and `buf`'s own memory goes back to the pool.
/// False (nothing changed) if the frame is not large or no kept buffer fits.
pub(crate) fn grow_into_large(buf: &mut BytesMut, frame_end: usize) -> bool {
    if frame_end <= MAX_KEEP {
        return false;
    }
    let Some(mut large) = take_large(frame_end) else {
        return false;
    };
    large.extend_from_slice(buf);
    give(std::mem::replace(buf, large));
    true
}

#[cfg(test)]
pub(crate) fn large_pooled() -> usize {
    LARGE.with(|l| l.borrow().len())
}

#[cfg(test)]
pub(crate) fn pooled() -> usize {
    POOL.with(|p| p.borrow().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_a_returned_buffer() {
        let mut b = take();
        b.extend_from_slice(b"hello");
        let ptr = b.as_ptr();
        give(b);
        let again = take();
        assert!(again.is_empty());
        assert_eq!(again.as_ptr(), ptr, "the same allocation came back");
        assert!(again.capacity() >= BUF_SIZE);
    }

    #[test]
    fn refuses_a_buffer_still_shared_with_a_message() {
        let before = pooled();
        let mut b = take();
        b.extend_from_slice(b"payload");
        let msg = b.split_to(7).freeze();
        give(b);
        assert_eq!(pooled(), before, "memory still in use by `msg`");
        assert_eq!(&msg[..], b"payload");
    }

    #[test]
    fn an_emptied_read_buffer_gets_its_whole_room_back_once_no_message_shares_it() {
        let mut buf = take();
        let full = buf.capacity();
        buf.extend_from_slice(&[7u8; 20_000]);
        let frame = buf.split_to(20_000).freeze();
        assert!(buf.capacity() < BUF_SIZE, "the frame took its room along");
        // A message still shares the memory: nothing to take back.
        reclaim_emptied(&mut buf);
        assert!(buf.capacity() < BUF_SIZE);
        drop(frame);
        reclaim_emptied(&mut buf);
        assert_eq!(buf.capacity(), full);
        // Bytes still unread stay where they are.
        buf.extend_from_slice(b"next");
        let _ = buf.split_to(2);
        let before = buf.capacity();
        reclaim_emptied(&mut buf);
        assert_eq!((&buf[..], buf.capacity()), (&b"xt"[..], before));
    }

    #[test]
    fn takes_back_a_buffer_whose_messages_are_gone() {
        let mut b = take();
        let ptr = b.as_ptr();
        b.extend_from_slice(b"one two");
        drop(b.split_to(4).freeze());
        drop(b.split_to(3).freeze());
        give(b);
        assert_eq!(take().as_ptr(), ptr);
    }

    #[test]
    fn refuses_small_and_huge_buffers() {
        let before = pooled();
        give(BytesMut::with_capacity(100));
        give(BytesMut::with_capacity(MAX_KEEP * 2));
        assert_eq!(pooled(), before);
    }

    /// A read buffer of `cap` bytes after a frame was read from it and its
    /// message dropped.
    fn grown(cap: usize) -> BytesMut {
        let mut b = BytesMut::with_capacity(cap);
        b.extend_from_slice(&[7; 1000]);
        drop(b.split_to(1000).freeze());
        b
    }

    #[test]
    fn keeps_a_large_buffer_for_the_next_large_frame() {
        let b = grown(1 << 20);
        let ptr = b.as_ptr().wrapping_sub(1000);
        give(b);
        // Not handed out for small needs, nor for more than it holds.
        assert_eq!(take().capacity(), BUF_SIZE);
        assert!(take_large(2 << 20).is_none());
        let mut small = take();
        small.extend_from_slice(b"arrived so far");
        assert!(grow_into_large(&mut small, 1 << 20));
        assert_eq!(small.as_ptr(), ptr, "the kept allocation came back");
        assert_eq!(&small[..], b"arrived so far");
        assert!(small.capacity() >= 1 << 20);
        assert!(!grow_into_large(&mut small, 1 << 20), "none left");
    }

    #[test]
    fn large_buffers_are_bounded_by_bytes() {
        for _ in 0..2 * MAX_LARGE {
            give(grown(2 << 20));
        }
        assert_eq!(large_pooled(), MAX_LARGE_BYTES / (2 << 20));
        while take_large(1).is_some() {}
        for _ in 0..2 * MAX_LARGE {
            give(grown(MAX_KEEP + 1001));
        }
        assert_eq!(large_pooled(), MAX_LARGE);
        while take_large(1).is_some() {}
    }

    #[test]
    fn a_large_buffer_still_shared_is_not_kept() {
        let mut b = BytesMut::with_capacity(1 << 20);
        b.extend_from_slice(&[1; 100]);
        let msg = b.split_to(100).freeze();
        give(b);
        assert!(take_large(1).is_none());
        drop(msg);
    }

    #[test]
    fn small_frames_do_not_take_large_buffers() {
        give(grown(1 << 20));
        let mut small = take();
        assert!(!grow_into_large(&mut small, MAX_KEEP));
        assert!(take_large(1).is_some());
    }

    #[test]
    fn is_bounded() {
        for _ in 0..MAX_POOLED * 2 {
            give(BytesMut::with_capacity(BUF_SIZE));
        }
        assert_eq!(pooled(), MAX_POOLED);
    }
}
