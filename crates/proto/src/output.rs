//! The outgoing byte queue.
//!
//! Small frames are encoded back to back into one contiguous buffer, so many
//! small messages leave in one `write` syscall. Large unmasked payloads are not
//! copied: the header goes into the buffer and the payload's `Bytes` is queued
//! behind it, to be sent with a vectored write. The queue implements
//! [`bytes::Buf`], so an I/O layer can hand it straight to `write_buf` or
//! `chunks_vectored`.
//!
//! A client must mask what it sends, so its large payloads cannot go out by
//! reference; but neither are they masked whole into the buffer. They are
//! queued by reference too and masked one 256 KiB piece (`STAGE_SIZE`) at a
//! time, each piece just before it is written. The piece is still in cache
//! when the kernel copies it, and a 64 MiB message needs a 256 KiB staging buffer,
//! not a 64 MiB copy (measured on a 4 x 1 MiB echo: the client's output
//! buffer was otherwise allocated, page-faulted and freed for every message).

use crate::copy;
use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;
use std::io::IoSlice;

/// Payloads at least this large are queued by reference instead of copied.
pub(crate) const ZERO_COPY_THRESHOLD: usize = 8 * 1024;

/// Masked payloads at least this large are masked piece by piece as they
/// are written (see the module docs); smaller ones are masked into the
/// buffer with their header, where many of them can share one write.
pub(crate) const STAGED_MASK_THRESHOLD: usize = 64 * 1024;

/// The size of one masked piece. A multiple of 4, so every piece starts at
/// the same key offset.
pub(crate) const STAGE_SIZE: usize = 256 * 1024;

/// One queued run of bytes.
#[derive(Debug)]
enum Chunk {
    /// Ready to write as is.
    Plain(Bytes),
    /// A payload still to be masked with `key`. At the front of the queue,
    /// its next piece is in [`Output::stage`], masked, and `rest` is what
    /// follows that piece.
    Masked { rest: Bytes, key: [u8; 4] },
}

/// Bytes waiting to be written, in order: `chunks` first, then `tail`.
#[derive(Debug, Default)]
pub struct Output {
    chunks: VecDeque<Chunk>,
    tail: BytesMut,
    /// The masked piece of the `Masked` chunk at the front, if there is one.
    stage: BytesMut,
    len: usize,
}

impl Output {
    /// The buffer new small writes are appended to. Without one (it was
    /// lent out while idle, or never had one), a fresh one starts at 4 KiB,
    /// so a burst of small frames does not reallocate at every doubling.
    #[inline]
    pub(crate) fn tail(&mut self) -> &mut BytesMut {
        if self.tail.capacity() == 0 {
            self.tail.reserve(4096);
        }
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
        self.close_tail();
        self.len += payload.len();
        self.chunks.push_back(Chunk::Plain(payload));
    }

    /// Queue `payload` after everything written so far, to be masked with
    /// `key` (from payload offset 0) a piece at a time as it is written.
    pub(crate) fn push_masked(&mut self, payload: Bytes, key: [u8; 4]) {
        if payload.is_empty() {
            return;
        }
        self.close_tail();
        self.len += payload.len();
        self.chunks.push_back(Chunk::Masked { rest: payload, key });
        if self.chunks.len() == 1 {
            self.stage_next();
        }
    }

    /// Move what the tail holds into the queue, so later chunks follow it.
    fn close_tail(&mut self) {
        if !self.tail.is_empty() {
            self.chunks
                .push_back(Chunk::Plain(self.tail.split().freeze()));
        }
    }

    /// Mask the next piece of the `Masked` chunk at the front into `stage`;
    /// a chunk with nothing left is dropped (and the next one staged).
    fn stage_next(&mut self) {
        while let Some(Chunk::Masked { rest, key }) = self.chunks.front_mut() {
            if rest.is_empty() {
                self.chunks.pop_front();
                continue;
            }
            let piece = rest.split_to(rest.len().min(STAGE_SIZE));
            self.stage.clear();
            copy::append_masked(&mut self.stage, &piece, *key);
            return;
        }
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
        self.stage = BytesMut::new();
        self.len = 0;
    }

    /// Release memory held by an idle, empty buffer.
    pub(crate) fn shrink(&mut self) {
        if self.is_empty() {
            self.tail = BytesMut::new();
            self.chunks = VecDeque::new();
            self.stage = BytesMut::new();
        }
    }

    /// Take the encoding buffer while nothing is queued, leaving none, so a
    /// transport can recycle it while the connection is idle. `None` (and
    /// nothing taken) while bytes wait or when there is no buffer.
    pub fn take_buffer(&mut self) -> Option<BytesMut> {
        if !self.is_empty() {
            return None;
        }
        // The staging buffer is not worth pooling: large masked messages
        // are rare, and a fresh one is cheap next to masking 64 KiB.
        self.stage = BytesMut::new();
        if self.tail.capacity() == 0 {
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
            Some(Chunk::Plain(c)) => c,
            Some(Chunk::Masked { .. }) => &self.stage,
            None => &self.tail,
        }
    }

