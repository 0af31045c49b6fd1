//! What every WebSocket connection shares: the summary logged and counted
//! when it ends ([`Outcome`]), closing on shutdown (1001), and the loop that
//! drives a room or pub/sub connection ([`hub_loop`]) over its
//! [`Member`] of the [`Hub`](super::hub::Hub).

use super::hub::{Member, Next};
use super::metrics::RouteMetrics;
use futures_util::{Sink, StreamExt};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tether::{CloseCode, CloseFrame, Message, WebSocket};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

/// The close code and reason for a subscriber that cannot keep up.
pub const SLOW_CONSUMER: (u16, &str) = (1008, "slow consumer: send queue full");
/// The close code and reason on graceful shutdown.
pub const SHUTTING_DOWN: (u16, &str) = (1001, "server shutting down");

/// How a connection ended, for the log line and metrics.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Data messages received.
    pub messages_in: u64,
    /// Their bytes.
    pub bytes_in: u64,
    /// Data messages sent.
    pub messages_out: u64,
    /// Their bytes.
    pub bytes_out: u64,
    /// The close code of the closing handshake (1006: none).
    pub code: u16,
    /// Its reason.
    pub reason: String,
    /// `client`, `server` or `error`.
    pub closed_by: &'static str,
    /// The error, if any.
    pub error: Option<String>,
}

impl Outcome {
    /// Record the peer's Close frame.
    pub fn peer_closed(&mut self, frame: &Option<CloseFrame>) {
        if self.closed_by.is_empty() {
            self.closed_by = "client";
            match frame {
                Some(f) => {
                    self.code = f.code.as_u16();
                    self.reason = f.reason.to_string();
                }
                None => self.code = CloseCode::NO_STATUS.as_u16(),
            }
        }
    }

    /// Record a failure (unless a close was already recorded).
    pub fn failed(&mut self, e: &tether::Error) {
        if self.closed_by.is_empty() {
            self.closed_by = "error";
            self.code = e.close_code().as_u16();
            self.error = Some(e.to_string());
        }
    }

    /// Fill in a missing close (the transport just ended).
    pub fn finish(mut self) -> Outcome {
        if self.closed_by.is_empty() {
            self.closed_by = "client";
            self.code = CloseCode::ABNORMAL.as_u16();
        }
        self
    }
}

/// Bumped (before the watch is set) whenever a server in this process
/// starts shutting down; see [`WaitShutdown`].
static SHUTDOWN_EPOCH: AtomicU64 = AtomicU64::new(0);

/// Tell every connection of this server to close with 1001.
pub fn signal_shutdown(tx: &watch::Sender<bool>) {
    SHUTDOWN_EPOCH.fetch_add(1, Ordering::Release);
    let _ = tx.send(true);
}

/// Wait until shutdown is signalled (never, if the sender is gone).
///
/// Every connection waits on the one watch channel beside its traffic, and
/// polling a registered watch future again takes the channel's lock, once
/// per wakeup of every connection (about 3% of server CPU in a 10,000-
/// subscriber broadcast profile).
/// So once registered, this future is polled through only when the shutdown
/// epoch moved or the task's waker changed; otherwise it answers `Pending`
/// from one atomic load, and the watch's registration wakes the task.
pub fn wait_shutdown(
    rx: &mut watch::Receiver<bool>,
) -> WaitShutdown<impl Future<Output = ()> + '_> {
    WaitShutdown {
        inner: async move {
            if rx.wait_for(|v| *v).await.is_err() {
                std::future::pending::<()>().await;
            }
        },
        registered: None,
    }
}

pin_project_lite::pin_project! {
    /// See [`wait_shutdown`].
    pub struct WaitShutdown<F> {
        #[pin]
        inner: F,
        // The epoch seen before the inner future last returned `Pending`,
        // and the waker it registered.
        registered: Option<(u64, Waker)>,
    }
}

impl<F: Future<Output = ()>> Future for WaitShutdown<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        // Loaded before polling through: a signal during that poll either
        // shows in the watch or moves the epoch past this value.
        let epoch = SHUTDOWN_EPOCH.load(Ordering::Acquire);
        if let Some((seen, waker)) = this.registered {
            if *seen == epoch && waker.will_wake(cx.waker()) {
                return Poll::Pending;
            }
        }
        match this.inner.poll(cx) {
            Poll::Ready(()) => Poll::Ready(()),
            Poll::Pending => {
                *this.registered = Some((epoch, cx.waker().clone()));
                Poll::Pending
            }
        }
    }
}

/// Close with `code`/`reason` (bounded by the close timeout) and record it.
/// After the peer's Close, this only completes the handshake: the reply
/// already queued stands and the peer's close is what is recorded.
pub async fn close_with<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocket<S>,
    out: &mut Outcome,
    (code, reason): (u16, &str),
) {
    if out.closed_by.is_empty() {
        out.closed_by = "server";
        out.code = code;
        out.reason = reason.to_owned();
    }
    let limit = ws.config().close_timeout * 2 + Duration::from_secs(1);
    let frame = CloseFrame::new(CloseCode::from(code), reason);
    let _ = tokio::time::timeout(limit, ws.close(Some(frame))).await;
}

