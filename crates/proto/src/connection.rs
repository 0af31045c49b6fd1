//! The WebSocket connection state machine (RFC 6455 §5-§7), without I/O.
//!
//! Bytes from the transport go in ([`Connection::read_buf`] or
//! [`Connection::receive`]); events come out ([`Connection::poll_event`]);
//! messages the application sends are encoded into an output queue
//! ([`Connection::output`]) that the transport drains. There is no clock and no
//! socket, so the same code runs under tokio, in tests, and in fuzzers, and
//! every behaviour is deterministic given its input.
//!
//! Reading works in place: a frame's payload is unmasked and UTF-8-checked in
//! the read buffer as its bytes arrive (so a bad text message fails the
//! connection at the first bad byte), and a complete single-frame message is
//! split off that buffer without copying. Memory is bounded by the configured
//! frame and message limits, which are checked against each header before any
//! payload is accepted; nothing is ever allocated from a declared length.
//!
//! With permessage-deflate negotiated ([`Config::negotiated_deflate`]), RSV1
//! marks the first frame of a compressed message; such frames are inflated
//! when complete, with the message limit applied to the inflated size and
//! UTF-8 checked on the inflated bytes (see [`crate::deflate`]).
//!
//! ```
//! use tether_proto::{Config, Connection, Event, Message, Role};
//! let mut client = Connection::new(Role::Client, Config::default());
//! let mut server = Connection::new(Role::Server, Config::default());
//! client.send(Message::text("hi")).unwrap();
//! let bytes = client.take_output();
//! server.receive(&bytes);
//! assert_eq!(server.poll_event().unwrap(), Some(Event::Message(Message::text("hi"))));
//! ```

use crate::close::{CloseFrame, MAX_REASON_LEN};
use crate::config::Config;
use crate::copy;
use crate::deflate::{Compressor, Decompressor, DeflateParams};
use crate::error::{ProtocolError, SendError};
use crate::frame::{FrameHeader, OpCode, MAX_CONTROL_PAYLOAD, RSV1};
use crate::mask::apply_mask;
use crate::message::{Event, Message, MessageRef};
use crate::output::{Output, STAGED_MASK_THRESHOLD, ZERO_COPY_THRESHOLD};
use crate::utf8::{Utf8Bytes, Utf8Validator};
use bytes::{Buf, Bytes, BytesMut};

/// Payloads up to this size are copied out of the read buffer; larger ones
/// are split off it without copying.
///
/// Sharing the read buffer costs two atomic reference-count updates per
/// message (one to split, one to drop), and those cost more than a small
/// allocation and copy: measured at 16 ns per 20-byte message shared against
/// 9 ns copied, and 21 against 15 ns at 512 B; at 2 KiB the copy loses (88
/// against 57 ns, past the allocator's per-thread cache). In the `echo`
/// micro benchmark (`benches/hot_path.rs`) this takes 13% off a server's
/// time per 20-byte message and 5-7% at 256 B and 1 KiB. A copied payload
/// also leaves the read buffer unshared, so it is reused in place.
pub const COPY_THRESHOLD: usize = 512;

/// Which end of the connection this is; decides masking (RFC 6455 §5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Masks what it sends; rejects masked frames.
    Client,
    /// Rejects unmasked frames; never masks.
    Server,
}

/// Where the closing handshake stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseState {
    /// No Close sent or received.
    Open,
    /// We sent a Close and wait for the peer's.
    CloseSent,
    /// The peer sent a Close; our reply is queued or sent (or, with
    /// [`Config::defer_close_reply`], still the application's to send).
    /// Reading is over.
    CloseReceived,
    /// Both Close frames have been exchanged, or the connection failed.
    Closed,
}

/// The frame being read: its header and how much of its payload is processed.
#[derive(Clone, Copy, Debug)]
struct InFrame {
    header: FrameHeader,
    header_len: usize,
    /// Payload bytes already unmasked (and validated, for text).
    done: usize,
    /// Payload bytes belong to a text message (validate UTF-8 as they arrive).
    /// False for compressed frames: their inflated bytes are validated.
    text: bool,
    /// The frame belongs to a compressed message (RSV1 on its first frame).
    compressed: bool,
}

/// A fragmented message being assembled.
#[derive(Debug)]
struct Assembly {
    text: bool,
    /// Compressed message: the inflated bytes collect in `DeflateState::msg`
    /// and `buf` stays empty.
    compressed: bool,
    buf: BytesMut,
}

/// permessage-deflate state, present only when negotiated (boxed so that a
/// connection without it stays small). The compressor and decompressor are
/// created on first use: a connection that only receives, or only sends
/// messages below `min_size`, never pays for the compressor (~250-380 KiB).
#[derive(Debug)]
struct DeflateState {
    tx: Option<Compressor>,
    rx: Option<Decompressor>,
    tx_bits: u8,
    tx_reset: bool,
    rx_bits: u8,
    level: u32,
    min_size: usize,
    /// Inflated bytes of the compressed message being received.
    msg: Vec<u8>,
}

