//! [`WebSocket`]: a protocol [`Connection`] driven over an async byte stream.
//!
//! The stream half reads bytes into the connection's buffer, turns them into
//! messages, and flushes automatic replies (pongs, the Close echo) on the way.
//! With `defer_close_reply`, the peer's Close leaves the stream waiting for
//! the application's reply (it may still send data) for at most
//! `close_timeout`, after which the Close is echoed for it.
//! The sink half encodes messages into the connection's output queue and
//! writes it out, waiting while more than `write_buffer_limit` bytes are
//! queued: a slow peer slows the sender down instead of growing memory.
//!
//! Closing follows RFC 6455 §7: after both Close frames, a server closes the
//! TCP connection at once and a client waits (bounded by `close_timeout`) for
//! the server to do so. After a protocol error, the Close is flushed, the
//! write side shut down and incoming bytes drained until the peer closes, so
//! the kernel never answers unread data with a reset that could destroy our
//! Close frame in flight.
//!
//! The deadlines (keepalive, the deferred Close reply, the closing
//! handshake) are the protocol core's (`Connection::poll_timeout` and
//! `handle_timeout`): this layer arms one timer at the instant it asks for
//! and gives it the time when that passes. The send timeout, which watches
//! the socket rather than the protocol, is the other timer (`timer.rs`).
//!
//! The code is split by job: `read.rs` the reads and the read buffer's
//! room, `write.rs` the writes and the sink calls, `close.rs` the deadline
//! timer, the deferred Close reply and the wind-down; this file holds the
//! state, the public calls and the loop that turns input into messages.

use crate::config::WebSocketConfig;
use crate::error::{Error, Result};
use crate::message::Message;
use crate::timer::{DeadlineTimer, SendTimer};
use futures_core::Stream;
use futures_sink::Sink;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};
use tether_proto::{CloseFrame, Connection, Event, InPlace, MessageRef, ProtocolError, Role};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

mod close;
mod read;
mod write;

/// How the connection is winding down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shutdown {
    /// Not yet.
    No,
    /// The peer's Close arrived and, with `defer_close_reply`, the reply is
    /// the application's to send (data may go out first); bounded by
    /// `close_timeout`, after which the reply is sent automatically.
    AwaitReply,
    /// Flushing, then waiting for the peer to close the transport.
    Draining,
    /// Transport shut down; the stream is over.
    Done,
}

/// A WebSocket connection over any async byte stream `S`.
///
/// Implements [`Stream`] of incoming [`Message`]s and [`Sink`] of outgoing
/// ones; use `futures::StreamExt::split` for independently owned halves.
///
/// ```no_run
/// # async fn run() -> tether::Result<()> {
/// use futures_util::{SinkExt, StreamExt};
/// let (mut ws, _response) = tether::connect("ws://127.0.0.1:8080/echo").await?;
/// ws.send(tether::Message::text("hello")).await?;
/// while let Some(msg) = ws.next().await {
///     println!("{:?}", msg?);
/// }
/// # Ok(()) }
/// ```
pub struct WebSocket<S> {
    io: S,
    conn: Connection,
    config: WebSocketConfig,
    shutdown: Shutdown,
    /// The connection's deadline (keepalive, closing handshake).
    deadline: DeadlineTimer,
    /// The send timeout's timer.
    send_timer: SendTimer,
    /// Error to report once the transport is wound down.
    pending_error: Option<Error>,
    /// The transport reached end of file.
    read_eof: bool,
    /// The last read in place found only the start of a small frame (or
    /// nothing): reading ahead is right (see `poll_read_ahead`).
    read_ahead: bool,
    /// The task waiting in a sink call (`poll_ready`, `poll_flush`,
    /// `poll_close`) for output to drain, woken by any write progress and
    /// when the transport ends.
    write_waiter: Option<Waker>,
}

