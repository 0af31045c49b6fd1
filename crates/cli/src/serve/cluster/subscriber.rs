//! A node's one PUB/SUB connection to Redis, driven by its own loop:
//! subscribes a channel on its first local subscriber and unsubscribes it
//! after the last (in batches), checks every message against the channel's
//! last delivered position, probes the connection, and after every
//! reconnect resubscribes and catches each channel up from history.
//!
//! Every few probes the position of each channel that received nothing
//! since the last such check is read from Redis, so a publication whose
//! message never arrived is delivered even when no later message reveals
//! the gap.
//!
//! Everything runs in one task, one message at a time, so each channel's
//! deliveries are in order and the position returned to a new subscriber is
//! exactly the last one delivered.
//!
//! Per message of a channel, against the last position delivered:
//! - next offset, same epoch: delivered;
//! - an offset already delivered: dropped (a catch-up read it first);
//! - a gap: the missing publications are read from the channel's stream
//!   and delivered first; if history no longer has them, a reset;
//! - another epoch: a reset (history was lost), then the new epoch's
//!   publications, from its start when history still has them.

use super::redis::{parse_history, Inner, BATCH, HISTORY};
use super::{EngineError, History, Position, Publication};
use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use redis::{Msg, Value};
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

/// Requests from the engine's handle.
pub(super) enum Command {
    /// One more local subscriber; answered with the last position delivered.
    Subscribe {
        channel: String,
        reply: oneshot::Sender<Position>,
    },
    /// One local subscriber fewer.
    Unsubscribe { channel: String },
}

/// A channel the node receives.
#[derive(Default)]
struct Channel {
    /// Local subscribers.
    members: usize,
    /// Last position delivered; `None` until first read from Redis.
    last: Option<Position>,
    /// Subscribers waiting for that first read.
    waiters: Vec<oneshot::Sender<Position>>,
    /// Subscribed on the current connection.
    subscribed: bool,
    /// Messages received for it, and that count at the last position
    /// check: only a channel quiet since then is checked (a busy one has
    /// messages in flight, and its next message reveals any gap).
    seen: u64,
    checked: u64,
}

/// Every this many probes, each channel's position is checked against
/// Redis: a publication whose PUB/SUB message never arrived (and that no
/// later message revealed as a gap) is then delivered, or reset.
const CHECK_EVERY: u64 = 4;

/// Why the connection is given up.
struct Lost(String);

impl From<EngineError> for Lost {
    fn from(e: EngineError) -> Lost {
        Lost(e.to_string())
    }
}

struct Subscriber {
    inner: Arc<Inner>,
    channels: HashMap<String, Channel>,
}

/// Run until the engine's handle is dropped.
pub(super) async fn run(inner: Arc<Inner>, mut commands: mpsc::UnboundedReceiver<Command>) {
    let mut s = Subscriber {
        inner,
        channels: HashMap::new(),
    };
    let mut connected_before = false;
    let mut backoff = Duration::from_millis(50);
    loop {
        let url = s.inner.config.url.clone();
        match s.connect().await {
            Ok((sink, stream)) => {
                backoff = Duration::from_millis(50);
                if connected_before {
                    s.inner.metrics.reconnects.fetch_add(1, Relaxed);
                }
                connected_before = true;
                let lost = s.serve(sink, stream, &mut commands).await;
                s.inner.pubsub_up.store(false, Relaxed);
                match lost {
                    None => return,
                    Some(Lost(why)) => warn!("redis PUB/SUB connection to {url} lost: {why}"),
                }
            }
            Err(Lost(why)) => warn!("cannot connect to redis at {url} for PUB/SUB: {why}"),
        }
        for ch in s.channels.values_mut() {
            ch.subscribed = false;
        }
        // Wait before trying again, taking requests meanwhile.
        let wait = tokio::time::sleep(backoff);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                _ = &mut wait => break,
                cmd = commands.recv() => match cmd {
                    Some(cmd) => s.take(cmd),
                    None => return,
                },
            }
        }
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

impl Subscriber {
    /// Open the PUB/SUB connection.
    async fn connect(&self) -> Result<(PubSubSink, PubSubStream), Lost> {
        let timeout = self.inner.config.io_timeout;
        match tokio::time::timeout(timeout, self.inner.client.get_async_pubsub()).await {
            Ok(Ok(pubsub)) => Ok(pubsub.split()),
            Ok(Err(e)) => Err(Lost(e.to_string())),
            Err(_) => Err(Lost(format!("no answer within {timeout:?}"))),
        }
    }

