//! # tether-proto (package `tether-ws-proto`)
//!
//! A sans-IO implementation of the WebSocket protocol (RFC 6455): bytes in,
//! events and bytes out. No sockets, no async runtime, no clock (the time is
//! passed in, for keepalive and the closing deadline) — so the same
//! state machine serves the tokio library, tests, fuzzers and anyone who wants
//! to drive WebSockets over their own transport.
//!
//! * [`frame`] — frame header decoding/encoding;
//! * [`mask`] — payload masking, word-at-a-time;
//! * [`utf8`] — incremental UTF-8 validation and the [`Utf8Bytes`] text type;
//! * [`close`] — close codes and close frames;
//! * [`Connection`] — the state machine: fragmentation, control frames,
//!   the closing handshake, keepalive and the closing deadline, limits;
//! * [`handshake`] — the HTTP/1.1 opening handshake for both roles;
//! * [`deflate`] — permessage-deflate (RFC 7692) negotiation and compression.
//!
//! ```
//! use tether_proto::{Config, Connection, Event, Message, Role, CloseCode, CloseFrame};
//! let mut client = Connection::new(Role::Client, Config::default());
//! let mut server = Connection::new(Role::Server, Config::default());
//!
//! client.send(Message::text("Hello")).unwrap();
//! server.receive(&client.take_output());
//! let event = server.poll_event().unwrap();
//! assert_eq!(event, Some(Event::Message(Message::text("Hello"))));
//!
//! // Closing handshake: the server echoes the client's code.
//! client.close(Some(CloseFrame::new(CloseCode::NORMAL, "bye"))).unwrap();
//! server.receive(&client.take_output());
//! assert!(matches!(server.poll_event().unwrap(), Some(Event::Close(Some(_)))));
//! client.receive(&server.take_output());
//! assert!(matches!(client.poll_event().unwrap(), Some(Event::Close(Some(_)))));
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "bench")]
pub mod bench;
#[cfg(all(test, not(feature = "bench")))]
mod bench;
pub mod close;
pub mod config;
pub mod connection;
mod copy;
pub mod deflate;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod message;
pub mod output;
pub mod random;
pub mod utf8;

pub use close::{CloseCode, CloseFrame};
pub use config::{Config, Keepalive};
pub use connection::{CloseState, Connection, InPlace, Role, Sender};
pub use error::{ProtocolError, SendError, Timeout};
pub use frame::{FrameHeader, OpCode};
pub use message::{Event, Message, MessageRef};
pub use random::Randomness;
pub use utf8::Utf8Bytes;

pub use bytes::{Buf, Bytes, BytesMut};
