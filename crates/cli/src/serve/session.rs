//! One WebSocket connection from admission to its close log line
//! ([`Session`], [`run_session`]), and the loop that drives a room or
//! pub/sub connection ([`hub_loop`]) over its [`Member`] of the
//! [`Hub`](super::hub::Hub).

use super::close::{close_with, CloseReason, Summary};
use super::config::{Route, RouteKind};
use super::hub::{Member, Next};
use super::logsafe::esc;
use super::metrics::RouteMetrics;
use super::policy::{ConnSlot, Grants};
use super::shutdown::wait_shutdown;
use super::state::{ActiveGuard, State};
use super::transport::Conn;
use super::{echo, exec, pubsub, room};
use futures_util::{Sink, StreamExt};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Instant;
use tether::{Message, WebSocket};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tracing::info;

/// An accepted WebSocket and what its route's session needs.
pub struct Session<'a> {
    /// The connection.
    pub ws: tether::WebSocket<Conn>,
    /// Its route.
    pub route: &'a Route,
    /// The path's capture (a room route's room).
    pub capture: Option<String>,
    /// What the client may do.
    pub grants: Grants,
    /// For an exec route: the request the program is told about, and its
    /// process slot (boxed: other routes pay one pointer).
    pub exec: Option<Box<exec::Admitted<'a>>>,
    /// Held for its `Drop`: frees the connection-limit slot.
    pub _slot: ConnSlot,
    /// The client's address.
    pub peer: SocketAddr,
    /// The request path (for the log).
    pub path: String,
}

/// Run an accepted WebSocket's route until it closes; count and log it
/// (nothing to do for `None`).
// Not `async fn`: its arguments would be stored twice (idle memory).
#[allow(clippy::manual_async_fn)]
pub fn run_session<'a>(
    state: &'a State,
    mut opened: Option<Session<'a>>,
) -> impl Future<Output = ()> + Send + 'a {
    // An `async move` block: see `accept::handle_connection`.
    async move {
        let Some(session) = opened.as_mut() else {
            return;
        };
        // Fields are used in place: moving them out (the WebSocket above all)
        // would store them twice in this future, once as the argument and once
        // as locals.
        let Session {
            ws,
            route,
            capture,
            grants,
            exec,
            _slot: _,
            peer,
            path,
        } = session;
        let (route, peer) = (*route, *peer);
        let _active = ActiveGuard::enter(&state.active);
        let metrics = &*state.route_metrics[route.id];
        metrics.connections.fetch_add(1, Ordering::Relaxed);
        metrics.open.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        info!(%peer, path = %esc(path), kind = route.kind.name(), user = %esc(grants.subject.as_deref().unwrap_or("")), "open");
        let mut shutdown = state.shutdown.clone();
        // Each route's session is boxed: the task then holds only the running
        // route's state, not the largest of all of them.
        let outcome = match &route.kind {
            RouteKind::Echo => Box::pin(echo::run(ws, &mut shutdown, metrics)).await,
            RouteKind::Room => {
                let hub = state.hubs[route.id].as_ref().expect("room hub");
                let room = capture.take().unwrap_or_else(|| route.path.clone());
                Box::pin(room::run(ws, hub, &room, &mut shutdown, metrics)).await
            }
            RouteKind::Pubsub { .. } => {
                let hub = state.hubs[route.id].as_ref().expect("pubsub hub");
                let engine = state.engines[route.id].as_ref().expect("pubsub engine");
                let rights = pubsub::Rights {
                    grants,
                    max_subscriptions: state.config.limits.max_subscriptions,
                    max_reply: state.config.limits.max_message_size,
                    engine,
                };
                Box::pin(pubsub::run(ws, hub, &rights, &mut shutdown, metrics)).await
            }
            RouteKind::Exec(route) => {
                let admitted = exec
                    .as_ref()
                    .expect("exec routes are admitted with a request");
                let spec = exec::ExecSpec {
                    route,
                    request: &admitted.request,
                    max_message_size: state.config.limits.max_message_size,
                };
                Box::pin(exec::run(ws, spec, &mut shutdown, metrics)).await
            }
            RouteKind::Demo | RouteKind::Static { .. } => unreachable!("filtered above"),
        };
        metrics.open.fetch_sub(1, Ordering::Relaxed);
        let closed = outcome.close();
        state.metrics.closed(closed.code);
        let path = std::mem::take(path);
        // Frees the connection slot (and the socket) before logging.
        drop(opened.take());
        info!(
            %peer,
            path = %esc(&path),
            duration_ms = started.elapsed().as_millis() as u64,
            messages_in = outcome.messages_in,
            bytes_in = outcome.bytes_in,
            messages_out = outcome.messages_out,
            bytes_out = outcome.bytes_out,
            code = closed.code,
            reason = %esc(&closed.reason),
            closed_by = closed.by.as_str(),
            error = %esc(closed.error.as_deref().unwrap_or("")),
            "close"
        );
    }
}

