//! The in-place read path and the owned fast path, for the commonest frame:
//! a complete, final, uncompressed text or binary frame of at most 125
//! bytes (a 7-bit length, RSV clear, masked as the role requires, within
//! the limits) at the front of the read buffer, while no other frame or
//! message is in progress and reading is not over. Each takes such a frame
//! or leaves every byte for the general path (`read.rs`), which decides
//! everything else, including every protocol error: the rules live in one
//! place (`small_frame_start`).

use super::{Connection, Role, Sender};
use crate::copy;
use crate::mask::apply_mask;
use crate::message::{Message, MessageRef};
use crate::utf8::Utf8Bytes;
use bytes::Buf;

/// What [`Connection::read_in_place`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InPlace<R> {
    /// The message at the front was handed to the reader, which returned
    /// this; the message is consumed.
    Read(R),
    /// Nothing can be read until more input arrives, and reading it first
    /// loses nothing: the buffer holds nothing whole, and what it holds (if
    /// anything) is the start of a frame this path will take once it is
    /// complete. Read from the transport, then call again.
    NeedInput,
    /// What is at the front is for [`Connection::poll_event`]: another
    /// kind of frame, a larger or fragmented message, invalid UTF-8, a
    /// protocol error, text whose payload has begun to arrive (checked as it
    /// arrives), or the end of reading. Nothing was consumed.
    PollEvent,
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
    /// Read the message at the front of the read buffer where it lies, if
    /// it is a small one (see the module docs of [`crate::connection`]):
    /// `f` gets it borrowed (a server's payload unmasked in place first,
    /// text already checked as UTF-8) together with the connection's
    /// [`Sender`], so that a reply can be framed while the message is
    /// borrowed. No allocation, and for a reply one copy.
    ///
    /// The result says what to do next: [`InPlace::Read`] (again),
    /// [`InPlace::NeedInput`] (read from the transport first) or
    /// [`InPlace::PollEvent`] (call [`poll_event`](Self::poll_event), which
    /// decides). Order is kept: only the message at the front is taken.
    ///
    /// ```
    /// use tether_proto::{Config, Connection, InPlace, MessageRef, Role};
    /// let mut server = Connection::new(Role::Server, Config::default());
    /// assert_eq!(server.read_in_place(|_, _| ()), InPlace::NeedInput);
    /// // "Hello", masked (RFC 6455 §5.7).
    /// server.receive(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    /// // Echo it.
    /// let read = server.read_in_place(|m, tx| {
    ///     assert_eq!(m, MessageRef::Text("Hello"));
    ///     tx.send_ref(m)
    /// });
    /// assert_eq!(read, InPlace::Read(Ok(())));
    /// assert_eq!(&server.take_output()[..], b"\x81\x05Hello");
    /// // A ping is for `poll_event`.
    /// server.receive(&[0x89, 0x80, 0, 0, 0, 0]);
    /// assert_eq!(server.read_in_place(|_, _| ()), InPlace::PollEvent);
    /// ```
    #[inline(always)]
    pub fn read_in_place<R>(
        &mut self,
        f: impl FnOnce(MessageRef<'_>, &mut Sender) -> R,
    ) -> InPlace<R> {
        let Some(small) = self.small_frame() else {
            return if self.awaits_small_frame() {
                InPlace::NeedInput
            } else {
                InPlace::PollEvent
            };
        };
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
                    return InPlace::PollEvent;
                }
            }
        } else {
            MessageRef::Binary(payload)
        };
        let r = f(m, &mut self.tx);
        self.read_buf.advance(small.header_len + small.len);
        InPlace::Read(r)
    }

    /// [`poll_event`](Self::poll_event)'s fast path: the small message at
    /// the front as a `Message`, or `None` without consuming a byte.
    ///
    /// Why it is apart: returned from an out-of-line call, a message goes
    /// through the stack in stores the caller reads back with wider loads,
    /// which the CPU cannot forward; two or three such trips per message
    /// cost a server under pipelined load more than decoding the frame.
    /// Inlined into the caller, the message stays in registers; kept apart
    /// from `poll_event`'s general path, it is not merged with that path's
    /// result in memory either.
    #[inline(always)]
    pub(super) fn poll_small_message(&mut self) -> Option<Message> {
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
    /// it first loses nothing ([`InPlace::NeedInput`]): the buffer holds
    /// less than two bytes, or the incomplete start of a frame the in-place
    /// path will take once it is whole, and for text only until its header
    /// is whole, so that nothing `poll_event` judges early (a bad header,
    /// invalid UTF-8 in a first piece: Autobahn 6.4.*) waits for more input.
    #[inline]
    fn awaits_small_frame(&self) -> bool {
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
    /// may take it (see the module docs for the conditions). Reads,
    /// consumes nothing.
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
    /// that decides, for `small_frame` and `awaits_small_frame`.
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
}