impl DeflateState {
    fn new(role: Role, p: &DeflateParams, config: &Config) -> Self {
        let settings = config.deflate.clone().unwrap_or_default();
        let (tx_bits, tx_reset, rx_bits) = match role {
            Role::Server => (
                p.server_max_window_bits,
                p.server_no_context_takeover,
                p.client_max_window_bits,
            ),
            Role::Client => (
                p.client_max_window_bits,
                p.client_no_context_takeover,
                p.server_max_window_bits,
            ),
        };
        DeflateState {
            tx: None,
            rx: None,
            tx_bits,
            tx_reset,
            rx_bits,
            level: settings.level,
            min_size: settings.min_size,
            msg: Vec::new(),
        }
    }

    fn compress(&mut self, payload: &[u8]) -> Bytes {
        let (bits, level, reset) = (self.tx_bits, self.level, self.tx_reset);
        self.tx
            .get_or_insert_with(|| Compressor::new(bits, level, reset))
            .compress(payload)
    }

    /// Whether the compressor and decompressor exist (for memory tests).
    #[cfg(test)]
    fn allocated(&self) -> (bool, bool) {
        (self.tx.is_some(), self.rx.is_some())
    }
}

/// One end of a WebSocket connection, as a pure state machine.
#[derive(Debug)]
pub struct Connection {
    role: Role,
    config: Config,
    read_buf: BytesMut,
    frame: Option<InFrame>,
    assembly: Option<Assembly>,
    utf8: Utf8Validator,
    out: Output,
    /// A pong deferred because the output was backed up (only the latest).
    deferred_pong: Option<Bytes>,
    /// An outgoing fragmented message is in progress.
    sending_fragmented: bool,
    close_sent: bool,
    close_received: bool,
    failed: Option<ProtocolError>,
    peer_close: Option<CloseFrame>,
    /// permessage-deflate, if negotiated.
    deflate: Option<Box<DeflateState>>,
}

/// Where a small frame at the front of the read buffer lies (see
/// `Connection::small_frame`).
#[derive(Clone, Copy)]
struct SmallFrame {
    text: bool,
    /// The masking key, for a frame a client sent.
    key: Option<[u8; 4]>,
    header_len: usize,
    len: usize,
}

/// The header of a small frame at the front of the read buffer, whose
/// payload may not all be there yet.
#[derive(Clone, Copy)]
struct SmallStart {
    text: bool,
    header_len: usize,
    len: usize,
}

impl Connection {
    /// A connection whose opening handshake is complete.
    ///
    /// permessage-deflate is active when `config.negotiated_deflate` is set.
    pub fn new(role: Role, config: Config) -> Self {
        let deflate = config
            .negotiated_deflate
            .map(|p| Box::new(DeflateState::new(role, &p, &config)));
        Connection {
            deflate,
            role,
            config,
            read_buf: BytesMut::new(),
            frame: None,
            assembly: None,
            utf8: Utf8Validator::new(),
            out: Output::default(),
            deferred_pong: None,
            sending_fragmented: false,
            close_sent: false,
            close_received: false,
            failed: None,
            peer_close: None,
        }
    }

    /// This end's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    // ----- input -------------------------------------------------------

    /// The buffer the transport reads into (avoids a copy). Reserve space
    /// and read into its spare capacity, e.g. with tokio's `read_buf`.
    pub fn read_buf(&mut self) -> &mut BytesMut {
        &mut self.read_buf
    }

    /// How many more bytes the read buffer must receive to complete the
    /// frame being read, once its header is known (0 otherwise).
    ///
    /// A transport can make room for exactly that when it is close, rather
    /// than growing its buffer a few bytes short of a large frame and then
    /// copying the whole frame into a buffer twice its size. The length is
    /// the peer's claim (already checked against `max_frame_size`), so it
    /// is only good as an upper bound: allocate by what has arrived.
    pub fn frame_bytes_missing(&self) -> usize {
        match &self.frame {
            Some(f) => {
                (f.header_len + f.header.payload_len as usize).saturating_sub(self.read_buf.len())
            }
            None => 0,
        }
    }

    /// Append received bytes (copying them).
    pub fn receive(&mut self, data: &[u8]) {
        if !self.reading_done() {
            self.read_buf.extend_from_slice(data);
        }
    }

    /// True once nothing more will be read: the peer's Close arrived or the
    /// connection failed. Further input is ignored.
    pub fn reading_done(&self) -> bool {
        self.close_received || self.failed.is_some()
    }

    /// The next event, if the buffered bytes complete one.
    ///
    /// `Ok(None)` means more input is needed (or reading is over). An error
    /// means the peer broke the protocol: a Close with the matching code is
    /// already queued, and the transport should flush the output and close.
    ///
    /// Inlined: the common event, a small message in one frame, is taken
    /// by [`poll_small_message`](Self::poll_small_message) without leaving the
    /// caller; everything else goes through the general path.
    #[inline]
    pub fn poll_event(&mut self) -> Result<Option<Event>, ProtocolError> {
        if let Some(m) = self.poll_small_message() {
            return Ok(Some(Event::Message(m)));
        }
        self.poll_event_general()
    }

