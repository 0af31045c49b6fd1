//! The opening handshake of RFC 6455 (§4) over HTTP/1.1, and of RFC 8441
//! over HTTP/2, for both roles, sans-IO.
//!
//! A WebSocket connection starts life as an HTTP/1.1 `GET` request carrying
//! `Upgrade: websocket`; the server answers `101 Switching Protocols` and from
//! the byte after the response head onwards both sides speak WebSocket frames.
//! This module does everything about that exchange that does not involve a
//! socket:
//!
//! * **Head parsing** — [`parse_request`] and [`parse_response`] turn raw bytes
//!   into [`http::Request<()>`] / [`http::Response<()>`] incrementally. The
//!   caller keeps appending to one buffer and calls again; `Ok(None)` means
//!   "need more bytes". The returned head length matters: anything after it is
//!   already WebSocket data (a client may pipeline its first frame right behind
//!   the request) and must be handed to the connection, not dropped.
//!   [`HandshakeLimits`] bounds how much is buffered before giving up, so a
//!   peer cannot make us hold an unbounded head in memory.
//! * **Server role** — [`validate_request`] checks every rule of §4.2.1 and
//!   returns the negotiated inputs as an [`UpgradeRequest`];
//!   [`build_accept_response`] / [`accept_response`] produce the `101`, and
//!   [`HandshakeError::to_response`] / [`build_reject_response`] produce the
//!   error answer with the status code the RFC asks for.
//! * **Client role** — [`parse_target`] applies the WHATWG WebSocket URL rules,
//!   [`ClientRequest::encode`] writes the request, and [`validate_response`]
//!   applies the §4.1 checks a client MUST make before it may speak
//!   WebSocket (most importantly the `Sec-WebSocket-Accept` proof, which stops
//!   a non-WebSocket server or a caching intermediary from being mistaken for
//!   a WebSocket peer).
//! * **HTTP/2** (RFC 8441) — [`validate_extended_connect`] checks an
//!   extended CONNECT (`:protocol websocket`) into the same
//!   [`UpgradeRequest`], [`extended_connect_response`] is its `200`;
//!   [`ClientRequest::to_extended_connect`] and
//!   [`validate_extended_connect_response`] are the client's side.
//! * **Header grammar** — [`header_tokens`], [`is_token`] and
//!   [`parse_extensions`] implement the RFC 7230 list and token rules and the
//!   RFC 6455 §9.1 extension grammar; extension negotiation (e.g.
//!   permessage-deflate) builds on [`ExtensionOffer`].
//!
//! The public request/response types are those of the [`http`] crate so the
//! same validation runs on heads parsed here and on requests handed over by
//! hyper or any other HTTP server.
//!
//! # Strictness
//!
//! The checks follow the RFC literally where it uses MUST, and every failure
//! is a distinct [`HandshakeError`] variant whose message cites the rule.
//! Where the RFCs leave room, this module takes the reading that cannot
//! desynchronise the byte stream or silently change meaning: a request with a
//! body is refused (its bytes would otherwise be read as frames), a `#` in a
//! request target is refused (RFC 6455 §3), and nothing is ever guessed.
//! No input makes any function here panic.
//!
//! # Example: server side
//!
//! ```
//! use tether_proto::handshake::{parse_request, validate_request, build_accept_response, HandshakeLimits};
//!
//! let bytes = b"GET /chat HTTP/1.1\r\n\
//!     Host: server.example.com\r\n\
//!     Upgrade: websocket\r\n\
//!     Connection: Upgrade\r\n\
//!     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
//!     Sec-WebSocket-Version: 13\r\n\r\n";
//! let (req, head_len) = parse_request(bytes, &HandshakeLimits::default()).unwrap().unwrap();
//! assert_eq!(head_len, bytes.len());
//! let upgrade = validate_request(&req).unwrap();
//! let response = build_accept_response(&upgrade.key, None, None, &http::HeaderMap::new());
//! assert!(response.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
//! ```
//!
//! # Example: client side
//!
//! ```
//! use tether_proto::handshake::{parse_target, generate_key, parse_response, validate_response, HandshakeLimits};
//!
//! let target = parse_target("wss://example.com/chat?room=1").unwrap();
//! let key = generate_key();
//! let request_bytes = target.client_request().encode(&key).unwrap();
//! assert!(request_bytes.starts_with(b"GET /chat?room=1 HTTP/1.1\r\nHost: example.com\r\n"));
//!
//! // ... send request_bytes, read the answer into a buffer ...
//! # let answer = tether_proto::handshake::build_accept_response(&key, None, None, &http::HeaderMap::new());
//! let (resp, _head_len) = parse_response(&answer, &HandshakeLimits::default()).unwrap().unwrap();
//! let accepted = validate_response(&resp, &key, &[], &[]).unwrap();
//! assert_eq!(accepted.protocol, None);
//! ```

mod client;
mod error;
mod h2;
mod headers;
mod key;
mod parse;
mod server;
mod target;

pub use client::{validate_response, Accepted, ClientRequest};
pub use error::HandshakeError;
pub use h2::{
    extended_connect_response, validate_extended_connect, validate_extended_connect_response,
    WEBSOCKET_PROTOCOL,
};
pub use headers::{format_extensions, header_tokens, is_token, parse_extensions, ExtensionOffer};
pub use key::{accept_key, generate_key, generate_key_from, WEBSOCKET_GUID};
pub use parse::{parse_request, parse_response};
pub use server::{
    accept_response, build_accept_response, build_reject_response, validate_request, UpgradeRequest,
};
pub use target::{parse_target, Target};

/// Bounds on how much of an HTTP head is buffered and parsed.
///
/// The opening handshake is the one place where a peer can make us buffer
/// bytes before any WebSocket limit applies, so both the size of the head and
/// the number of header fields are capped. Exceeding either yields
/// [`HandshakeError::HeadTooLarge`], which a server answers with
/// `431 Request Header Fields Too Large` (RFC 6585 §5).
///
/// Built from [`HandshakeLimits::default`] with the `with_*` setters.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandshakeLimits {
    /// Largest head accepted, in bytes, including the terminating empty line.
    /// Default: [`HandshakeLimits::DEFAULT_MAX_HEAD_BYTES`] (16 KiB).
    pub max_head_bytes: usize,
    /// Largest number of header fields accepted.
    /// Default: [`HandshakeLimits::DEFAULT_MAX_HEADERS`] (64).
    pub max_headers: usize,
}

impl HandshakeLimits {
    /// Default for [`HandshakeLimits::max_head_bytes`]: 16 KiB, well above
    /// any real browser handshake (cookies included) yet small per connection.
    pub const DEFAULT_MAX_HEAD_BYTES: usize = 16 * 1024;
    /// Default for [`HandshakeLimits::max_headers`].
    pub const DEFAULT_MAX_HEADERS: usize = 64;

    /// Sets [`max_head_bytes`](Self::max_head_bytes).
    #[must_use]
    pub fn with_max_head_bytes(mut self, max_head_bytes: usize) -> Self {
        self.max_head_bytes = max_head_bytes;
        self
    }

    /// Sets [`max_headers`](Self::max_headers).
    #[must_use]
    pub fn with_max_headers(mut self, max_headers: usize) -> Self {
        self.max_headers = max_headers;
        self
    }
}

impl Default for HandshakeLimits {
    fn default() -> Self {
        HandshakeLimits {
            max_head_bytes: Self::DEFAULT_MAX_HEAD_BYTES,
            max_headers: Self::DEFAULT_MAX_HEADERS,
        }
    }
}

#[cfg(test)]
mod tests;
