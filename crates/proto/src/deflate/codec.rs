//! Per-message DEFLATE (RFC 7692 §7.2) on top of flate2/zlib-rs.

use super::negotiate::deflate_window_bits;
use crate::error::ProtocolError;
use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// Output is produced (and checked against the message limit and UTF-8) in
/// pieces of at most this many bytes.
pub const INFLATE_CHUNK: usize = 32 * 1024;

/// The tail a sync flush leaves, stripped by the sender and appended by the
/// receiver (§7.2.1, §7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Compresses whole messages for one direction.
pub struct Compressor {
    inner: Compress,
    no_context_takeover: bool,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor")
            .field("no_context_takeover", &self.no_context_takeover)
            .finish_non_exhaustive()
    }
}

impl Compressor {
    /// A compressor for a negotiated window (8..=15; 8 compresses with 9,
    /// see the module docs) and zlib level 0..=9.
    pub fn new(window_bits: u8, level: u32, no_context_takeover: bool) -> Self {
        Compressor {
            inner: Compress::new_with_window_bits(
                Compression::new(level.min(9)),
                false,
                deflate_window_bits(window_bits),
            ),
            no_context_takeover,
        }
    }

    /// Compress one message: DEFLATE blocks ending in a sync flush, with the
    /// `0x00 0x00 0xff 0xff` tail removed (§7.2.1). An empty message gives
    /// the single byte `0x00` (an empty stored block's header, §7.2.3.6).
    pub fn compress(&mut self, input: &[u8]) -> Bytes {
        let mut out = Vec::with_capacity(input.len() / 2 + 64);
        let mut consumed = 0;
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity().max(64));
            }
            let before = self.inner.total_in();
            // zlib fails only on a corrupted stream state, which safe code
            // cannot produce (a repeated flush with nothing new is BufError,
            // i.e. Ok here); carrying on could loop or corrupt the stream.
            self.inner
                .compress_vec(&input[consumed..], &mut out, FlushCompress::Sync)
                .expect("deflate cannot fail on a valid stream state");
            consumed += (self.inner.total_in() - before) as usize;
            // The flush is complete once all input is in and zlib stopped
            // without filling the output.
            if consumed == input.len() && out.len() < out.capacity() {
                break;
            }
        }
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        } else if out.is_empty() {
            // zlib emits nothing for a sync flush right after another one
            // (an empty message): send the empty stored block's first byte,
            // which with the receiver's tail is a complete block (§7.2.3.6).
            out.push(0x00);
        }
        if self.no_context_takeover {
            self.inner.reset();
        }
        Bytes::from(out)
    }
}

/// Inflates messages for one direction, with a bound on the output.
pub struct Decompressor {
    inner: Decompress,
    window_bits: u8,
    /// The peer ended its DEFLATE stream (BFINAL) within this message: the
    /// rest of the message is ignored and the state is reset at its end.
    ended: bool,
    /// Some payload byte of the current message was inflated.
    fed: bool,
}

impl std::fmt::Debug for Decompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decompressor")
            .field("window_bits", &self.window_bits)
            .finish_non_exhaustive()
    }
}

impl Decompressor {
    /// A decompressor for a peer that compresses with a window of at most
    /// 2^`window_bits` bytes (8..=15).
    ///
    /// The peer's no-context-takeover setting needs no handling here: a
    /// stream that never refers to earlier messages inflates the same with
    /// or without their bytes in the window.
    pub fn new(window_bits: u8) -> Self {
        let window_bits = deflate_window_bits(window_bits);
        Decompressor {
            inner: Decompress::new_with_window_bits(false, window_bits),
            window_bits,
            ended: false,
            fed: false,
        }
    }

    /// Inflate the next piece of a message's payload, appending to `out`.
    ///
    /// Output is produced in chunks of at most [`INFLATE_CHUNK`] bytes; after
    /// each, `out.len()` is checked against `limit` and the new bytes are
    /// passed to `on_chunk` (UTF-8 validation). `out` never grows past
    /// `limit + 1` bytes of length. With `last`, the §7.2.2 tail is appended
    /// and the message is finished.
    ///
    /// Errors: [`ProtocolError::MessageTooLarge`] past the limit,
    /// [`ProtocolError::Extension`] for corrupt data, or `on_chunk`'s error.
    pub fn decompress(
        &mut self,
        input: &[u8],
        last: bool,
        out: &mut Vec<u8>,
        limit: usize,
        mut on_chunk: impl FnMut(&[u8]) -> Result<(), ProtocolError>,
    ) -> Result<(), ProtocolError> {
        if !input.is_empty() {
            self.fed = true;
            self.inflate(input, out, limit, &mut on_chunk)?;
        }
        if last {
            // A message with no payload at all is empty: appending the tail
            // alone would leave the inflater inside a stored block's header
            // and corrupt the next message (some senders do produce this).
            if self.fed {
                self.inflate(&TAIL, out, limit, &mut on_chunk)?;
            }
            self.fed = false;
            if self.ended {
                self.reset();
            }
        }
        Ok(())
    }

    /// Forget a message in progress (the connection failed).
    pub fn reset(&mut self) {
        self.inner.reset(false);
        self.ended = false;
        self.fed = false;
    }

    fn inflate(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
        on_chunk: &mut impl FnMut(&[u8]) -> Result<(), ProtocolError>,
    ) -> Result<(), ProtocolError> {
        let cap = limit.saturating_add(1);
        // Start small (small messages should not pay for zeroing a whole
        // chunk), then double up to INFLATE_CHUNK.
        let mut step = input.len().saturating_mul(4).clamp(256, INFLATE_CHUNK);
        while !self.ended {
            let start = out.len();
            // Room for one byte past the limit, so crossing it is detected.
            let n = step.min(cap - start);
            step = (step * 2).min(INFLATE_CHUNK);
            if out.capacity() < start + n {
                // Grow geometrically, but never past the limit.
                let want = (out.capacity() * 2).clamp(start + n, cap.max(start + n));
                out.reserve_exact(want - start);
            }
            out.resize(start + n, 0);
            let (in0, out0) = (self.inner.total_in(), self.inner.total_out());
            let status = self
                .inner
                .decompress(input, &mut out[start..], FlushDecompress::Sync);
            let consumed = (self.inner.total_in() - in0) as usize;
            let produced = (self.inner.total_out() - out0) as usize;
            out.truncate(start + produced);
            let status = status.map_err(|_| {
                ProtocolError::Extension("permessage-deflate: invalid compressed data")
            })?;
            input = &input[consumed..];
            if out.len() > limit {
                return Err(ProtocolError::MessageTooLarge {
                    size: out.len() as u64,
                    limit,
                });
            }
            if produced > 0 {
                on_chunk(&out[start..])?;
            }
            match status {
                Status::StreamEnd => self.ended = true,
                Status::Ok | Status::BufError => {
                    if input.is_empty() && produced < n {
                        break;
                    }
                    if consumed == 0 && produced == 0 {
                        // No progress with input and room left: cannot happen
                        // with a sane stream; never spin.
                        return Err(ProtocolError::Extension(
                            "permessage-deflate: inflater made no progress",
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}
