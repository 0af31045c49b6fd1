//! The last bytes of one direction's uncompressed stream: what a shared
//! compressor or decompressor is primed with to continue that direction's
//! context (RFC 7692 §7.2.1, context takeover).

use std::collections::VecDeque;

/// At most `limit` bytes: the tail of everything pushed. Grows with what is
/// pushed (a connection that sent 300 bytes holds 300), never past `limit`.
#[derive(Debug, Default)]
pub(crate) struct History {
    bytes: VecDeque<u8>,
    limit: usize,
}

impl History {
    pub(crate) fn new(limit: usize) -> Self {
        History {
            bytes: VecDeque::new(),
            limit,
        }
    }

    /// Append `data`, dropping the oldest bytes beyond the limit.
    pub(crate) fn push(&mut self, data: &[u8]) {
        if self.limit == 0 {
            return;
        }
        let data = &data[data.len().saturating_sub(self.limit)..];
        let len = self.bytes.len() + data.len();
        if len > self.limit {
            self.bytes.drain(..len - self.limit);
        }
        let need = self.bytes.len() + data.len();
        if need > self.bytes.capacity() {
            // Double as a Vec would, but never past the limit.
            let target = (self.bytes.capacity() * 2).clamp(need, self.limit.max(need));
            self.bytes.reserve_exact(target - self.bytes.len());
        }
        self.bytes.extend(data);
    }

    /// The bytes as one slice (rotates the ring in place when wrapped; only
    /// needed when a shared state is primed with it).
    pub(crate) fn as_slice(&mut self) -> &[u8] {
        self.bytes.make_contiguous()
    }

    /// Forget everything and free the memory.
    pub(crate) fn clear(&mut self) {
        self.bytes = VecDeque::new();
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Heap bytes held.
    pub(crate) fn capacity(&self) -> usize {
        self.bytes.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::History;

    #[test]
    fn keeps_the_tail_within_the_limit() {
        let mut h = History::new(8);
        h.push(b"abc");
        assert_eq!(h.as_slice(), b"abc");
        h.push(b"defgh");
        assert_eq!(h.as_slice(), b"abcdefgh");
        h.push(b"ij");
        assert_eq!(h.as_slice(), b"cdefghij");
        h.push(b"0123456789");
        assert_eq!(h.as_slice(), b"23456789");
        assert!(h.capacity() <= 8 + 8, "capacity {}", h.capacity());
    }

    #[test]
    fn zero_limit_keeps_nothing() {
        let mut h = History::new(0);
        h.push(b"abc");
        assert!(h.is_empty());
        assert_eq!(h.capacity(), 0);
    }

    #[test]
    fn capacity_never_exceeds_a_power_of_two_limit() {
        let mut h = History::new(32 * 1024);
        for n in [100, 5000, 20_000, 1, 30_000, 70_000, 3] {
            h.push(&vec![7u8; n]);
            assert!(h.capacity() <= 32 * 1024, "capacity {}", h.capacity());
        }
        assert_eq!(h.as_slice().len(), 32 * 1024);
    }
}
