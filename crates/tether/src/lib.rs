//! # tether
//!
//! Async WebSocket client and server on tokio, built on the sans-IO
//! [`tether_proto`] core.
//!
//! * [`connect`] / [`ClientBuilder`] — open a connection to a `ws://` or
//!   `wss://` URL, through a proxy if the environment names one
//!   ([`tls`], [`proxy`]; [`reconnect`] for retries with backoff);
//! * [`browser::BrowserSocket`] — the browser's `WebSocket` API and rules
//!   (states, `bufferedAmount`, close events, WHATWG validation);
//! * [`accept`] / [`ServerBuilder`] — accept one on any stream, with a policy
//!   hook ([`Incoming`]) for origin, subprotocol and authentication checks;
//! * [`WebSocket`] — a `Stream` + `Sink` of [`Message`]s with backpressure,
//!   automatic pongs, keepalive and a proper closing handshake.
//!
//! A complete echo server:
//!
//! ```no_run
//! use futures_util::{SinkExt, StreamExt};
//! # async fn run() -> tether::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
//! while let Ok((tcp, _)) = listener.accept().await {
//!     tokio::spawn(async move {
//!         let mut ws = tether::accept(tcp).await?;
//!         while let Some(Ok(msg)) = ws.next().await {
//!             if msg.is_data() { ws.send(msg).await?; }
//!         }
//!         Ok::<_, tether::Error>(())
//!     });
//! }
//! # Ok(()) }
//! ```
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
#[cfg(feature = "tls")]
pub mod tls;

pub use client::{connect, ClientBuilder};
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
