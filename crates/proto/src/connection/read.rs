//! The general read path: frame headers checked against the connection's
//! state and limits, payloads unmasked and UTF-8-checked in place as they
//! arrive, fragments assembled, control frames answered, the peer's Close
//! handled, and a protocol error turned into a failed connection.

use super::{Connection, Role, COPY_THRESHOLD};
use crate::close::{CloseFrame, MAX_REASON_LEN};
use crate::copy;
use crate::error::ProtocolError;
use crate::frame::{FrameHeader, OpCode, RSV1};
use crate::mask::apply_mask;
use crate::message::{Event, Message};
use crate::utf8::Utf8Bytes;
use bytes::{Buf, Bytes, BytesMut};

/// The frame being read: its header and how much of its payload is processed.
#[derive(Clone, Copy, Debug)]
pub(super) struct InFrame {
    pub(super) header: FrameHeader,
    pub(super) header_len: usize,
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
pub(super) struct Assembly {
    text: bool,
    /// Compressed message: the inflated bytes collect in `DeflateState::msg`
    /// and `buf` stays empty.
    compressed: bool,
    buf: BytesMut,
}

impl Connection {
    /// [`poll_event`](Self::poll_event) for everything but the fast path.
    #[inline(never)]
    pub(super) fn poll_event_general(&mut self) -> Result<Option<Event>, ProtocolError> {
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
                if self.config.auto_pong && !self.tx.close_sent {
                    self.tx.queue_pong(payload.clone());
                }
                Ok(Some(Event::Ping(payload)))
            }
            OpCode::Pong => Ok(Some(Event::Pong(payload))),
            OpCode::Close => {
                let frame = CloseFrame::parse(&payload)?;
                self.close_received = true;
                self.read_buf.clear();
                if !self.tx.close_sent && !self.config.defer_close_reply {
                    // Echo the code (RFC 6455 §5.5.1); 1005 is not sendable, so
                    // a Close without a code is answered without one.
                    let reply = frame.as_ref().map(|f| CloseFrame::new(f.code, ""));
                    self.tx.write_close(reply.as_ref());
                }
                self.peer_close = frame.clone();
                Ok(Some(Event::Close(frame)))
            }
        }
    }

    pub(super) fn complete(
        &mut self,
        text: bool,
        payload: Bytes,
    ) -> Result<Message, ProtocolError> {
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
        if !self.tx.close_sent {
            let reason = truncate_reason(&e.to_string());
            self.tx
                .write_close(Some(&CloseFrame::new(e.close_code(), reason)));
        }
        self.tx.deferred_pong = None;
        self.read_buf.clear();
        self.frame = None;
        self.assembly = None;
        if let Some(d) = self.deflate.as_deref_mut() {
            d.msg = Vec::new();
            d.rx = None;
        }
        self.failed = Some(e);
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
