//! permessage-deflate: negotiation rules, the RFC 7692 §7.2.3 vectors,
//! connection behaviour (RSV1 rules, limits, UTF-8), bombs and round trips.
//!
//! One file over 800 lines: short tests, one per rule of RFC 7692, that
//! share the frame and offer helpers at the top.

use super::*;
use crate::frame::{FrameHeader, OpCode, MAX_HEADER_LEN, RSV1, RSV2};
use crate::handshake::{parse_extensions, HandshakeError};
use crate::mask::apply_mask;
use crate::{CloseCode, Config, Connection, Event, Message, ProtocolError, Role};
use bytes::Bytes;
use proptest::prelude::*;

fn offers(s: &str) -> Vec<crate::handshake::ExtensionOffer> {
    parse_extensions(s).unwrap()
}

fn negotiate(config: &DeflateConfig, s: &str) -> Option<(DeflateParams, String)> {
    config
        .negotiate(&offers(s))
        .map(|(p, r)| (p, r.to_string()))
}

fn respond(config: &DeflateConfig, s: &str) -> Result<DeflateParams, NegotiationError> {
    config.accept_response(&offers(s)[0])
}

// ----- server negotiation -------------------------------------------------

#[test]
fn server_accepts_plain_offer_with_plain_response() {
    let (p, r) = negotiate(&DeflateConfig::default(), "permessage-deflate").unwrap();
    assert_eq!(r, "permessage-deflate");
    assert_eq!(p, DeflateParams::default());
}

#[test]
fn server_echoes_requested_server_no_context_takeover() {
    let (p, r) = negotiate(
        &DeflateConfig::default(),
        "permessage-deflate; server_no_context_takeover",
    )
    .unwrap();
    assert_eq!(r, "permessage-deflate; server_no_context_takeover");
    assert!(p.server_no_context_takeover);
    assert!(!p.client_no_context_takeover);
}

#[test]
fn server_adds_no_context_takeover_from_its_config() {
    let c = DeflateConfig {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        ..Default::default()
    };
    let (p, r) = negotiate(&c, "permessage-deflate").unwrap();
    assert_eq!(
        r,
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    );
    assert!(p.server_no_context_takeover && p.client_no_context_takeover);
}

#[test]
fn server_echoes_client_no_context_takeover_hint() {
    let (p, r) = negotiate(
        &DeflateConfig::default(),
        "permessage-deflate; client_no_context_takeover",
    )
    .unwrap();
    assert_eq!(r, "permessage-deflate; client_no_context_takeover");
    assert!(p.client_no_context_takeover);
}

#[test]
fn server_accepts_client_max_window_bits_without_value() {
    // What browsers send.
    let (p, r) = negotiate(
        &DeflateConfig::default(),
        "permessage-deflate; client_max_window_bits",
    )
    .unwrap();
    assert_eq!(r, "permessage-deflate");
    assert_eq!(p.client_max_window_bits, 15);
}

#[test]
fn server_limits_client_window_when_offer_allows_it() {
    let c = DeflateConfig {
        client_max_window_bits: 10,
        ..Default::default()
    };
    let (p, r) = negotiate(&c, "permessage-deflate; client_max_window_bits").unwrap();
    assert_eq!(r, "permessage-deflate; client_max_window_bits=10");
    assert_eq!(p.client_max_window_bits, 10);
    // The offered value is a limit too: the smaller one wins.
    let (p, r) = negotiate(&c, "permessage-deflate; client_max_window_bits=9").unwrap();
    assert_eq!(r, "permessage-deflate; client_max_window_bits=9");
    assert_eq!(p.client_max_window_bits, 9);
}

#[test]
fn server_declines_offer_that_cannot_limit_client_window() {
    let c = DeflateConfig {
        client_max_window_bits: 10,
        ..Default::default()
    };
    assert_eq!(negotiate(&c, "permessage-deflate"), None);
    // ... but takes a later offer in the client's preference list.
    let (p, r) = negotiate(
        &c,
        "permessage-deflate, permessage-deflate; client_max_window_bits",
    )
    .unwrap();
    assert_eq!(r, "permessage-deflate; client_max_window_bits=10");
    assert_eq!(p.client_max_window_bits, 10);
}

#[test]
fn server_honours_requested_server_max_window_bits() {
    for bits in 8..=15u8 {
        let (p, r) = negotiate(
            &DeflateConfig::default(),
            &format!("permessage-deflate; server_max_window_bits={bits}"),
        )
        .unwrap();
        assert_eq!(
            r,
            format!("permessage-deflate; server_max_window_bits={bits}")
        );
        assert_eq!(p.server_max_window_bits, bits);
    }
}

#[test]
fn server_announces_its_own_smaller_window() {
    let c = DeflateConfig {
        server_max_window_bits: 9,
        ..Default::default()
    };
    let (p, r) = negotiate(&c, "permessage-deflate").unwrap();
    assert_eq!(r, "permessage-deflate; server_max_window_bits=9");
    assert_eq!(p.server_max_window_bits, 9);
    let (p, _) = negotiate(&c, "permessage-deflate; server_max_window_bits=12").unwrap();
    assert_eq!(p.server_max_window_bits, 9);
}