    /// The fast path of [`poll_event`](Self::poll_event), for transports
    /// that want it on its own: a whole unfragmented, uncompressed text or
    /// binary frame of at most 125 bytes (a 7-bit length) at the front of
    /// the read buffer, while no other frame or message is in progress.
    /// Anything else, including every protocol error, returns `None`
    /// without consuming a byte: then call `poll_event`, which decides (the
    /// rules live in one place).
    ///
    /// Why it exists: returned from an out-of-line call, a message goes
    /// through the stack in stores the caller reads back with wider loads,
    /// which the CPU cannot forward; two or three such trips per message
    /// cost a server under pipelined load more than decoding the frame.
    /// Inlined into the caller, the message stays in registers; kept apart
    /// from `poll_event`'s general path, it is not merged with that path's
    /// result in memory either.
    ///
    /// ```
    /// use tether_proto::{Config, Connection, Message, Role};
    /// let mut server = Connection::new(Role::Server, Config::default());
    /// // "Hello", masked (RFC 6455 §5.7).
    /// server.receive(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    /// let m = server.poll_small_message().unwrap();
    /// assert_eq!(m, Message::text("Hello"));
    /// assert!(server.poll_small_message().is_none());
    /// ```
    #[inline(always)]
    pub fn poll_small_message(&mut self) -> Option<Message> {
        let small = self.small_frame()?;
        let (header_len, len) = (small.header_len, small.len);
        let text = small.text;
        let payload =
            copy::copy_unmasked_vec(&self.read_buf[header_len..header_len + len], small.key);
        // Invalid UTF-8: the general path reads the frame again and fails.
        // (Checked on the `Vec`: handing the `Bytes` to an out-of-line check
        // would put it on the stack, with the stall described in `copy`.)
        if text && !crate::utf8::is_utf8(&payload) {
            return None;
        }
        let payload = copy::exact_to_bytes(payload);
        let m = if text {
            Message::Text(Utf8Bytes::from_validated(payload))
        } else {
            Message::Binary(payload)
        };
        self.read_buf.advance(header_len + len);
        Some(m)
    }

    /// True when nothing can be read until more input arrives, and reading
    /// it first loses nothing: the buffer holds nothing, or less than two
    /// bytes, or the incomplete start of a frame that the in-place paths
    /// ([`take_small_message`](Self::take_small_message),
    /// [`echo_small_message`](Self::echo_small_message)) will take once it
    /// is whole. That is a data frame of at most 125 bytes, final, RSV
    /// clear, masked as the role requires, within the limits, outside a
    /// fragmented message, and, for text, with no payload byte arrived yet.
    ///
    /// A transport that checks this before falling back to
    /// [`poll_event`](Self::poll_event) can read first and try the in-place
    /// path again, instead of having the next message built as an owned
    /// `Message` (an allocation and a copy) by the general path. Everything
    /// else is for `poll_event` at once, so nothing it checks early waits
    /// for more input: a header is judged as soon as its first two bytes
    /// are here, and text is UTF-8-checked as each piece arrives (a bad
    /// byte fails the connection before the rest of the frame is sent:
    /// Autobahn 6.4.*).
    ///
    /// ```
    /// use tether_proto::{Config, Connection, Role};
    /// let mut server = Connection::new(Role::Server, Config::default());
    /// assert!(server.awaits_small_frame());
    /// // The header of a masked 5-byte text frame, without its last byte.
    /// server.receive(&[0x81, 0x85, 0x37, 0xfa, 0x21]);
    /// assert!(server.awaits_small_frame());
    /// // Payload bytes of a text frame are for `poll_event` to check now.
    /// server.receive(&[0x3d, 0x7f, 0x9f]);
    /// assert!(!server.awaits_small_frame());
    /// ```
    #[inline]
    pub fn awaits_small_frame(&self) -> bool {
        if self.read_buf.len() < 2 {
            return self.frame.is_none() && self.assembly.is_none() && !self.reading_done();
        }
        match self.small_frame_start() {
            Some(f) if f.text => self.read_buf.len() < f.header_len,
            Some(f) => self.read_buf.len() < f.header_len + f.len,
            None => false,
        }
    }

    /// The small frame at the front of the read buffer, if the fast paths
    /// may take it (see [`poll_small_message`](Self::poll_small_message)
    /// for the conditions). Reads, consumes nothing.
    #[inline(always)]
    fn small_frame(&self) -> Option<SmallFrame> {
        let start = self.small_frame_start()?;
        let buf = &self.read_buf[..];
        if buf.len() < start.header_len + start.len {
            return None;
        }
        Some(SmallFrame {
            text: start.text,
            key: (start.header_len == 6).then(|| [buf[2], buf[3], buf[4], buf[5]]),
            header_len: start.header_len,
            len: start.len,
        })
    }

