//! Why a handshake failed, one variant per rule.
//!
//! Each variant names the RFC rule that was broken so that a log line (or the
//! body of the error response a server sends back) tells the peer's author
//! exactly what to fix. Server-side failures map to an HTTP status through
//! [`HandshakeError::status`]; [`HandshakeError::to_response`] renders the
//! complete error response.

use http::header::{CONNECTION, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use super::server::build_reject_response;

/// A violation of the opening-handshake rules (RFC 6455 §4 and the HTTP RFCs
/// it builds on), detected while parsing a head, validating a request or a
/// response, or building a client request.
///
/// Section references of the form "§4.1 item N" count the numbered
/// requirements in RFC 6455 §4.1 (client request items 1–12, then the
/// client's checks of the server response items 1–6); "§4.2.1 item N" counts
/// the server's checks of the client request (items 1–10).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    // ----- head parsing --------------------------------------------------
    /// The head did not end within [`HandshakeLimits::max_head_bytes`], or it
    /// has more than [`HandshakeLimits::max_headers`] header fields.
    ///
    /// [`HandshakeLimits::max_head_bytes`]: super::HandshakeLimits::max_head_bytes
    /// [`HandshakeLimits::max_headers`]: super::HandshakeLimits::max_headers
    #[error("HTTP head exceeds the configured size or header-count limit (RFC 6585 §5)")]
    HeadTooLarge,
    /// The bytes are not an HTTP/1.x head (RFC 7230 §3).
    #[error("malformed HTTP head: {0} (RFC 7230 §3)")]
    MalformedHead(&'static str),
    /// The request target is not an origin-form path or an absolute
    /// `http`/`https`/`ws`/`wss` URI, contains non-ASCII bytes, or contains
    /// `#` (RFC 6455 §3: fragments MUST NOT be used; RFC 7230 §5.3).
    #[error(
        "request target must be a path (or absolute http/ws URI) of visible ASCII without '#' \
         (RFC 6455 §3, §4.2.1 item 1; RFC 7230 §5.3)"
    )]
    InvalidRequestTarget,

    // ----- the client's request (server checks, §4.2.1) -------------------
    /// The request method is not `GET` (§4.1 item 2, §4.2.1 item 1).
    ///
    /// Answered with 400 rather than 405: RFC 6455 §4.2.1 asks for "an
    /// appropriate error code (such as 400 Bad Request)", and a 405 would
    /// have to advertise an `Allow` list for a resource that is not a plain
    /// HTTP resource at all.
    #[error(
        "opening handshake must use the GET method, not {0} (RFC 6455 §4.1 item 2, §4.2.1 item 1)"
    )]
    MethodNotGet(Method),
    /// The HTTP version is below 1.1 (§4.1 item 2, §4.2.1 item 1); HTTP/1.0
    /// has no `Upgrade` mechanism.
    #[error("opening handshake requires HTTP/1.1 or later (RFC 6455 §4.1 item 2, §4.2.1 item 1)")]
    Http10,
    /// The request announces a body (`Content-Length` other than 0, or any
    /// `Transfer-Encoding`). The bytes after the head are WebSocket frames, so
    /// a body would be misread as frames (request smuggling).
    #[error(
        "opening handshake request must not have a body: Content-Length must be 0 or absent and \
         Transfer-Encoding absent (RFC 6455 §4.1 item 1, §4.2.1)"
    )]
    RequestHasBody,
    /// No `Host` header (§4.1 item 4, §4.2.1 item 2; RFC 7230 §5.4).
    #[error("request lacks a Host header (RFC 6455 §4.2.1 item 2, RFC 7230 §5.4)")]
    MissingHost,
    /// The `Host` header is empty or not `host [ ":" port ]` (RFC 7230 §5.4).
    #[error("Host header must be the server's authority, host [\":\" port] (RFC 6455 §4.2.1 item 2, RFC 7230 §5.4)")]
    InvalidHost,
    /// A header that must appear at most once appeared several times
    /// (`Host`: RFC 7230 §5.4; `Sec-WebSocket-Key`, `Sec-WebSocket-Version`,
    /// `Sec-WebSocket-Accept`: RFC 6455 §11.3; `Origin`: RFC 6454 §7.3).
    #[error("the {0} header field must not appear more than once (RFC 6455 §11.3, RFC 7230 §5.4)")]
    DuplicateHeader(HeaderName),
    /// `Upgrade` is missing or lacks the token `websocket`, compared
    /// case-insensitively (§4.1 item 5, §4.2.1 item 3; response: §4.1
    /// response item 2, where it must be exactly `websocket`).
    #[error("Upgrade header must contain the token \"websocket\" (RFC 6455 §4.2.1 item 3, §4.1 response item 2)")]
    MissingUpgradeWebsocket,
    /// `Connection` is missing or none of its tokens is `Upgrade`, compared
    /// case-insensitively (§4.1 item 6, §4.2.1 item 4; §4.1 response item 3).
    #[error("Connection header must contain the token \"Upgrade\" (RFC 6455 §4.2.1 item 4, §4.1 response item 3)")]
    MissingConnectionUpgrade,
    /// No `Sec-WebSocket-Key` header (§4.1 item 7, §4.2.1 item 5).
    #[error("request lacks a Sec-WebSocket-Key header (RFC 6455 §4.2.1 item 5)")]
    MissingKey,
    /// `Sec-WebSocket-Key` is not padded standard base64 of exactly 16 bytes
    /// (§4.1 item 7, §4.2.1 item 5).
    #[error("Sec-WebSocket-Key must be base64 of 16 bytes (RFC 6455 §4.2.1 item 5)")]
    InvalidKey,
    /// `Sec-WebSocket-Version` is missing (`None`) or is not `13` (§4.1
    /// item 9, §4.2.1 item 6). Answered with 426 and
    /// `Sec-WebSocket-Version: 13` (§4.2.2 under /version/, §4.4).
    #[error("Sec-WebSocket-Version must be 13 (RFC 6455 §4.2.1 item 6, §4.4)")]
    UnsupportedVersion(Option<String>),
    /// A `Sec-WebSocket-Protocol` element is not an RFC 7230 token, or the
    /// header lists no element at all (§4.1 item 10; in a response it must be
    /// a single token: `Sec-WebSocket-Protocol-Server = token`, §4.3).
    #[error(
        "Sec-WebSocket-Protocol elements must be non-empty RFC 7230 tokens, got {0:?} \
         (RFC 6455 §4.1 item 10, §4.3)"
    )]
    InvalidSubprotocol(String),
    /// A subprotocol is listed twice; the values "MUST all be unique strings"
    /// (§4.1 item 10).
    #[error(
        "subprotocol {0:?} is listed more than once; values must be unique (RFC 6455 §4.1 item 10)"
    )]
    DuplicateSubprotocol(String),
    /// `Sec-WebSocket-Extensions` does not follow the §9.1 grammar.
    #[error("malformed Sec-WebSocket-Extensions: {0} (RFC 6455 §9.1)")]
    MalformedExtensions(&'static str),
    /// `Origin` is not visible ASCII or appears more than once (RFC 6454 §7).
    #[error("Origin header must be a single ASCII serialized origin (RFC 6455 §4.2.1 item 7, RFC 6454 §7)")]
    InvalidOrigin,

    // ----- the HTTP/2 extended CONNECT (RFC 8441) --------------------------
    /// An HTTP/2 WebSocket opens with `:method CONNECT` (RFC 8441 §4, §5).
    #[error("a WebSocket over HTTP/2 opens with an extended CONNECT, not {0} (RFC 8441 §4)")]
    MethodNotConnect(Method),
    /// An extended CONNECT arrived over HTTP/1.x: the `:protocol`
    /// pseudo-header exists only in HTTP/2 and later (RFC 8441 §4).
    #[error("an extended CONNECT needs HTTP/2 or later (RFC 8441 §4)")]
    ExtendedConnectNeedsHttp2,
    /// A CONNECT whose `:protocol` is not `websocket` (`Some`: what was
    /// asked for), or a plain CONNECT without one (`None`, a tunnel
    /// request). Answered with `501 Not Implemented`.
    #[error(
        "only :protocol websocket is served by an extended CONNECT here, not {0:?} (RFC 8441 §4)"
    )]
    UnsupportedConnectProtocol(Option<String>),

    // ----- building the client's request ---------------------------------
    /// An extra request header would duplicate or override one the handshake
    /// itself writes (`Host`, `Upgrade`, `Connection`, `Origin`,
    /// `Sec-WebSocket-*`, `Content-Length`, `Transfer-Encoding`).
    #[error("the {0} header is written by the handshake itself and cannot be given as an extra header (RFC 6455 §4.1)")]
    ForbiddenHeader(HeaderName),
    /// The resource name does not start with `/`, contains a byte outside
    /// visible ASCII, or contains `#` (RFC 6455 §3).
    #[error("resource name must start with '/' and be visible ASCII without '#' (RFC 6455 §3)")]
    InvalidResource,
    /// The URL does not parse (WHATWG URL parser) or has no host.
    #[error("invalid WebSocket URL: {0}")]
    InvalidUrl(String),
    /// The URL scheme is not `ws`, `wss`, `http` or `https`.
    #[error("WebSocket URL scheme must be ws, wss, http or https, not {0:?} (RFC 6455 §3, WHATWG WebSockets)")]
    UnsupportedScheme(String),
    /// The URL has a fragment, even an empty one (RFC 6455 §3: fragments
    /// "MUST NOT be used on these URIs"; WHATWG WebSockets).
    #[error("WebSocket URLs must not have a fragment (RFC 6455 §3, WHATWG WebSockets)")]
    UrlHasFragment,
    /// The URL carries `user:password@`; the `ws-URI` grammar has no
    /// userinfo (RFC 6455 §3). Send credentials in a header instead.
    #[error("WebSocket URLs must not contain credentials; send an Authorization header instead (RFC 6455 §3)")]
    UrlHasCredentials,

    // ----- the server's response (client checks, §4.1) --------------------
    /// The status is not `101 Switching Protocols` (§4.1 response item 1).
    #[error(
        "server answered {0} instead of 101 Switching Protocols (RFC 6455 §4.1 response item 1)"
    )]
    UnexpectedStatus(StatusCode),
    /// The response lacks `Sec-WebSocket-Accept` (§4.1 response item 4).
    #[error("response lacks Sec-WebSocket-Accept (RFC 6455 §4.1 response item 4)")]
    MissingAccept,
    /// `Sec-WebSocket-Accept` is not base64(SHA-1(key ++ GUID)) (§4.1
    /// response item 4).
    #[error(
        "Sec-WebSocket-Accept does not match the key that was sent (RFC 6455 §4.1 response item 4)"
    )]
    AcceptMismatch,
    /// The server selected a subprotocol the client did not offer (§4.1
    /// response item 6).
    #[error("server selected subprotocol {0:?}, which the client did not offer (RFC 6455 §4.1 response item 6)")]
    UnrequestedSubprotocol(String),
    /// The server accepted an extension the client did not offer (§4.1
    /// response item 5).
    #[error("server accepted extension {0:?}, which the client did not offer (RFC 6455 §4.1 response item 5)")]
    UnrequestedExtension(String),
    /// The server accepted the same extension twice (§9.1: each extension in
    /// a response is one the server agreed to use, in order; using one twice
    /// is meaningless).
    #[error("server accepted extension {0:?} more than once (RFC 6455 §9.1)")]
    DuplicateExtension(String),
}