#[test]
fn server_skips_malformed_offers() {
    let bad = [
        "permessage-deflate; foo",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover=true",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=08",
        "permessage-deflate; server_max_window_bits=abc",
        "permessage-deflate; server_max_window_bits=\"+9\"",
        "permessage-deflate; client_max_window_bits=0",
        "permessage-deflate; client_max_window_bits=255",
        "permessage-deflate; client_max_window_bits=99999999999",
    ];
    for offer in bad {
        assert_eq!(negotiate(&DeflateConfig::default(), offer), None, "{offer}");
        // Skipped, not fatal: the next offer is taken.
        let (_, r) = negotiate(
            &DeflateConfig::default(),
            &format!("{offer}, permessage-deflate; server_no_context_takeover"),
        )
        .unwrap();
        assert_eq!(
            r, "permessage-deflate; server_no_context_takeover",
            "{offer}"
        );
    }
}

#[test]
fn server_accepts_quoted_window_bits() {
    let (p, _) = negotiate(
        &DeflateConfig::default(),
        "permessage-deflate; server_max_window_bits=\"10\"",
    )
    .unwrap();
    assert_eq!(p.server_max_window_bits, 10);
}

#[test]
fn server_ignores_other_extensions() {
    assert_eq!(
        negotiate(&DeflateConfig::default(), "x-webkit-deflate-frame"),
        None
    );
    let (_, r) = negotiate(
        &DeflateConfig::default(),
        "x-webkit-deflate-frame, Permessage-Deflate",
    )
    .unwrap();
    assert_eq!(r, "permessage-deflate");
}

#[test]
fn server_takes_first_acceptable_offer_in_order() {
    // RFC 7692 §5.1 example: prefer a small window, fall back to none.
    let (p, r) = negotiate(
        &DeflateConfig::default(),
        "permessage-deflate; client_max_window_bits=10; server_max_window_bits=10, \
         permessage-deflate; client_max_window_bits, permessage-deflate",
    )
    .unwrap();
    assert_eq!(
        r,
        "permessage-deflate; server_max_window_bits=10; client_max_window_bits=10"
    );
    assert_eq!(
        (p.server_max_window_bits, p.client_max_window_bits),
        (10, 10)
    );
}

// ----- client offer and response validation --------------------------------

#[test]
fn client_offer_reflects_config() {
    assert_eq!(
        DeflateConfig::default().offer().to_string(),
        "permessage-deflate; client_max_window_bits"
    );
    let c = DeflateConfig {
        server_max_window_bits: 9,
        client_max_window_bits: 12,
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        ..Default::default()
    };
    assert_eq!(
        c.offer().to_string(),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
         server_max_window_bits=9; client_max_window_bits=12"
    );
}

#[test]
fn client_accepts_plain_response() {
    assert_eq!(
        respond(&DeflateConfig::default(), "permessage-deflate"),
        Ok(DeflateParams::default())
    );
}

#[test]
fn client_accepts_server_limits() {
    let p = respond(
        &DeflateConfig::default(),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
         server_max_window_bits=8; client_max_window_bits=8",
    )
    .unwrap();
    assert_eq!(
        p,
        DeflateParams {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: 8,
            client_max_window_bits: 8,
        }
    );
}

#[test]
fn client_rejects_malformed_responses() {
    let c = DeflateConfig::default();
    use NegotiationError::*;
    for (resp, err) in [
        ("permessage-deflate; foo=1", UnknownParameter("foo".into())),
        (
            "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
            DuplicateParameter("server_max_window_bits"),
        ),
        (
            "permessage-deflate; client_max_window_bits",
            InvalidValue("client_max_window_bits"),
        ),
        (
            "permessage-deflate; server_max_window_bits=7",
            InvalidValue("server_max_window_bits"),
        ),
        (
            "permessage-deflate; client_max_window_bits=16",
            InvalidValue("client_max_window_bits"),
        ),
        (
            "permessage-deflate; server_no_context_takeover=x",
            InvalidValue("server_no_context_takeover"),
        ),
    ] {
        assert_eq!(respond(&c, resp), Err(err), "{resp}");
    }
}

#[test]
fn client_rejects_window_larger_than_offered() {
    let c = DeflateConfig {
        server_max_window_bits: 10,
        client_max_window_bits: 11,
        ..Default::default()
    };
    assert_eq!(
        respond(&c, "permessage-deflate; server_max_window_bits=11"),
        Err(NegotiationError::WindowBitsTooLarge(
            "server_max_window_bits"
        ))
    );
    assert_eq!(
        respond(
            &c,
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits=12"
        ),
        Err(NegotiationError::WindowBitsTooLarge(
            "client_max_window_bits"
        ))
    );
    // Same or smaller is fine; an absent client value keeps the offered one.
    let p = respond(&c, "permessage-deflate; server_max_window_bits=9").unwrap();
    assert_eq!(
        (p.server_max_window_bits, p.client_max_window_bits),
        (9, 11)
    );
}

#[test]
fn client_rejects_response_dropping_requested_params() {
    let c = DeflateConfig {
        server_no_context_takeover: true,
        ..Default::default()
    };
    assert_eq!(
        respond(&c, "permessage-deflate"),
        Err(NegotiationError::MissingParameter(
            "server_no_context_takeover"
        ))
    );
    let c = DeflateConfig {
        server_max_window_bits: 10,
        ..Default::default()
    };
    assert_eq!(
        respond(&c, "permessage-deflate"),
        Err(NegotiationError::MissingParameter("server_max_window_bits"))
    );
}

