//! The permessage-deflate inflate path: arbitrary bytes as compressed
//! payloads, split into arbitrary pieces, through a `Decompressor` and
//! through a server `Connection` with deflate negotiated.
//!
//! Input: byte 0 picks the window bits (8..=15) and whether the message is
//! text; byte 1 the output limit (in 256-byte units, at least 1); byte 2 the
//! piece size. The rest is the compressed payload.
//!
//! Invariants: no panic; the inflated size never exceeds the limit; errors
//! map to 1007 or 1009 (1002 is impossible: the frames are valid); whatever
//! inflates, re-compressed and inflated again, is unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_proto::deflate::{Compressor, Decompressor, DeflateParams};
use tether_proto::frame::{FrameHeader, OpCode, MAX_HEADER_LEN, RSV1};
use tether_proto::{CloseCode, Config, Connection, Event, Role};

fn frame(fin: bool, rsv: u8, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let h = FrameHeader {
        fin,
        rsv,
        opcode,
        mask: Some([0; 4]),
        payload_len: payload.len() as u64,
    };
    let mut hb = [0u8; MAX_HEADER_LEN];
    let n = h.encode(&mut hb);
    let mut out = hb[..n].to_vec();
    out.extend_from_slice(payload); // a zero mask leaves the payload as is
    out
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let bits = 8 + (data[0] & 7);
    let text = data[0] & 8 != 0;
    let limit = (data[1] as usize).max(1) * 256;
    let piece = (data[2] as usize).max(1);
    let payload = &data[3..];

    // 1. The decompressor alone, fed in pieces.
    let mut d = Decompressor::new(bits);
    let mut out = Vec::new();
    let mut result = Ok(());
    let pieces: Vec<&[u8]> = payload.chunks(piece).collect();
    for (i, p) in pieces.iter().enumerate() {
        result = d.decompress(p, i + 1 == pieces.len(), &mut out, limit, |_| Ok(()));
        assert!(out.len() <= limit + 1);
        if result.is_err() {
            break;
        }
    }
    if pieces.is_empty() {
        result = d.decompress(&[], true, &mut out, limit, |_| Ok(()));
    }
    match &result {
        Ok(()) => {
            assert!(out.len() <= limit);
            let mut c = Compressor::new(bits, 6, false);
            let z = c.compress(&out);
            let mut again = Vec::new();
            Decompressor::new(bits)
                .decompress(&z, true, &mut again, usize::MAX, |_| Ok(()))
                .expect("our own output inflates");
            assert_eq!(again, out);
        }
        Err(e) => assert!(
            [CloseCode::INVALID_PAYLOAD, CloseCode::MESSAGE_TOO_BIG].contains(&e.close_code())
        ),
    }

    // 2. The same payload as a fragmented compressed message.
    let params = DeflateParams {
        client_max_window_bits: bits,
        ..DeflateParams::default()
    };
    let mut conn = Connection::new(
        Role::Server,
        Config::default()
            .with_max_message_size(limit)
            .with_negotiated_deflate(Some(params)),
    );
    let opcode = if text { OpCode::Text } else { OpCode::Binary };
    let mut wire = Vec::new();
    if pieces.is_empty() {
        wire.extend(frame(true, RSV1, opcode, &[]));
    }
    for (i, p) in pieces.iter().enumerate() {
        let (rsv, op) = if i == 0 {
            (RSV1, opcode)
        } else {
            (0, OpCode::Continuation)
        };
        wire.extend(frame(i + 1 == pieces.len(), rsv, op, p));
    }
    conn.receive(&wire);
    loop {
        match conn.poll_event() {
            Ok(Some(Event::Message(m))) => {
                assert!(m.len() <= limit);
                if !text {
                    assert_eq!(result, Ok(()));
                    assert_eq!(m.len(), out.len());
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => {
                assert!(
                    [CloseCode::INVALID_PAYLOAD, CloseCode::MESSAGE_TOO_BIG]
                        .contains(&e.close_code()),
                    "{e}"
                );
                break;
            }
        }
    }
});
