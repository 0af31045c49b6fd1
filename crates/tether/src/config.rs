//! Settings of the async layer, on top of the protocol core's [`Config`].

use std::time::Duration;
use tether_proto::handshake::HandshakeLimits;
use tether_proto::Config;

/// Keepalive: ping when the peer has been silent, give up when it stays so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// Send a ping once this long has passed without receiving anything.
    /// Silence is checked once per interval, so the ping goes out after one
    /// to two intervals of silence (a busy connection never reads the clock).
    pub interval: Duration,
    /// Fail the connection if nothing arrives this long after the ping.
    pub timeout: Duration,
}

/// Options for a [`WebSocket`](crate::WebSocket) and its handshake.
///
/// ```
/// use std::time::Duration;
/// use tether::WebSocketConfig;
/// let mut config = WebSocketConfig::default();
/// config.protocol.max_message_size = 1 << 20;
/// config.close_timeout = Duration::from_secs(2);
/// ```
#[derive(Clone, Debug)]
pub struct WebSocketConfig {
    /// Limits and options of the protocol core.
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