#[test]
fn client_keeps_its_own_no_context_takeover() {
    let c = DeflateConfig {
        client_no_context_takeover: true,
        ..Default::default()
    };
    assert!(
        respond(&c, "permessage-deflate")
            .unwrap()
            .client_no_context_takeover
    );
}

#[test]
fn client_sees_no_deflate_when_server_declines() {
    let c = DeflateConfig::default();
    assert_eq!(c.accept_extensions(&[]), Ok(None));
    assert_eq!(
        c.accept_extensions(&offers("x-other, permessage-deflate")),
        Ok(Some(DeflateParams::default()))
    );
}

#[test]
fn negotiation_error_becomes_handshake_error() {
    let e: HandshakeError = NegotiationError::MissingParameter("server_max_window_bits").into();
    assert!(matches!(e, HandshakeError::MalformedExtensions(m) if m.contains("RFC 7692")));
}

#[test]
fn server_response_passes_client_validation() {
    // Every combination of settings on both sides: what a server answers is
    // acceptable to the client that made the offer, and both agree.
    let bits = [8u8, 9, 12, 15];
    for &cs in &bits {
        for &cc in &bits {
            for &ss in &bits {
                for &sc in &bits {
                    for flags in 0..16u8 {
                        let client = DeflateConfig {
                            server_max_window_bits: cs,
                            client_max_window_bits: cc,
                            server_no_context_takeover: flags & 1 != 0,
                            client_no_context_takeover: flags & 2 != 0,
                            ..Default::default()
                        };
                        let server = DeflateConfig {
                            server_max_window_bits: ss,
                            client_max_window_bits: sc,
                            server_no_context_takeover: flags & 4 != 0,
                            client_no_context_takeover: flags & 8 != 0,
                            ..Default::default()
                        };
                        let (sp, resp) = server.negotiate(&[client.offer()]).unwrap();
                        let resp = offers(&resp.to_string()).remove(0);
                        let cp = client.accept_response(&resp).unwrap();
                        assert_eq!(sp.server_max_window_bits, cp.server_max_window_bits);
                        assert!(cp.server_max_window_bits <= cs.min(ss));
                        assert!(cp.client_max_window_bits <= cc.min(sc));
                        assert!(sp.client_max_window_bits >= cp.client_max_window_bits);
                        assert_eq!(sp.server_no_context_takeover, cp.server_no_context_takeover);
                    }
                }
            }
        }
    }
}

// ----- codec: RFC 7692 §7.2.3 vectors ---------------------------------------

fn inflate(d: &mut Decompressor, data: &[u8]) -> Result<Vec<u8>, ProtocolError> {
    let mut out = Vec::new();
    d.decompress(data, true, &mut out, 1 << 20, |_| Ok(()))?;
    Ok(out)
}

const HELLO: [u8; 7] = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];

#[test]
fn rfc7692_hello_compressed() {
    // §7.2.3.1
    let mut c = Compressor::new(15, 6, false);
    assert_eq!(&c.compress(b"Hello")[..], &HELLO);
    assert_eq!(
        inflate(&mut Decompressor::new(15), &HELLO).unwrap(),
        b"Hello"
    );
}

#[test]
fn rfc7692_hello_twice_with_shared_context() {
    // §7.2.3.2: the second "Hello" refers back to the first.
    let second = [0xf2, 0x00, 0x11, 0x00, 0x00];
    let mut c = Compressor::new(15, 6, false);
    c.compress(b"Hello");
    assert_eq!(&c.compress(b"Hello")[..], &second);
    let mut d = Decompressor::new(15);
    assert_eq!(inflate(&mut d, &HELLO).unwrap(), b"Hello");
    assert_eq!(inflate(&mut d, &second).unwrap(), b"Hello");
    // Without context takeover the second message stands alone.
    let mut c = Compressor::new(15, 6, true);
    c.compress(b"Hello");
    assert_eq!(&c.compress(b"Hello")[..], &HELLO);
}

#[test]
fn rfc7692_stored_block() {
    // §7.2.3.3: BTYPE=00.
    let data = [
        0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
    ];
    assert_eq!(
        inflate(&mut Decompressor::new(15), &data).unwrap(),
        b"Hello"
    );
}

#[test]
fn rfc7692_bfinal_block_then_next_message() {
    // §7.2.3.4: BFINAL=1; the stream ends, the next message starts afresh.
    let data = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
    let mut d = Decompressor::new(15);
    assert_eq!(inflate(&mut d, &data).unwrap(), b"Hello");
    assert_eq!(inflate(&mut d, &HELLO).unwrap(), b"Hello");
}

#[test]
fn rfc7692_two_blocks_in_one_message() {
    // §7.2.3.5
    let data = [
        0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
    ];
    assert_eq!(
        inflate(&mut Decompressor::new(15), &data).unwrap(),
        b"Hello"
    );
}

