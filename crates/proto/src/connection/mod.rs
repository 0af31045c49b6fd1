//! The WebSocket connection state machine (RFC 6455 §5-§7), without I/O.
//!
//! Bytes from the transport go in ([`Connection::read_into`] or
//! [`Connection::receive`]); events come out ([`Connection::poll_event`]);
//! messages the application sends are encoded into an output queue
//! ([`Connection::output`]) that the transport drains. There is no socket and
//! no clock: the time is passed in when the connection's one deadline
//! ([`Connection::poll_timeout`]) has passed ([`Connection::handle_timeout`]),
//! which drives the keepalive and the closing handshake's deadlines. So the
//! same code runs under tokio, in tests, and in fuzzers, and every behaviour
//! is deterministic given its input and the times it is given.
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
//! The code is split by direction: `read.rs` is the general read path
//! (headers, payloads, fragments, control frames, failing the connection),
//! `fast.rs` the fast paths for small single-frame messages, `write.rs` the
//! sending side and the output queue, `deflate.rs` the permessage-deflate
//! state, `timers.rs` the deadlines; this file holds the state they share
//! and the calls that inspect it.
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

use crate::close::CloseFrame;
use crate::config::Config;
use crate::deflate::DeflateParams;
use crate::error::ProtocolError;
use crate::message::Event;
use crate::utf8::Utf8Validator;
use bytes::BytesMut;

mod deflate;
mod fast;
mod read;
mod timers;
mod write;

use deflate::DeflateRx;
pub use fast::InPlace;
use read::{Assembly, InFrame};
use timers::Timers;
pub use write::Sender;

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

/// One end of a WebSocket connection, as a pure state machine.
///
/// Its calls are of six kinds; a transport makes them in this order, in a
/// loop (quinn-proto's `Connection` is the model):
///
/// * **start**: [`handle_timeout`](Self::handle_timeout) once with the
///   current time, which starts the connection's clock (a connection never
///   given the time has no deadlines);
/// * **input**: [`read_into`](Self::read_into) (read straight into its
///   buffer; [`read_buf`](Self::read_buf) makes room first) or
///   [`receive`](Self::receive) (copy in). Either tells the keepalive that
///   the peer is alive, with a flag: input never needs the time;
/// * **reading**, after each input, until it says more input is needed:
///   [`poll_event`](Self::poll_event) returns the next event, owned, and
///   decides everything (every rule, every protocol error); a transport
///   that wants the commonest message without an allocation calls
///   [`read_in_place`](Self::read_in_place) first and does what its
///   [`InPlace`] answer says: `Read` (call it again), `NeedInput` (read
///   first: nothing is whole, and waiting loses nothing), `PollEvent` (call
///   `poll_event` now). The two take messages from the same buffer in
///   order, so they can be mixed freely;
/// * **sending**: [`send`](Self::send), [`send_fragment`](Self::send_fragment),
///   [`send_ping`](Self::send_ping), [`send_pong`](Self::send_pong),
///   [`close`](Self::close) (all through the connection's [`Sender`], which
///   a reader in place gets with its message);
/// * **output**, after any of the above: write what
///   [`output`](Self::output) holds, then call
///   [`on_output_drained`](Self::on_output_drained) (a pong deferred while
///   the output was backed up goes out then);
/// * **timer**, before waiting for input or for the socket: arm one timer
///   at [`poll_timeout`](Self::poll_timeout) (`None`: nothing is timed; an
///   instant already passed: at once, a deadline starts from the current
///   time). When it fires, call [`handle_timeout`](Self::handle_timeout)
///   with the current time, then **output** (it may have queued a keepalive
///   ping or the Close reply) and **timer** again. Its errors end the
///   connection: [`Timeout::KeepalivePong`](crate::Timeout::KeepalivePong),
///   stop reading and wind down (the closing deadline still bounds that);
///   [`Timeout::ClosingHandshake`](crate::Timeout::ClosingHandshake), close
///   the transport now (every later call says so again).
///
/// The rest inspect state (`close_state`, `peer_close`, `failure`, ...) or
/// manage buffers for a transport that pools them.
///
/// Time is whatever the transport says it is, so tests drive the deadlines
/// with made-up instants:
///
/// ```
/// use std::time::{Duration, Instant};
/// use tether_proto::{Config, Connection, Keepalive, Role, Timeout};
/// let keepalive = Keepalive::new(Duration::from_secs(30), Duration::from_secs(10));
/// let mut conn = Connection::new(Role::Server, Config::default().with_keepalive(Some(keepalive)));
/// let start = Instant::now();
/// conn.handle_timeout(start).unwrap();
/// let check = conn.poll_timeout().unwrap();
/// assert_eq!(check, start + Duration::from_secs(30));
/// conn.handle_timeout(check).unwrap(); // nothing heard: a ping is queued
/// assert!(conn.buffered_amount() > 0);
/// let dead = conn.poll_timeout().unwrap();
/// let after = Duration::from_secs(10);
/// assert_eq!(conn.handle_timeout(dead), Err(Timeout::KeepalivePong { after }));
/// ```
#[derive(Debug)]
pub struct Connection {
    role: Role,
    config: Config,
    read_buf: BytesMut,
    frame: Option<InFrame>,
    assembly: Option<Assembly>,
    utf8: Utf8Validator,
    /// The sending half: the output queue and what it depends on.
    tx: Sender,
    close_received: bool,
    failed: Option<ProtocolError>,
    peer_close: Option<CloseFrame>,
    /// permessage-deflate's inflating half, if negotiated.
    deflate: Option<Box<DeflateRx>>,
    /// Keepalive and the closing deadline.
    timers: Timers,
}

