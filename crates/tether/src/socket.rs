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

use crate::config::WebSocketConfig;
use crate::error::{Error, Result};
use crate::message::Message;
use crate::pool;
use crate::timer::{DeadlineTimer, SendTimer};
use bytes::Buf;
use futures_core::Stream;
use futures_sink::Sink;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};
use tether_proto::{
    CloseFrame, CloseState, Connection, Event, InPlace, MessageRef, ProtocolError, Role, SendError,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

/// Growth step of the read buffer while a large frame arrives.
const READ_CHUNK: usize = 64 * 1024;
/// Most slices handed to one vectored write.
const MAX_IOVECS: usize = 64;

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

/// How much room to make in a read buffer holding `len` bytes with `spare`
/// free, when `missing` more complete the frame being read (0 if unknown);
/// `None` to read into the space there is.
///
/// Growth is geometric (a shared `BytesMut` would otherwise grow by exactly
/// the request, copying a large frame over and over) and driven by what has
/// actually arrived, never by a declared length. Once a large frame is well
/// under way and its rest is within twice what has arrived, the room made is
/// exactly that rest, so the frame ends in a buffer of its own size after
/// fewer copies (for 1 MiB from 32 KiB: 0.7 frames copied instead of 1.4,
/// and 1 MiB of room instead of 1.5).
/// Either way the buffer holds at most three times what has arrived, or
/// what has arrived plus [`READ_CHUNK`].
fn read_growth(len: usize, spare: usize, missing: usize) -> Option<usize> {
    if missing > spare && len >= READ_CHUNK && missing <= 2 * len {
        Some(missing)
    } else if spare < 4096 {
        Some(READ_CHUNK.max(len))
    } else {
        None
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

    /// Write queued output until it is empty or the socket would block.
    ///
    /// Both halves write: the sink its messages, the stream automatic
    /// replies and whatever the sink left queued. A transport keeps one
    /// write waker, the last task's to be told "would block", so when the
    /// halves run in different tasks (`StreamExt::split`) the stream's
    /// writes can take the sink task's wakeup. Whoever makes progress
    /// therefore wakes the sink task parked on a full queue
    /// ([`write_waiter`](Self::write_waiter)), which then polls (and
    /// registers) again.
    ///
    /// While a write would block, the send timeout runs
    /// ([`SendTimer::stalled`]); when it expires the transport is over and
    /// `Error::Timeout` is returned.
    fn poll_write_output(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let mut progressed = false;
        let result = loop {
            let out = self.conn.output();
            if !out.has_remaining() {
                self.conn.on_output_drained();
                if !self.conn.output().has_remaining() {
                    break Poll::Ready(Ok(()));
                }
                continue;
            }
            // One contiguous chunk (the common case: small frames coalesced)
            // goes out with a plain write; several with one vectored write.
            let written = if self.io.is_write_vectored() && out.chunk().len() < out.remaining() {
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                let k = out.chunks_vectored(&mut slices);
                Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..k])
            } else {
                Pin::new(&mut self.io).poll_write(cx, out.chunk())
            };
            match written {
                Poll::Ready(Ok(0)) => {
                    break Poll::Ready(Err(Error::Io(io::ErrorKind::WriteZero.into())))
                }
                Poll::Ready(Ok(n)) => {
                    self.conn.output().advance(n);
                    progressed = true;
                }
                Poll::Ready(Err(e)) => break Poll::Ready(Err(Error::Io(e))),
                Poll::Pending => {
                    if let Some(after) = self.config.send_timeout {
                        if self.send_timer.stalled(cx, after, progressed) {
                            tracing::debug!(?after, "send timeout: the peer is not reading");
                            self.transport_ended(cx);
                            return Poll::Ready(Err(Error::Timeout {
                                what: "sending (the peer accepted no bytes)",
                                after,
                            }));
                        }
                    }
                    break Poll::Pending;
                }
            }
        };
        if progressed || matches!(result, Poll::Ready(Err(_))) {
            self.send_timer.wrote();
            self.wake_writer(cx);
        }
        result
    }

    /// Wake the task parked in a sink call, unless it is this one: output
    /// moved, or the connection ended and the sink call must see it.
    fn wake_writer(&mut self, cx: &Context<'_>) {
        if let Some(w) = self.write_waiter.take() {
            if !w.will_wake(cx.waker()) {
                w.wake();
            }
        }
    }

    /// Write everything queued and flush the transport, for a sink call
    /// (parked as [`write_waiter`](Self::write_waiter) while it waits).
    fn poll_write_all(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let written = self.poll_write_output(cx);
        ready!(self.park_writer(cx, written))?;
        let flushed = Pin::new(&mut self.io).poll_flush(cx);
        self.park_writer(cx, flushed).map_err(Error::Io)
    }

    /// Remember the task whose sink call is waiting on output (see
    /// [`poll_write_output`](Self::poll_write_output)); passes `poll` on.
    fn park_writer<T>(&mut self, cx: &Context<'_>, poll: Poll<T>) -> Poll<T> {
        if poll.is_pending() {
            match &self.write_waiter {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => self.write_waiter = Some(cx.waker().clone()),
            }
        }
        poll
    }

    /// Read more bytes into the connection. Ready(Ok(0)) is end of file.
    fn poll_read_more(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let missing = self.conn.frame_bytes_missing();
        let buf = self.conn.read_buf();
        if buf.capacity() == 0 {
            // Idle connections hold no buffer; borrow a warm one.
            *buf = pool::take();
        } else {
            pool::reclaim_emptied(buf);
            let spare = buf.capacity() - buf.len();
            if let Some(n) = read_growth(buf.len(), spare, missing) {
                // A large frame under way: a buffer kept from an earlier
                // one saves growing this one (copying it) step by step.
                let frame_end = buf.len() + missing;
                if missing <= spare || !pool::grow_into_large(buf, frame_end) {
                    buf.reserve(n);
                }
            }
        }
        // Bytes read count as the peer's sign of life (a flag, no clock).
        let io = &mut self.io;
        self.conn
            .read_into(|buf| tokio_util::io::poll_read_buf(Pin::new(io), cx, buf))
    }

    /// The connection's deadline (keepalive, the deferred Close reply, the
    /// closing handshake): the timer is armed at the instant
    /// `Connection::poll_timeout` gives, and when that has passed the
    /// connection is given the time (`handle_timeout`), which is the only
    /// clock read. An error when a deadline ended the connection: the
    /// keepalive found the peer dead, or the closing handshake's time is up
    /// (said again on every call after it, so the wind-down ends at once).
    fn poll_deadline(&mut self, cx: &Context<'_>) -> Result<()> {
        while let Some(at) = self.conn.poll_timeout() {
            if !self.deadline.passed(at, cx) {
                return Ok(());
            }
            self.conn.handle_timeout(Instant::now().into_std())?;
        }
        self.deadline.disarm();
        Ok(())
    }

    /// Wind the transport down after the closing handshake or a failure:
    /// flush, then (server, or after failure) shut down our side, and wait
    /// for the peer's end of file; a client waits for the server to close
    /// first (RFC 6455 §7.1.1).
    fn poll_wind_down(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.shutdown == Shutdown::Done {
            return Poll::Ready(());
        }
        self.shutdown = Shutdown::Draining;
        if self.poll_deadline(cx).is_err() {
            return self.finish_shutdown(cx);
        }
        match self.poll_write_output(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(_)) => return self.finish_shutdown(cx),
            Poll::Ready(Ok(())) => {}
        }
        let failed = self.conn.failure().is_some();
        if self.conn.role() == Role::Server && !failed && !self.read_eof {
            // The server closes the TCP connection first.
            return self.finish_shutdown(cx);
        }
        if failed && Pin::new(&mut self.io).poll_shutdown(cx).is_pending() {
            return Poll::Pending;
        }
        // Wait for the peer to close; discard whatever still arrives.
        while !self.read_eof {
            self.conn.read_buf().clear();
            match self.poll_read_more(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => self.read_eof = true,
                Poll::Ready(Ok(_)) => {}
            }
        }
        self.finish_shutdown(cx)
    }

    fn finish_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // Give the shutdown a chance unless the closing deadline passed.
        if Pin::new(&mut self.io).poll_shutdown(cx).is_pending()
            && self.conn.poll_timeout().is_some()
            && self.poll_deadline(cx).is_ok()
        {
            return Poll::Pending;
        }
        self.deadline = DeadlineTimer::default();
        self.transport_ended(cx);
        self.recycle_buffers();
        Poll::Ready(())
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

    /// The peer's Close is waiting for the application's reply
    /// (`defer_close_reply`): keep writing what the application queues;
    /// `Ready` once the reply is queued (by the application, or here when
    /// `close_timeout` has passed), and the wind-down begins.
    fn poll_await_reply(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // The connection answers by itself once `close_timeout` has
        // passed (and the wind-down then gets its own `close_timeout`).
        let deadline = self.poll_deadline(cx);
        if deadline.is_ok() && !self.conn.close_sent() {
            if let Poll::Ready(Err(e)) = self.poll_write_output(cx) {
                self.pending_error = Some(self.failed(cx, e));
                return Poll::Ready(());
            }
            return Poll::Pending;
        }
        if let Err(e) = deadline {
            self.pending_error = Some(e);
        }
        self.shutdown = Shutdown::Draining;
        Poll::Ready(())
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

    /// Before queuing output: an idle connection lent its output buffer to
    /// the thread's pool; take a warm one back rather than allocate.
    #[inline]
    fn borrow_output_buffer(&mut self) {
        let out = self.conn.output();
        if !out.has_buffer() {
            // Cannot be refused: the queue has no buffer.
            let _ = out.give_buffer(pool::take());
        }
    }

    /// Nothing buffered either way: lend the buffers to the thread's pool
    /// until bytes move again (see [`pool`]).
    fn recycle_buffers(&mut self) {
        let (read, out) = self.conn.take_idle_buffers();
        pool::give(read);
        pool::give(out);
    }

    /// The transport failed: it is over, and this is the error to report.
    fn io_failed(&mut self, cx: &Context<'_>, e: io::Error) -> Error {
        self.failed(cx, Error::Io(e))
    }

    /// The transport failed or timed out: it is over, and `e` is the error
    /// to report.
    fn failed(&mut self, cx: &Context<'_>, e: Error) -> Error {
        self.transport_ended(cx);
        e
    }

    /// The transport is over: nothing queued can be sent any more, and a
    /// task parked in a sink call must hear of it.
    fn transport_ended(&mut self, cx: &Context<'_>) {
        self.shutdown = Shutdown::Done;
        self.conn.discard_output();
        self.wake_writer(cx);
    }

    pub(crate) fn poll_ready_inner(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if self.shutdown == Shutdown::Done {
            return Poll::Ready(Err(self.closed()));
        }
        if self.conn.buffered_amount() >= self.config.write_buffer_limit {
            let written = self.poll_write_output(cx);
            ready!(self.park_writer(cx, written))?;
        }
        Poll::Ready(Ok(()))
    }

    // Inlined into `start_send`: the message then reaches the protocol
    // core in registers, not through the stack (see `copy::copy_to_bytes`).
    #[inline]
    pub(crate) fn start_send_inner(&mut self, msg: Message) -> Result<()> {
        if self.shutdown == Shutdown::Done {
            return Err(self.closed());
        }
        self.borrow_output_buffer();
        let queued = match msg {
            Message::Text(t) => self.conn.send(tether_proto::Message::Text(t)),
            Message::Binary(b) => self.conn.send(tether_proto::Message::Binary(b)),
            Message::Ping(p) => self.conn.send_ping(p),
            Message::Pong(p) => self.conn.send_pong(p),
            Message::Close(f) => self.conn.close(f),
        };
        queued.map_err(|e| self.send_refused(e))
    }

    /// [`Error::Closed`], with the peer's Close frame if one arrived.
    #[cold]
    fn closed(&self) -> Error {
        Error::Closed(self.conn.peer_close().cloned())
    }

    /// A send the protocol core refused: after our Close it is
    /// [`Error::Closed`] like any use of a closed connection.
    #[cold]
    fn send_refused(&self, e: SendError) -> Error {
        match e {
            SendError::Closing => self.closed(),
            e => Error::Send(e),
        }
    }

    pub(crate) fn poll_flush_inner(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if self.shutdown == Shutdown::Done {
            // Nothing can be pending: output is discarded when the transport ends.
            return Poll::Ready(Ok(()));
        }
        ready!(self.poll_write_all(cx))?;
        Poll::Ready(Ok(()))
    }

    fn poll_close_inner(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if self.shutdown == Shutdown::Done {
            return Poll::Ready(Ok(()));
        }
        if !self.conn.close_sent() {
            self.conn
                .close(Some(CloseFrame::new(tether_proto::CloseCode::NORMAL, "")))?;
        }
        ready!(self.poll_write_all(cx))?;
        if self.conn.close_state() == CloseState::Closed {
            ready!(self.poll_wind_down(cx));
        }
        Poll::Ready(Ok(()))
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

    /// Read one `frame`-byte frame into a buffer that starts with `start`
    /// bytes of room, each read filling all the room there is (up to the
    /// frame's end). Returns the bytes copied by growth (every growth is a
    /// reallocation that copies what has arrived) and the final room.
    fn read_frame(frame: usize, start: usize) -> (usize, usize) {
        let (mut len, mut cap, mut copied) = (0, start, 0);
        while len < frame {
            if let Some(n) = read_growth(len, cap - len, frame - len) {
                if len + n > cap {
                    copied += len;
                    cap = len + n;
                }
                assert!(
                    cap <= (3 * len).max(len + READ_CHUNK),
                    "{cap} bytes of room with {len} arrived"
                );
            }
            len = cap.min(frame);
        }
        (copied, cap)
    }

    #[test]
    fn a_large_frame_ends_in_a_buffer_of_exactly_its_size() {
        for frame in [(1 << 20) + 14, (1 << 20) + 10, 300_000, (16 << 20) + 14] {
            let (copied, cap) = read_frame(frame, 32 << 10);
            assert_eq!(
                cap, frame,
                "no second whole-frame copy into twice the memory"
            );
            // Plain doubling copied 1.4 frames at 1 MiB, into 1.5 MiB of room.
            assert!(
                copied < frame + frame / 2,
                "{copied} bytes copied for a {frame}-byte frame"
            );
        }
    }

    #[test]
    fn a_declared_length_alone_buys_no_memory() {
        // 14 bytes of a frame declaring 16 MiB: room by what arrived only.
        assert_eq!(read_growth(14, 0, 16 << 20), Some(READ_CHUNK));
        assert_eq!(read_growth(14, 8192, 16 << 20), None);
        assert_eq!(read_growth(100_000, 0, 16 << 20), Some(100_000));
        // Close to the end of a large frame: exactly the rest.
        assert_eq!(read_growth(700_000, 0, 400_000), Some(400_000));
    }

    /// A client, and a server that leaves its Close reply to the application.
    fn deferring_pair(
        close_timeout: std::time::Duration,
    ) -> (
        WebSocket<tokio::io::DuplexStream>,
        WebSocket<tokio::io::DuplexStream>,
    ) {
        let (a, b) = tokio::io::duplex(64 << 10);
        let mut config = WebSocketConfig {
            close_timeout,
            ..WebSocketConfig::default()
        };
        let client = WebSocket::from_raw(a, Role::Client, config.clone(), &[]);
        config.protocol.defer_close_reply = true;
        (client, WebSocket::from_raw(b, Role::Server, config, &[]))
    }

    #[tokio::test]
    async fn a_server_deferring_its_close_reply_sends_data_first() {
        let (mut client, mut server) = deferring_pair(std::time::Duration::from_secs(5));
        let closing = tokio::spawn(async move {
            client.close(None).await.unwrap();
            client
        });
        assert_eq!(server.recv().await.unwrap().unwrap(), Message::Close(None));
        server.send(Message::text("last words")).await.unwrap();
        server.close(None).await.unwrap();
        assert!(server.recv().await.is_none());
        let client = closing.await.unwrap();
        assert_eq!(client.connection().close_state(), CloseState::Closed);
    }

    #[tokio::test]
    async fn a_client_reads_what_the_server_sent_before_its_deferred_reply() {
        let (mut client, mut server) = deferring_pair(std::time::Duration::from_secs(5));
        client.send(Message::Close(None)).await.unwrap();
        assert_eq!(server.recv().await.unwrap().unwrap(), Message::Close(None));
        server.send(Message::text("last words")).await.unwrap();
        server.close(None).await.unwrap();
        assert_eq!(
            client.recv().await.unwrap().unwrap(),
            Message::text("last words")
        );
        assert_eq!(client.recv().await.unwrap().unwrap(), Message::Close(None));
        assert!(client.recv().await.is_none());
    }

    #[tokio::test]
    async fn a_reply_sent_after_close_timeout_still_goes_out() {
        let (mut client, mut server) = deferring_pair(std::time::Duration::from_millis(50));
        client.send(Message::Close(None)).await.unwrap();
        assert_eq!(server.recv().await.unwrap().unwrap(), Message::Close(None));
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        server.send(Message::text("late")).await.unwrap();
        server.close(None).await.unwrap();
        assert_eq!(client.recv().await.unwrap().unwrap(), Message::text("late"));
        assert_eq!(client.recv().await.unwrap().unwrap(), Message::Close(None));
    }

    #[tokio::test]
    async fn an_unanswered_close_is_answered_after_close_timeout() {
        let (mut client, mut server) = deferring_pair(std::time::Duration::from_millis(100));
        client
            .send(Message::Close(Some(CloseFrame::new(4000u16, "bye"))))
            .await
            .unwrap();
        let got = server.recv().await.unwrap().unwrap();
        assert_eq!(got, Message::Close(Some(CloseFrame::new(4000u16, "bye"))));
        // The application never answers, but keeps reading.
        let ended = tokio::time::timeout(std::time::Duration::from_secs(5), server.recv()).await;
        assert!(ended.expect("ended after close_timeout").is_none());
        match client.recv().await.unwrap().unwrap() {
            Message::Close(Some(f)) => assert_eq!(f.code.as_u16(), 4000),
            other => panic!("expected the echoed Close, got {other:?}"),
        }
    }
}
