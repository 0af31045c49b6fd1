//! Reading an HTTP head off a stream, bounded in size and time.

use crate::error::{Error, Result};
use bytes::{Buf, BytesMut};
use tether_proto::handshake::{HandshakeError, HandshakeLimits};
use tokio::io::{AsyncRead, AsyncReadExt};

/// An incremental head parser: `Ok(None)` until the head is complete, then
/// the head and its length in bytes.
pub(crate) type HeadParser<T> =
    fn(&[u8], &HandshakeLimits) -> Result<Option<(T, usize)>, HandshakeError>;

/// Read until `parse` recognises a complete head. Returns the parsed head;
/// `buf` keeps whatever followed it (already WebSocket data).
pub(crate) async fn read_head<S, T>(
    io: &mut S,
    buf: &mut BytesMut,
    limits: &HandshakeLimits,
    parse: HeadParser<T>,
) -> Result<T>
where
    S: AsyncRead + Unpin,
{
    loop {
        if let Some((head, len)) = parse(buf, limits)? {
            buf.advance(len);
            return Ok(head);
        }
        if buf.len() > limits.max_head_bytes {
            return Err(HandshakeError::HeadTooLarge.into());
        }
        buf.reserve(2048);
        if io.read_buf(buf).await? == 0 {
            return Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed during the opening handshake",
            )));
        }
    }
}
