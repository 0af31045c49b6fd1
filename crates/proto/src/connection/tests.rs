//! Behaviour tests for the connection state machine, named after what the
//! peer does and what must happen. Frames are written with a small builder so
//! each test shows the bytes that matter.
//!
//! One file over 800 lines: one short test per protocol rule, all sharing
//! the frame builder below.

use super::*;
use crate::close::CloseCode;
use crate::error::SendError;
use crate::frame::{FrameHeader, OpCode};
use crate::mask::apply_mask;
use crate::message::{Message, MessageRef};
use bytes::{Buf, Bytes};

/// Builds raw frames, including malformed ones.
#[derive(Clone)]
struct F {
    fin: bool,
    rsv: u8,
    opcode: u8,
    mask: Option<[u8; 4]>,
    payload: Vec<u8>,
    declared_len: Option<u64>,
}

fn frame(opcode: u8, payload: &[u8]) -> F {
    F {
        fin: true,
        rsv: 0,
        opcode,
        mask: Some([1, 2, 3, 4]),
        payload: payload.to_vec(),
        declared_len: None,
    }
}
fn text(s: &str) -> F {
    frame(0x1, s.as_bytes())
}
fn binary(b: &[u8]) -> F {
    frame(0x2, b)
}
fn cont(b: &[u8]) -> F {
    frame(0x0, b)
}
fn ping(b: &[u8]) -> F {
    frame(0x9, b)
}
fn pong(b: &[u8]) -> F {
    frame(0xA, b)
}
fn close(code: u16, reason: &str) -> F {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    frame(0x8, &p)
}

