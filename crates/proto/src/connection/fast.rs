//! Fast paths for the commonest frame: a complete, unfragmented,
//! uncompressed data message of at most 125 bytes at the front of the read
//! buffer. Each takes it or leaves every byte for the general path
//! (`read.rs`), which decides everything else.

use super::{Connection, Role};
use crate::copy;
use crate::frame::{FrameHeader, OpCode};
use crate::mask::apply_mask;
use crate::message::{Message, MessageRef};
use crate::utf8::Utf8Bytes;
use bytes::Buf;

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
}
