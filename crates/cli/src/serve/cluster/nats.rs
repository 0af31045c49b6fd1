//! The NATS engine: a broker only. Publications travel between nodes over
//! core NATS subjects; nothing is stored, so there is no history, no
//! recovery with `since`, no idempotent publish and no shared presence
//! ([`refused_options`] names each route option it cannot honour).
//!
//! # Subjects
//!
//! Channel `CH` travels on `PREFIX.CH'`, where `CH'` is the channel name with
//! every byte outside `[A-Za-z0-9_-]` written `%XX`, so any channel is one
//! subject token (`chat.lobby` -> `tether.chat%2Elobby`). A message's
//! payload is the published bytes, as published.
//!
//! # Positions
//!
//! NATS assigns no sequence to a core publication and orders publications
//! only per publisher, so positions are the node's own: a channel gets a
//! random epoch when the node starts receiving it, and each publication the
//! node receives the next offset. Offsets are contiguous on each node but
//! differ between nodes (a client that moves to another node cannot resume,
//! and does not try to: the route keeps no history).
//!
//! # Failures
//!
//! While the connection is down, [`NatsEngine::healthy`] is false and
//! publishes fail at once; a publish succeeds only once a probe the node
//! sent after it has come back through the server (so the server has routed
//! it to every subscribed node), within `cluster.io_timeout`. The client
//! reconnects by itself (and the server is pinged every
//! `cluster.probe_interval`, so a silent connection is noticed); whatever
//! was published meanwhile is lost, so every channel the node receives gets
//! a reset into a new epoch when the connection drops (and when the server
//! reports this node too slow to take its messages).

use super::{new_epoch, Deliver, EngineError, EngineMetrics, Position, Publication};
use async_nats::{Client, ConnectOptions, Event};
use bytes::Bytes;
use futures_util::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// Settings of the NATS engine (`[cluster]` with `engine = "nats"`).
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// `nats://HOST:PORT` (several, comma-separated, for a NATS cluster).
    pub url: String,
    /// First token of every subject.
    pub prefix: String,
    /// This node's name (the client's name on the server, logs).
    pub node: String,
    /// Longest wait for a publish to be confirmed or a subscription made.
    pub io_timeout: Duration,
    /// How often the server is pinged.
    pub probe_interval: Duration,
}

/// Which route options the NATS engine cannot honour, each with its key and
/// why (empty: the route works on NATS).
pub fn refused_options(history_size: usize, presence: bool) -> Vec<String> {
    let mut refused = Vec::new();
    if history_size > 0 {
        refused.push(
            "`history_size` (and `history_ttl`): `cluster.engine = \"nats\"` is a broker and keeps no history, \
             so nothing could be replayed to a `since` resume or a `history` request; set it to 0 \
             or use `engine = \"redis\"`"
                .to_owned(),
        );
    }
    if presence {
        refused.push(
            "`presence`: `cluster.engine = \"nats\"` keeps no shared state, so no node knows who is \
             subscribed on the others; remove it or use `engine = \"redis\"`"
                .to_owned(),
        );
    }
    refused
}

