//! WebSockets over HTTP/2 (RFC 8441), client side (feature `http2`).
//!
//! One HTTP/2 connection carries many WebSockets, each a stream opened by an
//! extended CONNECT (`:protocol websocket`, answered `200`). For `wss://`
//! the connection is offered `h2` and `http/1.1` by ALPN; for `ws://` it
//! speaks HTTP/2 with prior knowledge (cleartext, for backends). A
//! server may only be sent an extended CONNECT once its first `SETTINGS`
//! frame carried `SETTINGS_ENABLE_CONNECT_PROTOCOL = 1` (RFC 8441 §3), so
//! [`Http2Connection::connect`] reads that frame as it passes and fails with
//! [`Error::Http2`] when the setting is absent.
//!
//! [`ClientBuilder::connect_http2`] is the one-socket form with a fallback:
//! HTTP/2 when the server offers it, HTTP/1.1 on the same TLS connection
//! when ALPN chose `http/1.1`, and over a new connection when the server
//! speaks HTTP/2 without the setting (or, for `ws://`, not HTTP/2 at all).
//!
//! ```no_run
//! # async fn run() -> tether::Result<()> {
//! use tether::http2::Http2Connection;
//! let builder = tether::ClientBuilder::new("wss://example.com/feed");
//! let connection = Http2Connection::connect(&builder).await?;
//! // Two WebSockets, one TCP+TLS connection.
//! let (a, _) = connection.open(builder.clone()).await?;
//! let (b, _) = connection
//!     .open(tether::ClientBuilder::new("wss://example.com/chat"))
//!     .await?;
//! # drop((a, b)); Ok(()) }
//! ```
//!
//! Flow control: each stream may have [`STREAM_WINDOW`] bytes in flight
//! towards the client, the connection [`CONNECTION_WINDOW`], so that a
//! socket the application stops reading holds its own window and never
//! the others' (the connection window covers 256 stalled streams).

use crate::client::ClientBuilder;
use crate::error::{Error, Result, REFUSAL_BODY_LIMIT};
use crate::socket::WebSocket;
use crate::stream::MaybeTlsStream;
use ::hyper::client::conn::http2::SendRequest;
use ::hyper::upgrade::Upgraded;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use pin_project_lite::pin_project;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tether_proto::handshake::{validate_extended_connect_response, Target, WEBSOCKET_PROTOCOL};
use tether_proto::Role;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

/// The stream a WebSocket over HTTP/2 runs on.
pub type Http2Stream = TokioIo<Upgraded>;

/// The receive window of each stream (bytes the server may send ahead of
/// the application's reads).
pub const STREAM_WINDOW: u32 = 256 * 1024;

/// The receive window of the connection: 256 streams' worth, so stalled
/// streams never use up what the others need.
pub const CONNECTION_WINDOW: u32 = 256 * STREAM_WINDOW;

/// Largest DATA frame the server may send: whole messages of up to a
/// stream window in one frame rather than in 16 KiB pieces.
const MAX_FRAME: u32 = STREAM_WINDOW;

/// The ALPN protocols offered for `wss://`, HTTP/2 first.
const ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// How long a refusal's body is waited for.
const REFUSAL_BODY_WAIT: Duration = Duration::from_secs(1);

/// An HTTP/2 connection that opens WebSockets as streams. Cheap to clone:
/// clones share the connection, which ends once every clone and every
/// socket opened on it are dropped.
#[derive(Clone, Debug)]
pub struct Http2Connection {
    sender: SendRequest<Empty<Bytes>>,
    secure: bool,
    /// `host[:port]` of the URL it was opened for: sockets open on the same
    /// origin only.
    authority: String,
}

/// What [`open_transport`] found at the server.
enum Transport {
    /// HTTP/2 with the extended CONNECT.
    Http2(Http2Connection),
    /// ALPN chose `http/1.1`: the TLS connection, ready for an HTTP/1.1
    /// handshake.
    Http1(MaybeTlsStream),
    /// HTTP/2 unusable for WebSockets (why), the connection dropped.
    Unusable(String),
}

impl Http2Connection {
    /// Connect to `builder`'s URL (its proxy, TLS settings and timeouts)
    /// over HTTP/2. Fails with [`Error::Http2`] when the server does not
    /// choose `h2` by ALPN (`wss://`), does not speak HTTP/2 (`ws://`, prior
    /// knowledge), or does not enable the extended CONNECT.
    pub async fn connect(builder: &ClientBuilder) -> Result<Http2Connection> {
        match open_transport(builder).await? {
            Transport::Http2(c) => Ok(c),
            Transport::Http1(_) => Err(Error::Http2(format!(
                "{} chose HTTP/1.1 by ALPN (no h2 offered)",
                builder.url()
            ))),
            Transport::Unusable(why) => Err(Error::Http2(why)),
        }
    }

