//! Writing: draining the connection's output into the socket (one write,
//! or one vectored write), the sink calls, the send timeout, and waking a
//! task parked on a full queue.

use super::{Shutdown, WebSocket};
use crate::error::{Error, Result};
use crate::message::Message;
use crate::pool;
use bytes::Buf;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tether_proto::SendError;
use tokio::io::{AsyncRead, AsyncWrite};

/// Most slices handed to one vectored write.
const MAX_IOVECS: usize = 64;

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Before queuing output: an idle connection lent its output buffer to
    /// the thread's pool; take a warm one back rather than allocate.
    #[inline]
    pub(super) fn borrow_output_buffer(&mut self) {
        let out = self.conn.output();
        if !out.has_buffer() {
            // Cannot be refused: the queue has no buffer.
            let _ = out.give_buffer(pool::take());
        }
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
    pub(super) fn poll_write_output(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
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
    pub(super) fn wake_writer(&mut self, cx: &Context<'_>) {
        if let Some(w) = self.write_waiter.take() {
            if !w.will_wake(cx.waker()) {
                w.wake();
            }
        }
    }

    /// Write everything queued and flush the transport, for a sink call
    /// (parked as [`write_waiter`](Self::write_waiter) while it waits).
    pub(super) fn poll_write_all(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let written = self.poll_write_output(cx);
        ready!(self.park_writer(cx, written))?;
        let flushed = Pin::new(&mut self.io).poll_flush(cx);
        self.park_writer(cx, flushed).map_err(Error::Io)
    }

    /// Remember the task whose sink call is waiting on output (see
    /// [`poll_write_output`](Self::poll_write_output)); passes `poll` on.
    pub(super) fn park_writer<T>(&mut self, cx: &Context<'_>, poll: Poll<T>) -> Poll<T> {
        if poll.is_pending() {
            match &self.write_waiter {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => self.write_waiter = Some(cx.waker().clone()),
            }
        }
        poll
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
    pub(super) fn closed(&self) -> Error {
        Error::Closed(self.conn.peer_close().cloned())
    }

    /// A send the protocol core refused: after our Close it is
    /// [`Error::Closed`] like any use of a closed connection.
    #[cold]
    pub(super) fn send_refused(&self, e: SendError) -> Error {
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

    /// The transport failed: it is over, and this is the error to report.
    pub(super) fn io_failed(&mut self, cx: &Context<'_>, e: io::Error) -> Error {
        self.failed(cx, Error::Io(e))
    }

    /// The transport failed or timed out: it is over, and `e` is the error
    /// to report.
    pub(super) fn failed(&mut self, cx: &Context<'_>, e: Error) -> Error {
        self.transport_ended(cx);
        e
    }

    /// The transport is over: nothing queued can be sent any more, and a
    /// task parked in a sink call must hear of it.
    pub(super) fn transport_ended(&mut self, cx: &Context<'_>) {
        self.shutdown = Shutdown::Done;
        self.conn.discard_output();
        self.wake_writer(cx);
    }
}
