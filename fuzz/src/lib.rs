//! Shared harness of the `connection_server` and `connection_client` fuzz
//! targets: drive a [`Connection`] with arbitrary peer bytes, arriving in
//! arbitrary chunks, interleaved with arbitrary application calls and partial
//! drains of the output, and check the invariants every transport relies on.
//!
//! Input layout (everything is optional; short inputs use defaults):
//!
//! ```text
//! [frame limit] [message limit] [flags] [control backlog] [K] [K op bytes] [peer bytes...]
//! ```
//!
//! The limits are small so the limit paths are reachable. The op bytes are
//! used cyclically; each one feeds a chunk of peer bytes, drains some output,
//! or makes an application call. Whatever peer bytes remain at the end are
//! fed in one piece. Each step also advances a clock by `op * 4` ms, and the
//! connection is given the time whenever its deadline has passed, as a
//! transport's timer would (keepalive every 1 s with a 400 ms pong timeout,
//! a 1.5 s close timeout; the low bit of the frame limit byte turns on
//! `defer_close_reply`).
//!
//! Invariants checked:
//!
//! 1. after `poll_event` returns an error, nothing more is ever delivered,
//!    the state is `Closed`, and (unless we had already sent a Close) the
//!    output ends with a Close frame carrying the error's close code;
//! 2. after the peer's Close is delivered, nothing more is delivered and our
//!    Close is queued;
//! 3. the output queue never holds more than what the application queued
//!    since it was last empty, plus the control backlog and two control
//!    frames (a ping flood cannot grow it);
//! 4. delivered messages respect the limits and text is UTF-8;
//! 5. everything written is a valid frame sequence for our role: a fresh
//!    peer `Connection` reads it without error, and nothing follows our Close;
//! 6. a refused application call changes nothing;
//! 7. the in-place path (`read_in_place`, alone and replying with
//!    `Sender::send_ref`), tried first on some chunks, delivers and echoes
//!    what `poll_event` would, under the same invariants (an echo counts as
//!    an application send);
//! 8. the deadlines: `handle_timeout` leaves no deadline passed (but the
//!    closing one, which ends the run); a keepalive ping is queued only while
//!    the connection is open; the peer is declared dead only when nothing
//!    arrived for the pong timeout after a ping; the closing deadline passes
//!    only once our Close is queued (or the peer is dead), and no sooner than
//!    the close timeout after;
//! 9. left alone after its input, every connection ends by its deadlines.
//!
//! Flag bits 5-7 of the input turn on permessage-deflate as if negotiated, so
//! compressed input (and its limits) is fuzzed as well.

use bytes::{Buf, Bytes};
use std::io::IoSlice;
use std::time::{Duration, Instant};
use tether_proto::deflate::{DeflateConfig, DeflateParams};
use tether_proto::frame::{FrameHeader, OpCode};
use tether_proto::{
    CloseCode, CloseFrame, CloseState, Config, Connection, Event, InPlace, Keepalive, Message,
    Role, SendError, Timeout,
};

/// Largest control frame on the wire: 2 header bytes, 4 mask bytes, 125 payload.
const MAX_CONTROL_FRAME: usize = 2 + 4 + 125;

/// Application sends stop after this many bytes (keeps runs fast).
const MAX_APP_TOTAL: usize = 64 * 1024;
/// The same with compression on (compressing is what the time goes on).
const MAX_APP_TOTAL_DEFLATE: usize = 8 * 1024;

/// Cap on harness steps, so every input terminates quickly.
const MAX_STEPS: usize = 2048;

const KEEPALIVE_INTERVAL: Duration = Duration::from_millis(1000);
const PONG_TIMEOUT: Duration = Duration::from_millis(400);
const CLOSE_TIMEOUT: Duration = Duration::from_millis(1500);