#[test]
fn rfc7692_empty_message() {
    // §7.2.3.6: an empty message compresses to a single 0x00.
    let mut c = Compressor::new(15, 6, false);
    assert_eq!(&c.compress(b"")[..], &[0x00]);
    let mut d = Decompressor::new(15);
    assert_eq!(inflate(&mut d, &[0x00]).unwrap(), b"");
    assert_eq!(inflate(&mut d, &HELLO).unwrap(), b"Hello");
}

#[test]
fn empty_payload_is_an_empty_message_and_keeps_the_stream_in_sync() {
    let mut d = Decompressor::new(15);
    assert_eq!(inflate(&mut d, &HELLO).unwrap(), b"Hello");
    assert_eq!(inflate(&mut d, b"").unwrap(), b"");
    assert_eq!(
        inflate(&mut d, &[0xf2, 0x00, 0x11, 0x00, 0x00]).unwrap(),
        b"Hello"
    );
}

#[test]
fn consecutive_empty_messages_compress_to_a_stored_block_header() {
    let mut c = Compressor::new(15, 6, false);
    let mut d = Decompressor::new(15);
    for msg in [&b""[..], b"", b"abc", b"", b""] {
        let z = c.compress(msg);
        assert!(!z.is_empty());
        assert_eq!(inflate(&mut d, &z).unwrap(), msg);
    }
}

#[test]
fn rfc7692_fragmented_hello_inflates_piecewise() {
    let mut d = Decompressor::new(15);
    let mut out = Vec::new();
    d.decompress(&HELLO[..3], false, &mut out, 100, |_| Ok(()))
        .unwrap();
    d.decompress(&HELLO[3..], true, &mut out, 100, |_| Ok(()))
        .unwrap();
    assert_eq!(out, b"Hello");
}

#[test]
fn codec_round_trips_all_window_sizes_and_levels() {
    let data: Vec<u8> = (0..100_000u32)
        .map(|i| (i % 251) as u8 ^ (i / 1000) as u8)
        .collect();
    for bits in 8..=15u8 {
        for level in [0u32, 1, 6, 9] {
            for nct in [false, true] {
                let mut c = Compressor::new(bits, level, nct);
                let mut d = Decompressor::new(bits);
                for msg in [&data[..], b"", &data[..1000], &data[..]] {
                    let z = c.compress(msg);
                    assert_eq!(
                        inflate(&mut d, &z).unwrap(),
                        msg,
                        "bits {bits} level {level}"
                    );
                }
            }
        }
    }
}

#[test]
fn corrupt_data_is_an_extension_error() {
    let mut d = Decompressor::new(15);
    // BTYPE=11 is reserved.
    let e = inflate(&mut d, &[0xff, 0xff, 0xff]).unwrap_err();
    assert!(matches!(e, ProtocolError::Extension(_)));
    assert_eq!(e.close_code(), CloseCode::INVALID_PAYLOAD);
}

/// `n` MiB of zeros, compressed as one message: about 1 KiB per MiB, the
/// best DEFLATE can do. Only the first MiB is actually compressed; later
/// blocks repeat a block that references the (all-zero) window.
fn zero_bomb(mib: usize) -> Vec<u8> {
    let mut c = Compressor::new(15, 9, false);
    let zeros = vec![0u8; 1 << 20];
    let mut out = c.compress(&zeros).to_vec();
    out.extend_from_slice(&[0x00, 0x00, 0xff, 0xff]);
    let block = c.compress(&zeros).to_vec();
    for _ in 1..mib {
        out.extend_from_slice(&block);
        out.extend_from_slice(&[0x00, 0x00, 0xff, 0xff]);
    }
    out.truncate(out.len() - 4);
    out
}

#[test]
fn zero_bomb_inflates_as_claimed() {
    let bomb = zero_bomb(4);
    let mut out = Vec::new();
    Decompressor::new(15)
        .decompress(&bomb, true, &mut out, usize::MAX, |_| Ok(()))
        .unwrap();
    assert_eq!(out.len(), 4 << 20);
    assert!(out.iter().all(|&b| b == 0));
}

#[test]
fn decompressor_stops_at_the_limit_with_bounded_output() {
    let bomb = zero_bomb(1024); // 1 GiB inflated
    assert!(bomb.len() < 1_200_000, "{}", bomb.len());
    let limit = 1 << 20;
    let mut out = Vec::new();
    let mut chunks = 0;
    let e = Decompressor::new(15)
        .decompress(&bomb, true, &mut out, limit, |c| {
            assert!(c.len() <= INFLATE_CHUNK);
            chunks += 1;
            Ok(())
        })
        .unwrap_err();
    assert_eq!(
        e,
        ProtocolError::MessageTooLarge {
            size: limit as u64 + 1,
            limit
        }
    );
    assert_eq!(e.close_code(), CloseCode::MESSAGE_TOO_BIG);
    assert!(out.capacity() <= limit + 1, "{}", out.capacity());
    assert!(chunks <= limit / INFLATE_CHUNK + 1);
}

// ----- connection --------------------------------------------------------

fn config(params: Option<DeflateParams>) -> Config {
    Config {
        deflate: Some(DeflateConfig {
            min_size: 0,
            ..Default::default()
        }),
        negotiated_deflate: params,
        ..Config::default()
    }
}

fn pair(params: DeflateParams) -> (Connection, Connection) {
    (
        Connection::new(Role::Client, config(Some(params))),
        Connection::new(Role::Server, config(Some(params))),
    )
}

