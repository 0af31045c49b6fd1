//! Where a pub/sub route's stream positions, history and presence come
//! from: the [`Engine`] behind its channels (`[cluster] engine`).
//!
//! # The interface
//!
//! An engine assigns each publish its position (epoch and offset), keeps
//! the history that recovery and the `history` op read, knows who is
//! present, and says whether it is healthy. Every call answers an [`Op`]:
//! [`Op::Done`] when the answer is known at once (the in-memory engine:
//! no allocation, no task), [`Op::Wait`] with a future otherwise (an
//! engine across nodes, whose calls are round trips).
//!
//! Delivery to this node's connections, and resuming a subscription from a
//! position, are the [`Hub`]'s. With the in-memory engine ([`Memory`],
//! [`Engine::local`] true) the hub itself keeps positions and history and
//! the pub/sub session subscribes on the hub directly. An engine shared by
//! several nodes (Redis; NATS in `cluster/`) instead:
//!
//! - is told of every local subscriber ([`Engine::subscribe`], answered
//!   with the position of the last publication it has handed to the hub;
//!   [`Engine::unsubscribe`] when it leaves): the node receives a channel
//!   while it has local subscribers;
//! - hands the hub each publication of those channels, its own node's
//!   included, at the position it assigned, in offset order and exactly
//!   once, or a reset when continuity was lost, through [`HubFeed`]
//!   (its [`cluster::Deliver`]);
//! - answers recoveries that reach past what the hub's ring holds
//!   ([`Engine::recover`]).
//!
//! [`Published::delivered`] counts local subscribers for the in-memory
//! engine, and nodes that received the publication for a shared one.

use super::cluster::{self, EngineError, EngineMetrics};
use super::hub::{History, Hub, Position, Published};
use super::pubsub::{channel_message, reset_message};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};

/// A future an engine call answers with when it needs a round trip.
pub type Wait<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The answer of an engine call: known now, or after a round trip.
pub enum Op<T> {
    /// Answered at once.
    Done(T),
    /// Answered when the future completes.
    Wait(Wait<T>),
}

impl<T> Op<T> {
    /// An [`Op::Wait`] of `fut`.
    pub fn wait(fut: impl Future<Output = T> + Send + 'static) -> Op<T> {
        Op::Wait(Box::pin(fut))
    }
}

impl<T> Op<T> {
    /// The answer, waiting for it if needed.
    pub async fn get(self) -> T {
        match self {
            Op::Done(v) => v,
            Op::Wait(f) => f.await,
        }
    }
}

/// A client present in a channel: its id and user.
pub type Present = (String, Option<Arc<str>>);

/// What a resume from a position recovers from the engine's history.
#[derive(Debug, Clone)]
pub struct Recovery {
    /// The channel's position when its history was read.
    pub top: Position,
    /// The messages after the resume position up to `top`, encoded, when
    /// history still held all of them.
    pub missed: Option<Vec<tether::Message>>,
}

/// Positions, history, presence and health for a pub/sub route's
/// channels. Implemented by [`Memory`], [`cluster::redis::RedisEngine`]
/// and the other engines in `cluster/`.
pub trait Engine: Send + Sync + fmt::Debug {
    /// Its name in `/metrics` (`memory`, `redis`, ...).
    fn name(&self) -> &'static str;

    /// True when the hub keeps positions and history itself (subscribe and
    /// resume on the hub, no [`Engine::subscribe`]).
    fn local(&self) -> bool;

    /// Publish `data` (JSON text) on `channel`; with `idempotency_key`, at
    /// most once per key. Answers the position the engine assigned.
    fn publish(
        &self,
        channel: &str,
        data: &str,
        idempotency_key: Option<&str>,
    ) -> Op<Result<Published, EngineError>>;

    /// The last `limit` messages of `channel` (at most `max_bytes` of them)
    /// and its position.
    fn history(
        &self,
        channel: &str,
        limit: usize,
        max_bytes: usize,
    ) -> Op<Result<History, EngineError>>;

    /// Who is in `channel`.
    fn presence(&self, channel: &str) -> Op<Result<Vec<Present>, EngineError>>;

    /// A local subscriber joins `channel`: answered with the position of
    /// the last publication handed to the hub; everything after it
    /// follows through the [`HubFeed`]. On error nothing is registered.
    fn subscribe(&self, channel: &str) -> Op<Result<Position, EngineError>>;

    /// A local subscriber of `channel` left (one call per successful
    /// [`Engine::subscribe`]); after the last the node stops receiving it.
    fn unsubscribe(&self, channel: &str);

    /// What a subscriber that saw `channel` up to `since` missed, read no
    /// earlier than the moment the node had delivered `delivered`.
    fn recover(
        &self,
        channel: &str,
        since: &Position,
        delivered: &Position,
    ) -> Op<Result<Recovery, EngineError>>;

    /// Show local subscriber `client` (`user`) in `channel` until
    /// [`Engine::presence_leave`] (the engine makes the id unique across
    /// nodes).
    fn presence_join(&self, channel: &str, client: u64, user: Option<&str>);

