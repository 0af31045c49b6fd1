//! What every WebSocket connection shares: the summary logged and counted
//! when it ends ([`Outcome`]), closing on shutdown (1001), and the fan-out
//! machinery of rooms and pub/sub ([`Hub`], [`Member`], [`hub_loop`]).
//!
//! # Fan-out and slow consumers
//!
//! A broadcast is encoded once; the resulting [`Message`] holds `Bytes`, so
//! handing it to each subscriber is a reference-count increment, not a copy.
//! Each subscriber has a bounded queue (`limits.send_queue` messages). The
//! broadcaster never waits: if a queue is full, that subscriber is removed
//! and closed with **1008 (policy violation), reason "slow consumer: send
//! queue full"**, counted in `tether_slow_consumer_closes_total`. Memory per
//! subscriber is therefore bounded by the queue plus the socket's write
//! buffer, whatever the publishers do.

use super::metrics::RouteMetrics;
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tether::{CloseCode, CloseFrame, Message, WebSocket};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch, Notify};

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

/// One subscriber's handle, held by the hub.
#[derive(Clone, Debug)]
struct Subscriber {
    tx: mpsc::Sender<Message>,
    kick: Arc<Notify>,
}

/// Groups (rooms, channels) of subscribers.
#[derive(Debug, Default)]
pub struct Hub {
    groups: Mutex<HashMap<String, HashMap<u64, Subscriber>>>,
    next_id: AtomicU64,
}

/// A connection's membership: its queue and its kick signal.
#[derive(Debug)]
pub struct Member {
    /// Unique within the hub.
    pub id: u64,
    rx: mpsc::Receiver<Message>,
    sub: Subscriber,
    groups: Vec<String>,
    hub: Arc<Hub>,
}