    /// What the first two bytes of the read buffer say, if they start a
    /// frame the fast paths may take once it is all here: the one place
    /// that decides, for [`small_frame`](Self::small_frame) and
    /// [`awaits_small_frame`](Self::awaits_small_frame).
    #[inline(always)]
    fn small_frame_start(&self) -> Option<SmallStart> {
        let buf = &self.read_buf[..];
        if buf.len() < 2 || self.frame.is_some() || self.assembly.is_some() {
            return None;
        }
        // FIN set, RSV clear, Text (1) or Binary (2).
        let text = match buf[0] {
            0x81 => true,
            0x82 => false,
            _ => return None,
        };
        let masked = buf[1] & 0x80 != 0;
        let len = usize::from(buf[1] & 0x7f);
        if len > 125
            || masked != (self.role == Role::Server)
            || len > self.config.max_frame_size
            || len > self.config.max_message_size
            || self.reading_done()
        {
            return None;
        }
        Some(SmallStart {
            text,
            header_len: if masked { 6 } else { 2 },
            len,
        })
    }

    /// [`poll_small_message`](Self::poll_small_message) without the copy:
    /// the payload is handed to `f` where it lies in the read buffer (a
    /// server's unmasked there first), then consumed. `None` (consuming
    /// nothing, `f` not called) when the fast path does not apply, including
    /// invalid UTF-8 in a text message: then `poll_event` decides.
    ///
    /// For a reader that only looks at each message (counts it, parses it
    /// into its own types): no allocation per message.
    ///
    /// ```
    /// use tether_proto::{Config, Connection, MessageRef, Role};
    /// let mut server = Connection::new(Role::Server, Config::default());
    /// // "Hello", masked (RFC 6455 §5.7).
    /// server.receive(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    /// let len = server.take_small_message(|m| {
    ///     assert_eq!(m, MessageRef::Text("Hello"));
    ///     m.len()
    /// });
    /// assert_eq!(len, Some(5));
    /// assert!(server.read_buf().is_empty());
    /// ```
    #[inline(always)]
    pub fn take_small_message<R>(&mut self, f: impl FnOnce(MessageRef<'_>) -> R) -> Option<R> {
        let small = self.small_frame()?;
        let range = small.header_len..small.header_len + small.len;
        let payload = &mut self.read_buf[range];
        if let Some(key) = small.key {
            apply_mask(payload, key, 0);
        }
        let m = if small.text {
            match simdutf8::basic::from_utf8(payload) {
                Ok(t) => MessageRef::Text(t),
                Err(_) => {
                    // Leave the frame as it came for the general path.
                    if let Some(key) = small.key {
                        apply_mask(payload, key, 0);
                    }
                    return None;
                }
            }
        } else {
            MessageRef::Binary(payload)
        };
        let r = f(m);
        self.read_buf.advance(small.header_len + small.len);
        Some(r)
    }

    /// Send back the small message at the front of the read buffer, as
    /// [`poll_small_message`](Self::poll_small_message) followed by
    /// [`send`](Self::send) would, without making a `Message` of it: the
    /// payload goes from the read buffer to the output in one pass (a
    /// server unmasks it on the way, a client masks it with a fresh key).
    /// Returns the payload's length, or `None` (consuming nothing) when the
    /// fast path does not apply: a frame `poll_small_message` would not
    /// take, invalid UTF-8 in a text message, or a send that needs more
    /// than framing (compression, fragmentation, a Close already sent).
    /// Then use `poll_event` and `send`, which decide.
    ///
    /// An echo server's whole work per message; for `echo` in the `tether`
    /// crate it saves the allocation and second copy of each message.
    ///
    /// ```
    /// use tether_proto::{Config, Connection, Role};
    /// let mut server = Connection::new(Role::Server, Config::default());
    /// // "Hello", masked (RFC 6455 §5.7).
    /// server.receive(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    /// assert_eq!(server.echo_small_message(), Some(5));
    /// assert_eq!(&server.take_output()[..], b"\x81\x05Hello");
    /// assert_eq!(server.echo_small_message(), None);
    /// ```
    #[inline(always)]
    pub fn echo_small_message(&mut self) -> Option<usize> {
        let small = self.small_frame()?;
        if self.close_sent || self.sending_fragmented || !self.sends_plain_frames() {
            return None;
        }
        let (header_len, len) = (small.header_len, small.len);
        let payload = &self.read_buf[header_len..header_len + len];
        // A server's payload arrives masked and leaves plain; a client's
        // arrives plain and leaves masked: one key applies either way.
        let (key, out_mask) = match small.key {
            Some(k) => (k, None),
            None => {
                let k = crate::mask::new_key();
                (k, Some(k))
            }
        };
        if small.text && out_mask.is_some() && !crate::utf8::is_utf8(payload) {
            return None;
        }
        let header = FrameHeader {
            fin: true,
            rsv: 0,
            opcode: if small.text {
                OpCode::Text
            } else {
                OpCode::Binary
            },
            mask: out_mask,
            payload_len: len as u64,
        };
        let tail = self.out.tail();
        let start = tail.len();
        let written = copy::append_frame_xor(tail, &header, payload, Some(key));
        if small.text && out_mask.is_none() && !crate::utf8::is_utf8(&tail[start + 2..]) {
            // Invalid UTF-8: take the frame back out; `poll_event` fails
            // the connection with the right code.
            tail.truncate(start);
            return None;
        }
        self.out.grew(written);
        self.read_buf.advance(header_len + len);
        Some(len)
    }

    /// [`poll_event`](Self::poll_event) for everything but the fast path.
    #[inline(never)]
    fn poll_event_general(&mut self) -> Result<Option<Event>, ProtocolError> {
        if self.reading_done() {
            self.read_buf.clear();
            return Ok(None);
        }
        match self.next_event() {
            Err(e) => {
                self.fail(e.clone());
                Err(e)
            }
            ok => ok,
        }
    }

    fn next_event(&mut self) -> Result<Option<Event>, ProtocolError> {
        loop {
            let mut f = match self.frame {
                Some(f) => f,
                None => match FrameHeader::decode(&self.read_buf)? {
                    None => return Ok(None),
                    Some((header, header_len)) => self.start_frame(header, header_len)?,
                },
            };
            // `start_frame` bounded the length by max_frame_size, a usize.
            let len = f.header.payload_len as usize;
            let arrived = (self.read_buf.len() - f.header_len).min(len);
            let payload = if f.done == 0 && arrived == len && len <= COPY_THRESHOLD {
                // A small frame that is all here: unmask it on the way out
                // of the read buffer, in one pass (see `copy_unmasked`), and
                // copy rather than share (see COPY_THRESHOLD).
                let at = f.header_len;
                let p = copy::copy_unmasked(&self.read_buf[at..at + len], f.header.mask);
                if f.text {
                    self.utf8.feed(&p).map_err(|_| ProtocolError::InvalidUtf8)?;
                }
                self.read_buf.advance(at + len);
                p
            } else {
                // Unmask and validate what has arrived, in place.
                if arrived > f.done {
                    let range = f.header_len + f.done..f.header_len + arrived;
                    let piece = &mut self.read_buf[range];
                    if let Some(key) = f.header.mask {
                        apply_mask(piece, key, f.done);
                    }
                    if f.text {
                        self.utf8
                            .feed(piece)
                            .map_err(|_| ProtocolError::InvalidUtf8)?;
                    }
                    f.done = arrived;
                }
                if arrived < len {
                    self.frame = Some(f);
                    return Ok(None);
                }
                self.read_buf.advance(f.header_len);
                if len <= COPY_THRESHOLD {
                    let p = copy::copy_to_bytes(&self.read_buf[..len]);
                    self.read_buf.advance(len);
                    p
                } else {
                    self.read_buf.split_to(len).freeze()
                }
            };
            self.frame = None;
            if let Some(event) = self.finish_frame(f.header, f.compressed, payload)? {
                return Ok(Some(event));
            }
        }
    }

    /// Check a new frame's header against the connection state and limits.
    fn start_frame(&mut self, h: FrameHeader, header_len: usize) -> Result<InFrame, ProtocolError> {
        let mut compressed = false;
        if h.rsv != 0 {
            compressed = self.check_rsv(&h)?;
        }
        match (self.role, h.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedClientFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedServerFrame),
            _ => {}
        }
        if h.payload_len > self.config.max_frame_size as u64 {
            return Err(ProtocolError::FrameTooLarge {
                size: h.payload_len,
                limit: self.config.max_frame_size,
            });
        }
        let text = match h.opcode {
            OpCode::Continuation => match &self.assembly {
                None => return Err(ProtocolError::UnexpectedContinuation),
                Some(a) => {
                    // A compressed message's limit applies to its inflated
                    // size, checked while inflating.
                    compressed = a.compressed;
                    let size = a.buf.len() as u64 + h.payload_len;
                    if !compressed && size > self.config.max_message_size as u64 {
                        return Err(ProtocolError::MessageTooLarge {
                            size,
                            limit: self.config.max_message_size,
                        });
                    }
                    a.text && !compressed
                }
            },
            OpCode::Text | OpCode::Binary => {
                if self.assembly.is_some() {
                    return Err(ProtocolError::ExpectedContinuation);
                }
                if !compressed && h.payload_len > self.config.max_message_size as u64 {
                    return Err(ProtocolError::MessageTooLarge {
                        size: h.payload_len,
                        limit: self.config.max_message_size,
                    });
                }
                if h.opcode == OpCode::Text {
                    self.utf8.reset();
                    !compressed
                } else {
                    false
                }
            }
            OpCode::Close | OpCode::Ping | OpCode::Pong => false,
        };
        Ok(InFrame {
            header: h,
            header_len,
            done: 0,
            text,
            compressed,
        })
    }

