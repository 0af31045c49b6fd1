//! Errors of the async layer, grouped by who is to blame ([`Blame`]): the
//! transport (I/O, timeouts, proxies), the peer (protocol and handshake
//! violations, TLS failures, refusals), or the application (using a closed
//! connection, a request or setting that cannot be used, its own refusal).
//!
//! Two places map errors to answers, each a single `match`:
//! [`Error::blame`] (which group) and [`Error::close_code`] (the code a
//! browser's `CloseEvent` would show).

use std::io;
use std::time::Duration;
use tether_proto::handshake::HandshakeError;
use tether_proto::{CloseCode, CloseFrame, ProtocolError, SendError};

/// Anything that can go wrong on a WebSocket connection.
///
/// Match on [`blame`](Error::blame) or the `is_*` helpers rather than on
/// every variant: the enum is `#[non_exhaustive]` and may grow.
///
/// ```no_run
/// # async fn run() {
/// match tether::connect("ws://127.0.0.1:9/").await {
///     Ok(_) => {}
///     Err(e) if e.is_io() => eprintln!("network: {e} (a retry may help)"),
///     Err(e) if e.is_peer() => eprintln!("the server misbehaved or refused: {e}"),
///     Err(e) => eprintln!("fix the program: {e}"),
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ----- the transport ---------------------------------------------------
    /// The transport failed, or ended without a closing handshake
    /// ([`io::ErrorKind::UnexpectedEof`]; close code 1006).
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// A deadline passed: `what` took longer than the configured `after`.
    #[error("timed out: {what} took longer than {after:?}")]
    Timeout {
        /// What was being waited for.
        what: &'static str,
        /// The configured limit.
        after: Duration,
    },
    /// A proxy refused or broke the tunnel (an unusable proxy URL is
    /// [`Error::Config`]).
    #[error("proxy error: {0}")]
    Proxy(String),

    // ----- the peer ----------------------------------------------------------
    /// The peer broke the WebSocket protocol or a configured limit; the
    /// connection was failed with the matching close code
    /// ([`ProtocolError::close_code`]).
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// The peer's opening handshake broke a rule: a client's request
    /// (answered 400/426/431 before this is returned) or a server's 101
    /// response.
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
    /// The TLS handshake failed: the server's certificate was not trusted,
    /// it sent an alert, or it does not speak TLS. The text names the fix.
    #[error("TLS error: {0}")]
    Tls(String),
    /// HTTP/2 cannot carry the WebSocket (client side, `tether::http2`):
    /// the server did not choose `h2`, did not send
    /// `SETTINGS_ENABLE_CONNECT_PROTOCOL = 1`, or broke HTTP/2; the text
    /// says which.
    #[error("HTTP/2: {0}")]
    Http2(String),

    // ----- the application -------------------------------------------------
    /// The connection is closed or closing, so it cannot be used any more:
    /// a message was sent after our Close, or after the connection ended.
    /// Holds the peer's Close frame (code and reason) if one arrived.
    /// A connection that ended without a Close is [`Error::Io`] instead.
    #[error("the connection is closed{}", closed_suffix(.0.as_ref()))]
    Closed(Option<CloseFrame>),
    /// The application asked for something the protocol forbids (a control
    /// frame over 125 bytes, a close code that may not be sent, fragments
    /// out of order). Nothing was sent and the connection is unchanged.
    #[error("cannot send: {0}")]
    Send(SendError),
    /// The URL or the request the application gave cannot be used (bad
    /// scheme, a fragment, a header the handshake writes itself, a
    /// non-ASCII `Origin`). Nothing was sent.
    #[error("invalid request: {0}")]
    InvalidRequest(HandshakeError),
    /// A setting cannot be used (a CA or key file that does not load, a
    /// proxy URL, a TLS server name, `wss://` without the `tls` feature).
    /// The text names the setting.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The application's policy rejected the handshake (server side), and
    /// the client was answered with this status.
    #[error("handshake rejected with HTTP {0}")]
    Rejected(http::StatusCode),
}

