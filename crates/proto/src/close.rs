//! Close codes and close frame payloads (RFC 6455 §5.5.1, §7.4).

use crate::error::ProtocolError;
use crate::utf8::Utf8Bytes;
use bytes::{BufMut, Bytes, BytesMut};
use std::fmt;

/// A close status code.
///
/// ```
/// use tether_proto::CloseCode;
/// assert!(CloseCode::NORMAL.is_valid_on_wire());
/// assert!(!CloseCode::NO_STATUS.is_valid_on_wire()); // 1005 is never sent
/// assert!(CloseCode::from(3000).is_valid_on_wire()); // registered range
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: normal closure.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: protocol error.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: a data type the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1005: no status code was present (never sent on the wire).
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: closed without a close frame (never sent on the wire).
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: payload inconsistent with the message type (e.g. bad UTF-8).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: policy violation.
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: message too big to process.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: the client expected an extension the server did not negotiate.
    pub const MANDATORY_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: the server hit an unexpected condition.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1012: service restart.
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    /// 1013: try again later.
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
    /// 1014: bad gateway.
    pub const BAD_GATEWAY: CloseCode = CloseCode(1014);
    /// 1015: TLS handshake failure (never sent on the wire).
    pub const TLS_HANDSHAKE: CloseCode = CloseCode(1015);

    /// May this code appear in a close frame? 1000-1003, 1007-1014 and
    /// 3000-4999 may; 1004-1006, 1015, anything below 1000, 1016-2999 and
    /// 5000 and up may not.
    pub fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }

    /// The numeric value.
    pub fn as_u16(self) -> u16 {
        self.0
    }

    /// A short name for logs and metrics ("normal", "protocol_error", ...).
    pub fn name(self) -> &'static str {
        match self.0 {
            1000 => "normal",
            1001 => "going_away",
            1002 => "protocol_error",
            1003 => "unsupported_data",
            1005 => "no_status",
            1006 => "abnormal",
            1007 => "invalid_payload",
            1008 => "policy_violation",
            1009 => "message_too_big",
            1010 => "mandatory_extension",
            1011 => "internal_error",
            1012 => "service_restart",
            1013 => "try_again_later",
            1014 => "bad_gateway",
            1015 => "tls_handshake",
            3000..=3999 => "registered",
            4000..=4999 => "private",
            _ => "invalid",
        }
    }
}

impl From<u16> for CloseCode {
    fn from(v: u16) -> Self {
        CloseCode(v)
    }
}

impl From<CloseCode> for u16 {
    fn from(c: CloseCode) -> u16 {
        c.0
    }
}

impl fmt::Debug for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.0, self.name())
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The body of a close frame: a code and a UTF-8 reason of at most 123 bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code.
    pub code: CloseCode,
    /// The reason (may be empty).
    pub reason: Utf8Bytes,
}

/// The longest reason that fits in a close frame (125 - 2 bytes of code).
pub const MAX_REASON_LEN: usize = 123;

impl CloseFrame {
    /// A close frame with a code and reason.
    pub fn new(code: impl Into<CloseCode>, reason: impl Into<Utf8Bytes>) -> Self {
        CloseFrame {
            code: code.into(),
            reason: reason.into(),
        }
    }

    /// Parse a received close payload (already unmasked).
    ///
    /// An empty payload means "no status" (`Ok(None)`); a single byte, a code
    /// that may not be sent, or a reason that is not UTF-8 are protocol errors.
    pub fn parse(payload: &Bytes) -> Result<Option<CloseFrame>, ProtocolError> {
        match payload.len() {
            0 => Ok(None),
            1 => Err(ProtocolError::ClosePayloadOfOneByte),
            _ => {
                let code = CloseCode(u16::from_be_bytes([payload[0], payload[1]]));
                if !code.is_valid_on_wire() {
                    return Err(ProtocolError::InvalidCloseCode(code.0));
                }
                let reason = Utf8Bytes::try_from_bytes(payload.slice(2..))
                    .map_err(|_| ProtocolError::CloseReasonNotUtf8)?;
                Ok(Some(CloseFrame { code, reason }))
            }
        }
    }

    /// Append the wire payload (code + reason) to `out`.
    pub(crate) fn encode_payload(&self, out: &mut BytesMut) {
        out.put_u16(self.code.0);
        out.extend_from_slice(self.reason.as_bytes());
    }
}

impl fmt::Display for CloseFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reason.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{} {:?}", self.code, self.reason.as_str())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_and_invalid_codes_per_rfc() {
        for c in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
            4000, 4999,
        ] {
            assert!(CloseCode(c).is_valid_on_wire(), "{c}");
        }
        for c in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!CloseCode(c).is_valid_on_wire(), "{c}");
        }
    }

    #[test]
    fn empty_payload_means_no_status() {
        assert_eq!(CloseFrame::parse(&Bytes::new()), Ok(None));
    }

    #[test]
    fn one_byte_payload_is_a_protocol_error() {
        assert_eq!(
            CloseFrame::parse(&Bytes::from_static(&[3])),
            Err(ProtocolError::ClosePayloadOfOneByte)
        );
    }

    #[test]
    fn reason_must_be_utf8() {
        let p = Bytes::from_static(&[
            0x03, 0xe8, 0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed,
            0xa0, 0x80,
        ]);
        assert_eq!(
            CloseFrame::parse(&p),
            Err(ProtocolError::CloseReasonNotUtf8)
        );
    }

    #[test]
    fn parses_code_and_reason() {
        let p = Bytes::from_static(b"\x03\xe8bye");
        let f = CloseFrame::parse(&p).unwrap().unwrap();
        assert_eq!(f.code, CloseCode::NORMAL);
        assert_eq!(f.reason, "bye");
    }
}