enum Event {
    /// Shutdown or a slow consumer: close with this.
    Stop((u16, &'static str)),
    Out(Message),
    In(Option<tether::Result<Message>>),
}

/// How writing a batch of queued messages ended.
enum Wrote {
    /// All written and flushed: messages, bytes.
    Sent(u64, u64),
    /// Interrupted by a kick or shutdown: close with this.
    Stopped((u16, &'static str)),
    Failed(tether::Error),
}

/// Most queued messages written per flush.
const BATCH: u64 = 64;

/// Write `first` and whatever else the member has now (up to [`BATCH`]),
/// then flush once. While the socket is full the member still hears of
/// shutdown and of falling too far behind, and stops for them.
async fn write_batch<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocket<S>,
    member: &mut Member,
    mut stop: Pin<&mut impl Future<Output = ()>>,
    first: Message,
) -> Wrote {
    let mut first = Some(first);
    let (mut count, mut bytes) = (0u64, 0u64);
    let mut queued_all = false;
    std::future::poll_fn(|cx| {
        if stop.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Wrote::Stopped(SHUTTING_DOWN));
        }
        let mut ws = Pin::new(&mut *ws);
        // Take a message only once the socket can queue it: none is lost
        // if the socket is full or the connection stops.
        while !queued_all {
            match ws.as_mut().poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Wrote::Failed(e)),
                Poll::Pending => return blocked(member, cx),
            }
            let next = match first.take() {
                Some(m) => Some(Next::Message(m)),
                None if count < BATCH => member.try_next(),
                None => None,
            };
            match next {
                Some(Next::Message(m)) => {
                    count += 1;
                    bytes += m.len() as u64;
                    if let Err(e) = ws.as_mut().start_send(m) {
                        return Poll::Ready(Wrote::Failed(e));
                    }
                }
                Some(Next::SlowConsumer) => return Poll::Ready(Wrote::Stopped(SLOW_CONSUMER)),
                None => queued_all = true,
            }
        }
        match ws.poll_flush(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Wrote::Sent(count, bytes)),
            Poll::Ready(Err(e)) => Poll::Ready(Wrote::Failed(e)),
            Poll::Pending => blocked(member, cx),
        }
    })
    .await
}

/// The socket is full: wait, unless the member has fallen too far behind.
fn blocked(member: &mut Member, cx: &mut Context<'_>) -> Poll<Wrote> {
    match member.poll_lagged(cx) {
        Poll::Ready(()) => Poll::Ready(Wrote::Stopped(SLOW_CONSUMER)),
        Poll::Pending => Poll::Pending,
    }
}

/// Close a fan-out connection for shutdown or as a slow consumer (counted).
async fn stop_with<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocket<S>,
    mut out: Outcome,
    metrics: &RouteMetrics,
    why: (u16, &'static str),
) -> Outcome {
    if why == SLOW_CONSUMER {
        metrics.slow_consumers.fetch_add(1, Ordering::Relaxed);
    }
    close_with(ws, &mut out, why).await;
    out.finish()
}