/// Who an [`Error`] is to blame on, from [`Error::blame`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Blame {
    /// The network or the machine: I/O errors, deadlines, proxies. A retry
    /// may succeed.
    Transport,
    /// The other endpoint: it broke the protocol, sent an invalid handshake,
    /// failed TLS, or refused the connection.
    Peer,
    /// This program: it used a closed connection, gave a request or setting
    /// that cannot be used, or refused the handshake itself.
    Application,
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

fn closed_suffix(frame: Option<&CloseFrame>) -> String {
    match frame {
        None => String::new(),
        Some(f) if f.reason.is_empty() => format!(" (the peer sent {})", u16::from(f.code)),
        Some(f) => format!(
            " (the peer sent {} {:?})",
            u16::from(f.code),
            f.reason.as_str()
        ),
    }
}

/// A deadline of the protocol core (keepalive, closing handshake).
impl From<tether_proto::Timeout> for Error {
    fn from(t: tether_proto::Timeout) -> Self {
        Error::Timeout {
            what: t.what(),
            after: t.after(),
        }
    }
}

impl From<SendError> for Error {
    /// [`SendError::Closing`] (a frame after our Close) is [`Error::Closed`]:
    /// one error means "closed", whichever step noticed it.
    fn from(e: SendError) -> Error {
        match e {
            SendError::Closing => Error::Closed(None),
            e => Error::Send(e),
        }
    }
}

impl Error {
    /// Who is to blame for this error.
    pub fn blame(&self) -> Blame {
        match self {
            Error::Io(_) | Error::Timeout { .. } | Error::Proxy(_) => Blame::Transport,
            Error::Protocol(_)
            | Error::Handshake(_)
            | Error::Refused { .. }
            | Error::Tls(_)
            | Error::Http2(_) => Blame::Peer,
            Error::Closed(_)
            | Error::Send(_)
            | Error::InvalidRequest(_)
            | Error::Config(_)
            | Error::Rejected(_) => Blame::Application,
        }
    }

    /// The transport failed: I/O errors (including a connection that ended
    /// without a Close), deadlines, proxies.
    pub fn is_io(&self) -> bool {
        self.blame() == Blame::Transport
    }

    /// A deadline passed ([`Error::Timeout`], or an I/O error of kind
    /// [`io::ErrorKind::TimedOut`]).
    pub fn is_timeout(&self) -> bool {
        match self {
            Error::Timeout { .. } => true,
            Error::Io(e) => e.kind() == io::ErrorKind::TimedOut,
            _ => false,
        }
    }

    /// The peer broke the protocol or the handshake, failed TLS, or refused.
    pub fn is_peer(&self) -> bool {
        self.blame() == Blame::Peer
    }

    /// This program misused the connection or gave something unusable.
    pub fn is_application(&self) -> bool {
        self.blame() == Blame::Application
    }

    /// The connection is closed or closing and cannot be used any more
    /// ([`Error::Closed`]); [`close_frame`](Self::close_frame) has the
    /// peer's code and reason if it sent them.
    pub fn is_closed(&self) -> bool {
        matches!(self, Error::Closed(_))
    }

    /// The peer's Close frame, for [`Error::Closed`] after the peer closed.
    pub fn close_frame(&self) -> Option<&CloseFrame> {
        match self {
            Error::Closed(frame) => frame.as_ref(),
            _ => None,
        }
    }

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
    /// `CloseEvent.code` would: the code a protocol error failed the
    /// connection with, the peer's code for [`Error::Closed`], 1015 for
    /// TLS, 1006 (abnormal closure) for everything else.
    pub fn close_code(&self) -> CloseCode {
        match self {
            Error::Protocol(e) => e.close_code(),
            Error::Closed(Some(frame)) => frame.code,
            Error::Tls(_) => CloseCode::TLS_HANDSHAKE,
            _ => CloseCode::ABNORMAL,
        }
    }

