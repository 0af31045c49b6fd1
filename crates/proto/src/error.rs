//! Errors, split by who is to blame.
//!
//! * [`ProtocolError`]: the peer broke RFC 6455 (or one of our limits). Each
//!   variant names the rule and maps, in one place ([`ProtocolError::close_code`]),
//!   to the close code the connection is failed with.
//! * [`SendError`]: the application asked for something the protocol forbids
//!   (sending after close, an invalid close code, an oversized control frame).
//!   Nothing is sent and the connection is unchanged.
//! * [`Timeout`]: a deadline of the connection passed (the peer went silent,
//!   or left the closing handshake unfinished); each names its setting.

use crate::close::CloseCode;
use std::time::Duration;

/// The peer violated the protocol or a configured limit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// RSV1-3 set without a negotiated extension that defines them (§5.2).
    #[error("reserved bits set without a negotiated extension (RFC 6455 §5.2)")]
    ReservedBitsSet,
    /// An opcode 0x3-0x7 or 0xB-0xF (§5.2).
    #[error("reserved opcode {0:#x} (RFC 6455 §5.2)")]
    ReservedOpcode(u8),
    /// A control frame with FIN clear (§5.5).
    #[error("fragmented control frame (RFC 6455 §5.5)")]
    FragmentedControlFrame,
    /// A control frame with more than 125 bytes of payload (§5.5).
    #[error("control frame payload longer than 125 bytes (RFC 6455 §5.5)")]
    ControlFrameTooLong,
    /// A 64-bit payload length with the most significant bit set (§5.2).
    #[error("64-bit payload length with its most significant bit set (RFC 6455 §5.2)")]
    PayloadLengthMsbSet,
    /// A client sent an unmasked frame (§5.1).
    #[error("client frame not masked (RFC 6455 §5.1)")]
    UnmaskedClientFrame,
    /// A server sent a masked frame (§5.1).
    #[error("server frame masked (RFC 6455 §5.1)")]
    MaskedServerFrame,
    /// A continuation frame with no message in progress (§5.4).
    #[error("continuation frame without a message to continue (RFC 6455 §5.4)")]
    UnexpectedContinuation,
    /// A new text/binary frame while a fragmented message is unfinished (§5.4).
    #[error("new data frame before the fragmented message ended (RFC 6455 §5.4)")]
    ExpectedContinuation,
    /// A text message that is not valid UTF-8 (§8.1).
    #[error("text message is not valid UTF-8 (RFC 6455 §8.1)")]
    InvalidUtf8,
    /// A close frame with a one-byte payload (§5.5.1).
    #[error("close frame payload of one byte (RFC 6455 §5.5.1)")]
    ClosePayloadOfOneByte,
    /// A close code that may not be sent (§7.4).
    #[error("invalid close code {0} (RFC 6455 §7.4)")]
    InvalidCloseCode(u16),
    /// A close reason that is not UTF-8 (§5.5.1).
    #[error("close reason is not valid UTF-8 (RFC 6455 §5.5.1)")]
    CloseReasonNotUtf8,
    /// A frame larger than the configured maximum.
    #[error("frame of {size} bytes exceeds the limit of {limit}")]
    FrameTooLarge {
        /// Declared size.
        size: u64,
        /// Configured limit.
        limit: usize,
    },
    /// A message larger than the configured maximum.
    #[error("message of at least {size} bytes exceeds the limit of {limit}")]
    MessageTooLarge {
        /// Size reached (or declared).
        size: u64,
        /// Configured limit.
        limit: usize,
    },
    /// An extension (e.g. permessage-deflate) could not decode a message.
    #[error("extension error: {0}")]
    Extension(&'static str),
}

impl ProtocolError {
    /// The close code to fail the connection with (RFC 6455 §7.4.1).
    ///
    /// ```
    /// use tether_proto::{CloseCode, ProtocolError};
    /// assert_eq!(ProtocolError::InvalidUtf8.close_code(), CloseCode::INVALID_PAYLOAD);
    /// ```
    pub fn close_code(&self) -> CloseCode {
        use ProtocolError::*;
        match self {
            InvalidUtf8 | CloseReasonNotUtf8 => CloseCode::INVALID_PAYLOAD,
            FrameTooLarge { .. } | MessageTooLarge { .. } => CloseCode::MESSAGE_TOO_BIG,
            Extension(_) => CloseCode::INVALID_PAYLOAD,
            ReservedBitsSet
            | ReservedOpcode(_)
            | FragmentedControlFrame
            | ControlFrameTooLong
            | PayloadLengthMsbSet
            | UnmaskedClientFrame
            | MaskedServerFrame
            | UnexpectedContinuation
            | ExpectedContinuation
            | ClosePayloadOfOneByte
            | InvalidCloseCode(_) => CloseCode::PROTOCOL_ERROR,
        }
    }
}

/// The application asked for something the protocol does not allow.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// A Close frame was already sent; no further frames may follow (§5.5.1).
    #[error("the connection is closing: no frames may follow a Close (RFC 6455 §5.5.1)")]
    Closing,
    /// Control frame payloads are at most 125 bytes (§5.5).
    #[error("control frame payload of {0} bytes exceeds 125 (RFC 6455 §5.5)")]
    ControlPayloadTooLong(usize),
    /// This close code may not be sent (§7.4).
    #[error("close code {0} may not be sent (RFC 6455 §7.4)")]
    InvalidCloseCode(u16),
    /// The close reason does not fit in 123 bytes (§5.5.1).
    #[error("close reason of {0} bytes exceeds 123 (RFC 6455 §5.5.1)")]
    CloseReasonTooLong(usize),
    /// A continuation was sent with no fragmented message started, or a new
    /// message was started before the last one was finished (§5.4).
    #[error("fragment out of sequence (RFC 6455 §5.4)")]
    FragmentOutOfSequence,
}

/// A deadline of the connection passed
/// ([`Connection::handle_timeout`](crate::Connection::handle_timeout)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Timeout {
    /// Nothing arrived within [`Keepalive::timeout`](crate::Keepalive::timeout)
    /// of a keepalive ping: the peer is taken for dead.
    #[error("no answer to a keepalive ping within keepalive.timeout ({after:?})")]
    KeepalivePong {
        /// The configured `keepalive.timeout`.
        after: Duration,
    },
    /// The closing handshake did not finish within
    /// [`Config::close_timeout`](crate::Config::close_timeout): the
    /// transport is to be closed.
    #[error("closing handshake unfinished after close_timeout ({after:?})")]
    ClosingHandshake {
        /// The configured `close_timeout`.
        after: Duration,
    },
}

impl Timeout {
    /// What was being waited for, in a few words.
    pub fn what(&self) -> &'static str {
        match self {
            Timeout::KeepalivePong { .. } => "keepalive pong",
            Timeout::ClosingHandshake { .. } => "closing handshake",
        }
    }

    /// The configured limit that passed.
    pub fn after(&self) -> Duration {
        match *self {
            Timeout::KeepalivePong { after } | Timeout::ClosingHandshake { after } => after,
        }
    }
}