    fn advance(&mut self, mut cnt: usize) {
        assert!(cnt <= self.len, "advance past the end of the output");
        self.len -= cnt;
        while cnt > 0 {
            match self.chunks.front_mut() {
                Some(Chunk::Plain(front)) => {
                    if cnt < front.len() {
                        front.advance(cnt);
                        return;
                    }
                    cnt -= front.len();
                    self.chunks.pop_front();
                    // A masked payload now at the front needs its first piece.
                    self.stage_next();
                }
                Some(Chunk::Masked { .. }) => {
                    if cnt < self.stage.len() {
                        self.stage.advance(cnt);
                        return;
                    }
                    cnt -= self.stage.len();
                    self.stage.clear();
                    self.stage_next();
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
        let mut push = |c: &'a [u8]| {
            if n < dst.len() && !c.is_empty() {
                dst[n] = IoSlice::new(c);
                n += 1;
            }
        };
        for (i, c) in self.chunks.iter().enumerate() {
            match c {
                Chunk::Plain(c) => push(c),
                // Only the staged piece of the front payload is masked yet;
                // nothing after it can go in the same write.
                Chunk::Masked { .. } => {
                    if i == 0 {
                        push(&self.stage);
                    }
                    return n;
                }
            }
        }
        push(&self.tail);
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

    /// What a queue holds, drained the way a transport would: vectored
    /// writes or plain `chunk` writes, each taking at most `max_write` bytes.
    fn drain(o: &mut Output, max_write: usize, vectored: bool) -> Vec<u8> {
        let mut out = Vec::new();
        while o.has_remaining() {
            let mut n = 0;
            if vectored {
                let mut slices = [IoSlice::new(&[]); 4];
                let k = o.chunks_vectored(&mut slices);
                assert!(k > 0, "bytes wait but no slice is offered");
                for s in &slices[..k] {
                    let take = s.len().min(max_write - n);
                    out.extend_from_slice(&s[..take]);
                    n += take;
                }
            } else {
                let c = o.chunk();
                assert!(!c.is_empty(), "bytes wait but the chunk is empty");
                n = c.len().min(max_write);
                out.extend_from_slice(&c[..n]);
            }
            o.advance(n);
        }
        out
    }

    /// Queue a mix of tail bytes, shared payloads and masked payloads (each
    /// `(kind, len)`), returning the bytes a peer must receive.
    fn fill(o: &mut Output, parts: &[(u8, usize)]) -> Vec<u8> {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let mut want = Vec::new();
        for (i, &(kind, len)) in parts.iter().enumerate() {
            let data: Vec<u8> = (0..len).map(|j| (i * 31 + j * 7) as u8).collect();
            match kind % 3 {
                0 => {
                    o.tail().extend_from_slice(&data);
                    o.grew(len);
                    want.extend_from_slice(&data);
                }
                1 => {
                    o.push_bytes(Bytes::from(data.clone()));
                    want.extend_from_slice(&data);
                }
                _ => {
                    o.push_masked(Bytes::from(data.clone()), key);
                    let mut masked = data;
                    crate::bench::apply_mask_scalar(&mut masked, key, 0);
                    want.extend_from_slice(&masked);
                }
            }
        }
        want
    }

    #[test]
    fn masked_payloads_are_staged_a_piece_at_a_time() {
        let mut o = Output::default();
        o.give_buffer(BytesMut::with_capacity(4096));
        let want = fill(&mut o, &[(0, 10), (2, 2 * STAGE_SIZE + 5), (0, 3)]);
        assert_eq!(o.remaining(), want.len());
        // First the tail bytes queued before it, then one staged piece.
        assert_eq!(o.chunk().len(), 10);
        o.advance(10);
        assert_eq!(o.chunk().len(), STAGE_SIZE, "one piece is masked");
        assert_eq!(o.stage.capacity(), STAGE_SIZE);
        assert_eq!(drain(&mut o, usize::MAX, true), want[10..]);
        assert!(o.take_buffer().is_some());
        assert_eq!(o.stage.capacity(), 0, "idle: the stage is released");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn any_mix_drains_in_order_whatever_the_write_sizes(
            parts in proptest::collection::vec((0u8..3, 0usize..3 * STAGE_SIZE / 2), 0..6),
            max_write in 1usize..200_000,
            vectored: bool,
        ) {
            let mut o = Output::default();
            let want = fill(&mut o, &parts);
            proptest::prop_assert_eq!(o.remaining(), want.len());
            proptest::prop_assert_eq!(drain(&mut o, max_write, vectored), want);
            proptest::prop_assert!(o.is_empty());
        }
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
