//! The sending side: messages, fragments, control frames and the Close
//! encoded into the output queue ([`Sender`]), and the connection's calls
//! that reach it.

use super::deflate::DeflateTx;
use super::{Connection, Role};
use crate::close::{CloseFrame, MAX_REASON_LEN};
use crate::config::Config;
use crate::copy;
use crate::error::SendError;
use crate::frame::{FrameHeader, OpCode, MAX_CONTROL_PAYLOAD, RSV1};
use crate::message::{Message, MessageRef};
use crate::output::{Output, STAGED_MASK_THRESHOLD, ZERO_COPY_THRESHOLD};
use crate::random::Randomness;
use bytes::{Buf, Bytes, BytesMut};

/// The sending half of a [`Connection`]: encodes frames into the output
/// queue. The connection's `send*` and `close` calls go here; a reader
/// in place ([`Connection::read_in_place`]) gets it alongside the message
/// it reads, so that a reply can be framed while the message is borrowed.
#[derive(Debug)]
pub struct Sender {
    role: Role,
    out: Output,
    /// A pong deferred because the output was backed up (only the latest).
    pub(super) deferred_pong: Option<Bytes>,
    /// An outgoing fragmented message is in progress.
    sending_fragmented: bool,
    pub(super) close_sent: bool,
    /// Split messages into frames of at most this many bytes.
    fragment_size: Option<usize>,
    /// Output bytes above which only the latest ping is answered.
    control_backlog: usize,
    /// permessage-deflate's compressing half, if negotiated.
    pub(super) deflate: Option<Box<DeflateTx>>,
    /// Where a client's masking keys come from.
    random: Randomness,
}

impl Sender {
    pub(super) fn new(role: Role, config: &Config, deflate: Option<Box<DeflateTx>>) -> Self {
        Sender {
            role,
            out: Output::default(),
            deferred_pong: None,
            sending_fragmented: false,
            close_sent: false,
            fragment_size: config.fragment_size.filter(|&s| s > 0),
            control_backlog: config.control_backlog,
            deflate,
            random: config.random,
        }
    }

