//! # tether
//!
//! Async WebSocket client and server on tokio, built on the sans-IO
//! [`tether_proto`] core (RFC 6455, permessage-deflate RFC 7692). The
//! package is `tether-ws` (`cargo add tether-ws`); the crate is `tether`.
//!
//! * [`connect`] / [`ClientBuilder`] — open a connection to a `ws://` or
//!   `wss://` URL, through a proxy if the environment names one
//!   ([`tls`], [`proxy`]; [`reconnect`] for retries with backoff);
//! * [`browser::BrowserSocket`] — the browser's `WebSocket` API and rules
//!   (states, `bufferedAmount`, close events, WHATWG validation);
//! * [`accept`] / [`ServerBuilder`] — accept one on any stream, with a policy
//!   hook ([`Incoming`]) for origin, subprotocol and authentication checks;
//! * `tether::axum::WebSocketUpgrade` and `tether::hyper::Upgrade` (features
//!   `axum`, `hyper`) — the same server side inside an axum or hyper app;
//! * [`WebSocket`] — a `Stream` + `Sink` of [`Message`]s with backpressure,
//!   automatic pongs, keepalive and a proper closing handshake.
//!
//! ## The guide
//!
//! The [guide](https://github.com/tether-ws/tether/blob/main/docs/guide.md) goes beyond the API:
//! [getting started](https://github.com/tether-ws/tether/blob/main/docs/guide.md#getting-started) (an axum app, a client in a
//! tokio app), [the pub/sub protocol](https://github.com/tether-ws/tether/blob/main/docs/guide.md#the-pubsub-protocol),
//! [deployment](https://github.com/tether-ws/tether/blob/main/docs/guide.md#deployment) (nginx, TLS, systemd, scaling out),
//! [security](https://github.com/tether-ws/tether/blob/main/docs/guide.md#security) (what the defaults protect against),
//! [memory and limits](https://github.com/tether-ws/tether/blob/main/docs/guide.md#memory-and-limits) (every limit and its
//! default), [keepalive](https://github.com/tether-ws/tether/blob/main/docs/guide.md#keepalive), [errors](https://github.com/tether-ws/tether/blob/main/docs/guide.md#errors) and a
//! [comparison with other tools](https://github.com/tether-ws/tether/blob/main/docs/guide.md#compared-with-other-tools). The
//! sections below are the same structure for this crate's API.
//!
//! ## Quick start: a server
//!
//! A complete echo server on a plain TCP listener:
//!
//! ```no_run
//! # async fn run() -> tether::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
//! while let Ok((tcp, _)) = listener.accept().await {
//!     tokio::spawn(async move {
//!         let mut ws = tether::accept(tcp).await?;
//!         while let Some(msg) = ws.recv().await {
//!             let msg = msg?;
//!             if msg.is_data() { ws.send(msg).await?; }
//!         }
//!         Ok::<_, tether::Error>(())
//!     });
//! }
//! # Ok(()) }
//! ```
//!
//! [`WebSocket::recv`] and [`WebSocket::send`] need no imports; the socket
//! is also a `futures` `Stream` and `Sink` (`StreamExt::split` gives halves
//! for a reader task and a writer task). Pings are answered and the closing
//! handshake completed for you: `recv` returns `None` once the connection is
//! closed cleanly, [`WebSocket::peer_close`] tells the peer's code and
//! reason.
//!
//! ## Quick start: a client
//!
//! ```no_run
//! # async fn run() -> tether::Result<()> {
//! use tether::{ClientBuilder, Message};
//! let (mut ws, response) = ClientBuilder::new("wss://echo.example/chat")
//!     .protocol("chat.v1")
//!     .connect()
//!     .await?;
//! assert_eq!(response.status(), 101);
//! ws.send(Message::text("hello")).await?;
//! if let Some(reply) = ws.recv().await {
//!     println!("{:?}", reply?.as_text());
//! }
//! ws.close(None).await?;
//! # Ok(()) }
//! ```
//!
//! Client options live on [`ClientBuilder`]: `origin`, `protocol` (each
//! offered subprotocol), `header` (cookies, `Authorization`), `config`,
//! `connect_timeout`, `proxy`/`no_proxy` (default: `http_proxy`,
//! `https_proxy`, `all_proxy`, `no_proxy` from the environment), and with
//! the `tls` feature `tls` ([`tls::TlsOptions`]: extra CA files, client
//! certificates, server name) or `tls_config` (your own rustls config).
//! [`ClientBuilder::connect_on`] runs the handshake over a stream you
//! opened yourself. [`reconnect::connect_with_backoff`] retries what a retry
//! can fix (network errors, 5xx, 429) with jittered backoff.
//!
//! ## Server policy: deciding who gets in
//!
//! [`ServerBuilder::read_request`] reads and validates the request (invalid
//! ones are answered 400 / 426 / 431 and never reach you) and returns an
//! [`Incoming`]: look at its path, `Host`, `Origin`, headers and offered
//! subprotocols, decide (asynchronously if you like), then
//! [`Incoming::accept`] with an [`Accept`] (subprotocol, extra headers) or
//! [`Incoming::reject`] with a [`Reject`] (status, headers, body).
//!
//! ```no_run
//! # async fn run(tcp: tokio::net::TcpStream) -> tether::Result<()> {
//! use tether::{Accept, OriginPolicy, Reject, ServerBuilder};
//! let incoming = ServerBuilder::new().read_request(tcp).await?;
//! if let Err(refusal) = incoming.check_origin(&OriginPolicy::SameOrigin) {
//!     return incoming.reject(refusal).await; // 403
//! }
//! if incoming.header("authorization").is_none() {
//!     return incoming.reject(Reject::unauthorized("token required\n")).await;
//! }
//! let protocol = incoming.upgrade().select_protocol(&["chat.v2", "chat.v1"]).map(str::to_owned);
//! let mut accept = Accept::default();
//! if let Some(p) = protocol { accept = accept.protocol(p); }
//! let ws = incoming.accept(accept).await?;
//! # drop(ws); Ok(()) }
//! ```
//!
//! [`OriginPolicy`] is the defence against cross-site WebSocket hijacking
//! (a page on another site opening a socket with the user's cookies):
//! `SameOrigin` (the `Origin` must match `Host`), an allow-list, or `Any`.
//! Requests without `Origin` (non-browser clients) pass every policy.
//!
//! ## In axum and hyper
//!
//! With the `axum` feature, `tether::axum::WebSocketUpgrade` is a handler
//! argument with the shape axum users know:
//! `upgrade.protocols(["chat.v1"]).on_upgrade(|ws| async move { .. })`.
//! Non-upgrade requests are refused by the extractor (426 with
//! `Sec-WebSocket-Version: 13`, or 400); `check_origin`, `config`,
//! `max_message_size` and `deflate` carry the policy and limits below. With
//! the `hyper` feature, `tether::hyper::Upgrade::new(request, config)` does
//! the same for a hyper 1.x service: `accept` returns the 101 response to
//! return and a future of the socket. Both validate with the same rules and
//! decide with the same [`Accept`] / [`Reject`] as [`Incoming`]. The
//! examples `axum_chat` and `hyper_server` are complete apps.
//!
//! ## Configuration
//!
//! [`WebSocketConfig`] holds every limit and timer, for both roles, built
//! from its default with `with_*` setters (the config types are
//! `#[non_exhaustive]`, so options can be added without breaking you; their
//! fields are public to read):
//!
//! ```
//! use std::time::Duration;
//! use tether::{proto::Config, Keepalive, WebSocketConfig};
//! let config = WebSocketConfig::default()
//!     .with_protocol(Config::default().with_max_message_size(1 << 20))
//!     .with_keepalive(Some(Keepalive::new(Duration::from_secs(30), Duration::from_secs(10))))
//!     .with_send_timeout(Some(Duration::from_secs(30)));
//! ```
//!
//! `protocol` ([`proto::Config`]: `max_frame_size`, `max_message_size`,
//! `deflate` to offer or accept permessage-deflate, `defer_close_reply`),
//! `handshake_limits` and `handshake_timeout` (slow or oversized requests),
//! `close_timeout`, `write_buffer_limit` (backpressure: `send` waits while
//! more is queued), `keepalive` ([`Keepalive`] pings, failing a silent
//! peer) and `send_timeout` (failing a peer that stops reading). Defaults
//! are safe for a public server: 64 MiB messages at most, a 10 s handshake,
//! no compression unless configured. Every limit with its default, and what
//! it protects against, is in the guide's
//! [memory and limits](https://github.com/tether-ws/tether/blob/main/docs/guide.md#memory-and-limits).
//!
//! ## Errors
//!
//! Everything returns [`Error`] ([`Result`]), grouped by who is to blame
//! ([`Error::blame`], or [`Error::is_io`], [`Error::is_peer`],
//! [`Error::is_application`], [`Error::is_timeout`], [`Error::is_closed`]):
//!
//! * the transport: [`Error::Io`] (including a transport that ended without
//!   a Close, close code 1006), [`Error::Timeout`] (what and after how
//!   long), [`Error::Proxy`]; a retry may help ([`reconnect`]);
//! * the peer: [`Error::Protocol`] (the connection was failed with the
//!   matching close code, see [`Error::close_code`]), [`Error::Handshake`]
//!   (an invalid request or response), [`Error::Refused`] (the server
//!   answered the handshake with this status and body), [`Error::Tls`];
//! * the application: [`Error::Closed`] (the one "closed" error: the
//!   connection is closed or closing and cannot be used any more; it holds
//!   the peer's Close frame if one arrived), [`Error::Send`] (e.g. a control
//!   frame too long), [`Error::InvalidRequest`] (a URL or header that cannot
//!   be used), [`Error::Config`] (a CA file, proxy URL or other setting that
//!   cannot be used), [`Error::Rejected`] (your policy refused the
//!   handshake).
//!
//! A clean close is not an error: [`WebSocket::recv`] returns `None` and
//! [`WebSocket::peer_close`] has the peer's code and reason.
//!
//! ## Where each feature lives
//!
//! | feature | default | gives |
//! |---|---|---|
//! | `tls` | yes | `wss://` with rustls (ring) and the system plus Mozilla roots; [`tls`] |
//! | `hyper` | no | `tether::hyper`: upgrade a request served by hyper 1.x (HTTP/1.1) |
//! | `axum` | no | `tether::axum::WebSocketUpgrade`, an axum 0.8 extractor; implies `hyper` |
//!
//! The protocol itself (frames, masking, UTF-8, the handshake rules,
//! permessage-deflate) is [`tether_proto`], re-exported as [`proto`], for
//! use without tokio.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
// Policy checks return the refusal (`Reject`, an HTTP response) as their
// error; it is built at most once per handshake, off the data path.
#![allow(clippy::result_large_err)]

#[cfg(feature = "axum")]
pub mod axum;
pub mod browser;
mod client;
mod config;
mod echo;
mod error;
mod extensions;
mod head;
#[cfg(feature = "http2")]
pub mod http2;
#[cfg(feature = "hyper")]
pub mod hyper;
mod message;
mod origin;
mod pool;
pub mod proxy;
pub mod reconnect;
mod server;
mod socket;
mod stream;
mod timer;
#[cfg(feature = "tls")]
pub mod tls;

pub use client::{connect, ClientBuilder, IntoClientRequest};
pub use config::{Keepalive, WebSocketConfig};
pub use echo::Echoed;
pub use error::{Error, Result, REFUSAL_BODY_LIMIT};
pub use message::Message;
pub use origin::OriginPolicy;
pub use server::{accept, Accept, Incoming, Reject, ServerBuilder};
pub use socket::WebSocket;
pub use stream::MaybeTlsStream;

pub use tether_proto as proto;
pub use tether_proto::{CloseCode, CloseFrame, MessageRef, Utf8Bytes};
