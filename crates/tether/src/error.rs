//! Errors of the async layer, split by who is to blame: the network (I/O,
//! timeouts), the peer (protocol and handshake violations), or the
//! application (sending after close).

use std::io;
use std::time::Duration;
use tether_proto::handshake::HandshakeError;
use tether_proto::{CloseCode, ProtocolError, SendError};

/// Anything that can go wrong on a WebSocket connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The transport failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The opening handshake broke a rule (either side; see the inner error).
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// The application rejected the handshake (server side).
    #[error("handshake rejected with HTTP {0}")]
    Rejected(http::StatusCode),
    /// The peer broke the WebSocket protocol; the connection was failed with
    /// the matching close code.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// The application asked for something the protocol forbids.
    #[error("cannot send: {0}")]
    Send(#[from] SendError),
    /// A deadline passed.
    #[error("timed out: {what} took longer than {after:?}")]
    Timeout {
        /// What was being waited for.
        what: &'static str,
        /// The configured limit.
        after: Duration,
    },
    /// The transport closed without a closing handshake (close code 1006).
    #[error("connection closed abnormally: the transport ended without a Close frame (1006)")]
    AbnormalClosure,
    /// The connection is already closed.
    #[error("the connection is closed")]
    ConnectionClosed,
    /// The URL cannot be used.
    #[error("invalid URL: {0}")]
    Url(String),
    /// TLS failed (configuration, certificate, or handshake).
    #[error("TLS error: {0}")]
    Tls(String),
    /// A proxy refused or broke the tunnel.
    #[error("proxy error: {0}")]
    Proxy(String),
}

impl Error {
    /// The close code that describes this error to a user, as the browser's
    /// `CloseEvent.code` would.
    pub fn close_code(&self) -> CloseCode {
        match self {
            Error::Protocol(e) => e.close_code(),
            Error::Tls(_) => CloseCode::TLS_HANDSHAKE,
            _ => CloseCode::ABNORMAL,
        }
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
