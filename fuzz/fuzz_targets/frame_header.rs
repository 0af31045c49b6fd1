//! `FrameHeader::decode` never panics on any input, and whatever it decodes
//! survives an encode/decode round trip. When the input used the minimal
//! length encoding (RFC 6455 §5.2), re-encoding reproduces it byte for byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_proto::frame::{FrameHeader, MAX_HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    let Ok(Some((header, len))) = FrameHeader::decode(data) else {
        return;
    };
    assert!((2..=MAX_HEADER_LEN).contains(&len), "header length {len}");
    assert!(len <= data.len());
    assert!(header.rsv <= 0b111);
    assert_eq!(
        header.payload_len >> 63,
        0,
        "MSB of a 64-bit length accepted"
    );
    if header.opcode.is_control() {
        assert!(header.fin, "fragmented control frame accepted");
        assert!(header.payload_len <= 125, "long control frame accepted");
    }

    // Decoding any prefix of a complete header asks for more bytes (or
    // reports the same error-free result once complete): never a different
    // header.
    for cut in 0..len {
        match FrameHeader::decode(&data[..cut]) {
            Ok(None) => {}
            other => panic!("prefix of {cut} bytes decoded as {other:?}"),
        }
    }

    let mut out = [0u8; MAX_HEADER_LEN];
    let n = header.encode(&mut out);
    assert_eq!(n, header.encoded_len());
    assert!(n <= len, "minimal encoding longer than the input's");
    let (again, again_len) = FrameHeader::decode(&out[..n])
        .expect("re-encoded header is valid")
        .expect("re-encoded header is complete");
    assert_eq!(again, header);
    assert_eq!(again_len, n);

    let minimal = match data[1] & 0x7f {
        126 => header.payload_len >= 126,
        127 => header.payload_len > 0xffff,
        _ => true,
    };
    if minimal {
        assert_eq!(&out[..n], &data[..len], "minimal header not reproduced");
    }
});