impl<S> std::fmt::Debug for WebSocket<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket")
            .field("role", &self.conn.role())
            .field("close_state", &self.conn.close_state())
            .field("buffered_amount", &self.conn.buffered_amount())
            .finish()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Wrap a stream whose opening handshake is already done. `leftover` is
    /// whatever was read past the handshake head (it is WebSocket data).
    pub fn from_raw(io: S, role: Role, config: WebSocketConfig, leftover: &[u8]) -> Self {
        let protocol = config
            .protocol
            .clone()
            .with_keepalive(config.keepalive)
            .with_close_timeout(config.close_timeout);
        let mut conn = Connection::new(role, protocol);
        conn.receive(leftover);
        // Starts the connection's clock (arms the keepalive); cannot fail.
        let _ = conn.handle_timeout(Instant::now().into_std());
        WebSocket {
            io,
            conn,
            config,
            shutdown: Shutdown::No,
            deadline: DeadlineTimer::default(),
            send_timer: SendTimer::default(),
            pending_error: None,
            read_eof: false,
            read_ahead: false,
            write_waiter: None,
        }
    }

    /// The protocol state machine (for inspection).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// The configuration.
    pub fn config(&self) -> &WebSocketConfig {
        &self.config
    }

    /// Bytes queued but not yet written (the browser's `bufferedAmount`).
    pub fn buffered_amount(&self) -> usize {
        self.conn.buffered_amount()
    }

    /// The peer's Close frame, once received.
    pub fn peer_close(&self) -> Option<&CloseFrame> {
        self.conn.peer_close()
    }

    /// Receive the next message (`None` once the connection is closed).
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        std::future::poll_fn(|cx| self.poll_next_fast(cx)).await
    }

    /// Read the next message in place, if it is a small data message
    /// (at most 125 bytes, one frame, uncompressed) already buffered: `f`
    /// gets it borrowed from the read buffer and its result is returned.
    /// `None` otherwise, with nothing consumed: receive with
    /// [`recv`](Self::recv) (or the `Stream`), which handles everything
    /// else. Order is kept: only the message at the front is ever taken.
    ///
    /// For a reader that only looks at each message (counts it, parses it
    /// into its own types), this avoids allocating one buffer per message.
    ///
    /// ```no_run
    /// # async fn run(mut ws: tether::WebSocket<tokio::net::TcpStream>) -> tether::Result<()> {
    /// let mut total = 0;
    /// loop {
    ///     if let Some(n) = ws.recv_buffered_ref(|m| m.len()) {
    ///         total += n;
    ///         continue;
    ///     }
    ///     match ws.recv().await {
    ///         Some(Ok(m)) if m.is_data() => total += m.len(),
    ///         Some(Ok(_)) => {}
    ///         Some(Err(e)) => return Err(e),
    ///         None => break,
    ///     }
    /// }
    /// println!("{total} bytes");
    /// # Ok(()) }
    /// ```
    #[inline]
    pub fn recv_buffered_ref<R>(&mut self, f: impl FnOnce(MessageRef<'_>) -> R) -> Option<R> {
        if self.shutdown != Shutdown::No {
            return None;
        }
        let read = self.conn.read_in_place(|m, _| f(m));
        self.read_ahead = matches!(read, InPlace::NeedInput);
        match read {
            InPlace::Read(r) => Some(r),
            InPlace::NeedInput | InPlace::PollEvent => None,
        }
    }

    /// After [`recv_buffered_ref`](Self::recv_buffered_ref) returned
    /// `None`: read more, if nothing buffered can be read without it and
    /// the next frame may be a small message, so that `recv_buffered_ref`
    /// is worth another try.
    ///
    /// - `Ready(true)`: bytes arrived; try `recv_buffered_ref` again.
    /// - `Ready(false)`: not for this path (what is buffered is for the
    ///   general path, as `Connection::read_in_place` decides: a
    ///   larger, control, fragmented or malformed frame, text whose payload
    ///   has begun to arrive; or the closing handshake is under way, or the
    ///   transport ended): receive with [`recv`](Self::recv) or
    ///   `poll_next`, which also reports how the connection ended.
    /// - `Pending`: nothing to read now; the task will be woken as by
    ///   `poll_next` (keepalive and close deadlines included), and queued
    ///   output was written first, as `poll_next` does.
    ///
    /// This is for poll-level readers of small messages at low depth (one
    /// message in flight finds an empty buffer every time). Without it,
    /// the message that arrives next is read by `poll_next` and handed out
    /// as an owned `Message`, an allocation and a copy; with it, it is
    /// read in place like the messages of a burst.
    ///
    /// ```no_run
    /// # use std::task::{Context, Poll};
    /// # use futures_util::Stream;
    /// # fn poll_count(ws: &mut tether::WebSocket<tokio::net::TcpStream>, cx: &mut Context<'_>, total: &mut usize) -> Poll<()> {
    /// loop {
    ///     if let Some(n) = ws.recv_buffered_ref(|m| m.len()) {
    ///         *total += n;
    ///         continue;
    ///     }
    ///     match ws.poll_read_ahead(cx) {
    ///         Poll::Ready(true) => continue,
    ///         Poll::Ready(false) => {}
    ///         Poll::Pending => return Poll::Pending,
    ///     }
    ///     match std::pin::Pin::new(&mut *ws).poll_next(cx) {
    ///         Poll::Ready(Some(Ok(m))) => *total += m.len(),
    ///         Poll::Ready(_) => return Poll::Ready(()),
    ///         Poll::Pending => return Poll::Pending,
    ///     }
    /// }
    /// # }
    /// ```
    pub fn poll_read_ahead(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        if self.shutdown != Shutdown::No
            || self.conn.close_sent()
            || !std::mem::take(&mut self.read_ahead)
        {
            return Poll::Ready(false);
        }
        let input = self.poll_input(cx);
        if input.is_pending() {
            // Nothing arrived: the buffer is as `read_in_place` found it.
            self.read_ahead = true;
        }
        match ready!(input) {
            // Bytes arrived, unless a deadline started the wind-down.
            Ok(()) => Poll::Ready(self.shutdown == Shutdown::No),
            Err(e) => {
                // The transport is over (shutdown is Done): `poll_next`
                // reports this, then the end of the stream.
                self.pending_error = Some(e);
                Poll::Ready(false)
            }
        }
    }

    /// Send a message and flush it.
    pub async fn send(&mut self, msg: Message) -> Result<()> {
        std::future::poll_fn(|cx| self.poll_ready_inner(cx)).await?;
        self.start_send_inner(msg)?;
        std::future::poll_fn(|cx| self.poll_flush_inner(cx)).await
    }

    /// Perform the whole closing handshake: send Close (if not yet sent),
    /// then read until the peer's Close and the end of the transport,
    /// discarding data that arrives meanwhile. Bounded by `close_timeout`.
    pub async fn close(&mut self, frame: Option<CloseFrame>) -> Result<()> {
        if !self.conn.close_sent() {
            self.conn.close(frame)?;
        }
        while let Some(item) = self.recv().await {
            if let Err(e) = item {
                return match e {
                    Error::Closed(_) => Ok(()),
                    e => Err(e),
                };
            }
        }
        Ok(())
    }

    /// The next message: inlined for a data message already buffered (the
    /// common case under load: `Connection::poll_event` is inlined too, and
    /// takes a small one without leaving the caller), the rest in
    /// [`poll_next_inner`](Self::poll_next_inner). Kept this small so that
    /// it can be inlined into the caller's future.
    #[inline]
    pub(crate) fn poll_next_fast(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        if self.shutdown == Shutdown::No {
            match self.conn.poll_event() {
                Ok(Some(Event::Message(m))) => return Poll::Ready(Some(Ok(m.into()))),
                Ok(None) => {}
                other => {
                    if let Some(done) = self.on_event(cx, other) {
                        return done;
                    }
                }
            }
        }
        self.poll_next_inner(cx)
    }

    /// Send the small message at the front of the read buffer back where
    /// it lies (`Connection::read_in_place` and `Sender::send_ref`): no
    /// `Message`, no allocation, one copy. `Read` with its length; the
    /// other outcomes as `read_in_place`'s (`PollEvent` too once the
    /// connection is closing).
    #[inline]
    pub(crate) fn echo_in_place(&mut self) -> InPlace<Result<usize>> {
        if self.shutdown != Shutdown::No || self.conn.close_sent() {
            return InPlace::PollEvent;
        }
        if self.conn.read_buf().len() >= 2 {
            self.borrow_output_buffer();
        }
        let read = self
            .conn
            .read_in_place(|m, tx| tx.send_ref(m).map(|()| m.len()));
        self.read_ahead = matches!(read, InPlace::NeedInput);
        match read {
            InPlace::Read(sent) => InPlace::Read(sent.map_err(Error::from)),
            InPlace::NeedInput => InPlace::NeedInput,
            InPlace::PollEvent => InPlace::PollEvent,
        }
    }

    /// Act on what `Connection::poll_event` returned (other than
    /// `Ok(None)`): `Some` is the answer for `poll_next`, `None` means go on
    /// (the connection failed and is winding down). Out of line: only the
    /// data-message case is hot.
    #[inline(never)]
    fn on_event(
        &mut self,
        cx: &mut Context<'_>,
        event: std::result::Result<Option<Event>, ProtocolError>,
    ) -> Option<Poll<Option<Result<Message>>>> {
        match event {
            Ok(None) => None,
            Ok(Some(event)) => Some(match event {
                Event::Message(m) => Poll::Ready(Some(Ok(m.into()))),
                Event::Ping(p) => {
                    // Push the automatic pong out promptly.
                    if let Poll::Ready(Err(e)) = self.poll_write_output(cx) {
                        return Some(Poll::Ready(Some(Err(self.failed(cx, e)))));
                    }
                    Poll::Ready(Some(Ok(Message::Ping(p))))
                }
                Event::Pong(p) => Poll::Ready(Some(Ok(Message::Pong(p)))),
                Event::Close(frame) => {
                    self.shutdown = if self.conn.close_sent() {
                        Shutdown::Draining
                    } else {
                        Shutdown::AwaitReply
                    };
                    Poll::Ready(Some(Ok(Message::Close(frame))))
                }
            }),
            Err(e) => {
                tracing::debug!(error = %e, "failing the connection");
                self.pending_error = Some(Error::Protocol(e));
                self.shutdown = Shutdown::Draining;
                None
            }
        }
    }

    #[inline(never)]
    fn poll_next_inner(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        // What the last read in place found changes as this reads.
        self.read_ahead = false;
        loop {
            if self.shutdown == Shutdown::AwaitReply {
                ready!(self.poll_await_reply(cx));
            }
            if self.shutdown != Shutdown::No {
                ready!(self.poll_wind_down(cx));
                return Poll::Ready(self.pending_error.take().map(Err));
            }
            let event = self.conn.poll_event();
            if let Some(done) = self.on_event(cx, event) {
                return done;
            }
            if self.shutdown != Shutdown::No {
                continue;
            }
            if let Err(e) = ready!(self.poll_input(cx)) {
                return Poll::Ready(Some(Err(e)));
            }
        }
    }

    /// Nothing buffered makes an event: deadlines, queued output, then a
    /// read. `Ready(Ok(()))`: bytes arrived, or a deadline passed and the
    /// wind-down began; look again. `Ready(Err(_))`: the transport ended
    /// (end of file or an I/O error). `Pending`: nothing to read, every
    /// waker registered, the buffers lent to the pool.
    fn poll_input(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if let Err(e) = self.poll_deadline(cx) {
            tracing::debug!(error = %e, "deadline passed");
            self.pending_error = Some(e);
            self.shutdown = Shutdown::Draining;
            return Poll::Ready(Ok(()));
        }
        if self.conn.buffered_amount() > 0 {
            if let Poll::Ready(Err(e)) = self.poll_write_output(cx) {
                return Poll::Ready(Err(self.failed(cx, e)));
            }
        }
        match self.poll_read_more(cx) {
            Poll::Pending => {
                self.recycle_buffers();
                Poll::Pending
            }
            Poll::Ready(Ok(0)) => {
                self.read_eof = true;
                self.transport_ended(cx);
                Poll::Ready(Err(Error::abnormal_closure()))
            }
            Poll::Ready(Ok(_)) => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(self.io_failed(cx, e))),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WebSocket<S> {
    type Item = Result<Message>;

    #[inline]
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_next_fast(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WebSocket<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_ready_inner(cx)
    }

    #[inline]
    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<()> {
        self.get_mut().start_send_inner(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_flush_inner(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_close_inner(cx)
    }
}

/// Make a [`ProtocolError`] usable where a `std::io::Error` is expected.
impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        match e {
            Error::Io(e) => e,
            Error::Protocol(p @ ProtocolError::InvalidUtf8) => {
                io::Error::new(io::ErrorKind::InvalidData, p)
            }
            other => io::Error::other(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (
        WebSocket<tokio::io::DuplexStream>,
        WebSocket<tokio::io::DuplexStream>,
    ) {
        let (a, b) = tokio::io::duplex(64 << 10);
        let config = WebSocketConfig::default();
        (
            WebSocket::from_raw(a, Role::Client, config.clone(), &[]),
            WebSocket::from_raw(b, Role::Server, config, &[]),
        )
    }

    /// Poll `poll_read_ahead` once, without waiting.
    fn read_ahead_now(ws: &mut WebSocket<tokio::io::DuplexStream>) -> Poll<bool> {
        let waker = futures_util::task::noop_waker();
        ws.poll_read_ahead(&mut Context::from_waker(&waker))
    }

    #[tokio::test]
    async fn read_ahead_brings_the_next_small_message_in_place() {
        let (mut client, mut server) = pair();
        assert_eq!(server.recv_buffered_ref(|_| ()), None);
        assert_eq!(read_ahead_now(&mut server), Poll::Pending, "nothing sent");
        client.send(Message::text("hi")).await.unwrap();
        assert!(std::future::poll_fn(|cx| server.poll_read_ahead(cx)).await);
        let got = server.recv_buffered_ref(|m| Message::from(m.to_message()));
        assert_eq!(got, Some(Message::text("hi")));
        assert_eq!(server.recv_buffered_ref(|_| ()), None);
        assert_eq!(read_ahead_now(&mut server), Poll::Pending);
    }

    #[tokio::test]
    async fn read_ahead_leaves_large_frames_and_control_frames_to_recv() {
        let (mut client, mut server) = pair();
        let large = Message::binary(vec![7u8; 1000]);
        for m in [
            large.clone(),
            Message::Ping(bytes::Bytes::from_static(b"p")),
        ] {
            client.send(m.clone()).await.unwrap();
            // The buffer was empty, so it reads...
            assert_eq!(server.recv_buffered_ref(|_| ()), None);
            assert!(std::future::poll_fn(|cx| server.poll_read_ahead(cx)).await);
            // ...but what arrived is not for the in-place path.
            assert_eq!(server.recv_buffered_ref(|_| ()), None);
            assert_eq!(read_ahead_now(&mut server), Poll::Ready(false));
            assert_eq!(server.recv().await.unwrap().unwrap(), m);
        }
    }

    #[tokio::test]
    async fn read_ahead_leaves_the_end_of_the_transport_to_recv() {
        let (client, mut server) = pair();
        drop(client);
        assert_eq!(server.recv_buffered_ref(|_| ()), None);
        assert!(!std::future::poll_fn(|cx| server.poll_read_ahead(cx)).await);
        assert!(matches!(
            server.recv().await,
            Some(Err(Error::Io(e))) if e.kind() == io::ErrorKind::UnexpectedEof
        ));
        assert!(server.recv().await.is_none());
        assert_eq!(read_ahead_now(&mut server), Poll::Ready(false));
    }
}