/// What completed work does to the member (queue its reply, join).
pub type Apply = Box<dyn FnOnce(&mut Member) + Send>;

/// Work a message handler started that needs a round trip (a shared
/// engine's publish or subscribe): applied to the member when it
/// completes. The in-memory engine never makes one.
pub type Pending = std::pin::Pin<Box<dyn Future<Output = Apply> + Send>>;

/// What a message handler made of one message.
pub enum Work {
    /// Handled; its replies, if any, are queued.
    Done,
    /// Answered when this completes. Further messages are handled
    /// meanwhile (see [`IN_FLIGHT`]); answers are applied in the order the
    /// messages came.
    Concurrent(Pending),
    /// Answered when this completes; no further message is handled before.
    Exclusive(Pending),
    /// Needs the connection's earlier work completed: handed back to the
    /// handler (no longer busy) when it has.
    Deferred(Message),
}

/// Most [`Work::Concurrent`] answers a connection waits for at once, and
/// most bytes of the messages behind them (one message may exceed it).
/// A publisher is not held to one engine round trip per message, and a
/// connection's memory stays bounded.
pub const IN_FLIGHT: usize = 32;
pub const IN_FLIGHT_BYTES: usize = 64 << 10;

/// Work a connection is waiting for, answered in order.
#[derive(Default)]
struct InFlight {
    work: futures_util::stream::FuturesOrdered<Pending>,
    /// Bytes of the message behind each entry of `work`, oldest first.
    sizes: std::collections::VecDeque<usize>,
    bytes: usize,
    /// An exclusive entry is waiting (nothing more is read meanwhile).
    exclusive: bool,
    /// A message handed back until `work` is empty.
    deferred: Option<Message>,
}

impl InFlight {
    fn busy(&self) -> bool {
        !self.work.is_empty()
    }

    /// Another message may be read and handled now.
    fn may_read(&self) -> bool {
        self.deferred.is_none()
            && !self.exclusive
            && self.work.len() < IN_FLIGHT
            && (self.work.is_empty() || self.bytes < IN_FLIGHT_BYTES)
    }

    fn push(&mut self, work: Pending, bytes: usize, exclusive: bool) {
        self.work.push_back(work);
        self.sizes.push_back(bytes);
        self.bytes += bytes;
        self.exclusive |= exclusive;
    }

    fn poll_done(&mut self, cx: &mut Context<'_>) -> Poll<Apply> {
        if self.work.is_empty() {
            return Poll::Pending;
        }
        match self.work.poll_next_unpin(cx) {
            Poll::Ready(Some(apply)) => {
                self.bytes -= self.sizes.pop_front().unwrap_or(0);
                if self.work.is_empty() {
                    self.exclusive = false;
                }
                Poll::Ready(apply)
            }
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
    }
}

enum Event {
    /// Shutdown or a slow consumer: close with this.
    Stop(CloseReason),
    Out(Message),
    In(Option<tether::Result<Message>>),
    /// The pending work completed.
    Done(Apply),
}

/// How writing a batch of queued messages ended.
enum Wrote {
    /// All written and flushed: messages, bytes.
    Sent(u64, u64),
    /// Interrupted by a kick or shutdown: close with this.
    Stopped(CloseReason),
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
            return Poll::Ready(Wrote::Stopped(CloseReason::Shutdown));
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
                Some(Next::SlowConsumer) => {
                    return Poll::Ready(Wrote::Stopped(CloseReason::SlowConsumer))
                }
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
        Poll::Ready(()) => Poll::Ready(Wrote::Stopped(CloseReason::SlowConsumer)),
        Poll::Pending => Poll::Pending,
    }
}