    /// Serve one connection until it is lost (`Some`) or the engine stops
    /// (`None`).
    async fn serve(
        &mut self,
        mut sink: PubSubSink,
        mut stream: PubSubStream,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) -> Option<Lost> {
        // Subscribe first, then read: whatever is published in between
        // arrives on the connection and is dropped as already delivered.
        if let Err(lost) = self.sync(&mut sink).await {
            return Some(lost);
        }
        self.inner.pubsub_up.store(true, Relaxed);
        info!(
            node = %self.inner.config.node,
            "redis PUB/SUB connected to {} ({} channels)",
            self.inner.config.url,
            self.channels.len()
        );
        let probe_every = self.inner.config.probe_interval;
        let mut probe = tokio::time::interval(probe_every);
        probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        probe.tick().await;
        let mut ticks = 0u64;
        // Messages received, and the probe in flight with that count when it
        // was sent: a connection is silent when a probe stays unanswered for
        // a whole interval while nothing else arrives either (a busy
        // connection answers late, behind its messages, and is not silent).
        let mut received = 0u64;
        let mut pending: Option<(oneshot::Receiver<Result<(), String>>, u64)> = None;
        loop {
            let step = tokio::select! {
                biased;
                cmd = commands.recv() => match cmd {
                    Some(cmd) => {
                        self.take(cmd);
                        while let Ok(cmd) = commands.try_recv() {
                            self.take(cmd);
                        }
                        self.sync(&mut sink).await
                    }
                    None => return None,
                },
                msg = stream.next() => match msg {
                    Some(msg) => {
                        received += 1;
                        self.on_message(msg).await
                    }
                    None => Err(Lost("closed by the server".into())),
                },
                answer = async {
                    match pending.as_mut() {
                        Some((rx, _)) => rx.await.unwrap_or(Err("probe dropped".into())),
                        None => std::future::pending().await,
                    }
                } => {
                    pending = None;
                    answer.map_err(|e| {
                        self.inner.metrics.probe_failures.fetch_add(1, Relaxed);
                        Lost(format!("probe failed: {e}"))
                    })
                }
                _ = probe.tick() => {
                    ticks += 1;
                    match &pending {
                        Some((_, at)) if *at == received => {
                            self.inner.metrics.probe_failures.fetch_add(1, Relaxed);
                            Err(Lost(format!(
                                "silent: a probe went unanswered for {probe_every:?}"
                            )))
                        }
                        Some(_) => Ok(()),
                        None => {
                            pending = Some((self.probe(&sink), received));
                            if ticks.is_multiple_of(CHECK_EVERY) {
                                self.check().await
                            } else {
                                Ok(())
                            }
                        }
                    }
                }
            };
            if let Err(lost) = step {
                return Some(lost);
            }
        }
    }

    /// Register a request; Redis is brought in line by [`Self::sync`].
    fn take(&mut self, cmd: Command) {
        match cmd {
            Command::Subscribe { channel, reply } => {
                let ch = self.channels.entry(channel).or_default();
                ch.members += 1;
                match &ch.last {
                    Some(last) if ch.subscribed => {
                        let _ = reply.send(last.clone());
                    }
                    _ => ch.waiters.push(reply),
                }
            }
            Command::Unsubscribe { channel } => {
                if let Some(ch) = self.channels.get_mut(&channel) {
                    ch.members = ch.members.saturating_sub(1);
                }
            }
        }
    }