    /// Open a WebSocket as a new stream, with `builder`'s path, origin,
    /// subprotocols, headers and settings. Its URL must have this
    /// connection's scheme and authority. The `CONNECT` exchange is bounded
    /// by the builder's `handshake_timeout`; a status other than 2xx is
    /// [`Error::Refused`].
    pub async fn open(
        &self,
        builder: ClientBuilder,
    ) -> Result<(WebSocket<Http2Stream>, http::Response<()>)> {
        self.open_as(builder, |s| s).await
    }

    /// [`open`](Self::open), with the stream wrapped by `wrap` (e.g. into
    /// [`ClientStream::Http2`]).
    pub async fn open_as<T>(
        &self,
        builder: ClientBuilder,
        wrap: impl FnOnce(Http2Stream) -> T,
    ) -> Result<(WebSocket<T>, http::Response<()>)>
    where
        T: AsyncRead + AsyncWrite + Unpin,
    {
        let target = builder.target()?;
        if target.secure != self.secure || target.host_header() != self.authority {
            return Err(Error::Config(format!(
                "{} is not on this HTTP/2 connection's origin ({}://{})",
                builder.url(),
                if self.secure { "wss" } else { "ws" },
                self.authority
            )));
        }
        let mut config = builder.get_config().clone();
        let mut creq = target.client_request();
        let (origin, headers) = builder.request_extras();
        creq.origin = origin.map(str::to_owned);
        creq.protocols = builder.offered_protocols().to_vec();
        creq.headers = headers.clone();
        let (offer, offered_extensions) = crate::extensions::client_offer(&config);
        creq.extensions = offer;
        let (parts, ()) = creq.to_extended_connect(target.secure)?.into_parts();
        let mut request = http::Request::from_parts(parts, Empty::<Bytes>::new());
        request
            .extensions_mut()
            .insert(::hyper::ext::Protocol::from_static(WEBSOCKET_PROTOCOL));
        let timeout = config.handshake_timeout;
        let mut sender = self.sender.clone();
        let exchange = async {
            sender.ready().await.map_err(h2_error)?;
            let mut response = sender.send_request(request).await.map_err(h2_error)?;
            if !response.status().is_success() {
                let body = refusal_body(response.body_mut()).await;
                return Err(Error::Refused {
                    status: response.status(),
                    body,
                });
            }
            let accepted = validate_extended_connect_response(
                &response,
                builder.offered_protocols(),
                offered_extensions,
            )?;
            crate::extensions::client_accepted(&mut config, &accepted)?;
            let upgraded = ::hyper::upgrade::on(&mut response)
                .await
                .map_err(h2_error)?;
            let (head, _body) = response.into_parts();
            Ok((upgraded, http::Response::from_parts(head, ())))
        };
        let (upgraded, response) =
            tokio::time::timeout(timeout, exchange)
                .await
                .map_err(|_| Error::Timeout {
                    what: "extended CONNECT over HTTP/2",
                    after: timeout,
                })??;
        let ws = WebSocket::from_raw(wrap(TokioIo::new(upgraded)), Role::Client, config, &[]);
        Ok((ws, response))
    }

    /// Whether the connection has ended (GOAWAY, error or closed): no more
    /// sockets can be opened on it.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

/// Connect and find out what the server speaks: HTTP/2 with the extended
/// CONNECT, HTTP/1.1 by ALPN, or neither usable.
async fn open_transport(builder: &ClientBuilder) -> Result<Transport> {
    let target = builder.target()?;
    let tcp = builder.connect_tcp(&target).await?;
    let stream = builder.wrap_tls_alpn(tcp, &target, Some(ALPN)).await?;
    let h2 = match &stream {
        MaybeTlsStream::Tls(tls) => tls.get_ref().1.alpn_protocol() == Some(b"h2"),
        // Prior knowledge: a cleartext listener that does not speak HTTP/2
        // shows it in its first bytes.
        _ => true,
    };
    if !h2 {
        return Ok(Transport::Http1(stream));
    }
    let (tx, rx) = oneshot::channel();
    let watched = SettingsWatch {
        inner: stream,
        first: Some(Box::new(FirstFrame {
            buf: Vec::new(),
            tx: Some(tx),
        })),
    };
    let timeout = builder.get_config().handshake_timeout;
    let handshake = async {
        let (sender, connection) = ::hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_frame_size(MAX_FRAME)
            .handshake::<_, Empty<Bytes>>(TokioIo::new(watched))
            .await
            .map_err(h2_error)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("HTTP/2 connection ended: {e}");
            }
        });
        let settings = rx.await.unwrap_or(FirstSettings::NotHttp2);
        Ok::<_, Error>((sender, settings))
    };
    let (sender, settings) = tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| Error::Timeout {
            what: "the server's HTTP/2 SETTINGS",
            after: timeout,
        })??;
    Ok(match settings {
        FirstSettings::ConnectProtocol => Transport::Http2(Http2Connection {
            sender,
            secure: target.secure,
            authority: target.host_header(),
        }),
        FirstSettings::NoConnectProtocol => Transport::Unusable(format!(
            "{} speaks HTTP/2 without SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441 §3): \
             it cannot take WebSockets over HTTP/2",
            builder.url()
        )),
        FirstSettings::NotHttp2 => Transport::Unusable(format!(
            "{} does not speak HTTP/2 (its first bytes are not a SETTINGS frame)",
            builder.url()
        )),
    })
}