/// Drive a fan-out connection: deliver the member's rooms, channels and
/// replies to the socket and hand each received data message to `on_data`
/// (which may broadcast, or queue replies with [`Member::send_self`]). Ends
/// on the peer's close, a failure, falling too far behind (slow consumer)
/// or shutdown.
pub async fn hub_loop<S, F>(
    ws: &mut WebSocket<S>,
    member: &mut Member,
    shutdown: &mut watch::Receiver<bool>,
    metrics: &RouteMetrics,
    mut on_data: F,
) -> Outcome
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnMut(&mut Member, Message),
{
    let mut out = Outcome::default();
    // One shutdown future for the whole connection (it stays registered),
    // not a new one per message.
    let stop = wait_shutdown(shutdown);
    tokio::pin!(stop);
    // When both sides are ready, take turns: after a batch written, read
    // the peer's next frame; after a frame read, write. A member fed without
    // pause still sees the peer's Close and answers its pings, and a peer
    // that sends without pause still gets what is queued for it.
    let mut read_first = false;
    loop {
        let event = std::future::poll_fn(|cx| {
            if stop.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Event::Stop(SHUTTING_DOWN));
            }
            for read in [read_first, !read_first] {
                if read {
                    if let Poll::Ready(m) = ws.poll_next_unpin(cx) {
                        return Poll::Ready(Event::In(m));
                    }
                } else if let Poll::Ready(next) = member.poll_next(cx) {
                    return Poll::Ready(match next {
                        Next::Message(m) => Event::Out(m),
                        Next::SlowConsumer => Event::Stop(SLOW_CONSUMER),
                    });
                }
            }
            Poll::Pending
        })
        .await;
        read_first = matches!(event, Event::Out(_));
        match event {
            Event::Stop(why) => return stop_with(ws, out, metrics, why).await,
            Event::Out(first) => match write_batch(ws, member, stop.as_mut(), first).await {
                Wrote::Sent(count, bytes) => {
                    out.messages_out += count;
                    out.bytes_out += bytes;
                    metrics.sent(count, bytes);
                }
                Wrote::Stopped(why) => return stop_with(ws, out, metrics, why).await,
                Wrote::Failed(e) => {
                    out.failed(&e);
                    return out.finish();
                }
            },
            Event::In(None) => return out.finish(),
            Event::In(Some(Err(e))) => {
                out.failed(&e);
                return out.finish();
            }
            Event::In(Some(Ok(Message::Close(f)))) => {
                // Nothing more goes out after the peer's Close: finish the
                // handshake (our Close follows what is already queued).
                out.peer_closed(&f);
                close_with(ws, &mut out, (1000, "")).await;
                return out.finish();
            }
            Event::In(Some(Ok(m))) if m.is_data() => {
                out.messages_in += 1;
                out.bytes_in += m.len() as u64;
                metrics.received(1, m.len() as u64);
                on_data(member, m);
            }
            Event::In(Some(Ok(_))) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::hub::Hub;
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_waiter_polled_many_times_still_wakes_on_shutdown() {
        let (tx, mut rx) = watch::channel(false);
        let (polled_tx, polled) = tokio::sync::oneshot::channel();
        let waiter = tokio::spawn(async move {
            let stop = wait_shutdown(&mut rx);
            tokio::pin!(stop);
            // A busy connection polls it on every wakeup.
            for _ in 0..5 {
                assert!(futures_util::poll!(&mut stop).is_pending());
                tokio::task::yield_now().await;
            }
            polled_tx.send(()).unwrap();
            stop.await;
        });
        polled.await.unwrap();
        signal_shutdown(&tx);
        tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("woken by the shutdown")
            .unwrap();
    }

    /// A server WebSocket on one end of an in-memory pipe, a client on the
    /// other.
    fn pipe() -> (
        WebSocket<tokio::io::DuplexStream>,
        WebSocket<tokio::io::DuplexStream>,
    ) {
        let (a, b) = tokio::io::duplex(64 << 10);
        let config = tether::WebSocketConfig::default();
        (
            WebSocket::from_raw(a, tether::proto::Role::Server, config.clone(), &[]),
            WebSocket::from_raw(b, tether::proto::Role::Client, config, &[]),
        )
    }

    #[tokio::test]
    async fn a_member_fed_without_pause_still_hears_the_peers_close() {
        const QUEUED: usize = 20_000;
        let hub = Arc::new(Hub::new(QUEUED));
        let mut member = hub.member();
        member.join("r");
        let (mut server, mut client) = pipe();
        // Far more is waiting for the member than one batch, and the peer's
        // Close is already there to read.
        for _ in 0..QUEUED {
            hub.publish("r", &Message::binary(vec![1u8; 32]));
        }
        client.send(Message::Close(None)).await.unwrap();
        // The client reads (discarding) until the server's Close and the end.
        let closer = tokio::spawn(async move { client.close(None).await });
        let (_tx, mut rx) = watch::channel(false);
        let metrics = RouteMetrics::default();
        let looped = hub_loop(&mut server, &mut member, &mut rx, &metrics, |_, _| {});
        let out = tokio::time::timeout(Duration::from_secs(20), looped)
            .await
            .expect("the loop ends");
        drop(server);
        assert_eq!((out.closed_by, out.code), ("client", 1005));
        assert!(
            out.messages_out <= BATCH,
            "{} messages written after the peer's Close was there to read",
            out.messages_out
        );
        closer
            .await
            .unwrap()
            .expect("the closing handshake completes");
    }

    #[tokio::test]
    async fn a_peer_that_sends_without_pause_still_gets_its_messages() {
        const CHATTER: u64 = 2000;
        let hub = Arc::new(Hub::new(1 << 10));
        let mut member = hub.member();
        member.join("r");
        let (mut server, mut client) = pipe();
        // Before the loop starts, the peer's frames are all there to read
        // and a message is waiting for the member.
        for _ in 0..CHATTER {
            client.send(Message::text("chatter")).await.unwrap();
        }
        hub.publish("r", &Message::text("for you"));
        let (_tx, mut rx) = watch::channel(false);
        let metrics = RouteMetrics::default();
        let mut read_before_the_first_write = None;
        let looped = hub_loop(&mut server, &mut member, &mut rx, &metrics, |_, _| {
            if metrics.total(|t| &t.messages_out) > 0 && read_before_the_first_write.is_none() {
                read_before_the_first_write = Some(metrics.total(|t| &t.messages_in));
            }
            metrics.received(1, 0);
        });
        let client_side = async {
            let m = client.next().await.expect("open").expect("no error");
            assert_eq!(m, Message::text("for you"));
            client.close(None).await.expect("closing handshake");
        };
        let (out, ()) = tokio::time::timeout(
            Duration::from_secs(20),
            futures_util::future::join(looped, client_side),
        )
        .await
        .expect("both ends finish");
        assert_eq!((out.messages_in, out.messages_out), (CHATTER, 1));
        let read = read_before_the_first_write.expect("written while frames were waiting");
        assert!(
            read < 2,
            "{read} frames read before the queued message went out"
        );
    }
}