    /// Send a complete message (split into frames if `fragment_size` is set).
    /// [`Connection::send`] is this.
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
        self.deflate.is_none() && self.fragment_size.is_none()
    }

    /// [`send`](Self::send) with permessage-deflate or fragmentation.
    #[inline(never)]
    fn send_transformed(&mut self, opcode: OpCode, payload: Bytes) {
        // RSV1 marks a compressed message, on its first frame only (§6).
        let (rsv, payload) = match self.deflate.as_deref_mut() {
            Some(d) if payload.len() >= d.min_size => (RSV1, d.compress(&payload)),
            _ => (0, payload),
        };
        let size = self.fragment_size.unwrap_or(usize::MAX);
        let (mut op, mut rsv, mut rest) = (opcode, rsv, payload);
        while rest.len() > size {
            self.write_frame_rsv(op, false, rsv, rest.split_to(size));
            op = OpCode::Continuation;
            rsv = 0;
        }
        self.write_frame_rsv(op, true, rsv, rest);
    }

    /// Send a message read in place (see [`Connection::read_in_place`]) or
    /// held elsewhere, without making it a `Message` first: its payload is
    /// copied into the output with its header in one pass (masked on the
    /// way for a client). The same rules and framing as [`send`](Self::send).
    #[inline]
    pub fn send_ref(&mut self, msg: MessageRef<'_>) -> Result<(), SendError> {
        if self.close_sent {
            return Err(SendError::Closing);
        }
        if self.sending_fragmented {
            return Err(SendError::FragmentOutOfSequence);
        }
        let (opcode, payload) = match msg {
            MessageRef::Text(t) => (OpCode::Text, t.as_bytes()),
            MessageRef::Binary(b) => (OpCode::Binary, b),
        };
        if self.sends_plain_frames() && payload.len() < ZERO_COPY_THRESHOLD {
            self.write_frame_from(opcode, payload);
            return Ok(());
        }
        self.send_transformed(opcode, Bytes::copy_from_slice(payload));
        Ok(())
    }

    /// Encode one final, uncompressed frame whose payload (shorter than
    /// `ZERO_COPY_THRESHOLD`) is borrowed: copied with its header in one
    /// pass.
    #[inline(always)]
    fn write_frame_from(&mut self, opcode: OpCode, payload: &[u8]) {
        let mask = match self.role {
            Role::Client => Some(self.random.mask_key()),
            Role::Server => None,
        };
        let header = FrameHeader {
            fin: true,
            rsv: 0,
            opcode,
            mask,
            payload_len: payload.len() as u64,
        };
        let written = copy::append_frame(self.out.tail(), &header, payload);
        self.out.grew(written);
    }

    /// See [`Connection::send_fragment`].
    pub(super) fn send_fragment(
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

    pub(super) fn send_control(&mut self, opcode: OpCode, payload: Bytes) -> Result<(), SendError> {
        if self.close_sent {
            return Err(SendError::Closing);
        }
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(SendError::ControlPayloadTooLong(payload.len()));
        }
        self.write_frame(opcode, true, payload);
        Ok(())
    }

    /// Start (or answer) the closing handshake (see [`Connection::close`]).
    pub(super) fn close(&mut self, frame: Option<CloseFrame>) -> Result<(), SendError> {
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

    pub(super) fn write_close(&mut self, frame: Option<&CloseFrame>) {
        let mut payload = BytesMut::new();
        if let Some(f) = frame {
            f.encode_payload(&mut payload);
        }
        self.deferred_pong = None;
        self.write_frame(OpCode::Close, true, payload.freeze());
        self.close_sent = true;
    }

    pub(super) fn queue_pong(&mut self, payload: Bytes) {
        if self.out.len() > self.control_backlog {
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
            Role::Client => Some(self.random.mask_key()),
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

    /// Call after draining some output: sends a pong deferred by backlog.
    pub(super) fn on_output_drained(&mut self) {
        if self.out.len() <= self.control_backlog {
            if let Some(p) = self.deferred_pong.take() {
                if !self.close_sent {
                    self.write_frame(OpCode::Pong, true, p);
                }
            }
        }
    }
}

impl Connection {
    /// Send a complete message (split into frames if `fragment_size` is set).
    ///
    /// Inlined for the common case, one uncompressed frame, so the payload
    /// goes from the caller's registers into the output buffer without a
    /// trip through the stack.
    #[inline]
    pub fn send(&mut self, msg: Message) -> Result<(), SendError> {
        self.tx.send(msg)
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
        self.tx.send_fragment(opcode, fin, payload)
    }

    /// Send a ping.
    pub fn send_ping(&mut self, payload: Bytes) -> Result<(), SendError> {
        self.tx.send_control(OpCode::Ping, payload)
    }

    /// Send an unsolicited pong (a heartbeat that expects no answer).
    pub fn send_pong(&mut self, payload: Bytes) -> Result<(), SendError> {
        self.tx.send_control(OpCode::Pong, payload)
    }

    /// Start (or answer) the closing handshake. `None` sends a Close without
    /// a status code. After this no data may be sent.
    pub fn close(&mut self, frame: Option<CloseFrame>) -> Result<(), SendError> {
        self.tx.close(frame)
    }

    /// The bytes waiting to be written. Drain with [`Buf::advance`] after
    /// writing (or `chunks_vectored` for vectored writes).
    pub fn output(&mut self) -> &mut Output {
        &mut self.tx.out
    }

    /// Take all waiting bytes as one buffer (convenient in tests).
    pub fn take_output(&mut self) -> Bytes {
        let out = &mut self.tx.out;
        let mut all = BytesMut::with_capacity(out.len());
        while out.has_remaining() {
            let c = out.chunk();
            let n = c.len();
            all.extend_from_slice(c);
            out.advance(n);
        }
        self.on_output_drained();
        all.freeze()
    }

    /// Bytes waiting to be written (the WebSocket API's `bufferedAmount`).
    pub fn buffered_amount(&self) -> usize {
        self.tx.out.len()
    }

    /// Call after draining some output: sends a pong deferred by backlog.
    pub fn on_output_drained(&mut self) {
        self.tx.on_output_drained()
    }

    /// Release buffer memory while the connection is idle.
    pub fn shrink_buffers(&mut self) {
        self.tx.out.shrink();
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
        if !self.read_buf.is_empty() || self.frame.is_some() || self.tx.deferred_pong.is_some() {
            return (BytesMut::new(), BytesMut::new());
        }
        let out = self.tx.out.take_buffer().unwrap_or_default();
        (std::mem::take(&mut self.read_buf), out)
    }

    /// The transport is gone: drop queued output.
    pub fn discard_output(&mut self) {
        self.tx.out.clear();
        self.tx.deferred_pong = None;
    }
}