impl ClientBuilder {
    /// Connect over HTTP/2 when the server offers it with the extended
    /// CONNECT (RFC 8441), over HTTP/1.1 otherwise: on the same TLS
    /// connection when ALPN chose `http/1.1`, on a new one when the server
    /// speaks HTTP/2 without `SETTINGS_ENABLE_CONNECT_PROTOCOL` (or, for
    /// `ws://`, not HTTP/2 at all). To open more sockets on one connection,
    /// use [`Http2Connection`].
    pub async fn connect_http2(self) -> Result<(WebSocket<ClientStream>, http::Response<()>)> {
        let target: Target = self.target()?;
        match open_transport(&self).await? {
            Transport::Http2(connection) => connection.open_as(self, ClientStream::Http2).await,
            Transport::Http1(stream) => {
                self.handshake_on(ClientStream::Http1(stream), &target)
                    .await
            }
            Transport::Unusable(why) => {
                tracing::debug!("{why}; using HTTP/1.1");
                self.connect_http1().await
            }
        }
    }
}

impl ClientBuilder {
    /// [`connect`](Self::connect) (HTTP/1.1 only), with the socket on a
    /// [`ClientStream`]: for code that holds sockets of both kinds.
    pub async fn connect_http1(self) -> Result<(WebSocket<ClientStream>, http::Response<()>)> {
        let target = self.target()?;
        let tcp = self.connect_tcp(&target).await?;
        let stream = self.wrap_tls_alpn(tcp, &target, None).await?;
        self.handshake_on(ClientStream::Http1(stream), &target)
            .await
    }
}

/// The transport of [`ClientBuilder::connect_http2`]'s socket.
#[derive(Debug)]
pub enum ClientStream {
    /// HTTP/1.1: the socket owns the TCP (or TLS) connection.
    Http1(MaybeTlsStream),
    /// A stream of an HTTP/2 connection.
    Http2(Http2Stream),
}

impl ClientStream {
    /// Whether the socket runs over HTTP/2.
    pub fn is_http2(&self) -> bool {
        matches!(self, ClientStream::Http2(_))
    }
}

macro_rules! each {
    ($self:expr, $s:ident => $e:expr) => {
        match $self.get_mut() {
            ClientStream::Http1($s) => {
                let $s = Pin::new($s);
                $e
            }
            ClientStream::Http2($s) => {
                let $s = Pin::new($s);
                $e
            }
        }
    };
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ClientStream::Http1(s) => s.is_write_vectored(),
            ClientStream::Http2(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_shutdown(cx))
    }
}

/// hyper's errors on the connection are I/O failures (retryable); the
/// rest say what broke.
fn h2_error(e: ::hyper::Error) -> Error {
    if e.is_closed() || e.is_canceled() || e.is_incomplete_message() {
        Error::Io(io::Error::new(io::ErrorKind::ConnectionAborted, e))
    } else {
        Error::Http2(e.to_string())
    }
}

/// The start of a refused CONNECT's body, at most [`REFUSAL_BODY_LIMIT`]
/// bytes, waited for at most [`REFUSAL_BODY_WAIT`]; control characters
/// (a hostile server's terminal escapes) become U+FFFD.
async fn refusal_body(body: &mut ::hyper::body::Incoming) -> String {
    let mut buf = Vec::new();
    let read = async {
        while buf.len() < REFUSAL_BODY_LIMIT {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        buf.extend_from_slice(data);
                    }
                }
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(REFUSAL_BODY_WAIT, read).await;
    buf.truncate(REFUSAL_BODY_LIMIT);
    String::from_utf8_lossy(&buf)
        .chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                char::REPLACEMENT_CHARACTER
            } else {
                c
            }
        })
        .collect()
}