/// `CH` as one subject token: bytes outside `[A-Za-z0-9_-]` as `%XX`.
pub fn token(channel: &str) -> String {
    let mut out = String::with_capacity(channel.len());
    for b in channel.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A channel the node receives: its local subscribers, its forwarding
/// task, and the last position delivered.
struct Channel {
    members: usize,
    state: Arc<Mutex<Position>>,
    task: JoinHandle<()>,
}

/// Requests to the task that makes and drops subscriptions, one at a time.
enum Command {
    Subscribe {
        channel: String,
        reply: oneshot::Sender<Result<Position, EngineError>>,
    },
    Unsubscribe {
        channel: String,
    },
}

struct Inner {
    config: NatsConfig,
    /// Set once the client exists (it connects, and reconnects, by itself).
    client: OnceLock<Client>,
    metrics: Arc<EngineMetrics>,
    deliver: Arc<dyn Deliver>,
    probes: Probes,
    /// Bumped whenever publications may have been lost (the connection
    /// dropped, the server called this node a slow consumer): every channel
    /// then resets into a new epoch.
    losses: watch::Sender<u64>,
}

impl Inner {
    fn subject(&self, channel: &str) -> String {
        format!("{}.{}", self.config.prefix, token(channel))
    }

    fn unreachable(&self) -> EngineError {
        EngineError::Failed(format!("nats at {} is unreachable", self.config.url))
    }

    fn connected(&self) -> bool {
        self.client
            .get()
            .is_some_and(|c| c.connection_state() == async_nats::connection::State::Connected)
    }

    /// The client, while connected; an error naming the server otherwise.
    fn client(&self) -> Result<&Client, EngineError> {
        match self.client.get() {
            Some(c) if self.connected() => Ok(c),
            _ => {
                self.metrics.errors.fetch_add(1, Relaxed);
                Err(self.unreachable())
            }
        }
    }

    /// Wait until the server has processed everything this node sent so
    /// far, within `io_timeout`: a probe published now comes back once the
    /// server has handled every earlier request of the connection (a
    /// subscription is in place, a publication routed to every subscriber).
    async fn round_trip(&self) -> Result<(), EngineError> {
        self.metrics.round_trips.fetch_add(1, Relaxed);
        let client = self.client()?;
        let (seq, answer) = self.probes.expect();
        let sent = client
            .publish(self.probes.subject.clone(), Bytes::from(seq.to_string()))
            .await;
        let result = match sent {
            Err(e) => Err(EngineError::Failed(format!(
                "nats at {}: {e}",
                self.config.url
            ))),
            Ok(()) => match tokio::time::timeout(self.config.io_timeout, answer).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(EngineError::Failed("the engine has stopped".into())),
                Err(_) => Err(EngineError::Timeout(self.config.io_timeout)),
            },
        };
        if result.is_err() {
            self.probes.forget(seq);
            self.metrics.errors.fetch_add(1, Relaxed);
        }
        result
    }
}

/// Probes of the connection: numbered messages on this node's own subject,
/// each answering the waiters up to its number (a connection's messages
/// come back in order).
struct Probes {
    subject: String,
    next: AtomicU64,
    waiting: Mutex<BTreeMap<u64, oneshot::Sender<()>>>,
}

impl Probes {
    fn expect(&self) -> (u64, oneshot::Receiver<()>) {
        let seq = self.next.fetch_add(1, Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.waiting).insert(seq, tx);
        (seq, rx)
    }

    fn forget(&self, seq: u64) {
        lock(&self.waiting).remove(&seq);
    }

    /// Probe `seq` came back: it and every earlier one are answered.
    fn returned(&self, seq: u64) {
        let mut waiting = lock(&self.waiting);
        let later = waiting.split_off(&(seq + 1));
        for (_, w) in std::mem::replace(&mut *waiting, later) {
            let _ = w.send(());
        }
    }
}

/// Answer probes as they come back, until the subscription ends.
async fn answer_probes(inner: Weak<Inner>, mut subscription: async_nats::Subscriber) {
    while let Some(msg) = subscription.next().await {
        let Some(inner) = inner.upgrade() else { return };
        if let Some(seq) = std::str::from_utf8(&msg.payload)
            .ok()
            .and_then(|s| s.parse().ok())
        {
            inner.probes.returned(seq);
        }
    }
}

/// The NATS engine of a node. Cheap to clone; its tasks stop when the last
/// clone is dropped.
#[derive(Clone)]
pub struct NatsEngine {
    inner: Arc<Inner>,
    commands: mpsc::UnboundedSender<Command>,
}

