//! Closing: the connection's deadlines as one timer (keepalive and the
//! closing handshake are the protocol core's), the wait for the
//! application's Close reply, and the wind-down of the transport (RFC 6455
//! §7: flush, shut down our side, wait for the peer's end).

use super::{Shutdown, WebSocket};
use crate::error::Result;
use crate::timer::DeadlineTimer;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tether_proto::{CloseFrame, CloseState, Role};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// The connection's deadline (keepalive, the deferred Close reply, the
    /// closing handshake): the timer is armed at the instant
    /// `Connection::poll_timeout` gives, and when that has passed the
    /// connection is given the time (`handle_timeout`), which is the only
    /// clock read. An error when a deadline ended the connection: the
    /// keepalive found the peer dead, or the closing handshake's time is up
    /// (said again on every call after it, so the wind-down ends at once).
    #[inline]
    pub(super) fn poll_deadline(&mut self, cx: &Context<'_>) -> Result<()> {
        if self.deadline.quiet(self.conn.poll_timeout(), cx) {
            return Ok(());
        }
        self.poll_deadline_changed(cx)
    }

    /// [`poll_deadline`](Self::poll_deadline) when the deadline moved, the
    /// timer is to be registered, or it has expired.
    #[inline(never)]
    fn poll_deadline_changed(&mut self, cx: &Context<'_>) -> Result<()> {
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
    pub(super) fn poll_wind_down(&mut self, cx: &mut Context<'_>) -> Poll<()> {
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

    pub(super) fn finish_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<()> {
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

    /// The peer's Close is waiting for the application's reply
    /// (`defer_close_reply`): keep writing what the application queues;
    /// `Ready` once the reply is queued (by the application, or here when
    /// `close_timeout` has passed), and the wind-down begins.
    pub(super) fn poll_await_reply(&mut self, cx: &mut Context<'_>) -> Poll<()> {
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

    pub(super) fn poll_close_inner(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::WebSocketConfig;
    use crate::message::Message;
    use tether_proto::CloseState;

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
