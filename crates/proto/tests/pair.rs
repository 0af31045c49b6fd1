//! Property tests: a client and a server `Connection` wired together through
//! byte pipes that deliver arbitrary-sized pieces, exchanging random message
//! sequences, pings, and a closing handshake begun by either side (or both
//! at once). Whatever the interleaving:
//!
//! * every message a side sent before its Close arrives, whole and in order;
//! * no protocol error ever occurs between two conforming endpoints;
//! * both sides end `Closed`, each holding the other's close code;
//! * every ping is answered while the connection is open;
//! * all of this holds with permessage-deflate negotiated, too.

use bytes::Bytes;
use proptest::prelude::*;
use tether_proto::deflate::{DeflateConfig, DeflateParams};
use tether_proto::{
    CloseCode, CloseFrame, CloseState, Config, Connection, Event, Message, Role, SendError,
};

#[derive(Clone, Debug)]
enum Side {
    Client,
    Server,
}

#[derive(Clone, Debug)]
enum Op {
    Send(Side, Message),
    Ping(Side, Vec<u8>),
    Close(Side, u16),
    /// Move up to this many bytes from a side's output to its peer.
    Deliver(Side, usize),
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Client), Just(Side::Server)]
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        "\\PC{0,40}".prop_map(Message::text),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(Message::binary),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (side(), message()).prop_map(|(s, m)| Op::Send(s, m)),
        1 => (side(), proptest::collection::vec(any::<u8>(), 0..125)).prop_map(|(s, p)| Op::Ping(s, p)),
        1 => (side(), prop_oneof![Just(1000u16), Just(1001), Just(1011), 3000..5000u16])
            .prop_map(|(s, c)| Op::Close(s, c)),
        6 => (side(), 1..200usize).prop_map(|(s, n)| Op::Deliver(s, n)),
    ]
}

fn config() -> impl Strategy<Value = Config> {
    (proptest::option::of(1..64usize), any::<bool>()).prop_map(|(fragment_size, small)| {
        Config::default()
            .with_fragment_size(fragment_size)
            // Small limits must still admit everything the strategies send.
            .with_max_message_size(if small { 1024 } else { 64 << 20 })
            .with_max_frame_size(if small { 512 } else { 16 << 20 })
    })
}

struct End {
    conn: Connection,
    /// Bytes written by this end, not yet delivered to the peer.
    wire: Vec<u8>,
    /// Data messages sent, in order.
    sent: Vec<Message>,
    /// Data messages received, in order.
    received: Vec<Message>,
    /// Payloads of pings sent while open, and pongs received.
    pings: Vec<Bytes>,
    pongs: Vec<Bytes>,
    /// The close code this end sent first (its own initiative or its echo).
    close_sent: Option<Option<CloseCode>>,
    close_received: Option<Option<CloseFrame>>,
}

impl End {
    fn new(role: Role, config: Config) -> Self {
        End {
            conn: Connection::new(role, config),
            wire: Vec::new(),
            sent: Vec::new(),
            received: Vec::new(),
            pings: Vec::new(),
            pongs: Vec::new(),
            close_sent: None,
            close_received: None,
        }
    }

    fn collect_output(&mut self) {
        self.wire.extend_from_slice(&self.conn.take_output());
    }
}

/// Deliver up to `n` bytes from `from` to `to` and process the events.
fn deliver(from: &mut End, to: &mut End, n: usize) -> Result<(), TestCaseError> {
    from.collect_output();
    let n = n.min(from.wire.len());
    let piece: Vec<u8> = from.wire.drain(..n).collect();
    to.conn.receive(&piece);
    loop {
        let had_sent_close = to.conn.close_sent();
        match to.conn.poll_event() {
            Ok(None) => break,
            Ok(Some(Event::Message(m))) => to.received.push(m),
            Ok(Some(Event::Ping(_))) => {}
            Ok(Some(Event::Pong(p))) => to.pongs.push(p),
            Ok(Some(Event::Close(frame))) => {
                prop_assert!(to.close_received.is_none(), "second Close delivered");
                if !had_sent_close {
                    to.close_sent = Some(frame.as_ref().map(|f| f.code));
                }
                to.close_received = Some(frame);
            }
            Err(e) => return Err(TestCaseError::fail(format!("protocol error: {e}"))),
        }
    }
    to.collect_output();
    Ok(())
}