    /// RSV bits are set: only RSV1 on the first frame of a data message, and
    /// only with permessage-deflate negotiated (RFC 7692 §6, RFC 6455 §5.2).
    /// Continuation frames reach here with RSV1 too, and fail.
    #[cold]
    fn check_rsv(&self, h: &FrameHeader) -> Result<bool, ProtocolError> {
        if self.deflate.is_some()
            && h.rsv == RSV1
            && matches!(h.opcode, OpCode::Text | OpCode::Binary)
        {
            Ok(true)
        } else {
            Err(ProtocolError::ReservedBitsSet)
        }
    }

    /// Inflate a compressed frame's payload into the message being built,
    /// checking the message limit and (for text) UTF-8 as bytes come out.
    fn inflate(&mut self, text: bool, payload: &[u8], last: bool) -> Result<(), ProtocolError> {
        let d = self
            .deflate
            .as_deref_mut()
            .expect("compressed frames are only accepted when deflate is negotiated");
        let utf8 = &mut self.utf8;
        let rx_bits = d.rx_bits;
        let rx = d.rx.get_or_insert_with(|| Decompressor::new(rx_bits));
        rx.decompress(
            payload,
            last,
            &mut d.msg,
            self.config.max_message_size,
            |chunk| {
                if text {
                    utf8.feed(chunk).map_err(|_| ProtocolError::InvalidUtf8)
                } else {
                    Ok(())
                }
            },
        )
    }