impl Connection {
    /// A connection whose opening handshake is complete.
    ///
    /// permessage-deflate is active when `config.negotiated_deflate` is set.
    pub fn new(role: Role, config: Config) -> Self {
        let (tx_deflate, deflate) = match &config.negotiated_deflate {
            Some(p) => {
                let (tx, rx) = deflate::halves(role, p, &config);
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        Connection {
            deflate,
            role,
            tx: Sender::new(role, &config, tx_deflate),
            config,
            read_buf: BytesMut::new(),
            frame: None,
            assembly: None,
            utf8: Utf8Validator::new(),
            close_received: false,
            failed: None,
            peer_close: None,
            timers: Timers::default(),
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

    /// The buffer the transport reads into: make room in it here (or lend
    /// it one, see [`take_idle_buffers`](Self::take_idle_buffers)), then
    /// read with [`read_into`](Self::read_into). Bytes added here directly
    /// are not seen by the keepalive.
    pub fn read_buf(&mut self) -> &mut BytesMut {
        &mut self.read_buf
    }

    /// Read into the read buffer without a copy: `read` appends to it (into
    /// its spare capacity, e.g. with tokio's `poll_read_buf`) and its result
    /// is returned. Bytes it adds count as a sign of life for the keepalive
    /// (a flag: no clock is read).
    #[inline]
    pub fn read_into<R>(&mut self, read: impl FnOnce(&mut BytesMut) -> R) -> R {
        let before = self.read_buf.len();
        let result = read(&mut self.read_buf);
        if self.read_buf.len() > before {
            self.timers.heard = true;
        }
        result
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
            self.timers.heard |= !data.is_empty();
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
    /// without leaving the caller (`fast.rs`); everything else goes through
    /// the general path (`read.rs`).
    #[inline]
    pub fn poll_event(&mut self) -> Result<Option<Event>, ProtocolError> {
        if let Some(m) = self.poll_small_message() {
            return Ok(Some(Event::Message(m)));
        }
        self.poll_event_general()
    }
    // ----- state -------------------------------------------------------

    /// The closing handshake's progress.
    pub fn close_state(&self) -> CloseState {
        match (
            self.tx.close_sent,
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
        self.tx.close_sent
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
        (
            self.tx.deflate.as_ref().is_some_and(|d| d.allocated()),
            self.deflate.as_ref().is_some_and(|d| d.rx.is_some()),
        )
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

#[cfg(test)]
mod tests;