/// A raw frame as a client would send it (masked).
fn raw(fin: bool, rsv: u8, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let h = FrameHeader {
        fin,
        rsv,
        opcode,
        mask: Some(key),
        payload_len: payload.len() as u64,
    };
    let mut hb = [0u8; MAX_HEADER_LEN];
    let n = h.encode(&mut hb);
    let mut out = hb[..n].to_vec();
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], key, 0);
    out
}

fn server() -> Connection {
    Connection::new(Role::Server, config(Some(DeflateParams::default())))
}

fn expect_fail(conn: &mut Connection, bytes: &[u8], code: CloseCode) -> ProtocolError {
    conn.receive(bytes);
    let e = loop {
        match conn.poll_event() {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("no error"),
            Err(e) => break e,
        }
    };
    assert_eq!(e.close_code(), code, "{e}");
    e
}

#[test]
fn server_receives_rfc_hello_frame() {
    let mut s = server();
    s.receive(&raw(true, RSV1, OpCode::Text, &HELLO));
    assert_eq!(
        s.poll_event().unwrap(),
        Some(Event::Message(Message::text("Hello")))
    );
}

#[test]
fn client_receives_rfc_hello_frame_unmasked() {
    // RFC 7692 §7.2.3.1 frame bytes: 0xc1 0x07 ...
    let mut c = Connection::new(Role::Client, config(Some(DeflateParams::default())));
    let mut bytes = vec![0xc1, 0x07];
    bytes.extend_from_slice(&HELLO);
    c.receive(&bytes);
    assert_eq!(
        c.poll_event().unwrap(),
        Some(Event::Message(Message::text("Hello")))
    );
}

#[test]
fn server_receives_fragmented_compressed_message() {
    // RFC 7692 §7.2.3.1, split: RSV1 on the first frame only.
    let mut s = server();
    s.receive(&raw(false, RSV1, OpCode::Text, &HELLO[..3]));
    s.receive(&raw(true, 0, OpCode::Continuation, &HELLO[3..]));
    assert_eq!(
        s.poll_event().unwrap(),
        Some(Event::Message(Message::text("Hello")))
    );
}

#[test]
fn uncompressed_message_still_accepted_when_negotiated() {
    let mut s = server();
    s.receive(&raw(true, 0, OpCode::Binary, b"plain"));
    assert_eq!(
        s.poll_event().unwrap(),
        Some(Event::Message(Message::binary(&b"plain"[..])))
    );
}

#[test]
fn rsv1_on_continuation_is_a_protocol_error() {
    let mut s = server();
    let mut bytes = raw(false, RSV1, OpCode::Text, &HELLO[..3]);
    bytes.extend(raw(true, RSV1, OpCode::Continuation, &HELLO[3..]));
    let e = expect_fail(&mut s, &bytes, CloseCode::PROTOCOL_ERROR);
    assert_eq!(e, ProtocolError::ReservedBitsSet);
}

#[test]
fn rsv1_on_control_frame_is_a_protocol_error() {
    for op in [OpCode::Ping, OpCode::Pong, OpCode::Close] {
        let mut s = server();
        expect_fail(&mut s, &raw(true, RSV1, op, b""), CloseCode::PROTOCOL_ERROR);
    }
}

#[test]
fn rsv1_without_negotiation_is_a_protocol_error() {
    let mut s = Connection::new(Role::Server, config(None));
    expect_fail(
        &mut s,
        &raw(true, RSV1, OpCode::Text, &HELLO),
        CloseCode::PROTOCOL_ERROR,
    );
}

#[test]
fn rsv2_with_deflate_is_a_protocol_error() {
    let mut s = server();
    expect_fail(
        &mut s,
        &raw(true, RSV1 | RSV2, OpCode::Text, &HELLO),
        CloseCode::PROTOCOL_ERROR,
    );
}

#[test]
fn compressed_invalid_utf8_fails_with_1007() {
    let mut c = Compressor::new(15, 6, false);
    let z = c.compress(b"ok \xff not utf8");
    let mut s = server();
    let e = expect_fail(
        &mut s,
        &raw(true, RSV1, OpCode::Text, &z),
        CloseCode::INVALID_PAYLOAD,
    );
    assert_eq!(e, ProtocolError::InvalidUtf8);
}

#[test]
fn compressed_invalid_utf8_fails_before_the_message_ends() {
    let mut c = Compressor::new(15, 6, false);
    let z = c.compress(b"\xc0\xafbad");
    let mut s = server();
    // First fragment only: the error comes without waiting for the rest.
    expect_fail(
        &mut s,
        &raw(false, RSV1, OpCode::Text, &z),
        CloseCode::INVALID_PAYLOAD,
    );
}

#[test]
fn compressed_text_split_inside_a_character_is_fine() {
    let text = "€".repeat(10_000);
    let mut c = Compressor::new(15, 6, false);
    let z = c.compress(text.as_bytes());
    let mut s = server();
    let mut bytes = Vec::new();
    let pieces: Vec<&[u8]> = z.chunks(7).collect();
    for (i, p) in pieces.iter().enumerate() {
        let (rsv, op) = if i == 0 {
            (RSV1, OpCode::Text)
        } else {
            (0, OpCode::Continuation)
        };
        bytes.extend(raw(i == pieces.len() - 1, rsv, op, p));
    }
    s.receive(&bytes);
    assert_eq!(
        s.poll_event().unwrap(),
        Some(Event::Message(Message::text(text)))
    );
}