struct Harness {
    conn: Connection,
    /// Everything drained from the output so far.
    sent: Vec<u8>,
    /// Upper bound on application bytes in the output queue.
    app_pending: usize,
    /// Application bytes queued over the whole run.
    app_total: usize,
    /// A Close event or an error was delivered.
    finished: bool,
    /// The close code the output must end with, after a failure.
    failure_code: Option<CloseCode>,
    /// The clock the connection is given.
    now: Instant,
    /// When the last keepalive ping was queued, and whether peer bytes
    /// were fed since.
    keepalive_ping: Option<Instant>,
    fed_since_ping: bool,
    /// The keepalive declared the peer dead: a transport reads no more.
    peer_dead: bool,
    /// The first time the connection was given while closing (our Close
    /// queued or the peer dead): the closing deadline starts there.
    closing_since: Option<Instant>,
    /// The closing deadline passed: the transport is closed.
    transport_closed: bool,
}

/// permessage-deflate (RFC 7692) as if negotiated, when flag bits 5-7 are
/// all set (one input in eight: compression state is costly to set up, and
/// the plain paths deserve most of the time); the low bits of `params` pick
/// the no_context_takeover parameters. Outgoing messages of 16 bytes or more
/// are compressed.
fn deflate_config(flags: u8, params: u8) -> Config {
    if flags >> 5 != 0b111 {
        return Config::default();
    }
    Config::default()
        .with_deflate(Some(
            DeflateConfig::default()
                .with_min_size(16)
                // The fastest level: the fuzzer is after our framing, not zlib.
                .with_level(1),
        ))
        .with_negotiated_deflate(Some(DeflateParams {
            server_no_context_takeover: params & 1 != 0,
            client_no_context_takeover: params & 2 != 0,
            ..DeflateParams::default()
        }))
}

/// Run one fuzz input against a connection of the given role.
pub fn run_connection(role: Role, data: &[u8]) {
    let byte = |i: usize| data.get(i).copied().unwrap_or(0xff);
    let max_frame_size = 1 + byte(0) as usize * 4;
    let max_message_size = 1 + byte(1) as usize * 8;
    let flags = byte(2);
    let config = deflate_config(flags, byte(3))
        .with_max_frame_size(max_frame_size)
        .with_max_message_size(max_message_size)
        .with_auto_pong(flags & 1 != 0)
        .with_control_backlog(byte(3) as usize * 4)
        .with_fragment_size(match (flags >> 1) & 0x0f {
            0 => None,
            n => Some(n as usize * 3),
        })
        .with_keepalive(Some(Keepalive::new(KEEPALIVE_INTERVAL, PONG_TIMEOUT)))
        .with_close_timeout(CLOSE_TIMEOUT)
        .with_defer_close_reply(byte(0) & 1 == 1);
    let k = data.get(4).copied().unwrap_or(0) as usize;
    let rest = data.get(5..).unwrap_or(&[]);
    let (ops, mut wire) = rest.split_at(k.min(rest.len()));

    let mut h = Harness {
        conn: Connection::new(role, config),
        sent: Vec::new(),
        app_pending: 0,
        app_total: 0,
        finished: false,
        failure_code: None,
        now: Instant::now(),
        keepalive_ping: None,
        fed_since_ping: false,
        peer_dead: false,
        closing_since: None,
        transport_closed: false,
    };
    // Start the connection's clock, as a transport does.
    assert_eq!(h.conn.handle_timeout(h.now), Ok(()));

    if !ops.is_empty() {
        for (step, &op) in ops.iter().cycle().enumerate() {
            if step >= MAX_STEPS || wire.is_empty() && step >= ops.len() {
                break;
            }
            match op & 3 {
                0 | 1 => {
                    let len = ((op >> 2) as usize + 1 + (op & 1) as usize * 64).min(wire.len());
                    let (chunk, tail) = wire.split_at(len);
                    wire = tail;
                    h.feed(chunk);
                }
                2 => h.drain(op >> 2),
                _ => h.app(op >> 2),
            }
            h.check_bounded();
            h.tick(Duration::from_millis(op as u64 * 4));
            if h.transport_closed {
                break;
            }
        }
    }
    h.feed(wire);
    // Left alone, every connection ends by its deadlines (pinged, found
    // dead, closed; or its Close answered, then closed).
    for _ in 0..8 {
        h.drain(0);
        h.tick(KEEPALIVE_INTERVAL);
    }
    assert!(h.transport_closed, "a connection left alone never ended");
    // Draining everything can release a deferred pong; drain that too.
    for _ in 0..3 {
        h.drain(0);
    }
    h.check_output();
}