    /// Inflate one frame of a compressed message; on its last frame, the
    /// whole message.
    fn inflate_frame(
        &mut self,
        text: bool,
        payload: &[u8],
        fin: bool,
    ) -> Result<Option<Event>, ProtocolError> {
        self.inflate(text, payload, fin)?;
        if !fin {
            return Ok(None);
        }
        let data = self.take_inflated();
        Ok(Some(Event::Message(self.complete(text, data)?)))
    }

    /// The inflated message, handed over without copying.
    fn take_inflated(&mut self) -> Bytes {
        match self.deflate.as_deref_mut() {
            Some(d) => Bytes::from(std::mem::take(&mut d.msg)),
            None => Bytes::new(),
        }
    }

    /// A frame is complete: assemble messages, answer pings, handle Close.
    fn finish_frame(
        &mut self,
        h: FrameHeader,
        compressed: bool,
        payload: Bytes,
    ) -> Result<Option<Event>, ProtocolError> {
        match h.opcode {
            OpCode::Text | OpCode::Binary if compressed => {
                let text = h.opcode == OpCode::Text;
                if !h.fin {
                    self.assembly = Some(Assembly {
                        text,
                        compressed: true,
                        buf: BytesMut::new(),
                    });
                }
                self.inflate_frame(text, &payload, h.fin)
            }
            OpCode::Text | OpCode::Binary if h.fin => Ok(Some(Event::Message(
                self.complete(h.opcode == OpCode::Text, payload)?,
            ))),
            OpCode::Text | OpCode::Binary => {
                let mut buf = BytesMut::new();
                buf.extend_from_slice(&payload);
                self.assembly = Some(Assembly {
                    text: h.opcode == OpCode::Text,
                    compressed: false,
                    buf,
                });
                Ok(None)
            }
            OpCode::Continuation => {
                let a = self.assembly.as_mut().expect("checked in start_frame");
                if a.compressed {
                    let text = a.text;
                    if h.fin {
                        self.assembly = None;
                    }
                    return self.inflate_frame(text, &payload, h.fin);
                }
                a.buf.extend_from_slice(&payload);
                if !h.fin {
                    return Ok(None);
                }
                let a = self.assembly.take().expect("present");
                Ok(Some(Event::Message(self.complete(a.text, a.buf.freeze())?)))
            }
            OpCode::Ping => {
                if self.config.auto_pong && !self.close_sent {
                    self.queue_pong(payload.clone());
                }
                Ok(Some(Event::Ping(payload)))
            }
            OpCode::Pong => Ok(Some(Event::Pong(payload))),
            OpCode::Close => {
                let frame = CloseFrame::parse(&payload)?;
                self.close_received = true;
                self.read_buf.clear();
                if !self.close_sent && !self.config.defer_close_reply {
                    // Echo the code (RFC 6455 §5.5.1); 1005 is not sendable, so
                    // a Close without a code is answered without one.
                    let reply = frame.as_ref().map(|f| CloseFrame::new(f.code, ""));
                    self.write_close(reply.as_ref());
                }
                self.peer_close = frame.clone();
                Ok(Some(Event::Close(frame)))
            }
        }
    }

    fn complete(&mut self, text: bool, payload: Bytes) -> Result<Message, ProtocolError> {
        if text {
            self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
            Ok(Message::Text(Utf8Bytes::from_validated(payload)))
        } else {
            Ok(Message::Binary(payload))
        }
    }

    /// Fail the connection (RFC 6455 §7.1.7): queue a Close with the error's
    /// code and stop reading.
    fn fail(&mut self, e: ProtocolError) {
        if !self.close_sent {
            let reason = truncate_reason(&e.to_string());
            self.write_close(Some(&CloseFrame::new(e.close_code(), reason)));
        }
        self.deferred_pong = None;
        self.read_buf.clear();
        self.frame = None;
        self.assembly = None;
        if let Some(d) = self.deflate.as_deref_mut() {
            d.msg = Vec::new();
            d.rx = None;
        }
        self.failed = Some(e);
    }

    // ----- output ------------------------------------------------------