impl Hub {
    /// A new member with a queue of `queue` messages.
    pub fn member(self: &Arc<Self>, queue: usize) -> Member {
        let (tx, rx) = mpsc::channel(queue);
        Member {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            rx,
            sub: Subscriber {
                tx,
                kick: Arc::new(Notify::new()),
            },
            groups: Vec::new(),
            hub: self.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<u64, Subscriber>>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Deliver `msg` to every member of `group` except `except`. Returns
    /// (delivered, closed as slow consumers).
    pub fn broadcast(&self, group: &str, msg: &Message, except: Option<u64>) -> (usize, usize) {
        let mut groups = self.lock();
        let Some(members) = groups.get_mut(group) else {
            return (0, 0);
        };
        let mut delivered = 0;
        let mut slow = Vec::new();
        for (id, sub) in members.iter() {
            if Some(*id) == except {
                continue;
            }
            match sub.tx.try_send(msg.clone()) {
                Ok(()) => delivered += 1,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    sub.kick.notify_one();
                    slow.push(*id);
                }
                // The connection is ending; it removes itself.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        for id in &slow {
            members.remove(id);
        }
        if members.is_empty() {
            groups.remove(group);
        }
        (delivered, slow.len())
    }

    /// Members of `group` now.
    pub fn count(&self, group: &str) -> usize {
        self.lock().get(group).map_or(0, HashMap::len)
    }
}

impl Member {
    /// Join a group (idempotent).
    pub fn join(&mut self, group: &str) {
        self.hub
            .lock()
            .entry(group.to_owned())
            .or_default()
            .insert(self.id, self.sub.clone());
        if !self.groups.iter().any(|g| g == group) {
            self.groups.push(group.to_owned());
        }
    }

    /// Leave a group; false if not a member.
    pub fn leave(&mut self, group: &str) -> bool {
        let Some(pos) = self.groups.iter().position(|g| g == group) else {
            return false;
        };
        self.groups.swap_remove(pos);
        let mut groups = self.hub.lock();
        if let Some(m) = groups.get_mut(group) {
            m.remove(&self.id);
            if m.is_empty() {
                groups.remove(group);
            }
        }
        true
    }

    /// Queue a message to this member itself (acks, errors), under the same
    /// slow-consumer rule as broadcasts.
    pub fn send_self(&self, msg: Message) {
        if self.sub.tx.try_send(msg).is_err() {
            self.sub.kick.notify_one();
        }
    }

    /// The hub.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Take a queued message without waiting (tests).
    #[cfg(test)]
    pub fn try_recv(&mut self) -> Option<Message> {
        self.rx.try_recv().ok()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let mut groups = self.hub.lock();
        for g in &self.groups {
            if let Some(m) = groups.get_mut(g) {
                m.remove(&self.id);
                if m.is_empty() {
                    groups.remove(g);
                }
            }
        }
    }
}

enum Event {
    Shutdown,
    Kick,
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
const BATCH: usize = 64;

/// Drive a fan-out connection: deliver the member's queue to the socket and
/// hand each received data message to `on_data` (which may broadcast, or
/// queue replies with [`Member::send_self`]). Ends on the peer's close, a
/// failure, a kick (slow consumer) or shutdown.
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
    // One shutdown and one kick future for the whole connection (each
    // stays registered), not new ones per message.
    let kick = member.sub.kick.clone();
    let kicked = kick.notified();
    tokio::pin!(kicked);
    let stop = wait_shutdown(shutdown);
    tokio::pin!(stop);
    loop {
        let event = tokio::select! {
            biased;
            _ = &mut stop => Event::Shutdown,
            _ = &mut kicked => Event::Kick,
            m = member.rx.recv() => match m {
                Some(m) => Event::Out(m),
                None => Event::Kick,
            },
            m = ws.next() => Event::In(m),
        };
        match event {
            Event::Shutdown => {
                close_with(ws, &mut out, SHUTTING_DOWN).await;
                return out.finish();
            }
            Event::Kick => {
                metrics.slow_consumers.fetch_add(1, Ordering::Relaxed);
                close_with(ws, &mut out, SLOW_CONSUMER).await;
                return out.finish();
            }
            Event::Out(first) => {
                // Feed what is queued (up to BATCH messages), flush once.
                let rx = &mut member.rx;
                let write = async {
                    let (mut count, mut bytes) = (0u64, 0u64);
                    let mut next = Some(first);
                    while let Some(m) = next {
                        count += 1;
                        bytes += m.len() as u64;
                        ws.feed(m).await?;
                        next = if count < BATCH as u64 {
                            rx.try_recv().ok()
                        } else {
                            None
                        };
                    }
                    ws.flush().await.map(|()| (count, bytes))
                };
                let wrote = tokio::select! {
                    biased;
                    r = write => match r {
                        Ok((count, bytes)) => Wrote::Sent(count, bytes),
                        Err(e) => Wrote::Failed(e),
                    },
                    _ = &mut kicked => Wrote::Stopped(SLOW_CONSUMER),
                    _ = &mut stop => Wrote::Stopped(SHUTTING_DOWN),
                };
                match wrote {
                    Wrote::Sent(count, bytes) => {
                        out.messages_out += count;
                        out.bytes_out += bytes;
                        metrics.sent(count, bytes);
                    }
                    Wrote::Stopped(why) => {
                        if why == SLOW_CONSUMER {
                            metrics.slow_consumers.fetch_add(1, Ordering::Relaxed);
                        }
                        close_with(ws, &mut out, why).await;
                        return out.finish();
                    }
                    Wrote::Failed(e) => {
                        out.failed(&e);
                        return out.finish();
                    }
                }
            }
            Event::In(None) => return out.finish(),
            Event::In(Some(Err(e))) => {
                out.failed(&e);
                return out.finish();
            }
            Event::In(Some(Ok(Message::Close(f)))) => out.peer_closed(&f),
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
    use super::*;

    #[test]
    fn full_queue_kicks_only_that_subscriber() {
        let hub = Arc::new(Hub::default());
        let mut a = hub.member(1);
        let mut b = hub.member(4);
        a.join("r");
        b.join("r");
        let msg = Message::text("x");
        assert_eq!(hub.broadcast("r", &msg, None), (2, 0));
        // a's queue (1) is now full: the next broadcast removes it.
        assert_eq!(hub.broadcast("r", &msg, None), (1, 1));
        assert_eq!(hub.count("r"), 1);
        assert!(a.rx.try_recv().is_ok());
        assert_eq!(b.rx.try_recv().unwrap(), msg);
        drop(b);
        assert_eq!(hub.count("r"), 0);
    }

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

    #[test]
    fn broadcast_skips_the_sender() {
        let hub = Arc::new(Hub::default());
        let mut a = hub.member(4);
        a.join("r");
        assert_eq!(hub.broadcast("r", &Message::text("x"), Some(a.id)), (0, 0));
        assert!(a.leave("r"));
        assert!(!a.leave("r"));
    }
}
