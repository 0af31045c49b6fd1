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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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

/// Wait until shutdown is signalled (never, if the sender is gone).
pub async fn wait_shutdown(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|v| *v).await.is_err() {
        std::future::pending::<()>().await;
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
    let kick = member.sub.kick.clone();
    loop {
        let event = tokio::select! {
            biased;
            _ = wait_shutdown(shutdown) => Event::Shutdown,
            _ = kick.notified() => Event::Kick,
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
                let mut batch = vec![first];
                while batch.len() < BATCH {
                    match member.rx.try_recv() {
                        Ok(m) => batch.push(m),
                        Err(_) => break,
                    }
                }
                let count = batch.len() as u64;
                let bytes: u64 = batch.iter().map(|m| m.len() as u64).sum();
                let write = async {
                    for m in batch {
                        ws.feed(m).await?;
                    }
                    ws.flush().await
                };
                let stop = tokio::select! {
                    biased;
                    r = write => match r {
                        Ok(()) => None,
                        Err(e) => Some(Err(e)),
                    },
                    _ = kick.notified() => Some(Ok(SLOW_CONSUMER)),
                    _ = wait_shutdown(shutdown) => Some(Ok(SHUTTING_DOWN)),
                };
                match stop {
                    None => {
                        out.messages_out += count;
                        out.bytes_out += bytes;
                        metrics.sent(count, bytes);
                    }
                    Some(Ok(why)) => {
                        if why == SLOW_CONSUMER {
                            metrics.slow_consumers.fetch_add(1, Ordering::Relaxed);
                        }
                        close_with(ws, &mut out, why).await;
                        return out.finish();
                    }
                    Some(Err(e)) => {
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