#[test]
fn corrupt_compressed_frame_fails_with_1007() {
    let mut s = server();
    let e = expect_fail(
        &mut s,
        &raw(true, RSV1, OpCode::Binary, &[0xff, 0xff, 0xff]),
        CloseCode::INVALID_PAYLOAD,
    );
    assert!(matches!(e, ProtocolError::Extension(_)));
}

#[test]
fn decompression_bomb_fails_with_1009_and_bounded_memory() {
    let bomb = zero_bomb(1024); // ~1 MiB on the wire, 1 GiB inflated
    let limit = 1 << 20;
    let mut s = Connection::new(
        Role::Server,
        Config {
            max_message_size: limit,
            ..config(Some(DeflateParams::default()))
        },
    );
    let e = expect_fail(
        &mut s,
        &raw(true, RSV1, OpCode::Binary, &bomb),
        CloseCode::MESSAGE_TOO_BIG,
    );
    assert!(matches!(e, ProtocolError::MessageTooLarge { .. }));
    let (read_cap, inflate_cap) = s.buffer_capacities();
    assert_eq!(inflate_cap, 0, "inflate buffer released");
    assert!(read_cap <= bomb.len() + 64, "{read_cap}");
    // The Close frame says 1009.
    let out = s.take_output();
    assert_eq!(&out[2..4], &1009u16.to_be_bytes());
}

#[test]
fn bomb_split_across_fragments_fails_with_1009() {
    let bomb = zero_bomb(64);
    let limit = 1 << 20;
    let mut s = Connection::new(
        Role::Server,
        Config {
            max_message_size: limit,
            ..config(Some(DeflateParams::default()))
        },
    );
    let mut bytes = Vec::new();
    let pieces: Vec<&[u8]> = bomb.chunks(1000).collect();
    for (i, p) in pieces.iter().enumerate() {
        let (rsv, op) = if i == 0 {
            (RSV1, OpCode::Binary)
        } else {
            (0, OpCode::Continuation)
        };
        bytes.extend(raw(i == pieces.len() - 1, rsv, op, p));
    }
    expect_fail(&mut s, &bytes, CloseCode::MESSAGE_TOO_BIG);
    assert_eq!(s.buffer_capacities().1, 0);
}

#[test]
fn message_at_the_limit_inflates() {
    let limit = 100_000;
    let (mut c, _) = pair(DeflateParams::default());
    let mut s = Connection::new(
        Role::Server,
        Config {
            max_message_size: limit,
            ..config(Some(DeflateParams::default()))
        },
    );
    c.send(Message::binary(vec![7u8; limit])).unwrap();
    s.receive(&c.take_output());
    assert_eq!(
        s.poll_event().unwrap(),
        Some(Event::Message(Message::binary(vec![7u8; limit])))
    );
    c.send(Message::binary(vec![7u8; limit + 1])).unwrap();
    expect_fail(&mut s, &c.take_output(), CloseCode::MESSAGE_TOO_BIG);
}

#[test]
fn sender_sets_rsv1_on_first_frame_only() {
    let (mut c, _) = pair(DeflateParams::default());
    let mut cfg = config(Some(DeflateParams::default()));
    cfg.fragment_size = Some(4);
    let mut s = Connection::new(Role::Server, cfg);
    let text = "Hello Hello Hello Hello";
    s.send(Message::text(text)).unwrap();
    let out = s.take_output();
    // Walk the frames.
    let mut rest = &out[..];
    let mut rsvs = Vec::new();
    while !rest.is_empty() {
        let (h, n) = FrameHeader::decode(rest).unwrap().unwrap();
        rsvs.push((h.opcode, h.rsv));
        rest = &rest[n + h.payload_len as usize..];
    }
    assert!(rsvs.len() > 1);
    assert_eq!(rsvs[0], (OpCode::Text, RSV1));
    assert!(rsvs[1..].iter().all(|&r| r == (OpCode::Continuation, 0)));
    c.receive(&out);
    assert_eq!(
        c.poll_event().unwrap(),
        Some(Event::Message(Message::text(text)))
    );
}

#[test]
fn small_messages_go_uncompressed() {
    let mut cfg = config(Some(DeflateParams::default()));
    cfg.deflate.as_mut().unwrap().min_size = 10;
    let mut s = Connection::new(Role::Server, cfg);
    s.send(Message::text("short")).unwrap();
    assert_eq!(&s.take_output()[..], b"\x81\x05short");
    s.send(Message::text("long enough")).unwrap();
    assert_eq!(s.take_output()[0], 0xc1);
}

#[test]
fn empty_message_round_trips_compressed() {
    let (mut c, mut s) = pair(DeflateParams::default());
    c.send(Message::text("")).unwrap();
    let out = c.take_output();
    assert_eq!(out[0], 0xc1);
    s.receive(&out);
    assert_eq!(
        s.poll_event().unwrap(),
        Some(Event::Message(Message::text("")))
    );
}