impl Harness {
    fn feed(&mut self, chunk: &[u8]) {
        if self.peer_dead || self.transport_closed {
            // A transport winding down discards what still arrives.
            return;
        }
        self.fed_since_ping |= !chunk.is_empty();
        self.conn.receive(chunk);
        // The chunk's length picks whether the fast paths go first (as in
        // a transport that reads in place, or an echo), or only poll_event.
        let fast = chunk.len() % 3;
        loop {
            if fast == 1 {
                if let InPlace::Read(m) = self.conn.read_in_place(|m, _| m.to_message()) {
                    assert!(!self.finished, "message {m:?} read in place after the end");
                    self.check_event(&Event::Message(m));
                    self.check_bounded();
                    continue;
                }
            }
            if fast == 2 {
                let before = self.conn.buffered_amount();
                let closing = self.conn.close_sent();
                if let InPlace::Read(sent) = self
                    .conn
                    .read_in_place(|m, tx| tx.send_ref(m).map(|()| m.len()))
                {
                    assert!(!self.finished, "message echoed after the end");
                    let Ok(len) = sent else {
                        // Refused after our Close, or in the middle of a
                        // message the application sends in fragments.
                        assert!(
                            closing || sent == Err(SendError::FragmentOutOfSequence),
                            "a reply refused before our Close: {sent:?}"
                        );
                        assert_eq!(
                            self.conn.buffered_amount(),
                            before,
                            "a refused reply queued bytes"
                        );
                        continue;
                    };
                    assert!(!closing, "echoed after our Close");
                    assert!(len <= self.conn.config().max_message_size.min(125));
                    let grew = self.conn.buffered_amount() - before;
                    // A frame header per fragment, and deflate's worst case
                    // (stored blocks) for a compressed reply.
                    let frames = match self.conn.config().fragment_size {
                        Some(n) if n > 0 => (len + 16).div_ceil(n).max(1),
                        _ => 1,
                    };
                    let deflated = if self.conn.deflate().is_some() { 16 } else { 0 };
                    assert!(
                        grew <= len + 6 * frames + deflated,
                        "{grew} bytes queued to echo {len}"
                    );
                    // An echo is an application send.
                    self.app_pending += grew;
                    self.app_total += grew;
                    self.check_bounded();
                    continue;
                }
            }
            match self.conn.poll_event() {
                Ok(None) => break,
                Ok(Some(event)) => {
                    assert!(!self.finished, "event {event:?} delivered after the end");
                    self.check_event(&event);
                }
                Err(e) => {
                    assert!(!self.finished, "error {e:?} delivered after the end");
                    let had_sent_close = self.conn.close_sent();
                    self.finished = true;
                    assert_eq!(self.conn.failure(), Some(&e));
                    assert_eq!(self.conn.close_state(), CloseState::Closed);
                    assert!(self.conn.close_sent());
                    if !had_sent_close {
                        self.failure_code = Some(e.close_code());
                    }
                    // Once failed, further input is ignored.
                    self.conn.receive(b"\x81\x80\x00\x00\x00\x00");
                    assert_eq!(self.conn.poll_event(), Ok(None));
                    break;
                }
            }
            self.check_bounded();
        }
    }

    fn check_event(&mut self, event: &Event) {
        let config = self.conn.config();
        match event {
            Event::Message(Message::Text(t)) => {
                assert!(t.len() <= config.max_message_size);
                assert!(std::str::from_utf8(t.as_bytes()).is_ok());
            }
            Event::Message(Message::Binary(b)) => assert!(b.len() <= config.max_message_size),
            Event::Ping(p) | Event::Pong(p) => assert!(p.len() <= 125),
            Event::Close(frame) => {
                if let Some(f) = frame {
                    assert!(f.code.is_valid_on_wire(), "{:?}", f.code);
                    assert!(f.reason.len() <= 123);
                }
                assert_eq!(self.conn.peer_close(), frame.as_ref());
                assert!(
                    self.conn.close_sent() || config.defer_close_reply,
                    "Close not answered"
                );
                assert!(matches!(
                    self.conn.close_state(),
                    CloseState::CloseReceived | CloseState::Closed
                ));
                assert!(self.conn.reading_done());
                self.finished = true;
            }
        }
    }