    /// Local subscriber `client` left `channel`.
    fn presence_leave(&self, channel: &str, client: u64);

    /// False while the engine cannot serve (publishes fail, `/healthz`
    /// answers 503).
    fn healthy(&self) -> bool;

    /// Its counters, if it has any.
    fn metrics(&self) -> Option<&EngineMetrics>;
}

/// The default engine: one process, positions and history in the
/// [`Hub`]'s rings. Its epochs are random per channel, so after a restart
/// every resume answers `recovered: false`.
#[derive(Debug)]
pub struct Memory(pub Arc<Hub>);

impl Engine for Memory {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn local(&self) -> bool {
        true
    }

    fn publish(
        &self,
        channel: &str,
        data: &str,
        idempotency_key: Option<&str>,
    ) -> Op<Result<Published, EngineError>> {
        let name = serde_json::Value::from(channel).to_string();
        let encode = |offset| channel_message(&name, offset, data);
        Op::Done(Ok(match idempotency_key {
            Some(key) => self.0.publish_once(channel, key, encode),
            None => self.0.publish_at(channel, encode),
        }))
    }

    fn history(
        &self,
        channel: &str,
        limit: usize,
        max_bytes: usize,
    ) -> Op<Result<History, EngineError>> {
        Op::Done(Ok(self.0.history(channel, limit, max_bytes)))
    }

    fn presence(&self, channel: &str) -> Op<Result<Vec<Present>, EngineError>> {
        Op::Done(Ok(self
            .0
            .presence(channel)
            .into_iter()
            .map(|(id, user)| (id.to_string(), user))
            .collect()))
    }

    fn subscribe(&self, channel: &str) -> Op<Result<Position, EngineError>> {
        Op::Done(Ok(self.0.position(channel)))
    }

    fn unsubscribe(&self, _channel: &str) {}

    fn recover(
        &self,
        channel: &str,
        _since: &Position,
        _delivered: &Position,
    ) -> Op<Result<Recovery, EngineError>> {
        // The hub resumes from its own ring; nothing more is kept.
        Op::Done(Ok(Recovery {
            top: self.0.position(channel),
            missed: None,
        }))
    }

    fn presence_join(&self, _channel: &str, _client: u64, _user: Option<&str>) {}

    fn presence_leave(&self, _channel: &str, _client: u64) {}

    fn healthy(&self) -> bool {
        true
    }

    fn metrics(&self) -> Option<&EngineMetrics> {
        None
    }
}

/// Where a shared engine hands a node's hub what arrives for its channels:
/// each publication encoded once and appended at its engine-assigned
/// offset, each reset as a `reset` message to every subscriber.
pub struct HubFeed(pub Weak<Hub>);

impl cluster::Deliver for HubFeed {
    fn publication(&self, channel: &str, epoch: &str, p: cluster::Publication) {
        let Some(hub) = self.0.upgrade() else { return };
        let name = serde_json::Value::from(channel).to_string();
        let data = String::from_utf8_lossy(&p.data);
        let msg = channel_message(&name, p.offset, &data);
        hub.deliver(channel, epoch, p.offset, msg);
    }

    fn reset(&self, channel: &str, position: &cluster::Position) {
        let Some(hub) = self.0.upgrade() else { return };
        let msg = reset_message(channel, &position.epoch, position.offset);
        hub.reset(channel, &position.epoch, position.offset, msg);
    }
}

/// A local subscriber's registration with a shared engine: unregistered
/// (and its presence removed) when dropped, so a subscription that ends
/// any way (unsubscribe, close, a crash of its task) is counted out.
pub struct Interest {
    engine: Arc<dyn Engine>,
    channel: String,
    /// The subscriber's id, if it shows in presence.
    client: Option<u64>,
}

impl Interest {
    /// Registered for `channel` (after a successful [`Engine::subscribe`]).
    pub fn new(engine: Arc<dyn Engine>, channel: &str, client: Option<u64>) -> Interest {
        Interest {
            engine,
            channel: channel.to_owned(),
            client,
        }
    }
}

impl fmt::Debug for Interest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Interest({})", self.channel)
    }
}

impl Drop for Interest {
    fn drop(&mut self) {
        if let Some(client) = self.client {
            self.engine.presence_leave(&self.channel, client);
        }
        self.engine.unsubscribe(&self.channel);
    }
}

/// Append the counters of `engines` to `/metrics`, summed per engine kind
/// (each pub/sub route has its own engine). Engines without counters add
/// nothing.
pub fn render_metrics<'a>(engines: impl Iterator<Item = &'a Arc<dyn Engine>>, out: &mut String) {
    let mut sums: Vec<(&'static str, EngineMetrics)> = Vec::new();
    for e in engines {
        let Some(m) = e.metrics() else { continue };
        let i = match sums.iter().position(|(n, _)| *n == e.name()) {
            Some(i) => i,
            None => {
                sums.push((e.name(), EngineMetrics::default()));
                sums.len() - 1
            }
        };
        m.add_to(&sums[i].1);
    }
    for (name, m) in &sums {
        m.render(name, out);
    }
}
