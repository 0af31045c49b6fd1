//! permessage-deflate (RFC 7692): negotiation and per-message compression.
//!
//! * [`DeflateConfig`] — what this endpoint is willing to do (off unless the
//!   application opts in by setting [`Config::deflate`](crate::Config::deflate));
//! * negotiation — [`DeflateConfig::offer`] and [`DeflateConfig::accept_response`]
//!   for a client, [`DeflateConfig::negotiate`] for a server. The outcome is a
//!   [`DeflateParams`], which the handshake layer stores in
//!   [`Config::negotiated_deflate`](crate::Config::negotiated_deflate) before
//!   creating the [`Connection`](crate::Connection);
//! * [`Compressor`] / [`Decompressor`] — one message at a time, with or without
//!   context takeover, with the `0x00 0x00 0xff 0xff` tail stripped on the way
//!   out and appended on the way in (§7.2.1, §7.2.2).
//!
//! # Architecture notes (for ARCHITECTURE.md)
//!
//! **Backend.** `zlib-rs`, a pure-Rust port of zlib (no C toolchain, no
//! `unsafe` in this crate), about as fast as zlib-ng, used through its safe
//! API: it honours the window size (`server_max_window_bits` /
//! `client_max_window_bits` need it), `memLevel` and preset dictionaries
//! (which the shared states below need). Its hash table is a fixed 128 KiB
//! whatever `memLevel`, so one deflate state is 250-370 KiB.
//!
//! **Window bits 8.** zlib (and so zlib-rs) cannot *deflate* raw
//! data with a 256-byte window: `deflateInit2` rejects `-8`, and zlib-rs only
//! takes 9..=15 for either direction. When 8 is negotiated for our direction we
//! compress with 9. This is safe: zlib never emits a match distance larger than
//! `window_size - MIN_LOOKAHEAD` (512 - 262 = 250 bytes for 9 bits), so the
//! stream never references more than the 256 bytes a peer with an 8-bit window
//! keeps (RFC 7692 §7.1.2.1 discusses the zlib limitation). When the peer's
//! direction uses 8 we inflate with a 9-bit window, which decodes any stream
//! made with a smaller one.
//!
//! **Where inflation happens.** A compressed frame is inflated when the whole
//! frame has arrived (its size is already bounded by `max_frame_size`), in
//! chunks of at most [`INFLATE_CHUNK`] bytes of output. After every chunk the
//! inflated size is checked against `max_message_size` — exceeding it fails the
//! connection with 1009 — and, for text, the new bytes are fed to the
//! incremental UTF-8 validator, so a decompression bomb stops after at most
//! `max_message_size + 1` bytes of output and invalid UTF-8 fails within one
//! chunk of where it appears. Corrupt deflate data fails with 1007
//! ([`ProtocolError::Extension`](crate::ProtocolError::Extension)).
//!
//! **Memory per connection.** zlib states are not kept per connection: each
//! thread keeps a few ([`CodecMemory::states_per_thread`], default 4 of each
//! kind; a deflate state about 370 KiB at 15 window bits and memLevel 8, an
//! inflate state about 45 KiB), and a connection keeps only the tail of each
//! direction's stream: up to [`CodecMemory::send_history`] bytes sent
//! (default 16 KiB) and the peer's window of received bytes (2^bits, 32 KiB
//! at 15 bits). A state remembers whose stream it carries and after how many
//! messages, so a connection that sends again before another one used the
//! state just continues; otherwise the least recently used state is reset and
//! primed with the connection's history (a preset dictionary: hashing it is
//! the cost, about 2-3 ns a byte). A message whose frames are still arriving
//! holds its inflate state until its last frame. With `*_no_context_takeover`
//! nothing is kept between messages in that direction. The send history can
//! be freed at any time (a sender may always start afresh):
//! [`Connection::release_quiet_deflate`](crate::Connection::release_quiet_deflate),
//! which the keepalive calls once per interval ([`Connection::handle_timeout`](crate::Connection::handle_timeout)), frees it when nothing
//! was compressed during the interval. Measured with a counting allocator
//! on a JSON chat/ticker stream (`deflate_stream` bench): 48 KiB per
//! connection against 420 KiB with a state per connection, at a compression
//! ratio within 2% (0.361 against 0.355 when every message needs priming, the
//! same when consecutive messages share a state).
//!
//! **CPU.** Priming dominates when connections take turns on few states (a
//! broadcast): per ~200-byte message at level 6, about 90 µs with 16 KiB of
//! history, 135 µs with 32 KiB, 60 µs with 8 KiB, against about 25 µs on a
//! state that carries the stream and 155 µs for a state per connection that
//! has gone cold in the cache (the `deflate_stream` bench, shared 2-core
//! machine). Level 1 costs about a sixth of level 6 per message for a 15%
//! larger output. Without context takeover each message pays a zlib reset
//! (clearing the 128 KiB hash table, a few µs) and compresses far worse
//! (0.83 against 0.34 on the same stream).
//!
//! **Sending.** [`Connection::send`](crate::Connection::send) compresses
//! messages of at least [`DeflateConfig::min_size`] bytes and sets RSV1 on the
//! first frame only; smaller ones go out uncompressed (RSV1 clear), which
//! RFC 7692 §6 allows per message. Messages sent piecewise with
//! [`Connection::send_fragment`](crate::Connection::send_fragment) are sent
//! uncompressed.
//!
//! **Cost when not negotiated.** The connection keeps an
//! `Option<Box<DeflateState>>`; the frame path only looks at it when a frame
//! has RSV bits set (already a rare branch) or once per message, never per
//! byte, and nothing is allocated.

