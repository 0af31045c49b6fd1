//! The Redis engine: channel offsets, history and presence kept in Redis,
//! publications carried to the nodes over Redis PUB/SUB.
//!
//! # Keys
//!
//! Every key of a channel carries the channel name as a Redis Cluster hash
//! tag (`{...}`), so one channel's keys live in one slot and its scripts
//! stay valid on a cluster:
//!
//! - `PREFIX:{CHANNEL}:m`: HASH, `e` = epoch, `s` = last offset, `k` =
//!   offsets kept (`history_size`); its TTL (`cluster.history_meta_ttl`) is
//!   renewed by every publish and read.
//! - `PREFIX:{CHANNEL}:s`: STREAM of the publications kept, entry id =
//!   offset, field `d` = data; TTL `history_ttl`. Trimmed with `MAXLEN ~`
//!   (whole stream nodes, so it may hold up to `stream-node-max-entries`
//!   more); reads never return an offset older than the last `k`.
//! - `PREFIX:{CHANNEL}:i:KEY`: the position of an idempotent publish.
//! - `PREFIX:{CHANNEL}:pz` / `:ph`: presence, ZSET client -> expiry and HASH
//!   client -> info, refreshed by the node that holds the client.
//! - PUB/SUB channel `PREFIX:{CHANNEL}:p`, message `OFFSET:EPOCH:DATA`.
//!
//! # Order and loss
//!
//! Publishes are one Lua script (`lua/publish.lua`), called with a batch
//! of one channel's publishes (those that arrived while the channel's last
//! call was in flight) or with one idempotent publish. The offsets come
//! from `HINCRBY` on the meta hash, the stream entries and the PUB/SUB
//! messages are written in the same script, so every node receives one
//! channel's publications in offset order. Each node checks what arrives
//! against the last offset it delivered (see `subscriber.rs`): a gap is filled from the
//! stream, an older offset dropped, a new epoch or a gap history no longer
//! covers becomes a reset.
//!
//! # Failures
//!
//! Every request is bounded by `cluster.io_timeout`: while Redis is
//! unreachable, publishes fail with an error within it. [`RedisEngine::healthy`]
//! is false while the PUB/SUB connection is down or the last request failed
//! on the connection. The PUB/SUB connection is probed with `PING` every
//! `cluster.probe_interval` (a connection that stalls without closing is
//! noticed within two intervals), re-established in a loop, and every
//! subscribed channel is then caught up from history.

use super::subscriber::{self, Command};
use super::{
    new_epoch, Deliver, EngineError, EngineMetrics, History, Position, Publication, PublishOptions,
    Published,
};
use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use redis::aio::ConnectionManager;
use redis::{RedisResult, Script, Value};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

static PUBLISH: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/publish.lua")));
pub(super) static HISTORY: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/history.lua")));
static PRESENCE_ADD: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/presence_add.lua")));
static PRESENCE_GET: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/presence_get.lua")));

/// How long a completed history read keeps answering recoveries of its
/// channel.
pub const READ_REUSE: Duration = Duration::from_millis(250);

/// Channels per `SUBSCRIBE` / `UNSUBSCRIBE` and per pipelined read.
pub(super) const BATCH: usize = 512;

/// Most publications of one channel in one publish script call, and most
/// bytes of their data (a script holds Redis while it runs).
const PUBLISH_BATCH_LEN: usize = 64;
const PUBLISH_BATCH_BYTES: usize = 256 << 10;

/// Settings of the Redis engine (`[cluster]` with `engine = "redis"`).
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://HOST:PORT/DB`.
    pub url: String,
    /// First part of every key and PUB/SUB channel.
    pub prefix: String,
    /// This node's name (presence, logs).
    pub node: String,
    /// Longest wait for any request to Redis.
    pub io_timeout: Duration,
    /// How often the PUB/SUB connection is probed.
    pub probe_interval: Duration,
    /// How long a channel's epoch and offset outlive its last use.
    pub meta_ttl: Duration,
    /// How long a presence entry lives unless its node refreshes it.
    pub presence_ttl: Duration,
}