fn run(client_config: Config, server_config: Config, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut client = End::new(Role::Client, client_config);
    let mut server = End::new(Role::Server, server_config);
    for op in ops {
        let (this, other) = match op {
            Op::Send(Side::Client, _)
            | Op::Ping(Side::Client, _)
            | Op::Close(Side::Client, _)
            | Op::Deliver(Side::Client, _) => (&mut client, &mut server),
            _ => (&mut server, &mut client),
        };
        match op {
            Op::Send(_, m) => match this.conn.send(m.clone()) {
                Ok(()) => this.sent.push(m),
                Err(e) => {
                    prop_assert!(this.conn.close_sent());
                    prop_assert_eq!(e, SendError::Closing);
                }
            },
            Op::Ping(_, p) => {
                let p = Bytes::from(p);
                if this.conn.send_ping(p.clone()).is_ok() {
                    this.pings.push(p);
                } else {
                    prop_assert!(this.conn.close_sent());
                }
            }
            Op::Close(_, code) => {
                let frame = CloseFrame::new(CloseCode(code), "bye");
                if this.conn.close(Some(frame)).is_ok() {
                    this.close_sent = Some(Some(CloseCode(code)));
                } else {
                    prop_assert!(this.close_sent.is_some());
                }
            }
            Op::Deliver(_, n) => deliver(this, other, n)?,
        }
    }

    // Let everything in flight arrive, then make sure someone closes.
    for _ in 0..2 {
        deliver(&mut client, &mut server, usize::MAX)?;
        deliver(&mut server, &mut client, usize::MAX)?;
    }
    if !client.conn.close_sent() && !server.conn.close_sent() {
        client
            .conn
            .close(Some(CloseFrame::new(CloseCode::NORMAL, "")))
            .unwrap();
        client.close_sent = Some(Some(CloseCode::NORMAL));
    }
    for _ in 0..3 {
        deliver(&mut client, &mut server, usize::MAX)?;
        deliver(&mut server, &mut client, usize::MAX)?;
    }

    for (name, this, peer) in [("client", &client, &server), ("server", &server, &client)] {
        prop_assert_eq!(
            this.conn.close_state(),
            CloseState::Closed,
            "{} not closed",
            name
        );
        prop_assert_eq!(
            &this.received,
            &peer.sent,
            "{} lost or reordered data",
            name
        );
        let got = this.close_received.clone().expect("a Close arrived");
        prop_assert_eq!(
            got.map(|f| f.code),
            peer.close_sent.expect("the peer sent a Close"),
            "{} got the wrong close code",
            name
        );
        // Pings sent by `this` are answered in order, unless the peer was
        // already closing when they arrived (it then owes no pong).
        prop_assert!(this.pongs.len() <= this.pings.len());
        prop_assert_eq!(&this.pongs[..], &this.pings[..this.pongs.len()]);
    }
    Ok(())
}

/// permessage-deflate as if negotiated, the same on both ends.
fn deflate() -> impl Strategy<Value = Option<DeflateParams>> {
    proptest::option::of((any::<bool>(), any::<bool>(), 9..=15u8, 9..=15u8).prop_map(
        |(server_no_context_takeover, client_no_context_takeover, sbits, cbits)| DeflateParams {
            server_no_context_takeover,
            client_no_context_takeover,
            server_max_window_bits: sbits,
            client_max_window_bits: cbits,
        },
    ))
}

fn with_deflate(config: Config, params: Option<DeflateParams>) -> Config {
    config
        .with_deflate(params.map(|_| DeflateConfig::default().with_min_size(8)))
        .with_negotiated_deflate(params)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_exchanges_end_closed_with_matching_codes(
        client_config in config(),
        server_config in config(),
        ops in proptest::collection::vec(op(), 0..80),
    ) {
        run(client_config, server_config, ops)?;
    }

    #[test]
    fn random_compressed_exchanges_end_closed_with_matching_codes(
        client_config in config(),
        server_config in config(),
        params in deflate(),
        ops in proptest::collection::vec(op(), 0..60),
    ) {
        run(with_deflate(client_config, params), with_deflate(server_config, params), ops)?;
    }
}

#[test]
fn simultaneous_close_gives_each_side_the_others_code() {
    let ops = vec![
        Op::Close(Side::Client, 4001),
        Op::Close(Side::Server, 4002),
        Op::Deliver(Side::Client, usize::MAX),
        Op::Deliver(Side::Server, usize::MAX),
    ];
    run(Config::default(), Config::default(), ops).unwrap();
}