#[test]
fn codec_state_is_allocated_on_first_use_only() {
    let (mut c, mut s) = pair(DeflateParams::default());
    assert_eq!(s.deflate_allocated(), (false, false));
    c.send(Message::text("hello hello hello")).unwrap();
    s.receive(&c.take_output());
    s.poll_event().unwrap();
    assert_eq!(c.deflate_allocated(), (true, false));
    assert_eq!(s.deflate_allocated(), (false, true));
}

#[test]
fn connection_reports_negotiated_params() {
    let (c, _) = pair(DeflateParams::default());
    assert_eq!(c.deflate(), Some(DeflateParams::default()));
    assert_eq!(Connection::new(Role::Client, config(None)).deflate(), None);
}

fn params_strategy() -> impl Strategy<Value = DeflateParams> {
    (any::<bool>(), any::<bool>(), 8u8..=15, 8u8..=15).prop_map(|(snct, cnct, sb, cb)| {
        DeflateParams {
            server_no_context_takeover: snct,
            client_no_context_takeover: cnct,
            server_max_window_bits: sb,
            client_max_window_bits: cb,
        }
    })
}

fn message_strategy() -> impl Strategy<Value = Message> {
    prop_oneof![
        ".{0,300}".prop_map(Message::text),
        proptest::collection::vec(any::<u8>(), 0..2000).prop_map(Message::binary),
        // Compressible: repeated short runs.
        (proptest::collection::vec(0u8..4, 1..8), 0usize..3000)
            .prop_map(|(unit, n)| Message::binary(unit.repeat(n))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random messages, fragmentation and read chunking, both directions,
    /// any negotiated parameters: everything arrives intact.
    #[test]
    fn deflate_round_trip_through_two_connections(
        params in params_strategy(),
        msgs in proptest::collection::vec(message_strategy(), 1..12),
        frag in proptest::option::of(1usize..200),
        chunk in 1usize..500,
        level in 0u32..=9,
        min_size in 0usize..100,
    ) {
        let mk = |role| {
            let mut cfg = config(Some(params));
            cfg.fragment_size = frag;
            cfg.deflate = Some(DeflateConfig { level, min_size, ..Default::default() });
            Connection::new(role, cfg)
        };
        let (mut c, mut s) = (mk(Role::Client), mk(Role::Server));
        for dir in 0..2 {
            let (from, to) = if dir == 0 { (&mut c, &mut s) } else { (&mut s, &mut c) };
            for m in &msgs {
                from.send(m.clone()).unwrap();
            }
            let bytes = from.take_output();
            let mut got = Vec::new();
            for piece in bytes.chunks(chunk) {
                to.receive(piece);
                while let Some(ev) = to.poll_event().unwrap() {
                    got.push(ev);
                }
            }
            let want: Vec<Event> = msgs.iter().cloned().map(Event::Message).collect();
            prop_assert_eq!(got, want);
        }
    }

    /// Arbitrary bytes as a compressed frame never panic; failures carry
    /// 1007 or 1009, and output never exceeds the limit.
    #[test]
    fn arbitrary_compressed_payload_is_safe(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut s = Connection::new(Role::Server, Config {
            max_message_size: 4096,
            ..config(Some(DeflateParams::default()))
        });
        s.receive(&raw(true, RSV1, OpCode::Binary, &data));
        match s.poll_event() {
            Ok(Some(Event::Message(m))) => prop_assert!(m.len() <= 4096),
            Ok(other) => prop_assert!(false, "unexpected {:?}", other),
            Err(e) => prop_assert!(
                [CloseCode::INVALID_PAYLOAD, CloseCode::MESSAGE_TOO_BIG].contains(&e.close_code())
            ),
        }
    }
}

#[test]
fn compressed_bytes_are_what_flows() {
    // Sanity: a compressible message is actually smaller on the wire.
    let (mut c, mut s) = pair(DeflateParams::default());
    let msg = Message::text("abc".repeat(10_000));
    c.send(msg.clone()).unwrap();
    let out: Bytes = c.take_output();
    assert!(out.len() < 1000, "{}", out.len());
    s.receive(&out);
    assert_eq!(s.poll_event().unwrap(), Some(Event::Message(msg)));
}

// ----- shared states -----------------------------------------------------

/// A pair whose zlib states come from a pool of `states` per thread.
fn shared_pair(params: DeflateParams, states: usize) -> (Connection, Connection) {
    let mk = |role| {
        let mut cfg = config(Some(params));
        cfg.deflate = Some(DeflateConfig {
            min_size: 0,
            memory: CodecMemory {
                states_per_thread: states,
                ..CodecMemory::default()
            },
            ..Default::default()
        });
        Connection::new(role, cfg)
    };
    (mk(Role::Client), mk(Role::Server))
}

/// Send `m` from `from` to `to`; the bytes on the wire and what arrived.
fn transfer(from: &mut Connection, to: &mut Connection, m: &Message) -> (usize, Message) {
    from.send(m.clone()).unwrap();
    let bytes = from.take_output();
    to.receive(&bytes);
    match to.poll_event().unwrap() {
        Some(Event::Message(got)) => (bytes.len(), got),
        other => panic!("expected a message, got {other:?}"),
    }
}

#[test]
fn connections_taking_turns_on_one_state_keep_their_own_context() {
    let mut pairs: Vec<_> = (0..3)
        .map(|_| shared_pair(DeflateParams::default(), 1))
        .collect();
    // Little repetition within a message, so only a back-reference to an
    // earlier message makes it small.
    let msg = |k: usize| {
        let words: Vec<String> = (0..80)
            .map(|i| format!("w{}x{}", i * (k + 3) + 7, i * i))
            .collect();
        Message::text(format!("{{\"pair\":{k},\"text\":\"{}\"}}", words.join(" ")))
    };
    // Every message is compressed on the one state after another pair used
    // it: the second copy of a message is still a back-reference to the
    // first, so the connection's own history primed the state.
    let mut sizes = vec![Vec::new(); 3];
    for _round in 0..2 {
        for (k, (c, s)) in pairs.iter_mut().enumerate() {
            let (n, got) = transfer(c, s, &msg(k));
            assert_eq!(got, msg(k));
            let (_, back) = transfer(s, c, &msg(k));
            assert_eq!(back, msg(k));
            sizes[k].push(n);
        }
    }
    for s in &sizes {
        assert!(
            s[1] < 20 && s[1] * 3 < s[0],
            "second copy {} vs first {}",
            s[1],
            s[0]
        );
    }
    assert_eq!(pooled_on_this_thread(), (1, 1));
}

#[test]
fn a_connection_that_sent_on_another_thread_does_not_continue_a_stale_state() {
    let (mut c, mut s) = shared_pair(DeflateParams::default(), 4);
    let m1 = Message::text("first message on this thread ".repeat(10));
    let m2 = Message::text("second message, sent from another thread ".repeat(10));
    let m3 = Message::text("third message back on the first thread ".repeat(10));
    assert_eq!(transfer(&mut c, &mut s, &m1).1, m1);
    // This thread's pool still holds the state that compressed m1; m2 goes
    // out on another thread's state.
    let (c2, s2) = std::thread::scope(|t| {
        t.spawn(move || {
            assert_eq!(transfer(&mut c, &mut s, &m2).1, m2);
            (c, s)
        })
        .join()
        .unwrap()
    });
    let (mut c, mut s) = (c2, s2);
    for _ in 0..3 {
        assert_eq!(transfer(&mut c, &mut s, &m3).1, m3);
        assert_eq!(transfer(&mut s, &mut c, &m1).1, m1);
    }
}

#[test]
fn between_messages_a_connection_holds_only_its_histories() {
    let (mut c, mut s) = shared_pair(DeflateParams::default(), 4);
    for k in 0..200 {
        let m = Message::text(
            format!("{{\"seq\":{k},\"price\":\"{}.{}\"}}", 1000 + k * 7, k % 100).repeat(4),
        );
        transfer(&mut c, &mut s, &m);
        transfer(&mut s, &mut c, &m);
    }
    // Send history (16 KiB by default) + receive window (32 KiB at most).
    let held = s.deflate_held_bytes();
    assert!(held > 0 && held <= 48 * 1024, "held {held}");
    // Quiet for a whole interval: the send history goes, the window stays.
    s.release_quiet_deflate(); // a message was sent since the last call
    assert_eq!(s.deflate_held_bytes(), held);
    s.release_quiet_deflate();
    let quiet = s.deflate_held_bytes();
    assert!(
        quiet < held && quiet <= 32 * 1024,
        "quiet {quiet}, was {held}"
    );
    // And the stream carries on.
    let m = Message::text("after a quiet spell ".repeat(30));
    assert_eq!(transfer(&mut s, &mut c, &m).1, m);
}

#[test]
fn without_context_takeover_nothing_is_held_between_messages() {
    let nct = DeflateParams {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        ..DeflateParams::default()
    };
    let (mut c, mut s) = shared_pair(nct, 4);
    for k in 0..50 {
        let m = Message::text(format!("message {k} ").repeat(50));
        assert_eq!(transfer(&mut c, &mut s, &m).1, m);
        assert_eq!(transfer(&mut s, &mut c, &m).1, m);
    }
    assert_eq!(s.deflate_held_bytes(), 0);
    assert_eq!(c.deflate_held_bytes(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Several pairs on one thread sharing fewer states than they need,
    /// messages in random order, any parameters and levels: every message
    /// arrives intact.
    #[test]
    fn shared_states_round_trip_in_any_interleaving(
        params in params_strategy(),
        states in 1usize..4,
        history in 0usize..40_000,
        level in 0u32..=9,
        sends in proptest::collection::vec((0usize..4, any::<bool>(), message_strategy()), 1..40),
    ) {
        let mk = |role| {
            let mut cfg = config(Some(params));
            cfg.deflate = Some(DeflateConfig {
                level,
                min_size: 0,
                memory: CodecMemory { states_per_thread: states, send_history: history, ..CodecMemory::default() },
                ..Default::default()
            });
            Connection::new(role, cfg)
        };
        let mut pairs: Vec<_> = (0..4).map(|_| (mk(Role::Client), mk(Role::Server))).collect();
        for (k, to_client, m) in &sends {
            let (c, s) = &mut pairs[*k];
            let (from, to) = if *to_client { (s, c) } else { (c, s) };
            prop_assert_eq!(&transfer(from, to, m).1, m);
        }
    }
}