    /// Send a complete message (split into frames if `fragment_size` is set).
    ///
    /// Inlined for the common case, one uncompressed frame, so the payload
    /// goes from the caller's registers into the output buffer without a
    /// trip through the stack.
    #[inline]
    pub fn send(&mut self, msg: Message) -> Result<(), SendError> {
        if self.close_sent {
            return Err(SendError::Closing);
        }
        if self.sending_fragmented {
            return Err(SendError::FragmentOutOfSequence);
        }
        let (opcode, payload) = match msg {
            Message::Text(t) => (OpCode::Text, t.into_bytes()),
            Message::Binary(b) => (OpCode::Binary, b),
        };
        if self.sends_plain_frames() {
            self.write_frame_rsv(opcode, true, 0, payload);
            return Ok(());
        }
        self.send_transformed(opcode, payload);
        Ok(())
    }

    /// True when a message goes out as one frame holding its payload as it
    /// is: no permessage-deflate, no fragmentation configured.
    #[inline(always)]
    fn sends_plain_frames(&self) -> bool {
        self.deflate.is_none() && self.config.fragment_size.is_none_or(|s| s == 0)
    }

    /// [`send`](Self::send) with permessage-deflate or fragmentation.
    #[inline(never)]
    fn send_transformed(&mut self, opcode: OpCode, payload: Bytes) {
        // RSV1 marks a compressed message, on its first frame only (§6).
        let (rsv, payload) = match self.deflate.as_deref_mut() {
            Some(d) if payload.len() >= d.min_size => (RSV1, d.compress(&payload)),
            _ => (0, payload),
        };
        let size = match self.config.fragment_size {
            Some(size) if size > 0 => size,
            _ => usize::MAX,
        };
        let (mut op, mut rsv, mut rest) = (opcode, rsv, payload);
        while rest.len() > size {
            self.write_frame_rsv(op, false, rsv, rest.split_to(size));
            op = OpCode::Continuation;
            rsv = 0;
        }
        self.write_frame_rsv(op, true, rsv, rest);
    }

    /// Send one frame of a message sent in pieces: the first call gives
    /// `Text` or `Binary`, later calls `Continuation`; `fin` ends the message.
    /// The caller is responsible for the pieces of a text message forming
    /// valid UTF-8 together. Fragments are never compressed, even when
    /// permessage-deflate is negotiated.
    pub fn send_fragment(
        &mut self,
        opcode: OpCode,
        fin: bool,
        payload: Bytes,
    ) -> Result<(), SendError> {
        if self.close_sent {
            return Err(SendError::Closing);
        }
        let ok = match opcode {
            OpCode::Text | OpCode::Binary => !self.sending_fragmented,
            OpCode::Continuation => self.sending_fragmented,
            _ => false,
        };
        if !ok {
            return Err(SendError::FragmentOutOfSequence);
        }
        self.sending_fragmented = !fin;
        self.write_frame(opcode, fin, payload);
        Ok(())
    }

    /// Send a ping.
    pub fn send_ping(&mut self, payload: Bytes) -> Result<(), SendError> {
        self.send_control(OpCode::Ping, payload)
    }

    /// Send an unsolicited pong (a heartbeat that expects no answer).
    pub fn send_pong(&mut self, payload: Bytes) -> Result<(), SendError> {
        self.send_control(OpCode::Pong, payload)
    }