impl NatsEngine {
    /// Start the engine. The connection is made (and remade) in the
    /// background, so a node starts while NATS is down and reports itself
    /// unhealthy. Must be called within a tokio runtime.
    pub fn start(config: NatsConfig, deliver: Arc<dyn Deliver>) -> Result<NatsEngine, String> {
        if config.prefix.is_empty()
            || config
                .prefix
                .split('.')
                .any(|t| t.is_empty() || t.contains(['*', '>']) || t.contains(char::is_whitespace))
        {
            return Err(format!(
                "`cluster.prefix` {:?}: a NATS subject prefix is dot-separated tokens without spaces, `*` or `>`",
                config.prefix
            ));
        }
        let addrs = config
            .url
            .split(',')
            .map(|a| a.trim().parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("`cluster.nats_url` {:?}: {e}", config.url))?;
        let (losses, _) = watch::channel(0u64);
        let metrics = Arc::new(EngineMetrics::default());
        let events = Arc::new(Events {
            losses: losses.clone(),
            metrics: metrics.clone(),
            connected_once: AtomicBool::new(false),
            url: config.url.clone(),
        });
        let options = ConnectOptions::new()
            .name(format!("tether {}", config.node))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(config.io_timeout)
            .ping_interval(config.probe_interval)
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis(50u64 << attempts.min(5)).min(Duration::from_secs(1))
            })
            .event_callback(move |event| {
                let events = events.clone();
                async move { events.on(event) }
            });
        let probes = Probes {
            subject: format!("{}._probe.{}", config.prefix, new_epoch()),
            next: AtomicU64::new(0),
            waiting: Mutex::default(),
        };
        let inner = Arc::new(Inner {
            config,
            client: OnceLock::new(),
            metrics,
            deliver,
            probes,
            losses,
        });
        tokio::spawn(connect(Arc::downgrade(&inner), options, addrs));
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(subscriptions(inner.clone(), rx));
        Ok(NatsEngine {
            inner,
            commands: tx,
        })
    }

    /// True while the connection to NATS is up.
    pub fn healthy(&self) -> bool {
        self.inner.connected()
    }

    /// The engine's counters.
    pub fn metrics(&self) -> &EngineMetrics {
        &self.inner.metrics
    }

    /// Publish `data` on `channel` to every node that receives it. Fails at
    /// once while NATS is unreachable, and unless the server confirms it
    /// within `io_timeout`. Positions are assigned by each receiving node.
    pub async fn publish(&self, channel: &str, data: Bytes) -> Result<(), EngineError> {
        let inner = &self.inner;
        if !inner.connected() {
            inner.metrics.errors.fetch_add(1, Relaxed);
            return Err(inner.unreachable());
        }
        inner.metrics.round_trips.fetch_add(1, Relaxed);
        if let Err(e) = inner.client()?.publish(inner.subject(channel), data).await {
            inner.metrics.errors.fetch_add(1, Relaxed);
            return Err(EngineError::Failed(format!(
                "nats at {}: {e}",
                inner.config.url
            )));
        }
        inner.round_trip().await
    }

    /// The node starts receiving `channel` (counted: one call per local
    /// subscriber). Returns the position of the last publication delivered
    /// for it; what follows is handed to [`Deliver`]. Fails at once while
    /// NATS is unreachable; on error nothing is registered.
    pub async fn subscribe(&self, channel: &str) -> Result<Position, EngineError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || EngineError::Failed("the engine has stopped".into());
        self.commands
            .send(Command::Subscribe {
                channel: channel.to_owned(),
                reply,
            })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// One local subscriber of `channel` left; after the last, the node
    /// stops receiving it.
    pub fn unsubscribe(&self, channel: &str) {
        let _ = self.commands.send(Command::Unsubscribe {
            channel: channel.to_owned(),
        });
    }
}

/// Make the client (it connects in the background and reconnects by
/// itself) and its probe subscription.
async fn connect(inner: Weak<Inner>, options: ConnectOptions, addrs: Vec<async_nats::ServerAddr>) {
    let url = match inner.upgrade() {
        Some(i) => i.config.url.clone(),
        None => return,
    };
    let client = match options.connect(addrs).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("nats at {url}: {e}");
            return;
        }
    };
    let Some(strong) = inner.upgrade() else {
        return;
    };
    let probes = match client.subscribe(strong.probes.subject.clone()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("nats at {url}: {e}");
            return;
        }
    };
    let _ = strong.client.set(client);
    drop(strong);
    answer_probes(inner, probes).await;
}

/// What the connection's events change: losses (resets), reconnects.
struct Events {
    losses: watch::Sender<u64>,
    metrics: Arc<EngineMetrics>,
    connected_once: AtomicBool,
    url: String,
}