    /// Advance the clock by `by` and give the connection the time while its
    /// deadline has passed, as a transport's timer does.
    fn tick(&mut self, by: Duration) {
        self.now += by;
        let now = self.now;
        while let Some(at) = self.conn.poll_timeout() {
            if at > now || self.transport_closed {
                return;
            }
            if self.closing_since.is_none() && (self.conn.close_sent() || self.peer_dead) {
                self.closing_since = Some(now);
            }
            let open = self.conn.close_state() == CloseState::Open;
            let closing = self.conn.close_sent();
            let before = self.conn.buffered_amount();
            let result = self.conn.handle_timeout(now);
            let grew = self.conn.buffered_amount() - before;
            assert!(
                grew <= MAX_CONTROL_FRAME,
                "{grew} bytes queued by a deadline"
            );
            if grew > 0 {
                // A keepalive ping, or the Close reply the application left.
                assert!(!closing, "queued after our Close");
                if open {
                    self.keepalive_ping = Some(now);
                    self.fed_since_ping = false;
                } else {
                    assert!(self.conn.config().defer_close_reply);
                    assert!(self.conn.close_sent(), "the reply is a Close");
                }
                self.app_pending += grew;
                self.app_total += grew;
            }
            match result {
                Ok(()) => {
                    let next = self.conn.poll_timeout();
                    assert!(next.is_none_or(|at| at > now), "a deadline left passed");
                }
                Err(Timeout::KeepalivePong { after }) => {
                    assert_eq!(after, PONG_TIMEOUT);
                    assert!(!self.peer_dead, "declared dead twice");
                    let ping = self.keepalive_ping.expect("dead without a ping");
                    assert!(now >= ping + PONG_TIMEOUT, "dead too soon");
                    assert!(!self.fed_since_ping, "dead although it spoke");
                    self.peer_dead = true;
                }
                Err(Timeout::ClosingHandshake { after }) => {
                    assert_eq!(after, CLOSE_TIMEOUT);
                    let since = self.closing_since.expect("closing deadline while open");
                    assert!(now >= since + CLOSE_TIMEOUT, "closing deadline too soon");
                    self.transport_closed = true;
                }
                Err(e) => panic!("unexpected {e:?}"),
            }
            // A deadline that queued the Close reply or found the peer
            // dead started the closing deadline.
            if self.closing_since.is_none() && (self.conn.close_sent() || self.peer_dead) {
                self.closing_since = Some(now);
            }
            self.check_bounded();
        }
    }

    /// Drain `amount * 5` bytes of output, or all of it for 0.
    fn drain(&mut self, amount: u8) {
        let out = self.conn.output();
        let want = match amount {
            0 => out.remaining(),
            n => (n as usize * 5).min(out.remaining()),
        };
        // The vectored view starts with the same bytes as the plain one.
        let mut slices = [IoSlice::new(&[]); 8];
        let k = out.chunks_vectored(&mut slices);
        let vectored_len: usize = slices[..k].iter().map(|s| s.len()).sum();
        assert!(vectored_len <= out.remaining());
        let vectored: Vec<u8> = slices[..k]
            .iter()
            .flat_map(|s| s.iter().copied())
            .take(want.min(512))
            .collect();
        let start = self.sent.len();
        let mut left = want;
        while left > 0 {
            let chunk = out.chunk();
            assert!(!chunk.is_empty(), "Buf::chunk empty with bytes remaining");
            let n = chunk.len().min(left);
            self.sent.extend_from_slice(&chunk[..n]);
            out.advance(n);
            left -= n;
        }
        assert_eq!(vectored[..], self.sent[start..start + vectored.len()]);
        self.conn.on_output_drained();
        if self.conn.buffered_amount() == 0 {
            self.app_pending = 0;
        }
    }