    fn send_control(&mut self, opcode: OpCode, payload: Bytes) -> Result<(), SendError> {
        if self.close_sent {
            return Err(SendError::Closing);
        }
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(SendError::ControlPayloadTooLong(payload.len()));
        }
        self.write_frame(opcode, true, payload);
        Ok(())
    }

    /// Start (or answer) the closing handshake. `None` sends a Close without
    /// a status code. After this no data may be sent.
    pub fn close(&mut self, frame: Option<CloseFrame>) -> Result<(), SendError> {
        if self.close_sent {
            return Err(SendError::Closing);
        }
        if let Some(f) = &frame {
            if !f.code.is_valid_on_wire() {
                return Err(SendError::InvalidCloseCode(f.code.0));
            }
            if f.reason.len() > MAX_REASON_LEN {
                return Err(SendError::CloseReasonTooLong(f.reason.len()));
            }
        }
        self.write_close(frame.as_ref());
        Ok(())
    }

    fn write_close(&mut self, frame: Option<&CloseFrame>) {
        let mut payload = BytesMut::new();
        if let Some(f) = frame {
            f.encode_payload(&mut payload);
        }
        self.deferred_pong = None;
        self.write_frame(OpCode::Close, true, payload.freeze());
        self.close_sent = true;
    }

    fn queue_pong(&mut self, payload: Bytes) {
        if self.out.len() > self.config.control_backlog {
            // The peer is not reading: answer only the latest ping (§5.5.3).
            self.deferred_pong = Some(payload);
        } else {
            self.write_frame(OpCode::Pong, true, payload);
        }
    }

    /// Encode one frame (RSV bits clear) into the output queue.
    #[inline]
    fn write_frame(&mut self, opcode: OpCode, fin: bool, payload: Bytes) {
        self.write_frame_rsv(opcode, fin, 0, payload)
    }

    /// Encode one frame into the output queue.
    fn write_frame_rsv(&mut self, opcode: OpCode, fin: bool, rsv: u8, payload: Bytes) {
        let mask = match self.role {
            Role::Client => Some(crate::mask::new_key()),
            Role::Server => None,
        };
        let header = FrameHeader {
            fin,
            rsv,
            opcode,
            mask,
            payload_len: payload.len() as u64,
        };
        // Large payloads are queued by reference; a client's are masked a
        // piece at a time as they are written (see `output`).
        let zero_copy = match mask {
            None => payload.len() >= ZERO_COPY_THRESHOLD,
            Some(_) => payload.len() >= STAGED_MASK_THRESHOLD,
        };
        let body: &[u8] = if zero_copy { &[] } else { &payload };
        let tail = self.out.tail();
        // Header and payload (masked on the way for a client) in one pass.
        let written = copy::append_frame(tail, &header, body);
        self.out.grew(written);
        if zero_copy {
            match mask {
                None => self.out.push_bytes(payload),
                Some(key) => self.out.push_masked(payload, key),
            }
        }
    }

    /// The bytes waiting to be written. Drain with [`Buf::advance`] after
    /// writing (or `chunks_vectored` for vectored writes).
    pub fn output(&mut self) -> &mut Output {
        &mut self.out
    }

    /// Take all waiting bytes as one buffer (convenient in tests).
    pub fn take_output(&mut self) -> Bytes {
        let mut all = BytesMut::with_capacity(self.out.len());
        while self.out.has_remaining() {
            let c = self.out.chunk();
            let n = c.len();
            all.extend_from_slice(c);
            self.out.advance(n);
        }
        self.on_output_drained();
        all.freeze()
    }

    /// Bytes waiting to be written (the WebSocket API's `bufferedAmount`).
    pub fn buffered_amount(&self) -> usize {
        self.out.len()
    }

    /// Call after draining some output: sends a pong deferred by backlog.
    pub fn on_output_drained(&mut self) {
        if self.out.len() <= self.config.control_backlog {
            if let Some(p) = self.deferred_pong.take() {
                if !self.close_sent {
                    self.write_frame(OpCode::Pong, true, p);
                }
            }
        }
    }

    /// Release buffer memory while the connection is idle.
    pub fn shrink_buffers(&mut self) {
        self.out.shrink();
        if self.read_buf.is_empty() && self.frame.is_none() {
            self.read_buf = BytesMut::new();
        }
    }

    /// Take the read buffer and the output buffer while the connection is
    /// idle (nothing buffered either way), leaving it with none: a transport
    /// that serves many connections can keep them in a pool instead of
    /// holding two buffers per idle connection. Returns empty buffers when
    /// not idle. [`Connection::read_buf`] and [`Output::give_buffer`] put
    /// buffers back before the next read or send.
    pub fn take_idle_buffers(&mut self) -> (BytesMut, BytesMut) {
        if !self.read_buf.is_empty() || self.frame.is_some() || self.deferred_pong.is_some() {
            return (BytesMut::new(), BytesMut::new());
        }
        let out = self.out.take_buffer().unwrap_or_default();
        (std::mem::take(&mut self.read_buf), out)
    }

    /// The transport is gone: drop queued output.
    pub fn discard_output(&mut self) {
        self.out.clear();
        self.deferred_pong = None;
    }

    // ----- state -------------------------------------------------------

    /// The closing handshake's progress.
    pub fn close_state(&self) -> CloseState {
        match (
            self.close_sent,
            self.close_received || self.failed.is_some(),
        ) {
            (false, false) => CloseState::Open,
            (true, false) => CloseState::CloseSent,
            (false, true) => CloseState::CloseReceived,
            (true, true) => CloseState::Closed,
        }
    }

    /// True once we have sent (or queued) a Close.
    pub fn close_sent(&self) -> bool {
        self.close_sent
    }

    /// The peer's Close, if it sent one with a status code.
    pub fn peer_close(&self) -> Option<&CloseFrame> {
        self.peer_close.as_ref()
    }

    /// The permessage-deflate parameters in use, if negotiated.
    pub fn deflate(&self) -> Option<DeflateParams> {
        if self.deflate.is_some() {
            self.config.negotiated_deflate
        } else {
            None
        }
    }

    /// The protocol error that failed the connection, if any.
    pub fn failure(&self) -> Option<&ProtocolError> {
        self.failed.as_ref()
    }
}

impl Connection {
    /// Whether (compressor, decompressor) exist, for memory tests.
    #[cfg(test)]
    pub(crate) fn deflate_allocated(&self) -> (bool, bool) {
        self.deflate
            .as_ref()
            .map_or((false, false), |d| d.allocated())
    }

    /// (read buffer, inflate buffer) capacities, for memory-bound tests.
    #[cfg(test)]
    pub(crate) fn buffer_capacities(&self) -> (usize, usize) {
        (
            self.read_buf.capacity(),
            self.deflate.as_ref().map_or(0, |d| d.msg.capacity()),
        )
    }
}

/// Cut a reason to fit a close frame, at a character boundary.
fn truncate_reason(s: &str) -> String {
    if s.len() <= MAX_REASON_LEN {
        return s.to_owned();
    }
    let mut end = MAX_REASON_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[cfg(test)]
mod tests;
