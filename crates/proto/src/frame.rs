//! Frame headers (RFC 6455 §5.2): decoding and encoding.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |     Extended payload length continued, if payload len == 127  |
//! + - - - - - - - - - - - - - - - +-------------------------------+
//! |                               |Masking-key, if MASK set to 1  |
//! +-------------------------------+-------------------------------+
//! ```
//!
//! Only the header lives here: payloads stay in the caller's buffer, so
//! decoding never copies and never allocates. The checks here are those that
//! need nothing but the header itself (reserved opcodes, control frame rules,
//! the 64-bit length's top bit); rules that depend on the role or negotiated
//! extensions are the connection's.

use crate::error::ProtocolError;

/// The longest possible frame header: 2 + 8 (length) + 4 (mask).
pub const MAX_HEADER_LEN: usize = 14;

/// The largest payload a control frame may carry (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame's opcode (RFC 6455 §5.2, §11.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// 0x0: continues a fragmented message.
    Continuation,
    /// 0x1: the first frame of a text message.
    Text,
    /// 0x2: the first frame of a binary message.
    Binary,
    /// 0x8: close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl OpCode {
    /// Decode the 4-bit opcode; reserved values are a protocol error.
    #[inline]
    pub fn from_u8(b: u8) -> Result<OpCode, ProtocolError> {
        Ok(match b {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            other => return Err(ProtocolError::ReservedOpcode(other)),
        })
    }

    /// The 4-bit wire value.
    #[inline]
    pub fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Close, Ping and Pong are control frames.
    #[inline]
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// RSV1 bit, used by permessage-deflate (RFC 7692).
pub const RSV1: u8 = 0b100;
/// RSV2 bit.
pub const RSV2: u8 = 0b010;
/// RSV3 bit.
pub const RSV3: u8 = 0b001;

/// A decoded frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Final fragment of a message.
    pub fin: bool,
    /// RSV1..RSV3 as the low three bits (`RSV1` = 0b100).
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, if the frame is masked.
    pub mask: Option<[u8; 4]>,
    /// Payload length as declared. Never trust it for allocation.
    pub payload_len: u64,
}

