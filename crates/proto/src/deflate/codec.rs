//! Per-message DEFLATE (RFC 7692 §7.2) on zlib-rs states shared per thread
//! (`pool`), with each direction's context kept as the tail of its stream
//! (`history`).

use super::history::History;
use super::negotiate::deflate_window_bits;
use super::pool::{self, DeflateKey, Owner};
use crate::error::ProtocolError;
use bytes::Bytes;
use zlib_rs::{Deflate, DeflateFlush, Inflate, InflateFlush, Status};

/// Output is produced (and checked against the message limit and UTF-8) in
/// pieces of at most this many bytes.
pub const INFLATE_CHUNK: usize = 32 * 1024;

/// The tail a sync flush leaves, stripped by the sender and appended by the
/// receiver (§7.2.1, §7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// How a compressor uses memory (see [`DeflateConfig`](super::DeflateConfig)
/// for the trade-offs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CodecMemory {
    /// zlib `memLevel` 1..=9 of the shared compressors (their pending
    /// buffers: 7 × 2^(mem_level + 6) bytes).
    pub mem_level: u8,
    /// Bytes of its sent stream a connection keeps to continue its context
    /// on whichever shared compressor it gets next (at most the window).
    pub send_history: usize,
    /// Compressor states and decompressor states kept per thread.
    pub states_per_thread: usize,
}

impl CodecMemory {
    /// Sets [`mem_level`](Self::mem_level).
    #[must_use]
    pub fn with_mem_level(mut self, mem_level: u8) -> Self {
        self.mem_level = mem_level;
        self
    }

    /// Sets [`send_history`](Self::send_history).
    #[must_use]
    pub fn with_send_history(mut self, send_history: usize) -> Self {
        self.send_history = send_history;
        self
    }

    /// Sets [`states_per_thread`](Self::states_per_thread).
    #[must_use]
    pub fn with_states_per_thread(mut self, states_per_thread: usize) -> Self {
        self.states_per_thread = states_per_thread;
        self
    }
}

impl Default for CodecMemory {
    fn default() -> Self {
        CodecMemory {
            mem_level: 8,
            send_history: 16 * 1024,
            states_per_thread: 4,
        }
    }
}

/// Compresses whole messages for one direction.
///
/// Holds no zlib state between messages: each message is compressed on a
/// state of this thread's pool, primed with the tail of what was sent before
/// (context takeover) unless the state still carries this stream.
pub struct Compressor {
    key: DeflateKey,
    no_context_takeover: bool,
    owner: Owner,
    history: History,
    states: usize,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor")
            .field("window_bits", &self.key.window_bits)
            .field("no_context_takeover", &self.no_context_takeover)
            .finish_non_exhaustive()
    }
}

impl Compressor {
    /// A compressor for a negotiated window (8..=15; 8 compresses with 9,
    /// see the module docs) and zlib level 0..=9, with default memory use.
    pub fn new(window_bits: u8, level: u32, no_context_takeover: bool) -> Self {
        Self::with_memory(
            window_bits,
            level,
            no_context_takeover,
            CodecMemory::default(),
        )
    }

    /// [`Compressor::new`] with explicit memory settings.
    pub fn with_memory(
        window_bits: u8,
        level: u32,
        no_context_takeover: bool,
        memory: CodecMemory,
    ) -> Self {
        let window_bits = deflate_window_bits(window_bits);
        let history = if no_context_takeover {
            0
        } else {
            memory.send_history.min(1 << window_bits)
        };
        Compressor {
            key: DeflateKey {
                window_bits,
                level: level.min(9) as u8,
                mem_level: memory.mem_level.clamp(1, 9),
            },
            no_context_takeover,
            owner: Owner {
                id: pool::next_id(),
                seq: 0,
            },
            history: History::new(history),
            states: memory.states_per_thread,
        }
    }

    /// Compress one message: DEFLATE blocks ending in a sync flush, with the
    /// `0x00 0x00 0xff 0xff` tail removed (§7.2.1). An empty message gives
    /// the single byte `0x00` (an empty stored block's header, §7.2.3.6).
    pub fn compress(&mut self, input: &[u8]) -> Bytes {
        let owner = (!self.no_context_takeover).then_some(self.owner);
        let mut z = match pool::take_deflate(self.key, owner, self.states) {
            Ok(z) => z,
            Err(mut z) => {
                z.reset();
                if !self.history.is_empty() {
                    z.set_dictionary(self.history.as_slice())
                        .expect("a freshly reset raw deflate state takes a dictionary");
                }
                z
            }
        };
        let out = deflate_sync(&mut z, input);
        let owner = if self.no_context_takeover {
            None
        } else {
            self.owner.seq += 1;
            self.history.push(input);
            Some(self.owner)
        };
        pool::put_deflate(z, self.key, owner, self.states);
        out
    }

    /// Free the history, for a connection gone quiet. The next message
    /// continues the context only if this thread's pooled state still
    /// carries it, and otherwise starts afresh: a sender may always choose
    /// not to refer to earlier messages.
    pub fn release(&mut self) {
        self.history.clear();
    }

