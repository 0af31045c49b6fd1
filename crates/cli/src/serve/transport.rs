//! The server's transport: plain TCP, TLS, or one stream of an HTTP/2
//! connection (a WebSocket opened by an extended CONNECT), with the bytes
//! read past an HTTP request pushed back in front (keep-alive and
//! pipelining read the next request from there).

use bytes::{Buf, BytesMut};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// An HTTP/2 stream hyper handed over, and the local address of its
/// connection.
pub type Http2Stream = (
    hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>,
    std::net::SocketAddr,
);

/// TCP, TLS-over-TCP, or an HTTP/2 stream.
pub enum Transport {
    /// `ws://`, `http://`.
    Plain(TcpStream),
    /// `wss://`, `https://`.
    Tls(Box<TlsStream<TcpStream>>),
    /// A stream of an HTTP/2 connection (boxed: the other transports stay
    /// as small as they are).
    Http2(Box<Http2Stream>),
}

/// A transport with a pushback buffer.
pub struct Conn {
    prefix: BytesMut,
    inner: Transport,
}

impl Conn {
    /// Wrap a transport.
    pub fn new(inner: Transport) -> Conn {
        Conn {
            prefix: BytesMut::new(),
            inner,
        }
    }

    /// The local address of the TCP connection.
    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        match &self.inner {
            Transport::Plain(s) => s.local_addr(),
            Transport::Tls(s) => s.get_ref().0.local_addr(),
            Transport::Http2(s) => Ok(s.1),
        }
    }

    /// Bytes to be read again, before anything still pushed back (a head
    /// parsed from part of the pushback leaves the rest there) and before
    /// the transport's.
    pub fn unread(&mut self, mut bytes: BytesMut) {
        if !self.prefix.is_empty() {
            bytes.extend_from_slice(&self.prefix);
        }
        self.prefix = bytes;
    }
}

macro_rules! dispatch {
    ($self:expr, $s:ident => $e:expr) => {
        match &mut $self.get_mut().inner {
            Transport::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            Transport::Tls($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
            Transport::Http2($s) => {
                let $s = Pin::new(&mut $s.0);
                $e
            }
        }
    };
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        dispatch!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        dispatch!(self, s => s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        dispatch!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.inner {
            Transport::Plain(s) => s.is_write_vectored(),
            Transport::Tls(s) => s.is_write_vectored(),
            Transport::Http2(s) => s.0.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        dispatch!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        dispatch!(self, s => s.poll_shutdown(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn pushed_back_bytes_come_first_in_order() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut conn = Conn::new(Transport::Plain(server));
        client.write_all(b"tcp").await.unwrap();
        conn.unread(BytesMut::from(&b"abc"[..]));
        let mut one = [0u8; 1];
        conn.read_exact(&mut one).await.unwrap();
        assert_eq!(&one, b"a");
        // A second pushback goes in front of what is left of the first.
        conn.unread(BytesMut::from(&b"XY"[..]));
        let mut rest = [0u8; 7];
        conn.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"XYbctcp");
    }
}