    fn app(&mut self, op: u8) {
        let budget = if self.conn.config().negotiated_deflate.is_some() {
            MAX_APP_TOTAL_DEFLATE
        } else {
            MAX_APP_TOTAL
        };
        if self.app_total > budget {
            return;
        }
        let before = self.conn.buffered_amount();
        let closing = self.conn.close_sent();
        let size = (op >> 3) as usize;
        let result = match op & 7 {
            0 => self.conn.send(Message::text("a".repeat(size * 37))),
            // Up to 9300 bytes: past the zero-copy threshold of a server.
            1 => self.conn.send(Message::binary(vec![0x5a; size * 300])),
            2 => self.conn.send_ping(Bytes::from(vec![0x70; size * 4])),
            3 => self.conn.send_pong(Bytes::from(vec![0x71; size * 4])),
            4 => self
                .conn
                .close(Some(CloseFrame::new(CloseCode(1000 + size as u16), "bye"))),
            5 => self.conn.close(None),
            6 => self
                .conn
                .send_fragment(OpCode::Binary, false, Bytes::from(vec![0x62; size * 9])),
            _ => self.conn.send_fragment(
                OpCode::Continuation,
                size & 1 == 0,
                Bytes::from(vec![0x63; size]),
            ),
        };
        match result {
            Ok(()) => {
                assert!(!closing, "accepted a frame after our Close");
                let queued = self.conn.buffered_amount() - before;
                self.app_pending += queued;
                self.app_total += queued;
            }
            Err(e) => {
                if closing {
                    assert_eq!(e, SendError::Closing);
                }
                assert_eq!(
                    self.conn.buffered_amount(),
                    before,
                    "refused call wrote {e:?}"
                );
            }
        }
    }

    fn check_bounded(&self) {
        let bound = self.app_pending + self.conn.config().control_backlog + 2 * MAX_CONTROL_FRAME;
        assert!(
            self.conn.buffered_amount() <= bound,
            "output of {} bytes exceeds {bound}",
            self.conn.buffered_amount()
        );
    }

    /// Everything we wrote is a valid frame sequence that ends at our Close.
    fn check_output(&mut self) {
        assert_eq!(self.conn.buffered_amount(), 0);
        let role = self.conn.role();
        let mut rest = &self.sent[..];
        let mut last = None;
        let mut closes = 0;
        while !rest.is_empty() {
            assert_eq!(closes, 0, "bytes follow our Close");
            let (header, hlen) = FrameHeader::decode(rest)
                .expect("our frame header is valid")
                .expect("our frame header is complete");
            let compressed = self.conn.config().negotiated_deflate.is_some();
            let allowed_rsv =
                if compressed && matches!(header.opcode, OpCode::Text | OpCode::Binary) {
                    0b100
                } else {
                    0
                };
            assert_eq!(header.rsv & !allowed_rsv, 0, "reserved bits in our output");
            assert_eq!(header.mask.is_some(), role == Role::Client, "masking");
            let end = hlen + header.payload_len as usize;
            assert!(end <= rest.len(), "truncated frame in our output");
            let mut payload = rest[hlen..end].to_vec();
            if let Some(key) = header.mask {
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= key[i % 4];
                }
            }
            if header.opcode == OpCode::Close {
                closes += 1;
            }
            last = Some((header.opcode, payload));
            rest = &rest[end..];
        }
        if let Some(code) = self.failure_code {
            match last {
                Some((OpCode::Close, payload)) => {
                    assert!(payload.len() >= 2, "failure Close without a code");
                    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), code.0);
                    assert!(std::str::from_utf8(&payload[2..]).is_ok());
                }
                other => panic!("failed with {code:?} but the output ends with {other:?}"),
            }
        }

        // A conforming peer with generous limits accepts all of it.
        let peer_role = match role {
            Role::Client => Role::Server,
            Role::Server => Role::Client,
        };
        let config = self.conn.config();
        let peer_config = Config::default()
            .with_deflate(config.deflate.clone())
            .with_negotiated_deflate(config.negotiated_deflate);
        let mut peer = Connection::new(peer_role, peer_config);
        peer.receive(&self.sent);
        loop {
            match peer.poll_event() {
                Ok(None) => break,
                Ok(Some(_)) => {}
                Err(e) => panic!("the peer rejects our output: {e}"),
            }
        }
    }
}