    /// The transport ended without a closing handshake (close code 1006).
    pub(crate) fn abnormal_closure() -> Error {
        Error::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the transport ended without a Close frame (1006)",
        ))
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use tether_proto::Utf8Bytes;

    fn every_kind() -> Vec<(Error, Blame)> {
        vec![
            (io::Error::other("reset").into(), Blame::Transport),
            (Error::abnormal_closure(), Blame::Transport),
            (
                Error::Timeout {
                    what: "keepalive pong",
                    after: Duration::from_secs(1),
                },
                Blame::Transport,
            ),
            (Error::Proxy("407".into()), Blame::Transport),
            (ProtocolError::InvalidUtf8.into(), Blame::Peer),
            (HandshakeError::AcceptMismatch.into(), Blame::Peer),
            (
                Error::Refused {
                    status: http::StatusCode::FORBIDDEN,
                    body: String::new(),
                },
                Blame::Peer,
            ),
            (Error::Tls("untrusted".into()), Blame::Peer),
            (Error::Http2("no extended CONNECT".into()), Blame::Peer),
            (Error::Closed(None), Blame::Application),
            (
                SendError::ControlPayloadTooLong(200).into(),
                Blame::Application,
            ),
            (
                Error::InvalidRequest(HandshakeError::UrlHasFragment),
                Blame::Application,
            ),
            (Error::Config("ca.pem".into()), Blame::Application),
            (
                Error::Rejected(http::StatusCode::FORBIDDEN),
                Blame::Application,
            ),
        ]
    }

    #[test]
    fn each_error_has_one_blame_and_one_helper_says_so() {
        for (e, blame) in every_kind() {
            assert_eq!(e.blame(), blame, "{e:?}");
            let helpers = [e.is_io(), e.is_peer(), e.is_application()];
            assert_eq!(helpers.iter().filter(|h| **h).count(), 1, "{e:?}");
            assert_eq!(e.is_io(), blame == Blame::Transport, "{e:?}");
            assert_eq!(e.is_peer(), blame == Blame::Peer, "{e:?}");
        }
    }

    #[test]
    fn timeouts_are_io_and_recognised_in_both_forms() {
        let timer = Error::Timeout {
            what: "opening handshake",
            after: Duration::from_secs(10),
        };
        assert!(timer.is_timeout() && timer.is_io());
        let io: Error = io::Error::from(io::ErrorKind::TimedOut).into();
        assert!(io.is_timeout() && io.is_io());
        assert!(!Error::abnormal_closure().is_timeout());
    }

    #[test]
    fn sending_after_our_close_is_the_same_closed_error() {
        let e: Error = SendError::Closing.into();
        assert!(e.is_closed(), "{e:?}");
        assert!(matches!(e, Error::Closed(None)));
        let other: Error = SendError::InvalidCloseCode(1005).into();
        assert!(!other.is_closed() && other.is_application());
    }

    #[test]
    fn closed_carries_the_peers_code_and_reason() {
        let frame = CloseFrame {
            code: CloseCode::GOING_AWAY,
            reason: Utf8Bytes::from_static("restart"),
        };
        let e = Error::Closed(Some(frame.clone()));
        assert_eq!(e.close_frame(), Some(&frame));
        assert_eq!(e.close_code(), CloseCode::GOING_AWAY);
        assert_eq!(
            e.to_string(),
            "the connection is closed (the peer sent 1001 \"restart\")"
        );
        assert_eq!(Error::Closed(None).close_frame(), None);
        assert_eq!(Error::Closed(None).to_string(), "the connection is closed");
    }

    #[test]
    fn close_codes_are_mapped_in_one_place() {
        assert_eq!(
            Error::from(ProtocolError::InvalidUtf8).close_code(),
            CloseCode::INVALID_PAYLOAD
        );
        assert_eq!(
            Error::Tls("x".into()).close_code(),
            CloseCode::TLS_HANDSHAKE
        );
        assert_eq!(Error::abnormal_closure().close_code(), CloseCode::ABNORMAL);
        assert!(!Error::abnormal_closure().is_closed());
    }
}