/// Key names of the channels.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    pub(super) fn stream(&self, ch: &str) -> String {
        format!("{}:{{{ch}}}:s", self.prefix)
    }

    pub(super) fn meta(&self, ch: &str) -> String {
        format!("{}:{{{ch}}}:m", self.prefix)
    }

    pub(super) fn pubsub(&self, ch: &str) -> String {
        format!("{}:{{{ch}}}:p", self.prefix)
    }

    fn idempotency(&self, ch: &str, key: &str) -> String {
        format!("{}:{{{ch}}}:i:{key}", self.prefix)
    }

    fn presence(&self, ch: &str) -> (String, String) {
        (
            format!("{}:{{{ch}}}:pz", self.prefix),
            format!("{}:{{{ch}}}:ph", self.prefix),
        )
    }

    /// The channel a PUB/SUB channel name carries.
    pub(super) fn channel_of<'a>(&self, pubsub: &'a str) -> Option<&'a str> {
        pubsub
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(":{")?
            .strip_suffix("}:p")
    }
}

/// Whole seconds for a TTL argument, rounded up (0 stays 0: no TTL).
pub(super) fn secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

type SharedRead = Shared<BoxFuture<'static, Result<Arc<History>, EngineError>>>;

/// What the engine's handle and its tasks share.
pub(super) struct Inner {
    pub(super) config: RedisConfig,
    pub(super) keys: Keys,
    pub(super) client: redis::Client,
    conn: ConnectionManager,
    pub(super) metrics: EngineMetrics,
    /// The PUB/SUB connection is up and its channels are caught up.
    pub(super) pubsub_up: AtomicBool,
    /// The last request on the command connection reached Redis.
    commands_ok: AtomicBool,
    pub(super) deliver: Arc<dyn Deliver>,
    /// History reads in flight, one per channel, shared by every caller.
    reads: Mutex<HashMap<String, SharedRead>>,
    /// Presence entries this node holds: (channel, client) -> info.
    presence: Mutex<HashMap<(String, String), String>>,
    /// Publishes waiting for their channel's script call in flight, by
    /// stream key; an entry exists while its channel's drain task runs.
    publishing: Mutex<HashMap<String, Vec<Waiting>>>,
}

/// A publish waiting to be sent in its channel's next batch.
struct Waiting {
    data: Vec<u8>,
    reply: oneshot::Sender<Result<Published, EngineError>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    /// Run one request on the command connection, bounded by `io_timeout`,
    /// counted, and remembered for the health flag.
    pub(super) async fn run<T>(
        &self,
        request: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, EngineError> {
        self.metrics.round_trips.fetch_add(1, Relaxed);
        match tokio::time::timeout(self.config.io_timeout, request).await {
            Ok(Ok(v)) => {
                self.commands_ok.store(true, Relaxed);
                Ok(v)
            }
            Ok(Err(e)) => {
                self.metrics.errors.fetch_add(1, Relaxed);
                if e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_timeout()
                {
                    self.commands_ok.store(false, Relaxed);
                }
                Err(EngineError::Failed(format!(
                    "redis at {}: {e}",
                    self.config.url
                )))
            }
            Err(_) => {
                self.metrics.errors.fetch_add(1, Relaxed);
                self.commands_ok.store(false, Relaxed);
                Err(EngineError::Timeout(self.config.io_timeout))
            }
        }
    }

    pub(super) fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// The publish script's invocation for `data` (several messages, or
    /// one with an idempotency key) on `channel`.
    fn publish_invocation<'a>(
        &self,
        channel: &str,
        opts: &PublishOptions,
        data: impl IntoIterator<Item = &'a [u8]>,
    ) -> redis::ScriptInvocation<'static> {
        let keys = &self.keys;
        let mut inv = PUBLISH.prepare_invoke();
        inv.key(keys.stream(channel)).key(keys.meta(channel));
        if let Some(key) = &opts.idempotency_key {
            inv.key(keys.idempotency(channel, key));
        }
        inv.arg(keys.pubsub(channel))
            .arg(opts.history_size)
            .arg(secs(opts.history_ttl))
            .arg(secs(self.config.meta_ttl))
            .arg(new_epoch())
            .arg(secs(opts.idempotency_ttl).max(1));
        for d in data {
            inv.arg(d);
        }
        inv
    }

    /// The history script's invocation for `channel`: its position, and
    /// with `since`, the publications kept after it (at most `limit`, 0 =
    /// all).
    pub(super) fn history_invocation(
        &self,
        channel: &str,
        since: Option<u64>,
        limit: usize,
    ) -> redis::ScriptInvocation<'static> {
        let mut inv = HISTORY.prepare_invoke();
        inv.key(self.keys.stream(channel))
            .key(self.keys.meta(channel))
            .arg(since.map_or(-1, |s| s as i64))
            .arg(limit)
            .arg(secs(self.config.meta_ttl))
            .arg(new_epoch());
        inv
    }

    /// Read `channel`'s position and the publications kept after `since`.
    pub(super) async fn read_history(
        &self,
        channel: &str,
        since: Option<u64>,
        limit: usize,
    ) -> Result<History, EngineError> {
        let inv = self.history_invocation(channel, since, limit);
        let mut conn = self.conn();
        let reply: Value = self.run(inv.invoke_async(&mut conn)).await?;
        parse_history(reply).map_err(|e| EngineError::Failed(format!("history of {channel}: {e}")))
    }
}