    /// Bring the connection's subscriptions in line with the local
    /// subscribers: unsubscribe channels nobody wants, subscribe new ones
    /// (and all of them after a reconnect), then read where each newly
    /// subscribed channel stands: its position for a new channel, what was
    /// missed for one already delivering.
    async fn sync(&mut self, sink: &mut PubSubSink) -> Result<(), Lost> {
        let gone: Vec<String> = self
            .channels
            .iter()
            .filter(|(_, ch)| ch.members == 0)
            .map(|(name, _)| name.clone())
            .collect();
        let mut leave = Vec::new();
        for name in gone {
            if let Some(ch) = self.channels.remove(&name) {
                if ch.subscribed {
                    leave.push(self.inner.keys.pubsub(&name));
                }
            }
        }
        for batch in leave.chunks(BATCH) {
            self.bounded(sink.unsubscribe(batch)).await?;
        }
        let join: Vec<String> = self
            .channels
            .iter()
            .filter(|(_, ch)| !ch.subscribed)
            .map(|(name, _)| name.clone())
            .collect();
        for batch in join.chunks(BATCH) {
            let names: Vec<String> = batch.iter().map(|c| self.inner.keys.pubsub(c)).collect();
            self.bounded(sink.subscribe(&names)).await?;
            for name in batch {
                if let Some(ch) = self.channels.get_mut(name) {
                    ch.subscribed = true;
                }
            }
            self.catch_up(batch).await?;
        }
        Ok(())
    }