/// What the server's first frame said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FirstSettings {
    /// A SETTINGS frame with `SETTINGS_ENABLE_CONNECT_PROTOCOL = 1`.
    ConnectProtocol,
    /// A SETTINGS frame without it.
    NoConnectProtocol,
    /// Not a SETTINGS frame (or the connection ended first).
    NotHttp2,
}

/// `SETTINGS_ENABLE_CONNECT_PROTOCOL` (RFC 8441 §3).
const ENABLE_CONNECT_PROTOCOL: u16 = 0x8;

/// Reads the server's connection preface, its first frame, which must be
/// SETTINGS (RFC 9113 §3.4), as the bytes pass to hyper.
struct FirstFrame {
    buf: Vec<u8>,
    tx: Option<oneshot::Sender<FirstSettings>>,
}

impl FirstFrame {
    /// Take `bytes` (none: the connection ended); the verdict once known.
    fn feed(&mut self, bytes: &[u8]) -> Option<FirstSettings> {
        if bytes.is_empty() {
            return Some(FirstSettings::NotHttp2);
        }
        self.buf.extend_from_slice(bytes);
        first_settings(&self.buf)
    }
}

/// The verdict on the first frame in `buf`, `None` while incomplete.
fn first_settings(buf: &[u8]) -> Option<FirstSettings> {
    let header = buf.get(..9)?;
    let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
    let (kind, flags) = (header[3], header[4]);
    let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
    // SETTINGS (type 4), not an ACK, on stream 0, whole entries, and no
    // larger than the default frame size a server may send first.
    if kind != 4 || flags & 1 != 0 || stream != 0 || !len.is_multiple_of(6) || len > 16_384 {
        return Some(FirstSettings::NotHttp2);
    }
    let payload = buf.get(9..9 + len)?;
    let enabled = payload
        .chunks_exact(6)
        .rfind(|e| u16::from_be_bytes([e[0], e[1]]) == ENABLE_CONNECT_PROTOCOL)
        .is_some_and(|e| e[2..] == [0, 0, 0, 1]);
    Some(if enabled {
        FirstSettings::ConnectProtocol
    } else {
        FirstSettings::NoConnectProtocol
    })
}

pin_project! {
    /// A transport that reports the server's first SETTINGS frame as hyper
    /// reads it, then only forwards.
    struct SettingsWatch<S> {
        #[pin]
        inner: S,
        first: Option<Box<FirstFrame>>,
    }
}

impl<S: AsyncRead> AsyncRead for SettingsWatch<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let result = this.inner.poll_read(cx, buf);
        if let Some(first) = this.first.as_mut() {
            match &result {
                Poll::Ready(Ok(())) => {
                    if let Some(verdict) = first.feed(&buf.filled()[before..]) {
                        if let Some(tx) = first.tx.take() {
                            let _ = tx.send(verdict);
                        }
                        *this.first = None;
                    }
                }
                // The receiver sees the sender dropped: not HTTP/2.
                Poll::Ready(Err(_)) => *this.first = None,
                Poll::Pending => {}
            }
        }
        result
    }
}

impl<S: AsyncWrite> AsyncWrite for SettingsWatch<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(entries: &[(u16, u32)]) -> Vec<u8> {
        let len = entries.len() * 6;
        let mut out = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            4,
            0,
            0,
            0,
            0,
            0,
        ];
        for (id, value) in entries {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&value.to_be_bytes());
        }
        out
    }

    #[test]
    fn client_sees_enable_connect_protocol_in_the_first_settings() {
        let frame = settings(&[(0x3, 100), (0x8, 1)]);
        for cut in 0..frame.len() {
            assert_eq!(first_settings(&frame[..cut]), None, "{cut}");
        }
        assert_eq!(first_settings(&frame), Some(FirstSettings::ConnectProtocol));
    }

    #[test]
    fn client_takes_settings_without_the_flag_as_no_extended_connect() {
        for entries in [&[][..], &[(0x3, 100)], &[(0x8, 0)], &[(0x8, 1), (0x8, 0)]] {
            assert_eq!(
                first_settings(&settings(entries)),
                Some(FirstSettings::NoConnectProtocol),
                "{entries:?}"
            );
        }
    }

    #[test]
    fn client_takes_any_other_first_frame_as_not_http2() {
        assert_eq!(
            first_settings(b"HTTP/1.1 400 Bad Request\r\n"),
            Some(FirstSettings::NotHttp2)
        );
        let mut ack = settings(&[]);
        ack[4] = 1;
        assert_eq!(first_settings(&ack), Some(FirstSettings::NotHttp2));
        let mut odd = settings(&[(0x8, 1)]);
        odd[2] = 5;
        assert_eq!(first_settings(&odd), Some(FirstSettings::NotHttp2));
    }
}