impl Events {
    fn on(&self, event: Event) {
        match event {
            Event::Connected => {
                if self.connected_once.swap(true, Relaxed) {
                    self.metrics.reconnects.fetch_add(1, Relaxed);
                }
                info!("nats connected to {}", self.url);
            }
            Event::Disconnected => {
                warn!("nats connection to {} lost", self.url);
                self.losses.send_modify(|n| *n += 1);
            }
            Event::SlowConsumer(_) => {
                warn!(
                    "nats at {} dropped messages for this node (slow consumer)",
                    self.url
                );
                self.losses.send_modify(|n| *n += 1);
            }
            other => info!("nats at {}: {other}", self.url),
        }
    }
}

/// Make and drop subscriptions, one request at a time, until the engine's
/// handle is dropped.
async fn subscriptions(inner: Arc<Inner>, mut commands: mpsc::UnboundedReceiver<Command>) {
    let mut channels: HashMap<String, Channel> = HashMap::new();
    while let Some(cmd) = commands.recv().await {
        match cmd {
            Command::Subscribe { channel, reply } => {
                if let Some(ch) = channels.get_mut(&channel) {
                    ch.members += 1;
                    let _ = reply.send(Ok(lock(&ch.state).clone()));
                    continue;
                }
                match open(&inner, &channel).await {
                    Ok(ch) => {
                        let position = lock(&ch.state).clone();
                        channels.insert(channel, ch);
                        let _ = reply.send(Ok(position));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Command::Unsubscribe { channel } => {
                if let Some(ch) = channels.get_mut(&channel) {
                    ch.members -= 1;
                    if ch.members == 0 {
                        // Dropping the subscription unsubscribes it.
                        ch.task.abort();
                        channels.remove(&channel);
                    }
                }
            }
        }
    }
    for ch in channels.into_values() {
        ch.task.abort();
    }
}

/// Subscribe `channel`'s subject, confirmed by the server, and start
/// forwarding what arrives.
async fn open(inner: &Arc<Inner>, channel: &str) -> Result<Channel, EngineError> {
    if !inner.connected() {
        inner.metrics.errors.fetch_add(1, Relaxed);
        return Err(inner.unreachable());
    }
    inner.metrics.round_trips.fetch_add(1, Relaxed);
    let subscription = inner
        .client()?
        .subscribe(inner.subject(channel))
        .await
        .map_err(|e| {
            inner.metrics.errors.fetch_add(1, Relaxed);
            EngineError::Failed(format!("nats at {}: {e}", inner.config.url))
        })?;
    // Once a probe sent after the SUB came back, every later publication
    // reaches this node.
    inner.round_trip().await?;
    let state = Arc::new(Mutex::new(Position {
        epoch: new_epoch(),
        offset: 0,
    }));
    let task = tokio::spawn(forward(
        inner.clone(),
        channel.to_owned(),
        subscription,
        state.clone(),
    ));
    Ok(Channel {
        members: 1,
        state,
        task,
    })
}

/// Number what arrives for `channel` and hand it over; after a loss, reset
/// the channel into a new epoch first.
async fn forward(
    inner: Arc<Inner>,
    channel: String,
    mut subscription: async_nats::Subscriber,
    state: Arc<Mutex<Position>>,
) {
    let mut losses = inner.losses.subscribe();
    losses.mark_unchanged();
    loop {
        tokio::select! {
            biased;
            changed = losses.changed() => {
                if changed.is_err() {
                    return;
                }
                losses.mark_unchanged();
                let mut at = lock(&state);
                *at = Position { epoch: new_epoch(), offset: 0 };
                inner.metrics.resets.fetch_add(1, Relaxed);
                inner.deliver.reset(&channel, &at);
            }
            msg = subscription.next() => {
                let Some(msg) = msg else { return };
                let mut at = lock(&state);
                at.offset += 1;
                let publication = Publication { offset: at.offset, data: msg.payload };
                inner.deliver.publication(&channel, &at.epoch, publication);
            }
        }
    }
}

mod route;
#[cfg(test)]
mod tests;

pub use route::NatsRoute;
