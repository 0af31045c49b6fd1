//! The outgoing byte queue.
//!
//! Small frames are encoded back to back into one contiguous buffer, so many
//! small messages leave in one `write` syscall. Large unmasked payloads are not
//! copied: the header goes into the buffer and the payload's `Bytes` is queued
//! behind it, to be sent with a vectored write. The queue implements
//! [`bytes::Buf`], so an I/O layer can hand it straight to `write_buf` or
//! `chunks_vectored`.

use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;
use std::io::IoSlice;

/// Payloads at least this large are queued by reference instead of copied.
pub(crate) const ZERO_COPY_THRESHOLD: usize = 8 * 1024;

/// Bytes waiting to be written, in order: `chunks` first, then `tail`.
#[derive(Debug, Default)]
pub struct Output {
    chunks: VecDeque<Bytes>,
    tail: BytesMut,
    len: usize,
}

impl Output {
    /// The buffer new small writes are appended to.
    #[inline]
    pub(crate) fn tail(&mut self) -> &mut BytesMut {
        &mut self.tail
    }

    /// Record that `n` bytes were appended to `tail()`.
    #[inline]
    pub(crate) fn grew(&mut self, n: usize) {
        self.len += n;
    }

    /// Queue `payload` after everything written so far, without copying it.
    pub(crate) fn push_bytes(&mut self, payload: Bytes) {
        if payload.is_empty() {
            return;
        }
        if !self.tail.is_empty() {
            self.chunks.push_back(self.tail.split().freeze());
        }
        self.len += payload.len();
        self.chunks.push_back(payload);
    }

    /// Total bytes waiting.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if nothing waits.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Drop everything queued (the transport is gone).
    pub(crate) fn clear(&mut self) {
        self.chunks.clear();
        self.tail.clear();
        self.len = 0;
    }

    /// Release memory held by an idle, empty buffer.
    pub(crate) fn shrink(&mut self) {
        if self.is_empty() {
            self.tail = BytesMut::new();
            self.chunks = VecDeque::new();
        }
    }

    /// Take the encoding buffer while nothing is queued, leaving none, so a
    /// transport can recycle it while the connection is idle. `None` (and
    /// nothing taken) while bytes wait or when there is no buffer.
    pub fn take_buffer(&mut self) -> Option<BytesMut> {
        if !self.is_empty() || self.tail.capacity() == 0 {
            return None;
        }
        self.chunks = VecDeque::new();
        let mut buf = std::mem::take(&mut self.tail);
        buf.clear();
        Some(buf)
    }

    /// Encode into `buf` (cleared) from now on, if this queue has no buffer
    /// of its own yet; otherwise `buf` is handed back. (Without a buffer the
    /// tail is empty, so frames still queued by reference keep their order.)
    pub fn give_buffer(&mut self, mut buf: BytesMut) -> Option<BytesMut> {
        if self.has_buffer() {
            return Some(buf);
        }
        buf.clear();
        self.tail = buf;
        None
    }

    /// True if this queue holds an encoding buffer.
    #[inline]
    pub fn has_buffer(&self) -> bool {
        self.tail.capacity() != 0
    }
}

impl Buf for Output {
    fn remaining(&self) -> usize {
        self.len
    }

    fn chunk(&self) -> &[u8] {
        match self.chunks.front() {
            Some(c) => c,
            None => &self.tail,
        }
    }

    fn advance(&mut self, mut cnt: usize) {
        assert!(cnt <= self.len, "advance past the end of the output");
        self.len -= cnt;
        while cnt > 0 {
            match self.chunks.front_mut() {
                Some(front) => {
                    if cnt >= front.len() {
                        cnt -= front.len();
                        self.chunks.pop_front();
                    } else {
                        front.advance(cnt);
                        return;
                    }
                }
                None => {
                    self.tail.advance(cnt);
                    return;
                }
            }
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for c in self
            .chunks
            .iter()
            .map(|c| &c[..])
            .chain(std::iter::once(&self.tail[..]))
        {
            if n == dst.len() {
                break;
            }
            if !c.is_empty() {
                dst[n] = IoSlice::new(c);
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_across_tail_and_chunks() {
        let mut o = Output::default();
        o.tail().extend_from_slice(b"ab");
        o.grew(2);
        o.push_bytes(Bytes::from_static(b"cdef"));
        o.tail().extend_from_slice(b"g");
        o.grew(1);
        let mut all = Vec::new();
        while o.has_remaining() {
            let c = o.chunk().to_vec();
            o.advance(1.min(c.len()));
            all.push(c[0]);
        }
        assert_eq!(all, b"abcdefg");
        assert!(o.is_empty());
    }

    #[test]
    fn buffer_is_taken_only_when_nothing_waits() {
        let mut o = Output::default();
        assert!(o.take_buffer().is_none(), "no buffer yet");
        assert!(o.give_buffer(BytesMut::with_capacity(64)).is_none());
        assert!(o.has_buffer());
        let back = o.give_buffer(BytesMut::with_capacity(8));
        assert_eq!(back.map(|b| b.capacity()), Some(8), "already has one");
        o.tail().extend_from_slice(b"abc");
        o.grew(3);
        assert!(o.take_buffer().is_none(), "bytes are waiting");
        o.advance(3);
        let buf = o.take_buffer().expect("idle");
        assert!(buf.is_empty() && buf.capacity() > 0);
        assert!(!o.has_buffer());
    }

    #[test]
    fn vectored_slices_cover_everything() {
        let mut o = Output::default();
        o.tail().extend_from_slice(b"hd");
        o.grew(2);
        o.push_bytes(Bytes::from(vec![7u8; 10]));
        let mut slices = [IoSlice::new(&[]); 8];
        let n = o.chunks_vectored(&mut slices);
        assert_eq!(n, 2);
        assert_eq!(
            slices[..n].iter().map(|s| s.len()).sum::<usize>(),
            o.remaining()
        );
    }
}