impl FrameHeader {
    /// Decode a header from the start of `buf`.
    ///
    /// Returns `Ok(None)` if `buf` does not yet hold the whole header, and
    /// otherwise the header and its length in bytes.
    ///
    /// ```
    /// use tether_proto::frame::{FrameHeader, OpCode};
    /// // RFC 6455 §5.7: a single-frame unmasked text message "Hello".
    /// let (h, len) = FrameHeader::decode(&[0x81, 0x05, b'H']).unwrap().unwrap();
    /// assert_eq!((h.opcode, h.fin, h.payload_len, len), (OpCode::Text, true, 5, 2));
    /// ```
    #[inline]
    pub fn decode(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let b0 = buf[0];
        let b1 = buf[1];
        let fin = b0 & 0x80 != 0;
        let rsv = (b0 >> 4) & 0x07;
        let opcode = OpCode::from_u8(b0 & 0x0f)?;
        let masked = b1 & 0x80 != 0;
        let len7 = b1 & 0x7f;
        if opcode.is_control() {
            if !fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
            if len7 as usize > MAX_CONTROL_PAYLOAD {
                return Err(ProtocolError::ControlFrameTooLong);
            }
        }
        let (payload_len, mut pos) = match len7 {
            126 => {
                if buf.len() < 4 {
                    return Ok(None);
                }
                (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4)
            }
            127 => {
                if buf.len() < 10 {
                    return Ok(None);
                }
                let mut b = [0u8; 8];
                b.copy_from_slice(&buf[2..10]);
                let len = u64::from_be_bytes(b);
                if len >> 63 != 0 {
                    return Err(ProtocolError::PayloadLengthMsbSet);
                }
                (len, 10)
            }
            n => (n as u64, 2),
        };
        let mask = if masked {
            if buf.len() < pos + 4 {
                return Ok(None);
            }
            let key = [buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]];
            pos += 4;
            Some(key)
        } else {
            None
        };
        Ok(Some((
            FrameHeader {
                fin,
                rsv,
                opcode,
                mask,
                payload_len,
            },
            pos,
        )))
    }

    /// The number of bytes [`encode`](Self::encode) writes.
    #[inline]
    pub fn encoded_len(&self) -> usize {
        let len = match self.payload_len {
            0..=125 => 2,
            126..=0xffff => 4,
            _ => 10,
        };
        len + if self.mask.is_some() { 4 } else { 0 }
    }

    /// Encode into `out`, returning the number of bytes written.
    /// Always uses the minimal length encoding (RFC 6455 §5.2).
    #[inline]
    pub fn encode(&self, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
        let (bytes, len) = self.to_bytes();
        out[..len].copy_from_slice(&bytes[..len]);
        len
    }

    /// The encoded header in the first `len` bytes of a 16-byte array
    /// (the rest is zero), and `len`.
    ///
    /// Built in one 128-bit integer rather than byte by byte, so an encoder
    /// can store it with a single 16-byte move: reading back a header just
    /// written in single bytes and small pieces stalls the processor (the
    /// stores cannot be forwarded to one wide load), which showed up as the
    /// most expensive instruction of encoding a small frame.
    #[inline]
    pub fn to_bytes(&self) -> ([u8; 16], usize) {
        let b0 = (u8::from(self.fin) << 7) | ((self.rsv & 0x07) << 4) | self.opcode.as_u8();
        let mask_bit: u8 = if self.mask.is_some() { 0x80 } else { 0 };
        // Little-endian layout: byte k of the header is bits 8k..8k+8.
        let (mut word, mut len) = match self.payload_len {
            n @ 0..=125 => (u128::from(b0) | u128::from(mask_bit | n as u8) << 8, 2),
            n @ 126..=0xffff => {
                let ext = u16::from_le_bytes((n as u16).to_be_bytes());
                (
                    u128::from(b0) | u128::from(mask_bit | 126) << 8 | u128::from(ext) << 16,
                    4,
                )
            }
            n => {
                let ext = u64::from_le_bytes(n.to_be_bytes());
                (
                    u128::from(b0) | u128::from(mask_bit | 127) << 8 | u128::from(ext) << 16,
                    10,
                )
            }
        };
        if let Some(key) = self.mask {
            word |= u128::from(u32::from_le_bytes(key)) << (len * 8);
            len += 4;
        }
        (word.to_le_bytes(), len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(buf: &[u8]) -> (FrameHeader, usize) {
        FrameHeader::decode(buf).unwrap().unwrap()
    }

    #[test]
    fn rfc6455_unmasked_text_hello() {
        let (h, len) = decode_all(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        assert_eq!(len, 2);
        assert_eq!(
            h,
            FrameHeader {
                fin: true,
                rsv: 0,
                opcode: OpCode::Text,
                mask: None,
                payload_len: 5
            }
        );
    }

    #[test]
    fn rfc6455_masked_text_hello() {
        let (h, len) = decode_all(&[
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ]);
        assert_eq!(len, 6);
        assert_eq!(h.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
        assert_eq!(h.payload_len, 5);
    }

    #[test]
    fn rfc6455_fragmented_text_first_and_last() {
        let (h, _) = decode_all(&[0x01, 0x03, 0x48, 0x65, 0x6c]);
        assert!(!h.fin);
        assert_eq!(h.opcode, OpCode::Text);
        let (h, _) = decode_all(&[0x80, 0x02, 0x6c, 0x6f]);
        assert!(h.fin);
        assert_eq!(h.opcode, OpCode::Continuation);
    }

    #[test]
    fn rfc6455_ping_and_pong() {
        let (h, _) = decode_all(&[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        assert_eq!(h.opcode, OpCode::Ping);
        let (h, _) = decode_all(&[
            0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ]);
        assert_eq!(h.opcode, OpCode::Pong);
        assert!(h.mask.is_some());
    }

    #[test]
    fn rfc6455_256_byte_and_64k_binary_lengths() {
        let (h, len) = decode_all(&[0x82, 0x7e, 0x01, 0x00]);
        assert_eq!((h.payload_len, len), (256, 4));
        let (h, len) = decode_all(&[0x82, 0x7f, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00]);
        assert_eq!((h.payload_len, len), (65536, 10));
    }

    #[test]
    fn incomplete_headers_ask_for_more() {
        let full = [0x82, 0xff, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00, 1, 2, 3, 4];
        for n in 0..full.len() {
            assert_eq!(FrameHeader::decode(&full[..n]).unwrap(), None, "prefix {n}");
        }
        assert!(FrameHeader::decode(&full).unwrap().is_some());
    }

    #[test]
    fn reserved_opcodes_are_rejected() {
        for op in [3u8, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
            assert_eq!(
                FrameHeader::decode(&[0x80 | op, 0]),
                Err(ProtocolError::ReservedOpcode(op))
            );
        }
    }

    #[test]
    fn fragmented_control_frames_are_rejected() {
        assert_eq!(
            FrameHeader::decode(&[0x09, 0]),
            Err(ProtocolError::FragmentedControlFrame)
        );
    }

    #[test]
    fn control_frames_over_125_bytes_are_rejected() {
        assert_eq!(
            FrameHeader::decode(&[0x89, 126]),
            Err(ProtocolError::ControlFrameTooLong)
        );
        assert_eq!(
            FrameHeader::decode(&[0x88, 127]),
            Err(ProtocolError::ControlFrameTooLong)
        );
    }

    #[test]
    fn sixty_four_bit_length_with_top_bit_is_rejected() {
        let buf = [0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(
            FrameHeader::decode(&buf),
            Err(ProtocolError::PayloadLengthMsbSet)
        );
    }

    fn any_header() -> impl Strategy<Value = FrameHeader> {
        let opcode = prop_oneof![
            Just(OpCode::Continuation),
            Just(OpCode::Text),
            Just(OpCode::Binary),
            Just(OpCode::Close),
            Just(OpCode::Ping),
            Just(OpCode::Pong)
        ];
        (
            any::<bool>(),
            0u8..8,
            opcode,
            any::<Option<[u8; 4]>>(),
            0u64..(1 << 63),
        )
            .prop_map(|(fin, rsv, opcode, mask, len)| {
                let (fin, payload_len) = if opcode.is_control() {
                    (true, len % 126)
                } else {
                    (fin, len)
                };
                FrameHeader {
                    fin,
                    rsv,
                    opcode,
                    mask,
                    payload_len,
                }
            })
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(h in any_header()) {
            let mut out = [0u8; MAX_HEADER_LEN];
            let n = h.encode(&mut out);
            prop_assert_eq!(n, h.encoded_len());
            prop_assert_eq!(FrameHeader::decode(&out[..n]).unwrap(), Some((h, n)));
        }

        #[test]
        fn decode_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..20)) {
            let _ = FrameHeader::decode(&buf);
        }
    }
}
