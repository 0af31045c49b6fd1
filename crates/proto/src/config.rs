//! Limits and options for a connection, with safe defaults.

use crate::deflate::{DeflateConfig, DeflateParams};
use crate::random::Randomness;
use std::time::Duration;

/// Keepalive: ping when the peer has been silent, give up when it stays so.
///
/// ```
/// use std::time::Duration;
/// use tether_proto::{Config, Keepalive};
/// let keepalive = Keepalive::new(Duration::from_secs(30), Duration::from_secs(10));
/// let config = Config::default().with_keepalive(Some(keepalive));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Keepalive {
    /// Send a ping once this long has passed without receiving anything.
    /// Silence is checked once per interval, so the ping goes out after one
    /// to two intervals of silence (receiving never needs the time).
    pub interval: Duration,
    /// Fail the connection if nothing arrives this long after the ping.
    pub timeout: Duration,
}

impl Keepalive {
    /// Ping after `interval` of silence; fail the connection if nothing
    /// arrives within `timeout` after the ping.
    pub fn new(interval: Duration, timeout: Duration) -> Self {
        Keepalive { interval, timeout }
    }
}

/// Options for a [`Connection`](crate::Connection).
///
/// Built from [`Config::default`] with the `with_*` setters, so that new
/// options can be added without breaking anyone; the fields are public to
/// read.
///
/// ```
/// use tether_proto::Config;
/// let config = Config::default().with_max_message_size(1 << 20);
/// assert_eq!(config.max_frame_size, 16 << 20);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// Largest frame payload accepted; larger frames fail the connection
    /// with 1009 as soon as their header arrives. Default 16 MiB.
    pub max_frame_size: usize,
    /// Largest message accepted (after decompression, if any); larger
    /// messages fail the connection with 1009 as soon as the limit is
    /// crossed. Default 64 MiB.
    pub max_message_size: usize,
    /// Answer pings with pongs automatically. Default true.
    pub auto_pong: bool,
    /// Leave the reply to the peer's Close to the application instead of
    /// queuing it as soon as the Close arrives. RFC 6455 §5.5.1 lets an
    /// endpoint send the rest of its current message before its Close
    /// reply; with this set, the application may send data messages after
    /// [`Event::Close`](crate::Event::Close) and then answers with
    /// [`Connection::close`](crate::Connection::close) (the close state is
    /// [`CloseReceived`](crate::CloseState::CloseReceived) meanwhile).
    /// Reading is over either way. Default false: the Close is echoed at once.
    pub defer_close_reply: bool,
    /// When more than this many bytes wait to be written (the peer is not
    /// reading), replies to pings are coalesced: only the latest ping is
    /// answered, as RFC 6455 §5.5.3 permits. This bounds the memory a ping
    /// flood can claim. Default 64 KiB.
    pub control_backlog: usize,
    /// Split outgoing messages into frames of at most this many bytes.
    /// `None` (the default) sends each message as one frame.
    pub fragment_size: Option<usize>,
    /// permessage-deflate (RFC 7692) settings used by the opening handshake:
    /// a client offers them, a server accepts offers within them. `None`
    /// (the default) never negotiates compression. See [`crate::deflate`].
    pub deflate: Option<DeflateConfig>,
    /// The permessage-deflate parameters agreed in the opening handshake, if
    /// any. The handshake layer sets this (from
    /// [`DeflateConfig::negotiate`] or [`DeflateConfig::accept_response`]);
    /// when `Some`, the connection accepts RSV1 on data frames and
    /// compresses outgoing messages of at least
    /// [`DeflateConfig::min_size`] bytes. Default `None`.
    pub negotiated_deflate: Option<DeflateParams>,
    /// Where a client's masking keys come from (and, in `tether`, its
    /// handshake nonces). Default: the thread-local CSPRNG (see
    /// [`crate::random`]).
    pub random: Randomness,
    /// Keepalive pings (see [`Connection::handle_timeout`](crate::Connection::handle_timeout)).
    /// Default off.
    pub keepalive: Option<Keepalive>,
    /// How long the closing handshake may take once our Close is queued
    /// (the peer's Close, and the end of the transport), and, with
    /// `defer_close_reply`, how long the application may take to answer
    /// the peer's Close before the connection answers it. Default 5 s.
    pub close_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_frame_size: 16 << 20,
            max_message_size: 64 << 20,
            auto_pong: true,
            defer_close_reply: false,
            control_backlog: 64 << 10,
            fragment_size: None,
            deflate: None,
            negotiated_deflate: None,
            random: Randomness::ThreadRng,
            keepalive: None,
            close_timeout: Duration::from_secs(5),
        }
    }
}

impl Config {
    /// Sets [`max_frame_size`](Self::max_frame_size).
    #[must_use]
    pub fn with_max_frame_size(mut self, max_frame_size: usize) -> Self {
        self.max_frame_size = max_frame_size;
        self
    }

    /// Sets [`max_message_size`](Self::max_message_size).
    #[must_use]
    pub fn with_max_message_size(mut self, max_message_size: usize) -> Self {
        self.max_message_size = max_message_size;
        self
    }

    /// Take masking keys (and, in `tether`, handshake nonces) from
    /// `random` instead of the thread-local CSPRNG.
    pub fn with_random(mut self, random: Randomness) -> Self {
        self.random = random;
        self
    }

    /// Sets [`auto_pong`](Self::auto_pong).
    #[must_use]
    pub fn with_auto_pong(mut self, auto_pong: bool) -> Self {
        self.auto_pong = auto_pong;
        self
    }

    /// Sets [`defer_close_reply`](Self::defer_close_reply).
    #[must_use]
    pub fn with_defer_close_reply(mut self, defer_close_reply: bool) -> Self {
        self.defer_close_reply = defer_close_reply;
        self
    }

    /// Sets [`control_backlog`](Self::control_backlog).
    #[must_use]
    pub fn with_control_backlog(mut self, control_backlog: usize) -> Self {
        self.control_backlog = control_backlog;
        self
    }

    /// Sets [`fragment_size`](Self::fragment_size).
    #[must_use]
    pub fn with_fragment_size(mut self, fragment_size: Option<usize>) -> Self {
        self.fragment_size = fragment_size;
        self
    }

    /// Sets [`negotiated_deflate`](Self::negotiated_deflate): what the
    /// handshake agreed (the handshake layer sets it; tests and other I/O
    /// layers may too).
    #[must_use]
    pub fn with_negotiated_deflate(mut self, negotiated_deflate: Option<DeflateParams>) -> Self {
        self.negotiated_deflate = negotiated_deflate;
        self
    }

    /// Sets [`deflate`](Self::deflate) (`None`: never negotiate compression).
    #[must_use]
    pub fn with_deflate(mut self, deflate: Option<DeflateConfig>) -> Self {
        self.deflate = deflate;
        self
    }

    /// Sets [`keepalive`](Self::keepalive).
    #[must_use]
    pub fn with_keepalive(mut self, keepalive: Option<Keepalive>) -> Self {
        self.keepalive = keepalive;
        self
    }

    /// Sets [`close_timeout`](Self::close_timeout).
    #[must_use]
    pub fn with_close_timeout(mut self, close_timeout: Duration) -> Self {
        self.close_timeout = close_timeout;
        self
    }
}
