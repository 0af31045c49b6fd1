//! Settings of the async layer, on top of the protocol core's [`Config`].

use std::time::Duration;
use tether_proto::handshake::HandshakeLimits;
use tether_proto::Config;

/// Keepalive settings: the protocol core's (it decides when to ping and
/// when the peer is dead, see `Connection::handle_timeout`).
pub use tether_proto::Keepalive;

/// Options for a [`WebSocket`](crate::WebSocket) and its handshake.
///
/// Built from [`WebSocketConfig::default`] with the `with_*` setters, so
/// that new options can be added without breaking anyone; the fields are
/// public to read.
///
/// ```
/// use std::time::Duration;
/// use tether::{proto::Config, WebSocketConfig};
/// let config = WebSocketConfig::default()
///     .with_protocol(Config::default().with_max_message_size(1 << 20))
///     .with_close_timeout(Duration::from_secs(2));
/// assert_eq!(config.protocol.max_message_size, 1 << 20);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct WebSocketConfig {
    /// Limits and options of the protocol core. Its `keepalive` and
    /// `close_timeout` are replaced by this struct's fields of those names.
    pub protocol: Config,
    /// Limits on the opening handshake's HTTP head.
    pub handshake_limits: HandshakeLimits,
    /// The whole opening handshake must finish within this (slow-drip
    /// requests must not hold a socket forever). Default 10 s.
    pub handshake_timeout: Duration,
    /// How long to wait for the peer's part of the closing handshake (its
    /// Close frame, and for a client the server's TCP close), and, with
    /// `protocol.defer_close_reply`, how long the application may take to
    /// answer the peer's Close before it is answered for it. Default 5 s.
    pub close_timeout: Duration,
    /// Sending waits (backpressure) while more than this many bytes are
    /// queued for the socket. Default 128 KiB.
    pub write_buffer_limit: usize,
    /// Optional keepalive pings. Default off.
    pub keepalive: Option<Keepalive>,
    /// Fail the connection (`Error::Timeout`, transport dropped without a
    /// closing handshake) when output is queued and the socket has accepted
    /// none of it for this long: a peer that stops reading cannot hold the
    /// connection for ever. Progress is checked once per period, so a stall
    /// is detected after one to two periods. Default off.
    pub send_timeout: Option<Duration>,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        WebSocketConfig {
            protocol: Config::default(),
            handshake_limits: HandshakeLimits::default(),
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            write_buffer_limit: 128 << 10,
            keepalive: None,
            send_timeout: None,
        }
    }
}

impl WebSocketConfig {
    /// Sets [`protocol`](Self::protocol) (limits and options of the protocol core).
    #[must_use]
    pub fn with_protocol(mut self, protocol: Config) -> Self {
        self.protocol = protocol;
        self
    }

    /// Sets [`handshake_limits`](Self::handshake_limits).
    #[must_use]
    pub fn with_handshake_limits(mut self, handshake_limits: HandshakeLimits) -> Self {
        self.handshake_limits = handshake_limits;
        self
    }

    /// Sets [`handshake_timeout`](Self::handshake_timeout).
    #[must_use]
    pub fn with_handshake_timeout(mut self, handshake_timeout: Duration) -> Self {
        self.handshake_timeout = handshake_timeout;
        self
    }

    /// Sets [`close_timeout`](Self::close_timeout).
    #[must_use]
    pub fn with_close_timeout(mut self, close_timeout: Duration) -> Self {
        self.close_timeout = close_timeout;
        self
    }

    /// Sets [`write_buffer_limit`](Self::write_buffer_limit).
    #[must_use]
    pub fn with_write_buffer_limit(mut self, write_buffer_limit: usize) -> Self {
        self.write_buffer_limit = write_buffer_limit;
        self
    }

    /// Sets [`keepalive`](Self::keepalive).
    #[must_use]
    pub fn with_keepalive(mut self, keepalive: Option<Keepalive>) -> Self {
        self.keepalive = keepalive;
        self
    }

    /// Sets [`send_timeout`](Self::send_timeout).
    #[must_use]
    pub fn with_send_timeout(mut self, send_timeout: Option<Duration>) -> Self {
        self.send_timeout = send_timeout;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_setter_changes_its_own_field_only() {
        let d = WebSocketConfig::default();
        let k = Keepalive::new(Duration::from_secs(30), Duration::from_secs(10));
        let c = WebSocketConfig::default()
            .with_protocol(Config::default().with_max_message_size(1 << 20))
            .with_handshake_limits(HandshakeLimits::default().with_max_headers(8))
            .with_handshake_timeout(Duration::from_secs(3))
            .with_close_timeout(Duration::from_secs(2))
            .with_write_buffer_limit(1 << 16)
            .with_keepalive(Some(k))
            .with_send_timeout(Some(Duration::from_secs(7)));
        assert_eq!(c.protocol.max_message_size, 1 << 20);
        assert_eq!(c.protocol.max_frame_size, d.protocol.max_frame_size);
        assert_eq!(c.handshake_limits.max_headers, 8);
        assert_eq!(
            c.handshake_limits.max_head_bytes,
            d.handshake_limits.max_head_bytes
        );
        assert_eq!(c.handshake_timeout, Duration::from_secs(3));
        assert_eq!(c.close_timeout, Duration::from_secs(2));
        assert_eq!(c.write_buffer_limit, 1 << 16);
        assert_eq!(c.keepalive, Some(k));
        assert_eq!(
            (k.interval, k.timeout),
            (Duration::from_secs(30), Duration::from_secs(10))
        );
        assert_eq!(c.send_timeout, Some(Duration::from_secs(7)));
    }
}
