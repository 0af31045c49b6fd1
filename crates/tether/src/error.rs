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
    /// The server answered the opening handshake with another status than
    /// `101` (client side); `body` is the start of its response body (at
    /// most [`REFUSAL_BODY_LIMIT`] bytes, control characters replaced),
    /// which usually says why.
    #[error(
        "server refused the WebSocket handshake with HTTP {status}{}",
        refusal_suffix(body)
    )]
    Refused {
        /// The response status.
        status: http::StatusCode,
        /// The body's start, as text.
        body: String,
    },
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

/// The most of a refusal's body kept in [`Error::Refused`].
pub const REFUSAL_BODY_LIMIT: usize = 1024;

fn refusal_suffix(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

impl Error {
    /// The HTTP status of a refused handshake (client side), if that is
    /// what this error is.
    pub fn refused_status(&self) -> Option<http::StatusCode> {
        match self {
            Error::Refused { status, .. } => Some(*status),
            Error::Handshake(HandshakeError::UnexpectedStatus(s)) => Some(*s),
            _ => None,
        }
    }

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