    /// A PUB/SUB connection request, bounded by `io_timeout`.
    async fn bounded<T>(
        &self,
        request: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Lost> {
        self.inner.metrics.round_trips.fetch_add(1, Relaxed);
        let timeout = self.inner.config.io_timeout;
        match tokio::time::timeout(timeout, request).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Lost(e.to_string())),
            Err(_) => Err(Lost(format!("no answer within {timeout:?}"))),
        }
    }

    /// Read the position of `channels` (and what was missed since the last
    /// one delivered) in one pipeline, and apply it.
    async fn catch_up(&mut self, channels: &[String]) -> Result<(), Lost> {
        let mut pipe = redis::pipe();
        pipe.load_script(&HISTORY).ignore();
        for name in channels {
            let since = self
                .channels
                .get(name)
                .and_then(|ch| ch.last.as_ref())
                .map(|p| p.offset);
            pipe.invoke_script(&self.inner.history_invocation(name, since, 0));
        }
        let mut conn = self.inner.conn();
        let replies: Vec<Value> = self.inner.run(pipe.query_async(&mut conn)).await?;
        for (name, reply) in channels.iter().zip(replies) {
            let history =
                parse_history(reply).map_err(|e| Lost(format!("history of {name}: {e}")))?;
            self.apply(name, history);
        }
        Ok(())
    }

    /// Apply a freshly read history of `name` to what the node delivered.
    fn apply(&mut self, name: &str, history: History) {
        let Some(ch) = self.channels.get_mut(name) else {
            return;
        };
        let Some(last) = ch.last.clone() else {
            // A new channel: subscribers start from here.
            for w in ch.waiters.drain(..) {
                let _ = w.send(history.top.clone());
            }
            ch.last = Some(history.top);
            return;
        };
        let deliver = &self.inner.deliver;
        let metrics = &self.inner.metrics;
        if last == history.top {
            // Nothing missed.
        } else if let Some(missed) = history.missed(&last) {
            metrics.recoveries.fetch_add(1, Relaxed);
            for p in missed {
                deliver.publication(name, &history.top.epoch, p.clone());
            }
        } else {
            let start = Position {
                epoch: history.top.epoch.clone(),
                offset: 0,
            };
            metrics.resets.fetch_add(1, Relaxed);
            match history.missed(&start).filter(|_| last.epoch != start.epoch) {
                // History lost, but the new epoch's is all there.
                Some(all) => {
                    deliver.reset(name, &start);
                    for p in all {
                        deliver.publication(name, &start.epoch, p.clone());
                    }
                }
                None => deliver.reset(name, &history.top),
            }
        }
        for w in ch.waiters.drain(..) {
            let _ = w.send(history.top.clone());
        }
        ch.last = Some(history.top);
    }

    /// One PUB/SUB message: deliver it after whatever it shows was missed.
    async fn on_message(&mut self, msg: Msg) -> Result<(), Lost> {
        let Some(name) = self.inner.keys.channel_of(msg.get_channel_name()) else {
            return Ok(());
        };
        let Some(ch) = self.channels.get_mut(name) else {
            return Ok(());
        };
        ch.seen += 1;
        let Some(last) = ch.last.clone() else {
            return Ok(());
        };
        let Some((offset, epoch, data)) = parse_message(msg.get_payload_bytes()) else {
            warn!("ignoring a malformed message on {}", msg.get_channel_name());
            return Ok(());
        };
        let name = name.to_owned();
        let deliver = self.inner.deliver.clone();
        let metrics = &self.inner.metrics;
        if epoch == last.epoch {
            if offset <= last.offset {
                return Ok(());
            }
            if offset > last.offset + 1 {
                let want = last.offset + 1..offset;
                match self.fill(&name, epoch, want).await? {
                    Some(missed) => {
                        metrics.recoveries.fetch_add(1, Relaxed);
                        for p in missed {
                            deliver.publication(&name, epoch, p);
                        }
                    }
                    None => {
                        metrics.resets.fetch_add(1, Relaxed);
                        deliver.reset(&name, &position(epoch, offset - 1));
                    }
                }
            }
        } else {
            metrics.resets.fetch_add(1, Relaxed);
            match self.fill(&name, epoch, 1..offset).await? {
                Some(missed) => {
                    deliver.reset(&name, &position(epoch, 0));
                    for p in missed {
                        deliver.publication(&name, epoch, p);
                    }
                }
                None => deliver.reset(&name, &position(epoch, offset - 1)),
            }
        }
        deliver.publication(&name, epoch, Publication { offset, data });
        if let Some(ch) = self.channels.get_mut(&name) {
            ch.last = Some(position(epoch, offset));
        }
        Ok(())
    }

    /// The publications `want` of `name` in `epoch`, if history has all of
    /// them.
    async fn fill(
        &self,
        name: &str,
        epoch: &str,
        want: std::ops::Range<u64>,
    ) -> Result<Option<Vec<Publication>>, Lost> {
        if want.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let count = (want.end - want.start) as usize;
        let history = self
            .inner
            .read_history(name, Some(want.start - 1), count)
            .await?;
        let p = &history.publications;
        let complete = history.top.epoch == epoch
            && p.len() == count
            && p.first().is_some_and(|f| f.offset == want.start)
            && p.last().is_some_and(|l| l.offset == want.end - 1);
        Ok(complete.then_some(history.publications))
    }

    /// Catch every subscribed channel that was quiet since the last check
    /// up with Redis (one pipelined read per [`BATCH`] channels).
    async fn check(&mut self) -> Result<(), Lost> {
        let mut names = Vec::new();
        for (name, ch) in &mut self.channels {
            if ch.subscribed && ch.last.is_some() && ch.seen == ch.checked {
                names.push(name.clone());
            }
            ch.checked = ch.seen;
        }
        for batch in names.chunks(BATCH) {
            self.catch_up(batch).await?;
        }
        Ok(())
    }

    /// Send a probe (`PING`) on the PUB/SUB connection; its answer comes on
    /// the returned channel. Also refreshes the command connection's health
    /// in the background.
    fn probe(&self, sink: &PubSubSink) -> oneshot::Receiver<Result<(), String>> {
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let mut conn = inner.conn();
            let _ = inner
                .run(redis::cmd("PING").query_async::<()>(&mut conn))
                .await;
        });
        self.inner.metrics.round_trips.fetch_add(1, Relaxed);
        let (tx, rx) = oneshot::channel();
        let mut sink = sink.clone();
        tokio::spawn(async move {
            let r = sink.ping::<Value>().await;
            let _ = tx.send(r.map(|_| ()).map_err(|e| e.to_string()));
        });
        rx
    }
}

fn position(epoch: &str, offset: u64) -> Position {
    Position {
        epoch: epoch.to_owned(),
        offset,
    }
}

/// `OFFSET:EPOCH:DATA`.
fn parse_message(payload: &[u8]) -> Option<(u64, &str, Bytes)> {
    let colon = payload.iter().position(|&b| b == b':')?;
    let offset = std::str::from_utf8(&payload[..colon]).ok()?.parse().ok()?;
    let rest = &payload[colon + 1..];
    let colon = rest.iter().position(|&b| b == b':')?;
    let epoch = std::str::from_utf8(&rest[..colon]).ok()?;
    Some((offset, epoch, Bytes::copy_from_slice(&rest[colon + 1..])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_carry_offset_epoch_and_data() {
        let (o, e, d) = parse_message(b"42:ab12:{\"x\":1}").unwrap();
        assert_eq!((o, e, &d[..]), (42, "ab12", &b"{\"x\":1}"[..]));
        let (_, _, d) = parse_message(b"1:e:a:b").unwrap();
        assert_eq!(&d[..], b"a:b");
        assert!(parse_message(b"x:e:d").is_none());
        assert!(parse_message(b"1-e").is_none());
    }
}