impl HandshakeError {
    /// The HTTP status a server answers this error with.
    ///
    /// * [`HeadTooLarge`](Self::HeadTooLarge) → `431 Request Header Fields
    ///   Too Large` (RFC 6585 §5);
    /// * [`UnsupportedVersion`](Self::UnsupportedVersion) → `426 Upgrade
    ///   Required` (RFC 6455 §4.2.2 under /version/, §4.4);
    /// * [`MissingUpgradeWebsocket`](Self::MissingUpgradeWebsocket) → `426
    ///   Upgrade Required`: the request is an ordinary HTTP request to a
    ///   WebSocket-only resource, which is exactly what 426 means (RFC 7231
    ///   §6.5.15);
    /// * [`UnsupportedConnectProtocol`](Self::UnsupportedConnectProtocol) →
    ///   `501 Not Implemented`: the method is understood, the protocol it
    ///   asks for is not served;
    /// * everything else → `400 Bad Request` (RFC 6455 §4.2.1: "an
    ///   appropriate error code (such as 400 Bad Request)").
    ///
    /// Client-side variants (response checks, URL and request building) are
    /// never sent to a peer; they also report 400.
    pub fn status(&self) -> StatusCode {
        match self {
            HandshakeError::HeadTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            HandshakeError::UnsupportedVersion(_) | HandshakeError::MissingUpgradeWebsocket => {
                StatusCode::UPGRADE_REQUIRED
            }
            HandshakeError::UnsupportedConnectProtocol(_) => StatusCode::NOT_IMPLEMENTED,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// True for errors only the client role produces: URL and request
    /// building problems and failed checks of the server's response. Errors
    /// both roles can detect (e.g. [`MissingUpgradeWebsocket`]) return false.
    ///
    /// [`MissingUpgradeWebsocket`]: Self::MissingUpgradeWebsocket
    pub fn is_client_side(&self) -> bool {
        matches!(
            self,
            HandshakeError::ForbiddenHeader(_)
                | HandshakeError::InvalidResource
                | HandshakeError::InvalidUrl(_)
                | HandshakeError::UnsupportedScheme(_)
                | HandshakeError::UrlHasFragment
                | HandshakeError::UrlHasCredentials
                | HandshakeError::UnexpectedStatus(_)
                | HandshakeError::MissingAccept
                | HandshakeError::AcceptMismatch
                | HandshakeError::UnrequestedSubprotocol(_)
                | HandshakeError::UnrequestedExtension(_)
                | HandshakeError::DuplicateExtension(_)
        )
    }

    /// The complete raw HTTP/1.1 error response a server sends for this
    /// error: the [`status`](Self::status), `Connection: close`, a short
    /// `text/plain` body naming the broken rule, and for 426 the headers
    /// RFC 7231 §6.5.15 and RFC 6455 §4.2.2 require (`Upgrade: websocket`,
    /// `Sec-WebSocket-Version: 13`).
    pub fn to_response(&self) -> Vec<u8> {
        let status = self.status();
        let mut headers = HeaderMap::new();
        if status == StatusCode::UPGRADE_REQUIRED {
            headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
            // RFC 7230 §6.7: a sender of Upgrade also lists it in Connection.
            headers.insert(CONNECTION, HeaderValue::from_static("Upgrade, close"));
            headers.insert(
                HeaderName::from_static("sec-websocket-version"),
                HeaderValue::from_static("13"),
            );
        }
        let body = format!("{self}\n");
        build_reject_response(status, &headers, body.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_rfcs() {
        assert_eq!(HandshakeError::HeadTooLarge.status(), 431);
        assert_eq!(HandshakeError::UnsupportedVersion(None).status(), 426);
        assert_eq!(HandshakeError::MissingUpgradeWebsocket.status(), 426);
        assert_eq!(HandshakeError::MethodNotGet(Method::POST).status(), 400);
        assert_eq!(HandshakeError::InvalidKey.status(), 400);
        assert_eq!(HandshakeError::MissingHost.status(), 400);
    }

    #[test]
    fn version_error_response_advertises_version_13() {
        let raw = HandshakeError::UnsupportedVersion(Some("8".into())).to_response();
        let text = String::from_utf8(raw).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nsec-websocket-version: 13\r\n"), "{text}");
        assert!(text.contains("\r\nupgrade: websocket\r\n"), "{text}");
        assert!(text.contains("Sec-WebSocket-Version must be 13"), "{text}");
    }

    #[test]
    fn error_response_body_names_the_rule() {
        let raw = HandshakeError::InvalidKey.to_response();
        let text = String::from_utf8(raw).unwrap();
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
        assert!(text.contains("connection: close\r\n"), "{text}");
        assert!(text.ends_with(
            "\r\n\r\nSec-WebSocket-Key must be base64 of 16 bytes (RFC 6455 §4.2.1 item 5)\n"
        ));
        let body_len = text.split("\r\n\r\n").nth(1).unwrap().len();
        assert!(
            text.contains(&format!("content-length: {body_len}\r\n")),
            "{text}"
        );
    }

    #[test]
    fn head_too_large_is_431() {
        let text = String::from_utf8(HandshakeError::HeadTooLarge.to_response()).unwrap();
        assert!(text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
    }

    #[test]
    fn client_side_classification() {
        assert!(HandshakeError::AcceptMismatch.is_client_side());
        assert!(HandshakeError::UnexpectedStatus(StatusCode::OK).is_client_side());
        assert!(!HandshakeError::InvalidKey.is_client_side());
        assert!(!HandshakeError::MissingUpgradeWebsocket.is_client_side());
    }
}
