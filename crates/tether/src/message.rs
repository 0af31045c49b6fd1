//! What flows through a [`WebSocket`](crate::WebSocket) stream and sink.

use bytes::Bytes;
use tether_proto::{CloseFrame, Utf8Bytes};

/// A WebSocket message or control frame.
///
/// The stream yields data messages, the peer's pings and pongs (pongs to
/// pings are sent automatically), and the peer's `Close` once; then it ends.
/// The sink takes the same: sending `Close` starts the closing handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Text, guaranteed UTF-8.
    Text(Utf8Bytes),
    /// Binary data.
    Binary(Bytes),
    /// A ping (at most 125 bytes).
    Ping(Bytes),
    /// A pong (at most 125 bytes).
    Pong(Bytes),
    /// A close frame; `None` means no status code (1005).
    Close(Option<CloseFrame>),
}

impl Message {
    /// A text message.
    pub fn text(s: impl Into<Utf8Bytes>) -> Self {
        Message::Text(s.into())
    }

    /// A binary message.
    pub fn binary(b: impl Into<Bytes>) -> Self {
        Message::Binary(b.into())
    }

    /// True for text and binary messages.
    pub fn is_data(&self) -> bool {
        matches!(self, Message::Text(_) | Message::Binary(_))
    }

    /// The text of a text message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Message::Text(t) => Some(t.as_str()),
            _ => None,
        }
    }

    /// The payload bytes (empty for a Close without code).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) | Message::Ping(b) | Message::Pong(b) => b,
            Message::Close(Some(f)) => f.reason.as_bytes(),
            Message::Close(None) => &[],
        }
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// True if the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<tether_proto::Message> for Message {
    fn from(m: tether_proto::Message) -> Self {
        match m {
            tether_proto::Message::Text(t) => Message::Text(t),
            tether_proto::Message::Binary(b) => Message::Binary(b),
        }
    }
}

impl From<String> for Message {
    fn from(s: String) -> Self {
        Message::Text(s.into())
    }
}

impl From<&str> for Message {
    fn from(s: &str) -> Self {
        Message::Text(s.into())
    }
}

impl From<Bytes> for Message {
    fn from(b: Bytes) -> Self {
        Message::Binary(b)
    }
}

impl From<Vec<u8>> for Message {
    fn from(b: Vec<u8>) -> Self {
        Message::Binary(b.into())
    }
}