/// `{top, epoch, entries}` from the history script.
pub(super) fn parse_history(reply: Value) -> Result<History, String> {
    let Value::Array(mut parts) = reply else {
        return Err(format!("unexpected reply {reply:?}"));
    };
    if parts.len() != 3 {
        return Err(format!("{} parts, expected 3", parts.len()));
    }
    let entries = parts.pop().unwrap_or(Value::Nil);
    let epoch = parts.pop().unwrap_or(Value::Nil);
    let top = parts.pop().unwrap_or(Value::Nil);
    let top: u64 = redis::from_redis_value(top).map_err(|e| format!("offset: {e}"))?;
    let epoch: String = redis::from_redis_value(epoch).map_err(|e| format!("epoch: {e}"))?;
    let publications = match entries {
        Value::Array(entries) => entries
            .into_iter()
            .map(parse_entry)
            .collect::<Result<Vec<_>, _>>()?,
        Value::Nil => Vec::new(),
        other => return Err(format!("unexpected entries {other:?}")),
    };
    Ok(History {
        top: Position { epoch, offset: top },
        publications,
    })
}

/// One stream entry: `[id, [field, value, ...]]`, id `OFFSET-0`.
fn parse_entry(entry: Value) -> Result<Publication, String> {
    let (id, fields): (String, Vec<Vec<u8>>) =
        redis::from_redis_value(entry).map_err(|e| format!("stream entry: {e}"))?;
    let offset = id
        .split_once('-')
        .and_then(|(o, _)| o.parse().ok())
        .ok_or_else(|| format!("stream entry id {id}"))?;
    let data = fields
        .chunks(2)
        .find(|kv| kv[0] == b"d" && kv.len() == 2)
        .map(|kv| Bytes::from(kv[1].clone()))
        .ok_or_else(|| format!("stream entry {id} has no data"))?;
    Ok(Publication { offset, data })
}