impl F {
    fn fin(mut self, fin: bool) -> Self {
        self.fin = fin;
        self
    }
    fn rsv(mut self, rsv: u8) -> Self {
        self.rsv = rsv;
        self
    }
    fn unmasked(mut self) -> Self {
        self.mask = None;
        self
    }
    fn mask(mut self, key: [u8; 4]) -> Self {
        self.mask = Some(key);
        self
    }
    fn declared_len(mut self, len: u64) -> Self {
        self.declared_len = Some(len);
        self
    }
    fn bytes(&self) -> Vec<u8> {
        let mut out = vec![(u8::from(self.fin) << 7) | (self.rsv << 4) | self.opcode];
        let len = self.declared_len.unwrap_or(self.payload.len() as u64);
        let m = if self.mask.is_some() { 0x80 } else { 0 };
        if len < 126 {
            out.push(m | len as u8);
        } else if len <= 0xffff {
            out.push(m | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(m | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
        let mut p = self.payload.clone();
        if let Some(k) = self.mask {
            out.extend_from_slice(&k);
            for (i, b) in p.iter_mut().enumerate() {
                *b ^= k[i % 4];
            }
        }
        out.extend_from_slice(&p);
        out
    }
}

fn server() -> Connection {
    Connection::new(Role::Server, Config::default())
}
fn client() -> Connection {
    Connection::new(Role::Client, Config::default())
}

/// Feed frames and collect events until input is exhausted or an error.
fn feed(c: &mut Connection, frames: &[F]) -> Vec<Result<Event, ProtocolError>> {
    for f in frames {
        c.receive(&f.bytes());
    }
    drain(c)
}

fn drain(c: &mut Connection) -> Vec<Result<Event, ProtocolError>> {
    let mut events = vec![];
    loop {
        match c.poll_event() {
            Ok(Some(e)) => events.push(Ok(e)),
            Ok(None) => return events,
            Err(e) => {
                events.push(Err(e));
                return events;
            }
        }
    }
}

/// Decode every frame a connection wrote (as the peer would see them).
fn written(c: &mut Connection) -> Vec<(OpCode, Vec<u8>)> {
    let bytes = c.take_output();
    let mut rest = &bytes[..];
    let mut frames = vec![];
    while let Some((h, n)) = FrameHeader::decode(rest).unwrap() {
        let len = h.payload_len as usize;
        let mut p = rest[n..n + len].to_vec();
        if let Some(k) = h.mask {
            apply_mask(&mut p, k, 0);
        }
        frames.push((h.opcode, p));
        rest = &rest[n + len..];
    }
    assert!(rest.is_empty(), "trailing partial frame");
    frames
}

fn close_code_written(c: &mut Connection) -> Option<u16> {
    written(c)
        .into_iter()
        .find(|(op, _)| *op == OpCode::Close)
        .map(|(_, p)| u16::from_be_bytes([p[0], p[1]]))
}

fn msg_text(s: &str) -> Result<Event, ProtocolError> {
    Ok(Event::Message(Message::text(s)))
}

// ----- messages ---------------------------------------------------------

#[test]
fn server_receives_masked_text() {
    let mut s = server();
    assert_eq!(feed(&mut s, &[text("Hello")]), vec![msg_text("Hello")]);
}

#[test]
fn client_receives_rfc_unmasked_hello() {
    let mut c = client();
    c.receive(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    assert_eq!(drain(&mut c), vec![msg_text("Hello")]);
}

#[test]
fn server_receives_rfc_masked_hello() {
    let mut s = server();
    s.receive(&[
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ]);
    assert_eq!(drain(&mut s), vec![msg_text("Hello")]);
}

#[test]
fn client_receives_rfc_fragmented_hello() {
    let mut c = client();
    c.receive(&[0x01, 0x03, 0x48, 0x65, 0x6c]);
    c.receive(&[0x80, 0x02, 0x6c, 0x6f]);
    assert_eq!(drain(&mut c), vec![msg_text("Hello")]);
}

#[test]
fn server_receives_empty_messages() {
    let mut s = server();
    let ev = feed(&mut s, &[text(""), binary(b"")]);
    assert_eq!(
        ev,
        vec![
            msg_text(""),
            Ok(Event::Message(Message::binary(Bytes::new())))
        ]
    );
}

#[test]
fn server_receives_fragments_with_interleaved_ping() {
    let mut s = server();
    let ev = feed(
        &mut s,
        &[
            text("Hel").fin(false),
            ping(b"p"),
            cont(b"lo").fin(false),
            cont(b"!"),
        ],
    );
    assert_eq!(
        ev,
        vec![
            Ok(Event::Ping(Bytes::from_static(b"p"))),
            msg_text("Hello!")
        ]
    );
    assert_eq!(written(&mut s), vec![(OpCode::Pong, b"p".to_vec())]);
}

#[test]
fn server_receives_message_one_byte_at_a_time() {
    let mut s = server();
    let bytes: Vec<u8> = [text("ab").fin(false), cont("ç€𝄞".as_bytes())]
        .iter()
        .flat_map(|f| f.bytes())
        .collect();
    let mut events = vec![];
    for b in bytes {
        s.receive(&[b]);
        events.extend(drain(&mut s));
    }
    assert_eq!(events, vec![msg_text("abç€𝄞")]);
}

#[test]
fn server_receives_large_binary_with_64_bit_length() {
    let mut s = server();
    let data = vec![0xab; 70_000];
    assert_eq!(
        feed(&mut s, &[binary(&data)]),
        vec![Ok(Event::Message(Message::binary(data)))]
    );
}

#[test]
fn frame_bytes_missing_counts_down_to_the_end_of_a_partial_frame() {
    let mut s = server();
    let bytes = binary(&[7; 70_000]).bytes();
    // Header incomplete: nothing is known yet.
    s.receive(&bytes[..5]);
    assert_eq!(drain(&mut s), vec![]);
    assert_eq!(s.frame_bytes_missing(), 0);
    // 64-bit length header (2 + 8) and mask (4): 14 bytes, then payload.
    s.receive(&bytes[5..1000]);
    assert_eq!(drain(&mut s), vec![]);
    assert_eq!(s.frame_bytes_missing(), bytes.len() - 1000);
    s.receive(&bytes[1000..]);
    assert_eq!(drain(&mut s).len(), 1);
    assert_eq!(s.frame_bytes_missing(), 0);
}

#[test]
fn in_place_needs_input_only_while_a_small_frame_is_incomplete() {
    assert!(
        (server().read_in_place(|_, _| ()) == InPlace::NeedInput),
        "nothing buffered"
    );
    let data = binary(&[9; 100]).bytes();
    for cut in 1..data.len() {
        let mut s = server();
        s.receive(&data[..cut]);
        assert!(
            (s.read_in_place(|_, _| ()) == InPlace::NeedInput),
            "{cut} of {} bytes",
            data.len()
        );
        s.receive(&data[cut..]);
        assert_eq!(s.read_in_place(|_, _| ()), InPlace::Read(()), "all here");
    }
    // Text: only until the header is whole; its payload is checked as it
    // arrives (fail fast on invalid UTF-8), so that is for poll_event.
    let hello = text("hello").bytes();
    for cut in 1..hello.len() {
        let mut s = server();
        s.receive(&hello[..cut]);
        assert_eq!(
            (s.read_in_place(|_, _| ()) == InPlace::NeedInput),
            cut < 6,
            "{cut} bytes"
        );
    }
}

#[test]
fn in_place_leaves_everything_else_to_poll_event_at_once() {
    let partial = |f: F, n: usize| f.bytes()[..n].to_vec();
    let cases: Vec<(&str, Connection, Vec<u8>)> = vec![
        ("a control frame", server(), partial(ping(b"ping"), 3)),
        ("reserved bits", server(), partial(binary(b"xy").rsv(4), 3)),
        ("a bad opcode", server(), partial(frame(0x3, b"xy"), 3)),
        (
            "an unmasked frame to a server",
            server(),
            partial(binary(b"xyz").unmasked(), 3),
        ),
        (
            "a masked frame to a client",
            client(),
            partial(binary(b"xy"), 3),
        ),
        (
            "a non-final frame",
            server(),
            partial(binary(b"xy").fin(false), 3),
        ),
        (
            "an extended length",
            server(),
            partial(binary(&[1; 200]), 4),
        ),
        (
            "a frame over max_frame_size",
            Connection::new(
                Role::Server,
                Config {
                    max_frame_size: 10,
                    ..Config::default()
                },
            ),
            partial(binary(&[1; 20]), 3),
        ),
    ];
    for (what, mut c, bytes) in cases {
        c.receive(&bytes);
        assert!(
            !(c.read_in_place(|_, _| ()) == InPlace::NeedInput),
            "{what}"
        );
    }
    // Inside a fragmented message, and with a frame under way.
    let mut s = server();
    feed(&mut s, &[binary(b"first").fin(false)]);
    assert!(
        !(s.read_in_place(|_, _| ()) == InPlace::NeedInput),
        "a fragmented message"
    );
    let mut s = server();
    s.receive(&binary(&[1; 70_000]).bytes()[..100]);
    assert_eq!(drain(&mut s), vec![]);
    assert!(
        !(s.read_in_place(|_, _| ()) == InPlace::NeedInput),
        "a frame under way"
    );
    // Nothing more is read after a Close.
    let mut s = server();
    feed(&mut s, &[close(1000, "")]);
    assert!(
        !(s.read_in_place(|_, _| ()) == InPlace::NeedInput),
        "after Close"
    );
}

// ----- framing errors ------------------------------------------------------

#[test]
fn server_receives_unmasked_frame() {
    let mut s = server();
    assert_eq!(
        feed(&mut s, &[text("x").unmasked()]),
        vec![Err(ProtocolError::UnmaskedClientFrame)]
    );
    assert_eq!(close_code_written(&mut s), Some(1002));
}

#[test]
fn client_receives_masked_frame() {
    let mut c = client();
    assert_eq!(
        feed(&mut c, &[text("x")]),
        vec![Err(ProtocolError::MaskedServerFrame)]
    );
    assert_eq!(close_code_written(&mut c), Some(1002));
}

#[test]
fn server_receives_reserved_bits() {
    for rsv in 1..8 {
        let mut s = server();
        assert_eq!(
            feed(&mut s, &[text("x").rsv(rsv)]),
            vec![Err(ProtocolError::ReservedBitsSet)]
        );
        assert_eq!(close_code_written(&mut s), Some(1002));
    }
}

#[test]
fn server_receives_reserved_opcode() {
    let mut s = server();
    assert_eq!(
        feed(&mut s, &[frame(0x3, b"")]),
        vec![Err(ProtocolError::ReservedOpcode(3))]
    );
    assert_eq!(close_code_written(&mut s), Some(1002));
}

#[test]
fn server_receives_continuation_without_start() {
    let mut s = server();
    assert_eq!(
        feed(&mut s, &[cont(b"x")]),
        vec![Err(ProtocolError::UnexpectedContinuation)]
    );
}

#[test]
fn server_receives_new_message_inside_fragmented_one() {
    let mut s = server();
    assert_eq!(
        feed(&mut s, &[text("a").fin(false), text("b")]),
        vec![Err(ProtocolError::ExpectedContinuation)]
    );
}

#[test]
fn server_receives_fragmented_ping() {
    let mut s = server();
    assert_eq!(
        feed(&mut s, &[ping(b"").fin(false)]),
        vec![Err(ProtocolError::FragmentedControlFrame)]
    );
}

#[test]
fn server_receives_ping_over_125_bytes() {
    let mut s = server();
    assert_eq!(
        feed(&mut s, &[ping(&[0; 126])]),
        vec![Err(ProtocolError::ControlFrameTooLong)]
    );
}

#[test]
fn nothing_is_read_after_failure() {
    let mut s = server();
    feed(&mut s, &[text("x").unmasked()]);
    assert_eq!(feed(&mut s, &[text("after")]), vec![]);
    assert_eq!(s.close_state(), CloseState::Closed);
}

#[test]
fn fast_path_leaves_every_other_frame_to_poll_event() {
    let limited = Connection::new(
        Role::Server,
        Config {
            max_message_size: 4,
            ..Config::default()
        },
    );
    let long = vec![7u8; 126];
    let cases: Vec<(Connection, Vec<u8>, Result<Event, ProtocolError>)> = vec![
        (
            server(),
            text("x").unmasked().bytes(),
            Err(ProtocolError::UnmaskedClientFrame),
        ),
        (
            client(),
            text("x").bytes(),
            Err(ProtocolError::MaskedServerFrame),
        ),
        (
            server(),
            frame(0x1, &[b'a', 0xff]).bytes(),
            Err(ProtocolError::InvalidUtf8),
        ),
        (
            limited,
            binary(b"hello").bytes(),
            Err(ProtocolError::MessageTooLarge { size: 5, limit: 4 }),
        ),
        (
            server(),
            text("x").rsv(4).bytes(),
            Err(ProtocolError::ReservedBitsSet),
        ),
        (
            server(),
            ping(b"p").bytes(),
            Ok(Event::Ping(Bytes::from_static(b"p"))),
        ),
        (
            server(),
            binary(&long).bytes(),
            Ok(Event::Message(Message::binary(long.clone()))),
        ),
    ];
    for (mut c, bytes, want) in cases {
        c.receive(&bytes);
        assert_eq!(c.poll_small_message(), None, "{want:?}");
        assert_eq!(echo_in_place(&mut c), InPlace::PollEvent, "{want:?}");
        assert_eq!(c.buffered_amount(), 0, "nothing echoed: {want:?}");
        assert_eq!(&c.read_buf()[..], &bytes[..], "nothing consumed: {want:?}");
        assert_eq!(drain(&mut c).into_iter().next(), Some(want));
    }
    // Half a frame: nothing yet, nothing consumed; the rest completes it.
    let mut s = server();
    let bytes = text("hello").bytes();
    s.receive(&bytes[..8]);
    assert_eq!(s.poll_small_message(), None);
    assert_eq!(s.read_buf().len(), 8);
    s.receive(&bytes[8..]);
    assert_eq!(s.poll_small_message(), Some(Message::text("hello")));
    assert!(s.read_buf().is_empty());
    // Inside a fragmented message, a new small frame is the general path's
    // to refuse.
    let mut s = server();
    s.receive(&text("a").fin(false).bytes());
    assert_eq!(drain(&mut s), vec![]);
    s.receive(&text("b").bytes());
    assert_eq!(s.poll_small_message(), None);
    assert_eq!(
        drain(&mut s),
        vec![Err(ProtocolError::ExpectedContinuation)]
    );
}

// ----- reading in place ----------------------------------------------------

#[test]
fn server_reads_small_messages_in_place() {
    let mut s = server();
    s.receive(&text("héllo").bytes());
    s.receive(&binary(&[0, 1, 255]).bytes());
    assert_eq!(
        s.read_in_place(|m, _| m.to_message()),
        InPlace::Read(Message::text("héllo"))
    );
    assert_eq!(
        s.read_in_place(|m, _| assert_eq!(m, MessageRef::Binary(&[0, 1, 255]))),
        InPlace::Read(())
    );
    assert_eq!(s.read_in_place(|_, _| ()), InPlace::NeedInput);
    assert!(s.read_buf().is_empty());
}

#[test]
fn reading_in_place_leaves_invalid_utf8_as_it_came() {
    let mut s = server();
    let bytes = frame(0x1, &[b'o', b'k', 0xc3]).bytes();
    s.receive(&bytes);
    assert_eq!(
        s.read_in_place(|_, _| panic!("not called")),
        InPlace::PollEvent
    );
    assert_eq!(&s.read_buf()[..], &bytes[..], "still masked, unconsumed");
    assert_eq!(drain(&mut s), vec![Err(ProtocolError::InvalidUtf8)]);
    assert_eq!(close_code_written(&mut s), Some(1007));
}

// ----- replying in place ---------------------------------------------------

/// Send the small message at the front back, as `tether`'s echo does.
fn echo_in_place(c: &mut Connection) -> InPlace<Result<usize, SendError>> {
    c.read_in_place(|m, tx| tx.send_ref(m).map(|()| m.len()))
}

#[test]
fn server_echoes_small_messages_straight_from_the_read_buffer() {
    let mut s = server();
    s.receive(&text("héllo").bytes());
    s.receive(&binary(&[0, 1, 2, 255]).bytes());
    s.receive(&binary(&[]).bytes());
    assert_eq!(echo_in_place(&mut s), InPlace::Read(Ok(6)));
    assert_eq!(echo_in_place(&mut s), InPlace::Read(Ok(4)));
    assert_eq!(echo_in_place(&mut s), InPlace::Read(Ok(0)));
    assert_eq!(echo_in_place(&mut s), InPlace::NeedInput);
    assert!(s.read_buf().is_empty());
    assert_eq!(
        written(&mut s),
        vec![
            (OpCode::Text, "héllo".as_bytes().to_vec()),
            (OpCode::Binary, vec![0, 1, 2, 255]),
            (OpCode::Binary, vec![]),
        ]
    );
}

#[test]
fn a_reply_in_place_writes_what_poll_event_and_send_would() {
    let frames = [text("a"), binary(&[9; 125]), text("ünïcödé"), binary(b"x")];
    let mut fast = server();
    let mut slow = server();
    for f in &frames {
        fast.receive(&f.bytes());
        slow.receive(&f.bytes());
        assert!(matches!(echo_in_place(&mut fast), InPlace::Read(Ok(_))));
        let m = slow.poll_small_message().unwrap();
        slow.send(m).unwrap();
    }
    assert_eq!(fast.take_output(), slow.take_output());
}

#[test]
fn client_echo_masks_with_a_fresh_key() {
    let mut c = client();
    c.receive(&text("hi").unmasked().bytes());
    c.receive(&text("hi").unmasked().bytes());
    assert_eq!(echo_in_place(&mut c), InPlace::Read(Ok(2)));
    assert_eq!(echo_in_place(&mut c), InPlace::Read(Ok(2)));
    let wire = c.take_output();
    // Two masked frames, each with its own key, that a server reads back.
    assert_eq!(wire.len(), 2 * (6 + 2));
    assert_eq!(wire[1], 0x80 | 2);
    assert_ne!(wire[2..6], wire[10..14], "a masking key is used once");
    let mut s = server();
    s.receive(&wire);
    assert_eq!(drain(&mut s), vec![msg_text("hi"), msg_text("hi")]);
}

#[test]
fn a_client_masks_with_the_keys_its_randomness_gives() {
    let fixed: fn(&mut [u8]) = |buf| buf.fill(0x5a);
    let config = Config::default().with_random(crate::random::Randomness::Custom(fixed));
    let mut c = Connection::new(Role::Client, config.clone());
    c.send(Message::text("hi")).unwrap();
    c.receive(&text("hi").unmasked().bytes());
    assert!(matches!(echo_in_place(&mut c), InPlace::Read(Ok(2))));
    // The same bytes every time: the frame builder's masking with that key.
    let want = text("hi").mask([0x5a; 4]).bytes();
    assert_eq!(&c.take_output()[..], &[want.clone(), want].concat()[..]);
    let mut again = Connection::new(Role::Client, config);
    again.send(Message::text("hi")).unwrap();
    assert_eq!(
        &again.take_output()[..],
        &text("hi").mask([0x5a; 4]).bytes()[..]
    );
}

#[test]
fn server_echo_leaves_invalid_utf8_to_poll_event() {
    let mut s = server();
    let bytes = frame(0x1, &[b'o', b'k', 0xc3]).bytes();
    s.receive(&bytes);
    assert_eq!(echo_in_place(&mut s), InPlace::PollEvent);
    assert_eq!(s.read_buf().len(), bytes.len(), "nothing consumed");
    assert_eq!(s.buffered_amount(), 0, "nothing echoed");
    assert_eq!(drain(&mut s), vec![Err(ProtocolError::InvalidUtf8)]);
    let frames = written(&mut s);
    assert_eq!(frames.len(), 1, "only the Close: {frames:?}");
    assert_eq!(frames[0].0, OpCode::Close);
    assert_eq!(frames[0].1[..2], 1007u16.to_be_bytes());
}

#[test]
fn a_reply_in_place_is_compressed_and_fragmented_as_send_would() {
    let compressed = || {
        Connection::new(
            Role::Server,
            Config {
                negotiated_deflate: Some(crate::deflate::DeflateParams::default()),
                ..Config::default()
            },
        )
    };
    let fragmenting = || {
        Connection::new(
            Role::Server,
            Config {
                fragment_size: Some(2),
                ..Config::default()
            },
        )
    };
    for (what, mut fast, mut slow) in [
        ("deflate", compressed(), compressed()),
        ("fragment_size", fragmenting(), fragmenting()),
    ] {
        let big = "hello ".repeat(20);
        for c in [&mut fast, &mut slow] {
            c.receive(&text(&big).bytes());
        }
        assert_eq!(echo_in_place(&mut fast), InPlace::Read(Ok(big.len())));
        let m = slow.poll_event().unwrap();
        let Some(Event::Message(m)) = m else {
            panic!("{what}: {m:?}")
        };
        slow.send(m).unwrap();
        assert_eq!(fast.take_output(), slow.take_output(), "{what}");
    }
}

#[test]
fn a_reply_in_place_after_our_close_is_refused() {
    let mut s = server();
    s.close(None).unwrap();
    let _ = s.take_output();
    s.receive(&text("hello").bytes());
    assert_eq!(
        echo_in_place(&mut s),
        InPlace::Read(Err(SendError::Closing))
    );
    assert_eq!(s.buffered_amount(), 0);
}

// ----- UTF-8 ---------------------------------------------------------------

#[test]
fn server_receives_invalid_utf8_text() {
    let mut s = server();
    let f = frame(
        0x1,
        &[
            0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80,
        ],
    );
    assert_eq!(feed(&mut s, &[f]), vec![Err(ProtocolError::InvalidUtf8)]);
    assert_eq!(close_code_written(&mut s), Some(1007));
}

#[test]
fn invalid_utf8_fails_before_the_frame_is_complete() {
    let mut s = server();
    let mut payload = b"valid ".to_vec();
    payload.push(0xff);
    payload.extend_from_slice(&[b'x'; 100]);
    let bytes = frame(0x1, &payload).bytes();
    // Deliver only up to and including the bad byte.
    s.receive(&bytes[..2 + 4 + 7]);
    assert_eq!(drain(&mut s), vec![Err(ProtocolError::InvalidUtf8)]);
}

#[test]
fn invalid_utf8_fails_in_the_first_fragment() {
    let mut s = server();
    assert_eq!(
        feed(&mut s, &[frame(0x1, &[0xf8]).fin(false)]),
        vec![Err(ProtocolError::InvalidUtf8)]
    );
}

#[test]
fn utf8_split_across_fragments_is_accepted() {
    let mut s = server();
    let e = "€".as_bytes();
    let ev = feed(
        &mut s,
        &[
            frame(0x1, &e[..1]).fin(false),
            cont(&e[1..2]).fin(false),
            cont(&e[2..]),
        ],
    );
    assert_eq!(ev, vec![msg_text("€")]);
}

#[test]
fn incomplete_utf8_at_message_end_is_invalid() {
    let mut s = server();
    assert_eq!(
        feed(&mut s, &[frame(0x1, &[0xe2, 0x82])]),
        vec![Err(ProtocolError::InvalidUtf8)]
    );
}

#[test]
fn binary_messages_are_not_utf8_checked() {
    let mut s = server();
    assert_eq!(
        feed(&mut s, &[binary(&[0xff])]),
        vec![Ok(Event::Message(Message::binary(vec![0xff])))]
    );
}

// ----- limits --------------------------------------------------------------

#[test]
fn oversized_frame_fails_on_its_header_alone() {
    let mut s = Connection::new(
        Role::Server,
        Config {
            max_frame_size: 100,
            ..Config::default()
        },
    );
    // Only the header is sent; the declared length must not be trusted.
    let f = binary(&[]).declared_len(1 << 40);
    s.receive(&f.bytes());
    assert_eq!(
        drain(&mut s),
        vec![Err(ProtocolError::FrameTooLarge {
            size: 1 << 40,
            limit: 100
        })]
    );
    assert_eq!(close_code_written(&mut s), Some(1009));
    assert!(s.read_buf().capacity() < 1024);
}

#[test]
fn oversized_fragmented_message_fails_when_limit_is_crossed() {
    let mut s = Connection::new(
        Role::Server,
        Config {
            max_message_size: 10,
            ..Config::default()
        },
    );
    let ev = feed(&mut s, &[binary(&[0; 6]).fin(false), cont(&[0; 6])]);
    assert_eq!(
        ev,
        vec![Err(ProtocolError::MessageTooLarge {
            size: 12,
            limit: 10
        })]
    );
    assert_eq!(close_code_written(&mut s), Some(1009));
}

#[test]
fn ping_flood_from_a_peer_that_never_reads_is_bounded() {
    let mut s = Connection::new(
        Role::Server,
        Config {
            control_backlog: 1000,
            ..Config::default()
        },
    );
    for i in 0..10_000u32 {
        s.receive(&ping(&i.to_be_bytes()).bytes());
        drain(&mut s);
    }
    assert!(
        s.buffered_amount() < 1200,
        "output grew to {}",
        s.buffered_amount()
    );
    // Once the peer reads, the latest ping is answered.
    let frames = written(&mut s);
    assert!(frames.len() < 200);
    s.on_output_drained();
    assert_eq!(
        written(&mut s),
        vec![(OpCode::Pong, 9999u32.to_be_bytes().to_vec())]
    );
}

#[test]
fn ten_pings_get_ten_pongs() {
    let mut s = server();
    let pings: Vec<F> = (0..10u8).map(|i| ping(&[i])).collect();
    feed(&mut s, &pings);
    let pongs: Vec<_> = written(&mut s)
        .into_iter()
        .map(|(op, p)| (op, p[0]))
        .collect();
    assert_eq!(
        pongs,
        (0..10u8).map(|i| (OpCode::Pong, i)).collect::<Vec<_>>()
    );
}

// ----- closing handshake ------------------------------------------------------

#[test]
fn server_echoes_close_code() {
    let mut s = server();
    let ev = feed(&mut s, &[close(1000, "bye")]);
    assert_eq!(
        ev,
        vec![Ok(Event::Close(Some(CloseFrame::new(
            CloseCode::NORMAL,
            "bye"
        ))))]
    );
    assert_eq!(written(&mut s), vec![(OpCode::Close, vec![0x03, 0xe8])]);
    assert_eq!(s.close_state(), CloseState::Closed);
}

#[test]
fn close_without_code_is_answered_without_code() {
    let mut s = server();
    assert_eq!(
        feed(&mut s, &[frame(0x8, b"")]),
        vec![Ok(Event::Close(None))]
    );
    assert_eq!(written(&mut s), vec![(OpCode::Close, vec![])]);
}

#[test]
fn close_with_one_byte_payload_is_a_protocol_error() {
    let mut s = server();
    assert_eq!(
        feed(&mut s, &[frame(0x8, &[0x03])]),
        vec![Err(ProtocolError::ClosePayloadOfOneByte)]
    );
    assert_eq!(close_code_written(&mut s), Some(1002));
}

#[test]
fn close_with_invalid_codes_is_a_protocol_error() {
    for code in [
        0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        let mut s = server();
        assert_eq!(
            feed(&mut s, &[close(code, "")]),
            vec![Err(ProtocolError::InvalidCloseCode(code))],
            "{code}"
        );
        assert_eq!(close_code_written(&mut s), Some(1002));
    }
}

#[test]
fn close_with_valid_codes_is_echoed() {
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
        4000, 4999,
    ] {
        let mut s = server();
        feed(&mut s, &[close(code, "")]);
        assert_eq!(close_code_written(&mut s), Some(code));
    }
}

#[test]
fn close_with_invalid_utf8_reason_is_1007() {
    let mut s = server();
    let mut p = vec![0x03, 0xe8];
    p.extend_from_slice(&[0xed, 0xa0, 0x80]);
    assert_eq!(
        feed(&mut s, &[frame(0x8, &p)]),
        vec![Err(ProtocolError::CloseReasonNotUtf8)]
    );
    assert_eq!(close_code_written(&mut s), Some(1007));
}

#[test]
fn frames_after_close_are_ignored() {
    let mut s = server();
    let ev = feed(&mut s, &[close(1000, ""), text("late"), ping(b"late")]);
    assert_eq!(ev.len(), 1);
    assert_eq!(written(&mut s).len(), 1);
}

#[test]
fn data_still_arrives_after_we_send_close() {
    let mut s = server();
    s.close(Some(CloseFrame::new(CloseCode::NORMAL, "")))
        .unwrap();
    assert_eq!(s.close_state(), CloseState::CloseSent);
    let ev = feed(&mut s, &[text("in flight"), close(1000, "")]);
    assert_eq!(
        ev,
        vec![
            msg_text("in flight"),
            Ok(Event::Close(Some(CloseFrame::new(CloseCode::NORMAL, ""))))
        ]
    );
    assert_eq!(s.close_state(), CloseState::Closed);
    // Only our first Close was written: no second Close in reply.
    assert_eq!(written(&mut s).len(), 1);
}

fn deferring_server() -> Connection {
    Connection::new(
        Role::Server,
        Config {
            defer_close_reply: true,
            ..Config::default()
        },
    )
}

#[test]
fn server_receives_close_and_defers_its_reply() {
    let mut s = deferring_server();
    let ev = feed(&mut s, &[close(1000, "bye")]);
    assert_eq!(
        ev,
        vec![Ok(Event::Close(Some(CloseFrame::new(
            CloseCode::NORMAL,
            "bye"
        ))))]
    );
    assert_eq!(written(&mut s), vec![]);
    assert_eq!(s.close_state(), CloseState::CloseReceived);
    assert!(s.reading_done());
}

#[test]
fn server_sends_data_before_its_deferred_close_reply() {
    let mut s = deferring_server();
    feed(&mut s, &[close(1001, "")]);
    s.send(Message::text("last words")).unwrap();
    s.close(Some(CloseFrame::new(CloseCode(1001), ""))).unwrap();
    assert_eq!(
        written(&mut s),
        vec![
            (OpCode::Text, b"last words".to_vec()),
            (OpCode::Close, vec![0x03, 0xe9])
        ]
    );
    assert_eq!(s.close_state(), CloseState::Closed);
    assert_eq!(s.send(Message::text("x")), Err(SendError::Closing));
}

#[test]
fn frames_after_a_deferred_close_are_ignored() {
    let mut s = deferring_server();
    let ev = feed(&mut s, &[close(1000, ""), text("late"), ping(b"late")]);
    assert_eq!(ev.len(), 1);
    assert_eq!(written(&mut s), vec![]);
}

#[test]
fn a_protocol_error_is_answered_even_when_close_replies_are_deferred() {
    let mut s = deferring_server();
    assert_eq!(
        feed(&mut s, &[frame(0x8, &[0x03])]),
        vec![Err(ProtocolError::ClosePayloadOfOneByte)]
    );
    assert_eq!(close_code_written(&mut s), Some(1002));
}

#[test]
fn no_pong_after_close_sent() {
    let mut s = server();
    s.close(None).unwrap();
    written(&mut s);
    feed(&mut s, &[ping(b"x")]);
    assert_eq!(written(&mut s), vec![]);
}

#[test]
fn application_cannot_send_after_close() {
    let mut c = client();
    c.close(None).unwrap();
    assert_eq!(c.send(Message::text("x")), Err(SendError::Closing));
    assert_eq!(c.send_ping(Bytes::new()), Err(SendError::Closing));
    assert_eq!(c.close(None), Err(SendError::Closing));
}

#[test]
fn application_cannot_send_invalid_close() {
    let mut c = client();
    assert_eq!(
        c.close(Some(CloseFrame::new(1005, ""))),
        Err(SendError::InvalidCloseCode(1005))
    );
    let long = "x".repeat(124);
    assert_eq!(
        c.close(Some(CloseFrame::new(1000, long.as_str()))),
        Err(SendError::CloseReasonTooLong(124))
    );
    assert_eq!(
        c.send_ping(Bytes::from(vec![0; 126])),
        Err(SendError::ControlPayloadTooLong(126))
    );
}

// ----- sending -----------------------------------------------------------------

#[test]
fn client_sends_large_messages_masked_piece_by_piece_in_order() {
    let mut c = client();
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    c.send(Message::text("before")).unwrap();
    c.send(Message::binary(big.clone())).unwrap();
    c.send_ping(Bytes::from_static(b"p")).unwrap();
    c.send(Message::binary(big[..70_000].to_vec())).unwrap();
    c.send(Message::text("after")).unwrap();
    assert_eq!(c.buffered_amount(), c.output().remaining());
    let mut s = server();
    s.receive(&c.take_output());
    assert_eq!(
        drain(&mut s),
        vec![
            msg_text("before"),
            Ok(Event::Message(Message::binary(big.clone()))),
            Ok(Event::Ping(Bytes::from_static(b"p"))),
            Ok(Event::Message(Message::binary(big[..70_000].to_vec()))),
            msg_text("after"),
        ]
    );
}

#[test]
fn client_masks_and_server_does_not() {
    let mut c = client();
    c.send(Message::binary(vec![0u8; 4])).unwrap();
    let out = c.take_output();
    assert_eq!(out[1] & 0x80, 0x80);
    let mut s = server();
    s.send(Message::binary(vec![0u8; 4])).unwrap();
    assert_eq!(s.take_output()[..], [0x82, 0x04, 0, 0, 0, 0]);
}

#[test]
fn messages_are_fragmented_when_configured() {
    let mut s = Connection::new(
        Role::Server,
        Config {
            fragment_size: Some(2),
            ..Config::default()
        },
    );
    s.send(Message::text("abcde")).unwrap();
    let mut c = client();
    c.receive(&s.take_output());
    assert_eq!(drain(&mut c), vec![msg_text("abcde")]);
}

#[test]
fn send_fragment_enforces_sequence() {
    let mut s = server();
    assert_eq!(
        s.send_fragment(OpCode::Continuation, true, Bytes::new()),
        Err(SendError::FragmentOutOfSequence)
    );
    s.send_fragment(OpCode::Text, false, Bytes::from_static(b"ab"))
        .unwrap();
    assert_eq!(
        s.send(Message::text("x")),
        Err(SendError::FragmentOutOfSequence)
    );
    s.send_fragment(OpCode::Continuation, true, Bytes::from_static(b"c"))
        .unwrap();
    let mut c = client();
    c.receive(&s.take_output());
    assert_eq!(drain(&mut c), vec![msg_text("abc")]);
}

#[test]
fn large_server_payload_is_queued_without_copy() {
    let mut s = server();
    let payload = Bytes::from(vec![5u8; 100_000]);
    let ptr = payload.as_ptr();
    s.send(Message::Binary(payload)).unwrap();
    let mut slices = [std::io::IoSlice::new(&[]); 4];
    let out = s.output();
    let n = out.chunks_vectored(&mut slices);
    assert_eq!(n, 2);
    assert_eq!(slices[1].as_ptr(), ptr);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn any_message() -> impl Strategy<Value = Message> {
        prop_oneof![
            "\\PC{0,300}".prop_map(Message::text),
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(Message::binary),
        ]
    }

    proptest! {
        #[test]
        fn messages_round_trip_through_any_chunking(
            msgs in proptest::collection::vec(any_message(), 1..8),
            frag in proptest::option::of(1usize..50),
            chunk in 1usize..64,
            client_sends in any::<bool>(),
        ) {
            let (role_a, role_b) = if client_sends { (Role::Client, Role::Server) } else { (Role::Server, Role::Client) };
            let mut a = Connection::new(role_a, Config { fragment_size: frag, ..Config::default() });
            let mut b = Connection::new(role_b, Config::default());
            for m in &msgs {
                a.send(m.clone()).unwrap();
                a.send_ping(Bytes::from_static(b"hb")).unwrap();
            }
            let wire = a.take_output();
            let mut got = vec![];
            for piece in wire.chunks(chunk) {
                b.receive(piece);
                while let Some(e) = b.poll_event().unwrap() {
                    if let Event::Message(m) = e { got.push(m) }
                }
            }
            prop_assert_eq!(got, msgs);
        }

        #[test]
        fn echo_in_place_writes_what_receive_then_send_would(
            frames in proptest::collection::vec((0u8..5, proptest::collection::vec(any::<u8>(), 0..130)), 1..8),
            server_role in any::<bool>(),
        ) {
            // Text (valid or not), binary, a ping, a first fragment, and
            // plain bytes: the fast path takes a prefix of them and must
            // agree with the general path on it and leave the rest.
            let role = if server_role { Role::Server } else { Role::Client };
            let mut data = vec![];
            for (kind, payload) in &frames {
                let f = match kind {
                    0 => frame(0x1, payload),
                    1 => match std::str::from_utf8(payload) {
                        Ok(t) => text(t),
                        Err(_) => text("valid"),
                    },
                    2 => binary(payload),
                    3 => ping(&payload[..payload.len().min(125)]),
                    _ => binary(payload).fin(false),
                };
                let f = if server_role { f } else { f.unmasked() };
                data.extend_from_slice(&f.bytes());
            }
            let mut fast = Connection::new(role, Config::default());
            let mut slow = Connection::new(role, Config::default());
            let mut in_place = Connection::new(role, Config::default());
            fast.receive(&data);
            slow.receive(&data);
            in_place.receive(&data);
            let mut read = vec![];
            while let InPlace::Read(m) = in_place.read_in_place(|m, _| m.to_message()) {
                read.push(m);
            }
            let mut echoed = 0;
            while let InPlace::Read(sent) = echo_in_place(&mut fast) {
                sent.unwrap();
                echoed += 1;
            }
            prop_assert_eq!(read.len(), echoed);
            prop_assert_eq!(in_place.read_buf().len(), fast.read_buf().len());
            for r in read {
                match slow.poll_event() {
                    Ok(Some(Event::Message(m))) => {
                        prop_assert_eq!(&m, &r);
                        slow.send(m).unwrap()
                    }
                    other => prop_assert!(false, "general path disagrees: {other:?}"),
                }
            }
            prop_assert_eq!(fast.read_buf().len(), slow.read_buf().len());
            if server_role {
                prop_assert_eq!(fast.take_output(), slow.take_output());
            } else {
                // Fresh keys differ: compare what a server reads back.
                let (mut a, mut b) = (Connection::new(Role::Server, Config::default()), Connection::new(Role::Server, Config::default()));
                a.receive(&fast.take_output());
                b.receive(&slow.take_output());
                prop_assert_eq!(drain(&mut a), drain(&mut b));
            }
        }

        #[test]
        fn arbitrary_input_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512), server_role in any::<bool>()) {
            let role = if server_role { Role::Server } else { Role::Client };
            let mut c = Connection::new(role, Config { max_message_size: 256, max_frame_size: 200, ..Config::default() });
            c.receive(&data);
            while let Ok(Some(_)) = c.poll_event() {}
            let _ = c.take_output();
        }
    }
}

#[test]
fn server_receives_unsolicited_pong_without_answering() {
    let mut s = server();
    let events = feed(&mut s, &[pong(b"beat"), text("after")]);
    assert_eq!(
        events,
        vec![
            Ok(Event::Pong(Bytes::from_static(b"beat"))),
            Ok(Event::Message(Message::text("after"))),
        ]
    );
    assert!(written(&mut s).is_empty(), "a pong is never answered");
}