mod codec;
mod history;
mod negotiate;
mod pool;

#[cfg(test)]
mod tests;

pub use codec::{CodecMemory, Compressor, Decompressor, INFLATE_CHUNK};
pub use negotiate::NegotiationError;
pub use pool::{pooled_on_this_thread, release_thread_states};

/// The extension token.
pub const EXTENSION_NAME: &str = "permessage-deflate";

/// permessage-deflate settings of one endpoint.
///
/// The same struct serves both roles: a client offers these values, a server
/// accepts offers within them.
///
/// ```
/// use tether_proto::deflate::DeflateConfig;
/// let c = DeflateConfig::default();
/// assert_eq!(c.offer().to_string(), "permessage-deflate; client_max_window_bits");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeflateConfig {
    /// Largest LZ77 window (base-2 log, 8..=15) the server may compress with.
    /// A client asks for it (`server_max_window_bits`) when below 15; a
    /// server never uses more. Lower means less memory. Default 15.
    pub server_max_window_bits: u8,
    /// Largest window (8..=15) the client may compress with. A client offers
    /// `client_max_window_bits` (with this value when below 15); a server
    /// declines offers that cannot be limited to it. Default 15.
    pub client_max_window_bits: u8,
    /// Ask that the server reset its compression context after every
    /// message (client: request it; server: always do it). Default false.
    pub server_no_context_takeover: bool,
    /// Ask that the client reset its compression context after every
    /// message (client: always do it; server: require it). Default false.
    pub client_no_context_takeover: bool,
    /// zlib compression level 0..=9. Default 6.
    pub level: u32,
    /// Messages shorter than this are sent uncompressed. Default 64 bytes.
    pub min_size: usize,
    /// How compression state is shared and how much of it a connection
    /// keeps between messages (defaults: memLevel 8, 16 KiB of send
    /// history, 4 states of each kind per thread).
    pub memory: CodecMemory,
}

impl DeflateConfig {
    /// Sets [`server_max_window_bits`](Self::server_max_window_bits).
    #[must_use]
    pub fn with_server_max_window_bits(mut self, server_max_window_bits: u8) -> Self {
        self.server_max_window_bits = server_max_window_bits;
        self
    }

    /// Sets [`client_max_window_bits`](Self::client_max_window_bits).
    #[must_use]
    pub fn with_client_max_window_bits(mut self, client_max_window_bits: u8) -> Self {
        self.client_max_window_bits = client_max_window_bits;
        self
    }

    /// Sets [`server_no_context_takeover`](Self::server_no_context_takeover).
    #[must_use]
    pub fn with_server_no_context_takeover(mut self, server_no_context_takeover: bool) -> Self {
        self.server_no_context_takeover = server_no_context_takeover;
        self
    }

    /// Sets [`client_no_context_takeover`](Self::client_no_context_takeover).
    #[must_use]
    pub fn with_client_no_context_takeover(mut self, client_no_context_takeover: bool) -> Self {
        self.client_no_context_takeover = client_no_context_takeover;
        self
    }

    /// Sets [`level`](Self::level).
    #[must_use]
    pub fn with_level(mut self, level: u32) -> Self {
        self.level = level;
        self
    }

    /// Sets [`min_size`](Self::min_size).
    #[must_use]
    pub fn with_min_size(mut self, min_size: usize) -> Self {
        self.min_size = min_size;
        self
    }

    /// Sets [`memory`](Self::memory).
    #[must_use]
    pub fn with_memory(mut self, memory: CodecMemory) -> Self {
        self.memory = memory;
        self
    }
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            level: 6,
            min_size: 64,
            memory: CodecMemory::default(),
        }
    }
}

/// The parameters agreed in the opening handshake (RFC 7692 §7.1), the same
/// for both ends: each side reads the `server_*` or `client_*` half that
/// applies to its own direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server resets its compression context after every message.
    pub server_no_context_takeover: bool,
    /// The client resets its compression context after every message.
    pub client_no_context_takeover: bool,
    /// The server compresses with a window of at most 2^this bytes (8..=15).
    pub server_max_window_bits: u8,
    /// The client compresses with a window of at most 2^this bytes (8..=15).
    pub client_max_window_bits: u8,
}

impl Default for DeflateParams {
    /// No parameters: context takeover both ways, 15-bit windows.
    fn default() -> Self {
        DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }
}