/// Send `key`'s waiting publishes, a batch per script call, until none is
/// left; then the next publish of the channel starts a new drain.
async fn drain_publishes(inner: Arc<Inner>, key: String, channel: String, opts: PublishOptions) {
    loop {
        let batch: Vec<Waiting> = {
            let mut publishing = lock(&inner.publishing);
            let Some(queue) = publishing.get_mut(&key) else {
                return;
            };
            if queue.is_empty() {
                publishing.remove(&key);
                return;
            }
            let (mut len, mut bytes) = (0, 0);
            for w in queue.iter() {
                if len == PUBLISH_BATCH_LEN
                    || (len > 0 && bytes + w.data.len() > PUBLISH_BATCH_BYTES)
                {
                    break;
                }
                len += 1;
                bytes += w.data.len();
            }
            queue.drain(..len).collect()
        };
        let inv = inner.publish_invocation(&channel, &opts, batch.iter().map(|w| &w.data[..]));
        let mut conn = inner.conn();
        let result: Result<(u64, String, u8, u64), EngineError> =
            inner.run(inv.invoke_async(&mut conn)).await;
        inner.metrics.publish_batches.fetch_add(1, Relaxed);
        inner
            .metrics
            .batched_publishes
            .fetch_add(batch.len() as u64, Relaxed);
        for (i, w) in batch.into_iter().enumerate() {
            let answer = match &result {
                Ok((first, epoch, _, nodes)) => Ok(Published {
                    position: Position {
                        epoch: epoch.clone(),
                        offset: first + i as u64,
                    },
                    duplicate: false,
                    nodes: *nodes,
                }),
                Err(e) => Err(e.clone()),
            };
            let _ = w.reply.send(answer);
        }
    }
}

/// A subscriber's recovery: the channel's position and, if history still
/// holds everything it missed, those publications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// The channel's position when history was read.
    pub top: Position,
    /// What was missed after `since`, in order; `None` when it cannot be
    /// recovered (history trimmed or lost).
    pub missed: Option<Vec<Publication>>,
}

/// The Redis engine of a node. Cheap to clone; the engine's tasks stop when
/// the last clone is dropped.
#[derive(Clone)]
pub struct RedisEngine {
    inner: Arc<Inner>,
    commands: mpsc::UnboundedSender<Command>,
}

