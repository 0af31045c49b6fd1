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
//! The pool is bounded ([`MAX_POOLED`] buffers of at most [`MAX_KEEP`]
//! bytes per thread) and only takes a buffer whose memory is no longer
//! shared with a message the application still holds (checked with
//! [`BytesMut::try_reclaim`]), so it never pins memory it does not own.

use bytes::BytesMut;
use std::cell::RefCell;

/// Size of a fresh buffer: a 16 KiB message and its header arrive in one read.
const BUF_SIZE: usize = 32 * 1024;
/// Largest buffer worth keeping (one grown by a big message is dropped).
const MAX_KEEP: usize = 64 * 1024;
/// Most buffers kept per thread.
const MAX_POOLED: usize = 32;

thread_local! {
    static POOL: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
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
    if !buf.try_reclaim(BUF_SIZE) || buf.capacity() > MAX_KEEP {
        return;
    }
    let _ = POOL.try_with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < MAX_POOLED {
            p.push(buf);
        }
    });
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

    #[test]
    fn is_bounded() {
        for _ in 0..MAX_POOLED * 2 {
            give(BytesMut::with_capacity(BUF_SIZE));
        }
        assert_eq!(pooled(), MAX_POOLED);
    }
}