/// Close a fan-out connection for shutdown or as a slow consumer (counted).
async fn stop_with<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocket<S>,
    mut out: Summary,
    metrics: &RouteMetrics,
    why: CloseReason,
) -> Summary {
    if why == CloseReason::SlowConsumer {
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
///
/// `on_data` answers what it made of the message ([`Work`]); its `busy`
/// argument says whether earlier work is still pending, in which case a
/// reply must not be queued directly (it would overtake earlier answers)
/// but answered as [`Work::Concurrent`] or deferred. A client's requests
/// are answered in the order they came; while work is pending what is
/// queued for the member is still written.
pub async fn hub_loop<S, F>(
    ws: &mut WebSocket<S>,
    member: &mut Member,
    shutdown: &mut watch::Receiver<bool>,
    metrics: &RouteMetrics,
    mut on_data: F,
) -> Summary
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnMut(&mut Member, Message, bool) -> Work,
{
    let mut pending = InFlight::default();
    let mut out = Summary::default();
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
                return Poll::Ready(Event::Stop(CloseReason::Shutdown));
            }
            if let Poll::Ready(apply) = pending.poll_done(cx) {
                return Poll::Ready(Event::Done(apply));
            }
            for read in [read_first, !read_first] {
                if read {
                    if !pending.may_read() {
                        continue;
                    }
                    if let Poll::Ready(m) = ws.poll_next_unpin(cx) {
                        return Poll::Ready(Event::In(m));
                    }
                } else if let Poll::Ready(next) = member.poll_next(cx) {
                    return Poll::Ready(match next {
                        Next::Message(m) => Event::Out(m),
                        Next::SlowConsumer => Event::Stop(CloseReason::SlowConsumer),
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
                close_with(ws, &mut out, CloseReason::Reply).await;
                return out.finish();
            }
            Event::In(Some(Ok(m))) if m.is_data() => {
                out.messages_in += 1;
                out.bytes_in += m.len() as u64;
                metrics.received(1, m.len() as u64);
                take(&mut pending, m, member, &mut on_data);
            }
            Event::Done(apply) => {
                apply(member);
                if !pending.busy() {
                    if let Some(m) = pending.deferred.take() {
                        take(&mut pending, m, member, &mut on_data);
                    }
                }
            }
            Event::In(Some(Ok(_))) => {}
        }
    }
}

/// Hand `m` to the handler and keep what it started.
fn take<F>(pending: &mut InFlight, m: Message, member: &mut Member, on_data: &mut F)
where
    F: FnMut(&mut Member, Message, bool) -> Work,
{
    let busy = pending.busy();
    let bytes = m.len();
    match on_data(member, m, busy) {
        Work::Done => {}
        Work::Concurrent(work) => pending.push(work, bytes, false),
        Work::Exclusive(work) => pending.push(work, bytes, true),
        Work::Deferred(m) if busy => pending.deferred = Some(m),
        // With nothing pending there is nothing to wait for.
        Work::Deferred(m) => {
            debug_assert!(false, "a message deferred while nothing is pending");
            tracing::error!(
                bytes = m.len(),
                "a handler deferred a message with nothing pending; dropped"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::close::ClosedBy;
    use super::super::hub::Hub;
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

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
        let looped = hub_loop(&mut server, &mut member, &mut rx, &metrics, |_, _, _| {
            Work::Done
        });
        let out = tokio::time::timeout(Duration::from_secs(20), looped)
            .await
            .expect("the loop ends");
        drop(server);
        let closed = out.close();
        assert_eq!((closed.by, closed.code), (ClosedBy::Client, 1005));
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
        let looped = hub_loop(&mut server, &mut member, &mut rx, &metrics, |_, _, _| {
            if metrics.total(|t| &t.messages_out) > 0 && read_before_the_first_write.is_none() {
                read_before_the_first_write = Some(metrics.total(|t| &t.messages_in));
            }
            metrics.received(1, 0);
            Work::Done
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