impl RedisEngine {
    /// Start the engine: its PUB/SUB connection and presence refresh run in
    /// tasks of their own and connect (and reconnect) by themselves, so a
    /// node starts while Redis is down and reports itself unhealthy.
    pub fn start(config: RedisConfig, deliver: Arc<dyn Deliver>) -> Result<RedisEngine, String> {
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| format!("`cluster.redis_url` {}: {e}", config.url))?;
        let manager = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.io_timeout))
            .set_response_timeout(Some(config.io_timeout))
            .set_number_of_retries(1)
            .set_max_delay(config.io_timeout);
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager)
            .map_err(|e| format!("redis at {}: {e}", config.url))?;
        let inner = Arc::new(Inner {
            keys: Keys {
                prefix: config.prefix.clone(),
            },
            config,
            client,
            conn,
            metrics: EngineMetrics::default(),
            pubsub_up: AtomicBool::new(false),
            commands_ok: AtomicBool::new(true),
            deliver,
            reads: Mutex::default(),
            presence: Mutex::default(),
            publishing: Mutex::default(),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(subscriber::run(inner.clone(), rx));
        tokio::spawn(refresh_presence(Arc::downgrade(&inner)));
        Ok(RedisEngine {
            inner,
            commands: tx,
        })
    }

    /// True while Redis answers and the PUB/SUB connection is up.
    pub fn healthy(&self) -> bool {
        self.inner.pubsub_up.load(Relaxed) && self.inner.commands_ok.load(Relaxed)
    }

    /// The engine's counters.
    pub fn metrics(&self) -> &EngineMetrics {
        &self.inner.metrics
    }

    /// Publish `data` on `channel`: stored (per `opts`) and sent to every
    /// node subscribed to it, with the next offset.
    ///
    /// Publishes of one channel that arrive while its last script call is
    /// in flight go together in the next (`lua/publish.lua`, up to 64 or
    /// 256 KiB), in arrival order: under load Redis runs one script per
    /// batch rather than per message. An idempotent publish runs alone.
    pub async fn publish(
        &self,
        channel: &str,
        data: &[u8],
        opts: &PublishOptions,
    ) -> Result<Published, EngineError> {
        if opts.idempotency_key.is_some() {
            return self.publish_once(channel, data, opts).await;
        }
        let (reply, answer) = oneshot::channel();
        let waiting = Waiting {
            data: data.to_vec(),
            reply,
        };
        // The batch key: a channel's stream, with the options that go with
        // every message of a script call.
        let key = format!(
            "{}\n{}\n{}",
            self.inner.keys.stream(channel),
            opts.history_size,
            secs(opts.history_ttl)
        );
        {
            let mut publishing = lock(&self.inner.publishing);
            match publishing.get_mut(&key) {
                Some(queue) => queue.push(waiting),
                None => {
                    publishing.insert(key.clone(), vec![waiting]);
                    tokio::spawn(drain_publishes(
                        self.inner.clone(),
                        key,
                        channel.to_owned(),
                        opts.clone(),
                    ));
                }
            }
        }
        answer
            .await
            .unwrap_or_else(|_| Err(EngineError::Failed("the engine has stopped".into())))
    }

    /// An idempotent publish: at most once per key, in a call of its own.
    async fn publish_once(
        &self,
        channel: &str,
        data: &[u8],
        opts: &PublishOptions,
    ) -> Result<Published, EngineError> {
        let inv = self.inner.publish_invocation(channel, opts, [data]);
        let mut conn = self.inner.conn();
        let (offset, epoch, duplicate, nodes): (u64, String, u8, u64) =
            self.inner.run(inv.invoke_async(&mut conn)).await?;
        Ok(Published {
            position: Position { epoch, offset },
            duplicate: duplicate != 0,
            nodes,
        })
    }

    /// The node starts receiving `channel` (counted: one call per local
    /// subscriber). Returns the position of the last publication delivered
    /// for it; what follows is handed to [`Deliver`]. On error nothing is
    /// registered.
    pub async fn subscribe(&self, channel: &str) -> Result<Position, EngineError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || EngineError::Failed("the engine has stopped".into());
        self.commands
            .send(Command::Subscribe {
                channel: channel.to_owned(),
                reply,
            })
            .map_err(|_| stopped())?;
        match tokio::time::timeout(self.inner.config.io_timeout, answer).await {
            Ok(Ok(position)) => Ok(position),
            Ok(Err(_)) => Err(stopped()),
            Err(_) => {
                self.unsubscribe(channel);
                Err(EngineError::Timeout(self.inner.config.io_timeout))
            }
        }
    }

    /// One local subscriber of `channel` left; after the last, the node
    /// unsubscribes (in a batch with others).
    pub fn unsubscribe(&self, channel: &str) {
        let _ = self.commands.send(Command::Unsubscribe {
            channel: channel.to_owned(),
        });
    }

    /// Every publication of `channel` still kept, and its position. A read
    /// in flight for the channel, or completed less than [`READ_REUSE`] ago,
    /// answers every caller (one read for many recovering subscribers), so
    /// the position may be a little older than the call.
    pub async fn history(&self, channel: &str) -> Result<Arc<History>, EngineError> {
        let read = {
            let mut reads = lock(&self.inner.reads);
            reads
                .entry(channel.to_owned())
                .or_insert_with(|| {
                    let inner = self.inner.clone();
                    let channel = channel.to_owned();
                    async move {
                        inner.metrics.history_reads.fetch_add(1, Relaxed);
                        let read = inner.read_history(&channel, Some(0), 0).await;
                        if read.is_err() {
                            lock(&inner.reads).remove(&channel);
                        } else {
                            let forget = Arc::downgrade(&inner);
                            tokio::spawn(async move {
                                tokio::time::sleep(READ_REUSE).await;
                                if let Some(inner) = forget.upgrade() {
                                    lock(&inner.reads).remove(&channel);
                                }
                            });
                        }
                        read.map(Arc::new)
                    }
                    .boxed()
                    .shared()
                })
                .clone()
        };
        read.await
    }

    /// What a subscriber that saw `channel` up to `since` missed, from one
    /// history read shared with the other subscribers recovering at the
    /// same time.
    pub async fn recover(&self, channel: &str, since: &Position) -> Result<Recovery, EngineError> {
        self.recover_from(channel, since, since).await
    }

    /// [`RedisEngine::recover`], from a history read that reached at
    /// least `not_before` (a position the node had already delivered).
    pub async fn recover_from(
        &self,
        channel: &str,
        since: &Position,
        not_before: &Position,
    ) -> Result<Recovery, EngineError> {
        let mut history = self.history(channel).await?;
        let older = |p: &Position| history.top.epoch == p.epoch && history.top.offset < p.offset;
        if older(since) || older(not_before) {
            // The shared read was older than what this subscriber saw.
            self.inner.metrics.history_reads.fetch_add(1, Relaxed);
            history = Arc::new(
                self.inner
                    .read_history(channel, Some(since.offset), 0)
                    .await?,
            );
        }
        Ok(Recovery {
            top: history.top.clone(),
            missed: history.missed(since).map(<[Publication]>::to_vec),
        })
    }

    /// Mark `client` present in `channel` with `info` until this node stops
    /// refreshing it (`cluster.presence_ttl` after a crash).
    pub async fn presence_add(
        &self,
        channel: &str,
        client: &str,
        info: &str,
    ) -> Result<(), EngineError> {
        lock(&self.inner.presence).insert((channel.to_owned(), client.to_owned()), info.to_owned());
        let (zset, hash) = self.inner.keys.presence(channel);
        let mut inv = PRESENCE_ADD.prepare_invoke();
        inv.key(zset)
            .key(hash)
            .arg(client)
            .arg(info)
            .arg(secs(self.inner.config.presence_ttl).max(1));
        let mut conn = self.inner.conn();
        self.inner.run(inv.invoke_async::<i64>(&mut conn)).await?;
        Ok(())
    }

    /// `client` left `channel`.
    pub async fn presence_remove(&self, channel: &str, client: &str) -> Result<(), EngineError> {
        lock(&self.inner.presence).remove(&(channel.to_owned(), client.to_owned()));
        let (zset, hash) = self.inner.keys.presence(channel);
        let mut pipe = redis::pipe();
        pipe.zrem(zset, client).ignore().hdel(hash, client).ignore();
        let mut conn = self.inner.conn();
        self.inner.run(pipe.query_async::<()>(&mut conn)).await
    }

    /// The clients present in `channel` on any node: (client, info).
    pub async fn presence(&self, channel: &str) -> Result<Vec<(String, String)>, EngineError> {
        let (zset, hash) = self.inner.keys.presence(channel);
        let mut inv = PRESENCE_GET.prepare_invoke();
        inv.key(zset).key(hash);
        let mut conn = self.inner.conn();
        let mut list: Vec<(String, String)> = self.inner.run(inv.invoke_async(&mut conn)).await?;
        list.sort();
        Ok(list)
    }
}

/// Refresh this node's presence entries every third of their TTL, in
/// pipelines; stops with the engine.
async fn refresh_presence(inner: Weak<Inner>) {
    let every = match inner.upgrade() {
        Some(i) => (i.config.presence_ttl / 3).max(Duration::from_millis(100)),
        None => return,
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let entries: Vec<_> = lock(&inner.presence)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let ttl = secs(inner.config.presence_ttl).max(1);
        for chunk in entries.chunks(BATCH) {
            let mut pipe = redis::pipe();
            pipe.load_script(&PRESENCE_ADD).ignore();
            for ((channel, client), info) in chunk {
                let (zset, hash) = inner.keys.presence(channel);
                let mut inv = PRESENCE_ADD.prepare_invoke();
                inv.key(zset).key(hash).arg(client).arg(info).arg(ttl);
                pipe.invoke_script(&inv).ignore();
            }
            let mut conn = inner.conn();
            if let Err(e) = inner.run(pipe.query_async::<()>(&mut conn)).await {
                warn!("presence refresh failed: {e}");
                break;
            }
        }
    }
}

mod route;
#[cfg(test)]
mod tests;

pub use route::RedisRoute;