    /// Heap bytes this compressor holds between messages.
    pub fn held_bytes(&self) -> usize {
        self.history.capacity()
    }
}

/// One message through `z` with a sync flush, the tail stripped.
fn deflate_sync(z: &mut Deflate, input: &[u8]) -> Bytes {
    let mut out = vec![0u8; input.len() / 2 + 64];
    let (mut consumed, mut filled) = (0, 0);
    loop {
        let (in0, out0) = (z.total_in(), z.total_out());
        // zlib fails only on a corrupted stream state, which safe code
        // cannot produce (a repeated flush with nothing new is BufError,
        // i.e. Ok here); carrying on could loop or corrupt the stream.
        z.compress(
            &input[consumed..],
            &mut out[filled..],
            DeflateFlush::SyncFlush,
        )
        .expect("deflate cannot fail on a valid stream state");
        consumed += (z.total_in() - in0) as usize;
        filled += (z.total_out() - out0) as usize;
        // The flush is complete once all input is in and zlib stopped
        // without filling the output.
        if consumed == input.len() && filled < out.len() {
            break;
        }
        out.resize(out.len() * 2, 0);
    }
    out.truncate(filled);
    if out.ends_with(&TAIL) {
        out.truncate(out.len() - TAIL.len());
    } else if out.is_empty() {
        // zlib emits nothing for a sync flush right after another one
        // (an empty message): send the empty stored block's first byte,
        // which with the receiver's tail is a complete block (§7.2.3.6).
        out.push(0x00);
    }
    Bytes::from(out)
}

/// Inflates messages for one direction, with a bound on the output.
///
/// Between messages it holds only the tail of the peer's stream (its
/// window, while the peer keeps its context); the zlib state comes from this
/// thread's pool for each message and is held only while a message's frames
/// are still arriving.
pub struct Decompressor {
    window_bits: u8,
    owner: Owner,
    /// The peer's window: what its next message may refer to.
    history: History,
    /// The peer resets its context after every message.
    peer_resets: bool,
    states: usize,
    /// The state inflating the current message.
    held: Option<Box<Inflate>>,
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
            .field("peer_resets", &self.peer_resets)
            .finish_non_exhaustive()
    }
}

impl Decompressor {
    /// A decompressor for a peer that compresses with a window of at most
    /// 2^`window_bits` bytes (8..=15) and keeps its context.
    pub fn new(window_bits: u8) -> Self {
        Self::with_memory(window_bits, false, CodecMemory::default())
    }

    /// A decompressor for a peer that may reset its context after every
    /// message (`peer_no_context_takeover`): then nothing is kept between
    /// messages.
    pub fn with_memory(
        window_bits: u8,
        peer_no_context_takeover: bool,
        memory: CodecMemory,
    ) -> Self {
        let window_bits = deflate_window_bits(window_bits);
        let history = if peer_no_context_takeover {
            0
        } else {
            1 << window_bits
        };
        Decompressor {
            window_bits,
            owner: Owner {
                id: pool::next_id(),
                seq: 0,
            },
            history: History::new(history),
            peer_resets: peer_no_context_takeover,
            states: memory.states_per_thread,
            held: None,
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
            self.finish_message();
        }
        Ok(())
    }

    /// Forget a message in progress (the connection failed).
    pub fn reset(&mut self) {
        self.held = None;
        self.history.clear();
        self.owner.seq += 1;
        self.ended = false;
        self.fed = false;
    }

    /// Heap bytes this decompressor holds between messages.
    pub fn held_bytes(&self) -> usize {
        self.history.capacity()
    }

    /// The message is complete: give the state back to the pool, marked as
    /// carrying this stream unless the peer ended or resets it.
    fn finish_message(&mut self) {
        self.owner.seq += 1;
        let keeps_context = !self.peer_resets && !self.ended;
        if self.ended {
            self.history.clear();
            self.ended = false;
        }
        if let Some(z) = self.held.take() {
            pool::put_inflate(z, keeps_context.then_some(self.owner), self.states);
        }
    }

    /// The state for the current message: held, or this stream's from the
    /// pool, or a pooled one reset and primed with the peer's window.
    fn state(&mut self) -> &mut Inflate {
        if self.held.is_none() {
            let owner = (!self.peer_resets).then_some(self.owner);
            let z = match pool::take_inflate(owner, self.states) {
                Ok(z) => z,
                Err(mut z) => {
                    z.reset(false);
                    if !self.history.is_empty() {
                        z.set_dictionary(self.history.as_slice())
                            .expect("a raw inflate state takes a dictionary at any time");
                    }
                    z
                }
            };
            self.held = Some(z);
        }
        self.held.as_deref_mut().expect("set above")
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
            let z = self.state();
            let (in0, out0) = (z.total_in(), z.total_out());
            let status = z.decompress(input, &mut out[start..], InflateFlush::SyncFlush);
            let consumed = (z.total_in() - in0) as usize;
            let produced = (z.total_out() - out0) as usize;
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
                self.history.push(&out[start..]);
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
